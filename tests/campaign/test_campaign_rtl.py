"""A small campaign end to end on RTL: golden check, one outcome per fault, outcomes predicted
independently by the analytic dataflow model, and a killed-and-resumed run equal to an uninterrupted one."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from fault_campaigns.campaign import STORE_NAME, Campaign
from fault_campaigns.execution.software import software_records
from fault_campaigns.planning.config import CampaignConfig
from fault_campaigns.results.classify import Classifier
from fault_campaigns.results.store import OUTCOMES, ResultStore

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.xdist_group("campaign")]

SETTINGS = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, images=3, golden_images=2, faults=120, seed=11,
                per_channel_bounds=True)


def _simulates_in(p: psutil.Process, run_dir: Path) -> bool:
    try:
        return p.environ().get("QUASAR_RESULTS", "").startswith(str(run_dir))
    except psutil.Error:
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _frame(run_dir: Path):
    with ResultStore(run_dir / STORE_NAME, CampaignConfig(**SETTINGS).campaign_id, {}) as store:
        return store.frame().drop(columns=["sim_time_s"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("campaign") / "run"
    campaign = Campaign(CampaignConfig(**SETTINGS), run_dir, workers=2, progress=False)
    summary = campaign.run()
    return campaign, summary, run_dir


def test_golden_check_and_one_outcome_per_fault(finished):
    campaign, summary, run_dir = finished
    for p in ("none", "range"):
        assert summary["golden"][p]["bit_exact"] and summary["golden"][p]["tile_runs"] > 0
    frame = _frame(run_dir)
    planned = campaign.fault_list()
    assert len(planned) == 3 * SETTINGS["faults"]
    for p in ("none", "range"):
        rows = frame[frame.protection == p]
        assert sorted(rows.fault_id) == [f.fault_id for f in planned]  # each fault exactly once
        assert set(rows.outcome) <= set(OUTCOMES)
        assert sum(summary["designs"][p]["counts"].values()) == len(planned)
    assert (run_dir / "summary.json").is_file() and (run_dir / "report.md").is_file()


def test_outcomes_match_the_analytic_dataflow_model(finished):
    """Every fault again, predicted without a simulator: the same changed outputs and the same outcome."""
    campaign, _, run_dir = finished
    frame = _frame(run_dir)
    faults = campaign.fault_list()
    for p, design in campaign.designs.items():
        records = software_records(campaign, design, faults)
        rows = Classifier(campaign.maps, design.golden, design.model.forward_from).classify(faults, records)
        stored = frame[frame.protection == p].set_index("fault_id")
        got = [stored.loc[f.fault_id, "outcome"] for f in faults]
        assert got == [r["outcome"] for r in rows]
        changed = [stored.loc[f.fault_id, "changed_outputs"] for f in faults]
        assert changed == [r["changed_outputs"] for r in rows]
        if p == "range":
            events = [int(stored.loc[f.fault_id, "protection_events"]) for f in faults]
            assert events == [r["protection_events"] for r in rows]


def test_output_activation_flip_beyond_the_bound_is_clamped(finished, tmp_path):
    """MSB flips in output-activation registers that push a value above its channel's bound (found with
    the analytic model on the unprotected design) are clamped on RTL: the counter rises and nothing leaves
    the array outside [lo, hi]."""
    from fault_campaigns.execution.executor import LocalExecutor
    from testbenches.model import Tile, predict

    campaign, _, _ = finished
    design, none_cfg = campaign.designs["range"], campaign.designs["none"].array
    lm, msb = campaign.maps[0], 1 << (campaign.cfg.a_bits - 1)
    groups, expect_at = [], {}
    for tile in range(min(lm.tiles, 8)):
        g = campaign.tile_group(design, 0, 0, tile, [])
        ops = g["ops"]
        lo, hi = (np.broadcast_to(np.asarray(b), (campaign.cfg.cols,)) for b in (ops.lo, ops.hi))
        for j in range(campaign.cfg.cols):
            for cycle in range(campaign.tile_cycles[0]):
                raw = predict(none_cfg, Tile(ops.x, ops.w, ops.bias, ops.mult, ops.shift), f"oact_{j}", msb, cycle)
                over = np.argwhere(raw.out_act[:, j] > hi[j])
                over = over[over[:, 0] < ops.valid[0]] if j < ops.valid[1] else over[:0]  # real outputs only
                if len(over):
                    rid = len(expect_at)
                    g["runs"].append({"id": rid, "site": f"oact_{j}", "mask": msb, "cycle": cycle, "model": "flip"})
                    expect_at[rid] = (g, int(over[0][0]), j, lo, hi)
        if g["runs"]:
            groups.append(g)
    assert expect_at, "no output-activation flip exceeds a bound in these tiles"
    records = []
    LocalExecutor(design.build, tmp_path, workers=1).run(groups, records.extend, lambda *a: pytest.fail(str(a)))
    assert len(records) == len(expect_at)
    for rec in records:
        g, r, j, lo, hi = expect_at[rec["id"]]
        assert rec["fin"] and rec["viol"] == g["violations"] + 1
        out = g["act"].copy()
        for i, jj, v in rec["diff"]:
            out[i, jj] = v
        assert (out >= lo[None, :]).all() and (out <= hi[None, :]).all()
        assert out[r, j] == hi[j]


def test_killed_campaign_resumes_to_the_same_results(finished, tmp_path):
    _, _, reference = finished
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "quasar", "campaign", "--net", "tiny", "--bits", "4", "--rows", "4",
            "--cols", "4", "--k-max", "128", "--images", "3", "--golden-images", "2", "--faults", "120",
            "--seed", "11", "--per-channel-bounds", "--workers", "2", "--no-progress", "--out", str(run_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = run_dir / STORE_NAME
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.is_file():
            try:
                with sqlite3.connect(store) as db:
                    stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                stored = 0
            if stored:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the campaign ended before it could be killed"
    sims = [p for p in psutil.Process(proc.pid).children(recursive=True) if _simulates_in(p, run_dir)]
    os.kill(proc.pid, signal.SIGKILL)  # the campaign process alone, as `kill -9 PID` would
    proc.wait()
    _, alive = psutil.wait_procs(sims, timeout=0.2)  # a simulator's shard lasts longer than this
    alive = [p for p in alive if _running(p)]  # a dead simulator may wait a while for init to reap it
    assert not alive, f"simulators outlived the killed campaign: {alive}"
    assert 0 < stored < 2 * 3 * 120
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already stored" in done.stderr
    resumed, uninterrupted = _frame(run_dir), _frame(reference)
    assert len(resumed) == len(uninterrupted) == 2 * 3 * 120
    assert resumed.reset_index(drop=True).equals(uninterrupted.reset_index(drop=True))
