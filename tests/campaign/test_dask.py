"""The Dask executor on a loopback LocalCluster (2 worker processes): the same rows as a local run of
the same seed, and a worker killed mid-shard costs a logged retry, not a result."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil
import pytest

from fault_campaigns.campaign import Campaign
from tests.campaign.conftest import result_rows, small_config

pytestmark = [pytest.mark.sim, pytest.mark.train, pytest.mark.slow, pytest.mark.xdist_group("campaign-robust")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Client, LocalCluster

    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      protocol="tcp://", silence_logs=logging.ERROR,
                      local_directory=str(tmp_path_factory.mktemp("dask")))
    client = Client(lc, timeout=60, set_as_default=False)  # the campaign must not lean on a default client
    client.wait_for_workers(2, timeout=60)
    try:
        yield lc, client
    finally:
        client.close()
        lc.close(timeout=30)


def test_dask_rows_equal_a_local_run(cluster, small_reference, tmp_path):
    lc, _ = cluster
    _, reference = small_reference
    t0 = time.perf_counter()
    campaign = Campaign(small_config(), tmp_path / "run", progress=False, executor="dask",
                        scheduler=lc.scheduler_address)
    campaign.run()
    print(f"dask campaign: {time.perf_counter() - t0:.1f} s")
    assert result_rows(tmp_path / "run").equals(reference)


def _kill_a_busy_worker(worker_pids: list[int], stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Dask worker process seen running a fault-phase simulator for a moment."""
    while not stop.is_set():
        for pid in worker_pids:
            try:
                sims = [c for c in psutil.Process(pid).children(recursive=True)
                        if "/faults-" in c.environ().get("QUASAR_RESULTS", "")]
            except psutil.Error:
                continue
            if sims and time.time() - sims[0].create_time() > 0.2:
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, sims[0].pid))
                return
        time.sleep(0.02)


def test_dask_worker_killed_mid_shard_is_retried(cluster, small_reference, tmp_path, caplog):
    lc, client = cluster
    _, reference = small_reference
    pids = list(client.run(os.getpid).values())
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(pids, stop, killed), daemon=True)
    killer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="fault_campaigns"):
            Campaign(small_config(), tmp_path / "run", progress=False, executor="dask",
                     scheduler=lc.scheduler_address).run()
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught running a shard"
    assert not psutil.pid_exists(killed[0][1]) or psutil.Process(killed[0][1]).status() == psutil.STATUS_ZOMBIE
    assert "restarted on worker" in caplog.text
    assert result_rows(tmp_path / "run").equals(reference)
    client.wait_for_workers(2, timeout=60)  # the nanny brought the worker back
