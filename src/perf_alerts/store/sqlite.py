"""The SQLite backend: one WAL file shared by the daemon, the CLI and the crew tool at once.

WAL lets readers run beside one writer, `busy_timeout` makes writers queue instead of failing,
and every write transaction takes the write lock up front (`BEGIN IMMEDIATE`), so two
evaluators never interleave and a read-then-write never deadlocks on a lock upgrade. One
connection per thread. Zero set-up: the embedded default.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from perf_alerts.errors import StoreError, StoreUnavailable
from perf_alerts.store.schema import SCHEMA, SCHEMA_VERSION, missing_columns, schema_objects


class SQLiteBackend:
    dialect = "sqlite"
    busy_timeout_ms = 30_000  # how long a writer queues for the write lock before the store is "busy"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.display = str(self.path)
        # ":memory:" is one database shared by every thread of this Store (tests, notebooks)
        # (a fresh name each time: id() values are reused, and a reused name would share an old database)
        self._uri = (f"file:perf-alerts-{uuid.uuid4().hex}?mode=memory&cache=shared"
                     if str(self.path) == ":memory:" else None)
        self._local = threading.local()
        self._keepalive: sqlite3.Connection | None = None
        self._marker_con: sqlite3.Connection | None = None
        self._marker_lock = threading.Lock()
        # every thread's connection, so close() closes them all (not only the calling thread's)
        self._all: list[sqlite3.Connection] = []
        if self._uri is None and not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: the directory {self.path.parent} does not exist")
        self._migrate()

    # -- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._uri is not None:
            return sqlite3.connect(self._uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA schema_version").fetchone()  # fails here for an unreadable or non-SQLite file
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: cannot open the SQLite store: {e}") from None
        return con

    @property
    def con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            if self._uri is not None and self._keepalive is None:
                self._keepalive = con  # the shared in-memory database lives while one connection does
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
            with self._marker_lock:
                self._all.append(con)
        return con

    @contextmanager
    def write(self, exclusive: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (SQLite has only one writer, so
        every transaction is exclusive whatever `exclusive` says)."""
        con = self.con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if (busy := self._busy(e)) is None:
                raise
            raise busy from None
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    def marker(self) -> int:
        """`PRAGMA data_version` of a connection of its own that never writes: it moves whenever
        another connection (any thread, any process) commits; reading it touches no table."""
        with self._marker_lock:
            if self._marker_con is None:
                try:
                    self._marker_con = self._connect()
                except sqlite3.Error as e:
                    raise StoreError(f"{self.path}: cannot open the SQLite store: {e}") from None
            return int(self._marker_con.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        """Close every thread's connection (a thread that uses the store afterwards opens a new one)."""
        self._local = threading.local()
        with self._marker_lock:
            for con in self._all:
                con.close()
            self._all.clear()
            if self._marker_con is not None:
                self._marker_con.close()
                self._marker_con = None

    # -- migrations ---------------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION. A store already there is only read: opening it never
        queues behind another process's write lock (a long ingest, a retention run)."""
        try:
            if (int(self.con.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
                    and schema_objects() <= self._objects() and not self._missing()):
                return
            self._migrate_v2()
            # executescript manages its own transaction; the DDL is idempotent (IF NOT EXISTS)
            self.con.executescript(SCHEMA)
            self._add_missing_columns()
            self.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.OperationalError as e:
            if (busy := self._busy(e, " while this one migrates it")) is None:
                raise
            raise busy from None

    def _busy(self, e: sqlite3.OperationalError, doing: str = "") -> StoreUnavailable | None:
        """busy_timeout ran out (another process held the write lock that long): the store is
        unavailable for now (HTTP 503, one line in the CLI, a warning in the daemon), not broken.
        None for any other OperationalError (the caller re-raises it)."""
        if "locked" not in str(e) and "busy" not in str(e):
            return None
        return StoreUnavailable(f"{self.display}: the store is busy: another process has held its write lock "
                                f"for over {self.busy_timeout_ms / 1000:g} s{doing} ({e}); try again")

    def _objects(self) -> set[tuple[str, str]]:
        return {(t, n) for t, n in self.con.execute("SELECT type, name FROM sqlite_master "
                                                    "WHERE type IN ('table', 'index')").fetchall()}

    def _missing(self, con: sqlite3.Connection | None = None) -> list[tuple[str, str]]:
        """Columns (table, declaration) that SCHEMA has and this file lacks."""
        con = con or self.con
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        have = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})").fetchall()} for t in tables}
        return missing_columns(have)

    def _migrate_v2(self) -> None:
        """Version 2: `message_refs` keeps every message that announced an alert (not only the last),
        so a resolution turns all of them green. The old table's key cannot be altered in place."""
        con = self.con
        if int(con.execute("PRAGMA user_version").fetchone()[0]) >= 2:
            return
        with self.write() as c:
            pk = [r[1] for r in c.execute("PRAGMA table_info(message_refs)") if r[5]]
            if pk and "message_id" not in pk:
                c.execute("ALTER TABLE message_refs RENAME TO message_refs_v1")
                c.execute("CREATE TABLE message_refs (receiver TEXT NOT NULL, fingerprint TEXT NOT NULL, "
                          "message_id TEXT NOT NULL, notification_id INTEGER NOT NULL, "
                          "PRIMARY KEY (receiver, fingerprint, message_id))")
                c.execute("INSERT INTO message_refs SELECT receiver, fingerprint, message_id, notification_id "
                          "FROM message_refs_v1")
                c.execute("DROP TABLE message_refs_v1")

    def _add_missing_columns(self) -> None:
        """Additive migration: columns that a newer schema has and this file lacks are added."""
        if not self._missing():
            return
        with self.write() as con:
            for table, decl in self._missing(con):
                con.execute(f"ALTER TABLE {table} ADD COLUMN {decl}")


__all__ = ["SQLiteBackend"]
