"""The HTTP API under hostile bodies (issue 10), against real servers on 127.0.0.1.

A body is counted as it is read: chunked or not, it stops at 16 MiB with a 413 and the
server's memory stays bounded; the connection survives (the rest of the body is read and
thrown away) unless the client keeps sending past the drain budget. A number no sample can
hold is one record's error, the good samples of the same request are stored, and the
keep-alive connection goes on.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import require  # noqa: E402

require("fastapi")  # with CI=true a missing web extra fails, locally it skips
require("uvicorn")

from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.http import limits  # noqa: E402
from perf_alerts.http.app import MAX_BODY_BYTES  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_http import NOW, LiveServer, seeded_system  # noqa: E402

MiB = 1024 * 1024
SAMPLE = b'{"metric":"limit_metric","value":1.5,"labels":{"agent":"a"}},'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, PerfAlerts]]:
    system = seeded_system(tmp_path_factory.mktemp("limits"))
    with LiveServer(system) as srv:
        yield srv, system


# --------------------------------------------------------------------------- a raw HTTP/1.1 client


class Raw:
    """One TCP connection speaking HTTP/1.1 by hand: chunked bodies of any size, then read the answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send_chunked(self, path: str, total: int, chunk: bytes = SAMPLE * 1000, end: bool = True) -> int:
        """A JSON list of samples of at least `total` bytes, chunked; `end=False` stops mid-body."""
        parts = [b"["]
        sent = 0
        while sent < total:
            parts.append(chunk)
            sent += len(chunk)
        if end:
            parts.append(b'{"metric":"limit_metric","value":1}]')
        self.send_parts(path, parts, end)
        return sent

    def send_parts(self, path: str, parts: list[bytes], end: bool = True) -> None:
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for p in parts:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(p), p))
            if end:
                self.sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading; its answer is already on the way

    def send(self, method: str, path: str, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + body)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before an answer")
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed inside an answer")
            self.buf += data
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def at_eof(self, wait: float = 5.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError, socket.timeout):
            return False


# --------------------------------------------------------------------------- size limits


