"""RTL generator: the output-stationary systolic array, its post-processing and protection units.

`ArrayConfig` is the single source of every hardware width; `generate(cfg, out_dir)` writes the
Verilog, the fault-site map and config.json. Never imports the testbenches or the campaigns.
The generator (and Veriloggen with it) is imported on first use, so a simulator process that only
needs `ArrayConfig` does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hdl_gen.config import ArrayConfig

if TYPE_CHECKING:
    from hdl_gen.rtl import TOP, Design, fault_sites, generate

__all__ = ["TOP", "ArrayConfig", "Design", "fault_sites", "generate"]
_LAZY = {"TOP", "Design", "fault_sites", "generate"}


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attribute
    if name in _LAZY:
        from hdl_gen import rtl

        return getattr(rtl, name)
    raise AttributeError(f"module 'hdl_gen' has no attribute {name!r}")
