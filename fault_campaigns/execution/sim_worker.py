"""The simulator side of a campaign shard: a cocotb test module run inside one long-lived Verilator process.

It reads one job file (pickle written by `fault_campaigns.execution.executor`: the array config and a list of
tile groups, each with its operands, its expected output and the runs to do on it), loads each
tile's operands once, runs every fault of that tile back to back (the RTL sequences itself, Python
sleeps), and appends one JSON line per run to the results file, flushed as it goes, so a crash loses
at most the run in flight (at most a tile's batch of fault-rate runs, which a retry then runs one by
one). Fault-rate groups (`"rate": True`, execution/rate_jobs.py) carry many runs of one tile, each with
its own activations and flips; on the cpp clock they go through one C call per group. A line holds
only the difference from the expected tile output, which is empty for a masked fault. This module
never classifies outcomes and never touches the results store.

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

from fault_campaigns.execution.rate_jobs import pack_diff, run_parts
from fault_campaigns.planning.mapping import diff_entries
from hdl_gen import ArrayConfig
from hdl_gen.config import MAC_LAG
from testbenches.array_tb import ArrayTB, Injection

PROFILE_ENV = "QUASAR_WORKER_PROFILE"
A_REG = re.compile(r"pe_(\d+)_(\d+)\.a_reg")


class EarlyStop:
    """The fast path's shortcut for a transient flip of `a_reg(i, j)` after edge e (docs/bench.md).

    The flipped activation only travels right along row i, through the PEs' product registers
    (hdl_gen.config.MAC_LAG edges from a_reg to acc): acc(i, j) takes it at edge e + MAC_LAG and
    acc(i, C-1) at edge e + C - j + MAC_LAG - 1, after which no register but row i's accumulators holds
    any trace of it. So the run stops right after that edge, reads acc(i, j..C-1) and takes their
    difference from the golden partial sums at that edge (the products that entered acc(i, jj) by
    then, ArrayConfig.products_in); row i of the tile is finished from the golden accumulators plus
    that difference by the integer post-processing and protection (bit-exact with the RTL's,
    docs/arithmetic.md), every other row is the golden one. It applies only while the drain has not
    read row i (edge `cfg.stage_edge(K, "v", i)`) and once the run has cleared acc(i, C-1) (edge
    `cfg.pe_clear_edge(i, C-1)`: before, the accumulators still hold the previous run's sums); other
    flips run the full tile.
    The post-processing pipeline behind the drain (docs/rtl.md, "Timing") only delays the row's output:
    the integer post-processing that finishes the row is the same function of its logits."""

    def __init__(self, cfg: ArrayConfig, ops, want: np.ndarray, is_last: bool, violations: int):  # type: ignore[no-untyped-def]

        self.cfg, self.ops, self.want, self.is_last = cfg, ops, want, is_last
        self.cols, self.k, self.acc_bits = cfg.cols, ops.k, cfg.acc_bits
        x, w = np.asarray(ops.x, np.int64), np.asarray(ops.w, np.int64)
        # prefix[i, n, j] = sum of the first n products of PE (i, j): the golden partial sums
        self.prefix = np.concatenate([np.zeros((x.shape[0], 1, w.shape[1]), np.int64),
                                      np.cumsum(x[:, :, None] * w[None, :, :], axis=1)], axis=1)
        self.bias = np.asarray(ops.bias, np.int64)
        self.v = self.prefix[:, -1, :] + self.bias  # golden logits (before an acc-domain protection)
        self.bounds = (ops.lo, ops.hi) if cfg.protected else None
        self.mask = ops.mask() if hasattr(ops, "mask") else np.ones((cfg.rows, cfg.cols), bool)
        self.row_violations = [self.post(r, self.v[r])[2] for r in range(cfg.rows)]
        self.violations = violations  # the golden tile's

    def post(self, r: int, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(activations, logits, violations) of row r from its biased accumulators v, through the
        post-processing and the protection in its domain (docs/arithmetic.md)."""
        from quasar import arithmetic as ar

        cfg, row, n = self.cfg, v[None, :], 0
        if self.bounds is not None and cfg.protect_domain == "acc":
            row, n = ar.protect(row, *self.bounds, policy=cfg.protect_policy, mask=self.mask[r])
        act = ar.requantize(row, self.ops.mult, self.ops.shift, cfg.act_bits)
        if self.bounds is not None and cfg.protect_domain == "act":
            act, n = ar.protect(act, *self.bounds, policy=cfg.protect_policy, mask=self.mask[r])
        return act[0], row[0], n

    def plan(self, run: dict) -> tuple[int, int, int] | None:
        """(i, j, stop_after) when this run may stop early, else None."""
        m = A_REG.fullmatch(run["site"] or "")
        if m is None or run["model"] != "flip":
            return None
        i, j = int(m.group(1)), int(m.group(2))
        stop_after = run["cycle"] + self.cols - j + MAC_LAG - 1
        if stop_after >= self.cfg.stage_edge(self.k, "v", i):  # the drain samples row i at that edge
            return None
        if stop_after < self.cfg.pe_clear_edge(i, self.cols - 1):  # acc(i, C-1) not yet cleared: stale
            return None
        return i, j, stop_after

    def probe(self, i: int, j: int) -> list[str]:
        return [f"pe_{i}_{jj}.acc" for jj in range(j, self.cols)]

    def finish(self, i: int, j: int, stop_after: int, raw: list[int]) -> tuple[int, list[list[int]], list[list[int]]]:
        """(violations, diff, logit diff) of the finished tile, as a full run's result line holds them."""

        v = self.v[i].copy()
        moved = False
        for jj, value in zip(range(j, self.cols), raw, strict=True):
            n = self.cfg.products_in(self.k, stop_after, i, jj)
            delta = _signed(value, self.acc_bits) - int(self.prefix[i, n, jj])
            if delta:
                v[jj] = _signed(int(v[jj] - self.bias[jj]) + delta, self.acc_bits) + self.bias[jj]
                moved = True
        violations = self.violations
        if not moved:  # the golden row: `want` and the golden count are exactly what it produces
            return violations, [], []
        act, logits, row = self.post(i, v)
        violations += row - self.row_violations[i]
        got = logits if self.is_last else act
        changed = np.nonzero(got != self.want[i])[0]
        vd = [[i, int(jj), int(v[jj])] for jj in np.nonzero(v != self.v[i])[0]]
        return violations, [[i, int(jj), int(got[jj])] for jj in changed], vd


def _signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def result_line(run_id: int, res, expect_out: np.ndarray, is_last: bool, elapsed: float,
                expect_logit: np.ndarray | None = None) -> str:
    got = res.logits if is_last else res.out_act
    diff = diff_entries(np.asarray(got), expect_out) if res.finished else []
    vd = None
    if expect_logit is not None and not is_last and res.finished:  # the last layer's diff is the logits'
        vd = diff_entries(np.asarray(res.logits), expect_logit)
    return _line(run_id, bool(res.finished), int(res.cycles), int(res.violations), diff, elapsed, vd=vd)


def _line(run_id: int, fin: bool, cycles: int, violations: int, diff: list, elapsed: float,
          stopped: int = 0, vd: list | None = None, packed: dict | None = None) -> str:
    """One run's JSON line; `es` (additive): when the run stopped early and was finished from golden
    state, the number of faults that shared its simulator pass; `vd` (additive, hidden layers): where
    the biased accumulators v differ from the golden ones, for the masking-stage attribution."""
    rec = {"id": run_id, "fin": fin, "cyc": cycles, "viol": violations, "diff": diff, "t": round(elapsed, 6)}
    if stopped:
        rec["es"] = stopped
    if vd is not None:
        rec["vd"] = vd
    if packed:  # a fault-rate run's differences, packed (execution/rate_jobs.py)
        rec.update(packed)
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
    total = sum(len(g["runs"]) for g in job["groups"])
    with open(os.environ["QUASAR_RESULTS"], "a", buffering=1) as out:
        out.write('{"ready":1}\n')  # from here on, a crash is the fault's doing, not the set-up's
        for group in job["groups"]:
            if group.get("rate"):
                await _rate_group(tb, cfg, group, out, prof, total, t_start, single=bool(job.get("single")))
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            ops = group["ops"]
            tb.load(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi, getattr(ops, "valid", None))
            want = group["logit"] if group["is_last"] else group["act"]
            early = None
            if group.get("early_stop") and tb.clock == "cpp":
                early = EarlyStop(cfg, ops, want, group["is_last"], group["violations"])
            prof["load_s"] += time.perf_counter() - t0
            prof["load_cpu_s"] += time.process_time() - c0
            prof["groups"] += 1
            stopped: dict[int, tuple] = {}  # run id: (i, j, stop_after) of the runs that stop early
            if early is not None:
                for run in group["runs"]:
                    stop = early.plan(run) if run["site"] is not None else None
                    if stop is not None:
                        stopped[run["id"]] = stop
            for batch in _batches(group["runs"], stopped):
                t0, c0 = time.perf_counter(), time.process_time()
                if batch[0]["id"] in stopped:
                    # one pass for early stops in different rows: a flip stays in its own row until
                    # the drain, so each probe sees exactly what its fault alone would have left
                    plans = [stopped[run["id"]] for run in batch]
                    raws = await tb.run_probed(ops.k, [
                        ([Injection(run["site"], run["mask"], run["cycle"], run["model"])], stop_after,
                         early.probe(i, j)) for run, (i, j, stop_after) in zip(batch, plans, strict=True)])
                    done = [early.finish(i, j, stop_after, raw) for (i, j, stop_after), raw in zip(plans, raws,
                                                                                               strict=True)]
                    t1, c1 = time.perf_counter(), time.process_time()
                    lines = [_line(run["id"], True, cfg.tile_cycles(ops.k), viol, diff, (t1 - t0) / len(batch),
                                   stopped=len(batch), vd=None if group["is_last"] else vd)
                             for run, (viol, diff, vd) in zip(batch, done, strict=True)]
                    prof["stopped"] = prof.get("stopped", 0) + len(batch)
                    prof["passes"] = prof.get("passes", 0) + 1
                else:
                    run = batch[0]
                    injections = []
                    if run["site"] is not None:
                        injections = [Injection(run["site"], run["mask"], run["cycle"], run["model"])]
                    res = await tb.run(ops.k, injections, max_cycles=group["max_cycles"])
                    t1, c1 = time.perf_counter(), time.process_time()
                    lines = [result_line(run["id"], res, want, group["is_last"], t1 - t0, group["logit"])]
                _emit(prof, lines, out, (t0, c0), (t1, c1), total, t_start, tb)


async def _rate_group(tb, cfg: ArrayConfig, group: dict, out, prof: dict, total: int, t_start: float,  # type: ignore[no-untyped-def]
                      single: bool = False) -> None:
    """The tile runs of a fault-rate campaign on one tile (`execution/rates.py`): the weight side is
    loaded once, each run brings its activations (its real rows), its flips (n x 3: cycle, site
    index, bit; all applied inside one run) and the integer model's output for its real lanes; its
    line holds where the RTL's output differs from that. On the cpp clock all runs of the group go
    through one C call (`ArrayTB.run_flip_batch`), unless `single` (a retry after a simulator died:
    one run at a time, so the executor blames the run that killed it, not the first of its batch)."""
    ops, k, is_last, sites = group["ops"], group["k"], group["is_last"], group["sites"]
    x = np.zeros((cfg.rows, k), group["x"].dtype)
    first = True
    # the runs of this job only (a retry's group keeps the arrays of runs already reported)
    parts = [run_parts(group, run) for run in group["runs"]]
    sizes = np.cumsum([len(f) for _, _, f in parts])
    tb.check_flips(k, np.concatenate([f for _, _, f in parts]).reshape(-1, 3), sites,
                   [int(n) for n in sizes[:-1] if 0 < n < sizes[-1]])  # where a next run's flips begin
    top = (1 << cfg.act_bits) - 1
    xs = group["x"]
    if xs.shape[1:] != (k,) or xs.dtype.kind != "u" or (xs.size and int(xs.max()) > top):
        raise ValueError(f"activations of tile {group['key']} must be unsigned, {k} wide, at most {top}")
    if tb.clock == "cpp" and not single:
        _rate_group_batch(tb, cfg, group, out, prof, total, t_start)
        return
    for run in group["runs"]:
        t0, c0 = time.perf_counter(), time.process_time()
        rows, want, flips = run_parts(group, run)
        x[:len(rows)] = rows
        if first:
            tb.load(x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi, getattr(ops, "valid", None))
            first = False
            prof["groups"] += 1
        else:
            tb.load_x(x, checked=True)
        t1, c1 = time.perf_counter(), time.process_time()
        res = await tb.run_flips(k, flips, sites, max_cycles=group["max_cycles"], checked=True,
                                 outputs=("logit",) if is_last else ("act",))
        got = (res.logits if is_last else res.out_act)[:want.shape[0], :want.shape[1]]
        diff = diff_entries(got, want) if res.finished else []
        t2, c2 = time.perf_counter(), time.process_time()
        line = _line(run["id"], bool(res.finished), int(res.cycles), int(res.violations), diff, t2 - t1)
        prof["load_s"] += t1 - t0
        prof["load_cpu_s"] += c1 - c0
        prof["run_s"] += t2 - t1
        prof["run_cpu_s"] += c2 - c1
        prof["runs"] += 1
        if prof["runs"] == total:  # before the last line: the executor ends this process after it
            _write_profile(prof, t_start, tb)
        out.write(line + "\n")
        prof["write_s"] += time.perf_counter() - t2
        prof["write_cpu_s"] += time.process_time() - c2


def _rate_group_batch(tb, cfg: ArrayConfig, group: dict, out, prof: dict, total: int, t_start: float) -> None:  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), time.process_time()
    ops, k, runs = group["ops"], group["k"], group["runs"]
    parts = [run_parts(group, run) for run in runs]
    x = np.zeros((len(runs), cfg.rows, k), group["x"].dtype)
    for n, (rows, _, _) in enumerate(parts):
        x[n, :len(rows)] = rows
    flips = np.concatenate([f for _, _, f in parts]).astype(np.int64).reshape(-1, 3)
    starts = np.cumsum([0] + [len(f) for _, _, f in parts])
    tb.load(x[0], ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi, getattr(ops, "valid", None))
    prof["groups"] += 1
    t1, c1 = time.perf_counter(), time.process_time()
    fin, cycles, values, viol = tb.run_flip_batch(k, x, flips, starts, group["sites"], group["max_cycles"],
                                                  group["is_last"])
    vp, vn = parts[0][1].shape
    want = np.stack([w for _, w, _ in parts])
    r, i, j = np.nonzero(values[:, :vp, :vn] != want)
    triplets = np.stack([i, j, values[r, i, j]], axis=1)
    cuts = np.searchsorted(r, np.arange(len(runs) + 1))
    t2, c2 = time.perf_counter(), time.process_time()
    each = (t2 - t0) / len(runs)
    lines = [_line(run["id"], bool(fin[n]), int(cycles[n]), int(viol[n]), [], each,
                   packed=pack_diff(triplets[cuts[n]:cuts[n + 1]]) if fin[n] else None)
             for n, run in enumerate(runs)]
    prof["load_s"] += t1 - t0
    prof["load_cpu_s"] += c1 - c0
    _emit(prof, lines, out, (t1, c1), (t2, c2), total, t_start, tb)


