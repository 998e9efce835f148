"""The simulator side of a campaign shard: a cocotb test module run inside one long-lived Verilator process.

It reads one job file (pickle written by `fault_campaigns.executor`: the array config and a list of
tile groups, each with its operands, its expected output and the runs to do on it), loads each
tile's operands once, runs every fault of that tile back to back (the RTL sequences itself, Python
sleeps), and appends one JSON line per run to the results file, flushed as it goes, so a crash loses
at most the run in flight. A line holds only the difference from the expected tile output, which is
empty for a masked fault. This module never classifies outcomes and never touches the results store.

Environment: QUASAR_JOB (job pickle), QUASAR_RESULTS (JSON-lines output, appended).
"""

from __future__ import annotations

import json
import os
import pickle
import time

import cocotb
import numpy as np

from fault_campaigns.mapping import diff_entries
from hdl_gen import ArrayConfig
from testbenches.array_tb import ArrayTB, Injection


def result_line(run_id: int, res, expect_out: np.ndarray, is_last: bool, elapsed: float) -> str:
    got = res.logits if is_last else res.out_act
    diff = diff_entries(np.asarray(got), expect_out) if res.finished else []
    return json.dumps(
        {"id": run_id, "fin": bool(res.finished), "cyc": int(res.cycles), "viol": int(res.violations),
         "diff": diff, "t": round(elapsed, 6)},
        separators=(",", ":"),
    )


@cocotb.test()
async def run_shard(dut):
    with open(os.environ["QUASAR_JOB"], "rb") as fh:
        job = pickle.load(fh)
    cfg = ArrayConfig.from_dict(job["array"])
    tb = ArrayTB(dut, cfg)
    await tb.reset()
    with open(os.environ["QUASAR_RESULTS"], "a", buffering=1) as out:
        out.write('{"ready":1}\n')  # from here on, a crash is the fault's doing, not the set-up's
        for group in job["groups"]:
            ops = group["ops"]
            tb.load(ops.x, ops.w, ops.bias, ops.mult, ops.shift, ops.lo, ops.hi)
            want = group["logit"] if group["is_last"] else group["act"]
            for run in group["runs"]:
                injections = []
                if run["site"] is not None:
                    injections = [Injection(run["site"], run["mask"], run["cycle"], run["model"])]
                t0 = time.perf_counter()
                res = await tb.run(ops.k, injections, max_cycles=group["max_cycles"])
                out.write(result_line(run["id"], res, want, group["is_last"], time.perf_counter() - t0) + "\n")
