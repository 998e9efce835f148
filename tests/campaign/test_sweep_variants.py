"""The sweep's protection list: validation, identity of default sweeps, and the variant finding."""

from __future__ import annotations

import pytest

from fault_campaigns.sweep.runner import SweepConfig
from fault_campaigns.sweep.variants import variant_findings
from quasar.errors import ConfigError

SETTINGS = dict(net="tiny", bits=(2,), rows=2, cols=2, k_max=128, images=2, faults=25, seed=3)


def test_protection_list_is_canonical_and_default_identity_is_unchanged():
    default = SweepConfig(**SETTINGS)
    assert default.protections == ("none", "range") and "protections" not in default.identity()
    cfg = SweepConfig(**SETTINGS, protections=("none", "range:zero", "range:acc"))
    assert cfg.protections == ("none", "range:zero:act:layer", "range:clamp:acc:layer")
    assert cfg.sweep_id != default.sweep_id
    assert cfg.campaigns[0].protections == cfg.protections
    assert cfg.array_config(2, "range:zero:act:layer").protect_policy == "zero"
    with pytest.raises(ConfigError, match="must start with none"):
        SweepConfig(**SETTINGS, protections=("range", "none"))


def _row(bits, p, pp, luts, fired=None):
    return {"bits": bits, "protection": p, "sdc_reduction_pp": pp, "luts": luts, "protection_fired_pct": fired}


def test_variant_finding_names_the_variant_that_removes_the_most_sdcs():
    rows = [_row(8, "none", "n/a", 1000), _row(8, "range", 0.0, 1010, 1.0),
            _row(8, "range:zero:act:channel", 0.5, 1050, 3.0), _row(8, "range:clamp:acc:layer", 0.25, 1100, 2.0)]
    (text,) = variant_findings(rows)
    assert "range:zero:act:channel removes the most SDCs (0.50 pp, 10.00 pp per 1,000 extra LUTs)" in text
    assert "[8b/range:clamp:acc:layer: SDC reduction pp]" in text and "+100 LUTs" in text
    assert text.index("range:zero") < text.index("range:clamp:acc") < text.index("range: SDC")
    assert variant_findings(rows[:2]) == []  # one protected variant: the other findings cover it
    flat = [_row(4, "none", "n/a", None), _row(4, "range", 0.0, None), _row(4, "range:zero:act:layer", -0.1, None)]
    assert "no variant reduced the SDC rate" in variant_findings(flat)[0]
