"""Campaign shards on an existing Dask distributed cluster (`quasar campaign --executor dask --scheduler ...`).

The client (the campaign process) cuts the work into shards, several per Dask worker so the cluster
balances itself, and submits one task per shard. A task runs on a worker exactly like a local shard:
it makes sure the design's simulator is built there (`testbenches.sim.build`, cached on disk by the
configuration's key, built once per machine or once per shared file system, and remembered by the
worker process), then drives one long-lived simulator process through the shard with the same
`ShardRunner` as the local executor (same crash, stall and start-failure handling). The task returns
the shard's records; the client hands them to the same callbacks, so the results store, resume and
classification stay on the client and are identical to a local run's.

A worker that dies mid-shard (killed, out of memory, its machine lost) is the scheduler's to handle:
it reruns the task elsewhere; each start of a shard is announced on an event topic and the client
logs every restart. A shard that kills `distributed.scheduler.allowed-failures` workers stops the
campaign with a clear error; what was stored stays, and rerunning the command resumes.
This module never classifies outcomes and never touches the results store.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from fault_campaigns.execution.executor import (
    OnLost,
    OnResults,
    ShardRunner,
    remove_session_dir,
    session_dir,
    split_groups,
)
from quasar.errors import QuasarError

log = logging.getLogger(__name__)

TOPIC = "quasar-shard"
SCHEDULER_RE = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/:]+(:\d{1,5})?$")
_BUILDS: dict[str, object] = {}  # per worker process: config key -> SimBuild
_BUILD_LOCK = threading.Lock()


def check_scheduler(address: str | None) -> str:
    """The scheduler address, or a QuasarError saying what one looks like."""
    if not address:
        raise QuasarError("--executor dask needs --scheduler tcp://HOST:PORT (the address of a running Dask scheduler)")
    if not SCHEDULER_RE.match(address):
        raise QuasarError(f"--scheduler must look like tcp://HOST:PORT, got {address!r}")
    return address


def connect(address: str, timeout: float = 30.0):
    """A Dask client of the scheduler at `address`, or a QuasarError naming it."""
    from distributed import Client

    check_scheduler(address)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise QuasarError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            client.close()
            raise QuasarError(f"the Dask scheduler at {address!r} has no workers (waited {timeout:.0f} s)") from None
    return client


def build_recipe(build) -> dict:
    """What a worker needs to make the same simulator build as `build` (a testbenches.sim.SimBuild):
    the array config and the build options that differ from the defaults."""
    options = {"waves": build.waves}
    if getattr(build, "clock", None) not in (None, "gpi"):  # the fast-path clock, where the build has one
        options["clock"] = build.clock
    return {"array": build.cfg.to_dict(), "options": options}


def _worker_build(recipe: dict):
    from hdl_gen import ArrayConfig
    from testbenches.sim import build

    cfg = ArrayConfig.from_dict(recipe["array"])
    key = (cfg.key(), tuple(sorted(recipe["options"].items())))
    with _BUILD_LOCK:
        if key not in _BUILDS:
            _BUILDS[key] = build(cfg, **recipe["options"])
        return _BUILDS[key]


def run_shard_task(recipe: dict, groups: list[dict], index: int, token: str, stall_timeout: float,
                   max_start_failures: int, max_run_attempts: int) -> list[tuple]:
    """The Dask task: one shard on this worker; returns ("results", records) and ("lost", id, outcome, log)."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(TOPIC, {"token": token, "shard": index, "worker": worker.address})
    build = _worker_build(recipe)
    events: list[tuple] = []
    work = session_dir(Path(worker.local_directory) / "quasar" / token)
    runner = ShardRunner(build, work, index, groups, lambda recs: events.append(("results", recs)),
                         lambda rid, outcome, logp: events.append(("lost", rid, outcome, logp)),
                         stall_timeout, max_start_failures, max_run_attempts, where=f" on {worker.address}")
    try:
        runner.run()
    finally:
        if not runner.troubled:  # as on a local session: the logs of a troubled simulator stay
            remove_session_dir(work)
    return events


class DaskExecutor:
    """Runs shards as tasks on the Dask cluster behind `client`; the same interface as LocalExecutor."""

    def __init__(self, client, build, tag: str, shards_per_worker: int = 4, min_shard_runs: int = 2_000,
                 max_shard_runs: int = 20_000, stall_timeout: float = 180.0, max_start_failures: int = 3,
                 max_run_attempts: int = 2):
        self.client = client
        self.recipe = build_recipe(build)  # every worker makes (or reuses) the same build as this machine's
        self.tag = tag
        self.shards_per_worker = shards_per_worker
        self.min_shard_runs = min_shard_runs
        self.max_shard_runs = max_shard_runs
        self.stall_timeout = stall_timeout
        self.max_start_failures = max_start_failures
        self.max_run_attempts = max_run_attempts
        self.restarts = 0

    def _shard_count(self, groups: Sequence[dict]) -> int:
        """Several shards per worker so the cluster balances itself, but none so short that starting its
        simulator (~0.5 s) dominates, and none so long that a lost worker or client costs much."""
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        runs = sum(len(g["runs"]) for g in groups)
        balanced = min(workers * self.shards_per_worker, max(workers, runs // self.min_shard_runs))
        return max(balanced, -(-runs // self.max_shard_runs))

    def run(self, groups: Sequence[dict], on_results: OnResults, on_lost: OnLost) -> None:
        from distributed import KilledWorker, as_completed

        if not groups:
            return
        shards = split_groups(groups, self._shard_count(groups))
        token = f"{self.tag}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**9}"
        starts: dict[int, list[str]] = {}

        def on_event(event) -> None:
            _, msg = event
            if not isinstance(msg, dict) or msg.get("token") != token:
                return
            seen = starts.setdefault(msg["shard"], [])
            seen.append(msg["worker"])
            if len(seen) > 1:
                self.restarts += 1
                log.warning("shard %d restarted on worker %s (attempt %d; its worker %s was lost)",
                            msg["shard"], msg["worker"], len(seen), seen[-2])

        self.client.subscribe_topic(TOPIC, on_event)
        futures = {
            self.client.submit(run_shard_task, self.recipe, shard, i, token, self.stall_timeout,
                               self.max_start_failures, self.max_run_attempts, key=f"quasar-{token}-{i}",
                               pure=False): i
            for i, shard in enumerate(shards)
        }
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                i = futures[fut]
                try:
                    events = fut.result()
                except KilledWorker as exc:
                    raise QuasarError(f"shard {i} ({self.tag}) killed every Dask worker it ran on ({exc}); "
                                      "rerun the command to resume") from None
                for ev in events:
                    if ev[0] == "results":
                        on_results(ev[1])
                    else:
                        on_lost(ev[1], ev[2], ev[3])
        finally:
            self.client.cancel(list(futures))
            self.client.unsubscribe_topic(TOPIC)
