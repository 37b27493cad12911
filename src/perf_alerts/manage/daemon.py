"""`perf-alerts run`: the daemon — collect, evaluate on schedules, run policies, deliver, serve.

One asyncio loop. Every tick (`global.evaluation_interval`): host metrics are collected,
the scheduler runs the jobs whose slot has come, the policies are judged, the
notification pipeline plans and then delivers (`Notifier.deliver_async`: the sending
runs on the process's notification engine, which owns the HTTP clients and rate-limit
state). Every store call runs in a worker thread, so the HTTP API (served in the same loop
by the `serve_http` the front end injects) stays responsive while another process holds
SQLite's write lock. Between ticks the loop also wakes for outbox retries that come due
and for leases of crashed senders that run out.

Several daemons may share one store (replicas, `manage/cluster.py`): every one serves HTTP
and delivers, and only the one holding the leader lease evaluates rules, runs schedules,
policies, escalation checks (the notification plan) and retention. Each tick starts by taking
or renewing the lease (and writing the replica's heartbeat); each leader-only step checks that
the lease is still live first, so a replica that lost it stops at once. Between ticks a
keeper task renews the lease (a third of its lifetime after the last renewal) and, on a
follower, tries to take it the moment it runs out: a follower that becomes leader runs a tick
at once. A lone daemon takes the free lease at its first tick and behaves as before.

SIGTERM/SIGINT: the HTTP server stops accepting, the current tick (and its delivery)
finishes, the replica resigns leadership (a follower takes over at its next attempt) and
removes its row, the process exits 0. Whatever was planned but not sent is in the outbox and
the next process sends it; schedule and policy state are in the store, so a restart picks up
where the last process left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, TypeVar

from perf_alerts.errors import DaemonError
from perf_alerts.manage.cluster import Leadership, Replica
from perf_alerts.store import LeadershipLost, StoreUnavailable
from perf_alerts.timeutil import Clock, format_duration, iso

T = TypeVar("T")

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts

log = logging.getLogger("perf_alerts.daemon")

ENV_TOKEN = "PERF_ALERTS_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
RETENTION_EVERY = 3600.0
MIN_SLEEP = 0.05


class Daemon:
    def __init__(self, system: "PerfAlerts", *, host: str | None = None, port: int | None = None,
                 http: bool = True, token: str | None = None, collect_host: bool = True,
                 console_write: Callable[[str], None] | None = None,
                 sleep: Callable[[float], Awaitable[Any]] | None = None,
                 serve_http: "ServeHTTP | None" = None, replica: Replica | None = None,
                 lease_clock: Clock | None = None) -> None:
        """`replica`: this daemon's identity among the replicas of the store (default: a new one for
        this process); `lease_clock`: the wall clock of the leader lease (default `SystemClock`;
        never the system's alert clock, which a demo or a test moves on its own)."""
        from perf_alerts.manage.policies import PolicyEngine
        from perf_alerts.manage.schedules import Scheduler
        from perf_alerts.notify.pipeline import Notifier

        self.system = system
        g = system.config.global_
        self.host = host or getattr(g, "http_host", None) or DEFAULT_HOST
        self.port = int(port) if port is not None else int(getattr(g, "http_port", DEFAULT_PORT))
        self.http = http
        self.token = token if token is not None else (os.environ.get(ENV_TOKEN) or None)
        self.collect_host = collect_host
        self.notifier = Notifier(system, console_write=console_write)
        self.scheduler = Scheduler(system, self.notifier)
        self.policies = PolicyEngine(system, self.notifier)
        self._stop: asyncio.Event | None = None  # created inside the loop
        self._sleep = sleep
        self._server: Any = None
        self._serve_http = serve_http  # injected by the front end: this layer does not import perf_alerts.http
        self._last_retention: float | None = None
        self._wake: asyncio.Event | None = None  # set by stop() and when this replica becomes leader
        self.ticks = 0
        self.url: str | None = None
        self.replica = replica or Replica.current(lease_clock)
        self.leadership = Leadership(system.store, self.replica, float(g.evaluation_interval), clock=lease_clock)

    # ------------------------------------------------------------------ one tick
    async def tick(self, now: float | None = None) -> dict[str, Any]:
        """One cycle: lead (take or renew the lease) and heartbeat, collect; then, on the leader only,
        schedules, policies and plan; deliver (every replica); retention once an hour (leader)."""
        s = self.system
        now = s.clock.now() if now is None else now
        rep: dict[str, Any] = {"at": iso(now)}
        lead = await asyncio.to_thread(self.leadership.cycle)
        rep["leader"], rep["term"] = lead.leader, lead.term
        if self.collect_host:
            try:
                await asyncio.to_thread(s.collect_host)
            except Exception as e:  # a missing psutil or a bad mount must not stop the daemon
                rep["collect_error"] = f"{type(e).__name__}: {e}"
                log.warning("host metrics: %s", rep["collect_error"])
        rep["jobs"], rep["actions"], rep["planned"] = [], [], None
        try:
            await self._leader_steps(now, rep)
        except LeadershipLost as e:  # the lease went away mid-step: nothing of that step was written
            log.warning("leadership: %s; the new leader takes over", e)
            rep["leadership_lost"] = str(e)
        rep["delivery"] = (await self.deliver(now)).to_dict()
        if (self._last_retention is None or now - self._last_retention >= RETENTION_EVERY) and await self._leading():
            try:
                rep["retention"] = (await self._as_leader(s.apply_retention)).to_dict()
                await asyncio.to_thread(self.leadership.forget_silent)
            except Exception as e:
                log.warning("retention: %s: %s", type(e).__name__, e)
            self._last_retention = now
        self.ticks += 1
        await asyncio.to_thread(s.store.kv_set, "daemon", {"pid": os.getpid(), "last_tick": now, "ticks": self.ticks,
                                                           "url": self.url, "replica": self.replica.id})
        return rep

    async def _leader_steps(self, now: float, rep: dict[str, Any]) -> None:
        """Schedules, policies and the plan, each only while this replica leads; their writes are
        fenced (store.fenced): a step that outlives the lease writes nothing."""
        if await self._leading():
            runs = await self._as_leader(self.scheduler.tick, now, leading=self.leadership.still_leading)
            rep["jobs"] = [r.to_dict() for r in runs]
            for r in runs:
                if r.status != "ok":
                    log.warning("schedule %s (%s): %s %s", r.schedule, r.job, r.status, r.result.get("error", ""))
        if await self._leading():
            try:
                execs = await self._as_leader(self.policies.evaluate, now)
                rep["actions"] = [e.to_dict() for e in execs]
            except LeadershipLost:
                raise
            except Exception as e:
                log.exception("policies failed")
                rep["policy_error"] = f"{type(e).__name__}: {e}"
        if await self._leading():  # grouping, repeats and escalations: the leader's
            plan = await self._as_leader(self.notifier.plan, now)
            rep["planned"] = plan.to_dict()

    async def _as_leader(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` in a worker thread with this replica's fence on every exclusive write it makes."""
        fence = self.leadership.fence()

        def run() -> T:
            with self.system.store.fenced(fence):
                return fn(*args, **kwargs)

        return await asyncio.to_thread(run)

    async def _leading(self) -> bool:
        """Before each leader-only step: does this replica still hold a live lease? (A store call
        only when the last renewal is a third of the lease old.)"""
        return await asyncio.to_thread(self.leadership.still_leading)

    async def deliver(self, now: float | None = None) -> Any:
        rep = await self.notifier.deliver_async(now)
        if rep.delivered or rep.failed or rep.dead:
            log.info("notifications: %d delivered, %d to retry, %d dead", rep.delivered, rep.failed, rep.dead)
        for name in rep.disabled_receivers:
            log.error("receiver %s is DISABLED; fix its webhook and restart", name)
        return rep

    # ------------------------------------------------------------------ the loop
    def stop(self) -> None:
        if self._stop is not None and not self._stop.is_set():
            log.info("stopping: finishing the current cycle; undelivered notifications stay in the outbox")
            self._stop.set()
        if self._wake is not None:
            self._wake.set()
        if self._server is not None:
            self._server.should_exit = True

    async def run(self, once: bool = False) -> int:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        keeper: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
                pass
        if self.collect_host:
            with contextlib.suppress(Exception):  # psutil's first cpu_percent() is a meaningless 0.0: prime it
                import psutil

                psutil.cpu_percent(interval=None)
        try:
            if self.http and not once:
                await self._start_http()
                self.leadership.set_http_url(self.url)
            if not once:
                keeper = asyncio.create_task(self._keep_lease())
            interval = float(self.system.config.global_.evaluation_interval)
            self._announce(interval)
            for w in self.system.config.warnings:
                log.warning("%s", w)
            uncovered = self.scheduler.uncovered_groups()
            if uncovered:
                log.warning("no evaluate schedule covers rule group(s) %s: their rules are never evaluated",
                            ", ".join(uncovered))
            failed_cycle = False
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    await self.tick()
                except StoreUnavailable as e:  # the store's server is away: one line, the next cycle retries
                    log.warning("cycle skipped: %s; the next cycle tries again", e)
                    failed_cycle = True
                except Exception:  # bad input never crashes the daemon: log, wait, go on
                    log.exception("cycle failed")
                    failed_cycle = True
                if once:
                    break
                next_tick = started + interval
                # between ticks, wake for outbox retries that come due
                while not self._stop.is_set():
                    wait = next_tick - time.monotonic()
                    if wait <= 0:
                        break
                    # store reads in a worker thread: another process holding the write lock must not freeze the loop
                    due = await asyncio.to_thread(self.notifier.outbox.next_due_at)
                    lease_end = await asyncio.to_thread(self.system.store.outbox_next_lease_end)
                    if due is not None:
                        wait = min(wait, max(MIN_SLEEP, due - self.system.clock.now()))
                    if lease_end is not None:  # a crashed sender's claim runs out: take its notifications over
                        wait = min(wait, max(MIN_SLEEP, lease_end - time.time()))
                    await self._wait(wait)
                    if self._stop.is_set():
                        break
                    if self._wake.is_set():  # this replica just became leader: its first cycle now
                        self._wake.clear()
                        break
                    if (due is not None and self.system.clock.now() >= due) or \
                            (lease_end is not None and time.time() >= lease_end):
                        try:
                            await self.deliver()
                        except Exception:
                            log.exception("delivery failed")
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            try:  # resign (a follower takes over at once) and leave the replicas
                await asyncio.to_thread(self.leadership.leave)
            except Exception as e:
                log.warning("could not resign leadership (it runs out by itself): %s: %s", type(e).__name__, e)
            await self._stop_http()
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._close_clients()
        log.info("perf-alerts daemon stopped after %d cycle(s); %d notification(s) still in the outbox",
                 self.ticks, await asyncio.to_thread(self.notifier.outbox.open_count))
        return 1 if once and failed_cycle else 0  # `run --once` (cron, tests) reports a failed cycle

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the daemon is stopped or this replica becomes leader."""
        assert self._wake is not None
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))

    async def _keep_lease(self) -> None:
        """Between ticks: the leader renews its lease a third of the way through it (a long tick or a
        slow delivery must not let it run out); a follower tries to take it when it runs out and,
        once leader, wakes the loop for a cycle at once."""
        assert self._stop is not None and self._wake is not None
        lead = self.leadership
        while not self._stop.is_set():
            delay = max(lead.next_attempt_at() - lead.clock.now(), MIN_SLEEP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self._stop.is_set():
                return
            try:
                res = await asyncio.to_thread(lead.attempt)
            except Exception as e:  # the store is away: try again soon, within the lease if it is still ours
                log.warning("leadership: %s: %s", type(e).__name__, e)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=min(lead.interval, max(lead.ttl / 6, MIN_SLEEP)))
                continue
            if res.leader and res.changed:
                self._wake.set()

    def _announce(self, interval: float) -> None:
        sched = self.scheduler.schedules
        log.info("perf-alerts daemon %s: %d schedule(s), %d policies, %d rule(s), cycle every %s%s",
                 self.replica.id, len(sched), len(self.policies.policies), len(self.system.config.rules),
                 format_duration(interval), f"; dashboard {self.url}" if self.url else "")

    # ------------------------------------------------------------------ HTTP
    async def _start_http(self) -> None:
        """Serve the dashboard/API with the injected `serve_http` (the CLI passes the HTTP front end's;
        the management layer never imports it). Its start-up errors (bad bind, port in use) are
        DaemonErrors and stop the daemon before the first cycle."""
        if self._serve_http is None:
            log.warning("dashboard/API not served: no HTTP server was given to the daemon")
            return
        self._server = await self._serve_http(self.system, self)  # Daemon.stop() sets its should_exit
        self.url = self._server.url

    async def _stop_http(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        try:
            await server.stop()
        except Exception:
            log.exception("the HTTP server did not stop cleanly")

    async def _close_clients(self) -> None:
        """Close the process's notification engine (its loop, HTTP clients, rate-limit state).

        Waits (bounded) for a delivery in flight; whatever it could not finish stays claimed
        in the outbox and is taken over by the next sender when the lease runs out.
        """
        from perf_alerts.notify.engine import close_engine

        await asyncio.to_thread(close_engine)


class RunningHTTP(Protocol):
    """A started dashboard/API server, as `serve_http` returns it (`perf_alerts.http.server.RunningServer`)."""

    url: str
    should_exit: bool  # set by a signal: stop accepting now; `stop()` then waits for the requests in flight

    async def stop(self) -> None: ...


ServeHTTP = Callable[["PerfAlerts", Daemon], Awaitable[RunningHTTP]]


def run_daemon(system: "PerfAlerts", *, host: str | None = None, port: int | None = None, http: bool = True,
               once: bool = False, token: str | None = None, collect_host: bool = True,
               console_write: Callable[[str], None] | None = None, serve_http: ServeHTTP | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or one cycle with `once`); returns the exit code."""
    d = Daemon(system, host=host, port=port, http=http, token=token, collect_host=collect_host,
               console_write=console_write, serve_http=serve_http)
    return asyncio.run(d.run(once=once))
