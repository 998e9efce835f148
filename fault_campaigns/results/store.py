"""The results store: one SQLite database per campaign directory, written as results come.

Every batch of results is one transaction (atomic: a killed campaign leaves whole rows or none), the
database runs in WAL mode with full sync, and a `meta` table ties the file to one campaign
configuration. Resuming reads the keys already stored and never writes a key twice (the primary key
makes a duplicate impossible). A file that is not a QuaSAR store, or belongs to another campaign, is
refused without being touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from quasar.errors import QuasarError

SCHEMA_VERSION = 2  # 2: live, stage, golden_rank (issue 19)
OUTCOMES = ("masked", "tolerable", "sdc", "critical", "hang", "crash")

COLUMNS: dict[str, str] = {
    "campaign_id": "TEXT NOT NULL",
    "protection": "TEXT NOT NULL",
    "fault_id": "INTEGER NOT NULL",
    "image": "INTEGER NOT NULL",
    "dataset_index": "INTEGER NOT NULL",
    "layer": "INTEGER NOT NULL",
    "layer_name": "TEXT NOT NULL",
    "tile": "INTEGER NOT NULL",
    "site": "TEXT NOT NULL",
    "kind": "TEXT NOT NULL",
    "bits": "TEXT NOT NULL",
    "bit": "INTEGER NOT NULL",
    "cycle": "INTEGER NOT NULL",
    "model": "TEXT NOT NULL",
    "label": "INTEGER NOT NULL",
    "golden_top1": "INTEGER NOT NULL",
    "faulty_top1": "INTEGER",
    "changed_outputs": "INTEGER",
    "protection_events": "INTEGER",
    "golden_protection_events": "INTEGER",
    "protection_fired": "INTEGER",
    "outcome": "TEXT NOT NULL",
    "sim_cycles": "INTEGER",
    "sim_time_s": "REAL",
    "live": "INTEGER",  # 1: the mapping says the fault can reach a real output; 0: idle (un-ACE)
    "stage": "TEXT",  # where the fault's error disappeared (results.stages.STAGES); NULL for hang/crash
    "golden_rank": "INTEGER",  # rank of the golden top-1 among the faulty logits (0: still top-1)
}


class ResultStore:
    """SQLite-backed, append-only store of per-fault results."""

    def __init__(self, path: str | Path, campaign_id: str, config: Mapping[str, object]):
        self.path = Path(path)
        self.campaign_id = campaign_id
        existing = self.path.exists() and self.path.stat().st_size > 0
        if existing:
            self._check_existing()  # read-only: a file that is refused is never touched
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if not existing:
                self._create(config)
        except sqlite3.DatabaseError as exc:
            raise QuasarError(f"results store {self.path} is not a readable QuaSAR store ({exc})") from None

    def _check_existing(self) -> None:
        with open(self.path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise QuasarError(f"results store {self.path} is not an SQLite database; refusing to touch it")
        # immutable: no lock or -shm/-wal files beside a file that may not be ours; but a -wal left by a
        # killed campaign holds committed rows, so then it is read the normal (read-only) way.
        wal = self.path.with_name(self.path.name + "-wal").exists()
        uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("" if wal else "&immutable=1")
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise QuasarError(f"results store {self.path} cannot be opened ({exc})") from None
        try:
            self._validate(db)
        except sqlite3.DatabaseError as exc:
            raise QuasarError(f"results store {self.path} is corrupt or not a QuaSAR store ({exc}); "
                              "refusing to touch it") from None
        finally:
            db.close()

    def _validate(self, db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "results"} <= tables:
            raise QuasarError(f"results store {self.path} holds tables {sorted(tables)}, not a QuaSAR store")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise QuasarError(
                f"results store {self.path} has schema version {meta.get('schema_version')!r}, "
                f"this QuaSAR writes {SCHEMA_VERSION} (version 2 added the idle, masking-stage and SDC-5 "
                "columns, which older rows lack): run the campaign into a new directory (--out) or delete this one"
            )
        if meta.get("campaign_id") != self.campaign_id:
            raise QuasarError(
                f"results store {self.path} belongs to campaign {meta.get('campaign_id')!r}, not "
                f"{self.campaign_id!r}: use another --out directory or the same settings"
            )
        cols = [r[1] for r in db.execute("PRAGMA table_info(results)")]
        if cols != list(COLUMNS):
            raise QuasarError(f"results store {self.path} has columns {cols}, not those of schema {SCHEMA_VERSION}")
        db.execute("SELECT COUNT(*) FROM results").fetchone()  # a damaged table fails here, not mid-campaign

    def _create(self, config: Mapping[str, object]) -> None:
        cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
        with self.db:
            self.db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute(f"CREATE TABLE results ({cols}, PRIMARY KEY (protection, fault_id))")
            self.db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("campaign_id", self.campaign_id),
                    ("config", json.dumps(config, sort_keys=True)),
                ],
            )

    def done_keys(self, protection: str) -> set[int]:
        rows = self.db.execute("SELECT fault_id FROM results WHERE protection = ?", (protection,))
        return {r[0] for r in rows}

    def add(self, rows: Iterable[Mapping[str, object]]) -> int:
        """Insert a batch atomically; returns the number of rows written."""
        rows = list(rows)
        if not rows:
            return 0
        for r in rows:
            if r["outcome"] not in OUTCOMES:
                raise ValueError(f"outcome must be one of {OUTCOMES}, got {r['outcome']!r}")
        names = list(COLUMNS)
        sql = f"INSERT INTO results ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        values = [tuple({**r, "campaign_id": self.campaign_id}.get(k) for k in names) for r in rows]
        try:
            self._write(sql, values)
        except sqlite3.OperationalError as exc:  # disk full, read-only, locked: the batch is rolled back whole
            raise QuasarError(f"could not write results to {self.path}: {exc}; the results stored before are "
                              "intact, rerun the command to resume") from None
        return len(rows)

    def _write(self, sql: str, values: list[tuple]) -> None:
        with self.db:
            self.db.executemany(sql, values)

    def frame(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM results ORDER BY protection, fault_id", self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
