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
