"""SQL for the notification outbox, Discord message references and receiver status.

A mixin of `Store` (see `store/store.py`). The outbox is the one place where several
processes (the daemon, `perf-alerts deliver`, a cron `evaluate`, a crew tool) compete for
the same rows, so every statement here that changes a notification's state says which
state (and which owner) it expects: a sender *claims* due rows with a lease
(`UPDATE … RETURNING`, atomic under SQLite's write lock), and its later updates only land
while it still holds that claim. A sender that lost its claim (its lease ran out and
another process took the row) changes nothing.

Leases are measured in wall-clock seconds (`time.time()`), not in the system's injected
clock: they protect against a *process* dying, which happens in real time even when the
demo or `evaluate --at` runs the alert clock elsewhere.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from perf_alerts.timeutil import iso

if TYPE_CHECKING:
    from perf_alerts.store.backend import Connection

T = TypeVar("T")

OPEN_STATES = ("pending", "failed")
STATES = ("pending", "sending", "failed", "delivered", "dead", "dropped")

_COLS = ("id, receiver, kind, group_key, created_at, body, state, attempts, next_attempt_at, last_error, "
         "message_ids, delivered_at, claimed_by, claim_until, sent")


@dataclass
class Notification:
    """One notification in the outbox: what to say (`body`), to whom, and where its delivery stands."""

    id: int
    receiver: str
    kind: str  # alerts, escalation, message, executive_summary
    group_key: str
    created_at: float
    body: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    message_ids: list[str] = field(default_factory=list)
    delivered_at: float | None = None
    sent: list[str] = field(default_factory=list)  # fingerprints already shown in an accepted message
    claimed_by: str | None = None  # the sender holding it while `sending` (host:pid:id)
    claim_until: float | None = None  # wall-clock end of that sender's lease

    @property
    def state_text(self) -> str:
        """The state as a person reads it: who is sending, and when a dead sender's claim runs out."""
        if self.state != "sending" or self.claim_until is None:
            return self.state
        left = self.claim_until - time.time()
        who = self.claimed_by or "?"
        if left > 0:
            return f"sending (claimed by {who}; taken over in {left:.0f}s if that process died)"
        return f"sending (claimed by {who}, whose lease ran out: the next sender takes it over)"

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
            "claimed_by": self.claimed_by if self.state == "sending" else None,
            "claim_until": iso(self.claim_until) if self.state == "sending" else None,
        }


def _row(r: Sequence[Any]) -> Notification:
    return Notification(int(r[0]), r[1], r[2], r[3], float(r[4]), json.loads(r[5]), r[6], int(r[7]), float(r[8]),
                        r[9], json.loads(r[10] or "[]"), r[11], json.loads(r[14] or "[]"), r[12], r[13])


@dataclass(frozen=True)
class ReceiverStatus:
    receiver: str
    target_hash: str
    disabled_at: float
    reason: str


