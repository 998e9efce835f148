"""The store of a fault-rate campaign: one row per (design, rate, image, trial), in SQLite.

Same guarantees as the single-fault store (`results/store.py`, whose opening and checking it reuses):
one transaction per batch, WAL with full sync, a `meta` table tying the file to one configuration,
resume by skipping stored keys, a file of anything else refused untouched. Its rows live in their own
table, `rate_results`; each holds the inference's list of flips (JSON), so any row can be replayed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping

import pandas as pd

from fault_campaigns.results.store import ResultStore
from quasar.errors import QuasarError

RATE_SCHEMA_VERSION = 1
TABLE = "rate_results"
RATE_OUTCOMES = ("masked", "tolerable", "sdc", "critical", "hang", "crash")

RATE_COLUMNS: dict[str, str] = {
    "campaign_id": "TEXT NOT NULL",
    "protection": "TEXT NOT NULL",
    "rate": "REAL NOT NULL",
    "image": "INTEGER NOT NULL",
    "trial": "INTEGER NOT NULL",
    "dataset_index": "INTEGER NOT NULL",
    "label": "INTEGER NOT NULL",
    "golden_top1": "INTEGER NOT NULL",
    "faulty_top1": "INTEGER",
    "outcome": "TEXT NOT NULL",
    "flips": "INTEGER NOT NULL",
    "flips_by_kind": "TEXT NOT NULL",  # JSON {kind: count}
    "rtl_tile_runs": "INTEGER NOT NULL",
    "changed_layers": "INTEGER",  # layers whose output differed from the golden one
    "protection_events": "INTEGER",
    "golden_protection_events": "INTEGER",
    "sim_time_s": "REAL",
    "flip_list": "TEXT NOT NULL",  # JSON [[layer, tile, site, bit, cycle], ...]
}
KEY = ("protection", "rate", "image", "trial")


class RateStore(ResultStore):
    """SQLite-backed, append-only store of per-inference fault-rate results."""

    def _validate(self, db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", TABLE} <= tables:
            raise QuasarError(f"results store {self.path} holds tables {sorted(tables)}, not a QuaSAR fault-rate "
                              "store")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("rate_schema_version") != str(RATE_SCHEMA_VERSION):
            raise QuasarError(f"results store {self.path} has fault-rate schema version "
                              f"{meta.get('rate_schema_version')!r}, this QuaSAR writes {RATE_SCHEMA_VERSION}")
        if meta.get("campaign_id") != self.campaign_id:
            raise QuasarError(
                f"results store {self.path} belongs to fault-rate campaign {meta.get('campaign_id')!r}, not "
                f"{self.campaign_id!r}: use another --out directory or the same settings"
            )
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")]
        if cols != list(RATE_COLUMNS):
            raise QuasarError(f"results store {self.path} has columns {cols}, not those of fault-rate schema "
                              f"{RATE_SCHEMA_VERSION}")
        db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()

    def _create(self, config: Mapping[str, object]) -> None:
        cols = ", ".join(f"{k} {v}" for k, v in RATE_COLUMNS.items())
        with self.db:
            self.db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute(f"CREATE TABLE {TABLE} ({cols}, PRIMARY KEY ({', '.join(KEY)}))")
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("rate_schema_version", str(RATE_SCHEMA_VERSION)), ("campaign_id", self.campaign_id),
                ("config", json.dumps(config, sort_keys=True))])

    def done_keys(self, protection: str) -> set[tuple[float, int, int]]:  # type: ignore[override]
        rows = self.db.execute(f"SELECT rate, image, trial FROM {TABLE} WHERE protection = ?", (protection,))
        return {(float(r[0]), int(r[1]), int(r[2])) for r in rows}

    def add(self, rows: Iterable[Mapping[str, object]]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        for r in rows:
            if r["outcome"] not in RATE_OUTCOMES:
                raise ValueError(f"outcome must be one of {RATE_OUTCOMES}, got {r['outcome']!r}")
        names = list(RATE_COLUMNS)
        sql = f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        values = [tuple({**r, "campaign_id": self.campaign_id}.get(k) for k in names) for r in rows]
        try:
            self._write(sql, values)
        except sqlite3.OperationalError as exc:
            raise QuasarError(f"could not write results to {self.path}: {exc}; the results stored before are "
                              "intact, rerun the command to resume") from None
        return len(rows)

    def frame(self) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT * FROM {TABLE} ORDER BY protection, rate, image, trial", self.db)

    def __enter__(self) -> RateStore:
        return self
