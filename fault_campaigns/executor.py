"""Parallel execution of campaign shards on long-lived simulator processes.

The work is a list of tile groups (operands + runs). It is cut into one contiguous shard per worker,
each shard runs in one Verilator process (`fault_campaigns.sim_worker`), and the parent tails the
processes' JSON-lines result files, handing every finished run to a callback as soon as it appears.

Failures never stop the campaign and never lose work:
- a simulator that exits before finishing its shard has crashed on the run in flight (the first of
  its shard not yet reported): that run is reported lost as `crash`, and a fresh simulator takes the
  rest of the shard;
- a simulator that reports nothing for `stall_timeout` seconds is killed; its run in flight is
  reported lost as `hang`, and the rest is restarted the same way;
- a simulator that dies before it is ready (build or start-up trouble, not a fault) is retried
  without blaming any run; after `max_start_failures` such failures in a row the campaign stops with
  the simulator's log tail, because no result could be trusted.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quasar.errors import QuasarError

log = logging.getLogger(__name__)

WORKER_MODULE = "fault_campaigns.sim_worker"
WORKER_TEST = "run_shard"
REPO_ROOT = Path(__file__).resolve().parents[1]


def split_groups(groups: Sequence[dict], parts: int) -> list[list[dict]]:
    """Contiguous shards with about the same number of runs each (keeps a tile's runs together)."""
    total = sum(len(g["runs"]) for g in groups)
    parts = max(1, min(parts, len(groups)))
    shards: list[list[dict]] = [[] for _ in range(parts)]
    done, s = 0, 0
    for g in groups:
        if s < parts - 1 and shards[s] and done >= total * (s + 1) / parts:
            s += 1
        shards[s].append(g)
        done += len(g["runs"])
    return [sh for sh in shards if sh]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


@dataclass
class _Worker:
    index: int
    groups: list[dict]
    pending: list[int]  # run ids not yet reported, in the order the simulator runs them
    attempt: int = 0
    start_failures: int = 0
    proc: subprocess.Popen | None = None
    results: Path | None = None
    log: Path | None = None
    offset: int = 0
    partial: bytes = b""
    ready: bool = False
    last_progress: float = field(default_factory=time.monotonic)


class LocalExecutor:
    """Runs shards on `workers` simulator processes of one built design on this machine."""

    def __init__(self, build, work_dir: Path, workers: int | None = None, stall_timeout: float = 180.0,
                 max_start_failures: int = 3, poll_interval: float = 0.2):
        self.build = build
        self.work_dir = Path(work_dir).resolve()
        self.workers = workers or os.cpu_count() or 1
        self.stall_timeout = stall_timeout
        self.max_start_failures = max_start_failures
        self.poll_interval = poll_interval

    # -- one simulator process -------------------------------------------------------------------
    def _launch(self, w: _Worker) -> None:
        from testbenches.sim import sim_command

        w.attempt += 1
        stem = self.work_dir / f"shard{w.index:02d}-try{w.attempt:02d}"
        job = stem.with_suffix(".job.pkl")
        w.results, w.log = stem.with_suffix(".jsonl"), stem.with_suffix(".log")
        pending = set(w.pending)
        groups = []
        for g in w.groups:
            runs = [r for r in g["runs"] if r["id"] in pending]
            if runs:
                groups.append({**g, "runs": runs})
        w.groups = groups
        with open(job, "wb") as fh:
            pickle.dump({"array": self.build.cfg.to_dict(), "groups": groups}, fh, protocol=5)
        w.results.write_bytes(b"")
        env_extra = {"QUASAR_JOB": str(job), "QUASAR_RESULTS": str(w.results)}
        cmd, env, cwd = sim_command(
            self.build, WORKER_MODULE, WORKER_TEST, extra_env=env_extra, python_path=[str(REPO_ROOT)],
            results_xml=stem.with_suffix(".xml"),
        )
        with open(w.log, "wb") as logfh:
            w.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=logfh, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        w.offset, w.partial, w.ready, w.last_progress = 0, b"", False, time.monotonic()

    def _read(self, w: _Worker) -> list[dict]:
        with open(w.results, "rb") as fh:
            fh.seek(w.offset)
            chunk = fh.read()
        if not chunk:
            return []
        w.offset += len(chunk)
        data = w.partial + chunk
        lines = data.split(b"\n")
        w.partial = lines.pop()
        out = []
        for line in lines:
            if not line:
                continue
            rec = json.loads(line)
            if "ready" in rec:
                w.ready = True
                continue
            out.append(rec)
        if out or lines:
            w.last_progress = time.monotonic()
        return out

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.proc and w.proc.poll() is None:
            try:
                os.killpg(w.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.proc.wait()

    # -- the shard loop ---------------------------------------------------------------------------
    def run(self, groups: Sequence[dict], on_results: Callable[[list[dict]], None],
            on_lost: Callable[[int, str, str], None]) -> None:
        """Run every run of `groups`; `on_results(records)` gets finished runs as they come,
        `on_lost(run_id, outcome, log_path)` a run lost to a crashed ("crash") or stuck ("hang") simulator."""
        if not groups:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        workers = []
        for i, shard in enumerate(split_groups(groups, self.workers)):
            w = _Worker(i, shard, [r["id"] for g in shard for r in g["runs"]])
            self._launch(w)
            workers.append(w)
        active = list(workers)
        try:
            while active:
                time.sleep(self.poll_interval)
                for w in list(active):
                    self._step(w, on_results, on_lost)
                    if not w.pending:
                        self._kill(w)
                        active.remove(w)
        finally:
            for w in workers:
                self._kill(w)

    def _step(self, w: _Worker, on_results, on_lost) -> None:
        rc = w.proc.poll()
        records = self._read(w)
        if rc is not None:
            records += self._read(w)
        if records:
            done = {r["id"] for r in records}
            w.pending = [i for i in w.pending if i not in done]
            w.start_failures = 0
            on_results(records)
        if not w.pending:
            return
        stalled = rc is None and time.monotonic() - w.last_progress > self.stall_timeout
        if rc is None and not stalled:
            return
        self._kill(w)
        if not w.ready:
            w.start_failures += 1
            if w.start_failures >= self.max_start_failures:
                raise QuasarError(
                    f"the simulator failed to start {w.start_failures} times in a row "
                    f"(exit status {w.proc.returncode}); log {w.log}:\n{log_tail(w.log)}"
                )
            log.warning("simulator %d did not start (exit %s), retrying; log %s", w.index, w.proc.returncode, w.log)
        else:
            lost = w.pending.pop(0)
            outcome = "hang" if stalled else "crash"
            log.warning("simulator %d %s on run %d (exit %s); restarting the rest of its shard; log %s",
                        w.index, "stalled" if stalled else "crashed", lost, w.proc.returncode, w.log)
            on_lost(lost, outcome, str(w.log))
        if w.pending:
            self._launch(w)
