"""Fault-rate campaigns on RTL (tiny net, 4x4 array): multi-flip tile runs against plain full-tile runs
and the dataflow model, rate ~0 equals golden, a collapsing rate collapses, the same rows for any
worker count, and a campaign killed with SIGKILL resumes to the uninterrupted rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from fault_campaigns.bench.rates import tile_checks
from fault_campaigns.execution.rate_jobs import record_diff, run_parts, single_runs
from fault_campaigns.execution.rates import Inference, RateEngine
from fault_campaigns.planning.rates import DEFAULT_RATE_TARGETS, RateConfig
from fault_campaigns.rate_campaign import RATE_STORE_NAME, RateCampaign
from fault_campaigns.results.rate_store import TABLE, RateStore

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.xdist_group("rates")]

# the builds of tests/campaign/conftest.py's small campaign (same array configs)
SETTINGS = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, per_channel_bounds=True, images=4, trials=2,
                rates=(3e-5, 3e-3), seed=3)
ARGS = ["--net", "tiny", "--bits", "4", "--rows", "4", "--cols", "4", "--k-max", "128", "--per-channel-bounds",
        "--images", "4", "--trials", "2", "--rates", "3e-5,3e-3", "--seed", "3", "--protection", "range"]
ONE = 2 * 4 * 2  # rows per design


def _rows(run_dir, cfg=None, protection=None):
    cfg = cfg or RateConfig(**SETTINGS)
    with RateStore(run_dir / RATE_STORE_NAME, cfg.campaign_id, {}) as store:
        frame = store.frame().drop(columns=["sim_time_s", "campaign_id"])
    if protection is not None:
        frame = frame[frame.protection == protection]
    nullable = ("faulty_top1", "changed_layers", "protection_events", "golden_protection_events")
    return frame.astype({c: "float64" for c in nullable}).reset_index(drop=True)  # NULLs of the other design


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rates") / "run"
    rc = RateCampaign(RateConfig(**SETTINGS), run_dir, workers=2, progress=False)
    summary = rc.run()
    return rc, summary, run_dir


def test_one_row_per_design_rate_image_trial(finished):
    rc, summary, run_dir = finished
    rows = _rows(run_dir)
    assert len(rows) == 2 * ONE and not rows.duplicated(["protection", "rate", "image", "trial"]).any()
    high = rows[rows.rate == 3e-3]
    assert (high.rtl_tile_runs > 0).all() and (high.flips > 10).all()
    assert summary["golden"]["none"]["bit_exact"] and (run_dir / "accuracy_vs_rate.png").is_file()
    # both designs saw the same flips
    none, rng = rows[rows.protection == "none"], rows[rows.protection == "range"]
    assert list(none.flip_list) == list(rng.flip_list)


def test_multi_flip_tile_runs_equal_plain_runs_and_the_dataflow_model(finished):
    """A few hundred multi-flip tile runs of whole inferences at a high rate, on the fast (cpp) build, against
    the plain GPI-clocked build and the multi-flip dataflow model, with flips in every targeted register
    kind (the default targets: PE activations and products, accumulators, the post-processing pipeline,
    output activations)."""
    rc, _, _ = finished
    for p, d in rc.campaign.designs.items():
        infs = [i for i in rc.inferences() if i.rate == 3e-3][:4]
        captured = []
        run = rc.run_groups_for(d, "check-")

        sizes = []

        def capture(groups, on_results, on_lost, run=run, captured=captured, sizes=sizes):
            by_id = single_runs(groups)
            sizes.extend(len(g["runs"]) for g in groups)
            run(groups, lambda recs: (captured.extend((by_id[r["id"]], r) for r in recs), on_results(recs)), on_lost)

        # one chunk: the 4 inferences share each step, so a tile's job holds several runs (one C call on
        # the fast build; each run checked alone below, cut out of its tile's packed arrays)
        RateEngine(rc.campaign, d, capture, chunks=1).run(infs, lambda rows: None)
        assert max(sizes) >= 3, sizes
        flips = [run_parts(g, g["runs"][0])[2] for g, _ in captured]
        multi = sum(len(f) > 1 for f in flips)
        kind = {s.name: s.kind for s in rc.campaign.sites}
        seen = {kind[captured[0][0]["sites"][site]] for f in flips for _, site, _ in f.tolist()}
        assert seen == set(DEFAULT_RATE_TARGETS) >= {"pipeline"}, seen  # every targeted kind flipped
        changed = sum(len(record_diff(r)) > 0 for _, r in captured)
        assert len(captured) >= 100 and multi >= 50 and changed >= 20, (len(captured), multi, changed)
        model_ok, plain_ok, _ = tile_checks(rc, d, captured, workers=2)
        assert all(model_ok) and all(plain_ok), (p, model_ok.count(False), plain_ok.count(False))


def test_pow2_curve_runs_the_shift_only_designs_bit_exact(tmp_path):
    """A fixed-point (pow2) curve: the campaign runs the pow2 model on shift-only designs (golden check
    bit-exact), its run directory and id say the format, and its multi-flip tile runs equal the plain
    GPI-clocked runs and the dataflow model (M = 1, no multiplier in the post-processing)."""
    cfg = RateConfig(**{**SETTINGS, "act_format": "pow2", "int_bits": 2, "images": 2, "trials": 1,
                        "rates": (3e-3,)})
    assert "-pow2i2-" in cfg.default_dir("runs").name
    assert cfg.campaign_id != RateConfig(**{**SETTINGS, "images": 2, "trials": 1, "rates": (3e-3,)}).campaign_id
    rc = RateCampaign(cfg, tmp_path / "run", workers=2, progress=False)
    summary = rc.run()
    assert summary["config"]["act_format"] == "pow2" and summary["config"]["int_bits"] == 2
    for p, d in rc.campaign.designs.items():
        assert d.array.requant == "shift" and summary["golden"][p]["bit_exact"], p
        captured = []
        run = rc.run_groups_for(d, "check-")

        def capture(groups, on_results, on_lost, run=run, captured=captured):
            by_id = single_runs(groups)
            run(groups, lambda recs: (captured.extend((by_id[r["id"]], r) for r in recs), on_results(recs)), on_lost)

        RateEngine(rc.campaign, d, capture, chunks=1).run(rc.inferences()[:2], lambda rows: None)
        assert len(captured) >= 20 and sum(len(record_diff(r)) > 0 for _, r in captured) >= 5
        model_ok, plain_ok, _ = tile_checks(rc, d, captured, workers=2)
        assert all(model_ok) and all(plain_ok), (p, model_ok.count(False), plain_ok.count(False))


def test_tile_checks_catch_a_wrong_record(finished):
    rc, _, _ = finished
    d = rc.campaign.designs["none"]
    inf = next(i for i in rc.inferences() if i.rate == 3e-3 and i.run_count)
    captured = []
    RateEngine(rc.campaign, d, lambda g, on, lost: (captured.extend((x, None) for x in single_runs(g).values()),
                                                    on([]))).run([inf], lambda rows: None)
    g = captured[0][0]
    bad = {"id": g["runs"][0]["id"], "fin": True, "viol": 0, "diff": [[0, 0, 12345]]}
    model_ok, plain_ok, _ = tile_checks(rc, d, [(g, bad)], workers=1)
    assert model_ok == [False] and plain_ok == [False]


def test_no_flips_is_golden_and_a_high_rate_collapses(finished):
    rc, summary, _ = finished
    d = rc.campaign.designs["range"]
    clean = [Inference(1e-9, i, 0, []) for i in range(4)]
    calls = []
    rows = []
    stats = RateEngine(rc.campaign, d, lambda *a: calls.append(a)).run(clean, rows.extend)
    assert not calls and stats["rtl_tile_runs"] == 0
    assert [r["faulty_top1"] for r in rows] == d.golden.top1[:4].tolist()
    assert {r["outcome"] for r in rows} == {"masked"}
    high = {p: next(x for x in pts if x["rate"] == 3e-3) for p, pts in summary["curve"]["designs"].items()}
    low = {p: next(x for x in pts if x["rate"] == 3e-5) for p, pts in summary["curve"]["designs"].items()}
    for p in high:
        assert high[p]["accuracy"]["rate"] <= 0.5, high[p]  # ~4,700 flips per inference (rc.space.mean_flips)
        assert high[p]["accuracy"]["rate"] < low[p]["accuracy"]["rate"]


def test_same_rows_for_any_worker_count(finished, tmp_path):
    _, _, reference = finished
    cfg = RateConfig(**{**SETTINGS, "protections": ("range",)})
    RateCampaign(cfg, tmp_path / "run", workers=3, progress=False).run()
    assert _rows(tmp_path / "run", cfg).equals(_rows(reference, protection="range"))


def test_a_row_replays_to_the_stored_one(finished):
    from fault_campaigns.execution.rate_replay import replay_inference

    _, _, run_dir = finished
    rows = _rows(run_dir, protection="none")
    row = rows[(rows.rtl_tile_runs > 0) & (rows.rate == 3e-5)].iloc[0]
    got = replay_inference(run_dir, 3e-5, int(row.image), int(row.trial), "none", waves=False)
    assert got["matches_stored"] is True and got["rtl_tile_runs"] == row.rtl_tile_runs


def test_killed_rate_campaign_resumes_to_the_same_rows(finished, tmp_path):
    _, _, reference = finished
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "quasar", "rates", *ARGS, "--workers", "2", "--no-progress", "--out", str(run_dir)]
    env = {**os.environ, "QUASAR_RATE_CHUNKS": "6"}  # rows stored in several chunks, so a kill lands between them
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    store = run_dir / RATE_STORE_NAME
    deadline, stored = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if store.is_file():
            try:
                with sqlite3.connect(store) as db:
                    stored = db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0]
            except sqlite3.Error:
                stored = 0
            if stored:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the campaign ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < stored < ONE
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already stored" in done.stderr
    cfg = RateConfig(**{**SETTINGS, "protections": ("range",)})
    resumed = _rows(run_dir, cfg)
    assert resumed.equals(_rows(reference, protection="range"))
    assert np.isfinite(resumed.rate).all()
