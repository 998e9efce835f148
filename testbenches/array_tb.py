"""cocotb testbench of the generated array: clock, reset, operand/parameter loading, tile runs, faults.

The fast path keeps Python asleep: the clock is cocotb's GPI (C) clock, operands are deposited as
whole buffer words, the RTL sequences a tile run on its own, and Python wakes only at edge 0, at each
transient fault's cycle and when `done` rises (or the run times out). Stuck-at faults take the slow
path (Python wakes after every edge to re-impose the stuck bits).

Fault-cycle semantics (docs/rtl.md, "Fault injection"): edge 0 of a run is the rising clock edge that
samples `start`; `Injection(cycle=e)` with the flip model deposits `value ^ mask` into the register
half a clock period after edge e, i.e. after the design updated it at edge e and before edge e + 1
samples it. Valid cycles are 0 .. cfg.tile_cycles(k) - 1.

With a "cpp" build (testbenches.sim.build(cfg, clock="cpp"), the campaigns' fast path) there is no
cocotb clock and no trigger: Python steps the clock itself through functions of the simulator's C++
main (ctypes), writes and reads over VPI immediately, and a tile run is a few C calls. Same semantics:
a flip after edge e lands between edges e and e + 1, cycles count edges from edge 0 to `done`.

This module must stay importable outside a simulator (for the data classes); it never builds anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdl_gen.config import ArrayConfig
from quasar.errors import ConfigError, check_choice, check_range

FAULT_MODELS = ("flip", "stuck0", "stuck1")
CLOCKS = ("gpi", "cpp")
# Registers of the datapath: a fault there cannot move `done` (the sequencer never reads them), so
# the run ends exactly tile_cycles(k) edges after edge 0 and the testbench can sleep until then.
DATA_SITE = re.compile(r"pe_\d+_\d+\.(a_reg|w_reg|p_reg|acc)|pp_\d+\.(pl_reg|ph_reg|p_reg|t_reg)|oact_\d+|v_\d+")
PERIOD_NS = 10
HALF_NS = PERIOD_NS // 2


def config_from_env() -> ArrayConfig:
    """The config of the design this simulator process runs (set by testbenches.sim.sim_command)."""
    path = os.environ.get("QUASAR_ARRAY_CONFIG")
    if not path:
        raise ConfigError("QUASAR_ARRAY_CONFIG is not set: start the simulator through testbenches.sim")
    return ArrayConfig.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class Injection:
    """One fault of one tile run. flip: `value ^ mask` deposited half a period after edge `cycle`
    of the run; stuck0/stuck1: the bits of `mask` held at 0/1 from before edge 0 until the run ends
    (`cycle` is ignored)."""

    site: str
    mask: int
    cycle: int = 0
    model: str = "flip"

    def __post_init__(self) -> None:
        check_choice("fault model", self.model, FAULT_MODELS)
        if isinstance(self.mask, bool) or not isinstance(self.mask, int) or self.mask <= 0:
            raise ConfigError(f"fault mask must be a positive integer, got {self.mask!r}")
        if isinstance(self.cycle, bool) or not isinstance(self.cycle, int) or self.cycle < 0:
            raise ConfigError(f"fault cycle must be a non-negative integer, got {self.cycle!r}")


@dataclass(frozen=True, eq=False)
class TileResult:
    """What one tile run produced. out_act: the protected activations (R x C); logits: v = acc + bias
    (R x C, signed); violations: the protection counter (0 without protection); cycles: edges from edge 0
    to the edge that raised `done` (or to the timeout); finished: False when the run timed out (a hang)."""

    out_act: np.ndarray
    logits: np.ndarray
    violations: int
    cycles: int
    finished: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TileResult):
            return NotImplemented
        return (
            np.array_equal(self.out_act, other.out_act)
            and np.array_equal(self.logits, other.logits)
            and (self.violations, self.cycles, self.finished) == (other.violations, other.cycles, other.finished)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        with np.printoptions(threshold=64, linewidth=160):
            return (
                f"TileResult(finished={self.finished}, cycles={self.cycles}, violations={self.violations},\n"
                f"  out_act={self.out_act.tolist()!r},\n  logits={self.logits.tolist()!r})"
            )


# ---- packing ------------------------------------------------------------------------------------
def pack_words(values: np.ndarray, width: int) -> list[int]:
    """Rows of `values` (N x L, two's complement allowed) as N integers, element l at [l*width +: width]."""
    values = np.asarray(values, dtype=np.int64)
    n, lanes = values.shape
    masked = (values & ((1 << width) - 1)).astype(np.uint64)
    bits = ((masked[:, :, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bits.reshape(n, lanes * width), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def pack_u32(values: np.ndarray, width: int) -> np.ndarray:
    """Rows of `values` (N x L) packed like pack_words, as an (N x ceil(L*width/32)) uint32 array
    (least significant chunk first): what the cpp clock's bulk buffer write takes."""
    values = np.asarray(values, dtype=np.int64)
    n, lanes = values.shape
    masked = values & ((1 << width) - 1)
    if width in (8, 16, 32):
        raw = np.ascontiguousarray(masked.astype(f"<u{width // 8}")).view(np.uint8).reshape(n, -1)
    else:
        bits = ((masked[:, :, None] >> np.arange(width, dtype=np.int64)) & 1).astype(np.uint8)
        raw = np.packbits(bits.reshape(n, lanes * width), axis=1, bitorder="little")
    chunks = (lanes * width + 31) // 32
    out = np.zeros((n, 4 * chunks), dtype=np.uint8)
    out[:, : raw.shape[1]] = raw
    return out.view("<u4")


def unpack_u32(chunks: np.ndarray, count: int, width: int, signed: bool = False) -> np.ndarray:
    """Inverse of pack_u32 for one word: `count` fields of `width` bits, as int64."""
    raw = np.ascontiguousarray(chunks, dtype="<u4").view(np.uint8)
    if width in (8, 16, 32) and not signed:
        return raw[: count * width // 8].view(f"<u{width // 8}").astype(np.int64)
    bits = np.unpackbits(raw, bitorder="little")[: count * width].reshape(count, width).astype(np.int64)
    out = bits @ (np.int64(1) << np.arange(width, dtype=np.int64))
    if signed:
        out = np.where(out >= (1 << (width - 1)), out - (1 << width), out)
    return out


def unpack(value: int, count: int, width: int, signed: bool = False) -> np.ndarray:
    """Inverse of pack_words for one word: `count` fields of `width` bits, as int64."""
    nbytes = (count * width + 7) // 8
    if width in (8, 16, 32) and not signed:
        return np.frombuffer(value.to_bytes(nbytes, "little"), dtype=f"<u{width // 8}").astype(np.int64)
    raw = np.frombuffer(value.to_bytes(nbytes, "little"), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")[: count * width].reshape(count, width).astype(np.int64)
    out = bits @ (np.int64(1) << np.arange(width, dtype=np.int64))
    if signed:
        out = np.where(out >= (1 << (width - 1)), out - (1 << width), out)
    return out


def _check_array(name: str, values: object, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != shape:
        raise ConfigError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr[(arr < lo) | (arr > hi)].flat[0]
        raise ConfigError(f"{name} values must be in {lo}..{hi}, got {int(bad)}")
    return arr


def _per_lane(name: str, values: object, lanes: int, lo: int, hi: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(lanes, int(arr), dtype=np.int64)
    return _check_array(name, arr, (lanes,), lo, hi)


def check_bounds(cfg: ArrayConfig, lo: object, hi: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate (lo, hi): scalars, or (cols,) arrays with per-channel bounds; each in cfg.bound_range
    (0..2^A-1 in the act domain, signed V bits in acc), lo <= hi."""
    bottom, top = cfg.bound_range if cfg.protected else (0, (1 << cfg.act_bits) - 1)
    lanes = cfg.bound_lanes
    for name, value in (("lo", lo), ("hi", hi)):
        if np.ndim(value) not in (0, 1) or (np.ndim(value) == 1 and not cfg.per_channel_bounds):
            raise ConfigError(f"{name} must be a scalar{' or a (cols,) array' if cfg.per_channel_bounds else ''}, "
                              f"got shape {np.shape(value)}")
    lo_a = _per_lane("lo", lo, lanes, bottom, top)
    hi_a = _per_lane("hi", hi, lanes, bottom, top)
    if np.any(lo_a > hi_a):
        j = int(np.argmax(lo_a > hi_a))
        raise ConfigError(f"lower bound lo={int(lo_a[j])} is above upper bound hi={int(hi_a[j])}"
                          + (f" (column {j})" if lanes > 1 else "") + "; need lo <= hi")
    return lo_a, hi_a


# ---- the testbench ------------------------------------------------------------------------------
class ArrayTB:
    """Drives one generated array (the cocotb `dut`) described by `cfg`."""

    def __init__(self, dut, cfg: ArrayConfig, clock: str | None = None):  # type: ignore[no-untyped-def]
        """`clock`: "gpi" (cocotb's clock) or "cpp" (Python steps the clock through the C++ main of a
        cpp build); default: the build the simulator was started from (QUASAR_SIM_CLOCK), else "gpi"."""
        self.dut = dut
        self.cfg = cfg
        self.clock = check_choice("clock", clock or os.environ.get("QUASAR_SIM_CLOCK") or "gpi", CLOCKS)
        self._c = _CppClock() if self.clock == "cpp" else None
        self._clock = None
        self._handles: dict[str, object] = {}
        self._abuf: list[int | None] = [None] * cfg.k_max  # what the buffers hold, None: unknown
        self._wbuf: list[int | None] = [None] * cfg.k_max
        self._ports: dict[str, int] = {}
        self._loaded_k = 0
        self._last_operands: tuple[np.ndarray, np.ndarray] | None = None
        self._last_params: tuple[np.ndarray | None, ...] | None = None
        self._period = 0  # clock period in simulator steps, known once the clock runs
        self._params_loaded = False
        self._needs_reset = True
        self.words_written = 0  # buffer words deposited so far (the reload optimisation is measurable)

    # ---- clock and reset ----
    def start_clock(self) -> None:
        if self._c is not None:
            return
        if self._clock is None:
            from cocotb.clock import Clock
            from cocotb.utils import get_sim_steps

            self._clock = Clock(self.dut.clk, PERIOD_NS, unit="ns")
            self._clock.start(start_high=False)
            self._period = get_sim_steps(PERIOD_NS, "ns")

    async def reset(self, cycles: int = 2) -> None:
        """Synchronous reset for `cycles` edges; operand buffers and parameter ports keep their contents."""
        from cocotb.triggers import RisingEdge

        if self._c is not None:
            self._reset_cpp(cycles)
            return
        self.start_clock()
        self.dut.start.value = 0
        self.dut.ld_en.value = 0
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        self._needs_reset = False

    # ---- loading ----
    def handle(self, site: str):  # type: ignore[no-untyped-def]
        """The simulator handle of a dotted register name relative to the dut (e.g. "pe_2_3.a_reg")."""
        h = self._handles.get(site)
        if h is None:
            h = self.dut
            try:
                for part in site.split("."):
                    h = getattr(h, part)
            except AttributeError:
                raise ConfigError(f"no register {site!r} in the design (see fault_sites.json)") from None
            self._handles[site] = h
        return h

    def load_operands(self, x: np.ndarray, wt: np.ndarray) -> int:
        """Deposit X (R x K activations) and Wt (K x C weights) into abuf/wbuf; return K.
        Only words that differ from what the buffers already hold are written."""
        cfg = self.cfg
        if self._last_operands is not None and _same(self._last_operands, (x, wt)):
            return self._loaded_k  # the campaign reruns one tile many times: skip packing it again
        x = np.asarray(x)
        if x.ndim != 2:
            raise ConfigError(f"x must be a (rows x K) matrix, got shape {x.shape}")
        k = check_range("K (columns of x)", x.shape[1], 1, cfg.k_max)
        x = _check_array("x (activations)", x, (cfg.rows, k), 0, (1 << cfg.act_bits) - 1)
        w_top = (1 << (cfg.weight_bits - 1)) - 1
        wt = _check_array("wt (weights)", wt, (k, cfg.cols), -w_top - 1, w_top)
        if self._c is not None:
            self._c.write_buffer(self, "abuf", pack_u32(x.T, cfg.act_bits))
            self._c.write_buffer(self, "wbuf", pack_u32(wt, cfg.weight_bits))
        else:
            self._write_words(self.dut.abuf, self._abuf, pack_words(x.T, cfg.act_bits))
            self._write_words(self.dut.wbuf, self._wbuf, pack_words(wt, cfg.weight_bits))
        self._loaded_k = k
        self._last_operands = (x.copy(), wt.copy())
        return k

    def _write_words(self, mem, cache: list[int | None], words: list[int]) -> None:  # type: ignore[no-untyped-def]
        for kk, word in enumerate(words):
            if cache[kk] != word:
                mem[kk].value = word
                cache[kk] = word
                self.words_written += 1

    async def load_operands_port(self, x: np.ndarray, wt: np.ndarray) -> int:
        """Like load_operands, through the synthesizable load port (one word per clock cycle)."""
        from cocotb.triggers import RisingEdge

        cfg = self.cfg
        if self._c is not None:
            raise ConfigError("load_operands_port needs the gpi clock (the cpp clock has no RisingEdge)")
        x = _check_array("x (activations)", x, (cfg.rows, np.shape(x)[1]), 0, (1 << cfg.act_bits) - 1)
        k = check_range("K (columns of x)", x.shape[1], 1, cfg.k_max)
        w_top = (1 << (cfg.weight_bits - 1)) - 1
        wt = _check_array("wt (weights)", wt, (k, cfg.cols), -w_top - 1, w_top)
        self.start_clock()
        dut = self.dut
        for sel, words, cache in ((0, pack_words(x.T, cfg.act_bits), self._abuf),
                                  (1, pack_words(wt, cfg.weight_bits), self._wbuf)):
            for addr, word in enumerate(words):
                dut.ld_en.value, dut.ld_sel.value, dut.ld_addr.value, dut.ld_data.value = 1, sel, addr, word
                await RisingEdge(dut.clk)
                cache[addr] = word
        dut.ld_en.value = 0
        self._loaded_k = k
        self._last_operands = (x.copy(), wt.copy())
        return k

    def load_params(self, bias, mult, shift, lo=None, hi=None, valid=None) -> None:  # type: ignore[no-untyped-def]
        """Drive the per-column parameters (bias at the accumulator scale, multiplier M, shift S) and,
        with protection, the bounds (scalars, or (cols,) arrays with per-channel bounds; lo <= hi) and
        the tile's real extent `valid` = (rows, cols) in use (default: the whole array), which the
        protection alone reads: it corrects and counts only those outputs. Without protection the
        bounds and extent are validated if given and otherwise ignored."""
        cfg = self.cfg
        valid = (cfg.rows, cfg.cols) if valid is None else tuple(valid)
        if len(valid) != 2:
            raise ConfigError(f"valid must be (rows, cols) in use, got {valid!r}")
        valid = (check_range("valid rows", valid[0], 0, cfg.rows), check_range("valid cols", valid[1], 0, cfg.cols))
        raw = (bias, mult, shift, lo, hi, np.asarray(valid))
        if self._last_params is not None and all(
            (u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v))
            for u, v in zip(self._last_params, raw, strict=True)
        ):
            return
        c = cfg.cols
        acc_half = 1 << (cfg.acc_bits - 1)
        bias = _per_lane("bias", bias, c, -acc_half, acc_half - 1)
        mult = _per_lane("mult", mult, c, 0, (1 << cfg.M_BITS) - 1)
        shift = _per_lane("shift", shift, c, 0, (1 << cfg.S_BITS) - 1)
        ports = {
            "bias": pack_words(bias[None, :], cfg.acc_bits)[0],
            "mult": pack_words(mult[None, :], cfg.M_BITS)[0],
            "shift": pack_words(shift[None, :], cfg.S_BITS)[0],
        }
        if cfg.shift_only:  # no multiplier, no `mult` port: the design computes the contract with M = 1
            if np.any(mult != 1):
                raise ConfigError(f"the shift-only design (requant='shift') needs every multiplier = 1, got {mult}")
            del ports["mult"]
        if lo is None and hi is None:
            lo, hi = cfg.bound_range if cfg.protected else (0, (1 << cfg.act_bits) - 1)  # no clamping
        elif lo is None or hi is None:
            raise ConfigError("give both bounds lo and hi, or neither")
        lo_a, hi_a = check_bounds(cfg, lo, hi)
        if cfg.protected:
            ports["lo"] = pack_words(lo_a[None, :], cfg.protect_bits)[0]
            ports["hi"] = pack_words(hi_a[None, :], cfg.protect_bits)[0]
            ports["valid_rows"] = valid[0]
            ports["valid_cols"] = (1 << valid[1]) - 1
        for name, value in ports.items():
            if self._ports.get(name) != value:
                if self._c is not None:
                    _put(getattr(self.dut, name), value)
                else:
                    getattr(self.dut, name).value = value
                self._ports[name] = value
        self._params_loaded = True
        self._last_params = tuple(None if v is None else np.array(v, copy=True) for v in raw)

    def load(self, x, wt, bias, mult, shift, lo=None, hi=None, valid=None) -> int:  # type: ignore[no-untyped-def]
        """load_operands + load_params; returns K."""
        k = self.load_operands(x, wt)
        self.load_params(bias, mult, shift, lo, hi, valid)
        return k

    # ---- results ----
    def read_result(self, cycles: int, finished: bool) -> TileResult:
        cfg = self.cfg
        n = cfg.rows * cfg.cols
        dut = self.dut
        if self._c is not None:
            c = self._c
            act = unpack_u32(c.read(self, "out_act", n * cfg.act_bits), n, cfg.act_bits)
            logit = unpack_u32(c.read(self, "out_logit", n * cfg.v_bits), n, cfg.v_bits, signed=True)
            violations = int(c.read(self, "viol_count", 32)[0])
            return TileResult(act.reshape(cfg.rows, cfg.cols), logit.reshape(cfg.rows, cfg.cols), violations,
                              cycles, finished)
        act = unpack(_read(dut.out_act), n, cfg.act_bits).reshape(cfg.rows, cfg.cols)
        logit = unpack(_read(dut.out_logit), n, cfg.v_bits, signed=True).reshape(cfg.rows, cfg.cols)
        violations = _read(dut.viol_count)
        return TileResult(act, logit, violations, cycles, finished)

    def default_max_cycles(self, k: int) -> int:
        return 4 * self.cfg.tile_cycles(k) + 64

    # ---- one tile run ----
    async def run(
        self, k: int | None = None, injections: Sequence[Injection] = (), max_cycles: int | None = None
    ) -> TileResult:
        """Run one tile of reduction length `k` (default: the K of the last load_operands) with the given
        faults; return what the array produced. A run that does not raise `done` within `max_cycles`
        edges returns finished=False; the next run resets the array first."""
        from cocotb.triggers import RisingEdge
        from cocotb.utils import get_sim_time

        cfg = self.cfg
        if k is None:
            k = self._loaded_k
        k = check_range("k", k, 1, cfg.k_max)
        if k > self._loaded_k:
            raise ConfigError(f"k={k} exceeds the K={self._loaded_k} of the loaded operands; call load_operands first")
        if not self._params_loaded:
            raise ConfigError("call load_params (or load) before run")
        span = cfg.tile_cycles(k)
        if max_cycles is None:
            max_cycles = self.default_max_cycles(k)
        max_cycles = check_range("max_cycles", max_cycles, 1, 1 << 40)
        flips, stuck = [], []
        exact_end = True  # done can only rise at edge `span`
        for inj in injections:
            h = self.handle(inj.site)
            width = len(h)
            if inj.mask >= 1 << width:
                raise ConfigError(f"mask {inj.mask:#x} does not fit the {width}-bit register {inj.site}")
            if inj.model == "flip":
                check_range(f"cycle of the fault in {inj.site} (k={k})", inj.cycle, 0, span - 1)
                flips.append((inj.cycle, h, inj.mask))
            else:
                stuck.append((h, inj.mask, inj.mask if inj.model == "stuck1" else 0))
            exact_end = exact_end and inj.model == "flip" and DATA_SITE.fullmatch(inj.site) is not None
        flips.sort(key=lambda f: f[0])

        if self._c is not None:
            if self._needs_reset:
                self._reset_cpp()
            finished, cycles = self._run_cpp(k, flips, stuck, max_cycles)
            self._needs_reset = (not finished) or cycles != span or bool(stuck)
            return self.read_result(cycles, finished)
        self.start_clock()
        if self._needs_reset:
            await self.reset()
        dut = self.dut
        dut.k.value = k
        dut.start.value = 1
        holder = None
        if stuck:
            _impose(stuck)
            holder = _start_holder(dut.clk, stuck)
        await RisingEdge(dut.clk)  # edge 0: the array samples start
        t0 = get_sim_time("step")
        dut.start.value = 0
        if exact_end and max_cycles >= span:
            finished, cycles = await self._wait_fast(t0, span, flips)
        else:
            finished, cycles = await self._wait_exact(t0, max_cycles, flips)
        if finished is None:  # done was not high one edge after tile_cycles: measure exactly from here
            finished, cycles = await self._wait_exact(t0, max_cycles, [], done_may_be_high=True)
        if holder is not None:
            holder.cancel()
        result = self.read_result(cycles, finished)
        # a hang, an early or late `done` or a stuck fault may leave state that `start` does not clear
        self._needs_reset = (not finished) or cycles != span or bool(stuck)
        return result

    # ---- the cpp clock ----
    def _reset_cpp(self, cycles: int = 2) -> None:
        dut, c = self.dut, self._c
        _put(dut.start, 0)
        _put(dut.ld_en, 0)
        _put(dut.rst, 1)
        c.cycles(cycles, 0)
        _put(dut.rst, 0)
        c.cycles(1, 0)
        self._needs_reset = False

    def _start_cpp(self, k: int, stuck=()) -> None:  # type: ignore[no-untyped-def]
        """Edge 0: the array samples start (stuck bits imposed before it and right after it)."""
        dut, c = self.dut, self._c
        _put(dut.k, k)
        _put(dut.start, 1)
        if stuck:
            _put_stuck(stuck)
            c.settle()
        c.cycles(1, 0)
        _put(dut.start, 0)

    def _run_cpp(self, k: int, flips, stuck, max_cycles: int) -> tuple[bool, int]:  # type: ignore[no-untyped-def]
        """(finished, cycles) with the gpi path's semantics: each flip lands after edge `cycle` unless
        `done` rose at or before that edge; `done` raised by a flip itself ends the run at that cycle;
        stuck bits are imposed after every edge (after the edge's own update)."""
        c = self._c
        self._start_cpp(k, stuck)
        cur = 0
        if stuck:
            if c.done():
                return True, 0
            _put_stuck(stuck)
            if c.settle():
                return True, 0
            while cur < max_cycles:
                c.cycles(1, 0)
                cur += 1
                if c.done():
                    return True, cur
                _put_stuck(stuck)
                if c.settle():
                    return True, cur
            return False, max_cycles
        for cycle, h, mask in flips:
            if cycle > max_cycles:
                break
            if cycle > cur:
                cur += c.cycles(cycle - cur, 1)
                if c.done():
                    return True, cur
            _put(h, _read(h) ^ mask)
            if c.settle():  # the flip itself raised done (a control register)
                return True, cur
        if cur < max_cycles:
            cur += c.cycles(max_cycles - cur, 1)
        return (True, cur) if c.done() else (False, max_cycles)

    async def run_stopped(self, k: int, injections: Sequence[Injection], stop_after: int,
                          probe: Sequence[str]) -> list[int]:
        """A tile run with data-register flips (cpp clock only) that ends right after edge `stop_after`
        (< tile_cycles(k)) instead of at `done`: returns the raw values of the `probe` registers then,
        and resets the array (one edge). For campaigns that finish a tile from the golden state plus
        the observed difference; tests/campaign/test_fidelity.py proves that equal to full runs."""
        return (await self.run_probed(k, [(injections, stop_after, probe)]))[0]

    async def run_probed(self, k: int, items: Sequence[tuple[Sequence[Injection], int, Sequence[str]]]
                         ) -> list[list[int]]:
        """Several stopped runs in one pass (cpp clock only): item (injections, stop_after, probe) gets
        its flips and, right after edge `stop_after`, the values of its `probe` registers, as if it ran
        alone. The caller must only combine items that cannot see each other's flips before their own
        probe (e.g. PE activation flips of different rows probing their own rows' accumulators)."""
        if self._c is None:
            raise ConfigError("run_stopped needs a cpp-clock build (testbenches.sim.build(cfg, clock='cpp'))")
        if not self._params_loaded:
            raise ConfigError("call load_params (or load) before run")
        k = check_range("k", k, 1, self._loaded_k)
        span = self.cfg.tile_cycles(k)
        events = []  # (cycle, order, ...): flips after edge `cycle`, probes after it too
        for n, (injections, stop_after, probe) in enumerate(items):
            check_range("stop_after", stop_after, 0, span - 1)
            for inj in injections:
                if inj.model != "flip" or DATA_SITE.fullmatch(inj.site) is None:
                    raise ConfigError(f"run_stopped takes flips of data registers only, got {inj!r}")
                check_range(f"cycle of the fault in {inj.site} (stop_after={stop_after})", inj.cycle, 0,
                            stop_after)
                h = self.handle(inj.site)
                if inj.mask >= 1 << len(h):
                    raise ConfigError(f"mask {inj.mask:#x} does not fit the {len(h)}-bit register {inj.site}")
                events.append((inj.cycle, 0, n, h, inj.mask))
            events.append((stop_after, 1, n, [self.handle(p) for p in probe], 0))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        c = self._c
        if self._needs_reset:
            self._reset_cpp()
        self._start_cpp(k)
        cur = 0
        values: list[list[int]] = [[] for _ in items]
        for cycle, kind, n, h, mask in events:
            if cycle > cur:
                cur += c.cycles(cycle - cur, 0)
            if kind == 0:
                _put(h, _read(h) ^ mask)
            else:  # reads see the state right after the edge: flips queued at this cycle land later
                values[n] = [_read(x) for x in h]
        self._reset_cpp(1)
        return values

    async def _sleep_until(self, when: int) -> None:
        from cocotb.triggers import Timer
        from cocotb.utils import get_sim_time

        wait = when - get_sim_time("step")
        if wait > 0:
            await Timer(wait, unit="step")

    async def _wait_fast(self, t0: int, span: int, flips) -> tuple[bool | None, int]:  # type: ignore[no-untyped-def]
        """Only data-register flips: deposit them, then check `done` just before and just after edge
        `span` (two wake-ups instead of a trigger race). (None, 0) when done is late."""
        period, half = self._period, self._period // 2
        for cycle, h, mask in flips:
            await self._sleep_until(t0 + cycle * period + half)
            _deposit(h, _read(h) ^ mask)
        done = self.dut.done
        await self._sleep_until(t0 + (span - 1) * period + half)
        if _read(done):  # risen early: a design error; report it as one cycle short
            return True, span - 1
        await self._sleep_until(t0 + span * period + half)
        return (True, span) if _read(done) else (None, 0)

    async def _wait_exact(  # type: ignore[no-untyped-def]
        self, t0: int, max_cycles: int, flips, done_may_be_high: bool = False
    ) -> tuple[bool, int]:
        """Race every wait against `done`, so an early end is timed exactly and ends the run."""
        from cocotb.triggers import First, RisingEdge, Timer
        from cocotb.utils import get_sim_time

        period, half = self._period, self._period // 2
        deadline = t0 + max_cycles * period + half
        done_edge = RisingEdge(self.dut.done)
        if done_may_be_high and _read(self.dut.done):  # the fast path's late-done fallback, done rose since
            return True, int((get_sim_time("step") - t0) // period)
        for cycle, h, mask in flips:
            target = t0 + cycle * period + half
            if target > deadline:
                break
            wait = target - get_sim_time("step")
            if wait > 0 and await First(done_edge, Timer(wait, unit="step")) is done_edge:
                return True, int((get_sim_time("step") - t0) // period)  # ended before this flip
            _deposit(h, _read(h) ^ mask)
        remaining = deadline - get_sim_time("step")
        if remaining > 0 and await First(done_edge, Timer(remaining, unit="step")) is done_edge:
            return True, int((get_sim_time("step") - t0) // period)
        return False, max_cycles


def _same(a: tuple[np.ndarray, ...], b: tuple[object, ...]) -> bool:
    return all(np.shape(u) == np.shape(v) and np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def _read(h) -> int:  # type: ignore[no-untyped-def]
    """The handle's value as an unsigned int (Verilator is two-state: never X or Z)."""
    try:
        return int(h._handle.get_signal_val_binstr(), 2)  # skips building a LogicArray: the hot path
    except AttributeError:  # not a cocotb handle (unit tests' stand-ins)
        value = h.value
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


def _deposit(h, value: int) -> None:  # type: ignore[no-untyped-def]
    width = len(h)
    if h._handle.get_signed() and value >= 1 << (width - 1):  # signed handles take signed ints
        value -= 1 << width
    h.value = value


_RAW: dict[int, tuple[object, object, int, bool]] = {}  # id(handle): (handle, raw handle, width, signed)


def _put(h, value: int) -> None:  # type: ignore[no-untyped-def]
    """Deposit `value` (unsigned) with the next clock step, not at a ReadWrite phase: the cpp clock has
    none. The raw handle, width and signedness are looked up once per handle."""
    known = _RAW.get(id(h))
    if known is None or known[0] is not h:
        known = (h, h._handle, len(h), bool(h._handle.get_signed()))
        _RAW[id(h)] = known
    _, raw, width, signed = known
    if width <= 32:
        if signed and value >= 1 << (width - 1):
            value -= 1 << width
        raw.set_signal_val_int(0, value)
    else:
        raw.set_signal_val_binstr(0, f"{value:0{width}b}")


def _put_stuck(stuck) -> None:  # type: ignore[no-untyped-def]
    for h, mask, ones in stuck:
        _put(h, (_read(h) & ~mask) | ones)


class _CppClock:
    """The functions a cpp build's C++ main exports (testbenches/sim.py, CPP_MAIN_EXTRA)."""

    def __init__(self) -> None:
        import ctypes

        lib = ctypes.CDLL(None)
        try:
            self.cycles = lib.quasar_cycles
            self.settle = lib.quasar_settle
            self.done = lib.quasar_done
        except AttributeError:
            raise ConfigError("this simulator has no C++ clock: start it from a cpp build "
                              "(testbenches.sim.build(cfg, clock='cpp'))") from None
        self.cycles.argtypes = [ctypes.c_int, ctypes.c_int]
        self.cycles.restype = ctypes.c_int
        self.settle.restype = ctypes.c_int
        self.done.restype = ctypes.c_int
        self._put_words, self._get_words = lib.quasar_put_words, lib.quasar_get_words
        self._put_words.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._get_words.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        self._names: dict[str, bytes] = {}
        self._buffers: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name: (words held, known)

    def name(self, tb, signal: str) -> bytes:  # type: ignore[no-untyped-def]
        """The VPI name of a signal of the array, as the C functions look it up."""
        got = self._names.get(signal)
        if got is None:
            got = f"{tb.dut._path}.{signal}".encode()
            self._names[signal] = got
        return got

    def write_buffer(self, tb, signal: str, words: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        """Deposit the rows of `words` (pack_u32) into the memory `signal` from index 0, only those
        that differ from what it holds."""
        n, chunks = words.shape
        held, known = self._buffers.get(signal, (None, None))
        if held is None or held.shape[1] != chunks:
            held, known = np.zeros((tb.cfg.k_max, chunks), np.uint32), np.zeros(tb.cfg.k_max, bool)
            self._buffers[signal] = (held, known)
        changed = ~known[:n] | np.any(words != held[:n], axis=1)
        count = int(changed.sum())
        if not count:
            return
        flags = np.ascontiguousarray(changed, dtype=np.uint8)
        words = np.ascontiguousarray(words)
        if self._put_words(self.name(tb, signal), n, chunks, words.ctypes.data, flags.ctypes.data) != count:
            raise ConfigError(f"could not write {signal!r} through the C++ main")
        held[:n], known[:n] = words, True
        tb.words_written += count

    def read(self, tb, signal: str, width: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        out = np.empty((width + 31) // 32, np.uint32)
        if self._get_words(self.name(tb, signal), len(out), out.ctypes.data) != 0:
            raise ConfigError(f"could not read {signal!r} through the C++ main")
        return out


def _impose(stuck) -> None:  # type: ignore[no-untyped-def]
    for h, mask, ones in stuck:
        _deposit(h, (_read(h) & ~mask) | ones)


def _start_holder(clk, stuck):  # type: ignore[no-untyped-def]
    import cocotb
    from cocotb.triggers import ReadWrite, RisingEdge

    async def hold() -> None:
        # With Verilator, RisingEdge(clk) wakes Python before the design evaluates that edge (cocotb's
        # clock toggles in a timed callback); ReadWrite comes after it, when the registers hold their
        # new values.
        edge, settled = RisingEdge(clk), ReadWrite()
        while True:
            await edge
            await settled
            _impose(stuck)

    return cocotb.start_soon(hold())
