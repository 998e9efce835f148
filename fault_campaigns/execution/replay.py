"""Replay one fault of a finished (or running) campaign alone, on a waveform-enabled build.

The fault is looked up by id in the campaign's own deterministic fault list (rebuilt from
campaign.json, so no stored row is needed), its tile is loaded exactly as in the campaign, the
simulator runs that single fault with waveform tracing on (Verilator writes VCD), and the outcome is
classified the same way and compared with the stored row when there is one.

The run directory may be given relative to the current directory (the simulator runs elsewhere, so it
is resolved first). The simulation works in a fresh directory `replay/sim-fault<ID>-<design>/`; only a
replay that succeeds replaces `replay/fault<ID>-<design>.{jsonl,log,vcd}`, so a failed one never leaves
a truncated result beside an older waveform.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

from fault_campaigns.campaign import STORE_NAME, Campaign
from fault_campaigns.execution.executor import WORKER_MODULE, WORKER_TEST, log_tail
from fault_campaigns.planning.config import CampaignConfig
from fault_campaigns.results.classify import Classifier
from fault_campaigns.results.store import ResultStore
from quasar.errors import QuasarError, check_choice

TUPLE_FIELDS = ("protections", "targets", "layers")


def load_config(run_dir: Path) -> CampaignConfig:
    path = Path(run_dir) / "campaign.json"
    if not path.is_file():
        raise QuasarError(f"{str(run_dir)!r} is not a campaign run directory (no campaign.json)")
    raw = json.loads(path.read_text())
    raw.pop("campaign_id", None)
    for name in TUPLE_FIELDS:
        if raw.get(name) is not None:
            raw[name] = tuple(raw[name])
    return CampaignConfig(**raw)


def replay_fault(run_dir: Path, fault_id: int, protection: str = "none", waves: bool = True) -> dict:
    from testbenches.sim import build, sim_command

    run_dir = Path(run_dir).resolve()  # the simulator runs in another directory
    cfg = load_config(run_dir)
    from quasar.protection import ProtectionSpec

    protection = str(ProtectionSpec.parse(protection))  # the canonical name the campaign stored
    check_choice("protection", protection, cfg.protections)
    campaign = Campaign(cfg, run_dir, workers=1, progress=False)
    campaign.prepare()
    faults = campaign.fault_list()
    if not 0 <= fault_id < len(faults):
        raise QuasarError(f"fault id {fault_id!r} is not in this campaign (ids 0..{len(faults) - 1})")
    fault = faults[fault_id]
    design = campaign.designs[protection]
    sim = build(design.array, waves=waves)
    out = run_dir / "replay"
    name = f"fault{fault_id}-{protection}"
    stem = out / name
    group = campaign.tile_group(design, fault.image, fault.layer, fault.tile, [fault.run()])
    workdir = out / f"sim-{name}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    job, results, log = workdir / "job.pkl", workdir / f"{name}.jsonl", workdir / f"{name}.log"
    with open(job, "wb") as fh:
        pickle.dump({"array": design.array.to_dict(), "groups": [group]}, fh, protocol=5)
    results.write_bytes(b"")
    cmd, env, cwd = sim_command(sim, WORKER_MODULE, WORKER_TEST, waves=waves,
                                extra_env={"QUASAR_JOB": str(job), "QUASAR_RESULTS": str(results)},
                                results_xml=workdir / "results.xml")
    with open(log, "wb") as fh:
        rc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT).returncode
    records = [json.loads(line) for line in results.read_text().splitlines() if line and "ready" not in line]
    if rc != 0:
        raise QuasarError(f"the replay simulator failed (its exit status {rc}); earlier replay files of this fault "
                          f"are untouched; log {log}:\n{log_tail(log)}")
    if len(records) != 1:
        raise QuasarError(f"the replay simulator reported {len(records)} results instead of 1; earlier replay files "
                          f"of this fault are untouched; log {log}:\n{log_tail(log)}")
    row = Classifier(campaign.maps, design.golden, design.model.forward_from).classify([fault], records)[0]
    trace = None
    if waves:
        traces = sorted(p for p in Path(cwd).rglob("*") if p.suffix in (".fst", ".vcd"))
        if not traces:
            raise QuasarError(f"the simulator wrote no waveform under {cwd}; log {log}")
        trace = traces[0]
    # Success: the new files replace the old ones together (a stale waveform of either format goes too).
    for old in (".vcd", ".fst"):
        stem.with_suffix(old).unlink(missing_ok=True)
    wave = None
    if trace is not None:
        wave = stem.with_suffix(trace.suffix)
        os.replace(trace, wave)
    os.replace(results, stem.with_suffix(".jsonl"))
    os.replace(log, stem.with_suffix(".log"))
    shutil.rmtree(workdir, ignore_errors=True)
    stored = None
    if (run_dir / STORE_NAME).is_file():
        with ResultStore(run_dir / STORE_NAME, cfg.campaign_id, {}) as store:
            frame = store.frame()
        hit = frame[(frame.protection == protection) & (frame.fault_id == fault_id)]
        if len(hit):
            stored = hit.iloc[0]["outcome"]
    return {
        "fault": fault.to_row(), "protection": protection, "outcome": row["outcome"],
        "golden_top1": row["golden_top1"], "faulty_top1": row["faulty_top1"], "label": row["label"],
        "changed_outputs": row.get("changed_outputs"), "protection_events": records[0]["viol"],
        "tile_diff": records[0]["diff"], "cycles": records[0]["cyc"], "stored_outcome": stored,
        "matches_stored": None if stored is None else stored == row["outcome"],
        "waveform": None if wave is None else str(wave),
        "waveform_window": f"tile run starts at edge 0 after `start`; the fault lands after edge {fault.cycle}",
    }
