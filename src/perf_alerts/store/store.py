"""The store: series, samples, alerts and their history, shared by every process at once.

The daemon(s), the CLI and the crew tool use one store side by side: a SQLite file (the
embedded default, zero set-up) or a PostgreSQL database (`postgresql://…`, for several
daemons on several machines). The queries here and in the mixins are written once for both
(`store/backend.py` says how); state changes happen inside exclusive transactions, so two
evaluators never interleave on either backend.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from perf_alerts import selfmetrics
from perf_alerts.errors import StoreError, StoreUnavailable
from perf_alerts.model import Alert, AlertState, Sample, Severity, canonical_labels
from perf_alerts.store.backend import Backend, Connection, is_postgres_url
from perf_alerts.store.cluster import ClusterQueries
from perf_alerts.store.management import ManagementQueries
from perf_alerts.store.outbox import OutboxQueries
from perf_alerts.store.ratelimits import RateLimitQueries
from perf_alerts.store.retention import DOWNSAMPLED_KEY, RetentionQueries
from perf_alerts.store.rulestate import RuleStateQueries
from perf_alerts.store.sqlite import SQLiteBackend

T = TypeVar("T")


class LeadershipLost(StoreError):
    """A leader-only write was refused: this replica's lease ran out or another replica took it.

    Leadership is checked before each leader-only step, but a step can outlive the lease (a
    pause, a store outage); the check inside the write makes sure such a step changes nothing."""


@dataclass(frozen=True)
class Fence:
    """What a leader-only write must find in the store: `holder` holds `lease` at `term`, live
    at `now()` (the lease's own clock: wall time)."""

    lease: str
    holder: str
    term: int
    now: Callable[[], float]


# the fence of the leader-only step running in this context (a daemon sets it around each step;
# asyncio.to_thread carries it into the worker thread)
_FENCE: ContextVar[Fence | None] = ContextVar("perf_alerts_fence", default=None)

ENV_DB = "PERF_ALERTS_DB"
DEFAULT_DB = "perf_alerts.db"

_ALERT_COLS = (
    "fingerprint", "rule", "state", "severity", "labels", "annotations", "value", "threshold", '"window"',
    "active_since", "started_at", "resolved_at", "last_eval_at", "last_true_at", "cleared_at", "acknowledged_at",
    "acknowledged_by", "escalation_level", "escalated_at", "fire_count", "operator", "fired_value", "resolved_value",
)

_ALERT_NAMES = tuple(c.strip('"') for c in _ALERT_COLS)
_ALERT_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _ALERT_COLS[1:])


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    id: int
    metric: str
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Samples of many series, sorted by (series_id, ts): the unit analytics work on.

    Rows of a downsampled period each stand for `n` raw samples (`value` their mean, or a
    counter's value; `lo`/`hi` their min and max). `n`, `lo` and `hi` are None when every row
    is a raw sample (always so for the recent, never thinned, past). Counts and sums over a
    block are `count` and `total` (or `analytics.stats.block_aggregate`), never `len()` and
    `value.sum()`, which count rows.
    """

    series_id: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    n: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """Raw samples per row (1 for raw rows)."""
        return np.ones(self.ts.shape[0]) if self.n is None else self.n.astype(np.float64)

    @property
    def count(self) -> int:
        """How many raw samples the block stands for (e.g. calls, for an event metric)."""
        return int(self.ts.shape[0]) if self.n is None else int(self.n.sum())

    @property
    def total(self) -> float:
        """The sum of the raw samples (e.g. cost in USD, failures)."""
        return float(self.value.sum()) if self.n is None else float((self.value * self.n).sum())

    def _range(self, sid: int) -> tuple[int, int]:
        return (int(np.searchsorted(self.series_id, sid, "left")), int(np.searchsorted(self.series_id, sid, "right")))

    def of(self, sid: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._range(sid)
        return self.ts[lo:hi], self.value[lo:hi]

    def series(self, sid: int) -> "SampleBlock":
        """One series' rows, with their weights."""
        a, b = self._range(sid)
        return self.slice(slice(a, b))

    def slice(self, sel: Any) -> "SampleBlock":
        """The rows `sel` (a slice or a boolean mask) picks, weights included."""
        def pick(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[sel]

        return SampleBlock(self.series_id[sel], self.ts[sel], self.value[sel], pick(self.n), pick(self.lo),
                           pick(self.hi))


def resolve_db_target(explicit: str | os.PathLike[str] | None = None) -> str | Path:
    """The store to open: `explicit`, else `PERF_ALERTS_DB`, else ./perf_alerts.db. A
    postgresql:// URL stays a string; anything else is a SQLite file path."""
    target = os.fspath(explicit) if explicit else (os.environ.get(ENV_DB) or DEFAULT_DB)
    if is_postgres_url(target):
        return target
    scheme = re.match(r"^([A-Za-z][\w+.-]*)://", target)
    if scheme:  # a URL, but not one of ours: never a file name (nor echoed: it may hold a password)
        raise StoreError(f"unsupported store URL scheme {scheme.group(1)!r}: use postgresql://user@host/db "
                         "or a SQLite file path")
    if re.match(r"^\s*(host|dbname|user|port|password|hostaddr|service)\s*=", target):
        raise StoreError("--db looks like a libpq key=value string: use a postgresql://user@host:port/db URL")
    return Path(target)


def resolve_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file `resolve_db_target` names (callers that only handle files)."""
    target = resolve_db_target(explicit)
    return target if isinstance(target, Path) else Path(DEFAULT_DB)


class Store(OutboxQueries, ManagementQueries, RetentionQueries, ClusterQueries, RateLimitQueries, RuleStateQueries):
    """Thread-safe handle on the store, SQLite or PostgreSQL (`Store("postgresql://…")`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        target = resolve_db_target(path)
        self._backend: Backend
        if isinstance(target, str):
            from perf_alerts.store.postgres import PostgresBackend

            self._backend = PostgresBackend(target)
            self.path: Path | None = None
        else:
            self._backend = SQLiteBackend(target)
            self.path = target
        self.dialect = self._backend.dialect
        self.display = self._backend.display  # the path, or the URL without its password
        self._series_cache: dict[tuple[str, str], int] = {}
        self._cache_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------
    @property
    def con(self) -> Connection:
        """For reads (each statement sees the latest commits)."""
        return self._backend.con

    def _write(self, exclusive: bool = True) -> AbstractContextManager[Connection]:
        """A write transaction; exclusive ones are serialised across every process (see backend.py)."""
        return self._exclusive() if exclusive else self._backend.write(False)

    def transaction(self) -> AbstractContextManager[Connection]:
        """An exclusive write transaction, for callers that change state in several steps."""
        return self._exclusive()

    @contextmanager
    def _exclusive(self) -> Iterator[Connection]:
        with self._backend.write(True) as con:
            fence = _FENCE.get()
            if fence is not None:  # a leader-only step: its writes land only while the lease is its own
                row = con.execute("SELECT holder, term, expires_at FROM leases WHERE name = ?",
                                  (fence.lease,)).fetchone()
                if row is None or row[0] != fence.holder or int(row[1]) != fence.term or \
                        float(row[2]) <= fence.now():
                    raise LeadershipLost(f"this replica ({fence.holder}) no longer holds the {fence.lease} lease "
                                         f"(term {fence.term}); its leader-only write was not made")
            yield con

    @contextmanager
    def fenced(self, fence: Fence | None) -> Iterator[None]:
        """Run leader-only work: every exclusive write inside checks, under the write lock, that
        `fence` still holds (else `LeadershipLost`), so a replica that lost its lease mid-step
        (paused, cut off) changes nothing the new leader relies on. `None`: no check."""
        token = _FENCE.set(fence)
        try:
            yield
        finally:
            _FENCE.reset(token)

    def change_marker(self) -> int:
        """Equal between two calls iff (as far as the backend can tell) nothing was committed between."""
        return self._backend.marker()

    def _retrying(self, fn: Callable[[], T], retry_for: float = 30.0) -> T:
        """`fn` (one whole idempotent transaction) again when the server went away in its middle
        (PostgreSQL restarted): the server rolled it back, so running it again loses nothing."""
        deadline = time.monotonic() + retry_for
        delay = 0.1
        while True:
            try:
                return fn()
            except StoreUnavailable:
                if self.dialect != "postgresql" or time.monotonic() + delay >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._backend.close()

    # -- series and samples ------------------------------------------------------------
    def series_ids(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Ids for (metric, canonical labels) keys, creating missing series."""
        out: dict[tuple[str, str], int] = {}
        missing: list[tuple[str, str]] = []
        with self._cache_lock:
            for k in keys:
                sid = self._series_cache.get(k)
                if sid is None:
                    missing.append(k)
                else:
                    out[k] = sid
        if missing:
            def create() -> None:
                # not exclusive: a series another process creates meanwhile is skipped, then read
                # in the order the samples name them (ids must not depend on anything else); two
                # processes creating the same new series in other orders may deadlock on PostgreSQL:
                # the server breaks it at once and the transaction is run again (_retrying)
                with self._write(exclusive=False) as con:
                    con.executemany("INSERT INTO series (metric, labels) VALUES (?, ?) "
                                    "ON CONFLICT (metric, labels) DO NOTHING", missing)
                    for k in missing:
                        row = con.execute("SELECT id FROM series WHERE metric = ? AND labels = ?", k).fetchone()
                        out[k] = int(row[0])

            self._retrying(create)
            with self._cache_lock:
                for k in missing:
                    self._series_cache[k] = out[k]
        return out

    def insert_rows(self, rows: Sequence[tuple[int, float, float]]) -> int:
        """(series_id, ts, value) rows in one transaction; a later value for the same instant wins."""
        return sum(self.insert_rows_counted(rows))

    def insert_rows_counted(self, rows: Sequence[tuple[int, float, float]]) -> tuple[int, int]:
        """`insert_rows`, returning (new, replaced): how many rows were new instants and how many
        replaced a stored sample of the same series and time (re-ingesting a file replaces them all)."""
        if not rows:
            return 0, 0
        if self.dialect == "postgresql":
            counted = self._retrying(lambda: self._insert_rows_pg(rows))
            selfmetrics.inc("samples_ingested", len(rows))  # this process's ingest, whatever the path (GET /metrics)
            return counted
        with self._write() as con:
            assert isinstance(con, sqlite3.Connection)
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
            new = con.total_changes - before
            if new < len(rows):  # some instants were stored already: the later value wins, as before
                con.executemany("INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
        selfmetrics.inc("samples_ingested", len(rows))
        return new, len(rows) - new

    def _insert_rows_pg(self, rows: Sequence[tuple[int, float, float]]) -> tuple[int, int]:
        """One statement over three arrays (not a round trip per row); not exclusive: inserts of
        other processes go on beside it. An instant given twice keeps its last value, as on SQLite."""
        ordered = sorted(rows, key=lambda r: (int(r[0]), float(r[1])))  # one lock order for every process
        sid = [int(r[0]) for r in ordered]
        ts = [float(r[1]) for r in ordered]
        val = [float(r[2]) for r in ordered]
        with self._write(exclusive=False) as con:
            new = con.execute("INSERT INTO samples (series_id, ts, value) SELECT * FROM unnest(?::bigint[], "
                              "?::float8[], ?::float8[]) ON CONFLICT (series_id, ts) DO NOTHING",
                              (sid, ts, val)).rowcount
            if new < len(rows):
                last: dict[tuple[int, float], float] = {}
                for k in zip(sid, ts, val):
                    last[(k[0], k[1])] = k[2]
                con.execute("INSERT INTO samples (series_id, ts, value) SELECT * FROM unnest(?::bigint[], "
                            "?::float8[], ?::float8[]) ON CONFLICT (series_id, ts) DO UPDATE SET value = "
                            "excluded.value, n = 1, lo = NULL, hi = NULL",
                            ([k[0] for k in last], [k[1] for k in last], list(last.values())))
        return new, len(rows) - new

    def insert_samples(self, samples: Iterable[Sample]) -> int:
        samples = list(samples)
        # new series get ids in the order they first appear (a set's order would depend on the hash
        # seed, so the same data would get other ids in another process)
        keys = list(dict.fromkeys((s.metric, canonical_labels(s.labels)) for s in samples))
        ids = self.series_ids(keys)
        rows = [(ids[(s.metric, canonical_labels(s.labels))], s.ts, s.value) for s in samples]
        return self.insert_rows(rows)

    def list_series(self, metric: str | None = None) -> list[SeriesInfo]:
        if metric is None:
            cur = self.con.execute("SELECT id, metric, labels FROM series ORDER BY id")
        else:
            cur = self.con.execute("SELECT id, metric, labels FROM series WHERE metric = ? ORDER BY id", (metric,))
        return [SeriesInfo(int(i), m, json.loads(lab)) for i, m, lab in cur]

    def metric_names(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT metric FROM series ORDER BY metric")]

    def downsampled_until(self) -> float | None:
        """No row at or after this time stands for more than one sample (None: nothing was ever thinned)."""
        v = self.kv_get(DOWNSAMPLED_KEY)
        return None if v is None else float(v)

    def query(self, series_ids: Sequence[int], start: float, end: float) -> SampleBlock:
        """Samples with start < ts <= end (Prometheus' left-open window), sorted by series then time.

        A window that reaches into the downsampled past also reads each row's weight (`n`, `lo`,
        `hi`); a recent one (every evaluation) reads the three raw columns only."""
        if len(series_ids) == 0:
            e = np.empty(0)
            return SampleBlock(np.empty(0, dtype=np.int64), e, e.copy())
        con = self.con
        thinned = self.downsampled_until()
        full = thinned is not None and start < thinned
        cols = "series_id, ts, value, n, COALESCE(lo, value), COALESCE(hi, value)" if full else "series_id, ts, value"
        ids = sorted(set(int(i) for i in series_ids))
        parts: list[np.ndarray] = []
        # chunk to stay under SQLite's variable limit; each chunk uses the (series_id, ts) key
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            q = (
                f"SELECT {cols} FROM samples WHERE series_id IN (%s) AND ts > ? AND ts <= ? "
                "ORDER BY series_id, ts" % ",".join("?" * len(chunk))
            )
            rows = con.execute(q, (*chunk, start, end)).fetchall()
            if rows:
                parts.append(np.array(rows, dtype=np.float64))
        if not parts:
            e = np.empty(0)
            return SampleBlock(np.empty(0, dtype=np.int64), e, e.copy())
        arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
        sid, ts, val = arr[:, 0].astype(np.int64), np.ascontiguousarray(arr[:, 1]), np.ascontiguousarray(arr[:, 2])
        if full:
            n = arr[:, 3].astype(np.int64)
            if bool((n != 1).any()):
                return SampleBlock(sid, ts, val, n, np.ascontiguousarray(arr[:, 4]), np.ascontiguousarray(arr[:, 5]))
        return SampleBlock(sid, ts, val)

    def last_timestamps(self, series_ids: Sequence[int], before: float) -> dict[int, float]:
        """Each series' last sample time at or before `before` (series without one are left out).

        One index seek per series on the (series_id, ts) key — a correlated subquery that
        SQLite plans as `SEARCH samples USING PRIMARY KEY (series_id=? AND ts<?)` and stops at
        the first row — so the cost does not grow with history. (`MAX(ts) … WHERE series_id IN
        (…) GROUP BY series_id` read every sample up to `before`: 2.2 s at 30 days × 1,000 series.)
        """
        out: dict[int, float] = {}
        ids = sorted(set(int(i) for i in series_ids))
        if self.dialect == "postgresql" and ids:
            q = ("SELECT ids.id, (SELECT ts FROM samples WHERE series_id = ids.id AND ts <= ? ORDER BY ts DESC "
                 "LIMIT 1) FROM unnest(?::bigint[]) AS ids(id)")
            return {int(sid): float(ts) for sid, ts in self.con.execute(q, (before, ids)) if ts is not None}
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            q = ("WITH ids(id) AS (VALUES %s) SELECT id, (SELECT ts FROM samples WHERE series_id = ids.id "
                 "AND ts <= ? ORDER BY ts DESC LIMIT 1) FROM ids" % ",".join(["(?)"] * len(chunk)))
            for sid, ts in self.con.execute(q, (*chunk, before)):
                if ts is not None:
                    out[int(sid)] = float(ts)
        return out

    def time_range(self) -> tuple[float, float] | None:
        row = self.con.execute("SELECT MIN(ts), MAX(ts) FROM samples").fetchone()
        if not row or row[0] is None:
            return None
        return float(row[0]), float(row[1])

    def sample_count(self) -> int:
        return int(self.con.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    # -- alerts ------------------------------------------------------------------------
    @staticmethod
    def _alert_from_row(row: Sequence[Any]) -> Alert:
        d = dict(zip(_ALERT_NAMES, row))
        return Alert(
            fingerprint=d["fingerprint"],
            rule=d["rule"],
            state=AlertState(d["state"]),
            severity=Severity(d["severity"]),
            labels=json.loads(d["labels"]),
            annotations=json.loads(d["annotations"]),
            value=d["value"],
            threshold=d["threshold"],
            window=d["window"],
            active_since=d["active_since"],
            started_at=d["started_at"],
            resolved_at=d["resolved_at"],
            last_eval_at=d["last_eval_at"],
            last_true_at=d["last_true_at"],
            cleared_at=d["cleared_at"],
            acknowledged_at=d["acknowledged_at"],
            acknowledged_by=d["acknowledged_by"],
            escalation_level=int(d["escalation_level"]),
            escalated_at=d["escalated_at"],
            fire_count=int(d["fire_count"]),
            operator=d["operator"],
            fired_value=d["fired_value"],
            resolved_value=d["resolved_value"],
        )

    @staticmethod
    def _alert_row(a: Alert) -> tuple[Any, ...]:
        return (
            a.fingerprint, a.rule, a.state.value, a.severity.value,
            json.dumps(a.labels, sort_keys=True), json.dumps(a.annotations, sort_keys=True),
            a.value, a.threshold, a.window, a.active_since, a.started_at, a.resolved_at, a.last_eval_at,
            a.last_true_at, a.cleared_at, a.acknowledged_at, a.acknowledged_by, a.escalation_level, a.escalated_at, a.fire_count,
            a.operator, a.fired_value, a.resolved_value,
        )

    def load_alerts(
        self,
        states: Iterable[AlertState | str] | None = None,
        rules: Iterable[str] | None = None,
        con: Connection | None = None,
        fingerprints: Iterable[str] | None = None,
    ) -> list[Alert]:
        con = con or self.con
        sql = f"SELECT {', '.join(_ALERT_COLS)} FROM alerts"
        where: list[str] = []
        args: list[Any] = []
        if states is not None:
            st = [s.value if isinstance(s, AlertState) else str(s) for s in states]
            where.append(f"state IN ({','.join('?' * len(st))})")
            args += st
        if rules is not None:
            rl = list(rules)
            where.append(f"rule IN ({','.join('?' * len(rl))})")
            args += rl
        if fingerprints is not None:
            fps = list(fingerprints)
            if not fps:
                return []
            where.append(f"fingerprint IN ({','.join('?' * len(fps))})")
            args += fps
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._alert_from_row(r) for r in con.execute(sql, args)]

    def alert_counts(self) -> list[tuple[str, str, bool, int]]:
        """(state, severity, acknowledged, count) over every stored alert: what `GET /metrics` shows."""
        rows = self.con.execute(
            "SELECT state, severity, acknowledged_at IS NOT NULL, COUNT(*) FROM alerts "
            "GROUP BY state, severity, acknowledged_at IS NOT NULL").fetchall()
        return [(str(r[0]), str(r[1]), bool(r[2]), int(r[3])) for r in rows]

    def get_alert(self, fingerprint: str) -> Alert | None:
        rows = self.con.execute(
            f"SELECT {', '.join(_ALERT_COLS)} FROM alerts WHERE fingerprint = ?", (fingerprint,)
        ).fetchall()
        return self._alert_from_row(rows[0]) if rows else None

    def find_alerts(self, prefix: str) -> list[Alert]:
        rows = self.con.execute(
            f"SELECT {', '.join(_ALERT_COLS)} FROM alerts WHERE substr(fingerprint, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        return [self._alert_from_row(r) for r in rows]

    def save_alerts(self, alerts: Iterable[Alert], con: Connection) -> None:
        con.executemany(
            f"INSERT INTO alerts ({', '.join(_ALERT_COLS)}) VALUES ({', '.join('?' * len(_ALERT_COLS))}) "
            f"ON CONFLICT (fingerprint) DO UPDATE SET {_ALERT_UPDATE}",
            [self._alert_row(a) for a in alerts],
        )

    def delete_alerts(self, fingerprints: Iterable[str], con: Connection) -> None:
        con.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(f,) for f in fingerprints])

    def add_events(self, events: Iterable[tuple[str, str, str, float, str, float | None, str | None]],
                   con: Connection) -> None:
        """(fingerprint, rule, severity, ts, event, value, detail) rows."""
        con.executemany(
            "INSERT INTO alert_events (fingerprint, rule, severity, ts, event, value, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            list(events),
        )

    def events(self, since: float | None = None, until: float | None = None,
               fingerprint: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT fingerprint, rule, severity, ts, event, value, detail FROM alert_events WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts <= ?"
            args.append(until)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            args.append(fingerprint)
        sql += " ORDER BY ts, id"
        keys = ("fingerprint", "rule", "severity", "ts", "event", "value", "detail")
        return [dict(zip(keys, r)) for r in self.con.execute(sql, args)]

    # -- small key/value state (schedules, detector state, ...) --------------------------
    def kv_get(self, key: str) -> Any:
        row = self.con.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def kv_set(self, key: str, value: Any, con: Connection | None = None) -> None:
        sql = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        if con is not None:
            con.execute(sql, (key, json.dumps(value)))
        else:
            with self._write(exclusive=False) as c:  # one statement: it needs no one else to wait
                c.execute(sql, (key, json.dumps(value)))
