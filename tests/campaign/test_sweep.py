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

SETTINGS = dict(net="tiny", bits=(2, 3), rows=2, cols=2, k_max=128, images=2, faults=25, seed=3, rate_images=3,
                rates=(1e-4, 1e-2))


def _table(out: Path) -> list[dict]:
    with open(out / "table.csv") as fh:
        return list(csv.DictReader(fh))


def _close(cell: str, value: float | None) -> bool:
    assert value is not None
    got = float(cell)
    if math.isnan(value):
        return math.isnan(got)
    return math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9)


def _strict(path: Path):
    """JSON as a strict parser reads it (NaN and Infinity refused)."""
    def refuse(name):
        raise ValueError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _relative(effect: dict) -> float:
    """summary.json's relative reduction in percent: null (no event unprotected) reads as NaN in the table."""
    return math.nan if effect["relative"] is None else 100 * effect["relative"]


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
        summary = _strict(Path(sources[f"{b}/{p}"]["campaign"]))  # strict JSON: null, never NaN
        synth = _strict(Path(sources[f"{b}/{p}"]["synth"]))
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
        assert synth["latency"]["net"] == cfg.net  # the sweep synthesizes for its own net
        cycles = sum(lay["cycles"] for lay in synth["latency"]["layers"])
        assert cycles == sum(lay["tiles"] * cfg.array_config(b, p).tile_cycles(lay["K"])
                             for lay in synth["latency"]["layers"])
        assert int(r["latency_cycles"]) == cycles == synth["latency"]["total_cycles"]
        assert math.isclose(float(r["latency_us"]), cycles / t["pnr"]["fmax_mhz"], abs_tol=1e-3)
        assert int(r["area_lut_sites"]) == t["xc7-nodsp"]["luts_total"]
        assert r["critical_path"] == NA and t["pnr"]["critical_path"] is None  # placed: nextpnr gives none
        assert r["pareto"] in ("yes", "no")
        if p == "range":
            eff = summary["protection_effect"]
            base = next(x for x in rows if int(x["bits"]) == b and x["protection"] == "none")
            assert _close(r["protection_fired_pct"], 100 * d["protection_fired"]["rate"])
            assert _close(r["sdc_reduction_pct"], _relative(eff["sdc"]))
            assert _close(r["sdc_reduction_pp"], 100 * eff["sdc"]["absolute"])
            assert _close(r["corrupted_reduction_pct"], _relative(eff["corrupted"]))
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
    assert "DSPs count as the LUTs they replace" in report  # the area measure is stated
    assert "nextpnr reports no critical path after placement only" in report
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


@_on_the_tiny_sweep
def test_a_sweep_without_synthesis_says_so(swept):
    """--no-synth: the report's rerun command is this very sweep, no synthesis time and no LUT rule is claimed,
    and sweep.json is strict JSON (the campaigns and models are the tiny sweep's, so this only reports)."""
    _, _, _, first = swept
    cfg = SweepConfig(**SETTINGS, synth=False)
    out = cfg.default_dir(first["runs"])
    Sweep(cfg, out, runs_dir=first["runs"], workers=2, progress=False).run()
    report = (out / "report.md").read_text()
    assert "--no-synth" in report.split("Rerun with `", 1)[1].split("`", 1)[0]
    assert "the rest was synthesis" not in report and "(no synthesis in this sweep: `--no-synth`)" in report
    assert "smallest area" not in report and "the fewest bits (no area figures: this sweep has no xc7-nodsp" in report

    def refuse(name):
        raise ValueError(name)

    data = json.loads((out / "sweep.json").read_text(), parse_constant=refuse)
    rows = {(r["bits"], r["protection"]): r for r in data["rows"]}
    assert all(r["luts"] is None for r in rows.values())
    for b in cfg.bits:  # null exactly where no relative reduction exists
        assert (rows[(b, "range")]["sdc_reduction_pct"] is None) == (rows[(b, "none")]["sdc_pct"] == 0.0)


@pytest.mark.parametrize("changes", [{}, {"synth": False, "per_channel_bounds": True, "faults": 25},
                                     {"bits": (3, 8), "targets": ("accumulator",), "synth_targets": ("pnr",),
                                      "fmax": "routed", "margin": 0.05}])
