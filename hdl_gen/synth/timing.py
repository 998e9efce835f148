"""Timing from nextpnr's own output (its `--report` JSON and its log): pure functions, unit-tested without a tool."""

from __future__ import annotations

import re
from typing import Any


def clock_key(name: str) -> str:
    """'posedge $glbnet$clk$TRELLIS_IO_IN' -> 'clk': nextpnr names a clock after its global buffer net."""
    name = re.sub(r"^(posedge|negedge)\s+", "", name.strip())
    return name.removeprefix("$glbnet$").split("$", 1)[0]


def pnr_timing(report: dict[str, Any], clock: str = "clk") -> dict[str, Any]:
    """Fmax of `clock` and its critical path from a nextpnr `--report` JSON."""
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
            steps = path.get("path") or []
            if steps:
                out["critical_path"] = {
                    "from": f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}",
                    "to": f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}",
                    "delay_ns": round(sum(float(s.get("delay", 0.0)) for s in steps), 3),
                    "logic_levels": sum(1 for s in steps if s.get("type") == "logic"),
                }
            break
    return out


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
