"""`synthesize`: generate the RTL, run (or reuse) the targets' steps, assemble synth.json from the step directories."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from hdl_gen.synth.cache import StepContext, sha256_file
from hdl_gen.synth.devices import DEVICE_CHOICES
from hdl_gen.synth.latency import lenet_latency
from hdl_gen.synth.netlist import cell_counts, ecp5_metrics, memory_mapping, xilinx_metrics, yosys_banner
from hdl_gen.synth.pnr_flow import pnr_step
from hdl_gen.synth.settings import (
    DEFAULT_FREQ_MHZ,
    DEFAULT_SEED,
    PNR_MODES,
    SCHEMA_VERSION,
    TARGETS,
    WRAPPER_TOP,
    parse_targets,
)
from hdl_gen.synth.timing import placed_timing, pnr_timing, pnr_utilization
from hdl_gen.synth.tools import tool_versions
from hdl_gen.synth.yosys_flow import ecp5_script, xc7_script, yosys_step
from quasar.errors import ConfigError, check_choice, check_range

if TYPE_CHECKING:
    from hdl_gen import ArrayConfig

log = logging.getLogger(__name__)

def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _target_result(ctx: StepContext, target: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Parse one step directory's raw tool output into the figures of synth.json."""
    step_dir = ctx.run_dir / (ctx.pnr_dir if target == "pnr" else target)
    ylog = (step_dir / "yosys.log").read_text(errors="replace")
    cells = cell_counts(_read_json(step_dir / "stat.json"), WRAPPER_TOP if target == "pnr" else ctx.top)
    common = {"cached": meta["cached"], "wall_s": meta["wall_s"], "dir": str(step_dir), "yosys": yosys_banner(ylog)}
    if target == "pnr":
        report = _read_json(step_dir / "report.json")
        wrapper_cells = ecp5_metrics(cells)
        nextpnr_log = step_dir / f"nextpnr-{meta['device']}.log"
        placed = meta.get("mode") == "placed"
        timing = placed_timing(nextpnr_log.read_text(errors="replace")) if placed else pnr_timing(report)
        return {
            **{k: meta[k] for k in ("device", "part", "package", "speed", "seed", "router")},
            "mode": "placed" if placed else "routed",
            "fmax_source": ("nextpnr timing after placement (--no-route), wire delays estimated" if placed
                            else "nextpnr timing of the routed design"),
            **timing,
            "utilization": pnr_utilization(report),
            "tried": meta["tried"],
            "wrapper": {**meta["wrapper"], **{k: wrapper_cells[k] for k in
                                              ("lut4", "ccu2c", "lut4_equiv", "ffs", "mult18", "dp16kd", "dpr16x4")}},
            "nextpnr_log": str(nextpnr_log),
            **common,
        }
    metrics = xilinx_metrics(cells) if target.startswith("xc7") else ecp5_metrics(cells)
    return {**metrics, "memories": memory_mapping(ylog), "cells": cells,
            "script": (step_dir / "script.ys").read_text(), **common}


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
) -> dict[str, Any]:
    """Synthesize `cfg` for `targets`; write and return `out/<cfg.key()>/synth.json`'s content.

    `pnr_mode` ("routed" or "placed", see PNR_MODES) says where the pnr target's Fmax comes from."""
    chosen = parse_targets(targets)
    seed = check_range("seed", seed, 0, 2**31 - 1)
    check_choice("device", device, DEVICE_CHOICES)
    check_choice("fmax", pnr_mode, PNR_MODES)
    if not 1.0 <= float(freq_mhz) <= 1000.0:
        raise ConfigError(f"freq must be in 1..1000 MHz, got {freq_mhz!r}")
    jobs = check_range("jobs", jobs, 1, 16)

    run_dir = Path(out) / cfg.key()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Two runs of one design (two shells, two test workers) would clobber each other's step directories.
    with FileLock(str(run_dir / ".lock")):
        return _synthesize_locked(cfg, run_dir.resolve(), chosen, seed, float(freq_mhz), device, force, jobs,
                                  pnr_mode)


def _synthesize_locked(cfg: ArrayConfig, run_dir: Path, chosen: tuple[str, ...], seed: int, freq_mhz: float,
                       device: str, force: bool, jobs: int, pnr_mode: str) -> dict[str, Any]:
    from hdl_gen import generate

    t_start = time.perf_counter()
    log.info("synth %s -> %s (targets %s)", cfg.key(), run_dir, ", ".join(chosen))
    t0 = time.perf_counter()
    design = generate(cfg, run_dir / "rtl")
    t_gen = time.perf_counter() - t0
    sources = [os.path.relpath(Path(s).resolve(), run_dir) for s in design.sources]
    digests = {s: sha256_file(run_dir / s) for s in sources}
    ctx = StepContext(run_dir=run_dir, top=design.top, sources=sources, digests=digests, tools=tool_versions(),
                      seed=seed, freq_mhz=freq_mhz, device=device, force=force, pnr_mode=pnr_mode)

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "xc7": lambda: yosys_step(ctx, "xc7", xc7_script(sources, design.top, "xc7", nodsp=False)),
        "xc7-nodsp": lambda: yosys_step(ctx, "xc7-nodsp", xc7_script(sources, design.top, "xc7-nodsp", nodsp=True)),
        "ecp5": lambda: yosys_step(ctx, "ecp5", ecp5_script(sources, design.top, "ecp5")),
        "pnr": lambda: pnr_step(ctx),
    }
    metas: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for t in chosen:
            metas[t] = runners[t]()
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {t: pool.submit(runners[t]) for t in chosen}
            for t in chosen:
                metas[t] = futures[t].result()

    results = {t: _target_result(ctx, t, metas[t]) for t in chosen}
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
        "targets": results,
        "latency": lenet_latency(cfg, fmax),
        "wall_s": {"generate": round(t_gen, 2),
                   **{t: round(sum(results[t]["wall_s"].values()), 2) for t in chosen},
                   "total": round(time.perf_counter() - t_start, 2)},
    }
    tmp = run_dir / "synth.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
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
    lat = result["latency"]
    if lat["total_cycles"] is not None:
        tm = f", {lat['time_us']} us at Fmax" if lat["time_us"] is not None else ""
        rows.append(("latency", f"{lat['total_cycles']} cycles per {lat['net']} inference{tm}"))
    else:
        rows.append(("latency", f"n/a: {lat['error']}"))
    # A cached step shows the time of the run that produced it, marked with a star.
    cached = {k for k, v in t.items() if v.get("cached")}
    walls = "  ".join(f"{k} {v}{'*' if k in cached else ''}" for k, v in result["wall_s"].items())
    rows.append(("wall s", walls + ("  (* cached)" if cached else "")))
    return rows
