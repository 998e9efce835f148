"""Throughput of the fast path: tile runs/s and simulated cycles/s in one simulator process.

    python -m testbenches.bench --rows 8 --cols 8 --bits 8 --k 25 150 400

builds (or reuses) the design, runs this module's cocotb test in the simulator and prints one JSON
line per K: golden runs (no fault), runs with one transient flip each (the campaign's case) and
repeated loads of the same operands. This module is also the cocotb test module it launches.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

BENCH_ENV = "QUASAR_BENCH"  # JSON: {"ks": [...], "runs": N, "out": path}


def _operands(cfg, k: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    x = rng.integers(0, 1 << cfg.act_bits, (cfg.rows, k))
    top = (1 << (cfg.weight_bits - 1)) - 1
    wt = rng.integers(-top, top + 1, (k, cfg.cols))
    return x, wt


try:
    import cocotb
except ImportError:  # pragma: no cover - cocotb is a pinned dependency
    cocotb = None

if cocotb is not None:

    @cocotb.test()
    async def bench_throughput(dut) -> None:  # type: ignore[no-untyped-def]
        from testbenches.array_tb import ArrayTB, Injection, config_from_env

        cfg = config_from_env()
        spec = json.loads(os.environ[BENCH_ENV])
        tb = ArrayTB(dut, cfg)
        rng = np.random.default_rng(0)
        rows = []
        for k in spec["ks"]:
            n = int(spec["runs"])
            x, wt = _operands(cfg, k, rng)
            tb.load(x, wt, np.zeros(cfg.cols, dtype=np.int64), np.full(cfg.cols, 1 << 15), np.full(cfg.cols, 20))
            await tb.run(k)
            span = cfg.tile_cycles(k)
            t = time.perf_counter()
            for _ in range(n):
                await tb.run(k)
            golden = time.perf_counter() - t
            sites = [f"pe_{i}_{j}.a_reg" for i in range(cfg.rows) for j in range(cfg.cols)]
            faults = [
                Injection(sites[rng.integers(len(sites))], 1 << int(rng.integers(cfg.act_bits)), cycle)
                for cycle in rng.integers(span, size=n).tolist()
            ]
            t = time.perf_counter()
            for f in faults:
                await tb.run(k, [f])
            faulty = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n):
                tb.load(x, wt, np.zeros(cfg.cols, dtype=np.int64), np.full(cfg.cols, 1 << 15), np.full(cfg.cols, 20))
            reload = time.perf_counter() - t
            xs, ws = _operands(cfg, k, rng)
            t = time.perf_counter()
            tb.load_operands(xs, ws)
            fresh = time.perf_counter() - t
            rows.append(
                {
                    "config": cfg.key(),
                    "k": k,
                    "tile_cycles": span,
                    "golden_runs_per_s": round(n / golden, 1),
                    "golden_cycles_per_s": round(n * span / golden),
                    "flip_runs_per_s": round(n / faulty, 1),
                    "flip_cycles_per_s": round(n * span / faulty),
                    "unchanged_reload_ms": round(1e3 * reload / n, 4),
                    "fresh_operand_load_ms": round(1e3 * fresh, 3),
                }
            )
        with open(spec["out"], "w") as fh:
            json.dump(rows, fh)


def main(argv: list[str] | None = None) -> int:
    from hdl_gen import ArrayConfig
    from testbenches import sim

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8, help="array rows (default 8)")
    ap.add_argument("--cols", type=int, default=8, help="array columns (default 8)")
    ap.add_argument("--bits", type=int, default=8, help="activation and weight bits (default 8)")
    ap.add_argument("--k-max", type=int, default=1024, help="operand buffer depth (default 1024)")
    ap.add_argument("--protection", default="range", help="none or range (default range)")
    ap.add_argument("--k", type=int, nargs="+", default=[25, 150, 400],
                    help="reduction lengths K to time, one JSON line each (default 25 150 400)")
    ap.add_argument("--runs", type=int, default=2000, help="tile runs per K and kind (default 2000)")
    ap.add_argument("--clock", choices=sim.CLOCKS, default="gpi",
                    help="who toggles the clock: gpi = cocotb's GPI clock from the simulator's callback loop "
                         "(the reference testbench, default); cpp = the simulator's C++ main steps the clock "
                         "when Python asks for N cycles, with no callback per cycle (the campaign's fast path, "
                         "docs/bench.md)")
    args = ap.parse_args(argv)
    cfg = ArrayConfig(args.rows, args.cols, args.bits, args.bits, args.k_max, args.protection)
    t = time.monotonic()
    b = sim.build(cfg, clock=args.clock)
    wall = round(time.monotonic() - t, 2)
    print(json.dumps({"config": cfg.key(), "clock": args.clock, "build_s": round(b.build_seconds, 2), "wall_s": wall}))
    out = b.root / "bench.json"
    env = {BENCH_ENV: json.dumps({"ks": args.k, "runs": args.runs, "out": str(out)})}
    outcome = sim.run_test(b, "testbenches.bench", extra_env=env, timeout=3600)
    for row in json.loads(out.read_text()):
        print(json.dumps(row))
    print(json.dumps({"simulator_process_s": round(outcome.seconds, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
