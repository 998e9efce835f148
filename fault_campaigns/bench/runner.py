"""Campaign speed benchmark: RTL injection against software-level injection on the same faults.

One fixed campaign (network, bits, array, seed, faults per layer; both protection modes) runs
(a) on the product's RTL path (`Campaign.run_design`: simulator workers, downstream classification,
results store) and (b) through the software-level injector (`fault_campaigns.execution.software`: the same bit
flipped in the integer reference model at the equivalent place of the tile computation, then the same
classification). It reports injections per second of each, their ratio, and the agreement: the
fraction of faults whose outcome class the software injector predicts, per register kind and layer.

Fidelity: every shortcut of the RTL fast path is checked on a seeded sample of faults against a plain
full-tile RTL run (the GPI-clocked testbench, no shortcut): identical run records (finished, cycles,
protection events, every differing tile output) and identical outcomes.

Writes `bench.json` and `bench.md` in the output directory; never touches a campaign's run directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from quasar import jsonio
from quasar.errors import QuasarError, check_range

log = logging.getLogger(__name__)

BENCH_SCHEMA = 1


@dataclass(frozen=True)
class BenchConfig:
    net: str = "lenet"
    bits: int = 8
    rows: int = 8
    cols: int = 8
    images: int = 16
    faults: int = 2000  # per layer
    seed: int = 2026
    workers: int = 2
    fidelity: int = 1000  # faults of the sample checked against the plain full-tile RTL run, per design

    def __post_init__(self) -> None:
        check_range("faults per layer", self.faults, 1, 1_000_000)
        check_range("workers", self.workers, 1, 256)
        check_range("fidelity sample", self.fidelity, 0, 1_000_000)
        check_range("images", self.images, 1, 100_000)

    def campaign_config(self):  # type: ignore[no-untyped-def]
        from fault_campaigns.planning.config import CampaignConfig

        return CampaignConfig(net=self.net, bits=self.bits, rows=self.rows, cols=self.cols, images=self.images,
                              golden_images=1, faults=self.faults, seed=self.seed)


# ---- the two injectors --------------------------------------------------------------------------
def _fresh_store(campaign, path: Path):  # type: ignore[no-untyped-def]
    from fault_campaigns.results.store import ResultStore

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return ResultStore(path, campaign.cfg.campaign_id, campaign.store_config())


def run_rtl(campaign, d, faults, work: Path) -> tuple[dict[int, dict], float, dict]:  # type: ignore[no-untyped-def]
    """The product path end to end (workers, classification, store): {fault_id: row}, seconds, and
    where the simulator processes spent their time (summed over them)."""
    from fault_campaigns.execution.sim_worker import PROFILE_ENV

    store = _fresh_store(campaign, work / f"rtl-{d.protection}.sqlite")
    profile = work / f"workers-{d.protection}.jsonl"
    profile.unlink(missing_ok=True)
    before = os.environ.get(PROFILE_ENV)
    os.environ[PROFILE_ENV] = str(profile)  # inherited by the simulators
    try:
        t0 = time.perf_counter()
        campaign.run_design(d, faults, store)
        seconds = time.perf_counter() - t0
        frame = store.frame()
    finally:
        store.close()
        if before is None:
            os.environ.pop(PROFILE_ENV, None)
        else:
            os.environ[PROFILE_ENV] = before
    workers: dict[str, float] = defaultdict(float)
    if profile.is_file():
        for line in profile.read_text().splitlines():
            for key, value in json.loads(line).items():
                workers[key] += value
        workers["processes"] = len(profile.read_text().splitlines())
    return ({int(r["fault_id"]): dict(r) for r in frame.to_dict("records")}, seconds,
            {k: round(v, 3) for k, v in workers.items()})


def run_software(campaign, d, faults) -> tuple[dict[int, dict], dict[str, float]]:  # type: ignore[no-untyped-def]
    """The software-level injector end to end (injection + the same classification); rows, timings."""
    from fault_campaigns.execution.software import software_records
    from fault_campaigns.results.classify import Classifier

    t0 = time.perf_counter()
    records = software_records(campaign, d, faults)
    t1 = time.perf_counter()
    rows = Classifier(campaign.maps, d.golden, d.model.forward_from).classify(faults, records)
    t2 = time.perf_counter()
    out = {f.fault_id: {**row, "diff": rec["diff"], "viol": rec["viol"]}
           for f, row, rec in zip(faults, rows, records, strict=True)}
    return out, {"inject_s": t1 - t0, "classify_s": t2 - t1, "total_s": t2 - t0}


def agreement(campaign, faults, rtl: dict[int, dict], sw: dict[int, dict]) -> dict:  # type: ignore[no-untyped-def]
    """Fraction of faults whose outcome the software injector predicts, overall / per kind / per layer."""
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for f in faults:
        same = int(rtl[f.fault_id]["outcome"] == sw[f.fault_id]["outcome"])
        for key in ((f.kind, campaign.maps[f.layer].name), (f.kind, "all"), ("all", campaign.maps[f.layer].name),
                    ("all", "all")):
            cells[key][0] += same
            cells[key][1] += 1
    return {f"{k}/{layer}": {"agree": a, "faults": n, "fraction": a / n}
            for (k, layer), (a, n) in sorted(cells.items())}


# ---- fidelity of the fast path --------------------------------------------------------------------
def sample(faults, n: int, seed: int) -> list:  # type: ignore[no-untyped-def]
    if n >= len(faults):
        return list(faults)
    idx = np.sort(np.random.default_rng([seed, 0xF1DE]).choice(len(faults), size=n, replace=False))
    return [faults[i] for i in idx]


def raw_records(campaign, d, faults, work: Path, fast: bool) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    """Worker records of `faults` on the fast path (fast build, shortcuts as run_design uses them) or on
    the plain reference (GPI-clocked build, full tile runs, no shortcut)."""
    from fault_campaigns.execution.executor import LocalExecutor
    from testbenches import sim

    by_group: dict[tuple[int, int, int], list] = defaultdict(list)
    for f in faults:
        by_group[(f.image, f.layer, f.tile)].append(f)
    groups = [campaign.tile_group(d, *key, [f.run() for f in fs], fast=fast) for key, fs in sorted(by_group.items())]
    build = sim.build(d.array, clock=sim.FAST_CLOCK) if fast else d.build
    records: list[dict] = []
    lost: list[tuple] = []
    tag = "fast" if fast else "plain"
    LocalExecutor(build, work / f"fidelity-{tag}-{d.protection}", workers=campaign.workers).run(
        groups, records.extend, lambda *a: lost.append(a))
    if lost:
        raise QuasarError(f"fidelity run ({tag}, {d.protection}) lost runs: {lost[:3]}")
    return {r["id"]: r for r in records}


def compare_records(campaign, d, faults, fast: dict[int, dict], plain: dict[int, dict]) -> dict:  # type: ignore[no-untyped-def]
    """Identical records (fin, cyc, viol, diff, and the changed accumulators `vd` that the masking stage
    rests on) and identical classified outcomes, fault by fault."""
    from fault_campaigns.results.classify import Classifier

    clf = Classifier(campaign.maps, d.golden, d.model.forward_from)
    recs_fast = [fast[f.fault_id] for f in faults]
    recs_plain = [plain[f.fault_id] for f in faults]
    out_fast = clf.classify(faults, recs_fast)
    out_plain = clf.classify(faults, recs_plain)
    mismatches = []
    for f, a, b, oa, ob in zip(faults, recs_fast, recs_plain, out_fast, out_plain, strict=True):
        if ([a["fin"], a["cyc"], a["viol"], a["diff"], a.get("vd")] != [b["fin"], b["cyc"], b["viol"], b["diff"],
                                                                       b.get("vd")]
                or oa["outcome"] != ob["outcome"]):
            mismatches.append({"fault": asdict(f), "fast": {k: a.get(k) for k in ("fin", "cyc", "viol", "diff", "vd")},
                               "plain": {k: b.get(k) for k in ("fin", "cyc", "viol", "diff", "vd")},
                               "outcomes": [oa["outcome"], ob["outcome"]]})
    return {"faults": len(faults), "identical": len(faults) - len(mismatches), "mismatches": mismatches[:5]}


# ---- the benchmark --------------------------------------------------------------------------------
def _load() -> list[float]:
    try:
        with open("/proc/loadavg") as fh:
            return [float(v) for v in fh.read().split()[:3]]
    except OSError:
        return []


def run_bench(bc: BenchConfig, out_dir: Path, fidelity_only: bool = False) -> dict:
    """Run the benchmark; write bench.json and bench.md into `out_dir` (its `work/` is scratch)."""
    from fault_campaigns.campaign import Campaign
    from fault_campaigns.files import check_out_dir

    cc = bc.campaign_config()  # every option is checked before anything is touched
    out_dir = check_out_dir(Path(out_dir).resolve())  # the simulators run in other directories
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(cc, work / "campaign", workers=bc.workers, progress=False)
    t0 = time.perf_counter()
    campaign.prepare()
    prep_s = time.perf_counter() - t0
    faults = campaign.fault_list()
    result: dict = {"schema": BENCH_SCHEMA, "config": asdict(bc), "campaign_id": campaign.cfg.campaign_id,
                    "faults_per_design": len(faults), "prepare_s": round(prep_s, 2), "load_before": _load(),
                    "designs": {}}
    from testbenches import sim

    for p, d in campaign.designs.items():
        golden = campaign.golden_check(d)
        fast_build = sim.build(d.array, clock=sim.FAST_CLOCK)  # built (or reused) before any timing
        entry: dict = {"golden_tile_runs": golden["tile_runs"], "fast_build_s": round(fast_build.build_seconds, 2)}
        if not fidelity_only:
            rtl, rtl_s, workers = run_rtl(campaign, d, faults, work)
            sw, sw_t = run_software(campaign, d, faults)
            entry.update({
                "rtl": {"seconds": round(rtl_s, 3), "injections_per_s": round(len(faults) / rtl_s, 1),
                        "sim_time_s": round(sum(r["sim_time_s"] or 0.0 for r in rtl.values()), 3),
                        "sim_cycles": int(sum(r["sim_cycles"] or 0 for r in rtl.values())), "workers": workers},
                "software": {**{k: round(v, 3) for k, v in sw_t.items()},
                             "injections_per_s": round(len(faults) / sw_t["total_s"], 1)},
                "ratio": round(sw_t["total_s"] / rtl_s, 3),
                "agreement": agreement(campaign, faults, rtl, sw),
                "outcomes_rtl": _counts(r["outcome"] for r in rtl.values()),
            })
        if bc.fidelity:
            chosen = sample(faults, bc.fidelity, bc.seed)
            fast = raw_records(campaign, d, chosen, work, fast=True)
            plain = raw_records(campaign, d, chosen, work, fast=False)
            entry["fidelity"] = compare_records(campaign, d, chosen, fast, plain)
        result["designs"][p] = entry
    result["load_after"] = _load()
    if not fidelity_only:
        n = len(faults) * len(campaign.designs)
        rtl_s = sum(e["rtl"]["seconds"] for e in result["designs"].values())
        sw_s = sum(e["software"]["total_s"] for e in result["designs"].values())
        result["rtl_injections_per_s"] = round(n / rtl_s, 1)
        result["software_injections_per_s"] = round(n / sw_s, 1)
        result["ratio"] = round(sw_s / rtl_s, 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(jsonio.dumps(result, indent=2) + "\n")  # strict JSON: NaN -> null
    (out_dir / "bench.md").write_text(markdown(result))
    return result


def _counts(values) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(sorted(out.items()))


def markdown(result: dict) -> str:
    c = result["config"]
    lines = [f"# Campaign speed: {c['net']}, {c['bits']} bits, {c['rows']}x{c['cols']}, {c['faults']} faults per "
             f"layer, seed {c['seed']}, {c['workers']} workers",
             "", f"load average before / after: {result['load_before']} / {result['load_after']}", ""]
    if "ratio" in result:
        lines += ["| design | RTL inj/s | software inj/s | RTL/software |", "|---|---|---|---|"]
        for p, e in result["designs"].items():
            lines.append(f"| {p} | {e['rtl']['injections_per_s']:.0f} | {e['software']['injections_per_s']:.0f} | "
                         f"{e['ratio']:.2f} |")
        lines.append(f"| both | {result['rtl_injections_per_s']:.0f} | {result['software_injections_per_s']:.0f} | "
                     f"{result['ratio']:.2f} |")
        lines += ["", "Agreement (software outcome = RTL outcome):", "",
                  "| design | kind | layer | agree | faults | fraction |", "|---|---|---|---|---|---|"]
        for p, e in result["designs"].items():
            for key, a in e["agreement"].items():
                kind, layer = key.split("/")
                lines.append(f"| {p} | {kind} | {layer} | {a['agree']} | {a['faults']} | {a['fraction']:.4f} |")
    fid = [(p, e["fidelity"]) for p, e in result["designs"].items() if "fidelity" in e]
    if fid:
        lines += ["", "Fidelity (fast path vs plain full-tile RTL: records and outcomes):", ""]
        lines += [f"- {p}: {f['identical']} / {f['faults']} identical" for p, f in fid]
    return "\n".join(lines) + "\n"


def check(result: dict) -> None:
    """Raise unless every fidelity sample is identical."""
    for p, e in result["designs"].items():
        f = e.get("fidelity")
        if f and f["identical"] != f["faults"]:
            raise QuasarError(f"fast RTL path differs from the plain full-tile run on {f['faults'] - f['identical']} "
                              f"of {f['faults']} faults ({p}); first: {json.dumps(f['mismatches'][:1])}")


__all__ = ["BenchConfig", "check", "markdown", "run_bench"]
