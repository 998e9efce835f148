"""One run directory, one campaign (or sweep): an exclusive lock on the run directory.

The lock is an exclusive flock(2) on the run directory itself (no lock file is left behind): the
kernel releases it when the holder exits, even on SIGKILL, so a killed campaign never leaves the
directory locked. While it holds the lock, the holder keeps `<dir>/.lock.json` naming itself (pid,
host, start time, what runs), read only to tell a second campaign who holds the directory, and
removed on release. A refused second campaign writes nothing in the directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from fault_campaigns.files import atomic_write
from quasar.errors import QuasarError

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
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(
                f"run directory {str(self.directory)!r} is in use by {holder_text(self.directory)}; wait until it "
                "ends or choose another run directory (--out); nothing was changed"
            ) from None
        self._fd = fd
        info = {"what": self.what, "id": self.ident, "pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(self.directory / HOLDER_NAME, json.dumps(info, sort_keys=True))

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        (self.directory / HOLDER_NAME).unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def lock_once_created(directory: Path, what: str, ident: str = ""):
    """Hold `directory` for the whole `with` block: at once if it exists, else from the moment the caller,
    having created it (after its checks, so that a failed check leaves nothing behind), calls the
    yielded `hold()`. Raises RunDirBusy when another campaign or sweep holds it."""
    lock = RunDirLock(directory, what, ident)
    with contextlib.ExitStack() as stack:
        if Path(directory).is_dir():
            stack.enter_context(lock)

        def hold() -> None:
            if not lock.held:
                stack.enter_context(lock)

        yield hold
