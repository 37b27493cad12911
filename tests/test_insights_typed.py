"""`insights.analyze` / `insights.predict` return dataclasses (issue 9 item 1) whose `to_dict()` is,
key for key and in order, the JSON the dict-returning versions produced: tests/data/insights_reports_golden.json
was captured from the dict code on these same stores (seeded simulation, alerts evaluated; a ramp
store with threshold/forecast rules breaching now and predicted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf_alerts import insights
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.simulate import simulate_crew
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0
H = 3600.0
GOLDEN = Path(__file__).resolve().parent / "data" / "insights_reports_golden.json"
ROOT = Path(__file__).resolve().parents[1]

RAMP = """
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
  - name: AnySlow
    type: threshold
    metric: crew_task_seconds
    op: ">"
    value: 45
  - name: VerySlow
    type: threshold
    metric: crew_task_seconds
    op: ">"
    value: 70
"""


def seeded() -> PerfAlerts:
    rules = (ROOT / "config" / "alerting.yaml").read_text().split("\nreceivers:")[0]
    pa = PerfAlerts(parse_config(rules), Store(":memory:"), ManualClock(T0))
    # in a fixed order: the series ids (and so the order of `forecasts`) do not depend on hash seeds
    by_series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
    for x in simulate_crew(T0 - 8 * H, 8.0).samples:
        by_series.setdefault((x.metric, tuple(sorted(x.labels.items()))), []).append(x)
    for key in sorted(by_series):
        pa.store.insert_samples(by_series[key])
    for k in range(0, 8 * 4 + 1):
        pa.clock.set(T0 - 8 * H + k * 900)  # type: ignore[attr-defined]
        pa.evaluate()
    return pa


def ramp() -> PerfAlerts:
    rng = np.random.default_rng(1)
    pa = PerfAlerts(parse_config(RAMP), Store(":memory:"), ManualClock(T0))
    t = np.arange(T0 - 10 * H, T0 - 60, 300.0)
    for i, agent in enumerate(("researcher", "writer", "reviewer")):
        for ts, v in zip(t, 20 + (3 - i) * (t - t[0]) / H + rng.normal(0, 0.3, t.size)):
            pa.record("crew_task_seconds", float(v), {"agent": agent}, ts=float(ts))
    pa.record("crew_task_seconds", 5.0, {"agent": "lonely"}, ts=T0 - 100)
    pa.evaluate(T0)
    return pa


def reports() -> dict[str, Any]:
    pa = seeded()
    out: dict[str, Any] = {
        "analyze_all": pa.analyze(lookback=8 * H, at=T0),
        "analyze_4h_researcher": pa.analyze(lookback=4 * H, agent="researcher", at=T0),
        "analyze_labels": pa.analyze(lookback=8 * H, labels={"agent": "writer"}, at=T0),
        "analyze_top1000": insights.analyze(pa.store, pa.config, T0, 2 * H, pa.alerts(), top=1000),
        "analyze_empty": pa.analyze(lookback=8 * H, agent="nobody", at=T0),
        "predict_all": pa.predict(horizon=6 * H, lookback=8 * H, at=T0),
        "predict_writer": pa.predict(horizon=24 * H, lookback=4 * H, agent="writer", at=T0),
        "predict_breaches_only": insights.predict(pa.store, pa.config, T0, 24 * H, 8 * H, top=1000,
                                                  breaches_only=True),
    }
    pr = ramp()
    out["ramp_predict"] = pr.predict(horizon=6 * H, lookback=12 * H, at=T0)
    out["ramp_predict_top1"] = insights.predict(pr.store, pr.config, T0, 12 * H, 12 * H, top=1)
    out["ramp_analyze"] = pr.analyze(lookback=12 * H, at=T0)
    return out


@pytest.fixture(scope="module")
def current() -> dict[str, Any]:
    return reports()


def test_to_dict_is_the_json_of_the_dict_reports(current: dict[str, Any]) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert list(current) == list(golden)
    for name, rep in current.items():
        assert isinstance(rep, (insights.AnalysisReport, insights.PredictionReport)), name
        # same keys in the same order, same values (as the CLI's --json writes them)
        assert json.dumps(rep.to_dict(), indent=1) == json.dumps(golden[name], indent=1), name


def test_the_stores_cover_every_item_type(current: dict[str, Any]) -> None:
    ramp_pred = current["ramp_predict"]
    assert {b.status for b in ramp_pred.breaches} == {"breaching", "predicted"}
    assert ramp_pred.breaching_now + ramp_pred.predicted == 3 and ramp_pred.series_skipped == 1
    assert all(isinstance(b, insights.Breach) for b in ramp_pred.breaches)
    an = current["analyze_all"]
    assert an.trends and an.anomalies and an.agents and an.findings
    assert all(isinstance(t, insights.TrendFinding) for t in an.trends)
    assert all(isinstance(a, insights.AnomalyFinding) for a in an.anomalies)
    assert all(isinstance(s, insights.SeriesSummary) for s in an.summaries)
    assert current["analyze_empty"].series_analyzed == 0 and current["analyze_empty"].health.score is None