def test_a_chunked_body_over_the_limit_is_413_and_the_connection_goes_on(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    c = Raw(srv.port)
    try:
        c.send_chunked("/api/v1/metrics", 40 * MiB)  # no Content-Length: only counting can stop it
        status, headers, body = c.response()
        assert status == 413, body
        assert headers["content-type"].startswith("application/json") and "close" not in headers.get("connection", "")
        assert json.loads(body)["error"] == "request body too large (limit 16 MiB)"
        c.send("GET", "/api/v1/status")  # the same connection: the rest of the body was read and dropped
        status, _, body = c.response()
        assert status == 200 and json.loads(body)["rules"] == 2
    finally:
        c.close()
    assert system.store.list_series("limit_metric") == []  # nothing of it was stored


def test_a_body_at_the_limit_is_read(live: tuple[LiveServer, PerfAlerts]) -> None:
    """Counting does not cut short: a valid document of just under 16 MiB is accepted."""
    srv, system = live
    c = Raw(srv.port)
    try:
        doc = b'[{"metric":"at_limit","value":2}' + b" " * (MAX_BODY_BYTES - 40) + b"]"
        doc = doc[:-1] + b" " * (MAX_BODY_BYTES - len(doc)) + b"]"
        assert len(doc) == MAX_BODY_BYTES
        c.send_parts("/api/v1/metrics", [doc[i:i + MiB] for i in range(0, len(doc), MiB)])
        status, _, body = c.response()
        assert status == 200, body
        assert json.loads(body)["accepted"] == 1
    finally:
        c.close()
    assert len(system.store.list_series("at_limit")) == 1


def test_a_declared_length_over_the_limit_is_refused_before_reading(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, _ = live
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.putrequest("POST", "/api/v1/metrics")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"].startswith("request body too large")
    finally:
        conn.close()


def test_a_client_that_stalls_past_the_limit_is_answered_and_disconnected(
        live: tuple[LiveServer, PerfAlerts], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing hangs: past the limit the body is drained for at most DRAIN_SECONDS, then 413 and close."""
    srv, _ = live
    monkeypatch.setattr(limits, "DRAIN_SECONDS", 0.5)
    c = Raw(srv.port)
    try:
        t0 = time.monotonic()
        c.send_chunked("/api/v1/metrics", MAX_BODY_BYTES + 2 * MiB, end=False)  # never finishes its body
        status, headers, _ = c.response()
        assert status == 413 and headers.get("connection") == "close"
        assert c.at_eof() and time.monotonic() - t0 < 10
    finally:
        c.close()


def test_a_body_longer_than_the_drain_budget_gets_connection_close(
        live: tuple[LiveServer, PerfAlerts], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, _ = live
    monkeypatch.setattr(limits, "DRAIN_BYTES", 1 * MiB)
    c = Raw(srv.port)
    try:
        c.send_chunked("/api/v1/metrics", MAX_BODY_BYTES + 4 * MiB, end=False)
        try:
            status, headers, _ = c.response()
        except (ConnectionError, OSError):
            pass  # the server closed with the client's data unread: the kernel may reset before the answer is read
        else:
            assert status == 413 and headers.get("connection") == "close"
    finally:
        c.close()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)  # the server itself is fine
    try:
        conn.request("GET", "/api/v1/status")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def _rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_memory_stays_bounded_for_a_200_mb_chunked_body(tmp_path: Path) -> None:
    """`perf-alerts dashboard` (a real process) takes a 200 MB chunked POST: 413, and its peak
    memory grows by far less than the body (it grew by about 2 GB when the body was read whole)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_ALERTS_", "DISCORD_"))}
    p = subprocess.Popen([sys.executable, "-m", "perf_alerts", "--db", str(tmp_path / "m.db"), "dashboard",
                          "--port", "0"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert m, (first, p.stderr.read() if p.poll() is not None and p.stderr else "")
        port = int(m.group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # warm up: the app's imports
        conn.request("POST", "/api/v1/metrics", body=b'[{"metric":"warm","value":1}]',
                     headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        before = _rss_kib(p.pid, "VmHWM")
        c = Raw(port)
        try:
            sent = c.send_chunked("/api/v1/metrics", 200 * MiB)
            status, _, _ = c.response()
            c.send("GET", "/api/v1/status")
            assert c.response()[0] == 200  # the same connection goes on
        finally:
            c.close()
        grown = (_rss_kib(p.pid, "VmHWM") - before) // 1024
        assert sent >= 200 * MiB and status == 413
        assert grown < 120, f"peak memory grew by {grown} MiB for a {sent // MiB} MiB body"
    finally:
        p.terminate()
        p.communicate(timeout=20)  # waits and closes its pipes (no leaked file)


# --------------------------------------------------------------------------- numbers

HUGE = "1" + "0" * 400  # beyond the float range
LONGER = "1" + "0" * 5000  # beyond what Python's int() reads from text (4,300 digits)


@pytest.mark.parametrize("literal", [HUGE, LONGER, "-" + LONGER, "1" + "0" * 200_000, "1e999", "-1e999"])
@pytest.mark.parametrize("field", ["value", "timestamp"])
def test_a_number_no_sample_can_hold_is_that_records_error(live: tuple[LiveServer, PerfAlerts], field: str,
                                                            literal: str) -> None:
    srv, system = live
    metric = f"num_{field}_{len(literal)}_{literal[0] == '-'}_{'e' in literal}"
    bad = ('{"metric": "%s", "value": %s}' % (metric, literal) if field == "value"
           else '{"metric": "%s", "value": 1, "timestamp": %s}' % (metric, literal))
    good = '{"metric": "%s", "value": %d, "timestamp": %d}'
    body = f"[{good % (metric, 1, NOW - 60)}, {bad}, {good % (metric, 3, NOW - 30)}]".encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/metrics", body=body, headers={"Content-Type": "application/json"})
        sock = conn.sock
        r = conn.getresponse()
        report = json.loads(r.read())
        assert r.status == 200, report  # partial success: the good samples are stored
        assert (report["accepted"], report["rejected"]) == (2, 1)
        (err,) = report["errors"]
        assert err.startswith("record 1: ") and len(err) < 200, err
        assert ("range" in err or "finite" in err), err
        assert r.getheader("connection") != "close"
        # only the bad record: 400 with the same report as detail
        conn.request("POST", "/api/v1/metrics", body=f"[{bad}]".encode(), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        got = json.loads(r.read())
        assert r.status == 400 and got["error"] == "no valid samples in the request"
        assert got["detail"]["rejected"] == 1 and got["detail"]["errors"][0].startswith("record 0: ")
        # the same keep-alive connection answers the next request
        conn.request("GET", "/api/v1/status")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["rules"] == 2
        assert conn.sock is sock, "the server dropped the keep-alive connection"
    finally:
        conn.close()
    (series,) = system.store.list_series(metric)
    t, v = system.store.query([series.id], 0, 1e12).of(series.id)
    assert sorted(v.tolist()) == [1.0, 3.0]


@pytest.mark.parametrize("path,body,status", [
    ("/api/v1/silences", '{"matchers": {"agent": "x"}, "duration": %s}' % LONGER, 422),
    ("/api/v1/silences", '{"matchers": {"agent": "x"}, "duration": %s}' % HUGE, 400),  # "out of range"
    ("/api/v1/silences", '{"matchers": {"agent": "x"}, "ends_at": %s}' % LONGER, 422),
    ("/api/v1/alerts/0123/ack", '{"by": %s}' % LONGER, 422),
    ("/api/v1/metrics", '[{"metric": "x", "value": 1, "labels": {"a": %s}}]' % LONGER, 400),
    ("/api/v1/metrics", "[" * 200_000 + "]" * 200_000, 400),  # nested too deeply for the parser
    ("/api/v1/metrics", b'[{"metric": "x", "value": 1, "labels": {"a": "\xff"}}]', 400),  # not UTF-8
])
def test_hostile_json_anywhere_is_a_4xx_on_a_kept_connection(live: tuple[LiveServer, PerfAlerts], path: str,
                                                              body: str | bytes, status: int) -> None:
    srv, _ = live
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", path, body=body if isinstance(body, bytes) else body.encode(),
                     headers={"Content-Type": "application/json"})
        sock = conn.sock
        r = conn.getresponse()
        got: dict[str, Any] = json.loads(r.read())
        assert r.status == status, got
        assert isinstance(got["error"], str) and len(json.dumps(got)) < 5000  # the number is not echoed back
        conn.request("GET", "/api/v1/status")
        assert conn.getresponse().status == 200 and conn.sock is sock
    finally:
        conn.close()


def test_long_integer_placeholder() -> None:
    n = limits.loads('[1, %s, -%s]' % (LONGER, LONGER))
    assert n[0] == 1 and repr(n[1]) == "<an integer of 5,001 digits>" and n[2].digits == 5001
    with pytest.raises(OverflowError):
        float(n[1])
    with pytest.raises(ValueError):
        str(n[1])
    assert limits.loads(b'{"a": 1e999}')["a"] == float("inf")  # rejected later as not finite
    for bad in (b"\xff", b"[" * 100_000, b"{"):
        with pytest.raises(json.JSONDecodeError):
            limits.loads(bad)
