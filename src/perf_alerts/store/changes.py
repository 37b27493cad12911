"""A cheap "has anything been committed to this store since?" marker, for caches of derived results.

SQLite's `PRAGMA data_version` changes on a connection whenever *another* connection commits to
the database (another thread's connection of this process, another process: the daemon, the CLI,
the crew tool), never for the connection's own commits. So a connection of its own that never
writes sees every commit, by anyone, as a new value; reading it costs a few microseconds and no
table is touched. That covers what a derived result can depend on: new samples (the samples
table is WITHOUT ROWID, so there is no cheap MAX(rowid)), a new evaluation (`kv['last_evaluation']`
and the alerts it wrote), acknowledgements, silences, retention.

Works for file stores (WAL) and for the shared in-memory stores of the tests.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

from perf_alerts.errors import StoreError

if TYPE_CHECKING:
    from perf_alerts.store.sqlite import Store


class ChangeMarker:
    """`marker()` is equal between two calls iff nothing was committed to the store in between."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        uri = getattr(self._store, "_uri", None)
        try:
            if uri is not None:
                return sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            return sqlite3.connect(str(self._store.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{self._store.path}: cannot open the SQLite store: {e}") from None

    def marker(self) -> int:
        with self._lock:
            if self._con is None:
                self._con = self._connect()
            return int(self._con.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


__all__ = ["ChangeMarker"]
