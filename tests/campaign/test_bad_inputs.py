"""The table of bad inputs in docs/campaign.md, row by row: each is one `error: ...` line naming the
problem, exit status 2, no traceback, every file that existed before is byte for byte the same, and a
run directory that did not exist is not created (no campaign.json, no empty store)."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fault_campaigns.campaign import STORE_NAME
from fault_campaigns.results.store import ResultStore
from tests.campaign.conftest import result_rows, small_config

BASE = ["campaign", "--net", "tiny", "--bits", "4", "--rows", "4", "--cols", "4", "--k-max", "128", "--images", "2",
        "--golden-images", "1", "--faults", "200", "--seed", "5", "--per-channel-bounds", "--protection", "range",
        "--workers", "1", "--no-progress"]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _own_store(run: Path) -> None:
    """A store of this very campaign with one row: what a resumed run must keep."""
    run.mkdir(parents=True)
    with ResultStore(run / STORE_NAME, small_config().campaign_id, {}) as s:
        s.db.execute("INSERT INTO meta VALUES ('note', 'pre-existing')")
        s.db.commit()


def _garbage_store(run: Path) -> None:
    run.mkdir(parents=True)
    (run / STORE_NAME).write_bytes(b"\x00\x01 definitely not a database " * 40)


def _damaged_store(run: Path) -> None:
    _own_store(run)
    data = bytearray((run / STORE_NAME).read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # SQLite header intact, first page's b-tree destroyed
    (run / STORE_NAME).write_bytes(bytes(data))


def _foreign_campaign_store(run: Path) -> None:
    run.mkdir(parents=True)
    ResultStore(run / STORE_NAME, "0123456789abcdef", {"net": "lenet"}).close()


def _foreign_schema_store(run: Path) -> None:
    run.mkdir(parents=True)
    db = sqlite3.connect(run / STORE_NAME)
    db.execute("CREATE TABLE measurements (t REAL, v REAL)")
    db.execute("INSERT INTO measurements VALUES (1.0, 2.0)")
    db.commit()
    db.close()


def _old_schema_store(run: Path) -> None:
    _own_store(run)
    db = sqlite3.connect(run / STORE_NAME)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def _corrupt_checkpoint(run: Path, monkeypatch) -> None:
    from models import TrainConfig, get_or_train
    from models.train import cache_root

    tc = TrainConfig(net="tiny", act_bits=4, weight_bits=4, mode="qat")
    get_or_train(tc, progress=False)  # the real cache entry (trained once if this clone has none)
    entry = cache_root() / f"{tc.run_name}-{tc.key}"
    cache = run.parent / "cache"
    shutil.copytree(entry, cache / entry.name)
    (cache / entry.name / "model.pt").write_bytes(b"PK\x03\x04 truncated checkpoint")
    monkeypatch.setenv("QUASAR_CACHE_DIR", str(cache))


def _unreachable_scheduler(run: Path, monkeypatch) -> list[str]:
    from fault_campaigns.execution import dask_executor

    # the campaign waits 30 s for a scheduler; 1 s shows the same thing
    monkeypatch.setattr(dask_executor, "connect", functools.partial(dask_executor.connect, timeout=1))
    return ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"]


def _alexnet_without_cifar10(run: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr("models.data.DATA_ROOT", run.parent / "no-data")  # a clone without CIFAR-10
    return ["--net", "alexnet", "--k-max", "4096"]


def _missing_data_dir(run: Path) -> list[str]:
    return ["--data-dir", str(run.parent / "nowhere")]


def _empty_data_dir(run: Path) -> list[str]:
    (run.parent / "empty").mkdir()
    return ["--data-dir", str(run.parent / "empty")]


# (id, extra arguments or a set-up function, what the one error line must say)
TABLE = [
    ("bits-0", ["--bits", "0"], "bits must be in 2..16, got 0"),
    ("bits-1", ["--bits", "1"], "bits must be in 2..16, got 1"),
    ("bits-17", ["--bits", "17"], "bits must be in 2..16, got 17"),
    ("bits-x", ["--bits", "x"], "Invalid value for '--bits'"),
    ("net-unknown", ["--net", "vgg"], "net must be one of"),
    ("rows-0", ["--rows", "0"], "rows must be in 1..64, got 0"),
    ("margin-0", ["--margin", "0"], "margin"),
    ("margin-negative", ["--margin", "-0.1"], "margin"),
    ("margin-1", ["--margin", "1"], "margin"),
    ("margin-above-1", ["--margin", "1.5"], "margin"),
    ("confidence-1", ["--confidence", "1"], "confidence"),
    ("confidence-above-1", ["--confidence", "2"], "confidence"),
    ("data-dir-missing", _missing_data_dir, "does not exist"),
    ("data-dir-empty", _empty_data_dir, "is empty"),
    ("executor-unknown", ["--executor", "slurm"], "executor must be one of local, dask; got 'slurm'"),
    ("dask-no-scheduler", ["--executor", "dask"], "--executor dask needs --scheduler"),
    ("dask-bad-scheduler", ["--executor", "dask", "--scheduler", "localhost"], "must look like tcp://HOST:PORT"),
    ("scheduler-without-dask", ["--scheduler", "tcp://127.0.0.1:8786"], "is only used with --executor dask"),
    ("dask-unreachable", _unreachable_scheduler, "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"),
    ("alexnet-no-cifar10", _alexnet_without_cifar10, "does not exist"),
    ("stall-timeout-0", ["--stall-timeout", "0"], "stall timeout must be more than 0"),
    ("raw-fit-negative", ["--raw-fit-per-mbit", "-1"], "raw FIT per Mbit must be a finite number >= 0"),
    ("checkpoint-corrupt", _corrupt_checkpoint, "is corrupt or unreadable"),
    ("store-garbage", _garbage_store, "is not an SQLite database"),
    ("store-damaged", _damaged_store, "is corrupt or not a QuaSAR store"),
    ("store-other-campaign", _foreign_campaign_store, "belongs to campaign '0123456789abcdef'"),
    ("store-other-schema", _foreign_schema_store, "holds tables ['measurements'], not a QuaSAR store"),
    ("store-old-version", _old_schema_store, "has schema version '99'"),
]


@pytest.mark.parametrize(
    ("setup", "message"),
    # the corrupt-checkpoint row needs the real cached model first (trained once on a fresh clone)
    [pytest.param(s, m, id=i, marks=[pytest.mark.train] if s is _corrupt_checkpoint else []) for i, s, m in TABLE],
)
def test_bad_input_is_one_clear_line_and_touches_nothing(setup, message, tmp_path, capsys, monkeypatch):
    from quasar.cli import main

    run = tmp_path / "run"
    extra: list[str] = []
    if callable(setup):
        takes_patch = setup in (_corrupt_checkpoint, _unreachable_scheduler, _alexnet_without_cifar10)
        extra = setup(*((run, monkeypatch) if takes_patch else (run,))) or []
    else:
        extra = setup
    before = _snapshot(tmp_path)
    existed = run.exists()
    capsys.readouterr()
    assert main([*BASE, *extra, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    if isinstance(setup, list):  # an option value: refused before the `campaign <id> -> <dir>` line
        assert err.splitlines()[0].startswith("error: "), err
    after = _snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # nothing that existed was lost or altered
    new = {n for n in set(after) - set(before) if not n.startswith("cache/.locks/")}
    assert not new, new  # no campaign.json, no empty store, no -wal or -shm beside a refused one
    assert run.exists() == existed  # and no half-created run directory


def _readonly_prefix(path: Path) -> list[str]:
    """Run a command with `path` read-only: a private read-only bind mount as root (permission bits do
    not stop root), plain permissions otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path), "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()}")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path)]


