"""The simulator side of a campaign shard: a cocotb test module run inside one long-lived Verilator process.

It reads one job file (pickle written by `fault_campaigns.executor`: the array config and a list of
tile groups, each with its operands, its expected output and the runs to do on it), loads each
tile's operands once, runs every fault of that tile back to back (the RTL sequences itself, Python
sleeps), and appends one JSON line per run to the results file, flushed as it goes, so a crash loses
at most the run in flight. A line holds only the difference from the expected tile output, which is
empty for a masked fault. This module never classifies outcomes and never touches the results store.

Environment: QUASAR_JOB (job pickle), QUASAR_RESULTS (JSON-lines output, appended);
QUASAR_WORKER_PROFILE (optional): a JSON file receiving where this process's time went.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time

import cocotb
import numpy as np

from fault_campaigns.mapping import diff_entries
from hdl_gen import ArrayConfig
from testbenches.array_tb import ArrayTB, Injection

PROFILE_ENV = "QUASAR_WORKER_PROFILE"
A_REG = re.compile(r"pe_(\d+)_(\d+)\.a_reg")


class EarlyStop:
    """The fast path's shortcut for a transient flip of `a_reg(i, j)` after edge e (docs/bench.md).

    The flipped activation only travels right along row i: acc(i, j) takes it at edge e + 1 and
    acc(i, C-1) at edge e + C - j, after which no register but row i's accumulators holds any trace
    of it. So the run stops half a period after edge e + C - j, reads acc(i, j..C-1) and takes their
    difference from the golden partial sums at that edge (the products of operand indices below
    e + C - j - 2 - i - jj); the tile is finished from the golden accumulators plus that difference
    by the integer post-processing and protection (bit-exact with the RTL's, docs/arithmetic.md).
    It applies only while the drain has not read row i (edge D + i, D = K + C + 2); later flips run
    the full tile."""

    def __init__(self, cfg: ArrayConfig, ops):  # type: ignore[no-untyped-def]
        from testbenches.model import Tile

        self.cfg, self.ops = cfg, ops
        self.tile = Tile(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi)
        x, w = np.asarray(ops.x, np.int64), np.asarray(ops.w, np.int64)
        # prefix[i, n, j] = sum of the first n products of PE (i, j): the golden partial sums
        self.prefix = np.concatenate([np.zeros((x.shape[0], 1, w.shape[1]), np.int64),
                                      np.cumsum(x[:, :, None] * w[None, :, :], axis=1)], axis=1)
        self.acc = self.prefix[:, -1, :]

    def plan(self, run: dict) -> tuple[int, int, int] | None:
        """(i, j, stop_after) when this run may stop early, else None."""
        m = A_REG.fullmatch(run["site"] or "")
        if m is None or run["model"] != "flip":
            return None
        i, j = int(m.group(1)), int(m.group(2))
        cfg, k = self.cfg, self.ops.k
        stop_after = run["cycle"] + cfg.cols - j
        if stop_after > k + cfg.cols + 1 + i:  # the drain samples row i at edge K + C + 2 + i
            return None
        return i, j, stop_after

    def probe(self, i: int, j: int) -> list[str]:
        return [f"pe_{i}_{jj}.acc" for jj in range(j, self.cfg.cols)]

    def finish(self, i: int, j: int, stop_after: int, raw: list[int]):  # type: ignore[no-untyped-def]
        from testbenches.model import finish

        cfg, k = self.cfg, self.ops.k
        acc = self.acc.copy()
        for jj, value in zip(range(j, cfg.cols), raw, strict=True):
            n = min(k, max(0, stop_after - 2 - i - jj))
            delta = _signed(value, cfg.acc_bits) - int(self.prefix[i, n, jj])
            acc[i, jj] = _signed(int(acc[i, jj]) + delta, cfg.acc_bits)
        return finish(cfg, self.tile, acc + np.asarray(self.ops.bias, np.int64))


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


class _Finished:
    """What result_line needs from a run finished from golden state + difference."""

    finished = True

    def __init__(self, exp, cycles: int):  # type: ignore[no-untyped-def]
        self.out_act, self.logits, self.violations, self.cycles = exp.out_act, exp.logits, exp.violations, cycles


def result_line(run_id: int, res, expect_out: np.ndarray, is_last: bool, elapsed: float, stopped: bool = False) -> str:
    """One run's JSON line; `es` (additive): 1 when the run stopped early and was finished from golden state."""
    got = res.logits if is_last else res.out_act
    diff = diff_entries(np.asarray(got), expect_out) if res.finished else []
    rec = {"id": run_id, "fin": bool(res.finished), "cyc": int(res.cycles), "viol": int(res.violations),
           "diff": diff, "t": round(elapsed, 6)}
    if stopped:
        rec["es"] = 1
    return json.dumps(rec, separators=(",", ":"))


def _process_age() -> float:
    """Seconds since this process started (simulator start-up, Python and cocotb imports included)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@cocotb.test()
async def run_shard(dut):
    prof = {"startup_s": _process_age(), "startup_cpu_s": time.process_time(), "load_s": 0.0, "run_s": 0.0,
            "write_s": 0.0, "load_cpu_s": 0.0, "run_cpu_s": 0.0, "write_cpu_s": 0.0, "groups": 0, "runs": 0,
            "words_written": 0}
    t_start = time.perf_counter()
    with open(os.environ["QUASAR_JOB"], "rb") as fh:
        job = pickle.load(fh)
    cfg = ArrayConfig.from_dict(job["array"])
    tb = ArrayTB(dut, cfg)
    await tb.reset()
    prof["job_s"] = time.perf_counter() - t_start
    with open(os.environ["QUASAR_RESULTS"], "a", buffering=1) as out:
        out.write('{"ready":1}\n')  # from here on, a crash is the fault's doing, not the set-up's
        for group in job["groups"]:
            t0, c0 = time.perf_counter(), time.process_time()
            ops = group["ops"]
            tb.load(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi)
            want = group["logit"] if group["is_last"] else group["act"]
            early = EarlyStop(cfg, ops) if group.get("early_stop") and tb.clock == "cpp" else None
            prof["load_s"] += time.perf_counter() - t0
            prof["load_cpu_s"] += time.process_time() - c0
            prof["groups"] += 1
            for run in group["runs"]:
                injections = []
                if run["site"] is not None:
                    injections = [Injection(run["site"], run["mask"], run["cycle"], run["model"])]
                t0, c0 = time.perf_counter(), time.process_time()
                stop = early.plan(run) if early is not None else None
                if stop is not None:
                    i, j, stop_after = stop
                    raw = await tb.run_stopped(ops.k, injections, stop_after, early.probe(i, j))
                    res = _Finished(early.finish(i, j, stop_after, raw), cfg.tile_cycles(ops.k))
                    prof["stopped"] = prof.get("stopped", 0) + 1
                else:
                    res = await tb.run(ops.k, injections, max_cycles=group["max_cycles"])
                t1, c1 = time.perf_counter(), time.process_time()
                out.write(result_line(run["id"], res, want, group["is_last"], t1 - t0, stop is not None) + "\n")
                prof["run_s"] += t1 - t0
                prof["run_cpu_s"] += c1 - c0
                prof["write_s"] += time.perf_counter() - t1
                prof["write_cpu_s"] += time.process_time() - c1
                prof["runs"] += 1
    prof["total_s"] = time.perf_counter() - t_start
    prof["total_cpu_s"] = time.process_time()
    prof["words_written"] = tb.words_written
    path = os.environ.get(PROFILE_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(prof) + "\n")
