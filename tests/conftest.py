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
