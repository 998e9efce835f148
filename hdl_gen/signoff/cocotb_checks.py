"""The simulator checks of a protection sign-off, as cocotb tests and as coroutines the regression reuses.

- `signoff_golden`: random tiles (random K, operands, parameters, bounds and real extent) bit-exact
  with the oracle (testbenches.model.golden on quasar.arithmetic): activations, logits, counter, cycles.
- `signoff_protection`: the injection check at the protection's input (`check_protection`): values
  at every boundary (lo-1, lo, hi, hi+1) and random ones are driven into the protection through a
  K = 1 tile (M = 1, S = 0, so the protection sees exactly the planned values); every out-of-range
  value of a real output must come out as the policy's value (the violated bound, or 0), every
  in-range value unchanged, every padding lane unchanged and uncounted, and the counter exact.
An assertion message starts with the sub-check it failed (`counter`, `in-range`, `policy`,
`padding`, `golden`) so a sign-off report can name it. Runs only inside a simulator started by
testbenches.sim; the design's config comes from QUASAR_ARRAY_CONFIG.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from quasar import arithmetic as ar
from testbenches.array_tb import ArrayTB, config_from_env
from testbenches.model import Tile, golden


def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng([int(os.environ.get("QUASAR_TEST_SEED", "1")), salt])


def random_bounds(cfg, rng, scale: int | None = None):  # type: ignore[no-untyped-def]
    """Random (lo, hi) in the protection's units: activation codes, or v values within +-scale (acc)."""
    n = cfg.bound_lanes
    if cfg.protect_domain == "acc":
        bottom, top = cfg.bound_range
        s = scale if scale is not None else 1 << (cfg.act_bits + cfg.weight_bits)
        pair = np.sort(rng.integers(max(bottom, -s), min(top, s) + 1, (2, n)), axis=0)
    else:
        pair = np.sort(rng.integers(0, (1 << cfg.act_bits), (2, n)), axis=0)
    lo, hi = pair[0], pair[1]
    return (lo, hi) if cfg.per_channel_bounds else (int(lo[0]), int(hi[0]))


def random_extent(cfg, rng) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A tile's real (rows, cols): the whole array half of the time, else a random edge tile."""
    if rng.random() < 0.5:
        return cfg.rows, cfg.cols
    return int(rng.integers(1, cfg.rows + 1)), int(rng.integers(1, cfg.cols + 1))


def load(tb: ArrayTB, tile: Tile) -> None:
    tb.load(tile.x, tile.wt, tile.bias, tile.mult, tile.shift, tile.lo, tile.hi, tile.valid)


