"""Resource figures from Yosys's own output (`stat -json`, the log): pure functions, unit-tested without a tool."""

from __future__ import annotations

import re
from typing import Any


def cell_counts(stat: dict[str, Any], top: str | None = None) -> dict[str, int]:
    """Cell counts by type for the whole design from Yosys `stat -json` output.

    Prefers the hierarchy total ("design"); falls back to the top module, then to the only module.
    """
    section = stat.get("design")
    if not (isinstance(section, dict) and "num_cells_by_type" in section):
        modules = stat.get("modules") or {}
        wanted = [f"\\{top}", top] if top else []
        section = next((modules[m] for m in wanted if m in modules), None)
        if section is None and len(modules) == 1:
            section = next(iter(modules.values()))
        if section is None:
            raise ValueError(f"stat -json output has no 'design' section and no module {top!r}: {sorted(modules)}")
    # In a hierarchical design the total also lists submodule instances by module name: not cells.
    submodules = {str(m).lstrip("\\") for m in stat.get("modules") or {}}
    by_type = section.get("num_cells_by_type", {})
    counts = {str(k).lstrip("\\"): int(v) for k, v in sorted(by_type.items())}
    return {k: v for k, v in counts.items() if k not in submodules}


# LUT sites taken by each Xilinx LUTRAM primitive (7-series CLB user guide, UG474).
_XC7_LUTRAM_LUTS = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
}
_XC7_IGNORED = {"BUFG", "IBUF", "OBUF", "IOBUF", "OBUFT", "GND", "VCC", "$scopeinfo"}


def xilinx_metrics(cells: dict[str, int]) -> dict[str, Any]:
    """Resource figures of a `synth_xilinx -family xc7` netlist.

    `luts` counts LUT1..LUT6 only; LUTRAM and shift registers also occupy LUT sites and are reported
    separately (`lutram_luts`, `srl`); `luts_total` adds them. `bram36_equiv` = RAMB36 + RAMB18 / 2.
    """
    luts = sum(n for t, n in cells.items() if re.fullmatch(r"LUT[1-6]", t))
    ffs = sum(n for t, n in cells.items() if re.fullmatch(r"FD[A-Z]*(_1)?", t))
    lutram = {t: n for t, n in cells.items() if t in _XC7_LUTRAM_LUTS}
    lutram_luts = sum(_XC7_LUTRAM_LUTS[t] * n for t, n in lutram.items())
    srl = cells.get("SRL16E", 0) + cells.get("SRLC32E", 0) + cells.get("SRLC16E", 0)
    bram18 = cells.get("RAMB18E1", 0)
    bram36 = cells.get("RAMB36E1", 0)
    known = {"DSP48E1", "CARRY4", "MUXF7", "MUXF8", "INV", "RAMB18E1", "RAMB36E1", "SRL16E", "SRLC32E", "SRLC16E"}
    other = {
        t: n for t, n in cells.items()
        if t not in known and t not in lutram and t not in _XC7_IGNORED
        and not re.fullmatch(r"LUT[1-6]", t) and not re.fullmatch(r"FD[A-Z]*(_1)?", t)
    }
    return {
        "luts": luts,
        "ffs": ffs,
        "dsp48e1": cells.get("DSP48E1", 0),
        "carry4": cells.get("CARRY4", 0),
        "bram18": bram18,
        "bram36": bram36,
        "bram36_equiv": bram36 + bram18 / 2,
        "lutram_cells": sum(lutram.values()),
        "lutram_luts": lutram_luts,
        "srl": srl,
        "luts_total": luts + lutram_luts + srl,
        "muxf7": cells.get("MUXF7", 0),
        "muxf8": cells.get("MUXF8", 0),
        "inv": cells.get("INV", 0),
        "other_cells": other,
    }


_ECP5_KNOWN = {
    "LUT4", "CCU2C", "MULT18X18D", "ALU54B", "TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4", "PFUMX", "L6MUX21",
    "TRELLIS_IO", "TRELLIS_COMB", "VHI", "VLO", "$scopeinfo",
}


def ecp5_metrics(cells: dict[str, int]) -> dict[str, Any]:
    """Resource figures of a `synth_ecp5` netlist.

    `lut4_equiv` = LUT4 + 2 x CCU2C: each carry cell occupies the two LUT4 sites of a slice half, so this
    is the logic that competes for the part's LUTs (distributed RAM and wide-mux cells not included).
    """
    lut4 = cells.get("LUT4", 0)
    ccu2c = cells.get("CCU2C", 0)
    return {
        "lut4": lut4,
        "ccu2c": ccu2c,
        "lut4_equiv": lut4 + 2 * ccu2c,
        "ffs": cells.get("TRELLIS_FF", 0),
        "mult18": cells.get("MULT18X18D", 0),
        "alu54": cells.get("ALU54B", 0),
        "dp16kd": cells.get("DP16KD", 0),
        "dpr16x4": cells.get("TRELLIS_DPR16X4", 0),
        "pfumx": cells.get("PFUMX", 0),
        "l6mux21": cells.get("L6MUX21", 0),
        "other_cells": {t: n for t, n in cells.items() if t not in _ECP5_KNOWN},
    }


_MEM_VIA = re.compile(r"^mapping memory (\S+) via (\S+)", re.M)
_MEM_FF = re.compile(r"^(?:using FF mapping for memory|Mapping memory cell) (\S+)", re.M)


def memory_mapping(yosys_log: str) -> dict[str, str]:
    """What each inferred memory became, from memory_libmap's log lines ({} if the design has none)."""
    found = {name.split(".", 1)[-1]: via.strip("$_").rstrip("_") for name, via in _MEM_VIA.findall(yosys_log)}
    for name in _MEM_FF.findall(yosys_log):
        found.setdefault(name.split(".", 1)[-1], "flip-flops")
    return found


_YOSYS_BANNER = re.compile(r"^(Yosys \d[^\n]*)$", re.M)


def yosys_banner(yosys_log: str) -> str | None:
    m = _YOSYS_BANNER.search(yosys_log)
    return m.group(1).strip() if m else None


def last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()]
    return (errors or lines or ["(empty log)"])[-1][:400]
