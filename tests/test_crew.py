"""The CrewAI front end: StepResult, the tools, the crew end to end with a test-double LLM,
and the instrumentation listener. Everything that imports crewai lives in this file (and
test_crew_cli.py) so the ~3 s import is paid once. No network: the LLM is scripted.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
import types
from typing import Any

import pydantic
import pytest

from conftest import require  # noqa: E402

require("crewai")

from crewai import Agent, Crew, Process, Task  # noqa: E402
from crewai.events.event_bus import crewai_event_bus  # noqa: E402
from crewai.events.types.llm_events import (  # noqa: E402
    LLMCallCompletedEvent, LLMCallFailedEvent, LLMCallStartedEvent, LLMCallType,
)
from crewai.events.types.tool_usage_events import ToolUsageStartedEvent  # noqa: E402
from crewai.llms.base_llm import BaseLLM, llm_call_context  # noqa: E402
from crewai.tools import BaseTool  # noqa: E402

from perf_alerts import catalog  # noqa: E402
from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.crew import (  # noqa: E402
    AdvancedPerformanceAnalyticsTool, DiscordAlertTool, PerformanceAnalyticsCrew, StepResult, instrument,
)
from perf_alerts.crew.crew import DEFAULT_INPUTS, TASK_NAMES  # noqa: E402
from perf_alerts.crew.instrument import CrewMetricsListener  # noqa: E402
from perf_alerts.crew.tool import ACTIONS, MAX_RESULT_CHARS  # noqa: E402
from perf_alerts.model import Sample  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock  # noqa: E402

END = 1_760_000_400.0  # a fixed "now" for the analytics (multiple of 60 s)
HOOK = "https://discord.com/api/webhooks/123456789012345678/sEcReT-ToKeN_abcdefghijklmnopqrstuvwxyz"


# --------------------------------------------------------------------------- test doubles


class ScriptedLLM(BaseLLM):
    """A BaseLLM that plays a script instead of calling a provider.

    Per task: the first call reads the task text and answers with a ReAct tool call naming the
    action and inputs the task description asks for; the next call returns the tool's
    observation as the Final Answer. Emits the LLM events a real provider emits, with usage.
    """

    steps: list[Any] = []
    calls: int = 0
    usage: dict[str, int] = {"prompt_tokens": 1200, "completion_tokens": 300}

    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,
             from_agent=None, response_model=None):  # type: ignore[override]
        with llm_call_context():
            self._emit_call_started_event(messages=messages, tools=tools, from_task=from_task, from_agent=from_agent)
            self.calls += 1
            msgs = messages if isinstance(messages, list) else [{"role": "user", "content": messages}]
            text = self.steps.pop(0)(msgs) if self.steps else _react(msgs)
            self._emit_call_completed_event(response=text, call_type=LLMCallType.LLM_CALL, from_task=from_task,
                                            from_agent=from_agent, messages=messages, usage=dict(self.usage))
            return text


def _react(msgs: list[dict[str, Any]]) -> str:
    observations = [m["content"] for m in msgs if m.get("role") == "assistant" and "Observation:" in str(m["content"])]
    if observations:
        obs = str(observations[-1]).split("Observation:", 1)[1].strip()
        return "Thought: I now know the final answer\nFinal Answer: " + obs
    task_text = next(str(m["content"]) for m in msgs if m.get("role") == "user")
    args: dict[str, Any] = {"action": re.search(r'action "(\w+)"', task_text).group(1)}
    for name in ("lookback_hours", "horizon_hours"):
        m = re.search(name + r" (\d+(?:\.\d+)?)", task_text)
        if m:
            args[name] = float(m.group(1))
    m = re.search(r"send_notifications (\w+)", task_text)
    if m:
        args["send_notifications"] = m.group(1).lower() == "true"
    return ("Thought: I need the data\nAction: advanced_performance_analytics\nAction Input: "
            + json.dumps(args))


def _observation(raw: str) -> dict[str, Any]:
    start = raw.index('{"success"')
    obj, _ = json.JSONDecoder().raw_decode(raw[start:])
    return obj


# --------------------------------------------------------------------------- data


def _known_data(tmp_path, at: float = END) -> PerfAlerts:
    """Three agents; researcher's LLM calls 4× slower; writer's tool failing 5 of 20 in the last 10 min;
    researcher's task time climbing towards the 60 s limit."""
    system = PerfAlerts(None, Store(tmp_path / "known.db"), ManualClock(at))
    samples: list[Sample] = []
    for i in range(48):  # one LLM call per 30 min over 24 h
        t = at - 24 * 3600 + (i + 1) * 1800
        for agent, model, lat in (("researcher", "gpt-4o", 8.0), ("writer", "gpt-4o-mini", 2.0),
                                  ("reviewer", "gpt-4o-mini", 2.0)):
            lab = {"crew": "content_crew", "agent": agent, "model": model}
            samples += [Sample(catalog.LLM_SECONDS, lab, t, lat), Sample(catalog.LLM_PROMPT_TOKENS, lab, t, 1000.0),
                        Sample(catalog.LLM_COMPLETION_TOKENS, lab, t, 200.0)]
    tl = {"crew": "content_crew", "agent": "writer", "tool": "file_writer"}
    for i in range(20):
        t = at - 20 * 60 + (i + 1) * 60
        samples.append(Sample(catalog.TOOL_SECONDS, tl, t, 1.0))
        if i >= 15:  # the last 5 calls (within the last 5 minutes) failed
            samples.append(Sample(catalog.TOOL_ERRORS, tl, t, 1.0))
    for i in range(RAMP_POINTS):  # researcher task time 20 s → 55 s over the last 12 h, every 10 min
        t = at - 12 * 3600 + (i + 1) * RAMP_STEP_S
        samples.append(Sample(catalog.TASK_SECONDS, {"crew": "content_crew", "agent": "researcher", "task": "research"},
                              t, RAMP_FROM + (RAMP_TO - RAMP_FROM) * i / (RAMP_POINTS - 1)))
    system.store.insert_samples(samples)
    return system


