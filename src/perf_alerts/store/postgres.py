"""The PostgreSQL backend: one database shared by several daemons on several machines.

Selected by a URL (`--db postgresql://user@host/db`, `PERF_ALERTS_DB`); psycopg 3 with a
connection pool (`psycopg-pool`), imported only when a PostgreSQL URL is used, so `import
perf_alerts` and the SQLite default stay free of it.

- Exclusive transactions (the default of `write()`) take one transaction-scoped advisory lock
  first, so the evaluator and the management code see the same one-writer-at-a-time world as
  on SQLite, across every replica. Sample inserts and outbox claims skip it: inserts are
  idempotent (`ON CONFLICT`), claims lock rows with `FOR UPDATE SKIP LOCKED`.
- A lost connection (a restart, a failover, a network blip) is retried with backoff for up to
  `retry_for` seconds: reads, and a transaction's start. A transaction cut in its middle is
  rolled back by the server and reported as `StoreUnavailable`; the store's idempotent writes
  (sample inserts, outbox outcomes) retry as a whole (`Store._retrying`), and the daemon's
  cycle re-runs an evaluation it lost, so no sample batch or outbox entry is lost.
- Errors name the host and database, never the password.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

from perf_alerts.errors import StoreError, StoreUnavailable
from perf_alerts.store.backend import redact_url
from perf_alerts.store.schema import SCHEMA, SCHEMA_VERSION, missing_columns, postgres_ddl

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

log = logging.getLogger("perf_alerts.store")

T = TypeVar("T")

ENV_POOL = "PERF_ALERTS_DB_POOL"  # connections per process (default 20)

# pg_advisory_xact_lock keys: b"perf" and b"pmig" as integers
WRITE_LOCK = 0x70657266
MIGRATE_LOCK = 0x706D6967

# version 3 is the first with a PostgreSQL backend (versions 1-2 were SQLite-only steps)
_PG_STEPS = {3: "PostgreSQL schema: series, samples, alerts, outbox, management, replicas, rate limits"}


# A replica frozen or cut off inside an exclusive transaction would hold the write lock, and with
# it every other replica's evaluation and delivery, for as long as its session lives: the server
# ends a session idle inside a transaction after 30 s (none of ours waits that long between
# two statements), and asks a silent client's TCP peer after 10 s (every 5 s, 3 times).
_SESSION_OPTIONS = ("-c idle_in_transaction_session_timeout=30s -c tcp_keepalives_idle=10 "
                    "-c tcp_keepalives_interval=5 -c tcp_keepalives_count=3")


@functools.lru_cache(maxsize=2048)
def _pg(sql: str) -> str:
    """`?` parameters to psycopg's `%s` (a literal % doubled). The store's SQL has no `?` or `%`
    inside string literals."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Result:
    """Rows fetched in full, so the pooled connection is back in the pool before they are read."""

    __slots__ = ("_rows", "rowcount", "_i")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._i = 0

    def fetchone(self) -> Any:
        if self._i >= len(self._rows):
            return None
        self._i += 1
        return self._rows[self._i - 1]

    def fetchall(self) -> list[Any]:
        rows, self._i = self._rows[self._i:], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _fetch(cur: "psycopg.Cursor[Any]") -> _Result:
    return _Result(cur.fetchall() if cur.description is not None else [], cur.rowcount)


class _Tx:
    """A connection inside one transaction, speaking the store's `?` SQL."""

    __slots__ = ("_conn",)

    def __init__(self, conn: "psycopg.Connection[Any]") -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        return self._conn.execute(_pg(sql), parameters or None)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any:
        rows = list(seq_of_parameters)
        cur = self._conn.cursor()
        if rows:
            cur.executemany(_pg(sql), rows)
        return cur


class _Reads:
    """`con` of a PostgreSQL store: each statement on a pooled connection, retried when the
    connection was lost; rows are fetched before the connection goes back."""

    __slots__ = ("_b",)

    def __init__(self, backend: "PostgresBackend") -> None:
        self._b = backend

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Result:
        q = _pg(sql)
        return self._b.retrying(lambda conn: _fetch(conn.execute(q, parameters or None)))

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> _Result:
        rows = list(seq_of_parameters)

        def run(conn: "psycopg.Connection[Any]") -> _Result:
            with conn.transaction():
                cur = conn.cursor()
                if rows:
                    cur.executemany(_pg(sql), rows)
                return _Result([], cur.rowcount)

        return self._b.retrying(run)


