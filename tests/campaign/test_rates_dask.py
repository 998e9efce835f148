"""A fault-rate campaign on the Dask executor (loopback LocalCluster, 2 worker processes) stores the same
rows as on the local executor: the flips are drawn in the campaign process, whatever runs the tiles."""

from __future__ import annotations

import logging

import pytest

from fault_campaigns.planning.rates import RateConfig
from fault_campaigns.rate_campaign import RATE_STORE_NAME, RateCampaign
from fault_campaigns.results.rate_store import RateStore

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.slow, pytest.mark.xdist_group("campaign-robust")]

SETTINGS = dict(net="tiny", bits=4, rows=4, cols=4, k_max=128, per_channel_bounds=True, images=2, trials=2,
                rates=(1e-4, 3e-3), seed=9, protections=("range",))


def _rows(run_dir):
    with RateStore(run_dir / RATE_STORE_NAME, RateConfig(**SETTINGS).campaign_id, {}) as store:
        return store.frame().drop(columns=["sim_time_s"]).reset_index(drop=True)


def test_dask_rows_equal_a_local_run(tmp_path):
    from distributed import LocalCluster

    RateCampaign(RateConfig(**SETTINGS), tmp_path / "local", workers=1, progress=False).run()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      protocol="tcp://", silence_logs=logging.ERROR, local_directory=str(tmp_path / "dask")) as lc:
        RateCampaign(RateConfig(**SETTINGS), tmp_path / "dask-run", progress=False, executor="dask",
                     scheduler=lc.scheduler_address).run()
    local, dask = _rows(tmp_path / "local"), _rows(tmp_path / "dask-run")
    assert len(local) == 2 * 2 * 2 and (local.rtl_tile_runs > 0).any()
    assert dask.equals(local)
