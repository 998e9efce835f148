"""RTL generator: the output-stationary systolic array, its post-processing and protection units.

`ArrayConfig` is the single source of every hardware width; `generate(cfg, out_dir)` writes the
Verilog, the fault-site map and config.json. Never imports the testbenches or the campaigns.
"""

from hdl_gen.config import ArrayConfig
from hdl_gen.rtl import TOP, Design, fault_sites, generate

__all__ = ["TOP", "ArrayConfig", "Design", "fault_sites", "generate"]
