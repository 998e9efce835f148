"""Build the generated array with Verilator (through cocotb_tools.runner) and launch cocotb test modules.

`build(cfg)` generates the design and compiles it once into a cache directory shared by every process
(a file lock serialises builders; a stamp holding a digest of the sources and flags marks a finished
build). `sim_command()` returns the exact command, environment and working directory that run a
cocotb test module on a finished build, so a caller can start, time out and kill it itself;
`run_test()` runs one and raises with the log tail unless every test in it passed.
This module never drives a signal; the testbench classes live in testbenches/array_tb.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.runner import Verilator
from filelock import FileLock

from hdl_gen import TOP, ArrayConfig, Design, generate
from quasar import toolenv
from quasar.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
# The tool command lines of a build (verilator, make): DEBUG on this logger (`quasar --verbose`) and
# always at the top of the build's own log file; the console gets one "building simulator" line.
TOOL_LOG = logging.getLogger(__name__ + ".tools")
BUILD_DIR_ENV = "QUASAR_BUILD_DIR"
CONFIG_ENV = "QUASAR_ARRAY_CONFIG"  # path of config.json, read by the test modules (ArrayTB.config_from_env)
SITES_ENV = "QUASAR_FAULT_SITES"
TIMESCALE = ("1ns", "1ps")
# Verilator flags beyond the runner's own (--vpi --public-flat-rw ...). -O3 and --x-assign/--x-initial 0
# trade nothing we need (the design resets every register it reads) for speed and determinism.
VERILATOR_ARGS = ("-O3", "--x-assign", "0", "--x-initial", "0", "-Wno-fatal")
# C++ optimisation of the verilated model: -O2 instead of the wheel's -Os nearly halves simulation time.
MAKE_OPT = "OPT_FAST=-O2"
CPP_HOOK = "    std::unique_ptr<Vtop> top(new Vtop(\"\"));\n"
CPP_MAIN_EXTRA = r"""
// ---- QuaSAR: a clock stepped from Python (testbenches/array_tb.py, clock "cpp"), through ctypes ----
// Python calls these from inside a cocotb callback, between two evaluations of the main loop, so the
// model is never re-entered. Simulated time does not advance; the design has no delays. VPI writes
// (queued as inertial puts) take effect at the next call, before its first evaluation.
extern "C" {
// `n` clock cycles (rising edge, falling edge); with stop_on_done, stop after the first rising edge
// that leaves `done` high. Returns the number of rising edges simulated.
int quasar_cycles(int n, int stop_on_done) {
    Vtop* top = quasar_top;
    VerilatedVpi::doInertialPuts();  // cocotb's deposits on Verilator are inertial: apply them first
    for (int i = 0; i < n; ++i) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        if (stop_on_done && top->done) return i + 1;
    }
    return n;
}
// Settle the model after VPI writes (no clock edge); returns `done`.
int quasar_settle(void) {
    VerilatedVpi::doInertialPuts();
    quasar_top->eval();
    return quasar_top->done;
}
int quasar_done(void) { return quasar_top->done; }
// Deposit `count` words (`words32` 32-bit chunks each, least significant first) into the memory `name`
// from index 0, skipping those whose `changed` flag is 0: one call per buffer instead of a VPI write
// from Python per word. Returns the number written, or -1 when `name` or an element is unknown.
int quasar_put_words(const char* name, int count, int words32, const uint32_t* data, const uint8_t* changed) {
    vpiHandle mem = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!mem) return -1;
    std::vector<s_vpi_vecval> vec(words32);
    s_vpi_value value;
    value.format = vpiVectorVal;
    value.value.vector = vec.data();
    int written = 0;
    for (int i = 0; i < count; ++i) {
        if (changed && !changed[i]) continue;
        vpiHandle el = vpi_handle_by_index(mem, i);
        if (!el) return -1;
        for (int w = 0; w < words32; ++w) {
            vec[w].aval = data[i * words32 + w];
            vec[w].bval = 0;
        }
        vpi_put_value(el, &value, nullptr, vpiNoDelay);
        vpi_release_handle(el);
        ++written;
    }
    vpi_release_handle(mem);
    return written;
}
// ---- every flip of a tile run in one call (ArrayTB.run_flips): no Python between the flips ----
static std::vector<vpiHandle> quasar_handles;
static std::vector<int> quasar_widths;
// A register's id for quasar_run_flips (its VPI handle kept for the process's life); -1 when unknown.
int quasar_handle(const char* name) {
    vpiHandle h = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!h) return -1;
    quasar_handles.push_back(h);
    quasar_widths.push_back(vpi_get(vpiSize, h));
    return static_cast<int>(quasar_handles.size()) - 1;
}
int quasar_width(int id) { return quasar_widths.at(id); }
// Invert bit `bit` of register `id` now (a deposit between two edges, as a VPI write from Python).
static void quasar_flip_bit(int id, int bit) {
    vpiHandle h = quasar_handles[id];
    s_vpi_vecval vec[8];
    int words = (quasar_widths[id] + 31) / 32;
    s_vpi_value value;
    value.format = vpiVectorVal;
    vpi_get_value(h, &value);
    for (int w = 0; w < words && w < 8; ++w) {
        vec[w].aval = value.value.vector[w].aval;
        vec[w].bval = 0;
    }
    vec[bit / 32].aval ^= 1u << (bit % 32);
    value.value.vector = vec;
    vpi_put_value(h, &value, nullptr, vpiNoDelay);
}
static void quasar_put_int(int id, int value) {
    s_vpi_value v;
    v.format = vpiIntVal;
    v.value.integer = value;
    vpi_put_value(quasar_handles[id], &v, nullptr, vpiNoDelay);
}
// A tile run of reduction length k (ports `k` and `start` by id) with `n` single-bit flips sorted by
// cycle: flip i inverts bit bits[i] of register ids[i] right after edge cycles[i] (flips of one
// register and cycle are one deposit). Same semantics as ArrayTB._start_cpp and the Python loop of
// ArrayTB._run_cpp: a flip lands unless `done` rose at or before its edge; `done` raised by a deposit
// itself ends the run at that edge; flips after `max_cycles` are dropped. Returns the edges from
// edge 0 to `done` (or max_cycles); *finished is 1 when `done` rose.
int quasar_run_flips(int k_id, int start_id, int k, int n, const int32_t* cycles, const int32_t* ids,
                     const int32_t* bits, int max_cycles, int* finished) {
    // edge 0 samples start (ArrayTB._start_cpp)
    quasar_put_int(k_id, k);
    quasar_put_int(start_id, 1);
    quasar_cycles(1, 0);
    quasar_put_int(start_id, 0);
    int cur = 0;
    *finished = 1;
    for (int i = 0; i < n; ++i) {
        if (cycles[i] > max_cycles) break;
        if (cycles[i] > cur) {
            cur += quasar_cycles(cycles[i] - cur, 1);
            if (quasar_top->done) return cur;
        }
        quasar_flip_bit(ids[i], bits[i]);
        bool last = i + 1 == n || cycles[i + 1] != cycles[i] || ids[i + 1] != ids[i];
        if (last && quasar_settle()) return cur;  // the deposit itself raised done (a control register)
    }
    if (cur < max_cycles) cur += quasar_cycles(max_cycles - cur, 1);
    if (quasar_top->done) return cur;
    *finished = 0;
    return max_cycles;
}
// Several tile runs of the loaded tile back to back (ArrayTB.run_flip_batch): before run r, the
// words of memory `mem_id` flagged in changed[r*k ..] take xwords[r*k*words32 ..]; its flips are
// cycles/ids/bits[foff[r] .. foff[r+1]); after it, port `out_id` goes to out[r*out_words32 ..],
// port `viol_id` (if >= 0) to viol[r], and fin[r], cyc[r] as quasar_run_flips gives them. Stops
// after the first run that did not end exactly at edge `span` (the array then needs a reset) and
// returns how many runs it did.
int quasar_run_batch(int k_id, int start_id, int k, int nruns, int mem_id, int words32, const uint32_t* xwords,
                     const uint8_t* changed, const int32_t* foff, const int32_t* cycles, const int32_t* ids,
                     const int32_t* bits, int max_cycles, int span, int out_id, int out_words32, uint32_t* out,
                     int viol_id, uint32_t* viol, int32_t* fin, int32_t* cyc) {
    static std::vector<vpiHandle> elems;
    static int elems_of = -1;
    vpiHandle mem = quasar_handles[mem_id];
    if (elems_of != mem_id) {
        elems.clear();
        elems_of = mem_id;
    }
    std::vector<s_vpi_vecval> vec(words32 > out_words32 ? words32 : out_words32);
    s_vpi_value value;
    for (int r = 0; r < nruns; ++r) {
        for (int kk = 0; kk < k; ++kk) {
            if (!changed[r * k + kk]) continue;
            while (static_cast<int>(elems.size()) <= kk)
                elems.push_back(vpi_handle_by_index(mem, static_cast<PLI_INT32>(elems.size())));
            for (int w = 0; w < words32; ++w) {
                vec[w].aval = xwords[(static_cast<size_t>(r) * k + kk) * words32 + w];
                vec[w].bval = 0;
            }
            value.format = vpiVectorVal;
            value.value.vector = vec.data();
            vpi_put_value(elems[kk], &value, nullptr, vpiNoDelay);
        }
        int done = 0;
        cyc[r] = quasar_run_flips(k_id, start_id, k, foff[r + 1] - foff[r], cycles + foff[r], ids + foff[r],
                                  bits + foff[r], max_cycles, &done);
        fin[r] = done;
        value.format = vpiVectorVal;
        vpi_get_value(quasar_handles[out_id], &value);
        for (int w = 0; w < out_words32; ++w)
            out[static_cast<size_t>(r) * out_words32 + w] = value.value.vector[w].aval;
        if (viol_id >= 0) {
            vpi_get_value(quasar_handles[viol_id], &value);
            viol[r] = value.value.vector[0].aval;
        }
        if (!done || cyc[r] != span) return r + 1;
    }
    return nruns;
}
// Read the signal `name` into `out` (`words32` chunks, least significant first); -1 when unknown.
int quasar_get_words(const char* name, int words32, uint32_t* out) {
    vpiHandle h = vpi_handle_by_name(const_cast<PLI_BYTE8*>(name), nullptr);
    if (!h) return -1;
    s_vpi_value value;
    value.format = vpiVectorVal;
    vpi_get_value(h, &value);
    for (int w = 0; w < words32; ++w) out[w] = value.value.vector[w].aval;
    vpi_release_handle(h);
    return 0;
}
}
"""
STAMP = "built.json"
# Clock sources of a build. "gpi": cocotb's GPI clock toggles `clk` from the simulator's callback loop
# and Python sleeps in triggers (the reference testbench). "cpp": the simulator's C++ main (cocotb's own,
# plus a few exported functions, CPP_MAIN_EXTRA) steps the clock when Python asks for N cycles, so a
# tile run costs no VPI callback per cycle and no cocotb trigger at all. The Verilog is the same.
CLOCKS = ("gpi", "cpp")
FAST_CLOCK = "cpp"
CLOCK_ENV = "QUASAR_SIM_CLOCK"  # the build's clock source, for the testbench inside the simulator


class SimulationError(RuntimeError):
    """A build or simulation failed; the message carries the tail of its log."""


@dataclass(frozen=True)
class SimBuild:
    """A finished simulator build of one config."""

    cfg: ArrayConfig
    design: Design
    root: Path  # build/sim/<key>[-waves]
    waves: bool
    build_seconds: float  # 0.0 when an existing build was reused
    clock: str = "gpi"

    @property
    def obj_dir(self) -> Path:
        return self.root / "obj"

    @property
    def executable(self) -> Path:
        return self.obj_dir / TOP


def build_root() -> Path:
    override = os.environ.get(BUILD_DIR_ENV)
    return Path(override).resolve() if override else REPO_ROOT / "build" / "sim"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _public_vlt(cfg: ArrayConfig, design: Design, path: Path) -> Path:
    """A Verilator control file making the ports, buffers and fault sites readable and writable."""
    from hdl_gen import rtl

    lines = ["`verilator_config", "// generated by testbenches/sim.py: what a testbench may reach over VPI"]
    for module, names in rtl.vpi_signals(cfg, design.ports).items():
        lines += [f'public_flat_rw -module "{module}" -var "{name}"' for name in names]
    text = "\n".join(lines) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _digest(sources: list[Path], waves: bool, args: Sequence[str] = VERILATOR_ARGS) -> str:
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update(json.dumps([list(args), MAKE_OPT, TIMESCALE, waves, sys.version]).encode())
    return h.hexdigest()


def _cpp_main(root: Path) -> Path:
    """cocotb's Verilator main with the model pointer kept and CPP_MAIN_EXTRA's functions added."""
    import cocotb_tools.config

    src = (cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp").read_text()
    if src.count(CPP_HOOK) != 1:
        raise SimulationError("cocotb's verilator.cpp changed: cannot add the C++ clock (testbenches/sim.py)")
    head = "#include <cstdint>\n#include <vector>\nstatic Vtop* quasar_top = nullptr;\n"
    text = src.replace(CPP_HOOK, CPP_HOOK + "    quasar_top = top.get();\n").replace(
        '#include "Vtop.h"\n', '#include "Vtop.h"\n' + head) + CPP_MAIN_EXTRA
    path = root / "quasar_verilator_main.cpp"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


_BUILT: dict[tuple, SimBuild] = {}


def build(cfg: ArrayConfig, waves: bool = False, clock: str = "gpi",
          replace: Mapping[str, str] | None = None) -> SimBuild:
    """`_build`, remembered per process: regenerating the Verilog to check the cache costs ~0.3 s."""
    key = (cfg, waves, clock, tuple(sorted((replace or {}).items())))
    known = _BUILT.get(key)
    if known is not None and (known.obj_dir / TOP).is_file() and (known.root / STAMP).is_file():
        return SimBuild(cfg, known.design, known.root, waves, 0.0, clock)
    made = _build(cfg, waves, clock, replace)
    _BUILT[key] = made
    return made


def _build(cfg: ArrayConfig, waves: bool = False, clock: str = "gpi",
           replace: Mapping[str, str] | None = None) -> SimBuild:
    """Generate and compile `cfg` into build/sim/<key>[-cpp][-waves], or reuse a finished build there.
    clock "gpi": cocotb drives `clk` (the reference); "cpp": Python steps the clock through the C++ main.
    `replace` {module name: Verilog text} swaps generated modules for other text (a sign-off test's
    deliberately broken block); such a build lives in its own directory, named by the text's hash."""
    from quasar.errors import check_choice

    check_choice("clock", clock, CLOCKS)
    toolenv.apply()
    if clock == "cpp" and waves:
        raise ConfigError("waves need the gpi clock (simulated time does not advance with the cpp clock)")
    patched = ""
    if replace:
        patched = "-patched-" + hashlib.sha256(json.dumps(sorted(replace.items())).encode()).hexdigest()[:8]
    root = build_root() / (cfg.key() + patched + ("-cpp" if clock == "cpp" else "") + ("-waves" if waves else ""))
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        design = generate(cfg, root / "rtl")
        for module, text in (replace or {}).items():
            path = design.out_dir / f"{module}.v"
            if not path.is_file():
                raise ConfigError(f"cannot replace module {module!r}: the design has no {path.name}")
            path.write_text(text)
        sources = [_public_vlt(cfg, design, root / "public.vlt"), *design.sources]
        args = list(VERILATOR_ARGS)
        main = None
        if clock == "cpp":
            main = _cpp_main(root)
            args += ["-LDFLAGS", "-rdynamic"]  # ctypes finds the quasar_* functions in the executable
            sources = [*sources, main]
        digest = _digest(sources, waves, args)
        stamp = root / STAMP
        obj = root / "obj"
        if stamp.is_file() and (obj / TOP).is_file():
            try:
                if json.loads(stamp.read_text()).get("digest") == digest:
                    return SimBuild(cfg, design, root, waves, 0.0, clock)
            except (OSError, ValueError):
                pass
        stamp.unlink(missing_ok=True)
        shutil.rmtree(obj, ignore_errors=True)
        log = root / "build.log"
        log_line = f"{cfg.key()}{' (fast clock)' if clock == 'cpp' else ''}{' with waveforms' if waves else ''}"
        logging.getLogger(__name__).info("building simulator for %s (cached next time)", log_line)
        t0 = time.monotonic()
        env_backup = os.environ.get("MAKEFLAGS", "")
        os.environ["MAKEFLAGS"] = f"{env_backup} {MAKE_OPT}".strip()
        try:
            _CachedRuntimeVerilator(_runtime_dir(waves), main).build(
                sources=[src for src in sources if src != main],
                hdl_toplevel=TOP,
                build_dir=obj,
                build_args=args,
                timescale=TIMESCALE,
                waves=waves,
                log_file=log,
            )
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise SimulationError(f"Verilator build of {cfg.key()} failed ({exc}); log {log}:\n{_tail(log)}") from None
        finally:
            os.environ["MAKEFLAGS"] = env_backup
        seconds = time.monotonic() - t0
        stamp.write_text(json.dumps({"digest": digest, "key": cfg.key(), "seconds": round(seconds, 2)}) + "\n")
        return SimBuild(cfg, design, root, waves, seconds, clock)


