"""The reference-study preset (`quasar paper`): its validation, its figures, and its plumbing on the tiny net.

The figures must come from the campaigns' results stores and the synthesis results: a store changed behind
the preset's back changes paper.json on the next (resumed) run, and the LUTs equal the designs' synth.json."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fault_campaigns.paper import figures
from fault_campaigns.paper.run import PaperConfig, run_paper
from quasar.cli import main
from quasar.errors import ConfigError

TINY = dict(net="tiny", bits=(8,), int_bits=4, rows=2, cols=2, k_max=128, images=4, faults=40, seed=1,
            protections=("none", "range"))


# -- validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"protections": ("range", "none")}, "must start with none (the baseline)"),
    ({"protections": ("none",)}, "name at least one protected design"),
    ({"bits": (16, 6)}, "int bits (ap_ufixed<6, I> integer bits) must be in 0..6, got 7"),
    ({"bits": (1,)}, "bit width must be"),
    ({"protections": ("none", "range:bogus")}, "unknown part 'bogus'"),
    ({"images": 0}, "images"),
])
def test_bad_settings_are_refused_before_any_work(changes, message):
    with pytest.raises(ConfigError) as exc:
        PaperConfig(**changes)
    assert message in str(exc.value)


def test_the_default_is_the_study_s_format(tmp_path):
    cfg = PaperConfig()
    sweep = cfg.sweep_config()
    assert (sweep.act_format, sweep.int_bits, sweep.bits) == ("pow2", 7, (8, 12, 16))
    assert sweep.protections[:2] == ("none", "range") and sweep.synth_targets == ("xc7",)
    assert [c.requant for c in sweep.campaigns] == ["shift"] * 3
    assert cfg.default_dir(tmp_path).name.startswith("lenet-8x8-b8-12-16-pow2i7-")


@pytest.mark.parametrize(("argv", "message"), [
    (["--bits", "16", "--int-bits", "17"], "error: int bits (ap_ufixed<16, I> integer bits) must be in 0..16, got 17"),
    (["--protection", "range"], "error: the preset's protections must start with none"),
    (["--bits", "8,8"], "error: --bits lists '8' twice"),
])
def test_cli_says_one_error_line_and_exits_2(tmp_path, capsys, argv, message):
    assert main(["paper", *argv, "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "runs").exists()


# -- figures ----------------------------------------------------------------------------------------------
def test_paired_gain_is_points_and_relative_on_the_same_faults():
    u = np.array([1] * 60 + [0] * 40, bool)  # 60% correct unprotected
    p = u.copy()
    p[60:75] = True  # 15 faults repaired: 75%
    g = figures.paired_gain(u, p, 0.95, seed=0)
    assert g["points"] == pytest.approx(0.15) and g["relative"] == pytest.approx(0.75 / 0.60 - 1)
    assert g["points_low"] < 0.15 < g["points_high"] and g["relative_low"] < 0.25 < g["relative_high"]
    assert g["points_low"] > 0  # only repairs: every resample gains
    same = figures.paired_gain(u, u, 0.95, seed=0)
    assert same["points"] == same["points_low"] == same["points_high"] == 0 and same["relative"] == 0


def _frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ("protection", "fault_id", "label", "golden_top1", "faulty_top1", "live", "kind", "protection_fired",
            "outcome")
    return pd.DataFrame(rows, columns=cols).assign(bit=2)


def test_control_counts_firing_restoring_and_the_drop():
    rows = [("none", 0, 1, 1, 2, 1, "output_activation", None, "critical"),
            ("none", 1, 1, 1, 1, 1, "pe_activation", None, "masked"),
            ("none", 2, 3, 3, 3, 0, "pe_activation", None, "masked"),
            ("range", 0, 1, 1, 1, 1, "output_activation", 1, "tolerable"),
            ("range", 1, 1, 1, 4, 1, "pe_activation", 0, "critical"),
            ("range", 2, 3, 3, 3, 0, "pe_activation", 0, "masked")]
    c = figures.control(_frame(rows), 0.95, seed=0)
    assert (c["faults"], c["live_faults"], c["sdc_unprotected"]) == (3, 2, 1)
    assert c["live_by_kind"] == {"output_activation": 1, "pe_activation": 1}
    assert c["sdc_by_kind"] == {"output_activation": 1}
    assert c["drop_points"] == pytest.approx(1 / 3)
    d = c["designs"]["range"]
    assert d == {"fired": 1, "fired_by_kind": {"output_activation": 1}, "fired_and_sdc_unprotected": 1,
                 "restored": 1, "new_sdc": 1, "sdc": 1}
    assert c["oact_by_bit"] == {"2": {"flips": 1, "sdc_unprotected": 1, "designs": {"range": {"fired": 1, "sdc": 0}}}}
    des = figures.design_figures(_frame(rows), 0.95, seed=0)
    assert des["none"]["all"]["accuracy"]["count"] == 2 and des["none"]["live"]["accuracy"]["total"] == 2
    assert des["range"]["all"]["gain"]["points"] == 0 and des["range"]["live"]["gain"]["faults"] == 2
    assert des["range"]["live-oact"]["gain"]["faults"] == 1 and des["range"]["live-oact"]["gain"]["points"] == 1


def test_overhead_is_read_from_the_rows_luts():
    rows = [{"bits": 8, "protection": "none", "luts": 1000, "ffs": 10},
            {"bits": 8, "protection": "range", "luts": 1046, "ffs": 42},
            {"bits": 16, "protection": "none", "luts": None, "ffs": None},
            {"bits": 16, "protection": "range", "luts": None, "ffs": None}]
    assert figures.overhead(rows, 8)["range"] == {"luts": 1046, "ffs": 42, "lut_overhead_pct": pytest.approx(4.6)}
    assert figures.overhead(rows, 8)["none"]["lut_overhead_pct"] is None
    assert figures.overhead(rows, 16)["range"]["lut_overhead_pct"] is None


# -- the preset on the tiny net ---------------------------------------------------------------------------
def _strict(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _store_gain(store: Path, protection: str) -> tuple[float, float]:
    with closing(sqlite3.connect(store)) as db:
        df = pd.read_sql_query("SELECT protection, fault_id, label, faulty_top1 FROM results", db)
    ok = df.assign(ok=(df.faulty_top1 == df.label)).pivot(index="fault_id", columns="protection", values="ok")
    return float(ok["none"].mean()), float(ok[protection].mean())


@pytest.mark.sim
@pytest.mark.synth
@pytest.mark.train
@pytest.mark.slow
@pytest.mark.xdist_group("paper")
def test_preset_plumbing_figures_come_from_the_stores(tmp_path, capsys):
    runs = tmp_path / "runs"
    cfg = PaperConfig(**TINY)
    doc = run_paper(cfg, runs_dir=runs, workers=2, progress=False)
    out = Path(doc["dir"])
    paper = _strict(out / "paper.json")
    assert "## T2: accuracy under single faults" in (out / "paper.md").read_text()
    w = paper["widths"]["8"]
    store = Path(w["campaign_dir"]) / "results.sqlite"
    acc_u, acc_p = _store_gain(store, "range")
    gain = w["designs"]["range"]["all"]["gain"]
    assert (gain["unprotected"], gain["protected"]) == (pytest.approx(acc_u), pytest.approx(acc_p))
    assert gain["points"] == pytest.approx(acc_p - acc_u) and w["store_rows"] == 2 * w["control"]["faults"]
    # the LUTs are the designs' Yosys counts (synth.json), the overhead computed from them
    sweep = _strict(Path(paper["run"]["sweep_dir"]) / "sweep.json")
    luts = {r["protection"]: r["luts"] for r in sweep["rows"]}
    hw = w["designs"]["range"]["hardware"]
    assert hw["luts"] == luts["range"] > luts["none"] > 0
    assert hw["lut_overhead_pct"] == pytest.approx(100 * (luts["range"] - luts["none"]) / luts["none"])

    # every protected run now misclassifies: the resumed preset (nothing to simulate) must say so
    assert acc_u > 0  # else the change below would change nothing
    with closing(sqlite3.connect(store)) as db, db:
        db.execute("UPDATE results SET faulty_top1 = (label + 1) % 10 WHERE protection = 'range'")
    again = _strict(Path(run_paper(cfg, runs_dir=runs, workers=2, progress=False)["dir"]) / "paper.json")
    gain = again["widths"]["8"]["designs"]["range"]["all"]["gain"]
    assert gain["protected"] == 0.0 and gain["points"] == pytest.approx(-acc_u)
    assert again["headline"]["range"]["all"]["gain"]["relative"] == pytest.approx(-1.0)


def test_an_unwritable_out_is_refused_before_the_sweep(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    argv = ["paper", "--net", "tiny", "--bits", "8", "--int-bits", "4", "--runs-dir", str(tmp_path / "runs"),
            "--out", str(tmp_path / "file" / "paper")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: output directory {str(tmp_path / 'file' / 'paper')!r} is not writable: "
                   f"{str(tmp_path / 'file')!r} is not a directory"], err
    assert not (tmp_path / "runs" / "campaign").exists()  # nothing ran
