"""`synthesize`: generate the RTL, run (or reuse) the targets' steps, assemble synth.json from the step directories."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from hdl_gen.synth.cache import StepContext, sha256_file
from hdl_gen.synth.devices import DEVICE_CHOICES
from hdl_gen.synth.latency import inference_latency
from hdl_gen.synth.netlist import cell_counts, ecp5_metrics, memory_mapping, xilinx_metrics, yosys_banner
from hdl_gen.synth.pnr_flow import cached_seeds, pnr_cached, pnr_step, seed_dir, seed_step
from hdl_gen.synth.settings import (
    DEFAULT_FREQ_MHZ,
    DEFAULT_SEED,
    LENET,
    PNR_MODES,
    SCHEMA_VERSION,
    TARGETS,
    WRAPPER_TOP,
    parse_targets,
)
from hdl_gen.synth.timing import placed_timing, pnr_timing, pnr_utilization
from hdl_gen.synth.tools import tool_versions
from hdl_gen.synth.yosys_flow import YOSYS_TARGETS, yosys_cached, yosys_step
from quasar import jsonio
from quasar.errors import ConfigError, check_choice, check_range

if TYPE_CHECKING:
    from hdl_gen import ArrayConfig

log = logging.getLogger(__name__)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _pnr_result(ctx: StepContext, step_dir: Path, meta: dict[str, Any],
                dsp_registers: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Fmax and critical path of one nextpnr run (a primary or an extra-seed step directory; the netlist's
    DSP-held registers come from the primary step)."""
    nextpnr_log = step_dir / f"nextpnr-{meta['device']}.log"
    if meta.get("mode") == "placed":
        return {**placed_timing(nextpnr_log.read_text(errors="replace")),
                "critical_path_note": "nextpnr reports no critical path after placement only (--fmax placed); "
                                      "--fmax routed gives it"}
    return pnr_timing(_read_json(step_dir / "report.json"), dsp_registers=dsp_registers)


def _seed_spread(primary: dict[str, Any], extra: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Fmax over placement seeds: the primary seed's and every extra seed's run; None with no extra seed."""
    if not extra:
        return None
    runs = {primary["seed"]: primary, **extra}
    fmax = {s: runs[s]["fmax_mhz"] for s in sorted(runs)}
    values = list(fmax.values())
    return {"seeds": list(fmax), "fmax_mhz": {str(s): v for s, v in fmax.items()},
            "min_mhz": min(values), "median_mhz": round(statistics.median(values), 3), "max_mhz": max(values),
            "critical_paths": {str(s): (runs[s]["critical_path"] or {}).get("summary") for s in fmax},
            "dirs": {str(s): runs[s]["dir"] for s in extra}}


def _target_result(ctx: StepContext, target: str, meta: dict[str, Any],
                   seeds: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Parse one step directory's raw tool output into the figures of synth.json."""
    step_dir = ctx.run_dir / (ctx.pnr_dir if target == "pnr" else target)
    ylog = (step_dir / "yosys.log").read_text(errors="replace")
    cells = cell_counts(_read_json(step_dir / "stat.json"), WRAPPER_TOP if target == "pnr" else ctx.top)
    common = {"cached": meta["cached"], "wall_s": meta["wall_s"], "dir": str(step_dir), "yosys": yosys_banner(ylog)}
    if target == "pnr":
        report = _read_json(step_dir / "report.json")
        wrapper_cells = ecp5_metrics(cells)
        placed = meta.get("mode") == "placed"
        held = (meta.get("dsp_registers") or {}).get("registers")
        extra = {s: {**_pnr_result(ctx, ctx.run_dir / seed_dir(ctx, s), m, held), "seed": s,
                     "dir": str(ctx.run_dir / seed_dir(ctx, s)), "cached": m["cached"], "wall_s": m["wall_s"]}
                 for s, m in sorted((seeds or {}).items())}
        timing = _pnr_result(ctx, step_dir, meta, held)
        return {
            **{k: meta[k] for k in ("device", "part", "package", "speed", "seed", "router")},
            "mode": "placed" if placed else "routed",
            "fmax_source": ("nextpnr timing after placement (--no-route), wire delays estimated" if placed
                            else "nextpnr timing of the routed design"),
            **timing,
            "seed_spread": _seed_spread({**timing, "seed": meta["seed"], "dir": str(step_dir)}, extra),
            "utilization": pnr_utilization(report),
            # multipliers given their operand and product flip-flops as DSP registers (hdl_gen.synth.dsp_regs)
            "dsp_registers": meta.get("dsp_registers"),
            "tried": meta["tried"],
            "wrapper": {**meta["wrapper"], **{k: wrapper_cells[k] for k in
                                              ("lut4", "ccu2c", "lut4_equiv", "ffs", "mult18", "dp16kd", "dpr16x4")}},
            "nextpnr_log": str(step_dir / f"nextpnr-{meta['device']}.log"),
            **common,
            # the extra seeds' nextpnr runs count in this target's time
            "wall_s": {**meta["wall_s"], **{f"nextpnr_seed{s}": sum(e["wall_s"].values()) for s, e in extra.items()}},
            "cached": meta["cached"] and all(e["cached"] for e in extra.values()),
        }
    metrics = xilinx_metrics(cells) if target.startswith("xc7") else ecp5_metrics(cells)
    return {**metrics, "memories": memory_mapping(ylog), "cells": cells,
            "script": (step_dir / "script.ys").read_text(), **common}


def _through(cp: dict[str, Any]) -> str:
    """Where a critical path's nets come from, for the printed summary."""
    if cp["through"]:
        return "through " + ", ".join(cp["through"])
    if cp["start"]["in_core"] or cp["end"]["in_core"]:
        # e.g. a bound bit of the wrapper -> the protection's compare and select (carry cells and LUTs whose
        # nets Yosys's techmap names) -> an output row: no net of the path is named in a generated RTL file
        return "its nets inside the core are techmapped cells', named in no generated RTL file"
    return "through the wrapper only"


def parse_seeds(text: str | Iterable[int | str] | None) -> tuple[int, ...]:
    """'1,2,3' (or a list) -> (1, 2, 3), sorted and unique; ConfigError names a bad seed."""
    if text is None:
        return ()
    items = text.replace(",", " ").split() if isinstance(text, str) else [str(x) for x in text]
    out = []
    for item in items:
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"seed {item!r} is not an integer; allowed: 0..2147483647, e.g. --seeds 1,2,3") from None
        out.append(check_range("seed", value, 0, 2**31 - 1))
    return tuple(sorted(set(out)))


