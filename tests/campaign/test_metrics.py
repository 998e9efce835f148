"""What the faults did, without a simulator: the masking stage of constructed faults of every stage,
SDC-5's rank, the weighted interval, the SDC FIT on a hand-computed case, and the run-directory lock."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fault_campaigns.analysis.fit import check_raw_fit, sdc_fit
from fault_campaigns.analysis.masking import fault_metrics, stage_counts
from fault_campaigns.analysis.weighted import weighted_rate
from fault_campaigns.planning import mapping
from fault_campaigns.results.classify import Classifier, Golden, golden_rank
from fault_campaigns.results.stages import STAGES, element_stage, tile_stage
from fault_campaigns.stats import rate
from quasar import arithmetic as ar
from quasar.errors import ConfigError

# ------------------------------------------------------------------------------------ masking stages

# One 2 x 2 tile, 4-bit activations: column 0 has M = 1, S = 4 (v / 16 rounded), column 1 M = 1, S = 0.
OPS = SimpleNamespace(mult=np.array([1, 1]), shift=np.array([4, 0]), lo=np.array([0, 2]), hi=np.array([15, 9]))
V = np.array([[40, 5], [-3, 12]])  # golden v; (1, 1): y = 12 > hi = 9, clamped by the protection


def _group(is_last: bool = False, protected: bool = True) -> dict:
    y = ar.requantize(V, OPS.mult, OPS.shift, 4)
    z, viol = ar.protect(y, OPS.lo, OPS.hi) if protected else (y, 0)
    return {"ops": OPS, "logit": V, "act": z, "violations": viol, "is_last": is_last}


def _stage_of(vd, protected=True, changed=False, viol_delta=0, is_last=False) -> str:
    g = _group(is_last, protected)
    rec = {"vd": vd, "viol": g["violations"] + viol_delta}
    return STAGES[tile_stage(g, rec, (2, 2), 4, protected, changed)]


def test_constructed_faults_of_every_tile_stage():
    assert _stage_of([]) == "none"
    assert _stage_of([[0, 0, 41]]) == "rounding"  # 41/16 rounds to 3 like 40/16
    assert _stage_of([[1, 0, -40]]) == "clamp"  # -3/16 -> 0 and -40/16 -> -2: ReLU gives 0 for both
    assert _stage_of([[1, 1, 14]]) == "protection"  # 12 -> 14 (both inside 0..15), the bound hi = 9 hides it
    assert _stage_of([[1, 1, 14]], protected=False, changed=True) == "downstream"  # the classifier decides more
    assert _stage_of([], viol_delta=1) == "protection"  # an output-activation flip the protection clamped
    assert _stage_of([[0, 0, 41], [1, 0, -40]]) == "clamp"  # the last stage any changed v reached
    assert _stage_of([[5, 0, 999]]) == "none"  # a padding row is not a real output
    assert _stage_of([], is_last=True) == "none"


def test_element_stage_follows_the_arithmetic():
    """Against quasar.arithmetic on every v in a range: the stage says exactly which step hid the change."""
    for vf in range(-300, 300, 7):
        for j in (0, 1):
            s = element_stage(int(V[1, j]), vf, j, OPS, 4, protected=True)
            yg, yf = (ar.requantize(np.array([[v]]), OPS.mult[j:j + 1], OPS.shift[j:j + 1], 4)[0, 0]
                      for v in (V[1, j], vf))
            zg, zf = (ar.protect(np.array([y]), OPS.lo[j], OPS.hi[j])[0][0] for y in (yg, yf))
            assert (s == 4) == (zg != zf), (vf, j, s)
            assert (s <= 2) == (yg == yf), (vf, j, s)


def _two_layer_classifier():
    lm0 = mapping.LayerMap(0, "a", 2, 3, 2, 2, 2, False)
    lm1 = mapping.LayerMap(1, "b", 1, 4, 3, 2, 2, True)
    y0 = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])

    def forward_from(layer, ys):  # the rest of the network: one logit set by the layer output's sum mod 3
        s = ys.sum(axis=(1, 2))
        return np.stack([s % 3 == 0, s % 3 == 1, s % 3 == 2], axis=1).astype(int) * np.array([[5, 9, 1]])

    logits = forward_from(0, y0)[:, None, :]  # sums 10 and 26: [0, 9, 0] and [0, 0, 1]
    golden = Golden([y0, logits], np.array([1, 2]), np.array([1, 2]))
    group = {"ops": SimpleNamespace(mult=np.array([1, 1]), shift=np.array([0, 0]), lo=0, hi=15),
             "logit": np.array([[1, 2], [3, 4]]), "violations": 0, "is_last": False}
    groups = {(0, 0, 0): group, (0, 1, 1): {**group, "is_last": True}}
    return Classifier([lm0, lm1], golden, forward_from, groups=groups, act_bits=4), golden


def test_downstream_and_output_stages_and_golden_rank():
    clf, _ = _two_layer_classifier()
    f = dict(image=0, site="busy_r", cycle=2, model="flip")
    faults = [SimpleNamespace(layer=0, tile=0, **f), SimpleNamespace(layer=0, tile=0, **f),
              SimpleNamespace(layer=1, tile=1, **f)]
    records = [  # layer sum 10 (class 1) -> 13 (class 1 again: logits unchanged) / -> 11 (class 2); a logit
        {"id": 0, "fin": True, "cyc": 9, "viol": 0, "diff": [[0, 0, 4]], "vd": [[0, 0, 4]], "t": 0},
        {"id": 1, "fin": True, "cyc": 9, "viol": 0, "diff": [[0, 0, 2]], "vd": [[0, 0, 2]], "t": 0},
        {"id": 2, "fin": True, "cyc": 9, "viol": 0, "diff": [[0, 0, 50]], "t": 0},  # logit 2: 0 -> 50
    ]
    rows = clf.classify(faults, records)
    assert [r["stage"] for r in rows] == ["downstream", "output", "output"]
    assert [r["outcome"] for r in rows] == ["tolerable", "critical", "critical"]
    assert [r["golden_rank"] for r in rows] == [0, 2, 1]  # [0, 0, 1]: class 2 above, class 0 ties and wins


def test_golden_rank_breaks_ties_like_argmax():
    logits = np.array([[3, 9, 9, 1, 0, 0, 0, 0], [9, 1, 1, 1, 1, 1, 1, 0]])
    assert golden_rank(logits, np.array([2, 7])).tolist() == [1, 7]  # index 1 ties 2 and wins; 7 is last
    assert (golden_rank(logits, np.argmax(logits, axis=1)) == 0).all()


def test_stage_counts_and_fault_metrics():
    df = pd.DataFrame({
        "live": [0, 0, 1, 1, 1, 1], "stage": ["none", "none", "rounding", "output", "output", None],
        "outcome": ["masked", "masked", "masked", "sdc", "critical", "hang"],
        "faulty_top1": [1, 1, 1, 2, 3, None], "label": [1, 1, 1, 1, 1, 1], "golden_top1": [1] * 6,
        "golden_rank": [0, 0, 0, 1, 6, None], "changed_outputs": [0, 0, 0, 2, 1, None]})
    assert stage_counts(df) == {"idle": 2, "none": 0, "rounding": 1, "clamp": 0, "protection": 0, "downstream": 0,
                                "output": 2, "lost": 1}
    m = fault_metrics(df, 0.95)
    assert m["idle"]["count"] == 2 and m["sdc_live"]["count"] == 2 and m["sdc_live"]["total"] == 4
    assert m["accuracy_under_faults"]["count"] == 3 and m["accuracy_under_faults"]["total"] == 6
    assert m["sdc5"]["count"] == 1 and m["idle_but_changed"] == 0


# ------------------------------------------------------------------------------------ weighted rate


def test_weighted_interval_is_not_zero_width_at_zero_events():
    r = weighted_rate([(1_000_000, 2400, 0), (50_000, 2400, 0)], 0.95)
    assert r["rate"] == 0 and r["ci_low"] == 0
    assert 0 < r["ci_high"] < 0.002
    one = weighted_rate([(10**12, 2400, 0)], 0.95)  # one huge stratum: the plain Wilson interval
    plain = rate(0, 2400, 0.95)
    assert math.isclose(one["ci_high"], plain.high, rel_tol=1e-6)
    some = weighted_rate([(10**12, 2400, 30)], 0.95)
    assert math.isclose(some["ci_low"], rate(30, 2400).low, rel_tol=1e-6)
    assert math.isclose(some["ci_high"], rate(30, 2400).high, rel_tol=1e-6)


def test_a_census_has_no_uncertainty():
    r = weighted_rate([(10, 10, 3)], 0.95)
    assert r["ci_low"] == r["ci_high"] == r["rate"] == 0.3


# ------------------------------------------------------------------------------------ SDC FIT


def test_sdc_fit_on_a_hand_computed_case():
    """Kind A: 100 bits, P(SDC) = 10/100; kind B: 300 bits, P(SDC) = 2/100; 1000 FIT/Mbit = 1e-3 FIT per bit:
    FIT = 1e-3 * (100 * 0.1 + 300 * 0.02) = 0.016."""
    rows = []
    for kind, sdc in (("pe_activation", 10), ("output_activation", 2)):
        rows += [{"layer": 0, "kind": kind, "outcome": "sdc" if i < sdc else "masked"} for i in range(100)]
    df = pd.DataFrame(rows)
    pops = {(0, "pe_activation"): 100 * 10**6, (0, "output_activation"): 300 * 10**6}  # bits x time
    bits = {"pe_activation": 100, "output_activation": 300, "control": 100}
    f = sdc_fit(df, pops, bits, ("pe_activation", "output_activation"), 1000.0, 0.95)
    assert math.isclose(f["fit"], 0.016, rel_tol=1e-12)
    assert math.isclose(f["by_kind"]["pe_activation"]["fit"], 0.01, rel_tol=1e-12)
    assert math.isclose(f["by_kind"]["output_activation"]["fit"], 0.006, rel_tol=1e-12)
    assert f["fit_low"] < 0.016 < f["fit_high"]
    assert f["coverage"]["share"] == 0.8 and f["bits"] == 400
    assert sdc_fit(df, pops, bits, ("pe_activation", "output_activation"), 1000.0, 0.95, ff_bits=1000,
                   ff_source="xc7 FFs")["coverage"]["share"] == 0.4


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "x"])
def test_bad_raw_fit_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match="raw FIT per Mbit must be"):
        check_raw_fit(bad)


def test_negative_raw_fit_on_the_command_line(tmp_path, capsys):
    from quasar.cli import main

    assert main(["campaign", "--net", "tiny", "--bits", "4", "--raw-fit-per-mbit", "-5", "--out",
                 str(tmp_path / "run")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert err == ["error: raw FIT per Mbit must be a finite number >= 0 (FIT per 10^6 bits), got -5.0"]
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ run-directory lock

_HOLD = """
import sys, time
from pathlib import Path
from fault_campaigns.lock import RunDirLock
with RunDirLock(Path(sys.argv[1]), "campaign", "feedc0de"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_campaign_on_a_busy_directory_is_refused_and_changes_nothing(tmp_path, capsys):
    from quasar.cli import main
    from tests.campaign.test_bad_inputs import BASE, _snapshot

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.sqlite").write_bytes(b"whatever the running campaign has written")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(tmp_path)
        capsys.readouterr()
        t0 = time.perf_counter()
        assert main([*BASE, "--out", str(run)]) == 2
        assert time.perf_counter() - t0 < 30  # refused at once, not after training or building
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(err) == 1, err
        assert str(run) in err[0] and f"pid {holder.pid}" in err[0] and "campaign feedc0de" in err[0], err[0]
        assert _snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder's death frees the directory (the kernel drops the lock, even on SIGKILL)
    from fault_campaigns.lock import RunDirLock

    with RunDirLock(run, "campaign"):
        assert (run / ".lock.json").is_file()
    assert not (run / ".lock.json").exists()


# ------------------------------------------------------------------------------------ image variation


def test_image_variation_separates_images_from_binomial_noise():
    from fault_campaigns.analysis.images import image_variation

    rng = np.random.default_rng(0)
    rows = []
    for image in range(40):  # half the images always wrong, half always right: between-image sd 0.5
        for _ in range(50):
            rows.append({"image": image, "label": 1, "faulty_top1": 1 if image % 2 else 0,
                         "changed_outputs": int(rng.random() < 0.3)})  # the same 30% on every image
    v = image_variation(pd.DataFrame(rows))
    assert v["images"] == 40 and v["faults_per_image"] == 50
    assert math.isclose(v["correct"]["between_image_sd"], 0.5, rel_tol=0.05)
    assert math.isclose(v["correct"]["image_sampling_se"], 0.5 / math.sqrt(40), rel_tol=0.05)
    assert v["corrupted"]["between_image_sd"] < 0.05  # binomial noise is not image-to-image variation
