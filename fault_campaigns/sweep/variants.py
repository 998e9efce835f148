"""Which protection variant buys the most: the sweep's finding that compares the variants of one width.

For every protected row the SDC reduction on the paired fault list (percentage points of the
unprotected design's SDC rate) is set against the LUTs the variant adds over the unprotected design
of the same width (xc7 with DSPs). Every figure cites its table cell like the other findings
(`[bits/protection: column]`). Pure functions of the sweep table's rows; never reads a file.
"""

from __future__ import annotations

import math
from typing import Any


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _ref(r: dict, col: str) -> str:
    return f"[{r['bits']}b/{r['protection']}: {col}]"


def extra_luts(row: dict, rows: list[dict]) -> float | None:
    base = next((r for r in rows if r["bits"] == row["bits"] and r["protection"] == "none"), None)
    if base is None or _num(row.get("luts")) is None or _num(base.get("luts")) is None:
        return None
    return float(row["luts"]) - float(base["luts"])


def _describe(r: dict, rows: list[dict]) -> str:
    pp, fired, extra = _num(r.get("sdc_reduction_pp")), _num(r.get("protection_fired_pct")), extra_luts(r, rows)
    parts = [f"{r['protection']}: SDC {'n/a' if pp is None else f'{pp:+.2f} pp'} {_ref(r, 'SDC reduction pp')}",
             f"fired {'n/a' if fired is None else f'{fired:.2f}%'}"]
    if extra is not None:
        parts.append(f"{extra:+.0f} LUTs {_ref(r, 'LUT (DSP)')}")
    return ", ".join(parts)


def variant_findings(rows: list[dict]) -> list[str]:
    """One finding per width with two or more protected variants; none otherwise."""
    out = []
    for bits in dict.fromkeys(r["bits"] for r in rows):
        prot = [r for r in rows if r["bits"] == bits and r["protection"] != "none"]
        if len(prot) < 2:
            continue
        ranked = sorted(prot, key=lambda r: -(_num(r.get("sdc_reduction_pp")) or 0.0))
        best = ranked[0]
        pp = _num(best.get("sdc_reduction_pp")) or 0.0
        if pp <= 0:
            verdict = "no variant reduced the SDC rate on this fault list"
        else:
            extra = extra_luts(best, rows)
            per = f", {1000 * pp / extra:.2f} pp per 1,000 extra LUTs" if extra and extra > 0 else ""
            verdict = f"{best['protection']} removes the most SDCs ({pp:.2f} pp{per})"
        out.append(f"**Protection variants at {bits} bits** (paired, same faults): {verdict}. All: "
                   + "; ".join(_describe(r, rows) for r in ranked) + ".")
    return out
