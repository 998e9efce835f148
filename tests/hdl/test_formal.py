"""Group 3, formal half: Yosys proves the protection unit's clamp and counter for all inputs, and the
same proof rejects deliberately broken units (so the proof can fail)."""

from __future__ import annotations

import re

import pytest

from hdl_gen import ArrayConfig, rtl
from hdl_gen.formal import prove_protection

pytestmark = [pytest.mark.synth, pytest.mark.xdist_group("yosys")]

PER_LAYER = ArrayConfig(rows=8, cols=8, act_bits=8, weight_bits=8, protection="range")
PER_CHANNEL = ArrayConfig(rows=2, cols=3, act_bits=16, weight_bits=4, k_max=64, protection="range",
                          per_channel_bounds=True)
VARIANTS = {
    "per-layer-8x8a8": PER_LAYER,
    "per-channel-3a16": PER_CHANNEL,
    "zero-act-channel-4a8": ArrayConfig(rows=2, cols=4, act_bits=8, weight_bits=8, k_max=64,
                                        protection="range:zero:act:channel"),
    "clamp-acc-layer-4v15": ArrayConfig(rows=2, cols=4, act_bits=4, weight_bits=4, k_max=64,
                                        protection="range:clamp:acc:layer"),
    "zero-acc-channel-3v15": ArrayConfig(rows=2, cols=3, act_bits=4, weight_bits=4, k_max=64,
                                         protection="range:zero:acc:channel"),
}


@pytest.mark.parametrize("cfg", list(VARIANTS.values()), ids=list(VARIANTS))
def test_protection_unit_is_proven(cfg: ArrayConfig, tmp_path) -> None:
    result = prove_protection(cfg, tmp_path)
    assert result.proven, result.log[-3000:]
    assert "Induction step proven: SUCCESS!" in result.log


def _protect_text(cfg: ArrayConfig, tmp_path) -> str:
    design = rtl.generate(cfg, tmp_path / "orig")
    return (design.out_dir / f"{rtl.protect_name(cfg)}.v").read_text()


@pytest.mark.parametrize(
    "what, pattern, replacement",
    [
        pytest.param("lower compare off by one", r"(assign below_0 = \S+) < ", r"\1 <= ", id="below-off-by-one"),
        pytest.param("upper bound replaced by the input", r"(assign z_1 = .*)hi_0", r"\1y_1", id="no-upper-clamp"),
        pytest.param("counter ignores valid", r"\(valid\)\? n_viol", "(1'b1)? n_viol", id="counter-ignores-valid"),
        pytest.param("padding lane corrected", r"assign out_2 = en\[2\] && ", "assign out_2 = ", id="ignores-en"),
    ],
)
def test_proof_rejects_a_broken_unit(what: str, pattern: str, replacement: str, tmp_path) -> None:
    text = _protect_text(PER_LAYER, tmp_path)
    broken, n = re.subn(pattern, replacement, text)
    assert n == 1, f"mutation '{what}' did not apply"
    result = prove_protection(PER_LAYER, tmp_path / "proof", protect_verilog=broken)
    assert not result.proven, f"the proof accepted a unit with {what}"
    assert "FAIL" in result.log or "ERROR" in result.log


def test_none_has_nothing_to_prove(tmp_path) -> None:
    from quasar.errors import ConfigError

    with pytest.raises(ConfigError, match="protection 'none' has no protection unit"):
        prove_protection(ArrayConfig(protection="none"), tmp_path)
