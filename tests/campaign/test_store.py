"""Results store: atomic batches, resume keys, no duplicates, refusal of foreign files."""

import sqlite3

import pytest

from fault_campaigns.results.store import COLUMNS, ResultStore
from quasar.errors import QuasarError


def row(fault_id, protection="none", outcome="masked"):
    r = {k: 0 for k in COLUMNS}
    r.update(protection=protection, fault_id=fault_id, outcome=outcome, layer_name="conv1", site="pe_0_0.a_reg",
             kind="pe_activation", bits="3", model="flip")
    return r


def test_store_round_trip_and_resume(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path, "c1", {"bits": 8}) as s:
        s.add([row(0), row(1, outcome="sdc"), row(0, "range")])
    with ResultStore(path, "c1", {"bits": 8}) as s:
        assert s.done_keys("none") == {0, 1}
        assert s.done_keys("range") == {0}
        df = s.frame()
    assert list(df.outcome) == ["masked", "sdc", "masked"]
    assert set(df.campaign_id) == {"c1"}


def test_duplicate_key_rolls_back_the_whole_batch(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", "c1", {}) as s:
        s.add([row(0)])
        with pytest.raises(sqlite3.IntegrityError):
            s.add([row(1), row(0)])
        assert s.done_keys("none") == {0}


def test_unknown_outcome_is_refused(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", "c1", {}) as s, pytest.raises(ValueError, match="'weird'"):
        s.add([row(0, outcome="weird")])


def test_foreign_campaign_and_foreign_files_are_refused_untouched(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path, "c1", {}) as s:
        s.add([row(0)])
    before = path.read_bytes()
    with pytest.raises(QuasarError, match="belongs to campaign 'c1'"):
        ResultStore(path, "c2", {})
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all")
    with pytest.raises(QuasarError, match="not an SQLite database"):
        ResultStore(junk, "c1", {})
    assert junk.read_bytes() == b"this is not a database at all"
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(QuasarError, match="not a QuaSAR store"):
        ResultStore(other, "c1", {})
    assert path.read_bytes()[:16] == before[:16]
