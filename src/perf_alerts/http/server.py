"""Putting the HTTP app on a port: the one way `perf-alerts dashboard` and the daemon serve it.

`start_server(app, host, port)` refuses a public address without a token, binds the socket
itself (so "address in use" is a clear `ServeError` before anything runs, and port 0
reports the port it got), then runs uvicorn inside the caller's event loop without
uvicorn's own signal handlers: the caller — the dashboard command or the daemon — owns
SIGTERM/SIGINT and decides when to `stop()`.

It takes a built app and never imports `perf_alerts.http.app` (the app imports `ServeError`
and `is_loopback` from here); `http.app` has the helpers that build the app and serve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import uvicorn

from perf_alerts.errors import DaemonError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("perf_alerts.http")

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"}
START_TIMEOUT = 5.0  # seconds to wait for uvicorn to accept connections
STOP_TIMEOUT = 10.0  # seconds in-flight requests get before the server is forced down


class ServeError(DaemonError, ValueError):
    """The server cannot be started as asked (a public address without a token, a port in use).

    A DaemonError: like every start-up problem, the operator fixes it and the CLI exits 2."""


def is_loopback(host: str) -> bool:
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES or h == "localhost.":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | bool | None) -> None:
    """Refuse to listen beyond this machine without a token (SPEC §8)."""
    if not host or not host.strip():
        raise ServeError("--host is empty")
    has_token = token if isinstance(token, bool) else bool(token and token.strip())
    if not is_loopback(host) and not has_token:
        raise ServeError(f"refusing to serve on {host}: only loopback addresses (127.0.0.1, ::1, localhost) may be "
                         "served without a token; set --token or PERF_ALERTS_TOKEN (clients then send "
                         "Authorization: Bearer <token>)")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs the loop owns SIGTERM/SIGINT."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        return contextlib.nullcontext()


def _config(app: "FastAPI", **kw: Any) -> uvicorn.Config:
    """The one uvicorn configuration: quiet, no server header, no proxy headers, no lifespan.

    `log_config=None`: uvicorn installs no handlers of its own; its records go where the process
    sends logs (`perf-alerts run` / `dashboard`: the redacting, terminal-safe handler of
    `cli._common.setup_logging`), not raw to stderr."""
    return uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, proxy_headers=False,
                          lifespan="off", log_config=None, **kw)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class RunningServer:
    """A started server: where it listens, and how to stop it."""

    url: str
    host: str
    port: int
    _server: _Server = field(repr=False)
    _task: "asyncio.Task[None]" = field(repr=False)

    @property
    def should_exit(self) -> bool:
        return bool(self._server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """uvicorn's own flag: set, the server stops accepting and ends after the requests in flight
        (what a signal handler may do; `stop()` also waits for it)."""
        self._server.should_exit = value

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop accepting, let the requests in flight finish (at most `timeout`), then return."""
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout)
        except asyncio.TimeoutError:
            log.warning("the HTTP server did not stop within %gs; closing its connections", timeout)
            self._server.force_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, timeout=2.0)
        except Exception:
            log.exception("the HTTP server failed while stopping")

    async def wait(self) -> None:
        """Until the server stops by itself (it normally runs until `stop()`)."""
        await asyncio.shield(self._task)


def _listening_socket(family: socket.AddressFamily) -> socket.socket:
    """A TCP socket to listen on whose connections answer without Nagle's delay.

    The protocol is named (IPPROTO_TCP, not 0): an accepted socket inherits the listener's `proto`,
    and asyncio turns TCP_NODELAY on for a connection only when that is IPPROTO_TCP. With 0, every
    response after the first on a kept-alive connection waited ~40 ms: uvicorn writes the head and
    the body as two sends, Nagle holds the body until the head is ACKed, and the client delays that
    ACK (a new connection starts in quick-ACK mode, which is why only reused ones paid). OTLP
    exporters and Prometheus keep their connections open. TCP_NODELAY is also set on the listener,
    which Linux copies to each accepted socket, for an event loop that does not set it itself."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def start_server(app: "FastAPI", host: str, port: int) -> RunningServer:
    """Serve `app` on host:port in the running event loop; returns once it accepts connections.

    Raises ServeError for a public address when the app has no token (`create_app(token=...)`),
    a port out of range, an address that cannot be bound (in use, not on this machine), or a
    server that fails to start.
    """
    check_bind(host, bool(getattr(app.state, "token_required", False)))
    if not 0 <= int(port) <= 65535:
        raise ServeError(f"--port {port} is out of range (0-65535)")
    sock = _listening_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, int(port)))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {_shown(host)}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.setblocking(False)
    actual_port = int(sock.getsockname()[1])
    server = _Server(_config(app))
    task: asyncio.Task[None] = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not server.started and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    if task.done():
        sock.close()
        exc = None if task.cancelled() else task.exception()
        raise ServeError(f"the HTTP server failed to start on {_shown(host)}:{actual_port}: {exc or 'it stopped'}")
    return RunningServer(f"http://{_shown(host)}:{actual_port}/", host, actual_port, server, task)


async def serve_until_signal(app: "FastAPI", host: str, port: int,
                             on_started: Callable[[RunningServer], None] | None = None) -> None:
    """`start_server`, then serve until SIGINT/SIGTERM (or the server stops), then stop cleanly."""
    running = await start_server(app, host, port)
    if on_started is not None:
        on_started(running)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
            pass
    stopper = asyncio.create_task(stop.wait())
    waiter = asyncio.ensure_future(running.wait())
    try:
        await asyncio.wait({stopper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        waiter.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await running.stop()


def make_server(app: "FastAPI", host: str, port: int) -> uvicorn.Server:
    """An unstarted server for a caller that runs it on a thread of its own (`.run()`, then
    `.should_exit = True`): the same checks and configuration as `start_server`, but uvicorn binds."""
    check_bind(host, bool(getattr(app.state, "token_required", False)))
    if not 0 <= int(port) <= 65535:
        raise ServeError(f"--port {port} is out of range (0-65535)")
    return _Server(_config(app, host=host, port=int(port)))


__all__ = ["RunningServer", "ServeError", "check_bind", "is_loopback", "make_server", "serve_until_signal",
           "start_server"]
