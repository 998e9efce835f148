"""Veriloggen generators of the output-stationary systolic array (docs/rtl.md is the specification).

One `make_<block>(cfg)` builder per hardware module (`units`), one builder per block of the top
(`top`), the fault-site map (`sites`), and `generate()` (`write`), which writes one file per Verilog
module, the fault-site map and config.json. Module names derive from the config. This package never
runs a simulator or a synthesis tool.
"""

from hdl_gen.rtl.common import (
    TOP,
    VIOL_BITS,
    pe_name,
    postproc_name,
    protect_name,
    requant_mul_name,
)
from hdl_gen.rtl.sites import design_info, fault_sites, vpi_signals
from hdl_gen.rtl.top import make_top
from hdl_gen.rtl.units import make_pe, make_postproc, make_postproc_shift, make_protect, make_requant_mul
from hdl_gen.rtl.write import HEADER, Design, generate, module_verilog

__all__ = [
    "HEADER",
    "TOP",
    "VIOL_BITS",
    "Design",
    "design_info",
    "fault_sites",
    "generate",
    "make_pe",
    "make_postproc",
    "make_postproc_shift",
    "make_protect",
    "make_requant_mul",
    "make_top",
    "module_verilog",
    "pe_name",
    "postproc_name",
    "protect_name",
    "requant_mul_name",
    "vpi_signals",
]
