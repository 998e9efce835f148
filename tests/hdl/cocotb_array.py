"""cocotb tests of the generated array, all run in one simulator process per build (tests/hdl/test_rtl_sim.py).

Each test adapts to the design's config (read from QUASAR_ARRAY_CONFIG) and checks the simulator
against quasar.arithmetic (the numpy oracle of docs/arithmetic.md) and testbenches.model (the
analytic dataflow/fault model of docs/rtl.md). Seeds come from QUASAR_TEST_SEED (default 1).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from hdl_gen.signoff.cocotb_checks import check_protection, random_bounds
from quasar import arithmetic as ar
from testbenches.array_tb import ArrayTB, Injection, TileResult, config_from_env
from testbenches.model import Expected, Tile, golden, operand_index, partial_products, predict


def _setup(dut, salt: int):  # type: ignore[no-untyped-def]
    cfg = config_from_env()
    seed = int(os.environ.get("QUASAR_TEST_SEED", "1"))
    return cfg, ArrayTB(dut, cfg), np.random.default_rng([seed, salt])


def _w_range(cfg) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    top = (1 << (cfg.weight_bits - 1)) - 1
    return -top - 1, top  # the RTL computes the most negative code exactly, so drive it too


def _random_tile(cfg, rng, k: int, bounds: bool = True) -> Tile:  # type: ignore[no-untyped-def]
    a_top = (1 << cfg.act_bits) - 1
    w_lo, w_hi = _w_range(cfg)
    acc_half = 1 << (cfg.acc_bits - 1)
    x = rng.integers(0, a_top + 1, (cfg.rows, k))
    wt = rng.integers(w_lo, w_hi + 1, (k, cfg.cols))
    # bias: mostly at the accumulator's typical magnitude, sometimes anywhere in its range
    typical = max(1, int(np.abs(ar.matmul(x, wt)).max()))
    bias = np.where(rng.random(cfg.cols) < 0.8, rng.integers(-typical, typical + 1, cfg.cols),
                    rng.integers(-acc_half, acc_half, cfg.cols))
    mult = _mults(cfg, rng.integers(0, 1 << 16, cfg.cols))
    # shifts that land the requantized value inside, just around, and far from [0, 2^A - 1]
    scale = max(0, int(typical).bit_length() + (0 if cfg.shift_only else 16) - cfg.act_bits)
    shift = np.clip(scale + rng.integers(-3, 4, cfg.cols), 0, 63)
    lo, hi = random_bounds(cfg, rng, scale=2 * typical) if bounds else (None, None)
    return Tile(x, wt, bias, mult, shift, lo, hi)


def _mults(cfg, mult: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The multipliers a design can take: any 16-bit M, or M = 1 on a shift-only design (requant="shift")."""
    return np.ones_like(mult) if cfg.shift_only else mult


def _load(tb: ArrayTB, tile: Tile) -> None:
    tb.load(tile.x, tile.wt, tile.bias, tile.mult, tile.shift, tile.lo, tile.hi, tile.valid)


def _check(cfg, got: TileResult, exp: Expected, k: int, what: str) -> None:  # type: ignore[no-untyped-def]
    assert got.finished, f"{what}: the run did not finish\n{got!r}"
    assert got.cycles == cfg.tile_cycles(k), f"{what}: {got.cycles} cycles, tile_cycles({k}) = {cfg.tile_cycles(k)}"
    assert np.array_equal(got.logits, exp.logits), (
        f"{what}: logits\n got {got.logits.tolist()}\n exp {exp.logits.tolist()}"
    )
    assert np.array_equal(got.out_act, exp.out_act), (
        f"{what}: out_act\n got {got.out_act.tolist()}\n exp {exp.out_act.tolist()}"
    )
    assert got.violations == exp.violations, f"{what}: violations {got.violations}, expected {exp.violations}"


