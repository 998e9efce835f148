"""The shard executor survives its simulators: crashes, stalls and start failures (with a stand-in
simulator that speaks the shard protocol, no RTL), then the same on real RTL: a simulator killed
mid-shard, a control-register flip that keeps the array from finishing, and the same results
whatever the number of simulators."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from fault_campaigns.campaign import Campaign
from fault_campaigns.execution.executor import LocalExecutor
from quasar.errors import QuasarError
from tests.campaign.conftest import result_rows, small_config

# A stand-in simulator: reads the job, says ready, reports each run; FAKE_MODE makes it misbehave on FAKE_RUN.
FAKE_SIM = r"""
import json, os, pickle, sys, time
job = pickle.load(open(os.environ["QUASAR_JOB"], "rb"))
mode, target, marker = os.environ["FAKE_MODE"], int(os.environ["FAKE_RUN"]), os.environ["FAKE_MARKER"]
if mode == "nostart":
    print("simulator: cannot load the design", flush=True)
    sys.exit(3)
out = open(os.environ["QUASAR_RESULTS"], "a", buffering=1)
out.write('{"ready":1}\n')
for g in job["groups"]:
    for r in g["runs"]:
        if r["id"] == target and not (mode == "crash_once" and os.path.exists(marker)):
            open(marker, "a").close()
            if mode == "stall":
                time.sleep(60)
            os._exit(139)
        out.write(json.dumps({"id": r["id"], "fin": True, "cyc": 9, "viol": 0, "diff": [], "t": 0}) + "\n")
        if r["id"] == 0:
            out.write(json.dumps({"id": 0, "fin": True, "cyc": 9, "viol": 0, "diff": [], "t": 0}) + "\n")
