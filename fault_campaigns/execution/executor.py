"""Parallel execution of campaign shards on long-lived simulator processes.

The work is a list of tile groups (operands + runs). It is cut into contiguous shards; each shard runs
in one Verilator process (`fault_campaigns.execution.sim_worker`) driven by a `ShardRunner`, which tails the
process's JSON-lines result file and hands every finished run to a callback as soon as it appears.
`LocalExecutor` drives one runner per core on this machine; `fault_campaigns.execution.dask_executor` drives the
same runner inside Dask tasks on a cluster.

Failures never stop the campaign and never lose work:
- a simulator that exits before finishing its shard died on the run in flight (the first of its
  shard not yet reported); a fresh simulator takes the rest of the shard, starting again with that
  run. Only a run that kills `max_run_attempts` simulators in a row is blamed and recorded `crash`:
  a simulator killed from outside (out of memory, an operator) costs a retry, not a wrong outcome;
- a simulator that reports nothing for `stall_timeout` seconds is killed and handled the same way
  (recorded `hang` after `max_run_attempts`); faults that stop the RTL itself end at the testbench's
  cycle bound and come back as ordinary unfinished runs (`hang`);
- a simulator that dies before it is ready (build or start-up trouble, not a fault) is retried
  without blaming any run; after `max_start_failures` such failures in a row the campaign stops with
  the simulator's log tail, because no result could be trusted;
- simulators die with the process that drives them (parent-death signal), so a campaign killed with
  SIGKILL leaves no simulator behind writing into the next session's files;
- a session's work directory (job, results and log files of its simulators) is removed when the
  session ends, finished or interrupted, unless a simulator crashed, stalled or failed to start in it:
  then it stays, with the logs the warnings name.
This module never classifies outcomes and never touches the results store.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from quasar.errors import QuasarError

log = logging.getLogger(__name__)

WORKER_MODULE = "fault_campaigns.execution.sim_worker"
WORKER_TEST = "run_shard"
REPO_ROOT = Path(__file__).resolve().parents[2]

OnResults = Callable[[list[dict]], None]
OnLost = Callable[[int, str, str], None]


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


def session_dir(work_dir: Path) -> Path:
    """A fresh directory per executor session: a resumed campaign never shares files with a killed one."""
    path = Path(work_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def remove_session_dir(path: Path, levels: int = 2) -> None:
    """Remove a session directory, then up to `levels` parents left empty (work/<tag>/, work/)."""
    shutil.rmtree(path, ignore_errors=True)
    for parent in list(Path(path).parents)[:levels]:
        try:
            parent.rmdir()
        except OSError:  # not empty (another session's files, kept logs) or already gone
            break


# setpriv (util-linux) sets a parent-death signal and execs the simulator: safe with threads, unlike
# preexec_fn, and the simulator dies with its driver even when the driver is SIGKILLed.
_SETPRIV = shutil.which("setpriv")


class ShardRunner:
    """One shard on one simulator process at a time: launch, tail the results, relaunch on failure."""

    def __init__(self, build, work_dir: Path, index: int, groups: list[dict], on_results: OnResults,
                 on_lost: OnLost, stall_timeout: float = 180.0, max_start_failures: int = 3,
                 max_run_attempts: int = 2, where: str = ""):
        self.build = build
        self.work_dir = Path(work_dir)
        self.index = index
        self.groups = groups
        self.pending = [r["id"] for g in groups for r in g["runs"]]  # in the order the simulator runs them
        self._pending_set = set(self.pending)
        self.on_results, self.on_lost = on_results, on_lost
        self.stall_timeout = stall_timeout
        self.max_start_failures = max_start_failures
        self.max_run_attempts = max_run_attempts
        self.where = where  # names the machine in messages (Dask worker address)
        self.attempt = 0
        self.start_failures = 0
        self.deaths: dict[int, int] = {}  # run id -> simulators that died with it in flight
        self.retries = 0
        self.proc: subprocess.Popen | None = None
        self.results: Path | None = None
        self.log: Path | None = None
        self._files: list[Path] = []
        self.offset, self.partial, self.ready = 0, b"", False
        self.last_progress = time.monotonic()
        self.troubled = False  # a simulator of this shard crashed, stalled or failed to start: keep its logs

    @property
    def done(self) -> bool:
        return not self.pending

    def launch(self) -> None:
        from testbenches.sim import sim_command

        self.attempt += 1
        stem = self.work_dir / f"shard{self.index:03d}-try{self.attempt:02d}"
        job = stem.with_suffix(".job.pkl")
        self.results, self.log = stem.with_suffix(".jsonl"), stem.with_suffix(".log")
        if self.attempt > 1:  # a relaunch: only the runs not yet reported
            groups = []
            for g in self.groups:
                runs = [r for r in g["runs"] if r["id"] in self._pending_set]
                if runs:
                    groups.append({**g, "runs": runs})
            self.groups = groups
        groups = self.groups
        try:
            with open(job, "wb") as fh:
                # "single": after a simulator died, one run per step, so the next death names its run
                pickle.dump({"array": self.build.cfg.to_dict(), "groups": groups, "single": bool(self.deaths)}, fh,
                            protocol=5)
            self.results.write_bytes(b"")
        except OSError as exc:
            raise QuasarError(f"cannot write the simulator's job file {job}: {exc.strerror or exc}") from None
        self._files += [job, self.results]
        env_extra = {"QUASAR_JOB": str(job), "QUASAR_RESULTS": str(self.results)}
        cmd, env, cwd = sim_command(
            self.build, WORKER_MODULE, WORKER_TEST, extra_env=env_extra, python_path=[str(REPO_ROOT)],
            results_xml=stem.with_suffix(".xml"),
        )
        if _SETPRIV:
            cmd = [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
        with open(self.log, "wb") as logfh:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=logfh, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.offset, self.partial, self.ready, self.last_progress = 0, b"", False, time.monotonic()

    def _read(self) -> list[dict]:
        with open(self.results, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        if not chunk:
            return []
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            if not line:
                continue
            rec = json.loads(line)
            if "ready" in rec:
                self.ready = True
            elif rec["id"] in self._pending_set:  # a run is reported once, whatever a retry repeats
                self._pending_set.discard(rec["id"])
                out.append(rec)
        if lines:
            self.last_progress = time.monotonic()
        return out

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def cleanup(self) -> None:
        """Drop the job and results files of a finished shard (the logs stay)."""
        for f in self._files:
            f.unlink(missing_ok=True)

    def step(self) -> None:
        """Collect what the simulator reported; relaunch it if it died or stalled."""
        rc = self.proc.poll()
        records = self._read()
        if rc is not None:
            records += self._read()
        if records:
            self.pending = [i for i in self.pending if i in self._pending_set]
            self.start_failures = 0
            self.on_results(records)
        if not self.pending:
            return
        stalled = rc is None and time.monotonic() - self.last_progress > self.stall_timeout
        if rc is None and not stalled:
            return
        self.kill()
        self.troubled = True
        where = f"simulator {self.index}{self.where}"
        if not self.ready:
            self.start_failures += 1
            if self.start_failures >= self.max_start_failures:
                raise QuasarError(
                    f"the simulator failed to start {self.start_failures} times in a row "
                    f"(exit status {self.proc.returncode}){self.where}; log {self.log}:\n{log_tail(self.log)}"
                )
            log.warning("%s did not start (exit %s), retrying; log %s", where, self.proc.returncode, self.log)
        else:
            rid = self.pending[0]
            self.deaths[rid] = self.deaths.get(rid, 0) + 1
            what = "stalled" if stalled else "crashed"
            if self.deaths[rid] >= self.max_run_attempts:
                self.pending.pop(0)
                self._pending_set.discard(rid)
                log.warning("%s %s on run %d again (%d times, exit %s): recorded as %s; log %s", where, what, rid,
                            self.deaths[rid], self.proc.returncode, "hang" if stalled else "crash", self.log)
                self.on_lost(rid, "hang" if stalled else "crash", f"{self.log}{self.where}")
            else:
                self.retries += 1
                log.warning("%s %s on run %d (exit %s); retrying the rest of its shard from that run; log %s",
                            where, what, rid, self.proc.returncode, self.log)
        if self.pending:
            self.launch()

    def run(self, poll_interval: float = 0.2) -> None:
        """Run the whole shard here, blocking (the Dask task's loop)."""
        try:
            self.launch()
            while self.pending:
                time.sleep(poll_interval)
                self.step()
            self.cleanup()
        finally:
            self.kill()


class LocalExecutor:
    """Runs shards on `workers` simulator processes of one built design on this machine."""

    def __init__(self, build, work_dir: Path, workers: int | None = None, stall_timeout: float = 180.0,
                 max_start_failures: int = 3, poll_interval: float = 0.05, max_run_attempts: int = 2):
        self.build = build
        self.work_dir = Path(work_dir).resolve()
        self.workers = workers or os.cpu_count() or 1
        self.stall_timeout = stall_timeout
        self.max_start_failures = max_start_failures
        self.poll_interval = poll_interval
        self.max_run_attempts = max_run_attempts

    def run(self, groups: Sequence[dict], on_results: OnResults, on_lost: OnLost) -> None:
        """Run every run of `groups`; `on_results(records)` gets finished runs as they come,
        `on_lost(run_id, outcome, log_path)` a run that took down its simulator ("crash") or stalled
        it ("hang") `max_run_attempts` times."""
        if not groups:
            return
        work = session_dir(self.work_dir)
        runners: list[ShardRunner] = []
        try:
            self._run(work, runners, groups, on_results, on_lost)
        finally:
            for r in runners:
                r.kill()
            if not any(r.troubled for r in runners):
                remove_session_dir(work)

    def _run(self, work: Path, runners: list, groups: Sequence[dict], on_results: OnResults,
             on_lost: OnLost) -> None:
        runners += [
            ShardRunner(self.build, work, i, shard, on_results, on_lost, self.stall_timeout, self.max_start_failures,
                        self.max_run_attempts)
            for i, shard in enumerate(split_groups(groups, self.workers))
        ]
        active = list(runners)
        for r in runners:
            r.launch()
        while active:
            time.sleep(self.poll_interval)
            for r in list(active):
                r.step()
                if r.done:
                    r.kill()
                    r.cleanup()
                    active.remove(r)