class OutboxQueries:
    """Mixed into `Store`; uses `self.con` and `self.transaction()`."""

    if TYPE_CHECKING:  # provided by Store
        dialect: str

        @property
        def con(self) -> Connection: ...

        def transaction(self) -> AbstractContextManager[Connection]: ...

        def _write(self, exclusive: bool = True) -> AbstractContextManager[Connection]: ...

        def _retrying(self, fn: Callable[[], T], retry_for: float = 30.0) -> T: ...

    # -- writing new rows ------------------------------------------------------------------
    def outbox_insert(self, con: Connection, receiver: str, kind: str, group_key: str,
                      body: dict[str, Any], at: float) -> int:
        """A new pending notification, inside the caller's transaction (planned with the state that caused it)."""
        cur = con.execute(
            "INSERT INTO notifications (receiver, kind, group_key, created_at, body, state, attempts, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?) RETURNING id",
            (receiver, kind, group_key, at, json.dumps(body, default=str), at),
        )
        return int(cur.fetchone()[0])

    # -- claiming ----------------------------------------------------------------------------
    def outbox_claim(self, owner: str, now: float, lease: float, limit: int = 500) -> list[Notification]:
        """Atomically take up to `limit` due rows for `owner` until `wall now + lease`.

        Due: pending or failed with `next_attempt_at <= now`, or `sending` under a lease that
        has run out (its sender died mid-delivery). One statement under the write lock, so two
        processes never claim the same row.
        """
        # PostgreSQL: row locks, so replicas claim side by side and skip each other's rows;
        # SQLite: one writer at a time, so the statement is atomic as it is
        skip = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""

        def claim() -> list[Any]:
            wall = time.time()
            with self._write(exclusive=False) as con:
                return list(con.execute(
                    # taking over from a sender that died mid-delivery counts as an attempt, so a
                    # notification that kills every sender that tries it ends up dead, not retried forever
                    f"UPDATE notifications SET attempts = attempts + CASE WHEN state = 'sending' THEN 1 ELSE 0 END, "
                    f"state = 'sending', claimed_by = ?, claim_until = ? "
                    f"WHERE id IN (SELECT id FROM notifications n WHERE "
                    f"((state IN ('pending', 'failed') AND next_attempt_at <= ?) OR (state = 'sending' AND claim_until <= ?))"
                    # a group's notifications go out in order: not while an older one of the same
                    # group is being sent by another sender, or waits for its retry (a "resolved"
                    # must not overtake its "firing"; the older ones due now are claimed here too)
                    f" AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.receiver = n.receiver "
                    f"AND o.group_key = n.group_key AND o.id < n.id AND ((o.state = 'sending' AND "
                    f"o.claim_until > ? AND o.claimed_by <> ?) OR (o.state IN ('pending', 'failed') "
                    f"AND o.next_attempt_at > ?)))"
                    f" ORDER BY id LIMIT ?{skip}) RETURNING {_COLS}",
                    (owner, wall + lease, now, wall, wall, owner, now, limit),
                ).fetchall())

        rows = self._retrying(claim)
        return sorted((_row(r) for r in rows), key=lambda x: x.id)

    def outbox_renew(self, owner: str, ids: Sequence[int], lease: float) -> set[int]:
        """Extend this owner's lease on rows it still holds; returns the ids it still holds
        (the others were taken over after its lease ran out: it must not send them)."""
        if not ids:
            return set()
        def renew() -> list[Any]:
            with self._write(exclusive=False) as con:
                return list(con.execute(
                    f"UPDATE notifications SET claim_until = ? WHERE state = 'sending' AND claimed_by = ? "
                    f"AND id IN ({','.join('?' * len(ids))}) RETURNING id", (time.time() + lease, owner, *ids)).fetchall())

        return {int(r[0]) for r in self._retrying(renew)}

    # -- outcomes (each guarded by the claim) --------------------------------------------------
    def outbox_progress(self, owner: str, accepted: Sequence[tuple[int, str | None, Sequence[str]]],
                        done: Sequence[int], at: float,
                        refs: Sequence[tuple[str, str, str, int]] = (),
                        resolved_shown: Sequence[tuple[str, str]] = ()) -> list[int]:
        """What one accepted Discord message (or edit) achieved, in one transaction.

        `accepted`: (notification id, message id or None, fingerprints now shown) — appended to
        the row's `message_ids` and `sent`; `done`: ids now fully delivered; `refs`:
        (receiver, fingerprint, message id, notification id) to remember for the resolved edit;
        `resolved_shown`: (receiver, fingerprint) whose resolution is now in the channel — their
        references are dropped, so the next incident of the same alert edits only its own messages.
        Returns the ids this owner no longer held (another process took them over).
        """
        # claims run beside exclusive transactions on PostgreSQL: lock the row read-then-written
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""

        def progress() -> list[int]:
            lost: list[int] = []
            # not exclusive: every statement is guarded by the claim (and the row read is locked), so
            # one replica's outcomes never wait behind another's evaluation
            with self._write(exclusive=False) as con:
                for nid, mid, fps in sorted(accepted, key=lambda a: a[0]):
                    row = con.execute("SELECT message_ids, sent FROM notifications WHERE id = ? AND state = 'sending' "
                                      f"AND claimed_by = ?{lock}", (nid, owner)).fetchone()
                    if row is None:
                        lost.append(nid)
                        continue
                    mids = json.loads(row[0] or "[]") + ([mid] if mid else [])
                    sent = json.loads(row[1] or "[]")
                    sent += [fp for fp in fps if fp not in sent]
                    con.execute("UPDATE notifications SET message_ids = ?, sent = ? WHERE id = ?",
                                (json.dumps(mids), json.dumps(sent), nid))
                for nid in sorted(done):
                    cur = con.execute(
                        "UPDATE notifications SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, "
                        "last_error = NULL, claimed_by = NULL, claim_until = NULL "
                        "WHERE id = ? AND state = 'sending' AND claimed_by = ?", (at, nid, owner))
                    if cur.rowcount == 0 and nid not in lost:
                        lost.append(nid)
                if refs:
                    con.executemany("INSERT INTO message_refs (receiver, fingerprint, message_id, notification_id) "
                                    "VALUES (?, ?, ?, ?) ON CONFLICT (receiver, fingerprint, message_id) "
                                    "DO UPDATE SET notification_id = excluded.notification_id", list(refs))
                if resolved_shown:
                    con.executemany("DELETE FROM message_refs WHERE receiver = ? AND fingerprint = ?", list(resolved_shown))
            return lost

        return self._retrying(progress)

    def outbox_retry(self, owner: str, nid: int, attempts: int, next_at: float, error: str) -> bool:
        """Back to `failed`, due again at `next_at`; False when `owner` no longer held the row."""
        return self._settle(owner, nid, "failed", attempts, next_at, error)

    def outbox_dead(self, owner: str, nid: int, attempts: int, at: float, reason: str) -> bool:
        """Given up (`dead`) at `at`; False when `owner` no longer held the row."""
        return self._settle(owner, nid, "dead", attempts, at, reason)

    def outbox_dropped(self, owner: str, nid: int, attempts: int, at: float, reason: str) -> bool:
        """Dropped on purpose (`dropped`: routed to a blackhole receiver) at `at`; not a failure."""
        return self._settle(owner, nid, "dropped", attempts, at, reason)

    def _settle(self, owner: str, nid: int, state: str, attempts: int, at: float, error: str) -> bool:
        def run() -> bool:
            with self._write(exclusive=False) as con:  # one statement, guarded by the claim
                cur = con.execute(
                    "UPDATE notifications SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
                    "claimed_by = NULL, claim_until = NULL WHERE id = ? AND state = 'sending' AND claimed_by = ?",
                    (state, attempts, at, error, nid, owner))
            return bool(cur.rowcount == 1)

        return self._retrying(run)

    # -- reading -------------------------------------------------------------------------------
    def outbox_get(self, nid: int) -> Notification | None:
        r = self.con.execute(f"SELECT {_COLS} FROM notifications WHERE id = ?", (nid,)).fetchone()
        return _row(r) if r else None

    def outbox_recent(self, state: str | None = None, limit: int = 100) -> list[Notification]:
        if state:
            rows = self.con.execute(f"SELECT {_COLS} FROM notifications WHERE state = ? ORDER BY id DESC LIMIT ?",
                                    (state, limit)).fetchall()
        else:
            rows = self.con.execute(f"SELECT {_COLS} FROM notifications ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_row(r) for r in rows]

    def outbox_next_due_at(self) -> float | None:
        """When the next open row comes due (claimed rows whose sender may die count at their lease's end)."""
        row = self.con.execute(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE state IN ('pending', 'failed')").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def outbox_next_lease_end(self) -> float | None:
        """Wall-clock time at which the earliest live lease runs out (a crashed sender's rows become claimable)."""
        row = self.con.execute("SELECT MIN(claim_until) FROM notifications WHERE state = 'sending'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def outbox_open_count(self) -> int:
        return int(self.con.execute(
            "SELECT COUNT(*) FROM notifications WHERE state IN ('pending', 'failed', 'sending')").fetchone()[0])

    def outbox_state_counts(self) -> list[tuple[str, str, int]]:
        """(receiver, state, count) of every notification row: the outbox depth `GET /metrics` shows."""
        rows = self.con.execute(
            "SELECT receiver, state, COUNT(*) FROM notifications GROUP BY receiver, state ORDER BY receiver, state").fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    # -- Discord message references ---------------------------------------------------------------
    def message_ids_for(self, receiver: str, fingerprint: str) -> list[str]:
        """Every message that announced this alert on this receiver (first post, repeats, escalations)."""
        rows = self.con.execute("SELECT message_id FROM message_refs WHERE receiver = ? AND fingerprint = ? "
                                "ORDER BY notification_id, message_id", (receiver, fingerprint)).fetchall()
        return [str(r[0]) for r in rows]

    def message_contents(self, receiver: str, message_id: str) -> list[tuple[int, list[str]]]:
        """(notification id, fingerprints) that one message showed, by notification."""
        rows = self.con.execute("SELECT fingerprint, notification_id FROM message_refs WHERE receiver = ? "
                                "AND message_id = ? ORDER BY notification_id, fingerprint",
                                (receiver, message_id)).fetchall()
        out: dict[int, list[str]] = {}
        for fp, nid in rows:
            out.setdefault(int(nid), []).append(fp)
        return sorted(out.items())

    # -- receivers disabled by a 404/401 ------------------------------------------------------------
    def receiver_disable(self, receiver: str, target_hash: str, at: float, reason: str) -> None:
        with self.transaction() as con:
            con.execute("INSERT INTO receiver_status (receiver, target_hash, disabled_at, reason) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (receiver) DO UPDATE SET target_hash = excluded.target_hash, "
                        "disabled_at = excluded.disabled_at, reason = excluded.reason", (receiver, target_hash, at, reason))

    def receiver_statuses(self) -> list[ReceiverStatus]:
        return [ReceiverStatus(r[0], r[1], float(r[2]), r[3]) for r in
                self.con.execute("SELECT receiver, target_hash, disabled_at, reason FROM receiver_status")]

    # -- notification groups (what each route/receiver group last said) ------------------------------
    def notify_groups_load(self, con: Connection) -> dict[str, "NotifyGroupRow"]:
        return {r[0]: NotifyGroupRow(r[0], r[1], json.loads(r[2]), float(r[3]), r[4], json.loads(r[5]), json.loads(r[6]),
                                     None if r[7] is None else float(r[7]), json.loads(r[8]))
                for r in con.execute("SELECT key, receiver, group_labels, first_seen, last_sent_at, sent_firing, route, "
                                     "next_flush_at, members FROM notify_groups")}

    def notify_group_save(self, con: Connection, g: "NotifyGroupRow") -> None:
        con.execute("INSERT INTO notify_groups (key, receiver, group_labels, first_seen, last_sent_at, "
                    "sent_firing, route, next_flush_at, members) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET receiver = excluded.receiver, group_labels = excluded.group_labels, "
                    "first_seen = excluded.first_seen, last_sent_at = excluded.last_sent_at, "
                    "sent_firing = excluded.sent_firing, route = excluded.route, next_flush_at = excluded.next_flush_at, "
                    "members = excluded.members",
                    (g.key, g.receiver, json.dumps(g.group_labels), g.first_seen, g.last_sent_at,
                     json.dumps(sorted(g.sent_firing)), json.dumps(g.settings), g.next_flush_at,
                     json.dumps(sorted(g.members))))

    def notify_group_delete(self, con: Connection, key: str) -> None:
        con.execute("DELETE FROM notify_groups WHERE key = ?", (key,))

    def alert_set_escalation(self, con: Connection, fingerprint: str, level: int, at: float) -> None:
        con.execute("UPDATE alerts SET escalation_level = ?, escalated_at = ? WHERE fingerprint = ?",
                    (level, at, fingerprint))


@dataclass
class NotifyGroupRow:
    key: str
    receiver: str
    group_labels: dict[str, str]
    first_seen: float
    last_sent_at: float | None
    sent_firing: list[str]
    settings: dict[str, Any]
    # the group's next flush (Alertmanager's aggregation-group timer: group_wait, then every
    # group_interval); None in a row written before the column existed
    next_flush_at: float | None = None
    # every alert routed to the group now, shown or muted (silenced, inhibited): a muted member
    # that resolves is still the group's at its next flush (Alertmanager keeps it in the group)
    members: list[str] = field(default_factory=list)
