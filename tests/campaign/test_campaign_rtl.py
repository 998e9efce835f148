"""A small campaign end to end on RTL: golden check, one outcome per fault, outcomes predicted
independently by the analytic dataflow model, and a killed-and-resumed run equal to an uninterrupted one."""

from __future__ import annotations

import json
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
    stored = _wait_for_rows(proc, store)
    assert proc.poll() is None, "the campaign ended before it could be killed"
    sims = [p for p in psutil.Process(proc.pid).children(recursive=True) if _simulates_in(p, run_dir)]
    os.kill(proc.pid, signal.SIGKILL)  # the campaign process alone, as `kill -9 PID` would
    proc.wait()
    _, alive = psutil.wait_procs(sims, timeout=0.2)  # a simulator's shard lasts longer than this
    alive = [p for p in alive if _running(p)]  # a dead simulator may wait a while for init to reap it
    assert not alive, f"simulators outlived the killed campaign: {alive}"
    assert 0 < stored < 2 * 3 * 120
    held = len(_frame(run_dir))  # what the killed session stored, up to the kill
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already stored" in done.stderr
    resumed, uninterrupted = _frame(run_dir), _frame(reference)
    assert len(resumed) == len(uninterrupted) == 2 * 3 * 120
    assert resumed.reset_index(drop=True).equals(uninterrupted.reset_index(drop=True))
    # the killed session could not log itself: the report says the store holds more than the logged sessions
    report = (run_dir / "report.md").read_text()
    assert f"store: {2 * 3 * 120} of {2 * 3 * 120} planned fault runs (complete)" in report
    assert f"- {held} stored fault runs come from sessions that could not log themselves" in report, report


ARGS = ["campaign", "--net", "tiny", "--bits", "4", "--rows", "4", "--cols", "4", "--k-max", "128", "--images", "3",
        "--golden-images", "2", "--faults", "120", "--seed", "11", "--per-channel-bounds", "--workers", "2",
        "--no-progress"]


def _strict_json(path: Path) -> dict:
    def refuse(name: str):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _rows(frame) -> list[dict]:
    """Rows as plain values (a column that holds only NULLs so far reads as object, not float)."""
    return [{k: None if v is None or v != v else v for k, v in row.items()} for row in frame.to_dict("records")]


def _wait_for_rows(proc, store, timeout: float = 300) -> int:  # type: ignore[no-untyped-def]
    """Poll a running campaign's store until it holds a row (or the process ends); the row count."""
    deadline, stored = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and proc.poll() is None and not stored:
        if store.is_file():
            try:
                with sqlite3.connect(store) as db:
                    stored = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                stored = 0
        if not stored:
            time.sleep(0.05)
    return stored


def test_interrupted_campaign_says_what_is_stored_exits_130_and_resumes(finished, tmp_path):
    """Ctrl-C mid-campaign (SIGINT to the foreground process group, as a terminal sends it): one line saying
    what the store holds and how to resume, exit status 130, the stored rows those of an uninterrupted run,
    no simulator left, no work directory left; the rerun completes to the same rows and says what it ran."""
    _, _, reference = finished
    # The campaign runs its 720 faults in about a second once its simulators are up: on a loaded machine it
    # can finish before the signal lands. Such an attempt (exit 0) says nothing; another is made.
    err = "the campaign ended before it could be interrupted, three times"
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        cmd = [sys.executable, "-m", "quasar", *ARGS, "--out", str(run_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True,
                                preexec_fn=_default_sigint)
        store = run_dir / STORE_NAME
        _wait_for_rows(proc, store)
        if proc.poll() is not None:
            continue
        try:
            sims = [p for p in psutil.Process(proc.pid).children(recursive=True) if _simulates_in(p, run_dir)]
        except psutil.NoSuchProcess:
            sims = []
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130, err[-2000:]
    held = len(_frame(run_dir))
    assert 0 < held < 2 * 3 * 120
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1] == (f"interrupted: {store} holds {held} fault runs (none {min(held, 360)} of 360, range "
                         f"{held - min(held, 360)} of 360; {held} stored by this session); rerun the same command "
                         "to resume"), err[-2000:]
    assert sum(ln.startswith("interrupted") for ln in lines) == 1 and "Traceback" not in err
    assert not [p for p in psutil.wait_procs(sims, timeout=5)[1] if _running(p)]
    assert not (run_dir / "work").exists()  # the interrupted session's shard files are gone too
    expected = _frame(reference)
    got = _frame(run_dir).reset_index(drop=True)
    keys = expected.set_index(["protection", "fault_id"]).index.isin(got.set_index(["protection", "fault_id"]).index)
    assert _rows(got) == _rows(expected[keys])  # whole rows, each the uninterrupted run's
    session = json.loads((run_dir / "sessions.jsonl").read_text().splitlines()[-1])
    assert session["interrupted"] and sum(d["ran"] for d in session["designs"].values()) == held

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _frame(run_dir).reset_index(drop=True).equals(expected.reset_index(drop=True))
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"this session: {720 - held} fault runs in "), last
    assert "/s, fault runs only); store: 720 of 720 planned fault runs (complete); report: " in last, last
    summary = _strict_json(run_dir / "summary.json")  # strict JSON: no bare NaN
    assert summary["this_session"]["fault_runs"] == 720 - held and summary["store"] == {"rows": 720, "planned": 720}
    eff = summary["protection_effect"]["sdc"]
    assert (eff["relative"] is None) == (eff["unprotected"] == 0)  # null means: no SDC to reduce
    assert "logged sessions: 2 (1 interrupted), 720 fault runs" in (run_dir / "report.md").read_text()
    assert not (run_dir / "work").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip().splitlines()[-1].startswith(
        "this session: nothing to run; store: 720 of 720 planned fault runs (complete); report: ")