def _ks(cfg) -> list[int]:  # type: ignore[no-untyped-def]
    """K = 1, a prime, and the largest supported."""
    primes = [p for p in (13, 11, 7, 5, 3, 2) if p <= cfg.k_max]
    return sorted({1, cfg.k_max, *primes[:1]})


# ---- group 1: matmuls ---------------------------------------------------------------------------
@cocotb.test()
async def matmul_random(dut) -> None:  # type: ignore[no-untyped-def]
    """Random tiles for K = 1, a prime and k_max, bit-exact logits, activations and counter."""
    cfg, tb, rng = _setup(dut, 1)
    tiles = int(os.environ.get("QUASAR_TILES", "6"))
    for k in _ks(cfg):
        for t in range(tiles):
            tile = _random_tile(cfg, rng, k)
            _load(tb, tile)
            _check(cfg, await tb.run(k), golden(cfg, tile), k, f"K={k} tile {t}")


@cocotb.test()
async def matmul_extremes(dut) -> None:  # type: ignore[no-untyped-def]
    """Operands, bias, M and S at the extremes of their ranges at K = k_max: no overflow anywhere."""
    cfg, tb, rng = _setup(dut, 2)
    k = cfg.k_max
    a_top = (1 << cfg.act_bits) - 1
    w_lo, w_hi = _w_range(cfg)
    acc_half = 1 << (cfg.acc_bits - 1)
    c = cfg.cols
    patterns = {
        "max*max": (np.full((cfg.rows, k), a_top), np.full((k, c), w_hi)),
        "max*min": (np.full((cfg.rows, k), a_top), np.full((k, c), w_lo)),
        "max*-max": (np.full((cfg.rows, k), a_top), np.full((k, c), -w_hi)),
        "zero": (np.zeros((cfg.rows, k), dtype=np.int64), np.full((k, c), w_lo)),
        "checker": (
            np.where(np.indices((cfg.rows, k)).sum(axis=0) % 2 == 0, a_top, 0),
            np.where(np.indices((k, c)).sum(axis=0) % 2 == 0, w_lo, w_hi),
        ),
    }
    biases = [np.full(c, acc_half - 1), np.full(c, -acc_half), np.zeros(c, dtype=np.int64)]
    params = [
        (_mults(cfg, np.full(c, (1 << 16) - 1)), np.zeros(c, dtype=np.int64)),  # largest product, no shift
        (_mults(cfg, np.full(c, (1 << 16) - 1)), np.full(c, 63)),  # largest shift
        (_mults(cfg, rng.integers(0, 1 << 16, c)), rng.integers(0, 64, c)),
    ]
    for name, (x, wt) in patterns.items():
        for b, bias in enumerate(biases):
            for p, (mult, shift) in enumerate(params):
                tile = Tile(x, wt, bias, mult, shift, *random_bounds(cfg, rng))
                _load(tb, tile)
                _check(cfg, await tb.run(k), golden(cfg, tile), k, f"{name} bias#{b} params#{p}")