def plan(cfg, rng):  # type: ignore[no-untyped-def]
    """(base, lo, hi, values): bound pairs and the protection-input values to drive against them, all
    within [base, base + 2^A - 1] (one K = 1 tile reaches that window through x = value - base)."""
    a_top = (1 << cfg.act_bits) - 1
    if cfg.protect_domain == "acc":
        # every boundary lo-1 .. hi+1 inside the window; bases negative, zero and far positive
        pairs = [(1, a_top - 1), (1, 1), (a_top - 1, a_top - 1), (a_top // 3, max(a_top // 3, 2 * a_top // 3))]
        pairs += [tuple(sorted(rng.integers(1, a_top, 2).tolist())) for _ in range(3)]
        half = 1 << (cfg.acc_bits - 2)
        bases = [0, -(a_top + 1), int(rng.integers(-half, half))]
    else:
        pairs = [(0, a_top), (0, 0), (a_top, a_top), (1, a_top - 1), (a_top // 3, 2 * a_top // 3)]
        pairs += [tuple(sorted(rng.integers(0, a_top + 1, 2).tolist())) for _ in range(4)]
        bases = [0]
    out = []
    for base in bases:
        for lo, hi in pairs:
            edges = {lo - 1, lo, hi, hi + 1, 0, a_top}
            values = sorted(v for v in edges if 0 <= v <= a_top)
            values += rng.integers(0, a_top + 1, 2 * cfg.rows).tolist()
            out.append((base, lo + base, hi + base, [v + base for v in values]))
    return out


def protection_tile(cfg, rng, base: int, values: list[int], lo, hi, valid=None) -> Tile:  # type: ignore[no-untyped-def]
    """A K = 1 tile whose v[i, j] = values[i] + offset_j (offset_0 = 0); with M = 1, S = 0 the
    requantized y = clamp(v, 0, 2^A - 1), which equals v in the act domain's window (base 0)."""
    x = np.array(values, dtype=np.int64).reshape(cfg.rows, 1) - base
    offsets = np.concatenate([[0], rng.integers(-2, 3, cfg.cols - 1)])
    return Tile(x, np.ones((1, cfg.cols), dtype=np.int64), base + offsets, np.ones(cfg.cols, dtype=np.int64),
                np.zeros(cfg.cols, dtype=np.int64), lo, hi, valid)


def _check_lanes(cfg, tile: Tile, got, what: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The per-lane assertions of one protection run; returns (violations, in-range values) seen."""
    a_top = (1 << cfg.act_bits) - 1
    v = ar.matmul(tile.x, tile.wt) + tile.bias
    p = v if cfg.protect_domain == "acc" else np.clip(v, 0, a_top)  # what the protection sees
    out = got.logits if cfg.protect_domain == "acc" else got.out_act
    lo_b, hi_b = (np.broadcast_to(b, (cfg.cols,)) for b in tile.bounds(cfg))
    real = tile.mask(cfg)
    inside = (p >= lo_b) & (p <= hi_b)
    if not np.array_equal(out[~real], p[~real]):
        raise AssertionError(f"padding: a lane outside the tile's real extent {tile.valid} was altered ({what})\n"
                             f" in  {p.tolist()}\n out {out.tolist()}")
    if not np.array_equal(out[real & inside], p[real & inside]):
        raise AssertionError(f"in-range: an in-range value was altered ({what})\n in  {p.tolist()}\n"
                             f" out {out.tolist()}")
    fixed = np.broadcast_to(np.where(p < lo_b, lo_b, hi_b), p.shape) if cfg.protect_policy == "clamp" else 0 * p
    bad = real & ~inside
    if not np.array_equal(out[bad], fixed[bad]):
        raise AssertionError(f"policy: an out-of-range value did not become the {cfg.protect_policy} policy's value "
                             f"({what})\n in  {p.tolist()}\n out {out.tolist()}\n"
                             f" exp {np.where(bad, fixed, p).tolist()}")
    if got.violations != int(np.count_nonzero(bad)):
        raise AssertionError(f"counter: {got.violations} violations counted, {int(np.count_nonzero(bad))} "
                             f"out-of-range real outputs ({what})")
    return int(np.count_nonzero(bad)), int(np.count_nonzero(real & inside))


async def check_protection(cfg, tb: ArrayTB, rng) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The injection check (module docstring); returns how many values of each kind it drove."""
    seen = {"runs": 0, "violations": 0, "in_range": 0, "padding": 0}
    for base, lo, hi, values in plan(cfg, rng):
        if cfg.per_channel_bounds:  # column 0 gets the pair under test, the others random pairs
            rand_lo, rand_hi = random_bounds(cfg, rng, scale=abs(base) + (1 << cfg.act_bits))
            lo_c, hi_c = np.array(rand_lo), np.array(rand_hi)
            lo_c[0], hi_c[0] = lo, hi
            hi_c = np.maximum(lo_c, hi_c)
        else:
            lo_c, hi_c = lo, hi
        for start in range(0, len(values), cfg.rows):
            chunk = values[start : start + cfg.rows]
            chunk += [chunk[-1]] * (cfg.rows - len(chunk))
            valid = (cfg.rows, cfg.cols) if start == 0 else random_extent(cfg, rng)
            tile = protection_tile(cfg, rng, base, chunk, lo_c, hi_c, valid)
            load(tb, tile)
            got = await tb.run(1)
            what = f"lo={lo} hi={hi} values={chunk} extent={valid}"
            if cfg.protected:
                n_bad, n_in = _check_lanes(cfg, tile, got, what)
                seen["violations"] += n_bad
                seen["in_range"] += n_in
                seen["padding"] += int(np.count_nonzero(~tile.mask(cfg)))
            elif got.violations != 0 or not np.array_equal(got.out_act, golden(cfg, tile).out_act):
                raise AssertionError(f"in-range: protection none altered values or counted ({what}): {got!r}")
            exp = golden(cfg, tile)
            if not (np.array_equal(got.out_act, exp.out_act) and np.array_equal(got.logits, exp.logits)
                    and got.violations == exp.violations and got.cycles == cfg.tile_cycles(1)):
                raise AssertionError(f"golden: protection tile differs from the oracle ({what}): {got!r}")
            seen["runs"] += 1
    if cfg.protected and not (seen["violations"] and seen["in_range"]):
        raise AssertionError(f"counter: the plan drove no violation or no in-range value: {seen}")
    return seen


def random_tile(cfg, rng, k: int, bounds: bool = True) -> Tile:  # type: ignore[no-untyped-def]
    """A random tile: operands over their whole ranges, parameters landing y inside, around and far from
    [0, 2^A - 1], random bounds (or none) and a random real extent."""
    a_top = (1 << cfg.act_bits) - 1
    w_top = (1 << (cfg.weight_bits - 1)) - 1
    acc_half = 1 << (cfg.acc_bits - 1)
    x = rng.integers(0, a_top + 1, (cfg.rows, k))
    wt = rng.integers(-w_top - 1, w_top + 1, (k, cfg.cols))
    typical = max(1, int(np.abs(ar.matmul(x, wt)).max()))
    bias = np.where(rng.random(cfg.cols) < 0.8, rng.integers(-typical, typical + 1, cfg.cols),
                    rng.integers(-acc_half, acc_half, cfg.cols))
    mult = rng.integers(0, 1 << 16, cfg.cols)
    scale = max(0, int(typical).bit_length() + 16 - cfg.act_bits)
    shift = np.clip(scale + rng.integers(-3, 4, cfg.cols), 0, 63)
    lo, hi = random_bounds(cfg, rng, scale=2 * typical) if bounds else (None, None)
    return Tile(x, wt, bias, mult, shift, lo, hi, random_extent(cfg, rng) if bounds else None)


async def check_golden(cfg, tb: ArrayTB, rng, tiles: int = 24) -> int:  # type: ignore[no-untyped-def]
    """Random tiles bit-exact with the oracle; returns how many protection events they contained."""
    events = 0
    for t in range(tiles):
        k = int(rng.integers(1, min(cfg.k_max, 64) + 1)) if t else cfg.k_max
        tile = random_tile(cfg, rng, k)
        load(tb, tile)
        got = await tb.run(k)
        exp = golden(cfg, tile)
        if not (got.finished and got.cycles == cfg.tile_cycles(k) and np.array_equal(got.out_act, exp.out_act)
                and np.array_equal(got.logits, exp.logits) and got.violations == exp.violations):
            raise AssertionError(f"golden: random tile {t} (K={k}, extent {tile.valid}) differs from the oracle\n"
                                 f" got {got!r}\n exp {exp!r}")
        events += exp.violations
    return events


@cocotb.test()
async def signoff_golden(dut) -> None:  # type: ignore[no-untyped-def]
    cfg = config_from_env()
    tb = ArrayTB(dut, cfg)
    await tb.reset()
    events = await check_golden(cfg, tb, _rng(101), int(os.environ.get("QUASAR_SIGNOFF_TILES", "24")))
    dut._log.info("SIGNOFF golden tiles=%s events=%d", os.environ.get("QUASAR_SIGNOFF_TILES", "24"), events)


@cocotb.test()
async def signoff_protection(dut) -> None:  # type: ignore[no-untyped-def]
    cfg = config_from_env()
    tb = ArrayTB(dut, cfg)
    await tb.reset()
    seen = await check_protection(cfg, tb, _rng(102))
    dut._log.info("SIGNOFF protection %s", " ".join(f"{k}={v}" for k, v in seen.items()))
