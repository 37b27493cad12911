"""The outbox: every notification is written to the store before anything is sent.

States: pending (not tried yet) → delivered; or failed (will be retried at
`next_attempt_at`, exponential backoff with jitter) → … → dead (retry budget spent, or
the receiver is disabled), with the reason kept. A crash between "written" and "sent"
leaves the row pending, so the next process sends it: at-least-once delivery.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable

from perf_alerts.notify.redact import redact
from perf_alerts.store import Store
from perf_alerts.timeutil import iso

STATES = ("pending", "failed", "delivered", "dead")


@dataclass
class Notification:
    id: int
    receiver: str
    kind: str  # alerts, escalation, message, summary
    group_key: str
    created_at: float
    body: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    message_ids: list[str] = field(default_factory=list)
    delivered_at: float | None = None

    @property
    def fingerprints(self) -> list[str]:
        return [a["fingerprint"] for a in self.body.get("alerts", [])]

    def to_dict(self) -> dict[str, Any]:
        alerts = self.body.get("alerts", [])
        return {
            "id": self.id, "receiver": self.receiver, "kind": self.kind, "group_key": self.group_key,
            "state": self.state, "attempts": self.attempts, "alerts": self.fingerprints,
            "firing": sum(1 for a in alerts if a.get("state") == "firing"),
            "resolved": sum(1 for a in alerts if a.get("state") == "resolved"),
            "title": self.body.get("title"),
            "message_ids": self.message_ids, "created_at": iso(self.created_at),
            "next_attempt_at": iso(self.next_attempt_at) if self.state in ("pending", "failed") else None,
            "delivered_at": iso(self.delivered_at), "last_error": self.last_error,
        }


_COLS = "id, receiver, kind, group_key, created_at, body, state, attempts, next_attempt_at, last_error, message_ids, delivered_at"


def _row(r: tuple[Any, ...]) -> Notification:
    return Notification(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], json.loads(r[10]), r[11])


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(self, con: sqlite3.Connection, receiver: str, kind: str, group_key: str, body: dict[str, Any],
                at: float) -> int:
        cur = con.execute(
            "INSERT INTO notifications (receiver, kind, group_key, created_at, body, state, attempts, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?)",
            (receiver, kind, group_key, at, json.dumps(body, default=str), at),
        )
        return int(cur.lastrowid or 0)

    def due(self, now: float, receivers: Iterable[str] | None = None) -> list[Notification]:
        rows = self.store.con.execute(
            f"SELECT {_COLS} FROM notifications WHERE state IN ('pending', 'failed') AND next_attempt_at <= ? ORDER BY id",
            (now,),
        ).fetchall()
        out = [_row(r) for r in rows]
        if receivers is not None:
            keep = set(receivers)
            out = [n for n in out if n.receiver in keep]
        return out

    def next_due_at(self) -> float | None:
        row = self.store.con.execute(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE state IN ('pending', 'failed')").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def open_count(self) -> int:
        return int(self.store.con.execute(
            "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'failed')").fetchone()[0])

    def get(self, nid: int) -> Notification | None:
        r = self.store.con.execute(f"SELECT {_COLS} FROM notifications WHERE id = ?", (nid,)).fetchone()
        return _row(r) if r else None

    def recent(self, state: str | None = None, limit: int = 100) -> list[Notification]:
        if state:
            rows = self.store.con.execute(
                f"SELECT {_COLS} FROM notifications WHERE state = ? ORDER BY id DESC LIMIT ?", (state, limit)).fetchall()
        else:
            rows = self.store.con.execute(f"SELECT {_COLS} FROM notifications ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_row(r) for r in rows]

    # -- outcomes ------------------------------------------------------------------------
    def delivered(self, n: Notification, at: float, message_ids: list[str]) -> None:
        with self.store.transaction() as con:
            con.execute(
                "UPDATE notifications SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                "message_ids = ?, last_error = NULL WHERE id = ? AND state IN ('pending', 'failed')",
                (at, json.dumps(n.message_ids + message_ids), n.id),
            )

    def retry(self, n: Notification, at: float, error: str, delay: float, count_attempt: bool = True,
              max_attempts: int = 8) -> str:
        """Schedule another try; past the retry budget the notification is dead. Returns the new state."""
        attempts = n.attempts + (1 if count_attempt else 0)
        if attempts >= max_attempts:
            self.dead(n, at, f"gave up after {attempts} attempts; last error: {error}", attempts)
            return "dead"
        with self.store.transaction() as con:
            con.execute(
                "UPDATE notifications SET state = 'failed', attempts = ?, next_attempt_at = ?, last_error = ? "
                "WHERE id = ?",
                (attempts, at + delay, redact(error), n.id),
            )
        return "failed"

    def dead(self, n: Notification, at: float, reason: str, attempts: int | None = None) -> None:
        with self.store.transaction() as con:
            con.execute(
                "UPDATE notifications SET state = 'dead', attempts = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                (n.attempts + 1 if attempts is None else attempts, redact(reason), at, n.id),
            )

    def add_message_ids(self, n: Notification, message_ids: list[str]) -> None:
        n.message_ids = n.message_ids + message_ids
        with self.store.transaction() as con:
            con.execute("UPDATE notifications SET message_ids = ? WHERE id = ?", (json.dumps(n.message_ids), n.id))
