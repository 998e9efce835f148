"""The testbench's pure-Python parts: packing, validation messages, result objects, operand loading
(against a stand-in dut) and the analytic model's own consistency. No simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hdl_gen import ArrayConfig
from hdl_gen.config import TILE_OVERHEAD
from quasar import arithmetic as ar
from quasar.errors import ConfigError
from testbenches.array_tb import (
    ArrayTB,
    Injection,
    TileResult,
    check_bounds,
    pack_u32,
    pack_words,
    unpack,
    unpack_rows,
    unpack_u32,
)
from testbenches.model import (
    OPERAND_LAG,
    Tile,
    golden,
    oact_from_t,
    operand_index,
    partial_products,
    postproc_registers,
    predict,
)


@pytest.mark.parametrize("width", [2, 4, 8, 13, 16, 27, 47])
def test_pack_unpack_round_trip(width: int) -> None:
    rng = np.random.default_rng(width)
    values = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (5, 7))
    words = pack_words(values, width)
    assert len(words) == 5 and all(0 <= w < 1 << (7 * width) for w in words)
    for row, word in zip(values, words, strict=True):
        assert np.array_equal(unpack(word, 7, width, signed=True), row)
        assert np.array_equal(unpack(word, 7, width), row & ((1 << width) - 1))
    assert pack_words(np.array([[1, 2, 3]]), 4) == [0x321]


@pytest.mark.parametrize("width, lanes", [(2, 1), (4, 8), (8, 8), (16, 3), (27, 8), (26, 16), (32, 2)])
def test_u32_packing_is_the_word_packing(width: int, lanes: int) -> None:
    """The cpp clock's bulk buffer format holds exactly pack_words' words, least significant chunk first."""
    rng = np.random.default_rng(width)
    values = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (5, lanes))
    chunks = pack_u32(values, width)
    assert chunks.dtype == np.uint32 and chunks.shape == (5, (lanes * width + 31) // 32)
    for row, word in zip(chunks, pack_words(values, width), strict=True):
        assert sum(int(c) << (32 * n) for n, c in enumerate(row)) == word
        assert np.array_equal(unpack_u32(row, lanes, width, signed=True), unpack(word, lanes, width, signed=True))
        assert np.array_equal(unpack_u32(row, lanes, width), unpack(word, lanes, width))


def test_bounds_validation_messages() -> None:
    cfg = ArrayConfig(protection="range")
    with pytest.raises(ConfigError) as err:
        check_bounds(cfg, 9, 3)
    assert str(err.value) == "lower bound lo=9 is above upper bound hi=3; need lo <= hi"
    with pytest.raises(ConfigError, match=r"^hi values must be in 0..255, got 256$"):
        check_bounds(cfg, 0, 256)
    with pytest.raises(ConfigError, match=r"^lo values must be in 0..255, got -1$"):
        check_bounds(cfg, -1, 3)
    with pytest.raises(ConfigError, match=r"lo must be a scalar, got shape \(8,\)"):
        check_bounds(cfg, np.zeros(8, dtype=int), 3)
    pc = ArrayConfig(cols=3, protection="range", per_channel_bounds=True)
    with pytest.raises(ConfigError) as err:
        check_bounds(pc, [0, 5, 1], [9, 4, 1])
    assert str(err.value) == "lower bound lo=5 is above upper bound hi=4 (column 1); need lo <= hi"
    lo, hi = check_bounds(pc, 2, [9, 4, 3])
    assert lo.tolist() == [2, 2, 2] and hi.tolist() == [9, 4, 3]


def test_injection_validation() -> None:
    with pytest.raises(ConfigError, match="fault model must be one of flip, stuck0, stuck1; got 'mbu9'"):
        Injection("pe_0_0.a_reg", 1, 0, "mbu9")
    with pytest.raises(ConfigError, match="fault mask must be a positive integer, got 0"):
        Injection("pe_0_0.a_reg", 0)
    with pytest.raises(ConfigError, match="fault cycle must be a non-negative integer, got -1"):
        Injection("pe_0_0.a_reg", 1, -1)


def test_tile_result_equality_and_repr() -> None:
    a = TileResult(np.array([[1, 2]]), np.array([[-3, 4]]), 1, 20, True)
    b = TileResult(np.array([[1, 2]]), np.array([[-3, 4]]), 1, 20, True)
    assert a == b
    assert a != TileResult(np.array([[1, 3]]), np.array([[-3, 4]]), 1, 20, True)
    assert a != TileResult(np.array([[1, 2]]), np.array([[-3, 4]]), 1, 20, False)
    assert a != TileResult(np.array([[1, 2]]), np.array([[-3, 4]]), 0, 20, True)
    text = repr(a)
    assert "finished=True" in text and "cycles=20" in text and "[[-3, 4]]" in text


class _Handle:
    def __init__(self) -> None:
        self.value = 0
        self.writes = 0

    def __setattr__(self, name, value) -> None:  # count deposits
        if name == "value":
            object.__setattr__(self, "writes", getattr(self, "writes", 0) + 1)
        object.__setattr__(self, name, value)


class _Dut:
    def __init__(self, cfg: ArrayConfig) -> None:
        self.abuf = [_Handle() for _ in range(cfg.k_max)]
        self.wbuf = [_Handle() for _ in range(cfg.k_max)]
        for port in ("bias", "mult", "shift", "lo", "hi", "valid_rows", "valid_cols"):
            setattr(self, port, _Handle())


def test_shift_only_design_takes_only_m_1() -> None:
    cfg = ArrayConfig(rows=2, cols=3, act_bits=4, weight_bits=4, k_max=8, requant="shift")
    with pytest.raises(ConfigError, match=r"the shift-only design \(requant='shift'\) needs every multiplier = 1"):
        ArrayTB(_Dut(cfg), cfg).load_params(0, [1, 2, 1], 0)


def test_loading_deposits_whole_words_and_only_changed_ones() -> None:
    cfg = ArrayConfig(rows=2, cols=3, act_bits=4, weight_bits=4, k_max=8, protection="range")
    dut = _Dut(cfg)
    tb = ArrayTB(dut, cfg)
    x = np.array([[1, 2, 3], [4, 5, 6]])
    wt = np.array([[1, -1, 7], [-8, 0, 2], [3, 3, 3]])
    assert tb.load(x, wt, [1, 2, 3], 1, 0, 2, 9) == 3
    assert [h.value for h in dut.abuf[:3]] == [0x41, 0x52, 0x63]
    assert dut.wbuf[0].value == (7 << 8) | (0xF << 4) | 1
    assert dut.lo.value == 2 and dut.hi.value == 9
    assert dut.valid_rows.value == 2 and dut.valid_cols.value == 0b111  # default: the whole array is real
    assert tb.words_written == 6
    tb.load(x, wt, [1, 2, 3], 1, 0, 2, 9)
    assert tb.words_written == 6  # identical tile: nothing deposited
    x2 = x.copy()
    x2[1, 2] = 0
    tb.load_operands(x2, wt)
    assert tb.words_written == 7 and dut.abuf[2].value == 0x03  # one changed word
    assert dut.bias.writes == 1  # unchanged parameters are not driven again
    tb.load(x2, wt, [1, 2, 3], 1, 0, 2, 9, valid=(1, 2))  # an edge tile: one real row, two real columns
    assert dut.valid_rows.value == 1 and dut.valid_cols.value == 0b011 and dut.bias.writes == 1
    with pytest.raises(ConfigError, match=r"valid cols must be in 0..3, got 4"):
        tb.load_params([1, 2, 3], 1, 0, 2, 9, valid=(1, 4))
    with pytest.raises(ConfigError, match=r"lower bound lo=9 is above upper bound hi=2"):
        tb.load_params([1, 2, 3], 1, 0, 9, 2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tb: tb.load_operands(np.zeros((3, 2), dtype=int), np.zeros((2, 3), dtype=int)),
         r"x \(activations\) must have shape \(2, 2\), got \(3, 2\)"),
        (lambda tb: tb.load_operands(np.full((2, 2), 16), np.zeros((2, 3), dtype=int)),
         r"x \(activations\) values must be in 0..15, got 16"),
        (lambda tb: tb.load_operands(np.zeros((2, 2), dtype=int), np.full((2, 3), 8)),
         r"wt \(weights\) values must be in -8..7, got 8"),
        (lambda tb: tb.load_operands(np.zeros((2, 9), dtype=int), np.zeros((9, 3), dtype=int)),
         r"K \(columns of x\) must be in 1..8, got 9"),
        (lambda tb: tb.load_operands(np.zeros((2, 2)), np.zeros((2, 3))),
         r"x \(activations\) must hold integers, got dtype float64"),
        (lambda tb: tb.load_params([0, 0, 1 << 10], 1, 0), r"bias values must be in -1024..1023, got 1024"),
        (lambda tb: tb.load_params(0, 1 << 16, 0), r"mult values must be in 0..65535, got 65536"),
        (lambda tb: tb.load_params(0, 1, 64), r"shift values must be in 0..63, got 64"),
        (lambda tb: tb.load_params(0, 1, 0, lo=3), r"give both bounds lo and hi, or neither"),
    ],
)
def test_loading_rejects_bad_operands(call, message) -> None:
    cfg = ArrayConfig(rows=2, cols=3, act_bits=4, weight_bits=4, k_max=8, protection="range")
    with pytest.raises(ConfigError, match=message):
        call(ArrayTB(_Dut(cfg), cfg))


def _tile(cfg: ArrayConfig, k: int, seed: int = 0) -> Tile:
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 1 << cfg.act_bits, (cfg.rows, k))
    wt = rng.integers(1, 1 << (cfg.weight_bits - 1), (k, cfg.cols))
    return Tile(x, wt, rng.integers(-50, 50, cfg.cols), np.full(cfg.cols, 1 << 15), np.full(cfg.cols, 18), 3, 200)


def test_model_golden_is_the_arithmetic_oracle() -> None:
    cfg = ArrayConfig(rows=3, cols=4, k_max=16, protection="range")
    tile = _tile(cfg, 5)
    exp = golden(cfg, tile)
    ref = ar.layer(tile.x, tile.wt, tile.bias, tile.mult, tile.shift, cfg.act_bits, (3, 200))
    assert np.array_equal(exp.logits, ref["v"]) and np.array_equal(exp.out_act, ref["z"])
    assert exp.violations == ref["violations"]


def test_model_timing_matches_tile_cycles() -> None:
    """The model's drain schedule ends where tile_cycles says done rises: row R-1 is written at edge
    D + R + 5 with D = K + C + 4 (v, input, partial, product, shifted, oact, output: one edge each)."""
    for rows, cols, k in [(1, 1, 1), (8, 3, 13), (4, 8, 64)]:
        cfg = ArrayConfig(rows=rows, cols=cols, k_max=64)
        assert (k + cols + 4) + rows + 5 == cfg.tile_cycles(k) == k + rows + cols + TILE_OVERHEAD
        assert cfg.stage_edge(k, "v", 0) == k + cols + 4 and cfg.stage_edge(k, "out", rows - 1) == cfg.tile_cycles(k)
        # row i is complete (all K products in acc(i, C-1)) one edge before the drain samples it
        assert cfg.products_in(k, cfg.stage_edge(k, "v", rows - 1) - 1, rows - 1, cols - 1) == k
        assert cfg.products_in(k, cfg.stage_edge(k, "v", rows - 1) - 2, rows - 1, cols - 1) == k - 1
    assert TILE_OVERHEAD == 9
    assert operand_index(OPERAND_LAG + 3 + 1, 3, 1) == 0


def test_pipeline_registers_compose_to_requantize() -> None:
    """pl_reg + ph_reg * 2^LO = p_reg = v*M, t_reg = floor(2p / 2^S) and oact = clamp(floor((t+1)/2)) are
    the oracle's requantize for every shift 0..63, at the extremes of v and M (the registers the RTL
    regression flips); the partial products fit their registers (pl unsigned, ph signed)."""
    cfg = ArrayConfig(rows=1, cols=1, act_bits=8, weight_bits=8, k_max=1024)
    half = 1 << (cfg.v_bits - 1)
    rng = np.random.default_rng(3)
    vs = [-half, -half + 1, -1, 0, 1, half - 1, *rng.integers(-half, half, 40)]
    for shift in range(64):
        for mult in (0, 1, 1 << 15, (1 << 16) - 1, int(rng.integers(1 << 16))):
            want = ar.requantize(np.array(vs), mult, shift, cfg.act_bits)
            got = [oact_from_t(cfg, postproc_registers(v, mult, shift)[1]) for v in vs]
            assert got == want.tolist(), (shift, mult)
            for v in vs:
                pl, ph = partial_products(cfg, int(v), mult)
                assert (ph << cfg.lo_bits) + pl == int(v) * mult
                assert 0 <= pl < 1 << cfg.pl_bits and -(1 << (cfg.ph_bits - 1)) <= ph < 1 << (cfg.ph_bits - 1)


def test_model_pipeline_flip_hits_one_row_at_one_edge() -> None:
    cfg = ArrayConfig(rows=3, cols=4, k_max=16, protection="range")
    saturated = _tile(cfg, 5)  # every output at or above hi: a sign flip moves it
    small = replace(saturated, shift=np.full(cfg.cols, 30))  # outputs near lo: pl's top bit (2^32) adds 4
    top = cfg.v_bits + cfg.M_BITS  # t_reg's sign bit; p_reg's is one below
    for reg, stage, bit, tile in (("v_reg", "input", cfg.v_bits - 1, saturated),
                                  ("pl_reg", "partial", cfg.pl_bits - 1, small),
                                  ("ph_reg", "partial", cfg.ph_bits - 1, saturated),
                                  ("p_reg", "product", top - 1, saturated), ("t_reg", "shifted", top, saturated)):
        gold = golden(cfg, tile)
        for cycle in range(cfg.tile_cycles(tile.k)):
            exp = predict(cfg, tile, f"pp_2.{reg}", 1 << bit, cycle)
            assert np.array_equal(exp.logits, gold.logits)  # the logits are captured from v, before
            moved = np.argwhere(exp.out_act != gold.out_act).tolist()
            rows = [r for r in range(cfg.rows) if cfg.stage_edge(tile.k, stage, r) == cycle]
            assert moved == [[r, 2] for r in rows], (reg, cycle, moved)


def test_model_flip_changes_only_the_row_to_the_right() -> None:
    cfg = ArrayConfig(rows=3, cols=4, k_max=16, protection="range")
    tile = _tile(cfg, 5)
    gold = golden(cfg, tile)
    i, j, k = 1, 2, 3
    cycle = k + OPERAND_LAG + i + j
    exp = predict(cfg, tile, f"pe_{i}_{j}.a_reg", 1, cycle)
    delta = exp.logits - gold.logits
    a = int(tile.x[i, k])
    assert np.array_equal(delta[i, j:], ((a ^ 1) - a) * tile.wt[k, j:])
    delta[i, j:] = 0
    assert not delta.any()
    # before the operand arrives and after it has left: no change at all
    for silent in (0, OPERAND_LAG + i + j - 1, tile.k + OPERAND_LAG + i + j, cfg.tile_cycles(tile.k) - 1):
        assert np.array_equal(predict(cfg, tile, f"pe_{i}_{j}.a_reg", 1, silent).logits, gold.logits)


def test_model_rejects_what_it_does_not_cover() -> None:
    cfg = ArrayConfig(rows=2, cols=2, k_max=16)
    with pytest.raises(ConfigError, match="does not cover register 'cyc'"):
        predict(cfg, _tile(cfg, 3), "cyc", 1, 0)
    with pytest.raises(ConfigError, match="stuck-at faults in a_reg only"):
        predict(cfg, _tile(cfg, 3), "oact_0", 1, 0, "stuck1")


@pytest.mark.parametrize("width", [1, 2, 3, 4, 8, 16, 19])
@pytest.mark.parametrize("lanes", [1, 3, 8])
def test_batch_packing_equals_the_word_packing(width, lanes):
    """pack_u32's fast paths (unsigned bytes, whole lanes per byte) and unpack_rows equal pack_words /
    unpack word by word (the cpp clock's batch runs use them)."""
    rng = np.random.default_rng(width * 100 + lanes)
    values = rng.integers(0, 1 << width, (6, lanes))
    narrow = [values.astype(np.uint8 if width <= 8 else np.uint16)] if width <= 16 else []
    for given in (values, *narrow):
        chunks = pack_u32(given, width)
        for row, word in zip(chunks, pack_words(values, width), strict=True):
            assert int.from_bytes(row.astype("<u4").tobytes(), "little") == word
    got = unpack_rows(pack_u32(values, width), lanes, width)
    assert np.array_equal(got, values)
    signed = unpack_rows(pack_u32(values, width), lanes, width, signed=True)
    assert np.array_equal(signed, np.where(values >= 1 << (width - 1), values - (1 << width), values))


def test_model_pe_product_flip_counts_until_the_drain() -> None:
    """A flip of the PE's product register is added to acc(i, j) once, whether it holds a product or a
    padding zero, as long as the accumulator adds it before the drain samples row i."""
    cfg = ArrayConfig(rows=3, cols=4, k_max=16)
    tile = _tile(cfg, 5)
    gold = golden(cfg, tile)
    i, j = 1, 2
    last = cfg.stage_edge(tile.k, "v", i) - 2  # the last flip whose addition the drain still sees
    for cycle in range(cfg.tile_cycles(tile.k)):
        exp = predict(cfg, tile, f"pe_{i}_{j}.p_reg", 1 << 3, cycle)
        delta = exp.logits - gold.logits
        k = cycle - 4 - i - j  # p_reg holds the product of index e - 4 - i - j after edge e
        p = int(tile.x[i, k] * tile.wt[k, j]) if 0 <= k < tile.k else 0
        want = ((p ^ 8) - p) if 1 + i + j <= cycle <= last else 0  # edge 1 + i + j clears PE (i, j)
        assert delta[i, j] == want, (cycle, delta)
        delta[i, j] = 0
        assert not delta.any()
