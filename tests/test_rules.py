"""Every rule type firing and not firing, on a real SQLite store with an injected clock."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import Sample
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0


def system(tmp_path: Path, rule_yaml: str, name: str = "s.db") -> tuple[PerfAlerts, ManualClock]:
    cfg = parse_config("rules:\n" + textwrap.indent(textwrap.dedent(rule_yaml), "  "))
    clock = ManualClock(T0)
    return PerfAlerts(cfg, Store(tmp_path / name), clock), clock


def load(pa: PerfAlerts, metric: str, ts: np.ndarray, values: np.ndarray, **labels: str) -> None:
    pa.store.insert_samples(Sample(metric, dict(labels), float(t), float(v)) for t, v in zip(ts, values))


def firing(pa: PerfAlerts, at: float) -> list[dict[str, str]]:
    res = pa.evaluate(at=at)
    assert not res.errors, res.errors
    return [a.labels for a in res.active if a.state.value == "firing"]


# --------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("aggregate,op,value,expect", [
    ("avg", ">", 20.0, True), ("avg", ">", 30.0, False),
    ("max", ">=", 50.0, True), ("min", "<", 5.0, False), ("min", "<=", 10.0, True),
    ("sum", ">", 100.0, True), ("count", "==", 5.0, True), ("last", "!=", 50.0, False),
    ("p50", ">", 25.0, True), ("p95", ">", 47.0, True), ("p99", ">", 49.9, False),
    ("rate", ">", 0.4, True),
])
def test_threshold_aggregates(tmp_path: Path, aggregate: str, op: str, value: float, expect: bool) -> None:
    pa, _ = system(tmp_path, f"""
    - name: R
      type: threshold
      metric: m
      aggregate: {aggregate}
      window: 5m
      op: "{op}"
      value: {value}
    """)
    # 5 samples in the window: 10, 20, 30, 40, 50; sum 150 → rate 150/300 = 0.5/s; one older sample outside
    load(pa, "m", np.array([T0 - 400, T0 - 240, T0 - 180, T0 - 120, T0 - 60, T0]), np.array([999, 10, 20, 30, 40, 50]))
    assert bool(firing(pa, T0)) is expect


def test_threshold_matchers(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, """
    - name: R
      type: threshold
      metric: m
      matchers: ['agent=~"re.*"', 'env!="dev"']
      aggregate: last
      window: 5m
      op: ">"
      value: 1
    """)
    for agent, env in [("researcher", "prod"), ("reviewer", "dev"), ("writer", "prod")]:
        load(pa, "m", np.array([T0]), np.array([5.0]), agent=agent, env=env)
    assert [lab["agent"] for lab in firing(pa, T0)] == ["researcher"]


def test_counter_rate_handles_reset(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, """
    - name: R
      type: threshold
      metric: requests_total
      aggregate: rate
      window: 100s
      op: ">"
      value: 0.9
    """)
    # +10, +10, reset to 5 (counts as +5), +10 = 35 over 100 s
    load(pa, "requests_total", T0 - np.array([80, 60, 40, 20, 0.0]), np.array([100, 110, 120, 5, 15]))
    res = pa.evaluate(at=T0)
    assert res.active == []
    pa.config.rules[0].value = 0.3
    assert pa.evaluate(at=T0).active[0].value == pytest.approx(0.35)


# --------------------------------------------------------------------------- trend

TREND = """
- name: Slower
  type: trend
  metric: lat
  lookback: 2h
  op: ">"
  value: 1.0
"""


def test_trend_fires_on_significant_slope(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, TREND)
    rng = np.random.default_rng(1)
    t = T0 - np.arange(0, 7200, 60.0)[::-1]
    load(pa, "lat", t, 10 + (t - t[0]) / 3600 * 3 + rng.normal(0, 0.5, t.size), agent="a")  # +3 s/h
    load(pa, "lat", t, 10 + rng.normal(0, 0.5, t.size), agent="b")  # flat
    res = pa.evaluate(at=T0)
    fired = {a.labels["agent"]: a.value for a in res.active}
    assert set(fired) == {"a"}
    assert fired["a"] == pytest.approx(3.0, rel=0.15)


def test_trend_change_pct(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, """
    - name: CostUp
      type: trend
      metric: cost
      trend_measure: change_pct
      lookback: 1h
      op: ">"
      value: 25
    """)
    t = T0 - np.arange(0, 7200, 60.0)[::-1]
    load(pa, "cost", t, np.where(t > T0 - 3600, 1.5, 1.0), agent="a")  # +50% vs the previous hour
    load(pa, "cost", t, np.where(t > T0 - 3600, 1.1, 1.0), agent="b")  # +10%
    res = pa.evaluate(at=T0)
    assert [(a.labels["agent"], round(a.value or 0)) for a in res.active] == [("a", 50)]


# --------------------------------------------------------------------------- anomaly

ANOMALY = """
- name: Odd
  type: anomaly
  metric: lat
  window: 5m
  lookback: 24h
