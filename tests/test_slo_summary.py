"""The executive summary built on SLOs (issue 11): health over a period from what happened in it,
incidents from the alert history, and one summary object rendered as Markdown, HTML, JSON, the
PNG chart's data and the Discord text with the same numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from perf_alerts.analytics.health import period_health
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

H = 3600.0
DAY = 86400.0
T = 1_800_000_000.0 - (1_800_000_000.0 % DAY) + 12 * H  # noon UTC

CONFIG = """
metrics:
  crew_cost_usd: {unit: USD, better: lower, kind: event}
receivers:
  - name: console
    console: {}
route: {receiver: console, group_wait: 0s, group_interval: 1m}
rules:
  - name: TaskFailures
    type: threshold
    metric: crew_task_failures
    aggregate: sum
    window: 10m
    op: ">="
    value: 3
    severity: critical
slos:
  - {name: task-success, kind: success, metric: crew_task_failures, objective: 99%, by: [agent]}
  - {name: task-latency, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 99%, by: [agent]}
  - {name: daily-cost, kind: budget, metric: crew_cost_usd, limit: 50, period: 1d}
"""


def _scenario(tmp_path: Path, outage_minutes: int) -> PerfAlerts:
    """Two agents, one task a minute each for two days; agent `writer` fails every task for
    `outage_minutes` from T-6h; the on-call acknowledges after 20 minutes."""
    cfg = parse_config(CONFIG, "summary.yaml", env={})
    pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), ManualClock(T - 2 * DAY))
    recs = []
    start_outage = T - 6 * H
    for t in range(int(T - 2 * DAY), int(T), 60):
        for agent in ("researcher", "writer"):
            recs.append({"metric": "crew_task_seconds", "value": 12.0, "timestamp": float(t), "labels": {"agent": agent}})
            recs.append({"metric": "crew_cost_usd", "value": 0.01, "timestamp": float(t), "labels": {"agent": agent}})
            if agent == "writer" and start_outage <= t < start_outage + outage_minutes * 60:
                recs.append({"metric": "crew_task_failures", "value": 1.0, "timestamp": float(t),
                             "labels": {"agent": agent}})
    assert pa.record_many(recs).rejected == 0
    acked = False
    for k in range(0, 8 * 12 + 1):  # every 5 minutes from T-8h to T
        t = T - 8 * H + k * 300
        pa.clock.set(t)  # type: ignore[attr-defined]
        pa.evaluate()
        crit = [a for a in pa.alerts(["firing"]) if a.severity.value == "critical" and a.started_at is not None
                and t - a.started_at >= 20 * 60]
        if crit and not acked:
            pa.ack(crit[0].fingerprint, by="test")
            acked = True
    return pa


def test_one_summary_many_renderings_same_numbers(tmp_path: Path) -> None:
    from perf_alerts.manage.report import build_summary, chart_data, summary_message, to_html

    pa = _scenario(tmp_path, outage_minutes=30)
    summary, md, png = build_summary(pa, DAY, at=T, chart=True)
    html = to_html(summary, md, png)
    _title, discord, _files = summary_message(summary, png)
    js = json.loads(json.dumps(summary.to_dict()))
    chart = chart_data(summary)

    rows = summary.slos
    assert [r["series"] for r in rows] == ["task-success{agent=researcher}", "task-success{agent=writer}",
                                          "task-latency{agent=researcher}", "task-latency{agent=writer}", "daily-cost"]
    for r in rows:
        for key in ("objective_display", "achieved_display", "budget_left_display", "burn_display"):
            text = r[key]
            assert text in md, (key, text)
            assert text in html, (key, text)
            assert text in discord, (key, text)
        assert js["slos"][rows.index(r)]["budget_remaining"] == r["budget_remaining"]
    assert chart["series"] == [r["series"] for r in rows if r["budget_remaining"] is not None]
    assert chart["budget_remaining"] == [r["budget_remaining"] for r in rows if r["budget_remaining"] is not None]
    assert chart["labels"] == [r["budget_left_display"] for r in rows if r["budget_remaining"] is not None]

    # the writer's 30 failed tasks among the 1,439 runs in (T - 1d, T]: 97.92% against 99%
    writer = next(r for r in rows if r["series"] == "task-success{agent=writer}")
    assert writer["achieved_display"] == "97.92%" and writer["status"] == "breached"
    assert writer["budget_left_display"] == f"{(1 - (30 / 1439) / 0.01) * 100:.1f}%"

    inc = summary.incidents
    assert inc["count"] == 1 and inc["critical"] == 1
    (i,) = inc["list"]
    assert i["agents"] == ["writer"] and "task-success{agent=writer}" in i["slos"]
    assert "TaskFailures" in i["rules"] and "SLOBurnFast" in i["rules"]
    for text in (inc["total_text"], inc["longest_text"], inc["mtta_text"], inc["mttr_text"]):
        assert text in md and text in html and text in discord
    assert inc["mtta_text"] == "20m"  # human units, never "1200 s"
    assert not re.search(r"\b\d+(\.\d+)? s\b", html.split("<details>")[0])
    for doc in (md, html, discord):
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", doc)  # no microseconds
    assert summary.period["start_text"] in md and summary.period["start_text"] in html

    cost = summary.cost[0]
    for text in (cost["spent_text"], cost["limit_text"], cost["projected_text"]):
        assert text in md and text in html
    assert cost["spent_text"] == "$28.78"  # 2 agents × 1,439 minutes × $0.01

    h = summary.health
    assert h["period_status"] == "critical" and h["period_score"] is not None and h["period_score"] <= 49
    assert any("task-success{agent=writer} breached" in x for x in h["period_reasons"])
    for score in (h["period_score"], h["score"]):  # one number per health, everywhere (never "99/100" and "98.6")
        assert f"{score:g}/100" in discord and f"**{score:g}**" in md and f"<b>{score:g}</b>" in html
    assert "." not in summary.period["start"] and "." not in summary.period["end"]  # no microseconds in JSON
    assert summary.headline[0].startswith("Health over the period (1d):")
    assert "critical" in summary.headline[0] and "task-success{agent=writer}" in summary.headline[0]
    assert "Over the period:" in md and "Now (the last hour):" in md
    assert "over the period" in html and "now, the last hour" in html
    # the SLO table leads: before incidents, cost, risks and the health details
    assert md.index("## SLOs") < md.index("## Incidents") < md.index("## Cost") < md.index("## Health")


def test_a_critical_incident_with_slos_held_is_healthy_and_says_why(tmp_path: Path) -> None:
    pa = _scenario(tmp_path, outage_minutes=8)  # 8 failures in 1,440: 99.44%, the SLO holds
    from perf_alerts.manage.summary import executive_summary

    s = executive_summary(pa, DAY, at=T)
    assert s.incidents["critical"] == 1
    assert all(r["status"] != "breached" for r in s.slos)
    h = s.health
    assert h["period_status"] == "healthy"
    assert any("critical incident" in x and "every SLO held" in x for x in h["period_reasons"])


def test_period_health_rules() -> None:
    held = [{"name": "a", "series": "a", "status": "ok", "why": "fine"}]
    broke = [{"name": "a", "series": "a{agent=w}", "status": "breached", "why": "97% < 99%"}]
    crit = {"count": 1, "critical": 1, "warning": 0, "total_minutes": 30, "critical_minutes": 30}
    none = {"count": 0, "critical": 0, "warning": 0, "total_minutes": 0, "critical_minutes": 0}
    p = period_health(broke, crit, 98.6)
    assert p.status == "critical" and p.score == 49 and "a{agent=w} breached" in p.reasons[0]
    assert period_health(broke, none, 98.6).status == "degraded"
    p = period_health(held, crit, 98.6)
    assert p.status == "healthy" and "every SLO held" in p.reasons[0]
    p = period_health([], crit, 98.6)  # no SLO data to judge the incident by: never healthy
    assert p.status == "degraded" and p.score == 79
    assert period_health([{"name": "a", "status": "no data"}], none, None).status == "no data"
    assert period_health(held, none, 60.0).status == "degraded"  # the measured components still count


@pytest.mark.parametrize("period", [DAY])
def test_summary_without_slos_keeps_working(tmp_path: Path, period: float) -> None:
    from perf_alerts.manage.summary import executive_summary, to_markdown

    pa = PerfAlerts(parse_config("rules: []\n", "e.yaml", env={}), Store(tmp_path / "e.db"), ManualClock(T))
    s = executive_summary(pa, period, at=T)
    assert s.slos == [] and s.incidents["count"] == 0 and s.headline[0].startswith("No crew data")
    assert "## SLOs" not in to_markdown(s)
