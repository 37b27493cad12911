"""The store: shared by processes and threads, retention and downsampling (on SQLite and on
PostgreSQL: `make_store`/`store_url`), and the SQLite file's own behaviour (WAL, `:memory:`,
migrations of old files, unusable paths)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf_alerts.model import Sample
from perf_alerts.store import Store

T0 = 1_800_000_000.0


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    assert store.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_concurrent_writers(make_store: Any, store_url: str) -> None:
    store = make_store()
    code = f"""
from perf_alerts.model import Sample
from perf_alerts.store import Store
import sys
s = Store({store_url!r})
w = int(sys.argv[1])
for k in range(20):
    s.insert_samples([Sample("m", {{"writer": str(w)}}, {T0} + k * 60 + i, float(i)) for i in range(50)])
s.close()
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)]) for w in range(3)]
    threads = [threading.Thread(target=lambda w=w: store.insert_samples(
        [Sample("m", {"thread": str(w)}, T0 + i, 1.0) for i in range(500)])) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(60) == 0 for p in procs)
    assert store.sample_count() == 3 * 20 * 50 + 3 * 500
    assert len(store.list_series("m")) == 6


def test_memory_store_is_shared_across_threads() -> None:
    store = Store(":memory:")
    store.insert_samples([Sample("m", {}, T0, 1.0)])
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(store.sample_count()))
    t.start()
    t.join()
    assert seen == [1]


def test_retention_and_downsampling(make_store: Any) -> None:
    store = make_store()
    day = 86400.0
    ts = T0 - np.arange(0, 40 * day, 60.0)  # 40 days of one sample per minute
    store.insert_samples(Sample("m", {}, float(t), float(i % 10)) for i, t in enumerate(ts))
    res = store.apply_retention(T0, retention=30 * day, downsample_after=7 * day, step=300.0)
    assert res.deleted > 0 and res.downsampled > 0
    old = store.query([store.list_series("m")[0].id], T0 - 30 * day, T0 - 8 * day)
    assert old.ts.min() > T0 - 30 * day
    assert np.all(np.diff(old.ts) >= 300.0 - 1e-6)  # averaged into 5-minute buckets
    assert abs(old.value.mean() - 4.5) < 0.2  # averages keep the level
    recent = store.query([store.list_series("m")[0].id], T0 - day, T0)
    assert len(recent) == 1440  # the last week keeps every raw sample


def test_old_database_gets_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE alerts (fingerprint TEXT PRIMARY KEY, rule TEXT NOT NULL, state TEXT NOT NULL, "
                "severity TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL, value REAL, threshold REAL, "
                "window TEXT, active_since REAL, started_at REAL, resolved_at REAL, last_eval_at REAL, "
                "last_true_at REAL, acknowledged_at REAL, acknowledged_by TEXT, "
                "escalation_level INTEGER NOT NULL DEFAULT 0, fire_count INTEGER NOT NULL DEFAULT 0)")
    con.execute("INSERT INTO alerts (fingerprint, rule, state, severity, labels, annotations) "
                "VALUES ('f1', 'R', 'firing', 'warning', '{}', '{}')")
    con.commit()
    con.close()
    store = Store(db)
    [a] = store.load_alerts()
    assert a.fingerprint == "f1" and a.cleared_at is None and a.escalated_at is None


def test_unusable_store_paths_are_named_in_the_error(tmp_path: Path) -> None:
    import pytest

    from perf_alerts.store import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "x.db")
    assert not (tmp_path / "missing").exists()  # nothing is created as a side effect
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    with pytest.raises(StoreError, match=r"junk\.db: cannot open the SQLite store"):
        Store(junk)


def test_series_ids_do_not_depend_on_the_hash_seed(new_store_url: Any) -> None:
    """The same samples get the same series ids in any process (ids were in set order before)."""
    import os
    import subprocess
    import sys

    code = ("import sys; from perf_alerts.store import Store; from perf_alerts.model import Sample\n"
            "s = Store(sys.argv[1]); s.insert_samples([Sample('m', {'agent': f'a{i}'}, 1.0, 1.0) for i in range(40)])\n"
            "print([x.labels['agent'] for x in s.list_series()]); s.close()")
    outs = []
    for seed in ("1", "2", "3"):
        p = subprocess.run([sys.executable, "-c", code, new_store_url()], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONHASHSEED": seed})
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout)
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].strip() == str([f"a{i}" for i in range(40)])


def test_a_write_lock_held_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    # another process holding SQLite's write lock longer than busy_timeout: the store is busy
    # (StoreUnavailable: HTTP 503, one CLI line), not an internal error with a traceback
    import sqlite3

    from perf_alerts.errors import StoreUnavailable
    from perf_alerts.store.sqlite import SQLiteBackend

    path = tmp_path / "s.db"
    Store(path).close()
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        SQLiteBackend.busy_timeout_ms = 200
        try:
            s = Store(path)  # opening a store at the current schema only reads: no wait for the lock
        finally:
            SQLiteBackend.busy_timeout_ms = 30_000
        with pytest.raises(StoreUnavailable, match="the store is busy"):
            s.insert_samples([Sample("m", {}, 1_800_000_000.0, 1.0)])
        holder.execute("ROLLBACK")
        assert s.insert_samples([Sample("m", {}, 1_800_000_000.0, 1.0)]) == 1  # usable again
    finally:
        holder.close()
