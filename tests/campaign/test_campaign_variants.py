"""Protection variants in one campaign: the same fault list on none and three protected designs (zero
policy, per channel; accumulator domain with the logits; today's range), every design golden-checked
on RTL, every outcome equal to the one the analytic model predicts, and the comparison reported."""

from __future__ import annotations

import pytest

from fault_campaigns.campaign import STORE_NAME, Campaign
from fault_campaigns.execution.software import software_records
from fault_campaigns.planning.config import CampaignConfig
from fault_campaigns.results.classify import Classifier
from fault_campaigns.results.store import ResultStore

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.xdist_group("campaign")]

SPECS = ("none", "range", "range:zero:act:channel", "range:clamp:acc:layer")
SETTINGS = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, images=2, golden_images=1, faults=40, seed=5,
                protections=SPECS, targets=("pe_activation", "output_activation", "accumulator"))


def test_variants_on_one_fault_list(tmp_path):
    cfg = CampaignConfig(**SETTINGS)
    campaign = Campaign(cfg, tmp_path / "run", workers=2, progress=False)
    summary = campaign.run()
    assert set(summary["designs"]) == set(SPECS)
    assert set(summary["protection_effects"]) == set(SPECS) - {"none"}
    assert all(summary["golden"][p]["bit_exact"] for p in SPECS)
    assert campaign.designs["range:clamp:acc:layer"].array.protect_domain == "acc"
    assert campaign.export.layers[-1].v_lo is not None  # the logits got bounds from the training data
    with ResultStore(tmp_path / "run" / STORE_NAME, cfg.campaign_id, {}) as store:
        frame = store.frame()
    faults = campaign.fault_list()
    for p, design in campaign.designs.items():
        rows = Classifier(campaign.maps, design.golden, design.model.forward_from).classify(
            faults, software_records(campaign, design, faults))
        stored = frame[frame.protection == p].set_index("fault_id")
        assert [stored.loc[f.fault_id, "outcome"] for f in faults] == [r["outcome"] for r in rows], p
        if p != "none":
            events = [int(stored.loc[f.fault_id, "protection_events"]) for f in faults]
            assert events == [r["protection_events"] for r in rows], p
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Protection variants compared" in report and "| range:zero:act:channel |" in report
