"""report.md and summary.json texts and figures on a synthetic store (no simulator): strict JSON, an interval
that does not collapse at a zero rate, and sentences that say what happened (docs/campaign.md)."""

from __future__ import annotations

import json

import pandas as pd

from fault_campaigns.analysis.report import markdown, stratified, summarize
from fault_campaigns.results.store import COLUMNS
from fault_campaigns.stats import rate
from quasar import jsonio

CONFIG = {"net": "tiny", "bits": 4, "act_bits": 4, "rows": 4, "cols": 4, "images": 2, "fault_model": "flip", "seed": 5,
          "targets": ["pe_activation"], "margin": 0.02, "confidence": 0.95, "faults": 300, "campaign_id": "c0ffee",
          "per_channel_bounds": False}


def _frame(outcomes_none: list[str], outcomes_range: list[str]) -> pd.DataFrame:
    rows = []
    for p, outcomes in (("none", outcomes_none), ("range", outcomes_range)):
        for i, o in enumerate(outcomes):
            rows.append({"protection": p, "fault_id": i, "outcome": o, "layer": i % 2, "layer_name": f"l{i % 2}",
                         "bit": i % 4, "kind": "pe_activation", "protection_fired": None if p == "none" else 0,
                         "live": 1, "stage": "output" if o != "masked" else "none", "golden_rank": 0,
                         "label": 0, "golden_top1": 0, "faulty_top1": None if o in ("hang", "crash") else 0,
                         "image": i % 2})
    frame = pd.DataFrame(rows)
    for col in COLUMNS:  # every stored column, as a store's frame has them
        if col not in frame:
            frame[col] = None
    return frame


def _summary(frame: pd.DataFrame) -> dict:
    extra = {"act_bits": 4, "weight_bits": 4, "dataset": "digits", "accuracy": {}, "golden": {}, "bounds": {},
             "sessions": [], "this_session": {"fault_runs": 0, "fault_run_s": 0.0, "runs_per_s": None},
             "store": {"rows": len(frame), "planned": len(frame)}, "workers": 1, "tools": {}}
    return summarize(frame, CONFIG, {0: 5000, 1: 3000}, extra)


def test_no_unprotected_sdc_is_null_in_json_and_said_in_words():
    summary = _summary(_frame(["masked"] * 150 + ["tolerable"] * 150, ["masked"] * 300))
    text = jsonio.dumps(summary)

    def refuse(name):
        raise ValueError(name)

    parsed = json.loads(text, parse_constant=refuse)
    assert parsed["protection_effect"]["sdc"]["relative"] is None  # no SDC to reduce: no relative reduction
    assert parsed["protection_effect"]["restored"] is None
    md = markdown(summary)
    assert "No fault was an SDC without protection, so there was none to restore." in md
    assert "restored the golden top-1 for -" not in md
    # --faults given: the margin played no part in the sample size, so the header does not cite it
    assert "300 faults per layer (`--faults`; intervals at 95% confidence)." in md and "margin" not in md


def test_population_weighted_interval_does_not_collapse_at_zero():
    frame = _frame(["masked"] * 1500, ["masked"] * 1500)
    frame["is_sdc"] = 0
    got = stratified(frame[frame.protection == "none"], {0: 5000, 1: 3000}, 0.95, "is_sdc")
    wilson = rate(0, 1500, 0.95).to_dict()
    assert got["rate"] == 0.0 and got["ci_low"] == 0.0
    # Wilson at the effective (Kish) size: the sampled share of each layer shrinks the bound a little
    assert 0 < got["ci_high"] <= wilson["ci_high"] and got["ci_high"] > 0.5 * wilson["ci_high"]


def test_population_weighted_interval_is_wilson_at_the_effective_size():
    frame = _frame(["sdc"] * 30 + ["masked"] * 270, ["masked"] * 300)
    frame["is_sdc"] = (frame.outcome == "sdc").astype(int)
    got = stratified(frame[frame.protection == "none"], {0: 10**6, 1: 10**6}, 0.95, "is_sdc")
    assert got["ci_low"] < got["rate"] < got["ci_high"]
    assert 0 < got["n_eff"] <= 301  # up to rounding of the finite-population factor


def test_console_shares_add_up_with_hangs(capsys, tmp_path):
    """--targets control: hangs are shown, so masked + corrupted + hang + crash = 100%."""
    import re

    from fault_campaigns.cli import _print_headline

    summary = _summary(_frame(["masked"] * 200 + ["hang"] * 60 + ["tolerable"] * 30 + ["crash"] * 10,
                              ["masked"] * 300))
    _print_headline(summary, tmp_path)
    line = capsys.readouterr().out.splitlines()[0]
    shares = [float(x) for x in re.findall(r"(?:masked|corrupted|hang|crash) ([\d.]+)%", line)]
    assert len(shares) == 4 and abs(sum(shares) - 100) < 0.02, line
    assert "hang 20.00% (60)" in line and "crash 3.33% (10)" in line