"""

GROUPS = [{"runs": [{"id": i} for i in range(g * 5, g * 5 + 5)]} for g in range(2)]


@pytest.fixture
def fake_sim(monkeypatch, tmp_path):
    import testbenches.sim

    def configure(mode: str, run: int = 3):
        def sim_command(build, module, test, extra_env=None, python_path=(), results_xml=None):
            env = {**os.environ, **(extra_env or {}), "FAKE_MODE": mode, "FAKE_RUN": str(run),
                   "FAKE_MARKER": str(tmp_path / "crashed-once")}
            return [sys.executable, "-c", FAKE_SIM], env, tmp_path

        monkeypatch.setattr(testbenches.sim, "sim_command", sim_command)
        return SimpleNamespace(cfg=SimpleNamespace(to_dict=dict))

    return configure


def _run(build, tmp_path, workers=1, stall_timeout=30.0):
    records, lost = [], []
    ex = LocalExecutor(build, tmp_path / "work", workers=workers, stall_timeout=stall_timeout, poll_interval=0.02)
    ex.run(GROUPS, records.extend, lambda rid, outcome, logp: lost.append((rid, outcome)))
    return sorted(r["id"] for r in records), lost


def test_a_simulator_killed_once_costs_a_retry_not_an_outcome(fake_sim, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ids, lost = _run(fake_sim("crash_once"), tmp_path)
    assert ids == list(range(10)) and lost == []  # run 0's duplicate line is reported once
    assert "crashed on run 3" in caplog.text and "retrying the rest of its shard" in caplog.text


def test_a_run_that_kills_every_simulator_is_recorded_crash(fake_sim, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ids, lost = _run(fake_sim("crash"), tmp_path, workers=2)
    assert ids == [i for i in range(10) if i != 3] and lost == [(3, "crash")]
    assert "recorded as crash" in caplog.text


def test_a_stalled_simulator_is_killed_and_its_run_recorded_hang(fake_sim, tmp_path):
    t0 = time.monotonic()
    ids, lost = _run(fake_sim("stall"), tmp_path, stall_timeout=0.5)
    assert ids == [i for i in range(10) if i != 3] and lost == [(3, "hang")]
    assert time.monotonic() - t0 < 20


def test_a_simulator_that_never_starts_stops_the_campaign_with_its_log(fake_sim, tmp_path):
    with pytest.raises(QuasarError, match=r"failed to start 3 times(.|\n)*cannot load the design"):
        _run(fake_sim("nostart"), tmp_path)


# ------------------------------------------------------------------------------------------- on RTL

def _sim_for(results: Path) -> psutil.Process | None:
    for child in psutil.Process().children(recursive=True):
        try:
            if child.environ().get("QUASAR_RESULTS") == str(results):
                return child
        except psutil.Error:
            continue
    return None


def _kill_mid_shard(work: Path, sig: int, stop: threading.Event, hits: list) -> None:
    """Freeze the first fault-phase simulator as soon as it has reported a run, then send it `sig`.
    The process is found once (slow), then its results file is watched in a tight loop (fast)."""
    while not stop.is_set():
        for res in sorted(work.glob("faults-*/*/shard*-try01.jsonl")):
            proc = _sim_for(res)
            while proc is not None and proc.is_running() and not stop.is_set():
                if res.read_bytes().count(b"\n") >= 2:  # ready + at least one run
                    proc.send_signal(signal.SIGSTOP)  # no more runs past this point
                    hits.append(res.read_bytes().count(b"\n") - 1)
                    if sig != signal.SIGSTOP:
                        proc.send_signal(sig)
                    return
                time.sleep(0.0005)
        time.sleep(0.005)


@pytest.mark.sim
@pytest.mark.train
@pytest.mark.xdist_group("campaign-robust")
@pytest.mark.parametrize(("sig", "what"), [(signal.SIGKILL, "crashed"), (signal.SIGSTOP, "stalled")],
                         ids=["kill", "stop"])
def test_rtl_simulator_killed_or_frozen_mid_shard_is_retried(small_reference, tmp_path, caplog, sig, what):
    _, reference = small_reference
    run_dir = tmp_path / "run"
    stop, hits = threading.Event(), []
    killer = threading.Thread(target=_kill_mid_shard, args=(run_dir / "work", sig, stop, hits), daemon=True)
    killer.start()
    try:
        with caplog.at_level(logging.WARNING):
            Campaign(small_config(), run_dir, workers=2, progress=False, stall_timeout=4.0).run()
    finally:
        stop.set()
        killer.join()
    assert hits and hits[0] > 0, "no simulator was caught after its first run"
    # the log proves it was caught mid-shard: a simulator stopped after its last run leaves nothing to retry
    assert f"{what} on run" in caplog.text and "retrying the rest of its shard" in caplog.text
    rows = result_rows(run_dir)
    assert not set(rows.outcome) & {"crash", "hang"}
    assert rows.equals(reference)


@pytest.mark.sim
@pytest.mark.train
@pytest.mark.xdist_group("campaign-robust")
def test_rtl_control_flip_that_stops_the_array_is_a_hang_at_the_cycle_bound(tmp_path):
    cfg = small_config(targets=("control",), faults=60)
    campaign = Campaign(cfg, tmp_path / "run", workers=2, progress=False)
    summary = campaign.run()
    rows = result_rows(tmp_path / "run", cfg)
    assert len(rows) == len(campaign.fault_list()) == sum(summary["designs"]["range"]["counts"].values())
    hangs = rows[rows.outcome == "hang"]
    assert len(hangs) > 0, "no control-register flip kept the array from finishing"
    bound = {lm.index: 4 * campaign.tile_cycles[lm.index] + 64 for lm in campaign.maps}
    assert all(c == bound[layer] for c, layer in zip(hangs.sim_cycles, hangs.layer, strict=True))
    assert hangs.faulty_top1.isna().all() and set(hangs.kind) == {"control"}
    assert set(rows.outcome) - {"hang"}, "every control flip hung: the bound or the classification is wrong"


@pytest.mark.sim
@pytest.mark.train
@pytest.mark.xdist_group("campaign-robust")
def test_rtl_same_seed_same_faults_and_results_whatever_the_worker_count(small_reference, tmp_path):
    ref_campaign, reference = small_reference
    campaign = Campaign(small_config(), tmp_path / "run", workers=3, progress=False)
    campaign.run()
    assert campaign.fault_list() == ref_campaign.fault_list()
    assert result_rows(tmp_path / "run").equals(reference)
