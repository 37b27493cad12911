"""Discord rate-limit state shared by every sender of one store (several daemons, the CLI).

SQL only (the layer rule); written in the SQL both backends speak (`?` parameters,
`ON CONFLICT … DO UPDATE`, `RETURNING`), so the same queries run on SQLite and PostgreSQL.

One row per rate-limit key: a webhook (`webhook:<sha256 of its id>`; never the token, never the
URL) or the global limit (`global`). All times are wall-clock seconds (`time.time()`): the
row is read and written by processes on several machines, whose monotonic clocks mean nothing
to each other.

The model, for a webhook:
- `cap` requests per window (Discord's `X-RateLimit-Limit`; NULL until a response said so);
- the current window ends at `reset_at`, and `remaining` requests are still free in it;
- `blocked_until`: a 429 said "not before then";
- `per_window`: the longest `Reset-After` seen, the length of a fresh window.

`ratelimit_take` reserves one request slot in one statement (so two senders never get the
same slot): inside the current window it counts `remaining` down; once the window is over
it starts a new one, provisionally `per_window` long, with `cap - 1` slots left. While `cap`
is unknown (the first request ever) one sender *probes*: the window is closed to everyone
else until its answer arrives (or `probe` seconds pass). What the answers say is folded in
by `ratelimit_note`: `remaining` only ever goes down within a window (an old answer
overtaken by newer reservations must not hand their slots out again) and `reset_at` only
ever later. So the budget is spent at most once across all senders, and nobody sends
before a reset or `retry_after` any of them was told about.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    from perf_alerts.store.backend import Connection

T = TypeVar("T")

# DDL in the common dialect: TEXT / REAL / INTEGER columns (the PostgreSQL backend maps REAL to
# DOUBLE PRECISION and INTEGER to BIGINT), no SQLite-only clauses.
RATELIMIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS discord_ratelimits (
    bucket_key    TEXT PRIMARY KEY,
    bucket        TEXT,
    cap           INTEGER,
    remaining     INTEGER NOT NULL DEFAULT 0,
    reset_at      REAL NOT NULL DEFAULT 0,
    per_window    REAL,
    blocked_until REAL NOT NULL DEFAULT 0,
    updated_at    REAL NOT NULL DEFAULT 0
);
"""

GLOBAL_KEY = "global"
# keys name a scope and a hash, nothing a secret could hide in
_KEY_RE = re.compile(r"^(global|[a-z]{1,16}:[0-9a-f]{16,64})$")
_COLS = "bucket_key, bucket, cap, remaining, reset_at, per_window, blocked_until, updated_at"


@dataclass(frozen=True)
class RateLimitRow:
    """One key's shared state (wall-clock times)."""

    key: str
    bucket: str | None
    cap: int | None
    remaining: int
    reset_at: float
    per_window: float | None
    blocked_until: float
    updated_at: float


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError("rate-limit key must be 'global' or '<scope>:<hex hash>'")
    return key


