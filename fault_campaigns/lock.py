"""One run directory, one campaign (or sweep): an exclusive lock on the run directory.

The lock is an OS file lock (`filelock`, flock on POSIX) on `<dir>/.lock`: the kernel releases it when
the holder exits, even on SIGKILL, so a killed campaign never leaves the directory locked. Beside it,
`<dir>/.lock.json` names the holder (pid, host, start time, what runs); it is only read when the lock
is busy, to tell the second campaign who holds the directory. A refused second campaign writes
nothing in the directory.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from fault_campaigns.files import atomic_write
from quasar.errors import QuasarError

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.json"


class RunDirBusy(QuasarError):
    """Another campaign or sweep is running in this run directory."""


def holder_text(directory: Path) -> str:
    """Who holds the lock, as the holder wrote it (or why that is unknown)."""
    try:
        info = json.loads((directory / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return "a process that has not (yet) written its name"
    return (f"{info.get('what', 'a run')} {info.get('id', '')} (pid {info.get('pid')} on host {info.get('host')}, "
            f"started {info.get('started')})").replace("  ", " ")


class RunDirLock:
    """`with RunDirLock(dir, "campaign", campaign_id):` holds `dir` exclusively or raises RunDirBusy."""

    def __init__(self, directory: Path, what: str, ident: str = ""):
        self.directory = Path(directory)
        self.what, self.ident = what, ident
        self._lock = FileLock(str(self.directory / LOCK_NAME), timeout=0)

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirBusy(
                f"run directory {str(self.directory)!r} is in use by {holder_text(self.directory)}; wait until it "
                "ends or choose another run directory (--out); nothing was changed"
            ) from None
        info = {"what": self.what, "id": self.ident, "pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.directory / HOLDER_NAME, json.dumps(info, sort_keys=True))

    def release(self) -> None:
        (self.directory / HOLDER_NAME).unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
