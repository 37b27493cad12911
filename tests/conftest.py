"""Shared fixtures. Keep each fixture small and clearly named; add new ones below."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

# SPEC §9: CrewAI telemetry and tracing are off in tests (inherited by subprocesses too).
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")  # no OpenTelemetry export either: tests never reach the network


def require(module: str) -> Any:
    """Import an optional dependency the tests need: skipped locally when it is not installed,
    a failure with CI=true (the import error is shown), so a broken import never hides tests in CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module)


# The rule from the issue, verbatim: the shape users copy into config/alerting.yaml.
ISSUE_RULE_YAML = """\
rules:
  - name: HighLatency
    type: threshold
    metric: crew_task_seconds
    matchers: {agent: researcher}
    aggregate: p95
    window: 5m
    op: ">"
    value: 30
    for: 2m
    severity: critical
    annotations: {summary: "{{ labels.agent }} p95 task time {{ value }}s"}
"""


@pytest.fixture
def issue_rule_yaml() -> str:
    """The issue's sample HighLatency rule as YAML text."""
    return ISSUE_RULE_YAML


@pytest.fixture
def tmp_store(tmp_path: Path) -> Any:
    """A fresh SQLite store in the test's temp directory."""
    from perf_alerts.store import Store

    store = Store(tmp_path / "store.db")
    yield store
    store.close()


@pytest.fixture
def stored_samples() -> Callable[[Any], list[tuple[str, dict[str, str], float, float]]]:
    """`stored_samples(store)` → every stored sample as (metric, labels, ts, value), sorted."""

    def read(store: Any) -> list[tuple[str, dict[str, str], float, float]]:
        rows = store.con.execute(
            "SELECT s.metric, s.labels, x.ts, x.value FROM samples x JOIN series s ON s.id = x.series_id"
        ).fetchall()
        return sorted(((m, json.loads(lab), ts, v) for m, lab, ts, v in rows), key=lambda r: (r[0], sorted(r[1].items()), r[2]))

    return read



# --------------------------------------------------------------------------- both backends
# The store-facing tests run on SQLite and on PostgreSQL (issue 12): `store_url` is a SQLite file
# in tmp_path or a fresh PostgreSQL database, `make_store()` opens a Store on it. PostgreSQL is a
# throwaway server started once per run (tests/pg_server.py; PERF_ALERTS_TEST_PG=postgresql://…
# uses an existing one instead). Without it the postgresql variants skip locally and fail with CI=true.
import pg_server as _pg


@pytest.fixture(scope="session")
def pg_server() -> Any:
    """The session's PostgreSQL server (`.url`, `.create_database(name)`, `.restart()`, …)."""
    try:
        server = _pg.launch()
    except _pg.PgUnavailable as e:
        reason = str(e)
    else:
        with server:
            yield server
        return
    if _pg.ci():
        pytest.fail(f"PostgreSQL is required with CI=true: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture
def pg_url(pg_server: Any, request: pytest.FixtureRequest) -> Any:
    """A fresh empty PostgreSQL database for this test (dropped afterwards); its URL."""
    url = pg_server.create_database(request.node.name)
    yield url
    if pg_server.owned and not pg_server.running:  # a test that stopped the server and failed
        pg_server.start()
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's store lives: a SQLite file path in tmp_path, or a fresh PostgreSQL URL."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "store.db")


@pytest.fixture
def new_store_url(store_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """`new_store_url()` → one more empty store location on store_url's backend (another SQLite
    file, another PostgreSQL database dropped afterwards): for tests that need several stores."""
    server = request.getfixturevalue("pg_server") if store_url.startswith("postgresql://") else None
    made: list[str] = []

    def new() -> str:
        if server is not None:
            made.append(server.create_database(request.node.name))
        else:
            made.append(str(tmp_path / f"store-{len(made) + 1}.db"))
        return made[-1]

    yield new
    if server is not None and made:
        if server.owned and not server.running:
            server.start()
        for url in made:
            server.drop_database(url)


@pytest.fixture
def make_store(store_url: str, new_store_url: Any) -> Any:
    """`make_store()` → a Store opened on store_url (call again for a second handle on the same
    database, or pass another location, e.g. new_store_url()); every one is closed at teardown,
    before the databases go."""
    from perf_alerts.store import Store

    opened: list[Any] = []

    def make(location: Any = None) -> Any:
        store = Store(store_url if location is None else location)
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        store.close()


# --------------------------------------------------------------------------- no network
# Tests talk only to servers they start on this machine. Any other connection from the
# test process fails loudly, so a test (or a library it calls) cannot quietly reach the
# internet — the crew tests use a scripted LLM, Discord is the local fake.
import ipaddress as _ipaddress
import socket as _socket

_real_connect = _socket.socket.connect
_real_connect_ex = _socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return _ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: not local


def _guarded_connect(self: _socket.socket, address: object) -> None:
    if not _is_local(address):
        raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: _socket.socket, address: object) -> int:
    if not _is_local(address):
        raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


_socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
_socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
