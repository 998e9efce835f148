"""Area and timing of one generated array: Yosys for xc7 (with and without DSPs) and ECP5, nextpnr-ecp5 for Fmax.

`synthesize(cfg, out)` generates the RTL into `out/<cfg.key()>/rtl`, runs the requested targets and writes
`out/<cfg.key()>/synth.json`. Each target runs in its own step directory (script, log, raw tool output) and
is skipped when the key stamped there (a hash of the RTL sources, the flow script and the tool versions)
still matches: an unchanged design is never synthesized twice. Every figure is parsed from the tools' own
machine-readable output (`stat -json`, nextpnr's `--report`) at assembly time, never hard-coded.

One concern per module:
- `settings`: the flow's fixed settings, the targets and their validation;
- `devices`: the ECP5 parts and the choice of the smallest that fits;
- `netlist` / `timing`: parsing Yosys's and nextpnr's output (pure functions);
- `dsp_regs`: giving each ECP5 multiplier its operand and product flip-flops as DSP registers, on the
  netlist between Yosys and nextpnr (a pure function);
- `tools`: running the YoWASP binaries;
- `cache`: step directories and their keys;
- `yosys_flow` / `pnr_flow`: the Yosys-only targets and place and route;
- `latency`: cycles and time of one inference of a network;
- `assemble`: `synthesize` and synth.json;
- `tables`: the overhead, grid and Fmax-mode tables over many designs;
- `cli`: the `quasar synth*` commands (argument parsing and printing only).

This package never edits the generated RTL and never configures logging (the CLI does); it reports
progress through the `hdl_gen.synth` loggers.
"""

from hdl_gen.synth.assemble import parse_seeds, summary_rows, synthesize
from hdl_gen.synth.cache import StepContext, step_key
from hdl_gen.synth.devices import (
    AUTO_LUT_FILL,
    DEVICE_CHOICES,
    ECP5_DEVICES,
    Ecp5Device,
    candidate_devices,
    ecp5_demand,
)
from hdl_gen.synth.latency import inference_latency
from hdl_gen.synth.netlist import cell_counts, ecp5_metrics, memory_mapping, xilinx_metrics, yosys_banner
from hdl_gen.synth.pnr_flow import Port, parse_ports, ports_script, wrapper_verilog
from hdl_gen.synth.settings import (
    DEFAULT_FREQ_MHZ,
    DEFAULT_SEED,
    PNR_MODES,
    SCHEMA_VERSION,
    TARGETS,
    parse_targets,
)
from hdl_gen.synth.tables import (
    GRID_BITS,
    OVERHEAD_BITS,
    fmax_modes,
    fmax_modes_markdown,
    grid_configs,
    grid_markdown,
    overhead_markdown,
    parse_bits_list,
    protection_overhead,
    synth_grid,
)
from hdl_gen.synth.timing import critical_path, overused, placed_timing, pnr_timing, pnr_utilization, rtl_name
from hdl_gen.synth.tools import ToolError, tool_versions
from hdl_gen.synth.yosys_flow import ecp5_script, xc7_script

__all__ = [
    "AUTO_LUT_FILL", "DEFAULT_FREQ_MHZ", "DEFAULT_SEED", "DEVICE_CHOICES", "ECP5_DEVICES", "Ecp5Device",
    "GRID_BITS", "OVERHEAD_BITS", "PNR_MODES", "Port", "SCHEMA_VERSION", "StepContext", "TARGETS", "ToolError",
    "candidate_devices", "cell_counts", "critical_path", "ecp5_demand", "ecp5_metrics", "ecp5_script", "fmax_modes",
    "fmax_modes_markdown", "grid_configs", "grid_markdown", "inference_latency", "memory_mapping",
    "overhead_markdown", "overused", "parse_bits_list", "parse_ports", "parse_seeds", "parse_targets",
    "placed_timing", "pnr_timing", "pnr_utilization", "ports_script", "protection_overhead", "rtl_name", "step_key",
    "summary_rows", "synth_grid", "synthesize", "tool_versions", "wrapper_verilog", "xc7_script", "xilinx_metrics",
    "yosys_banner",
]
