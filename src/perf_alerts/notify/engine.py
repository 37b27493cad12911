"""The notification engine: one per process, owning the event loop that talks to receivers.

Why one: Discord's rate limits are per webhook and per IP, so the state that respects them
(bucket resets, a global 429) must outlive a single `deliver` call and be shared by every
caller — the CLI, the daemon, the crew tools, the HTTP API. HTTP clients are bound to the
loop that first used them, so they must all live on one loop too. (Across processes and
machines the rate-limit state is the store's: the pipeline gives the engine's client a
`SharedRateLimits` view, `notify/discord/ratelimit.py`; the client's own in-memory state
serves callers that deliver without a store.)

So the engine owns one event loop in a background thread, the Discord client (connections,
per-webhook locks, counters) and the generic HTTP client. Sync callers `run()` a coroutine on it and
wait on a future; async callers (the daemon's own loop) `await engine.wrap(coro)`; nobody
calls `asyncio.run` or `time.sleep` inside a running loop. Store work inside those
coroutines goes to worker threads (`asyncio.to_thread`), so a writer in another process
that holds SQLite's lock delays a delivery, never the loop.

`close()` waits (bounded) for work in flight, closes the clients and stops the loop; it
runs at interpreter exit for the process-wide engine.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # noqa: F401  (registers its exit hook first; see the end of this module)
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from perf_alerts.aio import LoopThread

if TYPE_CHECKING:
    import httpx

    from perf_alerts.notify.discord import DiscordClient

T = TypeVar("T")
log = logging.getLogger("perf_alerts.notify")


def in_running_loop() -> bool:
    """True when the calling thread is running an event loop (a notebook, the daemon, an async app)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class EngineClosed(RuntimeError):
    pass


class NotificationEngine:
    """One event loop thread + the receivers' HTTP clients, for the whole process."""

    def __init__(self) -> None:
        self._thread = LoopThread("perf-alerts-notify")
        self._discord: DiscordClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._thread.loop

    # -- clients (created lazily; used only on the engine's loop) -----------------------------
    def discord(self) -> "DiscordClient":
        if self._discord is None:
            from perf_alerts.notify.discord import DiscordClient

            self._discord = DiscordClient()
        return self._discord

    def http(self) -> "httpx.AsyncClient":
        if self._http is None:
            import httpx

            from perf_alerts import __version__

            # receivers see who calls (Alertmanager sends "Alertmanager/<version>")
            self._http = httpx.AsyncClient(follow_redirects=False, headers={"User-Agent": f"perf-alerts/{__version__}"})
        return self._http

    # -- running work ----------------------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Start `coro` on the engine's loop; the future is tracked so `close()` can wait for it."""
        with self._lock:
            if self._closed:
                coro.close()
                raise EngineClosed("the notification engine is closed")
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
            self._inflight.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: "concurrent.futures.Future[Any]") -> None:
        with self._lock:
            self._inflight.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            log.error("notification work failed", exc_info=(type(exc), exc, exc.__traceback__) if exc else None)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the engine and wait for its result (never from inside a running loop)."""
        if in_running_loop():
            coro.close()
            raise RuntimeError("NotificationEngine.run() would block a running event loop; "
                               "use `await engine.wrap(coro)` or submit() instead")
        return self.submit(coro).result(timeout)

    async def wrap(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` from any event loop; it runs on the engine's loop (its clients live there)."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    # -- shutting down -----------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` for work in flight, close the clients, stop the loop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._inflight)
        if threading.current_thread() is self._thread.thread:
            # closing from the engine's own loop (a callback): it cannot wait for itself
            self.loop.call_soon(self.loop.stop)
            return
        if pending:
            done, not_done = concurrent.futures.wait(pending, timeout=timeout)
            for f in not_done:  # what is cut off stays claimed in the outbox; its lease hands it on
                f.cancel()
        clients = [c for c in (self._discord, self._http) if c is not None]
        if clients and self.loop.is_running():
            async def _aclose() -> None:
                for c in clients:
                    try:
                        await c.aclose()
                    except Exception:  # closing must not fail the caller's shutdown
                        log.debug("closing a client failed", exc_info=True)

            try:
                asyncio.run_coroutine_threadsafe(_aclose(), self.loop).result(5)
            except Exception:
                log.debug("closing clients failed", exc_info=True)
        self._discord = self._http = None
        self._thread.close()

    @property
    def closed(self) -> bool:
        return self._closed


_engine: NotificationEngine | None = None
_engine_lock = threading.Lock()


def engine() -> NotificationEngine:
    """The process-wide engine (created on first use, closed at interpreter exit)."""
    global _engine
    with _engine_lock:
        if _engine is None or _engine.closed:
            _engine = NotificationEngine()
        return _engine


def close_engine(timeout: float = 10.0) -> None:
    """Close the process-wide engine (the next `engine()` call starts a new one)."""
    global _engine
    with _engine_lock:
        e, _engine = _engine, None
    if e is not None:
        e.close(timeout)


def _forget_after_fork() -> None:
    # a forked child has no engine thread; it must start its own, never use the parent's loop
    # (nor a lock some other parent thread held at the fork)
    global _engine, _engine_lock
    _engine = None
    _engine_lock = threading.Lock()


# At exit, close before Python shuts its thread pools down: the engine's work in flight
# records its outcome through `asyncio.to_thread`, which needs them. `threading`'s exit
# hooks run before `atexit`'s and in reverse order of registration, so this one runs ahead
# of concurrent.futures' own (imported above through asyncio).
_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(close_engine)
else:  # pragma: no cover - other Pythons
    atexit.register(close_engine)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