def test_replay_takes_relative_run_paths_and_a_failure_keeps_the_old_files(finished, monkeypatch, capsys):
    """`quasar replay --run <relative>` (and `--run .` inside the run) replays the stored outcome; a failed
    replay says the simulator's status, exits 2 and leaves the earlier replay files exactly as they were."""
    from fault_campaigns.execution import replay as replay_module
    from quasar.cli import main

    _, _, run_dir = finished
    monkeypatch.chdir(run_dir.parent)
    capsys.readouterr()
    assert main(["replay", "--run", run_dir.name, "--fault", "5", "--protection", "range"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matches_stored"] is True and result["waveform"] == str(run_dir / "replay" / "fault5-range.vcd")
    files = {p.name: p.read_bytes() for p in (run_dir / "replay").iterdir()}
    assert set(files) == {"fault5-range.jsonl", "fault5-range.log", "fault5-range.vcd"}
    assert files["fault5-range.vcd"] and files["fault5-range.jsonl"]

    real_run = subprocess.run

    def simulator_dies(cmd, **kwargs):
        return real_run([sys.executable, "-c", "import sys; sys.exit(3)"], **kwargs)

    monkeypatch.setattr(replay_module.subprocess, "run", simulator_dies)
    monkeypatch.chdir(run_dir)
    assert main(["replay", "--run", ".", "--fault", "5", "--protection", "range"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the replay simulator failed (its exit status 3); earlier replay files"), err
    left = {p.name: p.read_bytes() for p in (run_dir / "replay").iterdir() if p.is_file()}
    assert left == files  # nothing truncated, no stale waveform beside a new result


def test_pow2_campaign_runs_on_the_shift_only_design(tmp_path):
    """The pow2 format end to end: a pow2 model on shift-only designs (no multiplier), golden check
    bit-exact, RTL outcomes equal to the analytic model's, the headroom section in the report, and with
    fixed integer bits above the data the protection fires on some faults."""
    cfg = CampaignConfig(**{**SETTINGS, "faults": 200, "act_format": "pow2", "int_bits": 4})
    campaign = Campaign(cfg, tmp_path / "run", workers=2, progress=False)
    summary = campaign.run()
    assert {d.array.requant for d in campaign.designs.values()} == {"shift"}
    assert campaign.export.act_format == "pow2" and campaign.export.shift_only
    for p in ("none", "range"):
        assert summary["golden"][p]["bit_exact"] and summary["golden"][p]["tile_runs"] > 0
    frame = _frame_of(tmp_path / "run", cfg)
    faults = campaign.fault_list()
    for p, design in campaign.designs.items():
        records = software_records(campaign, design, faults)
        rows = Classifier(campaign.maps, design.golden, design.model.forward_from).classify(faults, records)
        stored = frame[frame.protection == p].set_index("fault_id")
        assert [stored.loc[f.fault_id, "outcome"] for f in faults] == [r["outcome"] for r in rows]
    layers = summary["headroom"]["layers"]
    assert [r["int_bits"] for r in layers] == [4] * len(layers) and any(r["hi"] < r["top"] for r in layers)
    assert "## Headroom between the bounds and the format's top code" in (tmp_path / "run" / "report.md").read_text()
    assert summary["designs"]["range"]["rates"]["protection_fired"]["rate"] > 0


def _frame_of(run_dir: Path, cfg: CampaignConfig):
    with ResultStore(run_dir / STORE_NAME, cfg.campaign_id, {}) as store:
        return store.frame().drop(columns=["sim_time_s"])


def _default_sigint() -> None:
    """In the child, before exec: SIGINT at its default, as in a terminal's foreground job (a shell that
    started the test suite in the background leaves it ignored, and the child would inherit that)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