@pytest.mark.parametrize("out_given", [False, True])
def test_the_rerun_command_is_this_very_sweep(changes, out_given, tmp_path, monkeypatch):
    """The command report.md gives, run through the CLI, makes the same sweep id in the same directory."""
    import shlex
    from types import SimpleNamespace

    from fault_campaigns.sweep import runner
    from fault_campaigns.sweep.report import rerun_command
    from quasar.cli import main

    monkeypatch.chdir(tmp_path)
    cfg = SweepConfig(**{**SETTINGS, **changes})
    runs = tmp_path / "elsewhere"
    out = tmp_path / "mine" if out_given else cfg.default_dir(runs)
    cmd = rerun_command(SimpleNamespace(cfg=cfg, runs_dir=runs, out_dir=out))
    got = {}

    class Captured(Exception):
        pass

    def capture(cfg, out_dir, **kwargs):
        got.update(cfg=cfg, out=out_dir, runs=kwargs["runs_dir"])
        raise Captured

    monkeypatch.setattr(runner, "Sweep", capture)
    with pytest.raises(Captured):
        main(shlex.split(cmd)[1:])
    assert got["cfg"].sweep_id == cfg.sweep_id and got["cfg"].synth == cfg.synth, cmd
    assert Path(got["out"]).resolve() == out.resolve() and Path(got["runs"]).resolve() == runs.resolve(), cmd


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
        (["--bits", "2,x"], "'x'"),
        (["--bits", "2", "4"], "unexpected extra argument(s) (4); list options take comma-separated values"),
        (["--bits", "4", "--bits", "4"], "--bits lists '4' twice"),
        (["--bits", "1"], "--bits must be in 2..16, got 1"),
        (["--net", "vgg"], "vgg"),
        (["--margin", "0"], "margin"),
        (["--rows", "0"], "rows"),
        (["--synth-targets", "asic"], "asic"),
        (["--fmax", "signoff"], "fmax must be one of routed, placed"),
        (["--act-format", "calibrated,posit"], "act format must be one of calibrated, pow2; got 'posit'"),
        (["--act-format", "pow2", "--bits", "2,8", "--int-bits", "3"], "must be in 0..2, got 3"),
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


def _row(bits, luts, dsps, area, acc=98.0, sdc=0.0):
    return {"bits": bits, "protection": "none", "qat_int_acc_pct": acc, "sdc_pct": sdc, "sdc_lo_pct": 0.0,
            "sdc_hi_pct": 0.03, "luts": luts, "dsps": dsps, "area_lut_sites": area}


def test_best_tradeoff_counts_the_dsps():
    """The issue's case: 4 bits 5,719 LUTs + 8 DSPs, 8 bits 4,079 LUTs + 80 DSPs. Ranked by LUTs with DSPs (the
    old rule) 8 bits wins; by the area with every multiplier in LUTs, 4 bits does."""
    from fault_campaigns.sweep.report import best_tradeoff, mark_pareto

    rows = [_row(4, 5719, 8, 11039), _row(8, 4079, 80, 19863)]
    old_pick = min(rows, key=lambda r: r["luts"])  # what ranking by xc7 LUTs with DSPs chose
    assert old_pick["bits"] == 8
    mark_pareto(rows)
    assert [r["pareto"] for r in rows] == ["yes", "no"]  # 8 bits: more area, no better accuracy or SDC
    pick, rule = best_tradeoff(rows)
    assert pick["bits"] == 4 and "DSPs count as the LUTs they replace" in rule
    # where 8 bits is more accurate it stays on the front, but the smaller area within 0.5 points still wins
    rows = [_row(4, 5719, 8, 11039, acc=97.9), _row(8, 4079, 80, 19863, acc=98.3)]
    mark_pareto(rows)
    assert [r["pareto"] for r in rows] == ["yes", "yes"]
    assert best_tradeoff(rows)[0]["bits"] == 4


def test_best_tradeoff_without_area_figures_says_so():
    from fault_campaigns.sweep.report import best_tradeoff, mark_pareto

    rows = [_row(4, None, None, None), _row(8, None, None, None, sdc=1.0)]
    mark_pareto(rows)
    pick, rule = best_tradeoff(rows)
    assert pick["bits"] == 4 and "fewest bits (no area figures" in rule and "LUT" not in rule.split("(")[0]
def test_formats_are_separate_sweeps_shown_side_by_side(tmp_path):
    from fault_campaigns.sweep.formats import side_by_side, write_formats_report
    from fault_campaigns.sweep.runner import SweepConfig

    cal, pow2 = SweepConfig(net="tiny", bits=(4,)), SweepConfig(net="tiny", bits=(4,), act_format="pow2")
    assert cal.sweep_id != pow2.sweep_id and "act_format" not in cal.identity()
    assert "-pow2-" in pow2.default_dir(tmp_path).name and "pow2" not in cal.default_dir(tmp_path).name
    assert pow2.campaigns[0].act_format == "pow2" and pow2.array_config(4, "range").requant == "shift"
    assert cal.array_config(4, "range").requant == "mul"

    def rows(sdc, luts):
        return [{"bits": 4, "protection": p, "sdc_pct": sdc + i, "luts": luts + i, "protection_fired_pct": "n/a"
                 if p == "none" else 1.5} for i, p in enumerate(("none", "range"))]

    results = {"calibrated": {"rows": rows(10.0, 900), "dir": "a"}, "pow2": {"rows": rows(7.0, 700), "dir": "b"}}
    table = side_by_side(results)
    assert [(r["bits"], r["protection"]) for r in table] == [(4, "none"), (4, "range")]
    assert table[1]["calibrated:sdc_pct"] == 11.0 and table[1]["pow2:luts"] == 701
    text = write_formats_report(tmp_path / "f", results).read_text()
    assert "| 4 | range | - | - | 11.00 | 1.50 | - | 901 |" in text and "| 8.00 | 1.50 | - | 701 |" in text
