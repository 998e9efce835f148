"""`quasar signoff`: passes on a correct protected design, and fails on deliberately broken protection
blocks naming the failed items (the formal proof, and the injection check with the sub-check that
caught it). Small designs, synthesis skipped (tests/synth covers the synthesis flow)."""

from __future__ import annotations

import json
import re

import pytest

from hdl_gen import ArrayConfig, rtl
from hdl_gen.signoff.run import signoff

pytestmark = [pytest.mark.sim, pytest.mark.synth, pytest.mark.xdist_group("signoff")]

CFG = ArrayConfig(rows=3, cols=3, act_bits=4, weight_bits=4, k_max=16, protection="range")
BROKEN = {
    # every upper compare off by one: y == hi counts as a violation (clamped to hi, unchanged, but counted)
    "off-by-one-compare": (r"(assign above_(\d+) = y_\2) > ", r"\1 >= ", "counter"),
    # lane 0's violations never reach the counter
    "missing-counter-increment": (r"\{ 1'd0, out_0 \} \+ ", "", "counter"),
    # a clamp design that resets out-of-range values to 0 instead of the violated bound
    "wrong-policy": (r"\(below_(\d+)\)\? lo_0 : hi_0", "4'd0", "policy"),
}


def _protect_text(tmp_path) -> str:
    design = rtl.generate(CFG, tmp_path / "orig")
    return (design.out_dir / f"{rtl.protect_name(CFG)}.v").read_text()


def test_signoff_passes_on_the_generated_block(tmp_path) -> None:
    report = signoff(CFG, tmp_path / "so", tiles=6, synth=False)
    assert report.passed, report.markdown()
    assert [i.status for i in report.items] == ["pass", "pass", "pass", "pass", "skipped"]
    data = json.loads((tmp_path / "so" / "signoff.json").read_text())
    assert data["passed"] and data["protection"] == "range" and data["failed"] == []
    inj = report.item("injection").evidence
    assert int(inj["violations"]) > 0 and int(inj["in_range"]) > 0 and int(inj["padding"]) > 0
    assert "| injection | pass |" in (tmp_path / "so" / "signoff.md").read_text()


@pytest.mark.parametrize("name", list(BROKEN))
def test_signoff_fails_on_a_broken_block_naming_the_item(name: str, tmp_path) -> None:
    pattern, replacement, sub_check = BROKEN[name]
    broken, n = re.subn(pattern, replacement, _protect_text(tmp_path))
    assert n >= 1, f"mutation {name} did not apply"
    report = signoff(CFG, tmp_path / "so", tiles=4, synth=False, replace={rtl.protect_name(CFG): broken})
    assert not report.passed
    assert "formal" in report.failed and "injection" in report.failed, report.markdown()
    assert report.item("injection").evidence["failed_check"] == sub_check, report.item("injection").evidence
    assert report.item("lint").status == "pass"  # the broken blocks are well-formed Verilog
    md = (tmp_path / "so" / "signoff.md").read_text()
    assert f"**FAIL**: failed {', '.join(report.failed)}" in md and "| injection | fail | failed: " in md
    assert json.loads((tmp_path / "so" / "signoff.json").read_text())["failed"] == report.failed


def test_cli_exit_status_and_bad_spec(tmp_path, capsys) -> None:
    from quasar.cli import main

    assert main(["signoff", "--protection", "range:zro", "--out", str(tmp_path)]) == 2
    assert "error: protection spec 'range:zro': unknown part 'zro'" in capsys.readouterr().err
    assert main(["signoff", "--rows", "2", "--cols", "2", "--bits", "2", "--k-max", "4", "--protection",
                 "range:zero:acc:channel", "--no-synth", "--tiles", "3", "--out", str(tmp_path / "ok")]) == 0
    out = capsys.readouterr().out
    assert "sign-off PASSED for range:zero:acc:channel" in out and "SKIPPED  synthesis" in out
