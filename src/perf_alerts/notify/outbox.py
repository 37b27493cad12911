"""The outbox: every notification is written to the store before anything is sent.

States: pending (not tried yet) → sending (claimed by one sender, under a lease) →
delivered; or failed (retried at `next_attempt_at`, exponential backoff with jitter) → … →
dead (retry budget spent, or the receiver is disabled), with the reason kept.

Any number of processes deliver from the same outbox: a sender claims the due rows it will
send (nobody else can), records each Discord message as soon as Discord accepts it, and
changes a row only while it still holds the claim. A sender that dies leaves its rows
claimed until the lease runs out; then another sender takes them and re-sends only what
was not yet accepted — at most the message that was in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, Sequence

from perf_alerts.notify.redact import redact
from perf_alerts.store import Store
from perf_alerts.store.backend import Connection
from perf_alerts.store.outbox import Notification

__all__ = ["DEFAULT_LEASE", "STATES", "Notification", "Outbox"]

log = logging.getLogger("perf_alerts.notify")

STATES = ("pending", "sending", "failed", "delivered", "dead", "dropped")

DEFAULT_LEASE = 60.0


class Outbox:
    """The outbox as one sender sees it: `owner` names this sender in every claim it makes."""

    def __init__(self, store: Store, owner: str | None = None, lease: float = DEFAULT_LEASE) -> None:
        self.store = store
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = lease

    def enqueue(self, con: Connection, receiver: str, kind: str, group_key: str, body: dict[str, Any],
                at: float) -> int:
        return self.store.outbox_insert(con, receiver, kind, group_key, body, at)

    def claim(self, now: float, limit: int = 500) -> list[Notification]:
        """Take the due rows (and rows of senders whose lease ran out) for this sender."""
        return self.store.outbox_claim(self.owner, now, self.lease, limit)

    def renew(self, ids: list[int]) -> set[int]:
        """Extend the lease; returns the ids still held (a lost one must not be sent)."""
        return self.store.outbox_renew(self.owner, ids, self.lease)

    def next_due_at(self) -> float | None:
        return self.store.outbox_next_due_at()

    def open_count(self) -> int:
        return self.store.outbox_open_count()

    def get(self, nid: int) -> Notification | None:
        return self.store.outbox_get(nid)

    def recent(self, state: str | None = None, limit: int = 100) -> list[Notification]:
        return self.store.outbox_recent(state, limit)

    # -- outcomes: each lands only while this sender still holds the claim ---------------------
    def progress(self, accepted: list[tuple[int, str | None, list[str]]], done: list[int], at: float,
                 refs: Sequence[tuple[str, str, str, int]] = (),
                 resolved_shown: Sequence[tuple[str, str]] = ()) -> list[int]:
        """Record one accepted message (or edit); returns ids another sender had taken over."""
        lost = self.store.outbox_progress(self.owner, accepted, done, at, refs, resolved_shown)
        if lost:
            log.warning("outbox: notification(s) %s were taken over by another sender (lease ran out)", lost)
        return lost

    def delivered(self, n: Notification, at: float, message_ids: list[str] | None = None) -> bool:
        return not self.progress([(n.id, mid, []) for mid in (message_ids or [])], [n.id], at)

    def retry(self, n: Notification, at: float, error: str, delay: float, count_attempt: bool = True,
              max_attempts: int = 8) -> str:
        """Schedule another try; past the retry budget the notification is dead. Returns the new state."""
        attempts = n.attempts + (1 if count_attempt else 0)
        if attempts >= max_attempts:
            self.dead(n, at, f"gave up after {attempts} attempts; last error: {error}", attempts)
            return "dead"
        if not self.store.outbox_retry(self.owner, n.id, attempts, at + delay, redact(error)):
            log.warning("outbox: notification %d was taken over by another sender; its retry is theirs", n.id)
            return "lost"
        return "failed"

    def dropped(self, n: Notification, at: float, reason: str) -> bool:
        return self.store.outbox_dropped(self.owner, n.id, n.attempts, at, redact(reason))

    def dead(self, n: Notification, at: float, reason: str, attempts: int | None = None) -> bool:
        return self.store.outbox_dead(self.owner, n.id, n.attempts + 1 if attempts is None else attempts, at,
                                      redact(reason))