class RateLimitQueries:
    """Mixin of `Store` (uses its `con` for reads and `_write()` for transactions).

    Every change is one statement on one row (after creating the row if missing), so the
    transactions need no store-wide lock (`exclusive=False`): SQLite has one writer anyway,
    and PostgreSQL locks the row, re-checks the `WHERE` on its latest version and computes the
    `SET` from it, so two takers never get the same slot.
    """

    if TYPE_CHECKING:  # provided by Store
        @property
        def con(self) -> Connection: ...

        def _write(self, exclusive: bool = True) -> AbstractContextManager[Connection]: ...

        def _retrying(self, fn: Callable[[], T], retry_for: float = 30.0) -> T: ...

    def ratelimit_take(self, key: str, now: float, *, probe: float = 10.0, margin: float = 0.05,
                       guard: float = 0.2, poll: float = 0.1) -> float:
        """Take a turn to send one request under `key` (and the global limit) at wall time `now`.

        Returns 0.0 when a request slot was reserved for the caller (send now), else the
        seconds to wait before asking again (nothing was reserved). `probe`: how long the
        first request (limit not known yet) keeps the window closed to everyone else if its
        answer never comes; `margin`: added to a provisional window; `guard`: a slot is not
        handed out in the last `guard` seconds of a window (a request that reaches Discord
        after its reset would count against the next window, whose slots are handed out too);
        `poll`: the longest wait returned while another sender probes (its answer usually
        opens the window long before the probe times out).
        """
        _check_key(key)
        # not retried on a lost connection: `now` would be stale (the client retries the delivery)
        with self._write(exclusive=False) as con:
            _ensure(con, key, now)
            row = con.execute(
                "UPDATE discord_ratelimits SET "
                # a window that is over starts anew: cap - 1 slots left, or 0 while probing for the cap
                "remaining = CASE WHEN reset_at <= ? THEN (CASE WHEN cap IS NULL OR per_window IS NULL THEN 0 "
                "ELSE cap - 1 END) ELSE remaining - 1 END, "
                "reset_at = CASE WHEN reset_at <= ? THEN (CASE WHEN cap IS NULL OR per_window IS NULL THEN ? "
                "ELSE ? + per_window END) ELSE reset_at END, "
                "updated_at = ? "
                "WHERE bucket_key = ? AND blocked_until <= ? AND (reset_at <= ? OR (remaining > 0 AND reset_at > ?)) "
                "AND NOT EXISTS (SELECT 1 FROM discord_ratelimits g WHERE g.bucket_key = ? AND g.blocked_until > ?) "
                "RETURNING remaining",
                (now, now, now + probe, now + margin, now, key, now, now, now + guard, GLOBAL_KEY, now),
            ).fetchone()
            if row is not None:
                return 0.0
            rows = con.execute("SELECT bucket_key, remaining, reset_at, blocked_until, cap FROM discord_ratelimits "
                               "WHERE bucket_key IN (?, ?)", (key, GLOBAL_KEY)).fetchall()
        wait = 0.0
        for k, remaining, reset_at, blocked_until, cap in rows:
            wait = max(wait, float(blocked_until) - now)
            if k == key and float(reset_at) > now and (int(remaining) <= 0 or float(reset_at) <= now + guard):
                # another sender's probe: look again soon rather than sleep out its whole timeout
                wait = max(wait, float(reset_at) - now if cap is not None else min(float(reset_at) - now, poll))
        # > 0 always under SQLite's write lock; a PostgreSQL row changed in between: ask again soon
        return max(wait, 0.001)

    def ratelimit_note(self, key: str, now: float, *, remaining: int | None, reset_after: float | None,
                       cap: int | None = None, bucket: str | None = None, margin: float = 0.05) -> None:
        """What an answer's headers said at wall time `now` (`X-RateLimit-Remaining`,
        `-Reset-After`, `-Limit`, `-Bucket`). Within the current window `remaining` only goes
        down and the reset only later; an answer to a probe (or after the window ended)
        sets the window from the headers."""
        _check_key(key)
        bucket = bucket[:100] if bucket else None
        if remaining is None or reset_after is None:
            # nothing to count with: record the bucket, and end a probe (the next sender probes again)
            sql = ("UPDATE discord_ratelimits SET bucket = COALESCE(?, bucket), "
                   "reset_at = CASE WHEN cap IS NULL AND reset_at > ? THEN ? ELSE reset_at END, "
                   "updated_at = ? WHERE bucket_key = ?")
            params: tuple[Any, ...] = (bucket, now, now, now, key)
        else:
            left = max(0, int(remaining))
            reset = now + max(0.0, float(reset_after)) + margin
            known_cap = cap is not None and cap > 0
            # a probe's answer, or one after the window ended, sets the window; otherwise
            # remaining only goes down and the reset only later
            sql = ("UPDATE discord_ratelimits SET "
                   "bucket = COALESCE(?, bucket), "
                   "remaining = CASE WHEN cap IS NULL OR per_window IS NULL OR reset_at <= ? THEN ? "
                   "WHEN remaining > ? THEN ? ELSE remaining END, "
                   "reset_at = CASE WHEN cap IS NULL OR per_window IS NULL OR reset_at <= ? OR reset_at < ? THEN ? "
                   "ELSE reset_at END, "
                   + ("cap = ?, " if known_cap else "cap = COALESCE(cap, ?), ") +
                   "per_window = CASE WHEN per_window IS NULL OR per_window < ? THEN ? ELSE per_window END, "
                   "updated_at = ? WHERE bucket_key = ?")
            params = (bucket, now, left, left, left, now, reset, reset,
                      int(cap) if known_cap and cap is not None else left + 1,
                      float(reset_after), float(reset_after), now, key)

        def note() -> None:
            with self._write(exclusive=False) as con:
                _ensure(con, key, now)
                con.execute(sql, params)

        self._retrying(note)  # the same facts again: recording them twice changes nothing

    def ratelimit_note_429(self, key: str, now: float, retry_after: float, *, margin: float = 0.05) -> None:
        """A 429 at wall time `now`: nobody sends under `key` (the webhook's, or `GLOBAL_KEY`)
        for `retry_after` (+ `margin`) seconds; a webhook's window has no slot left."""
        _check_key(key)
        until = now + max(0.0, float(retry_after)) + margin

        def note() -> None:
            with self._write(exclusive=False) as con:
                _ensure(con, key, now)
                con.execute(
                    "UPDATE discord_ratelimits SET "
                    "blocked_until = CASE WHEN blocked_until < ? THEN ? ELSE blocked_until END, "
                    "remaining = 0, "
                    "reset_at = CASE WHEN reset_at < ? THEN ? ELSE reset_at END, "
                    "updated_at = ? WHERE bucket_key = ?",
                    (until, until, until, until, now, key),
                )

        self._retrying(note)

    def ratelimit_release(self, key: str, now: float) -> None:
        """A probe whose request got no answer (connection error): reopen the window at once
        instead of keeping everyone waiting for the probe to time out."""
        _check_key(key)

        def release() -> None:
            with self._write(exclusive=False) as con:
                con.execute("UPDATE discord_ratelimits SET reset_at = ?, updated_at = ? "
                            "WHERE bucket_key = ? AND cap IS NULL AND reset_at > ?", (now, now, key, now))

        self._retrying(release)

    def ratelimit_get(self, key: str) -> RateLimitRow | None:
        _check_key(key)
        r = self.con.execute(f"SELECT {_COLS} FROM discord_ratelimits WHERE bucket_key = ?", (key,)).fetchone()
        return _row(r) if r is not None else None

    def ratelimit_rows(self) -> list[RateLimitRow]:
        """Every key's state (for status views and tests)."""
        return [_row(r) for r in self.con.execute(f"SELECT {_COLS} FROM discord_ratelimits ORDER BY bucket_key")]


def _ensure(con: "Connection", key: str, now: float) -> None:
    """The key's row, created empty (window over, limit unknown) if missing."""
    con.execute("INSERT INTO discord_ratelimits (bucket_key, remaining, reset_at, blocked_until, updated_at) "
                "VALUES (?, 0, 0, 0, ?) ON CONFLICT (bucket_key) DO NOTHING", (key, now))


def _row(r: Sequence[Any]) -> RateLimitRow:
    def f(x: object) -> float:
        return float(x)  # type: ignore[arg-type]

    return RateLimitRow(str(r[0]), None if r[1] is None else str(r[1]), None if r[2] is None else int(f(r[2])),
                        int(f(r[3])), f(r[4]), None if r[5] is None else f(r[5]), f(r[6]), f(r[7]))


__all__ = ["GLOBAL_KEY", "RATELIMIT_SCHEMA", "RateLimitQueries", "RateLimitRow"]
