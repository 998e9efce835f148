"""Run-directory file helpers shared by every stage: atomic writes and the writable-directory probe.

Nothing here knows about campaigns; it exists so that reports and the sweep need not import the
campaign orchestration (which imports them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from quasar.errors import QuasarError


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees either the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def check_out_dir(path: Path) -> Path:
    """Create the run directory or fail with a clear message before any work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise QuasarError(f"output directory {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path


def probe_out_dir(path: Path) -> Path:
    """Fail with a clear message now if `path` could not be created or written later, without creating
    it: the probe is a temporary directory in `path` or in its nearest existing parent, removed at once."""
    path = Path(path)
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise QuasarError(f"output directory {str(path)!r} is not writable: {str(base)!r} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".quasar-probe-", dir=base))
    except OSError as exc:
        raise QuasarError(f"output directory {str(path)!r} is not writable: {exc.strerror or exc}") from None
    return path