def test_read_only_output_directory(tmp_path):
    run = tmp_path / "run"
    _own_store(run)
    before = _snapshot(tmp_path)
    cmd = [*_readonly_prefix(run), sys.executable, "-m", "quasar", *BASE, "--out", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is not writable" in errors[0] and "Read-only" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.sim
@pytest.mark.train
@pytest.mark.xdist_group("campaign-robust")
def test_full_disk_mid_campaign_keeps_what_was_stored_and_resumes(small_reference, tmp_path, capsys, monkeypatch):
    """The disk fills in the middle of the results (simulated, whatever the batch sizes: the first half
    of the first batch is written as a batch of its own, then every write fails with SQLite's 'database
    or disk is full'): one error line, the stored rows intact, and a rerun completes the campaign."""
    from quasar.cli import main

    _, reference = small_reference
    real_write, calls = ResultStore._write, []

    def full_after_first(self, sql, values):
        if not calls:
            calls.append(len(values) // 2)
            real_write(self, sql, values[: calls[0]])  # what still fit on the disk
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResultStore, "_write", full_after_first)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main([*BASE, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "database or disk is full" in errors[0] and "Traceback" not in err, err
    stored = result_rows(run)
    assert len(stored) == calls[0] > 0
    expected = reference[reference.fault_id.isin(stored.fault_id)].reset_index(drop=True)
    assert stored.equals(expected)
    monkeypatch.setattr(ResultStore, "_write", real_write)
    assert main([*BASE, "--out", str(run)]) == 0
    assert result_rows(run).equals(reference)


def test_unreachable_scheduler_is_named():
    from fault_campaigns.execution.dask_executor import connect
    from quasar.errors import QuasarError

    t0 = time.monotonic()
    with pytest.raises(QuasarError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:9'"):
        connect("tcp://127.0.0.1:9", timeout=2)
    assert time.monotonic() - t0 < 30
