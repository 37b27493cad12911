"""`Store.last_timestamps` (the `absent` rule's lookup) by an index seek per series gives the
same answers as the previous `MAX(ts) … GROUP BY series_id` query (issue 14, item 6), on SQLite
and on PostgreSQL (conftest's `make_store`); the query plan is SQLite's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf_alerts.config import parse_config
from perf_alerts.rules.evaluate import Evaluator
from perf_alerts.store import Store

T0 = 1_800_000_000.0


# the previous implementation, kept once: in the benchmark, as its baseline
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from absent_cost import old_last_timestamps  # noqa: E402


def _fill(s: Store) -> Store:
    ids = list(s.series_ids([("heartbeat", json.dumps({"agent": f"a{i}"})) for i in range(1000)]).values())
    rng = np.random.default_rng(7)
    rows: list[tuple[int, float, float]] = []
    for k, sid in enumerate(ids):
        if k % 7 == 0:
            continue  # a series without samples
        ts = T0 - 7200.0 + np.arange(0, 10800.0, 60.0)  # two hours before T0 to one hour after
        keep = rng.random(len(ts)) > 0.3  # gaps
        if k % 5 == 0:
            keep &= ts > T0  # only samples after T0
        if k % 11 == 0:
            keep &= ts < T0 - 3000.0  # stopped long ago
        rows.extend((sid, float(t), 1.0) for t in ts[keep])
    s.insert_rows(rows)
    return s


@pytest.fixture()
def store(make_store: Any) -> Store:
    return _fill(make_store())


@pytest.fixture()
def sqlite_store(tmp_path: Path) -> Any:
    s = _fill(Store(tmp_path / "s.db"))
    yield s
    s.close()


@pytest.mark.parametrize("at", [T0, T0 - 7200.0, T0 - 7200.5, T0 - 10_000.0, T0 + 3600.0, T0 + 99_999.0, T0 + 30.0])
def test_same_answers_as_the_previous_query(store: Store, at: float) -> None:
    ids = [int(r[0]) for r in store.con.execute("SELECT id FROM series").fetchall()]
    ids += [ids[3], ids[3], 10_000_000, -1]  # duplicates and ids that are not series
    new = store.last_timestamps(ids, at)
    assert new == old_last_timestamps(store, ids, at)
    assert store.last_timestamps([], at) == {}
    assert store.last_timestamps(ids[:1], at) == old_last_timestamps(store, ids[:1], at)


def test_edge_cases_by_hand(make_store: Any) -> None:
    s = make_store()
    a, b, c = s.series_ids([("m", "{}"), ("m", '{"x":"1"}'), ("m", '{"x":"2"}')]).values()
    s.insert_rows([(a, 100.0, 1.0), (a, 200.0, 1.0), (a, 300.0, 1.0), (b, 400.0, 1.0)])
    assert s.last_timestamps([a, b, c], 200.0) == {a: 200.0}  # at a sample's own instant: that sample
    assert s.last_timestamps([a, b, c], 299.9) == {a: 200.0}  # samples after `at` are ignored
    assert s.last_timestamps([a, b, c], 1e12) == {a: 300.0, b: 400.0}  # c never reported
    assert s.last_timestamps([a, b, c], 99.0) == {}


def test_absent_rule_results_unchanged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config("rules:\n  - name: Silent\n    type: absent\n    metric: heartbeat\n    window: 10m\n")
    ev = Evaluator(store, cfg)
    for at in (T0, T0 + 1800.0):
        new = [(r.labels, r.value, r.active, r.holding, r.detail, r.fingerprint) for r in ev.evaluate(cfg.rules[0], at)]
        with monkeypatch.context() as m:
            m.setattr(store, "last_timestamps", lambda ids, before: old_last_timestamps(store, ids, before))
            old = [(r.labels, r.value, r.active, r.holding, r.detail, r.fingerprint) for r in ev.evaluate(cfg.rules[0], at)]
        assert new == old
        assert any(r[2] for r in new) and not all(r[2] for r in new)


def test_one_index_seek_per_series(sqlite_store: Store) -> None:
    """The statement SQLite runs searches the (series_id, ts) key from a correlated subquery
    (one seek per series, stopping at the first row), and never scans samples."""
    seen: list[str] = []
    sqlite_store.con.set_trace_callback(seen.append)
    try:
        sqlite_store.last_timestamps([1, 2, 3], T0)
    finally:
        sqlite_store.con.set_trace_callback(None)
    (sql,) = [q for q in seen if "samples" in q]
    plan = " | ".join(str(r[3]) for r in sqlite_store.con.execute("EXPLAIN QUERY PLAN " + sql))
    assert "CORRELATED SCALAR SUBQUERY" in plan, plan
    assert "SEARCH samples USING PRIMARY KEY (series_id=? AND ts<?)" in plan, plan
    assert "SCAN samples" not in plan, plan
