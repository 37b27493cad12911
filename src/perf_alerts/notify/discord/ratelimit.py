"""Where the Discord client keeps its rate-limit state: in this process, or in the store.

`DiscordClient` asks a `RateLimitState` for a turn before every request and tells it what
each answer said. Two implementations:

- `MemoryRateLimits`: the state of one process (bucket resets, 429 waits, the global limit),
  measured on the client's injected clock. Enough when one process is the only sender
  (and what unit tests with `httpx.MockTransport` and a fake clock use).
- `SharedRateLimits`: the state lives in the store (`store/ratelimits.py`), in wall-clock
  time, so every process delivering from that store — daemons on several machines, the CLI's
  `deliver`, crew tools — spends one budget per webhook and waits out every reset and
  `retry_after` any of them was told about. Store calls run in worker threads
  (`asyncio.to_thread`): a busy store delays a delivery, never the event loop.

A webhook is known to the store by `webhook:<sha256 of its id>`: never the token or the URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from perf_alerts.store.ratelimits import RateLimitQueries

__all__ = ["Limits", "MemoryRateLimits", "RateLimitState", "SharedRateLimits", "webhook_key"]

GLOBAL_KEY = "global"  # the store's key for the global limit (store.ratelimits.GLOBAL_KEY)


@dataclass(frozen=True)
class Limits:
    """What one answer's X-RateLimit-* headers said (None: header absent or unreadable)."""

    remaining: float | None = None
    reset_after: float | None = None
    limit: float | None = None
    bucket: str | None = None


class RateLimitState(Protocol):
    """Rate-limit bookkeeping behind `DiscordClient` (hook: the webhook id)."""

    async def take(self, hook: str) -> float:
        """0.0: the caller may send one request now (its slot is taken); > 0: wait that many
        seconds, then ask again."""
        ...

    async def note(self, hook: str, limits: Limits) -> None:
        """What an answer's rate-limit headers said."""
        ...

    async def note_429(self, hook: str, retry_after: float, is_global: bool) -> None:
        """A 429: nobody sends to `hook` (or, if global, anywhere) for `retry_after` seconds."""
        ...

    async def failed(self, hook: str) -> None:
        """The request got no answer (timeout, connection error)."""
        ...

    def blocked(self, hook: str) -> bool:
        """Self-check right before a request: does the state known here forbid sending now?"""
        ...


class _ClockLike(Protocol):
    def now(self) -> float: ...


@dataclass
class _Bucket:
    blocked_until: float = 0.0  # clock time before which no request may be sent
    bucket: str | None = None


@dataclass
class MemoryRateLimits:
    """One process's state on the client's clock (requests to one webhook go one at a time:
    the client holds a per-webhook lock, so each answer is read before the next request)."""

    clock: _ClockLike
    margin: float = 0.05
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    global_until: float = 0.0

    def _bucket(self, hook: str) -> _Bucket:
        b = self.buckets.get(hook)
        if b is None:
            b = self.buckets[hook] = _Bucket()
        return b

    def _until(self, hook: str) -> float:
        return max(self._bucket(hook).blocked_until, self.global_until)

    async def take(self, hook: str) -> float:
        return max(0.0, self._until(hook) - self.clock.now())

    def blocked(self, hook: str) -> bool:
        return self.clock.now() < self._until(hook)

    async def note(self, hook: str, limits: Limits) -> None:
        b = self._bucket(hook)
        if limits.bucket:
            b.bucket = limits.bucket
        if limits.remaining is not None and limits.remaining <= 0 and limits.reset_after is not None:
            b.blocked_until = max(b.blocked_until, self.clock.now() + limits.reset_after + self.margin)

    async def note_429(self, hook: str, retry_after: float, is_global: bool) -> None:
        until = self.clock.now() + retry_after + self.margin
        if is_global:
            self.global_until = max(self.global_until, until)
        else:
            b = self._bucket(hook)
            b.blocked_until = max(b.blocked_until, until)

    async def failed(self, hook: str) -> None:
        return None


def webhook_key(hook: str) -> str:
    """The store's key for a webhook id: a hash, so not even the id is stored."""
    return "webhook:" + hashlib.sha256(f"discord-webhook:{hook}".encode()).hexdigest()[:32]


class SharedRateLimits:
    """The state in the store, shared by every process that delivers from it (wall-clock time).

    `probe`: how long the first request to a webhook (limit unknown) keeps it closed to other
    senders if its answer never comes; `margin`: added to every reset and `retry_after`
    (a little slack for clocks of several machines and for the network); `guard`: no slot
    is handed out in a window's last `guard` seconds. `wall` is injectable for tests.
    """

    def __init__(self, store: "RateLimitQueries", *, probe: float = 10.0, margin: float = 0.05, guard: float = 0.2,
                 wall: "_ClockLike | None" = None) -> None:
        self.store = store
        self.probe = probe
        self.margin = margin
        self.guard = guard
        self._wall = wall
        self._keys: dict[str, str] = {}

    def _now(self) -> float:
        return self._wall.now() if self._wall is not None else time.time()

    def _key(self, hook: str) -> str:
        k = self._keys.get(hook)
        if k is None:
            k = self._keys[hook] = webhook_key(hook)
        return k

    async def take(self, hook: str) -> float:
        return await asyncio.to_thread(self.store.ratelimit_take, self._key(hook), self._now(), probe=self.probe,
                                       margin=self.margin, guard=self.guard)

    def blocked(self, hook: str) -> bool:
        return False  # `take` decided in the store, atomically; nothing newer is known here

    async def note(self, hook: str, limits: Limits) -> None:
        rem = limits.remaining
        cap = limits.limit
        await asyncio.to_thread(self.store.ratelimit_note, self._key(hook), self._now(),
                                remaining=None if rem is None else int(rem), reset_after=limits.reset_after,
                                cap=None if cap is None else int(cap), bucket=limits.bucket, margin=self.margin)

    async def note_429(self, hook: str, retry_after: float, is_global: bool) -> None:
        await asyncio.to_thread(self.store.ratelimit_note_429, GLOBAL_KEY if is_global else self._key(hook),
                                self._now(), retry_after, margin=self.margin)

    async def failed(self, hook: str) -> None:
        await asyncio.to_thread(self.store.ratelimit_release, self._key(hook), self._now())
