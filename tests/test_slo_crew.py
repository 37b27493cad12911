"""The crew and SLOs (issue 11): a kickoff with only some inputs works (every placeholder of
config/tasks.yaml has a default), and the tool's analyze / executive_summary carry the SLO facts,
the same numbers as the summary's other renderings. The LLM is the scripted test double."""

from __future__ import annotations

import pytest

from conftest import require  # noqa: E402

require("crewai")

from test_crew import ScriptedLLM, _known_data, _observation  # noqa: E402

from perf_alerts.crew import AdvancedPerformanceAnalyticsTool  # noqa: E402
from perf_alerts.crew.crew import PerformanceAnalyticsCrew  # noqa: E402


def test_kickoff_with_only_lookback_hours(tmp_path) -> None:
    system = _known_data(tmp_path)
    crew = PerformanceAnalyticsCrew(llm=ScriptedLLM(model="gpt-4o-mini"), system=system).crew(
        task_names=["run_performance_analytics", "send_performance_executive_summary"])
    out = crew.kickoff(inputs={"lookback_hours": 24})  # raised "Missing required template variable" before
    by_task = {t.name: t.raw for t in out.tasks_output}
    an = _observation(by_task["run_performance_analytics"])
    assert an["success"] and an["data"]["slos"]["rows"]
    ex = _observation(by_task["send_performance_executive_summary"])["data"]
    assert ex["slos"] and ex["health"]["over_the_period"]["status"] and ex["health"]["now"]["judged_over"]
    assert ex.get("delivery") is None  # send_notifications defaulted to false


def test_tool_slo_facts_match_the_summary(tmp_path) -> None:
    from perf_alerts.analytics.slo import slo_report
    from perf_alerts.manage.report import build_summary

    system = _known_data(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    an = tool.run(action="analyze", lookback_hours=24).data
    rep = slo_report(system.store, system.config, system.clock.now())
    assert an["slos"]["counts"] == rep["counts"]
    assert {(r["name"], tuple(r["labels"].items()), r["achieved_text"], r["status"]) for r in an["slos"]["rows"]} <= \
        {(r["name"], tuple(r["labels"].items()), r["achieved_text"], r["status"]) for r in rep["slos"]}
    ex = tool.run(action="executive_summary", lookback_hours=24).data
    summary, _md, _png = build_summary(system, 24 * 3600.0, chart=False)
    keys = ("series", "objective_display", "achieved_display", "budget_left_display", "burn_display", "status")
    assert [{k: r[k] for k in keys} for r in ex["slos"]] == [{k: r[k] for k in keys} for r in summary.slos][:12]
    assert ex["incidents"]["total_text"] == summary.incidents["total_text"]
    assert ex["headline"] == summary.headline
