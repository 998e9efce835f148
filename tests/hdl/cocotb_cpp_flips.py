"""cocotb tests of the cpp clock's multi-flip calls (testbenches/cpp_clock.py), run on a cpp build
(tests/hdl/test_cpp_flips.py): ArrayTB.run_flips (every flip of a tile run in one C call) and
run_flip_batch (several runs of a tile in one C call) against the Python-stepped path (`run` with the
same flips as Injections, whose GPI-clock equivalence tests/campaign/test_fidelity.py proves) and
the dataflow model, including control-register flips that end a run early or hang it."""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from testbenches.array_tb import ArrayTB, config_from_env
from testbenches.cpp_clock import merged_injections
from testbenches.model import Tile, golden, predict_many
from tests.hdl.cocotb_array import _load, _random_tile

DATA_KINDS = ("pe_activation", "weight", "accumulator", "pipeline", "output_activation")  # all but control


def _sites() -> list[dict]:
    return json.loads(open(os.environ["QUASAR_FAULT_SITES"]).read())["sites"]


def _draw(rng, sites: list[dict], span: int, n: int) -> np.ndarray:
    """n single-bit flips (cycle, site index, bit), sorted by cycle (stable: a register's bits at one
    cycle stay together only by chance, as in a campaign's draw)."""
    site = rng.integers(0, len(sites), n)
    bit = np.asarray([rng.integers(0, sites[s]["width"]) for s in site])
    cycle = rng.integers(0, span, n)
    flips = np.stack([cycle, site, bit], axis=1)
    flips = flips[np.lexsort((flips[:, 2], flips[:, 1], flips[:, 0]))]
    keep = np.ones(len(flips), bool)  # one flip per (cycle, site, bit): a repeated slot would cancel out
    keep[1:] = np.any(flips[1:] != flips[:-1], axis=1)
    return flips[keep]


def _same(a, b, span: int, what: str) -> None:  # type: ignore[no-untyped-def]
    """Equal runs; the outputs compared when the run ended at edge `span` (after an early `done` the
    output rows hold what earlier runs left there, which depends on when the array was last reset)."""
    assert (a.finished, a.cycles) == (b.finished, b.cycles), f"{what}: {a!r} {b!r}"
    if a.cycles == span:
        assert a.violations == b.violations, f"{what}: {a!r} {b!r}"
        assert np.array_equal(a.out_act, b.out_act) and np.array_equal(a.logits, b.logits), f"{what}: {a!r} {b!r}"


@cocotb.test()
async def multi_flip_runs(dut) -> None:  # type: ignore[no-untyped-def]
    """Data-register flips: one C call = the Python-stepped run = the dataflow model."""
    cfg = config_from_env()
    tb, rng = ArrayTB(dut, cfg), np.random.default_rng(5)
    await tb.reset()
    sites = [s for s in _sites() if s["kind"] in DATA_KINDS]
    names = [s["name"] for s in sites]
    changed = 0
    for trial in range(40):
        tile: Tile = _random_tile(cfg, rng, int(rng.integers(1, cfg.k_max + 1)))
        _load(tb, tile)
        span = cfg.tile_cycles(tile.k)
        flips = _draw(rng, sites, span, int(rng.integers(1, 12)))
        fast = await tb.run_flips(tile.k, flips, names)
        plain = await tb.run(tile.k, merged_injections(flips, names))
        _same(fast, plain, span, f"trial {trial}")
        model = predict_many(cfg, tile, [(i.site, i.mask, i.cycle) for i in merged_injections(flips, names)])
        assert np.array_equal(fast.out_act, model.out_act) and np.array_equal(fast.logits, model.logits), trial
        assert fast.violations == model.violations, trial
        gold = golden(cfg, tile)
        changed += not (np.array_equal(fast.out_act, gold.out_act) and np.array_equal(fast.logits, gold.logits))
    assert changed >= 10, changed  # the flips did something


@cocotb.test()
async def control_flips_and_batches(dut) -> None:  # type: ignore[no-untyped-def]
    """Control flips (an early `done`, a hang) end runs as the Python-stepped path ends them, and a
    batch of runs (one C call, a reset after each abnormal run) equals the same runs one by one."""
    cfg = config_from_env()
    tb, rng = ArrayTB(dut, cfg), np.random.default_rng(6)
    await tb.reset()
    sites = _sites()
    names = [s["name"] for s in sites]
    index = {n: i for i, n in enumerate(names)}
    tile = _random_tile(cfg, rng, cfg.k_max)
    _load(tb, tile)
    span = cfg.tile_cycles(tile.k)
    a00 = index["pe_0_0.a_reg"]
    special = [np.asarray([[2, index["done_r"], 0], [5, a00, 0]]),  # done raised at edge 2: the later flip never lands
               np.asarray([[3, index["busy_r"], 0]])]  # the sequencer stops: a hang
    data = [s for s in sites if s["kind"] in DATA_KINDS]
    runs = [_draw(rng, data, span, 6) for _ in range(6)]
    runs = [np.asarray([[c, index[data[s]["name"]], b] for c, s, b in r]) for r in runs]
    runs[2:2] = special[:1]
    runs[5:5] = special[1:]
    xs = [rng.integers(0, 1 << cfg.act_bits, (cfg.rows, tile.k)) for _ in runs]
    alone = []
    for x, flips in zip(xs, runs, strict=True):
        tb.load_x(x)
        alone.append(await tb.run_flips(tile.k, flips, names, max_cycles=span + 5))
        plain = await tb.run(tile.k, merged_injections(flips, names), max_cycles=span + 5)
        _same(alone[-1], plain, span, f"flips {flips.tolist()}")
    assert alone[2].finished and alone[2].cycles == 2 and not alone[5].finished
    starts = np.cumsum([0] + [len(f) for f in runs])
    x = np.stack(xs).astype(np.uint8 if cfg.act_bits <= 8 else np.uint16)
    for logits in (False, True):
        fin, cycles, values, viol = tb.run_flip_batch(tile.k, x, np.concatenate(runs), starts, names, span + 5,
                                                      logits)
        for n, a in enumerate(alone):
            assert (bool(fin[n]), int(cycles[n])) == (a.finished, a.cycles), (n, fin[n], cycles[n], a)
            if a.cycles == span:
                assert np.array_equal(values[n], a.logits if logits else a.out_act), (n, values[n], a)
                assert int(viol[n]) == a.violations, n