# Verilator's runtime objects do not depend on the design: compile them once per toolchain and copy
# them into every new build (make sees them newer than Vtop.mk and skips them). Without ccache this
# halves a small design's build time.
RUNTIME_OBJS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def _runtime_dir(waves: bool) -> Path:
    import importlib.metadata

    try:
        cxx = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        cxx = "no c++"
    ident = json.dumps(
        [importlib.metadata.version("verilator"), waves, cxx.splitlines()[:1], os.environ.get("MAKEFLAGS", "")]
    )
    return build_root() / f"_runtime-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


class _ToolLog(logging.LoggerAdapter):
    """cocotb's runner logs every tool command at INFO: demote them to DEBUG."""

    def info(self, msg, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.debug(msg, *args, **kwargs)


class _CachedRuntimeVerilator(Verilator):
    """cocotb's Verilator runner, reusing the design-independent runtime objects between builds, and
    making public only the signals listed in a control file instead of everything (--public-flat-rw,
    which the runner always passes, costs about a third of the simulation speed of an 8x8 array)."""

    def __init__(self, runtime: Path, main: Path | None = None) -> None:
        super().__init__()
        self.log = _ToolLog(TOOL_LOG, {})  # the runner's "Running command ..." lines, at DEBUG
        self.runtime = runtime
        self.main = main  # replaces cocotb's verilator.cpp (the cpp clock)

    def _build_command(self) -> list[list[str]]:  # type: ignore[override]
        cmds = super()._build_command()
        cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
        if self.main is not None:
            cmds[0] = [str(self.main) if arg.endswith("/verilator/verilator.cpp") else arg for arg in cmds[0]]
            if str(self.main) not in cmds[0]:
                raise SimulationError("could not substitute the simulator's C++ main (testbenches/sim.py)")
        return cmds

    def _execute_cmds(self, cmds, cwd, stdout=None) -> None:  # type: ignore[no-untyped-def]
        if stdout is not None:  # the build log starts with the tool command lines
            for cmd in cmds:
                stdout.write(f"$ {shlex.join(str(c) for c in cmd)}\n")
            stdout.flush()
        if len(cmds) != 2:  # not the verilate + make pair this class knows
            return super()._execute_cmds(cmds, cwd, stdout)
        verilate, make = cmds
        super()._execute_cmds([verilate], cwd, stdout)
        self._restore()
        super()._execute_cmds([make], cwd, stdout)
        self._save()

    def _files(self, where: Path) -> list[Path]:
        return [where / f"{name}{ext}" for name in RUNTIME_OBJS for ext in (".o", ".d")]

    def _restore(self) -> None:
        if (self.runtime / "complete").is_file():
            for src in self._files(self.runtime):
                if src.is_file():
                    shutil.copyfile(src, self.build_dir / src.name)  # fresh mtime: newer than Vtop.mk

    def _save(self) -> None:
        if (self.runtime / "complete").is_file():
            return
        with FileLock(str(self.runtime) + ".lock"):
            if (self.runtime / "complete").is_file():
                return
            tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=self.runtime.parent))
            for src in self._files(self.build_dir):
                if src.is_file():
                    shutil.copyfile(src, tmp / src.name)
            (tmp / "complete").write_text("")
            shutil.rmtree(self.runtime, ignore_errors=True)
            os.replace(tmp, self.runtime)


