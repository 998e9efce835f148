"""Replay one row of a fault-rate campaign: the whole inference again, its RTL tile runs with waveforms.

The inference's flips are drawn again from the campaign's configuration (rates_campaign.json; a pure
function of seed, image, trial and rate) and checked against the stored flip list; the inference runs
layer by layer exactly as in the campaign, but each layer's RTL tile runs go to one simulator process
on a waveform build (GPI clock, no shortcut), whose trace is kept as
`DIR/replay/rate<rate>-image<i>-trial<t>-<design>-layer<l>.vcd` (or .fst). The replayed row is compared with
the stored one.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

from fault_campaigns.execution.executor import WORKER_MODULE, WORKER_TEST, log_tail
from fault_campaigns.execution.rates import RateEngine
from quasar.errors import QuasarError, check_choice

COMPARED = ("outcome", "faulty_top1", "changed_layers", "protection_events", "flips", "flip_list")


def load_rate_config(run_dir: Path):  # type: ignore[no-untyped-def]
    from fault_campaigns.planning.rates import RateConfig
    from fault_campaigns.rate_campaign import RATE_CONFIG_NAME

    path = Path(run_dir) / RATE_CONFIG_NAME
    if not path.is_file():
        raise QuasarError(f"{str(run_dir)!r} is not a fault-rate run directory (no {RATE_CONFIG_NAME})")
    return RateConfig.from_dict(json.loads(path.read_text()))


def replay_inference(run_dir: Path, rate: float, image: int, trial: int, protection: str = "none",
                     waves: bool = True) -> dict:
    from fault_campaigns.rate_campaign import RATE_STORE_NAME, RateCampaign
    from fault_campaigns.results.rate_store import RateStore
    from testbenches.sim import build, sim_command

    run_dir = Path(run_dir)
    cfg = load_rate_config(run_dir)
    check_choice("protection", protection, cfg.protections)
    if rate not in cfg.rates:
        raise QuasarError(f"rate {rate!r} is not one of this campaign's rates {list(cfg.rates)}")
    if not 0 <= image < cfg.images or not 0 <= trial < cfg.trials:
        raise QuasarError(f"image {image!r} / trial {trial!r} not in this campaign (images 0..{cfg.images - 1}, "
                          f"trials 0..{cfg.trials - 1})")
    rc = RateCampaign(cfg, run_dir, workers=1, progress=False)
    rc.prepare(golden_check=False)
    inf = rc.inferences([(rate, image, trial)])[0]
    d = rc.campaign.designs[protection]
    sim = build(d.array, waves=waves)
    out = run_dir / "replay"
    out.mkdir(exist_ok=True)
    stem = f"rate{rate:g}-image{image}-trial{trial}-{protection}"
    traces: list[str] = []

    def run_groups(groups, on_results, on_lost) -> None:  # type: ignore[no-untyped-def]
        layer = groups[0]["key"][0]
        base = out / f"{stem}-layer{layer}"
        job, results = Path(f"{base}.job.pkl"), Path(f"{base}.jsonl")
        with open(job, "wb") as fh:
            pickle.dump({"array": d.array.to_dict(), "groups": groups}, fh, protocol=5)
        results.write_bytes(b"")
        workdir = out / f"sim-{stem}-layer{layer}"
        shutil.rmtree(workdir, ignore_errors=True)
        cmd, env, cwd = sim_command(sim, WORKER_MODULE, WORKER_TEST, waves=waves,
                                    extra_env={"QUASAR_JOB": str(job), "QUASAR_RESULTS": str(results)},
                                    results_xml=workdir / "results.xml")
        log = Path(f"{base}.log")
        with open(log, "wb") as fh:
            rc_ = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
        records = [json.loads(line) for line in results.read_text().splitlines() if line and "ready" not in line]
        if rc_ != 0 or len(records) != len(groups):
            raise QuasarError(f"the replay simulation failed (exit {rc_}); log {log}:\n{log_tail(log)}")
        if waves:
            found = sorted(p for p in Path(cwd).rglob("*") if p.suffix in (".fst", ".vcd"))
            if not found:
                raise QuasarError(f"the simulator wrote no waveform under {cwd}; log {log}")
            wave = Path(f"{base}{found[0].suffix}")
            shutil.move(found[0], wave)
            traces.append(str(wave))
        on_results(records)

    rows: list[dict] = []
    RateEngine(rc.campaign, d, run_groups, chunks=1).run([inf], rows.extend)
    row = rows[0]
    stored = None
    if (run_dir / RATE_STORE_NAME).is_file():
        with RateStore(run_dir / RATE_STORE_NAME, cfg.campaign_id, {}) as store:
            frame = store.frame()
        hit = frame[(frame.protection == protection) & (frame.rate == rate) & (frame.image == image)
                    & (frame.trial == trial)]
        if len(hit):
            stored = {k: hit.iloc[0][k] for k in COMPARED}
    same = None if stored is None else all(_norm(stored[k]) == _norm(row[k]) for k in COMPARED)
    return {"rate": rate, "image": image, "trial": trial, "protection": protection,
            "flips": json.loads(row["flip_list"]), "outcome": row["outcome"], "label": row["label"],
            "golden_top1": row["golden_top1"], "faulty_top1": row["faulty_top1"], "rtl_tile_runs": row["rtl_tile_runs"],
            "stored": None if stored is None else {k: _norm(v) for k, v in stored.items() if k != "flip_list"},
            "matches_stored": same, "waveforms": traces,
            "waveform_note": "one file per layer with flips; tile runs follow each other in it, each starting at the "
                             "edge after `start`, flips after the edges of the flip list"}


def _norm(value):  # type: ignore[no-untyped-def]
    """A stored or replayed cell as a plain value (pandas turns a column with a null into floats)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        value = value.item() if hasattr(value, "item") else value
        return int(value) if isinstance(value, float) and value.is_integer() else value
    return value