def _conninfo(url: str) -> dict[str, Any]:
    """libpq's own reading of the URL (host, port, dbname, password …); {} if it cannot read it."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return dict(conninfo_to_dict(url))
    except Exception:
        return {}


def _where(info: dict[str, Any]) -> str:
    """host:port/database, for messages (never the URL itself: it may hold the password)."""
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or 5432)
    db = str(info.get("dbname") or "(default database)")
    return f"{host}:{port}/{db}"


def _secrets(url: str, info: dict[str, Any]) -> list[str]:
    """Every spelling of the password a message could carry: as given (percent-encoded or not)
    and as libpq decoded it; longest first, so a longer spelling is masked whole."""
    found = {str(info["password"])} if info.get("password") else set()
    m = re.search(r"://[^/?#]*?:(.*)@", url)  # user:PASSWORD@ (greedy: a password may hold @ ? # /)
    if m:
        found.add(m.group(1))
    found.update(re.findall(r"(?i)password=([^&\s]*)", url))
    return sorted((x for x in found if x), key=len, reverse=True)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int | None = None, connect_timeout: float = 5.0,
                 retry_for: float = 30.0) -> None:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool
        except ImportError:
            raise StoreError("a PostgreSQL store needs psycopg 3: pip install 'perf-alerts[postgres]'") from None
        if pool_size is None:  # the daemon's worker threads and HTTP handlers each may hold one
            try:
                pool_size = int(os.environ.get(ENV_POOL) or 20)
            except ValueError:
                raise StoreError(f"{ENV_POOL}: not a number of connections") from None
        self.url = url
        info = _conninfo(url)
        self._secrets = _secrets(url, info)
        self.display = self.scrub(redact_url(url))
        self.where = self.scrub(_where(info))
        self.retry_for = retry_for
        self._closed = False
        self._warned = threading.Event()
        conn = self._connect_once(connect_timeout)
        try:
            self._migrate(conn)
        finally:
            conn.close()
        self._pool_size = max(2, pool_size)
        self._connect_timeout = connect_timeout
        self._pool: psycopg_pool.ConnectionPool[Any] = self._make_pool()
        self._recover_lock = threading.Lock()
        self._last_probe = 0.0
        self._down_since: float | None = None
        # the pool's own messages (each failed reconnect, each discarded connection) would flood a
        # daemon's log during an outage; this backend says once what happened and when it ended
        logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
        self._reads = _Reads(self)

    def _make_pool(self) -> "psycopg_pool.ConnectionPool[Any]":
        import psycopg_pool

        return psycopg_pool.ConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=True, timeout=self.retry_for, name="perf-alerts",
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self._connect_timeout)),
                    "application_name": "perf-alerts", "options": _SESSION_OPTIONS})

    def _recover(self, e: BaseException) -> bool:
        """After a failure: note the outage; when the pool itself could not give a connection, see
        (at most once a second) whether the server answers again and, if so, start a fresh pool:
        the pool's own reconnect attempts back off exponentially (1, 2, 4 … 32 s after a minute
        down), which kept a recovered server unused for up to half a minute."""
        import psycopg
        import psycopg_pool

        if self._down_since is None:
            self._down_since = time.monotonic()
        self._note_retry(e)
        if not isinstance(e, psycopg_pool.PoolTimeout) or self._closed:
            return False
        with self._recover_lock:
            now = time.monotonic()
            if now - self._last_probe < 1.0:
                return False
            self._last_probe = now
            try:
                probe = psycopg.connect(self.url, autocommit=True, connect_timeout=2, application_name="perf-alerts")
            except psycopg.Error:
                return False
            probe.close()
            old, self._pool = self._pool, self._make_pool()
            threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()
            return True

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("PostgreSQL at %s: reachable again after %.1f s", self.where,
                        time.monotonic() - self._down_since)
            self._down_since = None
            self._warned.clear()

    # -- errors ---------------------------------------------------------------------------
    def scrub(self, text: str) -> str:
        """`text` with every spelling of the password masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _reason(self, e: BaseException) -> str:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        text = re.sub(r"^connection failed: ", "", text)
        return self.scrub(text).strip() or type(e).__name__

    def unavailable(self, e: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"PostgreSQL at {self.where}: {self._reason(e)}")

    def _connect_once(self, timeout: float) -> "psycopg.Connection[Any]":
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(timeout)),
                                   application_name="perf-alerts")
        except psycopg.Error as e:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self.where}: {self._reason(e)}") from None
        except ValueError as e:  # a malformed URL or option
            raise StoreError(f"{self.display}: not a usable PostgreSQL URL: {self.scrub(str(e))}") from None

    # -- connections ----------------------------------------------------------------------
    @property
    def con(self) -> _Reads:
        return self._reads

    def _retried(self, attempt: Callable[[float], T]) -> T:
        """`attempt(timeout)` until it succeeds: a lost connection (or a pool that cannot give one)
        is retried with backoff for `retry_for` s; `timeout` is how long it may wait for a connection."""
        import psycopg
        import psycopg_pool

        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                return attempt(min(2.0, max(0.1, deadline - time.monotonic())))
            except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout,
                    psycopg_pool.PoolTimeout) as e:
                fresh = self._recover(e)  # a fresh pool for a server that is back: one more try
                if self._closed or (time.monotonic() + delay >= deadline and not fresh):
                    raise self.unavailable(e) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def retrying(self, fn: Callable[["psycopg.Connection[Any]"], T]) -> T:
        """`fn` on a pooled connection, again on a fresh one when the connection was lost."""

        def attempt(timeout: float) -> T:
            with self._pool.connection(timeout=timeout) as conn:
                return fn(conn)

        out = self._retried(attempt)
        self._recovered()
        return out

    def _note_retry(self, e: BaseException) -> None:
        if not self._warned.is_set():
            self._warned.set()
            log.warning("PostgreSQL at %s: %s; retrying for up to %.0f s", self.where, self._reason(e), self.retry_for)

    @contextmanager
    def write(self, exclusive: bool = True) -> Iterator[_Tx]:
        import psycopg

        def begin(timeout: float) -> "psycopg.Connection[Any]":  # a connection, BEGIN and the lock
            conn = self._pool.getconn(timeout=timeout)
            try:
                conn.execute("BEGIN")
                if exclusive:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            except BaseException:
                self._putconn(conn)
                raise
            return conn

        conn = self._retried(begin)
        try:
            try:
                yield _Tx(conn)
                conn.execute("COMMIT")
            except BaseException:
                if not conn.closed:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        pass
                raise
        except (psycopg.OperationalError, psycopg.errors.IdleInTransactionSessionTimeout) as e:
            raise self.unavailable(e) from None
        finally:
            self._putconn(conn)
        self._recovered()

    def _putconn(self, conn: "psycopg.Connection[Any]") -> None:
        try:
            self._pool.putconn(conn)
        except Exception:  # a pool closed meanwhile
            conn.close()

    def marker(self) -> int:
        """The server's current snapshot (`xmin:xmax:in-progress xids`): it moves when a writing
        transaction starts or ends, and only then (a reader computing beside a write in progress
        sees that write's xid, so the marker moves again when it commits). Writes of any replica
        count; so do writes to other databases of the same server, which only cost a
        recomputation. (The WAL position moved every 15 s on an idle server.)"""
        row = self.con.execute("SELECT pg_current_snapshot()::text").fetchone()
        return int.from_bytes(hashlib.blake2b(str(row[0]).encode(), digest_size=8).digest(), "big")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    # -- migrations -----------------------------------------------------------------------
    def _migrate(self, conn: "psycopg.Connection[Any]") -> None:
        """Create or upgrade the schema, once, under an advisory lock (several daemons may start
        at the same moment): the tables of `SCHEMA` (IF NOT EXISTS), columns added since, and
        the numbered steps this store has not had."""
        import psycopg

        ddl = postgres_ddl(SCHEMA)
        digest = hashlib.sha256(ddl.encode()).hexdigest()[:16]
        try:
            # the common case, a store already at this schema: one read, no DDL and no lock (DDL on
            # every open would take share locks on busy tables, and needs CREATE rights that a
            # role with only DML rights, say for `perf-alerts status`, does not have)
            try:
                if self._schema_state(conn) == (SCHEMA_VERSION, digest):
                    return
            except psycopg.errors.UndefinedColumn:  # a store from before the DDL hash
                pass
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                             "applied_at DOUBLE PRECISION NOT NULL, description TEXT NOT NULL, ddl_hash TEXT)")
                conn.execute("ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS ddl_hash TEXT")
                current, _ = self._schema_state(conn) or (0, None)
                if current > SCHEMA_VERSION:
                    raise StoreError(f"PostgreSQL at {self.where}: the store is at schema version {current}, "
                                     f"this perf-alerts knows up to {SCHEMA_VERSION}: upgrade perf-alerts")
                conn.execute(ddl)
                self._add_missing_columns(conn)
                for v, what in sorted(_PG_STEPS.items()):
                    if v > current:
                        conn.execute("INSERT INTO schema_version (version, applied_at, description) "
                                     "VALUES (%s, %s, %s)", (v, time.time(), what))
                conn.execute("UPDATE schema_version SET ddl_hash = %s WHERE version = "
                             "(SELECT MAX(version) FROM schema_version)", (digest,))
        except psycopg.OperationalError as e:
            raise self.unavailable(e) from None
        except psycopg.errors.InsufficientPrivilege as e:
            raise StoreError(f"PostgreSQL at {self.where}: cannot create the store's tables: "
                             f"{self._reason(e)}") from None

    @staticmethod
    def _schema_state(conn: "psycopg.Connection[Any]") -> tuple[int, str | None] | None:
        """(version, hash of the DDL it was created with) of the store, None before the first one."""
        reg = conn.execute("SELECT to_regclass('schema_version')").fetchone()
        if reg is None or reg[0] is None:
            return None
        row = conn.execute("SELECT version, ddl_hash FROM schema_version ORDER BY version DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), row[1])

    @staticmethod
    def _add_missing_columns(conn: "psycopg.Connection[Any]") -> None:
        have: dict[str, set[str]] = {}
        for t, c in conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = current_schema()"):
            have.setdefault(t, set()).add(c)
        for table, decl in missing_columns(have):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {postgres_ddl(decl)}")


__all__ = ["PostgresBackend"]