def _batches(runs: list[dict], stopped: dict[int, tuple]) -> list[list[dict]]:
    """Consecutive early-stopped runs of different rows share a pass; every other run goes alone. The
    job's order is kept, so the executor's crash blame (the first run not yet reported) stays right."""
    out: list[list[dict]] = []
    rows: set[int] = set()
    for run in runs:
        plan = stopped.get(run["id"])
        if plan is not None and out and rows and out[-1][0]["id"] in stopped and plan[0] not in rows:
            out[-1].append(run)
            rows.add(plan[0])
            continue
        out.append([run])
        rows = {plan[0]} if plan is not None else set()
    return out


def _emit(prof: dict, lines: list[str], out, run_from: tuple[float, float], run_to: tuple[float, float],  # type: ignore[no-untyped-def]
          total: int, t_start: float, tb) -> None:
    """Account the runs' wall and CPU time (from `run_from` to `run_to`, perf_counter and process_time),
    then write their result lines and account the writing."""
    prof["run_s"] += run_to[0] - run_from[0]
    prof["run_cpu_s"] += run_to[1] - run_from[1]
    prof["runs"] += len(lines)
    if prof["runs"] == total:  # before the last lines: the executor ends this process after them
        _write_profile(prof, t_start, tb)
    out.write("".join(line + "\n" for line in lines))
    prof["write_s"] += time.perf_counter() - run_to[0]
    prof["write_cpu_s"] += time.process_time() - run_to[1]


def _write_profile(prof: dict, t_start: float, tb) -> None:  # type: ignore[no-untyped-def]
    path = os.environ.get(PROFILE_ENV)
    if not path:
        return
    prof = {**prof, "total_s": time.perf_counter() - t_start, "total_cpu_s": time.process_time(),
            "words_written": tb.words_written}
    try:  # a profile is never worth a run blamed on a fault
        with open(path, "a") as fh:
            fh.write(json.dumps(prof) + "\n")
    except OSError:
        pass
