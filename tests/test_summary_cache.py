"""The executive summary cache behind `GET /api/v1/summary` (issue 14, item 8): a repeated request in the
same state of the store and minute is served from the cache and equals a fresh computation; new samples
(from this process or another connection), a new evaluation, an acknowledgement or a new minute recompute.
On a SQLite file, SQLite's `:memory:` and PostgreSQL (the change marker differs on each)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from perf_alerts import catalog
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.summary import ExecutiveSummary, executive_summary
from perf_alerts.manage.summary_cache import SummaryCache
from perf_alerts.model import Sample
from perf_alerts.store import Store
from perf_alerts.store.changes import ChangeMarker
from perf_alerts.timeutil import ManualClock

END = 1_759_999_990.0  # 10 s into a minute: advancing 20 s stays in it
CFG = """
rules:
  - name: ToolErrors
    type: threshold
    metric: crew_tool_errors
    aggregate: sum
    window: 10m
    op: ">="
    value: 3
    severity: warning
"""


def _system(db: Any) -> PerfAlerts:
    s = PerfAlerts(parse_config(CFG), Store(db), ManualClock(END))
    samples = []
    for i in range(180):  # 3 h of one call a minute for two agents, an error burst in the last 8 minutes
        t = END - 3 * 3600 + i * 60
        for agent, lat in (("researcher", 6.0), ("writer", 2.0)):
            samples.append(Sample(catalog.LLM_SECONDS, {"agent": agent, "model": "gpt-4o"}, t, lat + (i % 5) * 0.1))
            samples.append(Sample(catalog.TOOL_SECONDS, {"agent": agent, "tool": "t"}, t, 1.0))
        if END - 9 * 60 < t <= END:
            samples.append(Sample(catalog.TOOL_ERRORS, {"agent": "writer", "tool": "t"}, t, 1.0))
    s.store.insert_samples(samples)
    s.evaluate()
    assert s.alerts(["firing"]), "the burst fires"
    return s


@pytest.fixture(params=["file", "memory", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the system's store lives: a SQLite file, SQLite's :memory: or a fresh PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "c.db") if request.param == "file" else ":memory:"


@pytest.fixture
def system(location: str) -> Iterator[PerfAlerts]:
    s = _system(location)
    yield s
    s.store.close()


@pytest.fixture
def cache(system: PerfAlerts) -> Iterator[SummaryCache]:
    c = SummaryCache(system)
    yield c
    c.close()


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x.to_dict() if isinstance(x, ExecutiveSummary) else x, default=str))


def test_a_repeated_request_is_served_from_the_cache_and_equals_a_fresh_computation(
        system: PerfAlerts, cache: SummaryCache) -> None:
    first = cache.get(86400.0)
    assert (cache.hits, cache.misses) == (0, 1)
    system.clock.advance(20)  # type: ignore[attr-defined]  # same minute, nothing written
    second = cache.get(86400.0)
    assert (cache.hits, cache.misses) == (1, 1)
    assert _json(second) == _json(first)
    # the cached summary is the summary of the period ending at the first request of the minute
    assert _json(second) == _json(executive_summary(system, period_seconds=86400.0, at=END))
    second.headline.append("changed by a caller")  # callers get copies: the cache is not changed
    assert _json(cache.get(86400.0)) == _json(first)
    # another period is another entry
    other = cache.get(3 * 3600.0)
    assert cache.misses == 2 and other.period["length"] == "3h"


def test_new_samples_from_this_process_invalidate(system: PerfAlerts, cache: SummaryCache) -> None:
    cache.get(86400.0)
    system.store.insert_samples([Sample(catalog.TOOL_ERRORS, {"agent": "researcher", "tool": "t"}, END - 5, 1.0)])
    after = cache.get(86400.0)
    assert cache.misses == 2
    assert _json(after) == _json(executive_summary(system, period_seconds=86400.0, at=END))


def test_new_samples_from_another_thread_and_another_connection_invalidate(
        system: PerfAlerts, cache: SummaryCache, location: str) -> None:
    cache.get(86400.0)
    t = threading.Thread(target=system.store.insert_samples,
                         args=([Sample(catalog.LLM_SECONDS, {"agent": "writer", "model": "gpt-4o"}, END - 1, 60.0)],))
    t.start()
    t.join()
    cache.get(86400.0)
    assert cache.misses == 2
    if location != ":memory:":  # another process's handle on the same store (the daemon, the CLI, a replica)
        other = Store(location)
        other.insert_samples([Sample(catalog.LLM_SECONDS, {"agent": "writer", "model": "gpt-4o"}, END - 2, 61.0)])
        other.close()
        fresh = cache.get(86400.0)
        assert cache.misses == 3
        assert _json(fresh) == _json(executive_summary(system, period_seconds=86400.0, at=END))


def test_a_new_evaluation_invalidates(system: PerfAlerts, cache: SummaryCache) -> None:
    cache.get(86400.0)
    last = system.store.kv_get("last_evaluation")
    system.clock.advance(10)  # type: ignore[attr-defined]  # the same minute
    system.evaluate()
    assert system.store.kv_get("last_evaluation") != last
    cache.get(86400.0)
    assert cache.misses == 2


def test_an_acknowledgement_and_a_new_minute_invalidate(system: PerfAlerts, cache: SummaryCache) -> None:
    first = cache.get(86400.0)
    assert first.mtta["count"] == 0
    fp = system.alerts(["firing"])[0].fingerprint
    system.ack(fp, by="test")
    acked = cache.get(86400.0)
    assert cache.misses == 2 and acked.mtta["count"] == 1
    system.clock.advance(60)  # type: ignore[attr-defined]  # the next minute: the window moved
    later = cache.get(86400.0)
    assert cache.misses == 3 and later.period["end"] != acked.period["end"]


def test_the_marker_moves_on_every_commit_and_only_then(system: PerfAlerts) -> None:
    m = ChangeMarker(system.store)
    try:
        a = m.marker()
        system.store.kv_get("last_evaluation")
        executive_summary(system, period_seconds=86400.0)  # reading, the summary included, writes nothing
        assert m.marker() == a
        system.store.kv_set("x", 1)
        assert m.marker() != a
    finally:
        m.close()


def test_the_endpoint_serves_the_cache(tmp_path: Path) -> None:
    from conftest import require

    require("fastapi")
    require("uvicorn")
    import httpx
    from test_http import LiveServer

    system = _system(tmp_path / "web.db")
    with LiveServer(system) as srv, httpx.Client(base_url=srv.url) as c:
        r1 = c.get("/api/v1/summary", params={"period": "1d"})
        assert r1.status_code == 200, r1.text
        r2 = c.get("/api/v1/summary", params={"period": "1d"})
        cache = srv.server.config.app.state.summary_cache
        assert (cache.hits, cache.misses) == (1, 1)
        assert r2.json() == r1.json()
        # the response equals a fresh computation at the same instant, through the same JSON encoding
        from perf_alerts.http.app import SafeJSONResponse

        fresh = json.loads(SafeJSONResponse(executive_summary(system, period_seconds=86400.0, at=END).to_dict()).body)
        assert r2.json() == fresh
        assert c.post("/api/v1/metrics", json=[{"metric": catalog.TOOL_ERRORS, "value": 1, "timestamp": END - 3,
                                                 "labels": {"agent": "writer", "tool": "t"}}]).status_code == 200
        c.get("/api/v1/summary", params={"period": "1d"})
        assert cache.misses == 2