RUN_DIR_MAX_AGE_S = 2 * 24 * 3600


def _prune(runs: Path, max_age_s: float) -> None:
    """Delete run directories (logs, results) not touched for `max_age_s`: no live run is that old."""
    cutoff = time.time() - max_age_s
    for d in runs.glob("run-*"):
        try:
            if d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


class _Captured(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, cmds: Sequence[Sequence[str]], env: dict[str, str], cwd: Path):
        super().__init__("captured")
        self.cmds, self.env, self.cwd = [list(c) for c in cmds], env, cwd


class _CapturingVerilator(Verilator):
    """The runner's own test() logic, stopped just before it would execute the simulator."""

    def _execute(self, cmds, cwd) -> None:  # type: ignore[no-untyped-def]
        raise _Captured(cmds, dict(self.env), Path(cwd))


def sim_command(
    build: SimBuild,
    test_module: str,
    testcase: str | Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_path: Sequence[str | os.PathLike[str]] = (),
    waves: bool = False,
    results_xml: str | os.PathLike[str] | None = None,
) -> tuple[list[str], dict[str, str], Path]:
    """(cmd, env, cwd) that run the cocotb module `test_module` on `build`.

    cwd is the directory of `results_xml` (default: a fresh directory under <build>/runs), so parallel
    runs never share files. `extra_env` wins over the inherited environment; `python_path` entries are
    put first on PYTHONPATH, before the repository root. The environment also names the design's
    config.json and fault_sites.json (QUASAR_ARRAY_CONFIG, QUASAR_FAULT_SITES).
    """
    if waves and not build.waves:
        raise ConfigError("waves=True needs a build made with build(cfg, waves=True)")
    if results_xml is None:
        runs = build.root / "runs"
        runs.mkdir(exist_ok=True)
        _prune(runs, max_age_s=RUN_DIR_MAX_AGE_S)
        results = Path(tempfile.mkdtemp(prefix="run-", dir=runs)) / "results.xml"
    else:
        results = Path(results_xml).resolve()
        results.parent.mkdir(parents=True, exist_ok=True)
    toolenv.apply()
    runner = _CapturingVerilator()
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=TOP,
            hdl_toplevel_lang="verilog",
            testcase=testcase,
            build_dir=build.obj_dir,
            test_dir=results.parent,
            results_xml=str(results),
            waves=waves,
            timescale=TIMESCALE,
        )
    except _Captured as cap:
        cmds, env, cwd = cap.cmds, cap.env, cap.cwd
    else:  # pragma: no cover - the runner always executes its command
        raise SimulationError("cocotb runner produced no simulator command")
    if len(cmds) != 1:
        raise SimulationError(f"expected one simulator command from the runner, got {cmds!r}")
    env.update({CONFIG_ENV: str(build.design.config_path), SITES_ENV: str(build.design.sites_path),
                CLOCK_ENV: build.clock})
    if build.clock == "cpp" and "COCOTB_REWRITE_ASSERTION_FILES" not in (extra_env or {}):
        # campaign workers hold no assertions: skip pytest's import hook (~0.1 s of every start-up)
        env["COCOTB_REWRITE_ASSERTION_FILES"] = ""
    env.update(extra_env or {})
    paths = [str(Path(p).resolve()) for p in python_path] + [str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return cmds[0], env, cwd


@dataclass(frozen=True)
class CocotbRun:
    """One simulator process's outcome: every cocotb test it reported, pass (None) or failure text."""

    results_xml: Path
    log: Path
    returncode: int
    seconds: float
    tests: dict[str, str | None]

    @property
    def failed(self) -> list[str]:
        return [name for name, why in self.tests.items() if why is not None]

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log, lines)


