"""The SQLite store: series, samples, alerts and their history in one WAL file.

One file shared by the daemon, the CLI and the crew tool at once: WAL lets readers run
beside one writer, `busy_timeout` makes writers queue instead of failing, and state
changes happen inside `BEGIN IMMEDIATE` transactions so two evaluators never interleave.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from perf_alerts.errors import StoreError
from perf_alerts.model import Alert, AlertState, Sample, Severity, canonical_labels
from perf_alerts.store.cluster import CLUSTER_SCHEMA, ClusterQueries
from perf_alerts.store.management import ManagementQueries
from perf_alerts.store.outbox import OutboxQueries
from perf_alerts.store.ratelimits import RATELIMIT_SCHEMA, RateLimitQueries
from perf_alerts.store.retention import DOWNSAMPLED_KEY, RetentionQueries

ENV_DB = "PERF_ALERTS_DB"
DEFAULT_DB = "perf_alerts.db"

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id      INTEGER PRIMARY KEY,
    metric  TEXT NOT NULL,
    labels  TEXT NOT NULL,
    UNIQUE (metric, labels)
);
-- a raw sample is (series_id, ts, value) with n = 1 and lo/hi NULL; a downsampled row stands for
-- n raw samples: value is their mean (a gauge or event bucket) or the counter's value, lo/hi their
-- min and max. Sums (value * n), counts (n), means, minima and maxima stay exact (retention.py).
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL,
    ts        REAL NOT NULL,
    value     REAL NOT NULL,
    n         INTEGER NOT NULL DEFAULT 1,
    lo        REAL,
    hi        REAL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint      TEXT PRIMARY KEY,
    rule             TEXT NOT NULL,
    state            TEXT NOT NULL,
    severity         TEXT NOT NULL,
    labels           TEXT NOT NULL,
    annotations      TEXT NOT NULL,
    value            REAL,
    threshold        REAL,
    window           TEXT,
    active_since     REAL,
    started_at       REAL,
    resolved_at      REAL,
    last_eval_at     REAL,
    last_true_at     REAL,
    cleared_at       REAL,
    acknowledged_at  REAL,
    acknowledged_by  TEXT,
    escalation_level INTEGER NOT NULL DEFAULT 0,
    escalated_at     REAL,
    fire_count       INTEGER NOT NULL DEFAULT 0,
    operator         TEXT,
    fired_value      REAL,
    resolved_value   REAL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_events (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    ts          REAL NOT NULL,
    event       TEXT NOT NULL,
    value       REAL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS alert_events_fp ON alert_events (fingerprint, ts);
CREATE INDEX IF NOT EXISTS alert_events_ts ON alert_events (ts);
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  REAL NOT NULL,
    ends_at    REAL NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_groups (
    key          TEXT PRIMARY KEY,
    receiver     TEXT NOT NULL,
    group_labels TEXT NOT NULL,
    first_seen   REAL NOT NULL,
    last_sent_at REAL,
    sent_firing  TEXT NOT NULL DEFAULT '[]',
    route        TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS notifications (
    id              INTEGER PRIMARY KEY,
    receiver        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    created_at      REAL NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    message_ids     TEXT NOT NULL DEFAULT '[]',
    delivered_at    REAL,
    claimed_by      TEXT,
    claim_until     REAL,
    sent            TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS message_refs (
    receiver        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    notification_id INTEGER NOT NULL,
    PRIMARY KEY (receiver, fingerprint, message_id)
);
CREATE INDEX IF NOT EXISTS message_refs_message ON message_refs (receiver, message_id);
CREATE TABLE IF NOT EXISTS receiver_status (
    receiver    TEXT PRIMARY KEY,
    target_hash TEXT NOT NULL,
    disabled_at REAL NOT NULL,
    reason      TEXT NOT NULL
);
-- management: schedule runs, policy cooldowns, the audit log of automated actions
CREATE TABLE IF NOT EXISTS schedules (
    name         TEXT PRIMARY KEY,
    first_seen   REAL NOT NULL,
    last_run     REAL,
    last_slot    REAL,
    last_status  TEXT,
    last_result  TEXT,
    last_seconds REAL,
    runs         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS policy_state (
    name           TEXT PRIMARY KEY,
    last_matched   REAL,
    last_fired     REAL,
    fired_count    INTEGER NOT NULL DEFAULT 0,
    last_values    TEXT
);
CREATE TABLE IF NOT EXISTS action_audit (
    id            INTEGER PRIMARY KEY,
    policy        TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT,
    who           TEXT NOT NULL,
    at            REAL NOT NULL,
    dry_run       INTEGER NOT NULL,
    result        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}',
    metric        TEXT,
    before_value  REAL,
    after_value   REAL,
    verify_due_at REAL,
    verification  TEXT
);
CREATE INDEX IF NOT EXISTS action_audit_verify ON action_audit (verification, verify_due_at);
""" + CLUSTER_SCHEMA + RATELIMIT_SCHEMA

