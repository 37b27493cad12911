"""One forecast-breach implementation (issue 11): `forecast` rules, `predict` and the crew
tool (which calls `predict`) agree; matchers are honoured; a series already past its
threshold is breaching now, not a prediction; no predicted time precedes the evaluation
time; the same minimum number of samples everywhere; `==`/`!=` forecast rules are refused."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from perf_alerts.analytics.forecast import MIN_BREACH_POINTS, breach_outlook
from perf_alerts.config import ConfigError, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import AlertState
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock, iso

T0 = 1_800_000_000.0
H = 3600.0

CONFIG = """
rules:
  - name: ResearcherSlow
    type: forecast
    metric: crew_task_seconds
    matchers: {agent: researcher}
    op: ">"
    value: 60
    horizon: 6h
    lookback: 12h
    min_probability: 0.5
    annotations: {summary: "{{ labels.agent }}: {{ detail.outlook }}"}
"""


def _ramp(t: np.ndarray, start: float, per_hour: float, rng: np.random.Generator) -> np.ndarray:
    return start + per_hour * (t - t[0]) / H + rng.normal(0, 0.3, t.size)


def _system(rng: np.random.Generator) -> PerfAlerts:
    pa = PerfAlerts(parse_config(textwrap.dedent(CONFIG)), Store(":memory:"), ManualClock(T0))
    t = np.arange(T0 - 10 * H, T0 - 60, 300.0)
    rows = []
    # both agents' task time climbs 3 s/h from 20 s: 50 s now, 60 s about 3.3 h ahead
    for agent in ("researcher", "writer"):
        for ts, v in zip(t, _ramp(t, 20, 3, rng)):
            rows.append((agent, float(ts), float(v)))
    for agent, ts, v in rows:
        pa.record("crew_task_seconds", v, {"agent": agent}, ts=ts)
    return pa


def test_rule_and_predict_give_the_same_breach_and_honour_the_matchers() -> None:
    pa = _system(np.random.default_rng(1))
    res = pa.evaluate(T0)
    (a,) = [x for x in pa.alerts() if x.state == AlertState.FIRING]
    assert a.labels["agent"] == "researcher"  # the rule selects the researcher only
    assert a.value is not None and a.value > 60 and a.operator == ">" and a.threshold == 60
    assert a.fired_value == a.value and "researcher: predicted in" in a.annotations["summary"]
    assert res is not None

    rep = pa.predict(horizon=6 * H, lookback=12 * H, at=T0).to_dict()
    (b,) = rep["breaches"]
    assert b["rule"] == "ResearcherSlow" and 'agent="researcher"' in b["series"]  # not the writer
    assert b["status"] == "predicted" and b["breach_at"] >= iso(T0)
    assert 2.0 < b["time_to_breach_hours"] < 5.0 and b["value"] > 60
    # the same outlook the rule fired on
    t, v = pa.store.query([s.id for s in pa.store.list_series("crew_task_seconds")
                           if s.labels["agent"] == "researcher"], T0 - 12 * H, T0).of(1)
    o = breach_outlook(t, v, T0, 6 * H, 60, ">", 0.5)
    assert o is not None and iso(o.breach_at) == b["breach_at"] and round(o.value, 4) == b["value"]


def test_a_series_past_its_threshold_is_breaching_now_at_the_evaluation_time() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(T0 - 2 * H, T0 - 60, 60.0)
    v = _ramp(t, 40, 15, rng)  # 40 s → ~70 s: past 60 s before the end
    assert v[-1] > 60
    o = breach_outlook(t, v, T0, 6 * H, 60, ">", 0.5)
    assert o is not None and o.status == "breaching" and o.breach_at == T0 and o.seconds == 0
    assert o.value == v[-1] and o.value > 60  # the fact: the last sample, against the operator
    assert o.describe().startswith("breaching now")


def test_no_predicted_time_is_earlier_than_the_evaluation_time() -> None:
    rng = np.random.default_rng(3)
    # samples end at 12:00, the question is asked at 14:00: the mean crosses around 13:00
    t = np.arange(T0 - 4 * H, T0 - 2 * H, 60.0)
    v = _ramp(t, 40, 8, rng)
    assert v[-1] < 59
    o = breach_outlook(t, v, T0, 2 * H, 60, ">", 0.5)
    assert o is not None and o.status == "predicted"
    assert o.breach_at is not None and o.breach_at >= T0 and o.bound_at is not None and o.bound_at >= T0
    assert o.seconds is not None and o.seconds >= 0 and o.value > 60
    # and below the threshold forever: clear, nothing predicted, value still in the metric's unit
    flat = breach_outlook(t, 30 + rng.normal(0, 0.2, t.size), T0, 2 * H, 60, ">", 0.5)
    assert flat is not None and flat.status == "clear" and flat.breach_at is None and 25 < flat.value < 35
    # a noisy level near the threshold: whatever the bound does, a clear outlook's value is short of it
    noisy = breach_outlook(t, 55 + rng.normal(0, 6, t.size), T0, 6 * H, 60, ">", 0.9)
    assert noisy is not None and noisy.status == "clear" and noisy.value < 60


def test_the_same_minimum_number_of_samples_everywhere() -> None:
    pa = PerfAlerts(parse_config(textwrap.dedent(CONFIG)), Store(":memory:"), ManualClock(T0))
    for i in range(MIN_BREACH_POINTS - 1):
        pa.record("crew_task_seconds", 100 + i, {"agent": "researcher"}, ts=T0 - 3600 + 300 * i)
    pa.evaluate(T0)
    assert pa.alerts() == []  # too few samples for the rule
    rep = pa.predict(horizon=6 * H, lookback=12 * H, at=T0).to_dict()
    assert rep["breaches"] == [] and rep["series_skipped"] == 1 and rep["min_points"] == MIN_BREACH_POINTS
    pa.record("crew_task_seconds", 120, {"agent": "researcher"}, ts=T0 - 60)
    pa.evaluate(T0)
    (a,) = pa.alerts()
    assert a.state == AlertState.FIRING and a.value == 120  # breaching now: the last sample
    (b,) = pa.predict(horizon=6 * H, lookback=12 * H, at=T0).to_dict()["breaches"]
    assert (b["status"], b["time_to_breach"], b["breach_at"], b["last_value"]) == ("breaching", "now", iso(T0), 120)


@pytest.mark.parametrize("op", ["==", "!="])
def test_forecast_rules_with_equality_operators_are_refused(op: str) -> None:
    text = textwrap.dedent(CONFIG).replace('op: ">"', f'op: "{op}"')
    with pytest.raises(ConfigError) as ei:
        parse_config(text, source="alerting.yaml")
    msg = str(ei.value)
    assert "alerting.yaml:7: rules[0].op:" in msg and "'>', '>=', '<', '<='" in msg, msg
