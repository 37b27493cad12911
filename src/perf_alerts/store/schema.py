"""The store's tables, in the one dialect both backends read, and their versions.

`SCHEMA` is written for SQLite (TEXT / REAL / INTEGER columns, `id INTEGER PRIMARY KEY` for
row ids) using only what PostgreSQL also understands once `postgres_ddl` has mapped the types
(REAL to DOUBLE PRECISION, INTEGER to BIGINT, a row id to an identity column) and dropped
`WITHOUT ROWID`. So a table or column exists once, here, for both backends.

Versions (SQLite keeps the number in `PRAGMA user_version`, PostgreSQL in `schema_version`):
1. the first schema;
2. `message_refs` keyed by (receiver, fingerprint, message_id): every message that announced an
   alert, not only the last (an SQLite table rebuild; PostgreSQL stores start at 3);
3. replicas and leadership (`store/cluster.py`) and shared Discord rate limits
   (`store/ratelimits.py`); PostgreSQL supported.
Columns added to `SCHEMA` later are added to existing stores by both backends on open (an
additive migration); a change that is not additive gets a numbered step in the backend.
"""

from __future__ import annotations

import functools
import re

from perf_alerts.store.cluster import CLUSTER_SCHEMA
from perf_alerts.store.ratelimits import RATELIMIT_SCHEMA
from perf_alerts.store.rulestate import RULESTATE_SCHEMA

SCHEMA_VERSION = 3

SCHEMA = """
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
    "window"         TEXT,
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
    route        TEXT NOT NULL DEFAULT '{}',
    next_flush_at REAL,
    members      TEXT NOT NULL DEFAULT '[]'
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
    runs         INTEGER NOT NULL DEFAULT 0,
    -- the slot a process is running now (wall-clock lease): a slot runs once across replicas
    claimed_slot REAL,
    claimed_by   TEXT,
    claim_until  REAL
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
""" + CLUSTER_SCHEMA + RATELIMIT_SCHEMA + RULESTATE_SCHEMA


@functools.cache
def _reference() -> tuple[frozenset[tuple[str, str]], tuple[tuple[str, str, str], ...]]:
    """What SCHEMA creates, read once per process from an in-memory SQLite database: the
    (type, name) of every table and index, and (table, column, SQLite declaration) of every column."""
    import sqlite3

    ref = sqlite3.connect(":memory:")
    try:
        ref.executescript(SCHEMA)
        objects = frozenset((t, n) for t, n in ref.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'"))
        columns: list[tuple[str, str, str]] = []
        for (t,) in ref.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for _, name, ctype, notnull, default, _pk in ref.execute(f"PRAGMA table_info({t})").fetchall():
                decl = f'"{name}" {ctype}'
                if default is not None:
                    decl += f" DEFAULT {default}"
                if notnull and default is not None:
                    decl += " NOT NULL"
                columns.append((t, name, decl))
        return objects, tuple(columns)
    finally:
        ref.close()


def schema_objects() -> frozenset[tuple[str, str]]:
    """(type, name) of every table and index SCHEMA creates: a store lacking one is migrated."""
    return _reference()[0]


def missing_columns(have: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(table, column declaration) for every column `SCHEMA` has and a store lacks, given the
    columns it has per table (a table it lacks entirely is created by the DDL, not here).
    The declarations are SQLite's; `postgres_ddl` maps them for PostgreSQL."""
    return [(t, decl) for t, name, decl in _reference()[1] if t in have and name not in have[t]]


def postgres_ddl(ddl: str) -> str:
    """`ddl` (the SQLite-typed schema) for PostgreSQL: 64-bit integers and doubles (PostgreSQL's
    INTEGER and REAL are 32-bit), identity row ids, no `WITHOUT ROWID`."""
    out = re.sub(r"\bINTEGER PRIMARY KEY\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", ddl)
    out = re.sub(r"\bINTEGER\b", "BIGINT", out)
    out = re.sub(r"\bREAL\b", "DOUBLE PRECISION", out)
    return re.sub(r"\)\s*WITHOUT ROWID\s*;", ");", out)


__all__ = ["SCHEMA", "SCHEMA_VERSION", "missing_columns", "postgres_ddl", "schema_objects"]