_ALERT_COLS = (
    "fingerprint", "rule", "state", "severity", "labels", "annotations", "value", "threshold", "window",
    "active_since", "started_at", "resolved_at", "last_eval_at", "last_true_at", "cleared_at", "acknowledged_at",
    "acknowledged_by", "escalation_level", "escalated_at", "fire_count", "operator", "fired_value", "resolved_value",
)


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


def resolve_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_DB) or DEFAULT_DB)


class Store(OutboxQueries, ManagementQueries, RetentionQueries, ClusterQueries, RateLimitQueries):
    """Thread-safe handle on the SQLite file (one connection per thread)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = resolve_db_path(path)
        # ":memory:" is one database shared by every thread of this Store (tests, notebooks)
        # (a fresh name each time: id() values are reused, and a reused name would share an old database)
        self._uri = (f"file:perf-alerts-{uuid.uuid4().hex}?mode=memory&cache=shared"
                     if str(self.path) == ":memory:" else None)
        self._local = threading.local()
        self._series_cache: dict[tuple[str, str], int] = {}
        self._cache_lock = threading.Lock()
        if self._uri is None and not self.path.parent.is_dir():
            raise StoreError(f"{self.path}: the directory {self.path.parent} does not exist")
        # executescript manages its own transaction; the DDL is idempotent (IF NOT EXISTS)
        self._migrate_v2()
        self.con.executescript(_SCHEMA)
        self._add_missing_columns()
        self.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections -------------------------------------------------------------------
    @property
    def con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            if self._uri is not None:
                con = sqlite3.connect(self._uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
                if getattr(self, "_keepalive", None) is None:
                    self._keepalive = con  # the shared in-memory database lives while one connection does
            else:
                try:
                    con = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
                    con.execute("PRAGMA schema_version").fetchone()  # fails here for an unreadable or non-SQLite file
                except sqlite3.DatabaseError as e:
                    raise StoreError(f"{self.path}: cannot open the SQLite store: {e}") from None
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA foreign_keys=ON")
            self._local.con = con
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    transaction = _write

    def _migrate_v2(self) -> None:
        """Version 2: `message_refs` keeps every message that announced an alert (not only the last),
        so a resolution turns all of them green. The old table's key cannot be altered in place."""
        con = self.con
        if int(con.execute("PRAGMA user_version").fetchone()[0]) >= 2:
            return
        with self._write() as c:
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
        ref = sqlite3.connect(":memory:")
        try:
            ref.executescript(_SCHEMA)
            tables = [r[0] for r in ref.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            with self._write() as con:
                for t in tables:
                    have = {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                    for _, name, ctype, notnull, default, _pk in ref.execute(f"PRAGMA table_info({t})"):
                        if name in have:
                            continue
                        decl = f"{name} {ctype}"
                        if default is not None:
                            decl += f" DEFAULT {default}"
                        if notnull and default is not None:
                            decl += " NOT NULL"
                        con.execute(f"ALTER TABLE {t} ADD COLUMN {decl}")
        finally:
            ref.close()

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

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
            with self._write() as con:
                con.executemany("INSERT OR IGNORE INTO series (metric, labels) VALUES (?, ?)", missing)
                for k in missing:
                    row = con.execute("SELECT id FROM series WHERE metric = ? AND labels = ?", k).fetchone()
                    out[k] = int(row[0])
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
        with self._write() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
            new = con.total_changes - before
            if new < len(rows):  # some instants were stored already: the later value wins, as before
                con.executemany("INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", rows)
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
    def _alert_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Alert:
        d = dict(zip(_ALERT_COLS, row))
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
        con: sqlite3.Connection | None = None,
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

    def save_alerts(self, alerts: Iterable[Alert], con: sqlite3.Connection) -> None:
        con.executemany(
            f"INSERT OR REPLACE INTO alerts ({', '.join(_ALERT_COLS)}) VALUES ({', '.join('?' * len(_ALERT_COLS))})",
            [self._alert_row(a) for a in alerts],
        )

    def delete_alerts(self, fingerprints: Iterable[str], con: sqlite3.Connection) -> None:
        con.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(f,) for f in fingerprints])

    def add_events(self, events: Iterable[tuple[str, str, str, float, str, float | None, str | None]],
                   con: sqlite3.Connection) -> None:
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

    def kv_set(self, key: str, value: Any, con: sqlite3.Connection | None = None) -> None:
        sql = "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)"
        if con is not None:
            con.execute(sql, (key, json.dumps(value)))
        else:
            with self._write() as c:
                c.execute(sql, (key, json.dumps(value)))
