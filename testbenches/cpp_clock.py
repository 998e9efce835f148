"""The cpp clock of the array testbench: Python steps the clock through the simulator's C++ main.

A cpp build (testbenches.sim.build(cfg, clock="cpp")) exports a few C functions from its main
(testbenches/cpp_main.py, CPP_MAIN_EXTRA), found here with ctypes: N clock cycles, settle, bulk buffer
writes and reads, and every flip of a tile run in one call (`run_flips`). `CppClockMixin` holds the
ArrayTB methods that run tiles on it; the fault-cycle semantics are the GPI path's (array_tb.py):
a flip after edge e lands between edges e and e + 1, cycles count edges from edge 0 to `done`.
This module never builds anything and holds no testbench state of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from quasar.errors import ConfigError, check_range

if TYPE_CHECKING:
    from testbenches.array_tb import Injection

# Registers of the datapath: a fault there cannot move `done` (the sequencer never reads them), so
# the run ends exactly tile_cycles(k) edges after edge 0 and the testbench can sleep until then.
DATA_SITE = re.compile(
    r"pe_\d+_\d+\.(a_reg|w_reg|a_op|w_op|p_reg|acc)|pp_\d+\.(v_reg|pl_reg|ph_reg|p_reg|t_reg)|oact_\d+|v_\d+"
)


def read_value(h) -> int:  # type: ignore[no-untyped-def]
    """The handle's value as an unsigned int (Verilator is two-state: never X or Z)."""
    try:
        return int(h._handle.get_signal_val_binstr(), 2)  # skips building a LogicArray: the hot path
    except AttributeError:  # not a cocotb handle (unit tests' stand-ins)
        value = h.value
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


_RAW: dict[int, tuple[object, object, int, bool]] = {}  # id(handle): (handle, raw handle, width, signed)


def put_value(h, value: int) -> None:  # type: ignore[no-untyped-def]
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


def put_stuck(stuck) -> None:  # type: ignore[no-untyped-def]
    for h, mask, ones in stuck:
        put_value(h, (read_value(h) & ~mask) | ones)


