"""The design-space sweep end to end on a tiny configuration: two widths, the tiny net, a 2x2 array, a few
faults per layer, every synthesis flow. Every table cell must be filled, and equal to the value in the
result file of the step that produced it; a rerun after an interruption reuses what is cached."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from fault_campaigns.planning.config import PROTECTIONS
from fault_campaigns.sweep.report import COLUMNS, NA, PROTECTED_ONLY
from fault_campaigns.sweep.runner import Sweep, SweepConfig, parse_bits
from quasar.errors import ConfigError, QuasarError

SETTINGS = dict(net="tiny", bits=(2, 3), rows=2, cols=2, k_max=128, images=2, faults=25, seed=3)


def _table(out: Path) -> list[dict]:
    with open(out / "table.csv") as fh:
        return list(csv.DictReader(fh))


def _close(cell: str, value: float | None) -> bool:
    assert value is not None
    got = float(cell)
    if math.isnan(value):
        return math.isnan(got)
    return math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9)


def _on_the_tiny_sweep(test):
    """The tests that read the one tiny sweep: RTL, synthesis and training, kept on one xdist worker."""
    for mark in (pytest.mark.sim, pytest.mark.synth, pytest.mark.train, pytest.mark.slow,
                 pytest.mark.xdist_group("sweep")):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    runs = tmp_path_factory.mktemp("sweep-runs")
    cfg = SweepConfig(**SETTINGS)
    out = cfg.default_dir(runs)
    calls = []
    sweep = Sweep(cfg, out, runs_dir=runs, workers=2, progress=False)
    real = sweep.synthesize

    def flaky(bits, protection, targets=None):  # the first run dies at its third synthesis step
        if targets is not None:
            calls.append(f"synth/{bits}/{protection}/{targets[0]}")
            if len(calls) == 3:
                raise RuntimeError("synthesis killed")
        return real(bits, protection, targets)

    sweep.synthesize = flaky
    with pytest.raises(RuntimeError, match="synthesis killed"):
        sweep.run()
    interrupted = json.loads((out / "state.json").read_text())
    result = Sweep(cfg, out, runs_dir=runs, workers=2, progress=False).run()
    return cfg, out, result, {"state": interrupted, "failed": calls[2], "runs": runs}


@_on_the_tiny_sweep
def test_every_cell_is_filled_from_the_runs_own_results(swept):
    from models.train import TrainConfig, get_or_train

    cfg, out, _, _ = swept
    rows = _table(out)
    assert [(int(r["bits"]), r["protection"]) for r in rows] == [(b, p) for b in cfg.bits for p in PROTECTIONS]
    assert list(rows[0]) == [c for c, _ in COLUMNS]
    sources = json.loads((out / "sources.json").read_text())
    for r in rows:
        b, p = int(r["bits"]), r["protection"]
        for col, value in r.items():
            assert value != "", f"empty cell {col} in row {b}/{p}"
            if col in PROTECTED_ONLY:
                assert (value == NA) == (p == "none"), (col, b, p, value)
        summary = json.loads(Path(sources[f"{b}/{p}"]["campaign"]).read_text())
        synth = json.loads(Path(sources[f"{b}/{p}"]["synth"]).read_text())
        d = summary["designs"][p]["rates"]
        metrics = {m: get_or_train(TrainConfig(net=cfg.net, act_bits=b, weight_bits=b, mode=m), progress=False)[1]
                   for m in ("qat", "ptq")}
        assert _close(r["float_acc_pct"], 100 * metrics["qat"].float_accuracy)
        assert _close(r["qat_int_acc_pct"], 100 * metrics["qat"].integer_accuracy)
        assert _close(r["ptq_int_acc_pct"], 100 * metrics["ptq"].integer_accuracy)
        assert int(r["faults"]) == d["faults"] == summary["faults_planned"]
        for key in ("sdc", "critical"):
            assert _close(r[f"{key}_pct"], 100 * d[key]["rate"])
            assert _close(r[f"{key}_lo_pct"], 100 * d[key]["ci_low"])
            assert _close(r[f"{key}_hi_pct"], 100 * d[key]["ci_high"])
        assert _close(r["masked_pct"], 100 * d["masked"]["rate"])
        assert _close(r["corrupted_pct"], 100 * d["corrupted"]["rate"])
        t = synth["targets"]
        assert synth["config"]["protection"] == p and synth["config"]["act_bits"] == b
        assert int(r["luts"]) == t["xc7"]["luts"] and int(r["ffs"]) == t["xc7"]["ffs"]
        assert int(r["dsps"]) == t["xc7"]["dsp48e1"] and int(r["luts_nodsp"]) == t["xc7-nodsp"]["luts"]
        assert _close(r["fmax_mhz"], t["pnr"]["fmax_mhz"]) and t["pnr"]["mode"] == cfg.fmax == "placed"
        cycles = sum(lay["cycles"] for lay in synth["latency"]["layers"]) if cfg.net == "lenet" else None
        if cycles is None:  # the synth.json latency is LeNet's; the sweep's is its own net's
            from hdl_gen.synth import lenet_latency

            cycles = lenet_latency(cfg.array_config(b, p), None, net=cfg.net)["total_cycles"]
        assert math.isclose(float(r["latency_us"]), cycles / t["pnr"]["fmax_mhz"], abs_tol=1e-3)
        assert r["pareto"] in ("yes", "no")
        if p == "range":
            eff = summary["protection_effect"]
            base = next(x for x in rows if int(x["bits"]) == b and x["protection"] == "none")
            assert _close(r["protection_fired_pct"], 100 * d["protection_fired"]["rate"])
            assert _close(r["sdc_reduction_pct"], 100 * eff["sdc"]["relative"])
            assert _close(r["sdc_reduction_pp"], 100 * eff["sdc"]["absolute"])
            assert _close(r["corrupted_reduction_pct"], 100 * eff["corrupted"]["relative"])
            assert _close(r["lut_overhead_pct"], 100 * (int(r["luts"]) - int(base["luts"])) / int(base["luts"]))
            # a relative reduction is undefined exactly when the unprotected design had no SDC
            assert math.isnan(float(r["sdc_reduction_pct"])) == (float(base["sdc_pct"]) == 0.0)
    assert any(r["pareto"] == "yes" for r in rows)


@_on_the_tiny_sweep
def test_report_plots_and_time(swept):
    cfg, out, result, _ = swept
    report = (out / "report.md").read_text()
    for name in result["plots"].values():
        assert (out / name).stat().st_size > 5000, name
        assert f"]({name})" in report
    assert set(result["plots"]) == {"accuracy", "sdc", "hardware", "pareto", "heatmap"}
    for heading in ("## Findings", "## Comparison with the paper", "## Table", "## Time"):
        assert heading in report
    assert "Best trade-off" in report and "34%" in report and "52%" in report
    assert "[2b/none: SDC %]" in report  # findings name their table cells
    assert (out / "table.md").read_text().count("\n") == 2 + 2 * len(cfg.bits)


@_on_the_tiny_sweep
def test_an_interrupted_sweep_resumes_from_what_is_cached(swept):
    cfg, out, _, first = swept
    done_before = set(first["state"]["steps"])
    synth_keys = {f"synth/{b}/{p}/{t}" for b in cfg.bits for p in PROTECTIONS for t in cfg.synth_targets}
    assert len(done_before & synth_keys) >= 2 and first["failed"] not in done_before
    # longest first: place and route of the widest designs before anything else
    assert {"synth/3/none/pnr", "synth/3/range/pnr"} <= done_before and first["failed"].endswith("/pnr")
    assert not first["state"]["sessions"]  # the failed run recorded its steps, not a finished session
    state = json.loads((out / "state.json").read_text())
    assert len(state["sessions"]) == 1
    resumed = state["sessions"][-1]["steps"]
    for key in done_before:
        assert resumed[key]["cached"], key  # finished before the interruption: reused, not redone
    for key in synth_keys - done_before:
        assert not resumed[key]["cached"], key  # what was missing is done now
    # and a third run does no work at all
    Sweep(cfg, out, runs_dir=first["runs"], workers=2, progress=False).run()
    last = json.loads((out / "state.json").read_text())["sessions"][-1]
    assert all(s["cached"] for s in last["steps"].values()), last
    assert not last["fresh"]


def test_bits_lists():
    assert parse_bits(None) == (2, 3, 4, 5, 6, 7, 8, 16)
    assert parse_bits(["8 2,4", "4"]) == (2, 4, 8)
    for bad, word in (["x"], "'x'"), (["1"], "1"), (["17"], "17"), ([" "], "no bit width"):
        with pytest.raises(ConfigError, match=word):
            parse_bits(bad)


def test_state_of_another_sweep_is_refused(tmp_path):
    from fault_campaigns.sweep.runner import _State

    _State(tmp_path / "state.json", {"a": 1}).put("x", {"cached": False, "wall_s": 1})
    with pytest.raises(QuasarError, match="another sweep configuration"):
        _State(tmp_path / "state.json", {"a": 2})
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(QuasarError, match="unreadable"):
        _State(tmp_path / "state.json", {"a": 1})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--net", "alexnet"], "CIFAR-10"),
        (["--net", "alexnet", "--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["--bits", "2 x"], "'x'"),
        (["--bits", "1"], "bit width"),
        (["--net", "vgg"], "vgg"),
        (["--margin", "0"], "margin"),
        (["--rows", "0"], "rows"),
        (["--synth-targets", "asic"], "asic"),
        (["--fmax", "signoff"], "fmax must be one of routed, placed"),
        (["--protection", "range,none"], "must start with none"),
        (["--protection", "none,range:zro"], "unknown part 'zro'"),
    ],
)
def test_bad_input_stops_before_any_work(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "quasar", "sweep", *args, "--runs-dir", str(tmp_path / "runs"),
                           "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started
