"""The sweep's formats side by side: one sweep per activation format (docs/arithmetic.md), one table.

Each format's sweep is an ordinary sweep (its own directory, state, table and report); this module only
lays their rows next to each other, per (bits, protection), for the columns where the format matters:
accuracy, SDC, how often the range protection fired, and the hardware of the requantization datapath
(the pow2 designs are shift-only). It reads nothing but the rows the sweeps returned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fault_campaigns.sweep.table import cell

# (row key, header) of the columns repeated per format
FORMAT_COLUMNS: list[tuple[str, str]] = [
    ("qat_int_acc_pct", "QAT int acc %"),
    ("ptq_int_acc_pct", "PTQ int acc %"),
    ("sdc_pct", "SDC %"),
    ("protection_fired_pct", "protection fired %"),
    ("sdc_reduction_pct", "SDC reduction %"),
    ("luts", "LUT (DSP)"),
    ("luts_nodsp", "LUT (no DSP)"),
    ("dsps", "DSP"),
    ("fmax_mhz", "Fmax MHz"),
]


def side_by_side(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (bits, protection) present in every format's sweep, with `<format>:<column>` cells."""
    keys: list[tuple[int, str]] | None = None
    by_format: dict[str, dict[tuple[int, str], dict]] = {}
    for fmt, result in results.items():
        rows = {(r["bits"], r["protection"]): r for r in result["rows"]}
        by_format[fmt] = rows
        keys = list(rows) if keys is None else [k for k in keys if k in rows]
    out = []
    for bits, protection in keys or []:
        row: dict[str, Any] = {"bits": bits, "protection": protection}
        for fmt, rows in by_format.items():
            for col, _ in FORMAT_COLUMNS:
                row[f"{fmt}:{col}"] = rows[(bits, protection)].get(col)
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], formats: list[str]) -> str:
    head = ["bits", "protection"] + [f"{fmt} {label}" for fmt in formats for _, label in FORMAT_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["bits"]), r["protection"]]
        cells += [cell(r[f"{fmt}:{col}"], col) for fmt in formats for col, _ in FORMAT_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_formats_report(out_dir: Path, results: dict[str, dict[str, Any]]) -> Path:
    """formats.md and formats.json in out_dir: the formats' rows side by side, and where each sweep lives."""
    from fault_campaigns.files import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = list(results)
    rows = side_by_side(results)
    text = [
        f"# Activation formats side by side: {', '.join(formats)}",
        "",
        "Each format's own sweep (table, plots, report, sources): "
        + ", ".join(f"`{fmt}`: {results[fmt]['dir']}" for fmt in formats)
        + ". pow2 designs requantize with a shift only (no multiplier); docs/arithmetic.md.",
        "",
        markdown(rows, formats),
        "",
    ]
    atomic_write(out_dir / "formats.md", "\n".join(text))
    atomic_write(out_dir / "formats.json", json.dumps({"formats": {f: results[f]["dir"] for f in formats},
                                                        "rows": rows}, indent=2, default=str))
    return out_dir / "formats.md"
