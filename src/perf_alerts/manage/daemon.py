"""`perf-alerts run`: the daemon — collect, evaluate on schedules, run policies, deliver, serve.

One asyncio loop. Every tick (`global.evaluation_interval`): host metrics are collected,
the scheduler runs the jobs whose slot has come, the policies are judged, the
notification pipeline plans and then delivers (`Notifier.deliver_async`, in the loop).
Blocking store and analytics work runs in worker threads so the HTTP API (served by
uvicorn in the same loop, when `perf_alerts.http.app` is in the build) stays responsive.
Between ticks the loop also wakes for outbox retries that come due.

SIGTERM/SIGINT: the HTTP server stops accepting, the current tick (and its delivery)
finishes, the process exits 0. Whatever was planned but not sent is in the outbox and the
next process sends it; schedule and policy state are in the store, so a restart picks up
where the last process left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from perf_alerts.errors import DaemonError
from perf_alerts.timeutil import format_duration, iso

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
                 sleep: Callable[[float], Awaitable[Any]] | None = None) -> None:
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
        self._server_task: asyncio.Task[Any] | None = None
        self._last_retention: float | None = None
        self.ticks = 0
        self.url: str | None = None

    # ------------------------------------------------------------------ one tick
    async def tick(self, now: float | None = None) -> dict[str, Any]:
        """One cycle: collect, schedules, policies, plan, deliver (and retention once an hour)."""
        s = self.system
        now = s.clock.now() if now is None else now
        rep: dict[str, Any] = {"at": iso(now)}
        if self.collect_host:
            try:
                await asyncio.to_thread(s.collect_host)
            except Exception as e:  # a missing psutil or a bad mount must not stop the daemon
                rep["collect_error"] = f"{type(e).__name__}: {e}"
                log.warning("host metrics: %s", rep["collect_error"])
        runs = await asyncio.to_thread(self.scheduler.tick, now)
        rep["jobs"] = [r.to_dict() for r in runs]
        for r in runs:
            if r.status != "ok":
                log.warning("schedule %s (%s): %s %s", r.schedule, r.job, r.status, r.result.get("error", ""))
        try:
            execs = await asyncio.to_thread(self.policies.evaluate, now)
            rep["actions"] = [e.to_dict() for e in execs]
        except Exception as e:
            log.exception("policies failed")
            rep["policy_error"] = f"{type(e).__name__}: {e}"
        plan = await asyncio.to_thread(self.notifier.plan, now)
        rep["planned"] = plan.to_dict()
        rep["delivery"] = (await self.deliver(now)).to_dict()
        if self._last_retention is None or now - self._last_retention >= RETENTION_EVERY:
            try:
                rep["retention"] = await asyncio.to_thread(s.apply_retention)
            except Exception as e:
                log.warning("retention: %s: %s", type(e).__name__, e)
            self._last_retention = now
        self.ticks += 1
        await asyncio.to_thread(s.store.kv_set, "daemon", {"pid": os.getpid(), "last_tick": now, "ticks": self.ticks,
                                                           "url": self.url})
        return rep

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
        if self._server is not None:
            self._server.should_exit = True

    async def run(self, once: bool = False) -> int:
        self._stop = asyncio.Event()
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
                    due = self.notifier.outbox.next_due_at()
                    if due is not None:
                        wait = min(wait, max(MIN_SLEEP, due - self.system.clock.now()))
                    await self._wait(wait)
                    if self._stop.is_set():
                        break
                    if due is not None and self.system.clock.now() >= due:
                        try:
                            await self.deliver()
                        except Exception:
                            log.exception("delivery failed")
        finally:
            await self._stop_http()
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._close_clients()
        log.info("perf-alerts daemon stopped after %d cycle(s); %d notification(s) still in the outbox",
                 self.ticks, self.notifier.outbox.open_count())
        return 1 if once and failed_cycle else 0  # `run --once` (cron, tests) reports a failed cycle

    async def _wait(self, seconds: float) -> None:
        assert self._stop is not None
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(seconds, 0.0))

    def _announce(self, interval: float) -> None:
        sched = self.scheduler.schedules
        log.info("perf-alerts daemon: %d schedule(s), %d policies, %d rule(s), cycle every %s%s",
                 len(sched), len(self.policies.policies), len(self.system.config.rules), format_duration(interval),
                 f"; dashboard {self.url}" if self.url else "")

    # ------------------------------------------------------------------ HTTP
    async def _start_http(self) -> None:
        try:
            from perf_alerts.http.app import check_bind, create_app
        except ImportError as e:
            log.warning("dashboard/API not served: %s", e)
            return
        import uvicorn

        try:
            check_bind(self.host, self.token)
        except Exception as e:
            raise DaemonError(str(e)) from None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise DaemonError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        sock.listen(128)
        sock.setblocking(False)
        app = create_app(self.system, token=self.token, notifier=self.notifier, scheduler=self.scheduler,
                         policies=self.policies)
        cfg = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, proxy_headers=False,
                             lifespan="off")
        self._server = _Server(cfg)
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(200):  # wait until it accepts (or failed)
            if self._server.started or self._server_task.done():
                break
            await asyncio.sleep(0.01)
        if self._server_task.done() and self._server_task.exception() is not None:
            raise DaemonError(f"the HTTP server failed to start: {self._server_task.exception()}")

    async def _stop_http(self) -> None:
        if self._server is None or self._server_task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._server_task, timeout=10)
        except (asyncio.TimeoutError, Exception):
            self._server.force_exit = True
            log.warning("the HTTP server did not stop in time")

    async def _close_clients(self) -> None:
        for attr in ("_discord", "_http"):
            client = getattr(self.notifier, attr, None)
            close = getattr(client, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()


try:
    import uvicorn as _uv

    class _Server(_uv.Server):
        """uvicorn without its own signal handling: the daemon owns SIGTERM/SIGINT."""

        def install_signal_handlers(self) -> None:  # uvicorn < 0.29
            pass

        def capture_signals(self) -> Any:  # uvicorn >= 0.29
            return contextlib.nullcontext()

except ImportError:  # pragma: no cover - HTTP is optional
    _Server = None  # type: ignore[assignment,misc]


def run_daemon(system: "PerfAlerts", *, host: str | None = None, port: int | None = None, http: bool = True,
               once: bool = False, token: str | None = None, collect_host: bool = True,
               console_write: Callable[[str], None] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or one cycle with `once`); returns the exit code."""
    d = Daemon(system, host=host, port=port, http=http, token=token, collect_host=collect_host,
               console_write=console_write)
    return asyncio.run(d.run(once=once))