# the researcher's task-time ramp in _known_data, and the 60 s limit of the default config's
# CriticalPerformanceDegradation (threshold) and PredictedLatencyBreach (forecast) rules on crew_task_seconds
RAMP_FROM, RAMP_TO, RAMP_POINTS, RAMP_STEP_S = 20.0, 55.0, 72, 600.0
TASK_LIMIT_S = 60.0
RAMP_SERIES = 'crew_task_seconds{agent="researcher",crew="content_crew",task="research"}'
RAMP_RULES = ("CriticalPerformanceDegradation", "PredictedLatencyBreach")


def _ramp_hours_to_limit() -> float:
    """Hours after the last ramp sample (at END) until the known linear ramp reaches TASK_LIMIT_S:
    (60 - 55) s / (35/71 s per 10 min) = 10.14 steps of 10 min ≈ 1.69 h."""
    slope_per_s = (RAMP_TO - RAMP_FROM) / (RAMP_POINTS - 1) / RAMP_STEP_S
    return (TASK_LIMIT_S - RAMP_TO) / slope_per_s / 3600.0


def _assert_ramp_breaches(breaches: list[dict[str, Any]], raw: str | None = None) -> None:
    """Both 60 s rules predict the researcher's ramp breaching about when the line says.

    The forecaster may damp the trend (a later breach) but a linear series gives it no reason to
    predict an earlier one: accept 0.75×–1.5× the linear time. A forecaster that loses the trend
    (no breach, or one more than ~2.5 h away) or doubles it (~0.85 h) fails. With `raw` (a task's
    output text), the number must appear there as the tool rounded it."""
    expected = _ramp_hours_to_limit()
    assert expected == pytest.approx(1.69, abs=0.01)  # the arithmetic above, spelled out
    for rule in RAMP_RULES:
        mine = [b for b in breaches if b["series"] == RAMP_SERIES and b["rule"] == rule]
        assert len(mine) == 1, (rule, breaches)
        (b,) = mine
        assert b["threshold"] == f"> {TASK_LIMIT_S:g}"
        hours = b["time_to_breach_hours"]
        assert hours is not None and 0.75 * expected <= hours <= 1.5 * expected, (rule, hours, expected)
        assert hours == round(hours, 2)
        assert b["breach_at"] and b["time_to_breach"]
        if raw is not None:
            assert f'"time_to_breach_hours":{hours}' in raw