# ---- group 2: post-processing -------------------------------------------------------------------
def _pp_cases(cfg, rng) -> list[tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """(M, S, v0): a requantization setting and a v near one of its boundaries (a rounding tie next to
    0, 1, 2^A - 1 or 2^A, or around v = 0); the tile covers v0 .. v0 + rows - 1."""
    a_top = (1 << cfg.act_bits) - 1
    acc_half = 1 << (cfg.acc_bits - 1)
    settings = [(0, 0), (0, 9), (1, 0), (1, 1), (1, 2), (3, 1), (5, 3), (1 << 15, 15), (40000, 20),
                ((1 << 16) - 1, 0), ((1 << 16) - 1, 16), ((1 << 16) - 1, 63), (1, 63)]
    settings += [(int(rng.integers(1 << 15, 1 << 16)), int(rng.integers(0, 64))) for _ in range(4)]
    if cfg.shift_only:  # M = 1 only: every shift from 0 to 63 instead
        settings = [(1, s) for s in range(64)]
    cases = []
    half_rows = (cfg.rows - 1) // 2
    for m, s in settings:
        for target in (-1, 0, 1, a_top, a_top + 1, a_top // 2):
            # the v whose v*M/2^S is target + 1/2 (a tie), or 0 when M = 0
            v_tie = ((2 * target + 1) << s) // (2 * m) if m else target
            v0 = int(np.clip(v_tie - half_rows, -acc_half, acc_half - 1 - cfg.rows))
            cases.append((m, s, v0))
        cases.append((m, s, -half_rows))  # around v = 0
    return cases


@cocotb.test()
async def postproc_boundaries(dut) -> None:  # type: ignore[no-untyped-def]
    """Bias add, v*M, round half up, shift and the [0, 2^A-1] clamp, bit-exact at rounding ties and
    clamp edges. K = 1, x[i] = i and w = 1 make row i's accumulator i, so column j sees v = bias_j + i."""
    cfg, tb, rng = _setup(dut, 3)
    cases = _pp_cases(cfg, rng)
    c = cfg.cols
    x = np.arange(cfg.rows).reshape(cfg.rows, 1) % (1 << cfg.act_bits)
    wt = np.ones((1, c), dtype=np.int64)
    checked = 0
    for start in range(0, len(cases), c):
        chunk = cases[start : start + c]
        chunk += [chunk[-1]] * (c - len(chunk))
        mult = np.array([m for m, _, _ in chunk])
        shift = np.array([s for _, s, _ in chunk])
        bias = np.array([v0 for _, _, v0 in chunk])
        tile = Tile(x, wt, bias, mult, shift)  # bounds that pass everything
        _load(tb, tile)
        got = await tb.run(1)
        exp = golden(cfg, tile)
        _check(cfg, got, exp, 1, f"post-processing cases {start}..")
        # the oracle itself, spelled out once more for the boundary values (round half up, clamp)
        v = exp.logits
        p = v * mult
        r = np.where(shift > 0, (p + np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)) >> shift, p)
        assert np.array_equal(got.out_act, np.clip(r, 0, (1 << cfg.act_bits) - 1))
        checked += got.out_act.size
    assert checked >= len(cases)


@cocotb.test()
async def postproc_random(dut) -> None:  # type: ignore[no-untyped-def]
    """Random accumulators over the whole accumulator range (random operands, bias, M and S)."""
    cfg, tb, rng = _setup(dut, 4)
    k = min(cfg.k_max, 5)
    for t in range(12):
        tile = _random_tile(cfg, rng, k, bounds=False)
        if t % 3 == 2:  # push v across the full V range through the bias
            half = 1 << (cfg.acc_bits - 1)
            tile = Tile(tile.x, tile.wt, rng.integers(-half, half, cfg.cols), tile.mult,
                        rng.integers(0, 64, cfg.cols), tile.lo, tile.hi)
        _load(tb, tile)
        _check(cfg, await tb.run(k), golden(cfg, tile), k, f"random post-processing tile {t}")


# ---- group 3: protection ------------------------------------------------------------------------
@cocotb.test()
async def protection_signoff(dut) -> None:  # type: ignore[no-untyped-def]
    """The sign-off's injection check (hdl_gen.signoff.cocotb_checks.check_protection): every boundary
    (lo-1, lo, hi, hi+1) and random values at the protection input, full and edge tiles: real outputs
    out of range become the policy's value, in-range ones and padding lanes pass, the counter counts
    exactly the corrected real outputs; `none` alters nothing and counts nothing."""
    cfg, tb, rng = _setup(dut, 5)
    await check_protection(cfg, tb, rng)


@cocotb.test()
async def protection_counter_per_run(dut) -> None:  # type: ignore[no-untyped-def]
    """The violation counter counts one tile run: cleared by start, summed over all rows."""
    cfg, tb, rng = _setup(dut, 6)
    a_top = (1 << cfg.act_bits) - 1
    zero = np.zeros(cfg.cols, dtype=np.int64) if cfg.per_channel_bounds else 0
    x = np.full((cfg.rows, 1), a_top, dtype=np.int64)
    offsets = np.concatenate([[0], rng.integers(-2, 3, cfg.cols - 1)])
    tile = Tile(x, np.ones((1, cfg.cols), dtype=np.int64), offsets, np.ones(cfg.cols, dtype=np.int64),
                np.zeros(cfg.cols, dtype=np.int64), zero, zero)  # every v (and y) > 0 violates hi = 0
    _load(tb, tile)
    first = await tb.run(1)
    second = await tb.run(1)
    exp = golden(cfg, tile)
    _check(cfg, first, exp, 1, "first run")
    _check(cfg, second, exp, 1, "second run (counter restarted)")
    if cfg.protected:
        assert first.violations == int(np.count_nonzero(ar.matmul(tile.x, tile.wt) + tile.bias > 0)) > 0


# ---- group 4: fault behaviour -------------------------------------------------------------------
def _pes(cfg) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    r, c = cfg.rows - 1, cfg.cols - 1
    return sorted({(0, 0), (r, c), (r // 2, c // 2), (0, c), (r, 0)})


def _fault_tile(cfg, rng, clamp: bool = False) -> Tile:  # type: ignore[no-untyped-def]
    """A random tile for fault tests; without `clamp` the bounds are [0, 2^A-1], so the protection
    cannot hide an output-activation flip."""
    k = min(cfg.k_max, 7)
    tile = _random_tile(cfg, rng, k, bounds=clamp)
    # no zero activations and weights, so that every in-window flip must show up somewhere
    w_lo, w_hi = _w_range(cfg)
    x = np.where(tile.x == 0, 1, tile.x)
    wt = np.where(tile.wt == 0, w_hi, tile.wt)
    valid = (int(rng.integers(1, cfg.rows + 1)), cfg.cols) if clamp else None  # padding rows pass unprotected
    return Tile(x, wt, tile.bias, tile.mult, tile.shift, tile.lo, tile.hi, valid)


async def _expect_fault(cfg, tb, tile, inj: Injection, what: str) -> bool:  # type: ignore[no-untyped-def]
    """Run one fault, compare with the analytic model; True when the model predicts a visible change."""
    got = await tb.run(tile.k, [inj])
    exp = predict(cfg, tile, inj.site, inj.mask, inj.cycle, inj.model)
    _check(cfg, got, exp, tile.k, f"{what} {inj}")
    gold = golden(cfg, tile)
    return not np.array_equal(exp.logits, gold.logits) or not np.array_equal(exp.out_act, gold.out_act)


@cocotb.test()
async def fault_pe_activation(dut) -> None:  # type: ignore[no-untyped-def]
    """Flips in a_reg of several PEs at several bits and every cycle of the run change exactly C[i, j:]
    by (a' - a) * Wt[k, j:], k = e - 2 - i - j, and nothing when the register holds no operand (before
    the value arrives, after it has left the PE, during the drain)."""
    cfg, tb, rng = _setup(dut, 7)
    tile = _fault_tile(cfg, rng)
    _load(tb, tile)
    _check(cfg, await tb.run(tile.k), golden(cfg, tile), tile.k, "golden")
    span = cfg.tile_cycles(tile.k)
    visible = silent = 0
    for i, j in _pes(cfg):
        for bit in sorted({0, cfg.act_bits - 1, int(rng.integers(cfg.act_bits))}):
            for cycle in range(span):
                inj = Injection(f"pe_{i}_{j}.a_reg", 1 << bit, cycle)
                changed = await _expect_fault(cfg, tb, tile, inj, "a_reg flip")
                in_window = 0 <= operand_index(cycle, i, j) < tile.k
                assert changed == in_window, f"{inj}: changed={changed}, operand window={in_window}"
                visible += changed
                silent += not in_window
    assert visible > 0 and silent > 0
    # the register after the value left the PE: the next edge overwrote the flip, nothing changes
    i, j = _pes(cfg)[-1]
    last = tile.k - 1 + 2 + i + j + 1
    got = await tb.run(tile.k, [Injection(f"pe_{i}_{j}.a_reg", 1, last)])
    assert got == await tb.run(tile.k)
    # multi-bit mask
    inj = Injection(f"pe_{0}_{0}.a_reg", (1 << cfg.act_bits) - 1, 2 + tile.k // 2)
    assert await _expect_fault(cfg, tb, tile, inj, "all-bits flip")


@cocotb.test()
async def fault_other_registers(dut) -> None:  # type: ignore[no-untyped-def]
    """Weight, PE operand (a_op, w_op), PE product, accumulator, v, post-processing pipeline (pp_j.v_reg,
    pp_j.pl_reg, pp_j.ph_reg, pp_j.p_reg, pp_j.t_reg) and output-activation flips match the analytic model at
    every cycle, with the protection passing everything and with random bounds clamping some outputs. A
    pipeline register's flip counts only at the edge that loaded a row (ArrayConfig.stage_edge): at every
    other cycle the output is golden."""
    cfg, tb, rng = _setup(dut, 8)
    i, j = _pes(cfg)[len(_pes(cfg)) // 2]
    p_bits = cfg.p_bits  # V + 16, or V on a shift-only design
    last = cfg.cols - 1
    sites = [
        (f"pe_{i}_{j}.w_reg", cfg.weight_bits),
        (f"pe_{i}_{j}.a_op", cfg.act_bits),
        (f"pe_{i}_{j}.w_op", cfg.weight_bits),
        (f"pe_{i}_{j}.p_reg", cfg.act_bits + cfg.weight_bits),
        (f"pe_{i}_{j}.acc", cfg.acc_bits),
        (f"v_{j}", cfg.v_bits),
        *((f"pp_{col}.{reg}", width) for col in (j, last) for reg, width in
          (("v_reg", cfg.v_bits), ("pl_reg", cfg.pl_bits), ("ph_reg", cfg.ph_bits), ("p_reg", p_bits),
           ("t_reg", p_bits + 1))),
        (f"oact_{j}", cfg.act_bits),
        (f"oact_{last}", cfg.act_bits),
    ]
    stage = {"v_reg": "input", "pl_reg": "partial", "ph_reg": "partial", "p_reg": "product", "t_reg": "shifted"}
    for clamp in (False, True):
        tile = _fault_tile(cfg, rng, clamp)
        _load(tb, tile)
        span = cfg.tile_cycles(tile.k)
        counts = {}
        for site, width in sites:
            masks = {1, 1 << (width - 1)}
            if site.startswith("pp_"):  # the bits that reach the activation: around the shift (ph_reg: p's bit LO)
                col, reg = site[3:].split(".")
                lsb = cfg.lo_bits if reg == "ph_reg" else 0
                masks.add(1 << max(0, min(width - 2, int(tile.shift[int(col)]) + cfg.act_bits - 1 - lsb)))
                if reg == "pl_reg":  # every set bit of row 0's pl: p drops to ph * 2^LO, visible even when saturated
                    v0 = int(golden(cfg, tile).logits[0, int(col)])
                    masks.add(partial_products(cfg, v0, int(tile.mult[int(col)]))[0] or 1)
            for mask in sorted(masks):
                for cycle in range(span):
                    inj = Injection(site, mask, cycle)
                    changed = await _expect_fault(cfg, tb, tile, inj, f"clamp={clamp}")
                    reg = site.split(".")[-1]
                    # pl_reg adds less than 2^(LO+16) to p: in a column whose v is far below 0 (ReLU) no
                    # flip of it can show, so its visibility is required over the two columns together; on
                    # a shift-only design it holds v's low LO bits, below the rounding bit 2^(S-1) whenever
                    # S > LO, where no flip of it can ever show (checked against the model all the same)
                    key = "pp_*.pl_reg" if reg == "pl_reg" else site
                    counts[key] = counts.get(key, 0) + changed
                    if site.startswith("pp_"):
                        loaded = [cfg.stage_edge(tile.k, stage[reg], r) for r in range(cfg.rows)]
                        assert not changed or cycle in loaded, f"{inj}: changed outside the row window"
        assert clamp or all(n > 0 for key, n in counts.items() if not (cfg.shift_only and key == "pp_*.pl_reg")), counts


@cocotb.test()
async def fault_stuck_at(dut) -> None:  # type: ignore[no-untyped-def]
    """Stuck-at bits in a_reg (slow path: re-imposed after every edge) match the analytic model; the
    next fault-free run is golden again."""
    cfg, tb, rng = _setup(dut, 9)
    tile = _fault_tile(cfg, rng)
    _load(tb, tile)
    visible = 0
    for i, j in _pes(cfg)[:3]:
        for model in ("stuck0", "stuck1"):
            for bit in sorted({0, cfg.act_bits - 1}):
                inj = Injection(f"pe_{i}_{j}.a_reg", 1 << bit, 0, model)
                visible += await _expect_fault(cfg, tb, tile, inj, "stuck-at")
    assert visible > 0
    _check(cfg, await tb.run(tile.k), golden(cfg, tile), tile.k, "golden after stuck-at runs")


@cocotb.test()
async def hang_and_recover(dut) -> None:  # type: ignore[no-untyped-def]
    """A control fault that stops the sequencer is reported as a hang within max_cycles, and the
    testbench resets and runs the next tile correctly."""
    cfg, tb, rng = _setup(dut, 10)
    tile = _fault_tile(cfg, rng)
    _load(tb, tile)
    hung = await tb.run(tile.k, [Injection("busy_r", 1, 3)], max_cycles=cfg.tile_cycles(tile.k) + 5)
    assert not hung.finished and hung.cycles == cfg.tile_cycles(tile.k) + 5, repr(hung)
    _check(cfg, await tb.run(tile.k), golden(cfg, tile), tile.k, "after the hang")
    # `done` raised early by a fault: the run ends at that edge (the later flip never lands), and the
    # next run starts from a reset
    early = await tb.run(tile.k, [Injection("done_r", 1, 2), Injection("pe_0_0.a_reg", 1, 5)])
    assert early.finished and early.cycles == 2, repr(early)
    _check(cfg, await tb.run(tile.k), golden(cfg, tile), tile.k, "after an early done")


@cocotb.test()
async def fault_sites_resolve(dut) -> None:  # type: ignore[no-untyped-def]
    """Every register of fault_sites.json exists under that name with that width."""
    import json

    cfg, tb, _ = _setup(dut, 11)
    sites = json.loads(open(os.environ["QUASAR_FAULT_SITES"]).read())["sites"]
    # a_reg, w_reg, a_op, w_op, p_reg, acc per PE; v, v_reg, pl_reg, ph_reg, p_reg, t_reg, oact, dsel per
    # column; busy, done, cyc, k, drain_at, pe_clr (not at 1x1: no skew registers), drain_r, d_row, 6 valid/row
    # pairs, lrow_we, orow_we, rst_o
    assert len(sites) == 6 * cfg.rows * cfg.cols + 8 * cfg.cols + 22 + (cfg.rows * cfg.cols > 1)
    for s in sites:
        assert len(tb.handle(s["name"])) == s["width"], s


# ---- the synthesizable load port ----------------------------------------------------------------
@cocotb.test()
async def load_port(dut) -> None:  # type: ignore[no-untyped-def]
    """Operands written through ld_en/ld_sel/ld_addr/ld_data give the same result as deposits."""
    cfg, tb, rng = _setup(dut, 12)
    k = min(cfg.k_max, 5)
    tile = _random_tile(cfg, rng, k)
    assert await tb.load_operands_port(tile.x, tile.wt) == k
    tb.load_params(tile.bias, tile.mult, tile.shift, tile.lo, tile.hi)
    via_port = await tb.run(k)
    _check(cfg, via_port, golden(cfg, tile), k, "operands via the load port")