class CppClock:
    """The functions a cpp build's C++ main exports (testbenches/cpp_main.py, CPP_MAIN_EXTRA)."""

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
        self._handle_id, self._width, self._run_flips = lib.quasar_handle, lib.quasar_width, lib.quasar_run_flips
        self._handle_id.argtypes, self._handle_id.restype = [ctypes.c_char_p], ctypes.c_int
        self._width.argtypes, self._width.restype = [ctypes.c_int], ctypes.c_int
        self._run_flips.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 3 + [ctypes.c_int, ctypes.c_void_p]
        self._run_flips.restype = ctypes.c_int
        self._run_batch = lib.quasar_run_batch
        self._run_batch.argtypes = ([ctypes.c_int] * 6 + [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4
                                    + [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * 3)
        self._run_batch.restype = ctypes.c_int
        self._finished = np.zeros(1, np.int32)
        self._ids: dict[str, tuple[int, int]] = {}  # register: (C id, width)
        self._tables: dict[int, tuple[object, np.ndarray, np.ndarray]] = {}  # id(sites): (sites, ids, widths)
        self._names: dict[str, bytes] = {}
        self._buffers: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name: (words held, known)

    def name(self, tb, signal: str) -> bytes:  # type: ignore[no-untyped-def]
        """The VPI name of a signal of the array, as the C functions look it up."""
        got = self._names.get(signal)
        if got is None:
            got = f"{tb.dut._path}.{signal}".encode()
            self._names[signal] = got
        return got

    def site_table(self, tb, sites: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(C ids, widths) of the registers `sites`, looked up once per list (a job's site table)."""
        known = self._tables.get(id(sites))
        if known is not None and known[0] is sites:
            return known[1], known[2]
        ids, widths = [], []
        for site in sites:
            got = self._ids.get(site)
            if got is None:
                n = self._handle_id(self.name(tb, site))
                if n < 0:
                    raise ConfigError(f"no register {site!r} in the design (see fault_sites.json)")
                got = self._ids[site] = (n, self._width(n))
            ids.append(got[0])
            widths.append(got[1])
        table = (np.asarray(ids, np.int32), np.asarray(widths, np.int32))
        self._tables[id(sites)] = (sites, *table)
        return table

    def run_flips(self, tb, k: int, cycles: np.ndarray, ids: np.ndarray, bits: np.ndarray,  # type: ignore[no-untyped-def]
                  max_cycles: int) -> tuple[bool, int]:
        """A tile run (edge 0 included) with these single-bit flips (sorted by cycle), in one C call:
        (finished, cycles), as ArrayTB._start_cpp and _run_cpp's loop give them."""
        ports = self._ids.get("k"), self._ids.get("start")
        if ports[0] is None or ports[1] is None:
            self.site_table(tb, ["k", "start"])
            ports = self._ids["k"], self._ids["start"]
        cycles, ids, bits = (np.ascontiguousarray(a, np.int32) for a in (cycles, ids, bits))
        n = self._run_flips(ports[0][0], ports[1][0], int(k), len(cycles), cycles.ctypes.data, ids.ctypes.data,
                            bits.ctypes.data, int(max_cycles), self._finished.ctypes.data)
        return bool(self._finished[0]), int(n)

    def run_batch(self, tb, k: int, words: np.ndarray, changed: np.ndarray, foff: np.ndarray,  # type: ignore[no-untyped-def]
                  cycles: np.ndarray, ids: np.ndarray, bits: np.ndarray, max_cycles: int, out_port: str,
                  out_words32: int, viol: bool):
        """Runs of the loaded tile back to back in one C call (quasar_run_batch): (runs done, out words,
        violations, finished, cycles); it stops after the first run that needs a reset."""
        self.site_table(tb, ["k", "start", "abuf", out_port, "viol_count"])
        n = len(foff) - 1
        out = np.zeros((n, out_words32), np.uint32)
        vc = np.zeros(n, np.uint32)
        fin, cyc = np.zeros(n, np.int32), np.zeros(n, np.int32)
        arrays = [np.ascontiguousarray(a, t) for a, t in ((words, np.uint32), (changed, np.uint8), (foff, np.int32),
                                                          (cycles, np.int32), (ids, np.int32), (bits, np.int32))]
        done = self._run_batch(
            self._ids["k"][0], self._ids["start"][0], int(k), n, self._ids["abuf"][0], int(words.shape[-1]),
            *(a.ctypes.data for a in arrays), int(max_cycles), tb.cfg.tile_cycles(k), self._ids[out_port][0],
            out_words32, out.ctypes.data, self._ids["viol_count"][0] if viol else -1, vc.ctypes.data,
            fin.ctypes.data, cyc.ctypes.data)
        return done, out, vc, fin, cyc

    def read_lanes(self, tb, signal: str, width: int, signed: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
        """The rows x cols values of an output port (out_act, out_logit) as int64."""
        from testbenches.array_tb import unpack_u32

        n = tb.cfg.rows * tb.cfg.cols
        return unpack_u32(self.read(tb, signal, n * width), n, width, signed).reshape(tb.cfg.rows, tb.cfg.cols)

    def buffer(self, tb, signal: str, chunks: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(words held, known flags) of the memory `signal`, as far as this process wrote it."""
        held, known = self._buffers.get(signal, (None, None))
        if held is None or held.shape[1] != chunks:
            held, known = np.zeros((tb.cfg.k_max, chunks), np.uint32), np.zeros(tb.cfg.k_max, bool)
            self._buffers[signal] = (held, known)
        return held, known

    def write_buffer(self, tb, signal: str, words: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        """Deposit the rows of `words` (pack_u32) into the memory `signal` from index 0, only those
        that differ from what it holds."""
        n, chunks = words.shape
        held, known = self.buffer(tb, signal, chunks)
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


class CppClockMixin:
    """ArrayTB's tile runs on the cpp clock (self._c is a CppClock)."""

    def _reset_cpp(self, cycles: int = 2) -> None:
        dut, c = self.dut, self._c
        put_value(dut.start, 0)
        put_value(dut.ld_en, 0)
        put_value(dut.rst, 1)
        c.cycles(cycles, 0)
        put_value(dut.rst, 0)
        c.cycles(1, 0)
        self._needs_reset = False

    def _start_cpp(self, k: int, stuck=()) -> None:  # type: ignore[no-untyped-def]
        """Edge 0: the array samples start (stuck bits imposed before it and right after it)."""
        dut, c = self.dut, self._c
        put_value(dut.k, k)
        put_value(dut.start, 1)
        if stuck:
            put_stuck(stuck)
            c.settle()
        c.cycles(1, 0)
        put_value(dut.start, 0)

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
            put_stuck(stuck)
            if c.settle():
                return True, 0
            while cur < max_cycles:
                c.cycles(1, 0)
                cur += 1
                if c.done():
                    return True, cur
                put_stuck(stuck)
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
            put_value(h, read_value(h) ^ mask)
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
                put_value(h, read_value(h) ^ mask)
            else:  # reads see the state right after the edge: flips queued at this cycle land later
                values[n] = [read_value(x) for x in h]
        self._reset_cpp(1)
        return values

    def check_flips(self, k: int, flips: np.ndarray, sites: Sequence[str], runs: Sequence[int] = ()) -> None:  # type: ignore[no-untyped-def]
        """Validate flips (n x 3: cycle, site index, bit) for runs of reduction length k: cycles in
        0 .. tile_cycles(k) - 1 and sorted within each run (`runs`: where each run after the first
        starts, for several runs checked at once), sites known, bits inside their registers."""
        flips = np.asarray(flips).reshape(-1, 3)
        if not len(flips):
            return
        span = self.cfg.tile_cycles(k)
        cycles, site, bits = flips[:, 0], flips[:, 1], flips[:, 2]
        if site.min() < 0 or site.max() >= len(sites):
            raise ConfigError(f"flip site index must be in 0..{len(sites) - 1}, "
                              f"got {int(site.min())}..{int(site.max())}")
        step = np.diff(cycles)
        if len(runs):
            step[np.asarray(runs, np.int64) - 1] = 0
        if cycles.min() < 0 or cycles.max() > span - 1 or np.any(step < 0):
            raise ConfigError(f"flip cycles must be sorted and in 0..{span - 1} (k={k}), got {cycles.tolist()[:8]}...")
        if self._c is not None:
            _, widths = self._c.site_table(self, sites)
        else:
            widths = np.asarray([len(self.handle(s)) for s in sites], np.int64)
        bad = (bits < 0) | (bits >= widths[site])
        if bad.any():
            n = int(np.argmax(bad))
            raise ConfigError(f"bit {int(bits[n])} does not fit the {int(widths[site[n]])}-bit register "
                              f"{sites[int(site[n])]}")

    async def run_flips(self, k: int, flips: np.ndarray, sites: Sequence[str], max_cycles: int | None = None,  # type: ignore[no-untyped-def]
                        checked: bool = False, outputs: Sequence[str] = ("act", "logit")) -> FlipRun:
        """A tile run with many transient single-bit flips: `flips` (n x 3 ints: cycle, index into
        `sites`, bit), sorted by cycle; bits of one register at one cycle are one deposit. On the cpp
        clock the run (start, every flip, the end) is one C call and only the `outputs` asked for ("act",
        "logit") are read; on the GPI clock the flips become Injections of `run`. Same results as `run`
        with those Injections. `checked`: the caller already ran check_flips on them."""
        flips = np.asarray(flips).reshape(-1, 3)
        if not checked:
            self.check_flips(k, flips, sites)
        if self._c is None:
            return FlipRun.of(await self.run(k, merged_injections(flips, sites), max_cycles))
        if not self._params_loaded:
            raise ConfigError("call load_params (or load) before run")
        k = check_range("k", k, 1, self._loaded_k)
        span = self.cfg.tile_cycles(k)
        max_cycles = check_range("max_cycles", self.default_max_cycles(k) if max_cycles is None else max_cycles,
                                 1, 1 << 30)
        ids, _ = self._c.site_table(self, sites)
        if self._needs_reset:
            self._reset_cpp()
        finished, cycles_run = self._c.run_flips(self, k, flips[:, 0], ids[flips[:, 1]], flips[:, 2], max_cycles)
        self._needs_reset = (not finished) or cycles_run != span
        c, cfg = self._c, self.cfg
        act = c.read_lanes(self, "out_act", cfg.act_bits, False) if "act" in outputs else None
        logits = c.read_lanes(self, "out_logit", cfg.v_bits, True) if "logit" in outputs else None
        violations = int(c.read(self, "viol_count", 32)[0]) if cfg.protected else 0  # else the port is tied to 0
        return FlipRun(finished, cycles_run, violations, act, logits)


    def run_flip_batch(self, k: int, x: np.ndarray, flips: np.ndarray, starts: Sequence[int], sites: Sequence[str],  # type: ignore[no-untyped-def]
                       max_cycles: int, logits: bool):
        """Several tile runs of the loaded tile (cpp clock; flips and activations already checked):
        run r feeds activations x[r] (rows x K, in place of the loaded ones) and its flips
        flips[starts[r]:starts[r + 1]] (n x 3: cycle, site index, bit). The C side runs them back to
        back, resetting only after a run that did not end at edge tile_cycles(k). Returns (finished,
        cycles, outputs (runs x rows x cols: the activations, or the logits), violations) per run."""
        from testbenches.array_tb import pack_u32, unpack_rows

        cfg, c = self.cfg, self._c
        n = len(x)
        words = pack_u32(np.swapaxes(x, 1, 2).reshape(n * k, cfg.rows), cfg.act_bits).reshape(n, k, -1)
        held, known = c.buffer(self, "abuf", words.shape[-1])
        changed = np.ones((n, k), bool)
        changed[0] = ~known[:k] | np.any(words[0] != held[:k], axis=1)
        if n > 1:
            changed[1:] = np.any(words[1:] != words[:-1], axis=2)
        width = cfg.v_bits if logits else cfg.act_bits
        out_words32 = (cfg.rows * cfg.cols * width + 31) // 32
        ids, _ = c.site_table(self, sites)
        starts = np.asarray(starts, np.int32)
        site_ids = ids[flips[:, 1]] if len(flips) else np.zeros(0, np.int32)
        span = cfg.tile_cycles(k)
        results = [np.zeros((n, out_words32), np.uint32), np.zeros(n, np.uint32), np.zeros(n, np.int32),
                   np.zeros(n, np.int32)]
        r = 0
        while r < n:
            if self._needs_reset:
                self._reset_cpp()
            fo = starts[r:] - starts[r]
            a, b = starts[r], starts[-1]
            done, *got = c.run_batch(self, k, words[r:], changed[r:], fo, flips[a:b, 0], site_ids[a:b], flips[a:b, 2],
                                     max_cycles, "out_logit" if logits else "out_act", out_words32, cfg.protected)
            for dst, src in zip(results, got, strict=True):
                dst[r:r + done] = src[:done]
            last = r + done - 1
            self._needs_reset = not results[2][last] or results[3][last] != span
            r += done
            if r < n:
                changed[r] = True  # after a reset, rewrite the next run's words whatever the buffer held
        held[:k], known[:k] = words[-1], True
        self._last_operands = (np.asarray(x[-1], np.int64), self._last_operands[1])  # what abuf holds now
        values = unpack_rows(results[0], cfg.rows * cfg.cols, width, logits).reshape(n, cfg.rows, cfg.cols)
        return results[2].astype(bool), results[3], values, results[1].astype(np.int64)


class FlipRun:
    """What a run_flips tile run produced: finished, cycles, violations and the outputs asked for (a
    campaign needs the activations of a hidden layer or the logits of the last, not both); an output
    not read is None."""

    def __init__(self, finished: bool, cycles: int, violations: int, out_act: np.ndarray | None,
                 logits: np.ndarray | None):
        self.finished, self.cycles, self.violations = finished, cycles, violations
        self.out_act, self.logits = out_act, logits

    @classmethod
    def of(cls, result) -> FlipRun:  # type: ignore[no-untyped-def]
        return cls(result.finished, result.cycles, result.violations, result.out_act, result.logits)

    def __repr__(self) -> str:
        return (f"FlipRun(finished={self.finished}, cycles={self.cycles}, violations={self.violations}, "
                f"out_act={None if self.out_act is None else self.out_act.tolist()}, "
                f"logits={None if self.logits is None else self.logits.tolist()})")


def merged_injections(flips: np.ndarray, sites: Sequence[str]) -> list[Injection]:
    """The flips (n x 3: cycle, site index, bit) as Injections, the bits of one register and cycle in
    one mask, in cycle order."""
    from testbenches.array_tb import Injection

    masks: dict[tuple[int, int], int] = {}
    for cycle, site, bit in np.asarray(flips, np.int64).reshape(-1, 3).tolist():
        masks[(cycle, site)] = masks.get((cycle, site), 0) | (1 << bit)
    return [Injection(sites[site], mask, cycle) for (cycle, site), mask in masks.items()]