def _many_series(tmp_path) -> PerfAlerts:
    system = PerfAlerts(None, Store(tmp_path / "many.db"), ManualClock(END))
    rng = __import__("numpy").random.default_rng(1)
    samples = []
    for a in range(60):
        for metric in (catalog.LLM_SECONDS, catalog.TASK_SECONDS, catalog.TOOL_SECONDS, catalog.TOOL_ERRORS):
            lab = {"crew": "big", "agent": f"agent_{a:02d}_with_a_fairly_long_role_name", "model": "gpt-4o",
                   "tool": "search"}
            for i in range(30):
                t = END - 24 * 3600 + i * 2880
                v = 1.0 if metric == catalog.TOOL_ERRORS else float(rng.lognormal(1 + (i > 25) * a / 20, 0.3))
                samples.append(Sample(metric, lab, t, v))
    system.store.insert_samples(samples)
    system.evaluate(at=END)
    return system


# --------------------------------------------------------------------------- StepResult


def test_step_result_constructors_and_json():
    ok = StepResult.ok({"n": 1.5, "nan": float("nan")})
    assert (ok.success, ok.status, ok.data, ok.error) == (True, "ok", {"n": 1.5, "nan": None}, None)
    assert ok.to_dict() == {"success": True, "status": "ok", "data": {"n": 1.5, "nan": None}, "error": None}
    assert str(ok) == '{"success":true,"status":"ok","data":{"n":1.5,"nan":null},"error":null}'
    f = StepResult.fail(f"post to {HOOK} failed")
    assert f.status == "fail" and not f.success and "sEcReT" not in str(f)
    assert StepResult.skip("not available").status == "skip"
    assert StepResult.uncertain("little data", x=1).data == {"x": 1}
    with pytest.raises(pydantic.ValidationError, match="status"):
        StepResult(success=True, status="maybe")


