"""Shared by the campaign robustness tests: one small campaign and its uninterrupted reference run."""

from __future__ import annotations

from pathlib import Path

import pytest

from fault_campaigns.campaign import STORE_NAME, Campaign
from fault_campaigns.planning.config import CampaignConfig
from fault_campaigns.results.store import ResultStore

# Small enough for seconds per run, large enough that each simulator has a few hundred runs to do.
SMALL = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, images=2, golden_images=1, faults=200, seed=5,
             per_channel_bounds=True, protections=("range",))


def small_config(**changes) -> CampaignConfig:
    return CampaignConfig(**{**SMALL, **changes})


def result_rows(run_dir: Path, cfg: CampaignConfig | None = None):
    """The stored rows without the wall-clock column, in key order."""
    cfg = cfg or small_config()
    with ResultStore(run_dir / STORE_NAME, cfg.campaign_id, {}) as store:
        return store.frame().drop(columns=["sim_time_s"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def small_reference(tmp_path_factory):
    """The small campaign run once, uninterrupted, on one local simulator."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    campaign = Campaign(small_config(), run_dir, workers=1, progress=False)
    campaign.run()
    return campaign, result_rows(run_dir)
