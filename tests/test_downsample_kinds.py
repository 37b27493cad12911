"""Downsampling by metric kind (issue 11): events keep their sum and count, gauges their
mean, min and max, counters their last value and their increases — so a week's cost and
call count read the same before and after retention thins it. On SQLite and on PostgreSQL
(conftest's `make_store`), but for the migration of an old SQLite file."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from perf_alerts.analytics.stats import block_aggregate, group_quantile, summarize
from perf_alerts.config import default_metric_meta, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.store import SampleBlock, Store
from perf_alerts.timeutil import ManualClock

DAY = 86400.0
STEP = 300.0
T0 = 1_800_000_000.0  # a multiple of 300
EPS = 1e-3  # windows (b - EPS, c - EPS] with b, c on bucket edges hold whole buckets


def _week_of_samples(store: Store, rng: np.random.Generator) -> dict[str, list[int]]:
    """Ten days of a crew: cost and latency events at random instants, CPU every minute, a
    request counter with resets."""
    ids: dict[str, list[int]] = {}
    rows: list[tuple[int, float, float]] = []

    def add(metric: str, labels: dict[str, str], ts: np.ndarray, vals: np.ndarray) -> None:
        sid = store.series_ids([(metric, json.dumps(labels, sort_keys=True))])[(metric, json.dumps(labels, sort_keys=True))]
        ids.setdefault(metric, []).append(sid)
        rows.extend(zip([sid] * len(ts), ts.tolist(), vals.tolist()))

    start = T0 - 10 * DAY
    for agent in ("researcher", "writer"):
        # events never fall on a bucket edge (the test windows are left-open at the edges)
        ts = np.sort(np.unique(np.floor(rng.uniform(start, T0, 6000)) + 0.5))
        add("crew_cost_usd", {"agent": agent}, ts, rng.gamma(2.0, 0.01, ts.size))
        add("crew_llm_call_seconds", {"agent": agent}, ts, rng.lognormal(0.5, 0.6, ts.size))
    minutes = np.arange(start + 30, T0, 60.0)
    add("host_cpu_percent", {"host": "h1"}, minutes, 50 + 30 * np.sin(minutes / 3600) + rng.normal(0, 5, minutes.size))
    inc = rng.poisson(3, minutes.size).astype(float)
    total = np.cumsum(inc)
    for r in sorted(rng.choice(np.arange(1, minutes.size), 6, replace=False)):  # restarts: it starts again from 0
        total[r:] -= total[r - 1]
    add("requests_total", {"svc": "api"}, minutes, total)
    store.insert_rows(rows)
    return ids


def _agg(store: Store, ids: list[int], start: float, end: float, how: str, kind: str) -> np.ndarray:
    blk = store.query(ids, start, end)
    return block_aggregate(blk, how, end - start, kind)[1]


def test_a_weeks_cost_total_and_call_count_survive_downsampling(make_store: Any) -> None:
    store = make_store()
    ids = _week_of_samples(store, np.random.default_rng(11))
    # the previous week of a weekly summary, and day-sized windows inside it
    windows = [(T0 - 9 * DAY, T0 - 2 * DAY)] + [(T0 - d * DAY, T0 - (d - 1) * DAY) for d in range(9, 2, -1)]
    windows = [(a - EPS, b - EPS) for a, b in windows]
    checks = [("crew_cost_usd", "event", ("sum", "count", "avg", "rate", "min", "max")),
              ("crew_llm_call_seconds", "event", ("sum", "count", "avg", "min", "max")),
              ("host_cpu_percent", "gauge", ("avg", "min", "max", "count"))]
    before = {(m, how, w): _agg(store, ids[m], *w, how, kind) for m, kind, hows in checks for how in hows
              for w in windows}
    rows_before = store.sample_count()

    rep = store.apply_retention(T0, retention=30 * DAY, downsample_after=2 * DAY, step=STEP)
    assert rep.downsampled > 0 and store.sample_count() < 0.8 * rows_before
    old = store.query(ids["crew_cost_usd"], T0 - 9 * DAY, T0 - 2 * DAY)
    assert old.n is not None and old.n.max() > 1  # the rows really stand for several samples now
    for (m, how, w), want in before.items():
        got = _agg(store, ids[m], *w, how, default_metric_meta(m).kind)
        assert np.allclose(got, want, rtol=1e-12, atol=1e-12), (m, how, w, got, want)

    # the week's cost and calls through the block totals too, and the raw recent past is untouched
    week = store.query(ids["crew_cost_usd"], T0 - 9 * DAY - EPS, T0 - 2 * DAY - EPS)
    assert week.count == int(before[("crew_cost_usd", "count", windows[0])].sum())
    assert abs(week.total - float(before[("crew_cost_usd", "sum", windows[0])].sum())) < 1e-9
    recent = store.query(ids["crew_cost_usd"], T0 - DAY, T0)
    assert recent.n is None  # recent windows (every evaluation) read no weights

    # summaries of a downsampled series: the raw count, mean, min and max
    sid = ids["crew_llm_call_seconds"][0]
    raw_mean = before[("crew_llm_call_seconds", "avg", windows[0])][0]
    one = store.query([sid], *windows[0]).series(sid)
    s = summarize(one.ts, one.value, n=one.n, lo=one.lo, hi=one.hi)
    assert s.count == int(before[("crew_llm_call_seconds", "count", windows[0])][0])
    assert abs((s.mean or 0) - raw_mean) < 1e-9
    assert s.max == before[("crew_llm_call_seconds", "max", windows[0])][0]


def test_counters_keep_their_last_value_and_every_increase(make_store: Any) -> None:
    store = make_store()
    ids = _week_of_samples(store, np.random.default_rng(5))
    sid = ids["requests_total"][0]
    raw = store.query([sid], 0, T0 + 1)
    store.apply_retention(T0, retention=30 * DAY, downsample_after=2 * DAY, step=STEP)
    thin = store.query([sid], 0, T0 + 1)
    old = thin.ts < T0 - 2 * DAY
    assert np.array_equal(thin.ts[~old], raw.ts[raw.ts >= T0 - 2 * DAY])  # the recent past stays raw
    assert int(old.sum()) < int((raw.ts < T0 - 2 * DAY).sum()) / 4
    # every bucket's last value is kept, at its own instant
    edge = T0 - 2 * DAY
    raw_old = raw.ts < edge
    b = np.floor(raw.ts[raw_old] / STEP)
    last_of_bucket = np.r_[b[1:] != b[:-1], True]
    assert set(raw.ts[raw_old][last_of_bucket].tolist()) <= set(thin.ts[old].tolist())
    # the increase from any kept sample to the end is the raw one (resets included)
    for t in thin.ts[old][:: max(1, int(old.sum()) // 25)]:
        w = T0 - t + EPS
        a = _agg(store, [sid], t - EPS, T0, "rate", "counter")
        raw_inc = np.diff(raw.value[raw.ts >= t])
        raw_rate = float(np.where(raw_inc < 0, raw.value[raw.ts >= t][1:], raw_inc).sum()) / w
        assert abs(a[0] - raw_rate) < 1e-9, t
    assert _agg(store, [sid], T0 - 3 * DAY, T0 - 2 * DAY, "last", "counter")[0] == \
        raw.value[raw.ts <= T0 - 2 * DAY][-1]


def test_thinning_twice_changes_nothing_and_config_kinds_are_used(make_store: Any) -> None:
    cfg = parse_config(textwrap.dedent("""
    global: {retention: 30d, downsample_after: 2d, downsample_step: 5m}
    metrics:
      jobs_done: {kind: counter}
    """))
    assert cfg.metric_meta("crew_cost_usd").kind == "event" and cfg.metric_meta("host_cpu_percent").kind == "gauge"
    assert cfg.metric_meta("x_total").kind == "counter" and cfg.metric_meta("jobs_done").kind == "counter"
    pa = PerfAlerts(cfg, make_store(), ManualClock(T0))
    ts = np.arange(T0 - 4 * DAY + 30, T0, 60.0)
    pa.store.insert_samples([])
    sid = pa.store.series_ids([("jobs_done", "{}")])[("jobs_done", "{}")]
    pa.store.insert_rows([(sid, float(t), float(i)) for i, t in enumerate(ts)])
    pa.apply_retention()
    first = pa.store.query([sid], 0, T0 + 1)
    assert first.value[first.ts < T0 - 2 * DAY].tolist() == \
        [float(i) for i, t in enumerate(ts) if t < T0 - 2 * DAY and (t + 60) % STEP == 30]  # last per bucket
    pa.store.kv_set("retention", None)  # a run cut short redoes its range
    pa.apply_retention()
    again = pa.store.query([sid], 0, T0 + 1)
    assert np.array_equal(first.ts, again.ts) and np.array_equal(first.value, again.value)


def test_weighted_quantiles_equal_the_expanded_samples() -> None:
    rng = np.random.default_rng(3)
    sid = np.repeat([1, 2, 3], [5, 1, 8])
    v = rng.normal(size=sid.size)
    n = rng.integers(1, 6, sid.size)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        got = group_quantile(sid, v, q, weights=n)
        want = [np.quantile(np.repeat(v[sid == s], n[sid == s]), q) for s in (1, 2, 3)]
        assert np.allclose(got, want), q
    blk = SampleBlock(sid, np.arange(sid.size, dtype=float), v, n, v - 1, v + 1)
    assert blk.count == int(n.sum()) and abs(blk.total - float((v * n).sum())) < 1e-12
    assert np.allclose(block_aggregate(blk, "p95", 60)[1], [np.quantile(np.repeat(v[sid == s], n[sid == s]), 0.95)
                                                            for s in (1, 2, 3)])


def test_an_old_store_file_gains_the_weight_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("""
    CREATE TABLE series (id INTEGER PRIMARY KEY, metric TEXT NOT NULL, labels TEXT NOT NULL, UNIQUE (metric, labels));
    CREATE TABLE samples (series_id INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
                          PRIMARY KEY (series_id, ts)) WITHOUT ROWID;
    INSERT INTO series VALUES (1, 'crew_cost_usd', '{}');
    INSERT INTO samples VALUES (1, 100.0, 1.5), (1, 160.0, 2.5);
    """)
    con.commit()
    con.close()
    store = Store(path)
    cols = [r[1] for r in store.con.execute("PRAGMA table_info(samples)")]
    assert cols[-3:] == ["n", "lo", "hi"]
    blk = store.query([1], -1, 1000)
    assert blk.count == 2 and blk.total == 4.0
    store.apply_retention(100000.0, retention=0, downsample_after=1000, step=STEP)
    blk = store.query([1], -1, 1000)
    assert (len(blk), blk.count, blk.total, float(blk.lo[0]), float(blk.hi[0])) == (1, 2, 4.0, 1.5, 2.5)  # type: ignore[index]


def test_health_over_a_downsampled_day_counts_the_raw_errors_and_calls(make_store: Any) -> None:
    from perf_alerts.insights import agent_health

    cfg = parse_config("rules: []\n")
    store = make_store()
    rng = np.random.default_rng(8)
    ts = np.sort(np.floor(rng.uniform(T0 - 6 * DAY, T0 - 4 * DAY, 3000)) + 0.5)
    lab = json.dumps({"agent": "writer"})
    ids = store.series_ids([("crew_task_seconds", lab), ("crew_task_failures", lab)])
    fail = ts[rng.random(ts.size) < 0.1]
    store.insert_rows([(ids[("crew_task_seconds", lab)], float(t), float(rng.gamma(3, 5))) for t in ts] +
                      [(ids[("crew_task_failures", lab)], float(t), 1.0) for t in fail])
    at = T0 - 4 * DAY - EPS

    def errors() -> str:
        h = agent_health(store, cfg, at, 2 * DAY, [], "writer", recent=DAY)
        return next(c.evidence for c in h.components if c.name == "errors")

    before = errors()
    store.apply_retention(T0, retention=30 * DAY, downsample_after=2 * DAY, step=STEP)
    assert store.query(list(ids.values()), at - DAY, at).n is not None
    assert errors() == before and before.startswith(f"{int((fail > at - DAY).sum())} errors in")