def synthesize(
    cfg: ArrayConfig,
    out: Path | str,
    *,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    freq_mhz: float = DEFAULT_FREQ_MHZ,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
    pnr_mode: str = "routed",
    seeds: str | Iterable[int | str] | None = None,
    net: str = LENET,
) -> dict[str, Any]:
    """Synthesize `cfg` for `targets`; write and return `out/<cfg.key()>/synth.json`'s content.

    `pnr_mode` ("routed" or "placed", see PNR_MODES) says where the pnr target's Fmax comes from. `seeds`: more
    placement seeds for the pnr target besides `seed` (nextpnr again on the same netlist and part); their Fmax
    spread goes to `targets.pnr.seed_spread`, while `fmax_mhz` stays `seed`'s. `net`: the network whose
    inference latency synth.json states. synth.json also holds every target not asked for whose step
    directory still holds a result for the same RTL and settings."""
    from models.nets import get_net

    chosen = parse_targets(targets)
    seed = check_range("seed", seed, 0, 2**31 - 1)
    extra_seeds = tuple(s for s in parse_seeds(seeds) if s != seed)
    check_choice("device", device, DEVICE_CHOICES)
    check_choice("fmax", pnr_mode, PNR_MODES)
    if not 1.0 <= float(freq_mhz) <= 1000.0:
        raise ConfigError(f"freq must be in 1..1000 MHz, got {freq_mhz!r}")
    jobs = check_range("jobs", jobs, 1, 16)
    get_net(net)  # an unknown net fails here, before any tool runs

    run_dir = Path(out) / cfg.key()
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx_args = {"seed": seed, "freq_mhz": float(freq_mhz), "device": device, "force": force, "pnr_mode": pnr_mode}
    # Two runs of one design (two shells, two test workers) would clobber each other's step directories.
    with FileLock(str(run_dir / ".lock")):
        return _synthesize_locked(cfg, run_dir.resolve(), chosen, ctx_args, jobs, extra_seeds, net)


