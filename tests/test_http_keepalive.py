"""A kept-alive connection is as fast as a new one on the server `perf-alerts dashboard` and the
daemon run (`http.server.start_server`).

OTLP exporters, Prometheus and the dashboard's own page keep their connections open. The server
used to listen on a socket made with protocol 0, so asyncio never set TCP_NODELAY on the
connections it accepted: every response after the first on a connection waited ~40 ms (the
client's delayed ACK of the response head, Nagle holding the body), against ~1-4 ms on a new
connection. The bound here is relative to the same server's new-connection time, so a loaded
machine slows both sides alike; the stall it catches is at least 40 ms (Linux's minimum delayed
ACK) on every request.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import require  # noqa: E402

require("fastapi")
require("uvicorn")

from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock, parse_timestamp  # noqa: E402

NOW = parse_timestamp("2026-03-02T12:00:00Z")
REQUESTS = 20
SLACK_MS = 10.0  # a kept-alive request may cost this much more than a new connection's (noise)

CONFIG = """\
rules:
  - name: HighLatency
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 10m
    op: ">"
    value: 30
    severity: critical
"""


def _system(tmp_path: Path) -> PerfAlerts:
    """An agent whose task time broke 30 s: one firing alert for /api/v1/alerts to list."""
    pa = PerfAlerts(parse_config(CONFIG, "keepalive.yaml", env={}), Store(tmp_path / "ka.db"), ManualClock(NOW))
    rep = pa.record_many([{"metric": "crew_task_seconds", "value": 45.0, "timestamp": NOW - 60 * i,
                           "labels": {"agent": "researcher"}} for i in range(10)])
    assert rep.rejected == 0, rep.errors
    pa.evaluate()
    return pa


class Served:
    """`create_app(system)` through `start_server` (what `dashboard` and `run` use), on a thread
    with its own event loop, so this thread can be the client."""

    def __init__(self, system: PerfAlerts) -> None:
        self.system = system
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from perf_alerts.http.app import create_app
        from perf_alerts.http.server import start_server

        try:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            running = await start_server(create_app(self.system), "127.0.0.1", 0)
            self.port = running.port
        except BaseException as e:  # shown by __enter__
            self._error = e
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await running.stop()

    def __enter__(self) -> "Served":
        self._thread.start()
        assert self._ready.wait(15), "the server did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def _request(con: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
             headers: dict[str, str]) -> http.client.HTTPResponse:
    con.request(method, path, body=body, headers=headers)
    r = con.getresponse()
    data = r.read()
    assert r.status == 200, (method, path, r.status, data[:300])
    return r


def _latencies(port: int, method: str, path: str, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[list[float], list[float]]:
    """Milliseconds of REQUESTS requests on one kept-alive connection (after a first one that
    opens it), and of REQUESTS requests each on a new connection."""
    hdrs = dict(headers or {})
    kept: list[float] = []
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _request(con, method, path, body, hdrs)
        sock = con.sock
        for _ in range(REQUESTS):
            t = time.perf_counter()
            r = _request(con, method, path, body, hdrs)
            kept.append((time.perf_counter() - t) * 1000)
            assert not r.will_close and con.sock is sock, "the server closed the kept-alive connection"
    finally:
        con.close()
    new: list[float] = []
    for _ in range(REQUESTS):
        t = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            _request(c, method, path, body, hdrs)
        finally:
            c.close()
        new.append((time.perf_counter() - t) * 1000)
    return kept, new


def _assert_no_penalty(what: str, measure: Callable[[], tuple[list[float], list[float]]]) -> None:
    kept, new = measure()
    k, n = statistics.median(kept), statistics.median(new)
    assert k <= n + SLACK_MS, (f"{what}: kept-alive median {k:.1f} ms vs new-connection median {n:.1f} ms "
                               f"(kept-alive: {sorted(round(x, 1) for x in kept)})")


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    with Served(_system(tmp_path)) as s:
        yield s


def test_kept_alive_api_and_scrape_requests_are_as_fast_as_new_connections(served: Served) -> None:
    """The dashboard's and an API client's GETs, a Prometheus scrape, a JSON ingest client's POSTs."""
    _assert_no_penalty("GET /api/v1/alerts", lambda: _latencies(served.port, "GET", "/api/v1/alerts"))
    _assert_no_penalty("GET /metrics", lambda: _latencies(served.port, "GET", "/metrics"))
    sample = json.dumps([{"metric": "crew_task_seconds", "value": 12.0, "timestamp": NOW,
                          "labels": {"agent": "writer"}}]).encode()
    _assert_no_penalty("POST /api/v1/metrics", lambda: _latencies(
        served.port, "POST", "/api/v1/metrics", sample, {"Content-Type": "application/json"}))


def test_kept_alive_otlp_export_is_as_fast_as_a_new_connection(served: Served) -> None:
    """An OTLP/HTTP exporter (JSON encoding: its `{}` answer has a body) reuses its connection."""
    require("opentelemetry.proto")
    doc = {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "crew"}}]},
        "scopeMetrics": [{"metrics": [{"name": "bench.gauge", "gauge": {"dataPoints": [
            {"asDouble": 1.5, "timeUnixNano": str(int(NOW * 1e9))}]}}]}]}]}
    _assert_no_penalty("POST /v1/metrics (OTLP/JSON)", lambda: _latencies(
        served.port, "POST", "/v1/metrics", json.dumps(doc).encode(), {"Content-Type": "application/json"}))
