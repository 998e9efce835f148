"""The benchmark's fault-rate mode: whole inferences under a fault rate, on RTL and in software.

One fixed fault-rate campaign (network, bits, array, rates, images, trials, seed; both designs) runs
(a) on the product path (`RateEngine` with the simulator executor: every tile run holding a flip on
the RTL, fast build) and (b) with the software-level injector (`software_run_groups`: the same flips
applied to the integer tile computation by the multi-flip dataflow model), each timed end to end from
the drawn flips to the rows. Reported: inferences per second of each, their ratio, the agreement of
the rows (outcome, faulty top-1, changed layers, protection events), and the full tile-level check:
every RTL tile run of (a) against the dataflow model and against the plain reference path (the
GPI-clocked build). `quasar bench` exits with an error if any tile run differs.
Writes rates_bench.json and rates_bench.md; never touches a campaign's run directory.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fault_campaigns.execution.rate_jobs import record_diff, run_parts, single_runs
from fault_campaigns.planning.rates import check_rates
from quasar import jsonio
from quasar.errors import check_range

log = logging.getLogger(__name__)

ROW_FIELDS = ("outcome", "faulty_top1", "changed_layers", "protection_events", "flips")


@dataclass(frozen=True)
class RateBenchConfig:
    net: str = "lenet"
    bits: int = 8
    rows: int = 8
    cols: int = 8
    rates: tuple[float, ...] = (1e-6, 1e-5, 1e-4)
    images: int = 40
    trials: int = 1
    seed: int = 2026
    workers: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", check_rates(self.rates))
        check_range("images", self.images, 1, 100_000)
        check_range("trials", self.trials, 1, 10_000)
        check_range("workers", self.workers, 1, 256)

    def rate_config(self):  # type: ignore[no-untyped-def]
        from fault_campaigns.planning.rates import RateConfig

        return RateConfig(net=self.net, bits=self.bits, rows=self.rows, cols=self.cols, rates=self.rates,
                          images=self.images, trials=self.trials, seed=self.seed)


def _records_equal(a: dict, b: dict) -> bool:
    def key(r: dict) -> tuple:
        return r["fin"], r["viol"], sorted(map(tuple, record_diff(r).tolist()))

    return key(a) == key(b)


def tile_checks(rc, d, captured: list[tuple[dict, dict]], workers: int):  # type: ignore[no-untyped-def]
    """Every captured RTL tile run (group, record) against the multi-flip dataflow model and against the
    plain reference path (the GPI-clocked build): (equal to model, equal to plain, plain seconds)."""
    from fault_campaigns.execution.executor import LocalExecutor
    from fault_campaigns.execution.rates import software_run_groups
    from testbenches.sim import build

    model: list[dict] = []
    software_run_groups(d.array)([g for g, _ in captured], model.extend, lambda *a: None)
    model_ok = [_records_equal(rec, m) for (_, rec), m in zip(captured, model, strict=True)]
    plain: list[dict] = []
    lost: list[int] = []
    again = [{**g, "runs": [{**g["runs"][0], "id": n}]} for n, (g, _) in enumerate(captured)]  # ids were per step
    t0 = time.perf_counter()
    LocalExecutor(build(d.array), rc.out_dir / "work" / f"bench-plain-{d.protection}", workers=workers).run(
        again, plain.extend, lambda rid, what, logp: lost.append(rid))
    plain_s = time.perf_counter() - t0
    by_id = {r["id"]: r for r in plain}
    plain_ok = [n in by_id and _records_equal(rec, by_id[n]) for n, (_, rec) in enumerate(captured)]
    return model_ok, plain_ok, plain_s


def run_rate_bench(bc: RateBenchConfig, out: Path) -> dict:
    from fault_campaigns.analysis.rates import curve
    from fault_campaigns.execution.rates import Inference, RateEngine, software_run_groups
    from fault_campaigns.files import atomic_write
    from fault_campaigns.rate_campaign import RateCampaign

    out = Path(out)
    rc = RateCampaign(bc.rate_config(), out / "rates-work", workers=bc.workers, progress=False)
    rc.prepare()
    infs = rc.inferences()
    result: dict = {"config": asdict(bc), "designs": {}, "bit_cycles": rc.space.bit_cycles,
                    "mean_flips": float(np.mean([len(i.flips) for i in infs]))}
    all_rows = {"rtl": [], "software": []}
    mismatches = []
    for p, d in rc.campaign.designs.items():
        captured: list[tuple[dict, dict]] = []  # (group, record) of every RTL tile run
        rtl_run = rc.run_groups_for(d, f"bench-{p}-")

        def capture(groups, on_results, on_lost, rtl_run=rtl_run, captured=captured):  # type: ignore[no-untyped-def]
            by_id = single_runs(groups)

            def got(records):  # type: ignore[no-untyped-def]
                captured.extend((by_id[r["id"]], r) for r in records)
                on_results(records)

            rtl_run(groups, got, on_lost)

        timing = {}
        rows = {}
        for name, runner in (("rtl", capture), ("software", software_run_groups(d.array))):
            fresh = [Inference(i.rate, i.image, i.trial, i.flips) for i in infs]
            got_rows: list[dict] = []
            t0 = time.perf_counter()
            stats = RateEngine(rc.campaign, d, runner).run(fresh, got_rows.extend)
            timing[name] = {"wall_s": time.perf_counter() - t0, **stats}
            rows[name] = {(r["rate"], r["image"], r["trial"]): r for r in got_rows}
            all_rows[name] += got_rows
        agree = [all(rows["rtl"][k][f] == rows["software"][k][f] for f in ROW_FIELDS) for k in rows["rtl"]]
        model_ok, plain_ok, plain_s = tile_checks(rc, d, captured, bc.workers)
        for (g, _), ok_m, ok_p in zip(captured, model_ok, plain_ok, strict=True):
            if not (ok_m and ok_p) and len(mismatches) < 5:
                mismatches.append({"design": p, "layer_tile": list(g["key"]),
                                   "flips": run_parts(g, g["runs"][0])[2].tolist(),
                                   "model": ok_m, "plain": ok_p})
        n = len(infs)
        result["designs"][p] = {
            "inferences": n,
            "rtl_inferences_per_s": n / timing["rtl"]["wall_s"],
            "software_inferences_per_s": n / timing["software"]["wall_s"],
            "ratio": timing["software"]["wall_s"] / timing["rtl"]["wall_s"],
            "row_agreement": float(np.mean(agree)) if agree else float("nan"),
            "rtl_tile_runs": len(captured),
            "tile_runs_equal_model": int(sum(model_ok)),
            "tile_runs_equal_plain_rtl": int(sum(plain_ok)),
            "plain_rtl_s": plain_s,
            "timing": timing,
        }
    result["mismatches"] = mismatches
    import pandas as pd

    for name in ("rtl", "software"):
        result[f"curve_{name}"] = curve(pd.DataFrame(all_rows[name]), 0.95)["designs"]
    total = {k: sum(e["timing"][k]["wall_s"] for e in result["designs"].values()) for k in ("rtl", "software")}
    inf = sum(d["inferences"] for d in result["designs"].values())
    result.update(rtl_inferences_per_s=inf / total["rtl"], software_inferences_per_s=inf / total["software"],
                  ratio=total["software"] / total["rtl"])
    atomic_write(out / "rates_bench.json", jsonio.dumps(result, indent=2, default=float))
    atomic_write(out / "rates_bench.md", markdown(result))
    return result


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [f"# Fault-rate mode: {c['net']}, {c['bits']} bits, {c['rows']}x{c['cols']}, rates "
             f"{', '.join(f'{x:g}' for x in c['rates'])}, {c['images']} images x {c['trials']} trial(s), "
             f"seed {c['seed']}",
             "", f"Mean flips per inference {r['mean_flips']:.1f}.", "",
             "| design | inferences | RTL inf/s | software inf/s | RTL / software | rows agreeing | RTL tile runs | "
             "= dataflow model | = plain RTL |", "|---" * 9 + "|"]
    for p, d in r["designs"].items():
        lines.append(f"| {p} | {d['inferences']} | {d['rtl_inferences_per_s']:.1f} | "
                     f"{d['software_inferences_per_s']:.1f} | {d['ratio']:.2f} | {100 * d['row_agreement']:.2f}% | "
                     f"{d['rtl_tile_runs']} | "
                     f"{d['tile_runs_equal_model']} | {d['tile_runs_equal_plain_rtl']} |")
    lines += ["", f"Overall: RTL {r['rtl_inferences_per_s']:.1f} inferences/s, software "
              f"{r['software_inferences_per_s']:.1f}/s, ratio {r['ratio']:.2f} (target >= 0.5).", ""]
    if r["mismatches"]:
        lines += ["Tile runs that differ (first 5):", "", "```", json.dumps(r["mismatches"], indent=1), "```", ""]
    return "\n".join(lines)


def check_rates_result(result: dict) -> None:
    from quasar.errors import QuasarError

    for p, d in result["designs"].items():
        if d["tile_runs_equal_model"] != d["rtl_tile_runs"] or d["tile_runs_equal_plain_rtl"] != d["rtl_tile_runs"]:
            raise QuasarError(f"fault-rate fidelity failed for {p}: of {d['rtl_tile_runs']} RTL tile runs, "
                              f"{d['tile_runs_equal_model']} equal the dataflow model and "
                              f"{d['tile_runs_equal_plain_rtl']} the plain reference RTL path (rates_bench.md)")
