"""Timing from nextpnr's own output (its `--report` JSON and its log): pure functions, unit-tested without a tool."""

from __future__ import annotations

import re
from typing import Any


def clock_key(name: str) -> str:
    """'posedge $glbnet$clk$TRELLIS_IO_IN' -> 'clk': nextpnr names a clock after its global buffer net."""
    name = re.sub(r"^(posedge|negedge)\s+", "", name.strip())
    return name.removeprefix("$glbnet$").split("$", 1)[0]


def pnr_timing(report: dict[str, Any], clock: str = "clk",
               dsp_registers: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Fmax of `clock` and its critical path from a nextpnr `--report` JSON; `dsp_registers` names the RTL
    registers the flow moved into multipliers (hdl_gen.synth.dsp_regs), for paths that end in one."""
    fmax_all = report.get("fmax") or {}
    matches = [k for k in fmax_all if clock_key(k) == clock]
    if not matches and len(fmax_all) == 1:
        matches = list(fmax_all)
    if not matches:
        raise ValueError(f"nextpnr report has no Fmax for clock {clock!r}: {sorted(fmax_all)}")
    net = matches[0]
    entry = fmax_all[net]
    out: dict[str, Any] = {
        "clock_net": net,
        "fmax_mhz": round(float(entry["achieved"]), 3),
        "target_mhz": float(entry["constraint"]),
        "critical_path": None,
    }
    for path in report.get("critical_paths") or []:
        if clock_key(str(path.get("from", ""))) == clock and clock_key(str(path.get("to", ""))) == clock:
            out["critical_path"] = critical_path(path.get("path") or [], dsp_registers)
            break
    return out


# What Yosys's ECP5 techmapping appends to the name of the net a cell drives or was made from: cut there
# to get back the RTL name ("core.oact_1_TRELLIS_FF_Q_3" -> "core.oact_1").
_MAPPED_SUFFIX = re.compile(r"(_(TRELLIS_FF|TRELLIS_COMB|TRELLIS_DPR16X4|TRELLIS_RAMW|MULT18X18D|ALU54B|DP16KD|LUT4|"
                            r"CCU2C|PFUMX|L6MUX21)_|\$).*$")
_RTL_SOURCE = re.compile(r"^(rtl/[^:]+\.s?v):")


def rtl_name(cell: str) -> str:
    """A packed nextpnr cell's name cut back to the RTL signal it was mapped from; `core.` = inside the array."""
    return _MAPPED_SUFFIX.sub("", cell) or cell


def critical_path(steps: list[dict[str, Any]],
                  dsp_registers: dict[str, dict[str, str]] | None = None) -> dict[str, Any] | None:
    """One nextpnr `--report` path (clk-to-q, routing and logic steps, setup) as readable figures.

    `start` / `end`: the launching and capturing cells and their registers by RTL name (`register`; `in_core`
    false for a register of the place-and-route wrapper). The start register is named by the net its output
    drives (a bit of the register, e.g. `core.pe_0_1.acc[5]` or the wrapper's `sh[46]`), since Yosys may name
    the flip-flop cell after the port it feeds; the end register by its cell name cut back to the RTL signal.
    `logic_levels`: the cells the path passes through (nextpnr's logic steps: LUT4s, carry-cell halves, wide
    muxes, multiplier blocks); `through`: the generated RTL files the path's nets come from, in path order;
    `delay_ns` = `clk_to_q_ns` + `logic_ns` + `routing_ns` + `setup_ns`. A path that ends at a multiplier's
    A or B input held in its input register (`dsp_registers`: DSP cell -> port group -> RTL register) ends at
    that register (`in_dsp` true); one that starts at a registered product starts at the product register,
    whose net the multiplier drives.
    """
    if not steps:
        return None
    first, last = steps[0], steps[-1]

    def total(kind: str) -> float:
        return round(sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") == kind), 3)

    through: list[str] = []
    for s in steps:
        for src in s.get("sources") or []:
            m = _RTL_SOURCE.match(src)
            if m and m.group(1).removeprefix("rtl/") not in through:
                through.append(m.group(1).removeprefix("rtl/"))
    launch, capture = first["from"]["cell"], last["to"]["cell"]
    net = next((s.get("net") for s in steps if s.get("type") == "routing"), None)
    start_reg, end_reg = net or rtl_name(launch), rtl_name(capture)
    held = (dsp_registers or {}).get(capture, {})
    end_port = str(last["to"].get("port", ""))
    end_in_dsp = bool(end_port[:1] in ("A", "B") and end_port[1:].isdigit() and end_port[:1] in held)
    if end_in_dsp:
        end_reg = held[end_port[:1]]
    levels = sum(1 for s in steps if s.get("type") == "logic")
    delay = round(sum(float(s.get("delay", 0.0)) for s in steps), 3)
    return {
        "summary": f"{start_reg} -> {end_reg}: {levels} logic levels, {delay:.2f} ns",
        "from": f"{launch}.{first['from']['port']}",
        "to": f"{capture}.{last['to']['port']}",
        "start": {"register": start_reg, "in_core": start_reg.startswith("core."), "cell": launch,
                  "in_dsp": launch in (dsp_registers or {})},
        "end": {"register": end_reg, "in_core": end_reg.startswith("core."), "cell": capture, "in_dsp": end_in_dsp},
        "delay_ns": delay,
        "clk_to_q_ns": total("clk-to-q"),
        "logic_ns": total("logic"),
        "routing_ns": total("routing"),
        "setup_ns": total("setup"),
        "logic_levels": levels,
        "through": through,
    }


def pnr_utilization(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Used / available per bel type, only the types the design uses."""
    util = report.get("utilization") or {}
    return {k: {"used": int(v["used"]), "available": int(v["available"])} for k, v in sorted(util.items())
            if int(v.get("used", 0))}


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def overused(nextpnr_log: str) -> dict[str, tuple[int, int]]:
    """Bel types the design needs more of than the part has, from nextpnr's 'Device utilisation' lines."""
    return {t: (int(u), int(a)) for t, u, a in _UTIL_LINE.findall(nextpnr_log) if int(u) > int(a)}


_FMAX_LINE = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((?:PASS|FAIL) at ([0-9.]+) MHz\)")


def placed_timing(nextpnr_log: str, clock: str = "clk") -> dict[str, Any]:
    """Fmax of `clock` after placement, from nextpnr's last 'Max frequency' line of a `--no-route` run (its
    --report then has no timing). No critical path: nextpnr reports paths of routed designs only."""
    hits = [(net, float(f), float(t)) for net, f, t in _FMAX_LINE.findall(nextpnr_log) if clock_key(net) == clock]
    if not hits:
        raise ValueError(f"nextpnr log has no 'Max frequency' line for clock {clock!r}")
    net, fmax, target = hits[-1]
    return {"clock_net": net, "fmax_mhz": round(fmax, 3), "target_mhz": target, "critical_path": None}