"""


def test_anomaly_fires_on_spike_only(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, ANOMALY)
    rng = np.random.default_rng(3)
    t = T0 - np.arange(0, 86400, 60.0)[::-1]
    base = 10 + rng.normal(0, 0.5, t.size)
    spiky = base.copy()
    spiky[-2] = 40.0
    load(pa, "lat", t, spiky, agent="spiky")
    load(pa, "lat", t, base, agent="calm")
    res = pa.evaluate(at=T0)
    assert [a.labels["agent"] for a in res.active] == ["spiky"]
    assert res.active[0].value >= res.active[0].threshold


# --------------------------------------------------------------------------- forecast

FORECAST = """
- name: DiskFull
  type: forecast
  metric: disk
  op: ">"
  value: 90
  horizon: 6h
  lookback: 12h
"""


def test_forecast_fires_when_breach_is_predicted(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, FORECAST)
    rng = np.random.default_rng(5)
    t = T0 - np.arange(0, 12 * 3600, 300.0)[::-1]
    hours = (t - t[0]) / 3600
    load(pa, "disk", t, 50 + 3 * hours + rng.normal(0, 0.3, t.size), host="filling")  # 83% now, 90% in ~2.3h
    load(pa, "disk", t, 60 + rng.normal(0, 0.3, t.size), host="steady")
    res = pa.evaluate(at=T0)
    assert [a.labels["host"] for a in res.active] == ["filling"]
    # the value is in the metric's unit (the forecast's peak, past the threshold); the time is in the detail
    assert res.active[0].value is not None and res.active[0].value > 90
    from perf_alerts.rules.evaluate import Evaluator

    (r,) = [x for x in Evaluator(pa.store, pa.config).evaluate(pa.config.rules[0], T0) if x.active]
    assert 1.0 < r.detail["hours_to_breach"] < 4.0 and r.detail["status"] == "predicted"


# --------------------------------------------------------------------------- absent


def test_absent_fires_when_series_stops(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, """
    - name: Silent
      type: absent
      metric: heartbeat
      window: 10m
    """)
    load(pa, "heartbeat", np.array([T0 - 3600.0]), np.array([1.0]), agent="gone")
    load(pa, "heartbeat", np.array([T0 - 60.0]), np.array([1.0]), agent="alive")
    res = pa.evaluate(at=T0)
    assert [a.labels["agent"] for a in res.active] == ["gone"]
    assert res.active[0].value == pytest.approx(3600.0)


def test_absent_named_series_that_never_existed(tmp_path: Path) -> None:
    pa, _ = system(tmp_path, """
    - name: NoCrew
      type: absent
      metric: heartbeat
      matchers: {crew: billing}
      window: 10m
    - name: Anything
      type: absent
      metric: never_seen
      window: 10m
    """)
    res = pa.evaluate(at=T0)
    assert [(a.rule, a.labels.get("crew")) for a in res.active] == [("NoCrew", "billing")]


def test_a_broken_rule_does_not_stop_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pa, _ = system(tmp_path, """
    - name: A
      type: threshold
      metric: m
      aggregate: last
      op: ">"
      value: 1
    - name: B
      type: trend
      metric: m
      op: ">"
      value: 1
    """)
    load(pa, "m", np.array([T0]), np.array([5.0]))
    import perf_alerts.analytics.trend as trend_mod

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("kaputt")

    monkeypatch.setattr(trend_mod, "trend", boom)
    load(pa, "m", T0 - np.arange(1.0, 11.0), np.arange(10.0))
    res = pa.evaluate(at=T0)
    assert [a.rule for a in res.active] == ["A"]
    assert res.errors and "rule B" in res.errors[0] and "kaputt" in res.errors[0]