def parse_results(path: Path) -> dict[str, str | None]:
    """cocotb's JUnit results: {test name: None if it passed, else the failure/error/skip text}."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    out: dict[str, str | None] = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        why = None
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                why = f"{tag}: {el.get('message') or ''} {el.text or ''}".strip()
                break
        out[case.get("name", "?")] = why
    return out


def run_cocotb(
    build: SimBuild,
    test_module: str,
    testcase: str | Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_path: Sequence[str | os.PathLike[str]] = (),
    waves: bool = False,
    timeout: float = 600.0,
) -> CocotbRun:
    """Run a cocotb test module in a fresh simulator process (killed after `timeout` s); never raises
    for failing tests, only for a launch problem."""
    cmd, env, cwd = sim_command(build, test_module, testcase, extra_env, python_path, waves)
    log = cwd / "sim.log"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            fh.write(f"\n[quasar] killed after the {timeout:.0f} s timeout\n")
            rc = -9
    results = cwd / "results.xml"
    return CocotbRun(results, log, rc, time.monotonic() - t0, parse_results(results))


def run_test(
    build: SimBuild,
    test_module: str,
    testcase: str | Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_path: Sequence[str | os.PathLike[str]] = (),
    waves: bool = False,
    timeout: float = 600.0,
) -> CocotbRun:
    """Run a cocotb test module; raise SimulationError (with the log tail) unless the simulator exited
    cleanly, reported at least one test and every reported test passed."""
    run = run_cocotb(build, test_module, testcase, extra_env, python_path, waves, timeout)
    if run.returncode != 0 or not run.tests or run.failed:
        why = (
            f"exit status {run.returncode}" if run.returncode
            else "no test ran" if not run.tests
            else f"failed: {', '.join(run.failed)}"
        )
        raise SimulationError(f"{test_module} on {build.cfg.key()}: {why}; log {run.log}:\n{run.log_tail()}")
    return run
