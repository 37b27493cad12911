"""Which SLOs an incident broke (issue 11): an SLO breached over the period is named on an incident
only when that incident overspent its budget (or raised its burn alert), not on every incident of
the same agent. The demo day showed why: a 20-minute latency anomaly on the writer at 07:22 was
listed as breaking task-success{agent=writer}, which the writer's error burst at 13:30 broke."""

from __future__ import annotations

from pathlib import Path

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

H = 3600.0
DAY = 86400.0
T = 1_800_000_000.0 - (1_800_000_000.0 % DAY) + 12 * H  # noon UTC

CONFIG = """
receivers:
  - name: console
    console: {}
route: {receiver: console, group_wait: 0s, group_interval: 1m}
rules:
  - name: SlowTasks
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 5m
    op: ">"
    value: 20
    severity: warning
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
"""


def test_an_incident_names_only_the_slos_it_broke(tmp_path: Path) -> None:
    from perf_alerts.manage.report import build_summary

    cfg = parse_config(CONFIG, "incidents.yaml", env={})
    pa = PerfAlerts(cfg, Store(tmp_path / "i.db"), ManualClock(T - 2 * DAY))
    slow = (T - 10 * H, T - 10 * H + 20 * 60)  # writer's tasks take 30 s (the SLO's limit is 60 s): no failure
    outage = (T - 6 * H, T - 6 * H + 30 * 60)  # writer fails every task
    recs = []
    for t in range(int(T - 2 * DAY), int(T), 60):
        for agent in ("researcher", "writer"):
            v = 30.0 if agent == "writer" and slow[0] <= t < slow[1] else 12.0
            recs.append({"metric": "crew_task_seconds", "value": v, "timestamp": float(t), "labels": {"agent": agent}})
            if agent == "writer" and outage[0] <= t < outage[1]:
                recs.append({"metric": "crew_task_failures", "value": 1.0, "timestamp": float(t),
                             "labels": {"agent": agent}})
    assert pa.record_many(recs).rejected == 0
    for k in range(0, 11 * 12 + 1):  # every 5 minutes from T-11h to T
        pa.clock.set(T - 11 * H + k * 300)  # type: ignore[attr-defined]
        pa.evaluate()

    summary, md, _png = build_summary(pa, DAY, at=T, chart=False)
    rows = {r["series"]: r["status"] for r in summary.slos}
    assert rows["task-success{agent=writer}"] == "breached" and rows["task-latency{agent=writer}"] == "ok"
    incidents = summary.incidents["list"]
    slow_inc, outage_inc = incidents
    assert slow_inc["rules"] == ["SlowTasks"] and "TaskFailures" in outage_inc["rules"]
    assert slow_inc["severity"] == "warning" and slow_inc["agents"] == ["writer"]
    assert slow_inc["slos"] == []  # breached later in the period, not by this incident
    assert outage_inc["severity"] == "critical" and "task-success{agent=writer}" in outage_inc["slos"]
    assert md.count("SLOs broken: task-success{agent=writer}") == 1
