"""The demo day (issue 11): its executive summary names the incidents and the SLOs they broke, and
the period does not read healthy."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "config" / "alerting.yaml"


def test_demo_day_summary_names_incidents_and_broken_slos(tmp_path: Path, monkeypatch) -> None:
    from perf_alerts.demo import run_demo

    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "")
    lines: list[str] = []
    report = run_demo(tmp_path / "out", config=str(CONFIG), echo=lines.append, with_tool=False)
    summary = json.loads((tmp_path / "out" / "executive-summary.json").read_text())
    md = (tmp_path / "out" / "executive-summary.md").read_text()
    incidents = summary["incidents"]["list"]
    assert summary["incidents"]["critical"] >= 2
    spike = next(i for i in incidents if "researcher" in i["agents"] and "CriticalPerformanceDegradation" in i["rules"])
    assert "task-latency{agent=researcher}" in spike["slos"]
    burst = next(i for i in incidents if "writer" in i["agents"] and "CrewTaskFailures" in i["rules"])
    assert {"task-success{agent=writer}", "tool-success{agent=writer}"} & set(burst["slos"])
    assert "SLOs broken: task-latency{agent=researcher}" in md
    h = summary["health"]
    assert h["period_status"] != "healthy" and any("breached" in r for r in h["period_reasons"])
    assert summary["headline"][0].startswith("Health over the period")
    assert any(line.startswith("incident ") and "SLOs broken: task-latency{agent=researcher}" in line for line in lines)
    assert report["slos"] == summary["slos"]
    # the shipped anomaly rule (robust detector on heavy-tailed LLM latency) raises one alarm, on
    # the researcher within 10 minutes of the injected x4 latency spike, and no false alarm
    # (the default detector gave four false alarms on this day and missed the spike)
    from perf_alerts.simulate import default_incidents
    from perf_alerts.store import Store
    from perf_alerts.timeutil import parse_timestamp

    start = parse_timestamp(report["simulated"]["start"])
    spike = next(i for i in default_incidents(start, report["simulated"]["hours"]) if i.kind == "latency_spike")
    anomalies = [e for e in Store(tmp_path / "out" / "demo.db").events()
                 if e["event"] == "firing" and e["rule"] == "PerformanceAnomaly"]
    assert [e["fingerprint"] for e in anomalies] and len(anomalies) == 1, anomalies
    assert spike.start <= float(anomalies[0]["ts"]) <= spike.start + 600


def test_the_demo_says_which_health_the_tool_gave() -> None:
    """The tool's analyze health is the last hour's, its executive summary's the period's: the demo's
    lines name which (it printed "analyze ok: health 99.0 (healthy)" for a day with two critical incidents)."""
    from perf_alerts.demo import _tool_line

    an = _tool_line({"action": "analyze", "status": "ok",
                     "data": {"health": {"score": 99.0, "status": "healthy"}, "findings": ["a"]}})
    assert "health now 99.0 (healthy), 1 finding" in an
    ex = _tool_line({"action": "executive_summary", "status": "ok",
                     "data": {"health": {"over_the_period": {"score": 49.0, "status": "critical"}},
                              "alerts": {"fired_total": 11}}})
    assert "health over the period 49.0 (critical), 11 alerts fired in it" in ex