def test_tool_is_a_crewai_basetool_whose_output_is_compact_json(tmp_path):
    system = _known_data(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    assert isinstance(tool, BaseTool)
    schema = tool.args_schema.model_json_schema()
    assert schema["properties"]["action"]["enum"] == list(ACTIONS)
    assert {"lookback_hours", "horizon_hours", "agent", "send_notifications"} <= set(schema["properties"])
    res = tool.run(action="analyze", lookback_hours=24)
    assert isinstance(res, StepResult) and res.status == "ok"
    text = tool.to_structured_tool().format_output_for_agent(res) if False else tool.format_output_for_agent(res)
    assert text.startswith('{"success":true,"status":"ok"') and "StepResult(" not in text
    assert json.loads(text) == res.to_dict()


@pytest.mark.parametrize("kwargs, needle", [
    ({"action": "explode"}, "valid actions: analyze, alerts, optimize, predict, executive_summary, dashboard"),
    ({"action": "analyse"}, "did you mean 'analyze'"),
    ({"action": "analyze", "lookback_hours": -3}, "lookback_hours must be between"),
    ({"action": "predict", "horizon_hours": "soon"}, "horizon_hours must be a number of hours"),
    ({"action": "analyze", "lookback_hours": [1, 2]}, "Valid actions: analyze"),
    ({}, "Valid actions"),
])
def test_bad_arguments_fail_with_the_valid_values(tmp_path, kwargs, needle):
    res = AdvancedPerformanceAnalyticsTool(system=_known_data(tmp_path)).run(**kwargs)
    assert res.status == "fail" and not res.success
    assert needle in res.error


def test_each_action_on_known_data(tmp_path):
    system = _known_data(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    an = tool.run(action="analyze", lookback_hours=24).data
    expected = system.analyze(lookback=24 * 3600).to_dict()
    assert an["health"]["score"] == expected["health"]["score"]
    assert {a["agent"] for a in an["agents"]} == {"researcher", "writer", "reviewer"}

    al = tool.run(action="alerts").data
    assert al["firing"] >= 1
    top = al["alerts"][0]
    assert (top["rule"], top["labels"]["agent"], top["value"]) == ("CrewToolErrors", "writer", 5.0)
    assert al["notifications"]["sent"] is False

    op = tool.run(action="optimize", lookback_hours=24).data
    titles = [r["title"] for r in op["recommendations"]]
    assert "agent writer: tool file_writer failing 25% of calls (5 of 20)" in titles
    assert "agent researcher: p95 LLM latency 8.0 s, 4.0× the crew median (2.0 s), on model gpt-4o" in titles
    failing = [r for r in op["recommendations"] if r["kind"] == "tool_failures"]
    assert any(r["agent"] == "writer" and "file_writer" in r["title"] and "25%" in r["title"] for r in failing)
    # the policy preview: the default config's policies, evaluated on this data, nothing run
    policies = {p["policy"]: p for p in op["policies"]}
    assert policies and all(set(p) == {"policy", "matched", "values", "would_run"} for p in policies.values())
    assert any(p["matched"] for p in policies.values())
    assert all(w.endswith("(dry-run)") or w.endswith("(live)") for p in policies.values() for w in p["would_run"])
    assert all(p["would_run"] == [] for p in policies.values() if not p["matched"])
    assert "not available" not in json.dumps(op)
    assert "preview" in op["automated_actions"] and "optimize --apply" in op["automated_actions"]

    pr = tool.run(action="predict", lookback_hours=12, horizon_hours=6).data
    _assert_ramp_breaches(pr["breaches"])
    assert all(b["time_to_breach"] for b in pr["breaches"])

    ex = tool.run(action="executive_summary", lookback_hours=24).data
    assert ex["alerts"]["firing_now"] >= 1 and ex["headline"] and "delivery" not in ex

    db = tool.run(action="dashboard").data
    assert db["firing"][0]["rule"] == "CrewToolErrors"
    assert db["last_evaluation"]["rules"] == len(system.config.rules)
    assert {a["agent"] for a in db["health"]["agents"]} == {"researcher", "writer", "reviewer"}

    scoped = tool.run(action="analyze", agent="writer").data
    assert scoped["scope"]["agent"] == "writer" and scoped["agents"] == []


def test_results_fit_an_llm_context_on_a_big_store(tmp_path):
    system = _many_series(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    for action in ACTIONS:
        res = tool.run(action=action, lookback_hours=24)
        text = tool.format_output_for_agent(res)
        assert res.status in ("ok", "uncertain"), (action, res.error)
        assert len(text) / 4 <= 2000, (action, len(text))
        assert len(text) <= MAX_RESULT_CHARS + 200


def test_no_data_is_uncertain_not_invented(tmp_path):
    tool = AdvancedPerformanceAnalyticsTool(system=PerfAlerts(None, Store(tmp_path / "e.db"), ManualClock(END)))
    res = tool.run(action="analyze")
    assert res.status == "uncertain" and "no data" in res.error
    assert res.data["health"]["score"] is None


def test_exceptions_become_redacted_fail_results_and_retries_are_safe(tmp_path):
    system = _known_data(tmp_path)

    class Broken(PerfAlerts):
        def analyze(self, *a, **k):
            raise RuntimeError(f"cannot reach {HOOK}")

    broken = Broken(system.config, system.store, system.clock)
    res = AdvancedPerformanceAnalyticsTool(system=broken).run(action="analyze")
    assert res.status == "fail" and "RuntimeError" in res.error
    assert "sEcReT" not in res.to_json() and "/webhooks/123456789012345678/***" in res.error
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    first, second = tool.run(action="alerts"), tool.run(action="alerts")
    assert first.data["alerts"] == second.data["alerts"]
    assert [c["event"] for c in second.data["changes"]] == []  # nothing changed the second time


def test_works_from_threads_and_inside_a_running_loop(tmp_path):
    system = _known_data(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    results: list[StepResult] = []

    def worker() -> None:
        results.append(tool.run(action="dashboard"))
        results.append(tool.run(action="alerts"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r.status == "ok" for r in results)

    async def inside_loop() -> StepResult:
        return tool.run(action="analyze", lookback_hours=24)

    assert asyncio.run(inside_loop()).status == "ok"


def _with_discord(tmp_path, url: str) -> PerfAlerts:
    """The known data, with every route going to one Discord webhook."""
    from perf_alerts.config import parse_config

    base = _known_data(tmp_path)
    text = f"""
receivers:
  - name: ops
    discord: {{webhook_url: "{url}"}}
route: {{receiver: ops, group_wait: 0s}}
"""
    cfg = parse_config(text)
    cfg.rules = base.config.rules
    cfg.metrics = base.config.metrics
    return PerfAlerts(cfg, base.store, base.clock)


def test_tools_deliver_through_the_real_pipeline(tmp_path):
    from fake_discord import fake_discord

    with fake_discord() as srv:
        system = _with_discord(tmp_path, srv.url_for(77, "sEcReT-ToKeN_tool"))
        tool = AdvancedPerformanceAnalyticsTool(system=system)
        al = tool.run(action="alerts", send_notifications=True)
        assert al.status == "ok" and al.data["notifications"]["delivered"] >= 1
        assert al.data["notifications"]["still_pending"] == 0
        assert "CrewToolErrors" in json.dumps(srv.messages(77))
        assert tool.run(action="alerts").data["notifications"]["sent"] is False

        async def in_loop() -> StepResult:  # from inside a running event loop
            return tool.run(action="executive_summary", send_notifications=True)

        # inside a running loop the tool must not hold the loop up: delivery goes on in the background
        ex = asyncio.run(in_loop())
        assert ex.status == "uncertain" and ex.data["delivery"]["state"] == "queued; delivering in the background"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (srv.messages(77)[-1].get("attachments")):
            time.sleep(0.05)
        assert srv.messages(77)[-1]["attachments"][0]["filename"] == "executive-summary.png"
        msg = DiscordAlertTool(system=system).run(title="Latency", severity="warning", text="p95 up",
                                                  metrics={"p95_s": 8.2})
        assert msg.status == "ok" and msg.data["delivered"] is True
        assert "p95_s" in json.dumps(srv.messages(77)[-1])
        srv.disappear(77)  # the webhook is deleted: the tool must not claim delivery
        dead = DiscordAlertTool(system=system).run(title="Again", severity="warning", text="x")
        assert dead.status == "fail" and dead.data.get("delivered") is not True and "not delivered" in (dead.error or "")
        for r in (al, ex, msg, dead):
            assert "sEcReT-ToKeN_tool" not in r.to_json()


def test_real_pipeline_delivers_to_the_console_receiver(tmp_path, monkeypatch, capsys):
    for k in ("DISCORD_WEBHOOK_URL", "DISCORD_WEBHOOK_CRITICAL", "DISCORD_WEBHOOK_OPS", "DISCORD_WEBHOOK_LEADERSHIP"):
        monkeypatch.delenv(k, raising=False)
    system = _known_data(tmp_path)
    res = DiscordAlertTool(system=system).run(title="Crew slow", severity="warning", text="p95 up",
                                              metrics={"p95_s": 8.2})
    assert res.status == "ok" and res.data["delivered"] is True, res.error
    ex = AdvancedPerformanceAnalyticsTool(system=system).run(action="executive_summary", send_notifications=True)
    assert ex.status == "ok" and ex.data["delivery"]["state"] == "delivered"
    assert "Executive performance summary" in capsys.readouterr().out


def test_discord_tool_bad_args(tmp_path):
    tool = DiscordAlertTool(system=_known_data(tmp_path))
    assert isinstance(tool, BaseTool)
    assert tool.run(title="x", severity="urgent").error.endswith("valid: critical, warning, info")
    assert tool.run(title=" ").status == "fail"
    assert tool.run(severity="info").status == "fail"


# --------------------------------------------------------------------------- the crew, end to end


def test_crew_definition_is_valid_for_crewai(tmp_path):
    c = PerformanceAnalyticsCrew(llm=ScriptedLLM(model="gpt-4o-mini"), system=_known_data(tmp_path)).crew()
    assert isinstance(c, Crew)
    assert [t.name for t in c.tasks] == list(TASK_NAMES)
    assert sum(1 for t in c.tasks if t.async_execution) <= 1
    assert not any(t.async_execution for t in c.tasks[:-1])
    (agent,) = c.agents
    assert agent.role.strip() == "System Alert Manager"
    assert {t.name for t in agent.tools} == {"advanced_performance_analytics", "discord_alert"}
    for t in c.tasks:
        assert t.expected_output and "advanced_performance_analytics" in t.description
        assert "{lookback_hours}" in t.description or "{horizon_hours}" in t.description \
            or "{send_notifications}" in t.description
    with pytest.raises(ValueError, match="valid: run_performance_analytics"):
        PerformanceAnalyticsCrew(llm=ScriptedLLM(model="m")).crew(task_names=["nope"])


def test_full_crew_kickoff_runs_each_task_with_the_right_action(tmp_path):
    system = _known_data(tmp_path)
    expected = system.analyze(lookback=24 * 3600).to_dict()  # before the alerts task fires an alert (which lowers health)
    llm = ScriptedLLM(model="gpt-4o-mini")
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_tool(source: Any, event: ToolUsageStartedEvent) -> None:
        with lock:
            calls.append({"task": event.task_name, "args": event.tool_args})

    crewai_event_bus.on(ToolUsageStartedEvent)(on_tool)
    try:
        crew = PerformanceAnalyticsCrew(llm=llm, system=system).crew()
        out = crew.kickoff(inputs={**DEFAULT_INPUTS, "lookback_hours": 24, "horizon_hours": 6})
        crewai_event_bus.flush()
    finally:
        crewai_event_bus.off(ToolUsageStartedEvent, on_tool)
    assert llm.calls == 10
    by_task = {t.name: t.raw for t in out.tasks_output}
    actions = {c["task"]: (c["args"] if isinstance(c["args"], dict) else json.loads(c["args"]))["action"] for c in calls}
    assert actions == {
        "run_performance_analytics": "analyze", "monitor_performance_alerts": "alerts",
        "predictive_performance_analysis": "predict", "optimize_system_performance": "optimize",
        "send_performance_executive_summary": "executive_summary",
    }
    an = _observation(by_task["run_performance_analytics"])
    assert an["data"]["health"]["score"] == expected["health"]["score"]
    assert f'"score":{expected["health"]["score"]}' in by_task["run_performance_analytics"]
    al = _observation(by_task["monitor_performance_alerts"])
    assert al["data"]["alerts"][0]["rule"] == "CrewToolErrors" and al["data"]["alerts"][0]["value"] == 5.0
    assert "tool file_writer failing 25% of calls (5 of 20)" in by_task["optimize_system_performance"]
    pr = _observation(by_task["predictive_performance_analysis"])["data"]
    assert pr["horizon"] == "6h"
    _assert_ramp_breaches(pr["breaches"], raw=by_task["predictive_performance_analysis"])
    ex = _observation(by_task["send_performance_executive_summary"])["data"]
    assert ex["period"]["length"] == "1d" and ex["alerts"]["firing_now"] == al["data"]["firing"]


# --------------------------------------------------------------------------- instrumentation


class FlakyTool(BaseTool):
    """Fails its first attempt, then works. CrewAI's ToolUsage re-invokes a tool that raised once
    silently (no error event): the listener's tool wrappers must still count that failure."""

    name: str = "file_writer"
    description: str = "Writes a file. Argument: text."
    failures_left: int = 1

    def _run(self, text: str = "") -> str:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError("disk full")
        return f"wrote {len(text)} characters"


RULES = """
pricing:
  gpt-4o-mini: {input: 0.15, output: 0.60}
rules:
  - name: ToolFailing
    type: threshold
    metric: crew_tool_errors
    aggregate: sum
    window: 10m
    op: ">="
    value: 1
    severity: warning
"""


@pytest.mark.parametrize("failures", [1, 2])
def test_listener_records_a_kickoff_and_a_tool_error_rule_fires(tmp_path, failures):
    cfg = parse_config(RULES)
    system = PerfAlerts(cfg, Store(tmp_path / "inst.db"))
    llm = ScriptedLLM(model="gpt-4o-mini", steps=[
        lambda m: 'Thought: write it\nAction: file_writer\nAction Input: {"text": "hello"}',
        lambda m: "Thought: I now know the final answer\nFinal Answer: written",
    ])
    writer = Agent(role="writer", goal="write files", backstory="a writer", llm=llm,
                   tools=[FlakyTool(failures_left=failures)],
                   allow_delegation=False, max_iter=4)
    task = Task(name="write_report", description="Write hello to a file.", expected_output="confirmation",
                agent=writer)
    crew = Crew(agents=[writer], tasks=[task], process=Process.sequential, name="docs_crew")
    listener = instrument(crew, system=system)
    try:
        crew.kickoff()
        listener.flush(wait_for_bus=True)
    finally:
        listener.close()
    series = {(s.metric, tuple(sorted(s.labels.items()))): s.id for s in system.store.list_series()}
    llm_labels = (("agent", "writer"), ("crew", "docs_crew"), ("model", "gpt-4o-mini"), ("task", "write_report"))
    tool_labels = (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report"), ("tool", "file_writer"))
    task_labels = (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report"))

    def values(metric: str, labels: tuple) -> list[float]:
        sid = series[(metric, labels)]
        return system.store.query([sid], 0, time.time() + 60).value.tolist()

    assert len(values(catalog.LLM_SECONDS, llm_labels)) == 2
    assert values(catalog.LLM_PROMPT_TOKENS, llm_labels) == [1200.0, 1200.0]
    assert values(catalog.LLM_COMPLETION_TOKENS, llm_labels) == [300.0, 300.0]
    assert values(catalog.COST_USD, llm_labels) == pytest.approx([(1200 * 0.15 + 300 * 0.6) / 1e6] * 2)
    assert len(values(catalog.TOOL_SECONDS, tool_labels)) == failures + 1  # each failed attempt and the success
    assert values(catalog.TOOL_ERRORS, tool_labels) == [1.0] * failures  # the silent first failure counted too
    (task_s,) = values(catalog.TASK_SECONDS, task_labels)
    (kick_s,) = values(catalog.KICKOFF_SECONDS, (("crew", "docs_crew"),))
    assert 0 <= task_s <= kick_s < 60
    assert (catalog.TASK_FAILURES, task_labels) not in series
    res = system.evaluate()
    firing = [a for a in res.active if a.rule == "ToolFailing" and a.state.value == "firing"]
    assert len(firing) == 1 and firing[0].labels["tool"] == "file_writer" and firing[0].labels["agent"] == "writer"


def test_listener_pairs_out_of_order_events_and_records_llm_errors(tmp_path):
    system = PerfAlerts(parse_config(RULES), Store(tmp_path / "pairs.db"))
    listener = CrewMetricsListener(system=system, flush_every=3)
    try:
        from datetime import datetime, timedelta, timezone

        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        common = {"model": "gpt-4o-mini", "agent_role": "researcher", "task_name": "t"}
        start = LLMCallStartedEvent(call_id="c1", messages="hi", **common)
        start.timestamp = t0
        done = LLMCallCompletedEvent(call_id="c1", response="ok", call_type=LLMCallType.LLM_CALL,
                                     usage={"input_tokens": 10, "output_tokens": 5}, **common)
        done.timestamp = t0 + timedelta(seconds=2.5)
        listener._on_llm_ended(None, done)  # completion handled before its start
        listener._on_llm_started(None, start)
        s2 = LLMCallStartedEvent(call_id="c2", **common)
        s2.timestamp = t0 + timedelta(seconds=3)
        f2 = LLMCallFailedEvent(call_id="c2", error="rate limited", **common)
        f2.timestamp = t0 + timedelta(seconds=4)
        listener._on_llm_started(None, s2)
        listener._on_llm_ended(None, f2)
        listener.flush()
    finally:
        listener.close()
    by_metric: dict[str, list[float]] = {}
    for s in system.store.list_series():
        by_metric[s.metric] = system.store.query([s.id], 0, 2e9).value.tolist()
        assert s.labels == {"crew": "unknown", "agent": "researcher", "task": "t", "model": "gpt-4o-mini"}
    assert by_metric[catalog.LLM_SECONDS] == [2.5, 1.0]  # the failed call's seconds too
    assert by_metric[catalog.LLM_ERRORS] == [1.0]
    assert by_metric[catalog.LLM_PROMPT_TOKENS] == [10.0]
    assert by_metric[catalog.COST_USD] == pytest.approx([(10 * 0.15 + 5 * 0.6) / 1e6])
    assert listener.pending_samples() == 0 and not listener.write_errors


def make_llm() -> ScriptedLLM:
    """`perf-alerts crew kickoff --llm-factory test_crew:make_llm` (used by test_crew_cli.py)."""
    return ScriptedLLM(model="gpt-4o-mini")


def test_listener_records_task_failures_and_kickoff_seconds(tmp_path):
    from datetime import datetime, timedelta, timezone

    from crewai.events.types.crew_events import CrewKickoffCompletedEvent, CrewKickoffStartedEvent
    from crewai.events.types.task_events import TaskFailedEvent, TaskStartedEvent

    system = PerfAlerts(parse_config(RULES), Store(tmp_path / "tasks.db"))
    listener = CrewMetricsListener(system=system)
    listener.close()  # drive the handlers directly
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ks = CrewKickoffStartedEvent(crew_name="c", inputs={})
    ks.timestamp = t0
    ts = TaskStartedEvent(context="", task_name="t", agent_role="a")
    ts.timestamp, ts.task_id = t0 + timedelta(seconds=1), "task-1"
    tf = TaskFailedEvent(error="boom", task_name="t", agent_role="a")
    tf.timestamp, tf.task_id, tf.started_event_id = t0 + timedelta(seconds=4), "task-1", ts.event_id
    ke = CrewKickoffCompletedEvent(crew_name="c", output=None, started_event_id=ks.event_id)
    ke.timestamp = t0 + timedelta(seconds=5)
    listener._on_task_ended(None, tf)
    listener._on_task_started(None, ts)
    listener._on_kickoff_started(None, ks)
    listener._on_kickoff_ended(None, ke)  # flushes
    got = {(s.metric, s.labels.get("task")): system.store.query([s.id], 0, 2e9).value.tolist()
           for s in system.store.list_series()}
    assert got == {(catalog.TASK_SECONDS, "t"): [3.0], (catalog.TASK_FAILURES, "t"): [1.0],
                   (catalog.KICKOFF_SECONDS, None): [5.0]}