def _run_steps(ctx: StepContext, chosen: tuple[str, ...], jobs: int,
               extra_seeds: tuple[int, ...]) -> tuple[dict[str, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Run (or take from the cache) every chosen target's step, and the extra seeds after the primary pnr."""
    seeds: dict[int, dict[str, Any]] = {}

    def pnr() -> dict[str, Any]:
        primary = pnr_step(ctx)
        if extra_seeds:
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                seeds.update(zip(extra_seeds, pool.map(lambda s: seed_step(ctx, primary, s), extra_seeds),
                                 strict=True))
        return primary

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        **{t: (lambda t=t: yosys_step(ctx, t)) for t in YOSYS_TARGETS}, "pnr": pnr}
    if jobs == 1:
        metas = {t: runners[t]() for t in chosen}
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {t: pool.submit(runners[t]) for t in chosen}
            metas = {t: futures[t].result() for t in chosen}
    return metas, seeds


def _synthesize_locked(cfg: ArrayConfig, run_dir: Path, chosen: tuple[str, ...], ctx_args: dict[str, Any],
                       jobs: int, extra_seeds: tuple[int, ...], net: str) -> dict[str, Any]:
    from hdl_gen import generate

    t_start = time.perf_counter()
    log.info("synth %s -> %s (targets %s)", cfg.key(), run_dir, ", ".join(chosen))
    t0 = time.perf_counter()
    design = generate(cfg, run_dir / "rtl")
    t_gen = time.perf_counter() - t0
    sources = [os.path.relpath(Path(s).resolve(), run_dir) for s in design.sources]
    digests = {s: sha256_file(run_dir / s) for s in sources}
    ctx = StepContext(run_dir=run_dir, top=design.top, sources=sources, digests=digests, tools=tool_versions(),
                      **ctx_args)
    metas, seeds = _run_steps(ctx, chosen, jobs, extra_seeds)
    # Targets not asked for this time but still cached for this RTL and these settings stay in synth.json.
    for t in TARGETS:
        if t not in metas:
            found = pnr_cached(ctx) if t == "pnr" else yosys_cached(ctx, t)
            if found is not None:
                metas[t] = found
    if "pnr" in metas:
        seeds = {**cached_seeds(ctx, metas["pnr"]), **seeds}
    present = tuple(t for t in TARGETS if t in metas)
    results = {t: _target_result(ctx, t, metas[t], seeds if t == "pnr" else None) for t in present}
    fmax = results["pnr"]["fmax_mhz"] if "pnr" in results else None
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "derived": {"acc_bits": cfg.acc_bits, "v_bits": cfg.v_bits},
        "run_dir": str(run_dir),
        "top": design.top,
        "rtl": {"sources": sources, "sha256": digests},
        "tools": ctx.tools,
        "requested": list(chosen),
        "targets": results,
        "latency": inference_latency(cfg, fmax, net),
        "wall_s": {"generate": round(t_gen, 2),
                   **{t: round(sum(results[t]["wall_s"].values()), 2) for t in present},
                   "total": round(time.perf_counter() - t_start, 2)},
    }
    tmp = run_dir / "synth.json.tmp"
    tmp.write_text(jsonio.dumps(result, indent=2) + "\n")
    tmp.replace(run_dir / "synth.json")
    log.debug("wrote %s", run_dir / "synth.json")
    return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) pairs for a terminal summary of one synth.json."""
    t = result["targets"]
    rows: list[tuple[str, str]] = []
    for name in ("xc7", "xc7-nodsp"):
        if name in t:
            r = t[name]
            rows.append((name, f"LUT {r['luts']}  FF {r['ffs']}  DSP48E1 {r['dsp48e1']}  CARRY4 {r['carry4']}  "
                               f"BRAM36 {r['bram36_equiv']:g}  LUTRAM-LUTs {r['lutram_luts']}"))
    if "ecp5" in t:
        r = t["ecp5"]
        rows.append(("ecp5", f"LUT4 {r['lut4']}  CCU2C {r['ccu2c']}  MULT18 {r['mult18']}  FF {r['ffs']}  "
                             f"DP16KD {r['dp16kd']}  DPR16X4 {r['dpr16x4']}"))
    if "pnr" in t:
        r = t["pnr"]
        how = ", after placement only" if r.get("mode") == "placed" else ""
        rows.append(("pnr", f"Fmax {r['fmax_mhz']:.1f} MHz on {r['part']} {r['package']} (seed {r['seed']}{how})"))
        spread = r.get("seed_spread")
        if spread:
            rows.append(("seeds", f"Fmax min {spread['min_mhz']:.1f} / median {spread['median_mhz']:.1f} / max "
                                  f"{spread['max_mhz']:.1f} MHz over seeds {', '.join(map(str, spread['seeds']))}"))
        cp = r.get("critical_path")
        rows.append(("crit path", f"{cp['summary']} ({_through(cp)})" if cp else r.get("critical_path_note", "n/a")))
    lat = result["latency"]
    if lat["total_cycles"] is not None:
        tm = f", {lat['time_us']} us at Fmax" if lat["time_us"] is not None else ""
        rows.append(("latency", f"{lat['total_cycles']} cycles per {lat['net']} inference{tm}"))
    else:
        rows.append(("latency", f"n/a: {lat['error']}"))
    # A cached step shows the time of the run that produced it, marked with a star.
    cached = {k for k, v in t.items() if v.get("cached")}
    kept = [k for k in t if k not in result.get("requested", t)]
    if kept:
        rows.append(("kept", f"{', '.join(kept)}: not asked for, taken from their cached step directories"))
    walls = "  ".join(f"{k} {v}{'*' if k in cached else ''}" for k, v in result["wall_s"].items())
    rows.append(("wall s", walls + ("  (* cached)" if cached else "")))
    return rows
