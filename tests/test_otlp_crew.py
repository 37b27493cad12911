"""A real CrewAI crew watched over OTLP (issue 15 item 2): instrumented by OpenInference
(`openinference-instrumentation-crewai`, its event-listener mode, which traces LLM and tool
calls too), exported by the real `opentelemetry-exporter-otlp-proto-http` to a perf-alerts
server on 127.0.0.1. The store behind the server holds the crew_* series that the in-process
listener (`instrument(crew)`), attached to the same kickoff, records into a store of its own:
same metrics, same labels, same counts, tokens and cost, durations equal within the span
timing; and rules on the OTLP-fed series fire.

The scripted LLM reports its usage through `BaseLLM._track_token_usage_internal`, as CrewAI's
provider LLMs do (that is where OpenInference reads token counts). What OTLP cannot see: a
tool attempt that raised and was silently retried by CrewAI (no event, no span); the listener
counts it through its tool wrappers, so the comparison uses a tool that does not fail, and the
failing-tool test checks the reported failure only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import require  # noqa: E402

require("crewai")
require("fastapi")
require("openinference.instrumentation.crewai")
require("opentelemetry.sdk")
require("opentelemetry.exporter.otlp.proto.http")

from crewai import Agent, Crew, Process, Task  # noqa: E402
from crewai.events.event_bus import crewai_event_bus  # noqa: E402
from crewai.events.types.llm_events import LLMCallType  # noqa: E402
from crewai.llms.base_llm import llm_call_context  # noqa: E402

from perf_alerts import catalog  # noqa: E402
from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.crew import instrument  # noqa: E402
from perf_alerts.store import Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_crew import RULES, FlakyTool, ScriptedLLM  # noqa: E402
from test_http import LiveServer  # noqa: E402

# test_crew's rules (the tool-failure rule the listener test fires) and one on the LLM calls
CONFIG = RULES + """\
  - name: BusyLLM
    type: threshold
    metric: crew_llm_call_seconds
    aggregate: count
    window: 10m
    op: ">="
    value: 2
    severity: info
"""


class TrackedLLM(ScriptedLLM):
    """ScriptedLLM that also records its usage on the LLM, as the provider LLMs do."""

    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,  # type: ignore[override]
             from_agent=None, response_model=None):
        with llm_call_context():
            self._emit_call_started_event(messages=messages, tools=tools, from_task=from_task, from_agent=from_agent)
            self.calls += 1
            msgs = messages if isinstance(messages, list) else [{"role": "user", "content": messages}]
            text = self.steps.pop(0)(msgs)
            self._track_token_usage_internal(dict(self.usage))
            self._emit_call_completed_event(response=text, call_type=LLMCallType.LLM_CALL, from_task=from_task,
                                            from_agent=from_agent, messages=messages, usage=dict(self.usage))
            return text


@pytest.fixture
def tracing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PerfAlerts, Any]]:
    """A perf-alerts server on 127.0.0.1 and a tracer provider exporting to it through OpenInference."""
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # the tests' default; this one exports to 127.0.0.1
    from openinference.instrumentation.crewai import CrewAIInstrumentor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    system = PerfAlerts(parse_config(CONFIG), Store(tmp_path / "otlp.db"))
    with LiveServer(system) as srv:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=srv.url + "/v1/traces")))
        instrumentor = CrewAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider, use_event_listener=True)
        try:
            yield system, provider
        finally:
            instrumentor.uninstrument()
            provider.shutdown()


def _crew(tool_failures: int) -> Crew:
    llm = TrackedLLM(model="gpt-4o-mini", steps=[
        lambda m: 'Thought: write it\nAction: file_writer\nAction Input: {"text": "hello"}',
        lambda m: "Thought: I now know the final answer\nFinal Answer: written",
    ])
    writer = Agent(role="writer", goal="write files", backstory="a writer", llm=llm,
                   tools=[FlakyTool(failures_left=tool_failures)], allow_delegation=False, max_iter=4)
    task = Task(name="write_report", description="Write hello to a file.", expected_output="confirmation",
                agent=writer)
    return Crew(agents=[writer], tasks=[task], process=Process.sequential, name="docs_crew")


def _series(system: PerfAlerts) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    out = {}
    for s in system.store.list_series():
        out[(s.metric, tuple(sorted(s.labels.items())))] = system.store.query([s.id], 0, time.time() + 60).value.tolist()
    return out


def _kickoff(tmp_path: Path, provider: Any, tool_failures: int) -> PerfAlerts:
    """Run the crew with the in-process listener attached too; returns the listener's system."""
    local = PerfAlerts(parse_config(CONFIG), Store(tmp_path / "listener.db"))
    crew = _crew(tool_failures)
    listener = instrument(crew, system=local)
    try:
        crew.kickoff()
        listener.flush(wait_for_bus=True)
    finally:
        listener.close()
    crewai_event_bus.flush()
    assert provider.force_flush(20_000)
    return local


def test_openinference_spans_over_otlp_give_the_listeners_series(tmp_path: Path, tracing: tuple[PerfAlerts, Any]) -> None:
    system, provider = tracing
    local = _kickoff(tmp_path, provider, tool_failures=0)
    ours, theirs = _series(system), _series(local)
    assert set(ours) == set(theirs), (sorted(set(ours) ^ set(theirs)))
    llm = (("agent", "writer"), ("crew", "docs_crew"), ("model", "gpt-4o-mini"), ("task", "write_report"))
    assert (catalog.LLM_SECONDS, llm) in ours and (catalog.KICKOFF_SECONDS, (("crew", "docs_crew"),)) in ours
    assert {m for m, _ in ours} == {catalog.LLM_SECONDS, catalog.LLM_PROMPT_TOKENS, catalog.LLM_COMPLETION_TOKENS,
                                    catalog.COST_USD, catalog.TOOL_SECONDS, catalog.TASK_SECONDS,
                                    catalog.KICKOFF_SECONDS}
    for key, values in theirs.items():
        got = ours[key]
        assert len(got) == len(values), key
        if key[0].endswith("_seconds"):  # the spans are timed by the same CrewAI events the listener reads
            # (their handlers run on the event bus's threads: a loaded CI machine delays one by tens of ms)
            assert sorted(got) == pytest.approx(sorted(values), abs=0.2), key
        else:
            assert sorted(got) == pytest.approx(sorted(values)), key
    (task_s,) = ours[(catalog.TASK_SECONDS, (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report")))]
    (kick_s,) = ours[(catalog.KICKOFF_SECONDS, (("crew", "docs_crew"),))]
    assert 0 <= sum(ours[(catalog.LLM_SECONDS, llm)]) <= task_s <= kick_s < 60
    res = system.evaluate()
    busy = [a for a in res.active if a.rule == "BusyLLM" and a.state.value == "firing"]
    assert len(busy) == 1 and busy[0].labels["agent"] == "writer" and busy[0].labels["task"] == "write_report"


def test_a_failing_tool_seen_over_otlp_fires_the_tool_rule(tmp_path: Path, tracing: tuple[PerfAlerts, Any]) -> None:
    system, provider = tracing
    _kickoff(tmp_path, provider, tool_failures=2)
    ours = _series(system)
    tool = (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report"), ("tool", "file_writer"))
    assert ours[(catalog.TOOL_ERRORS, tool)] and all(v == 1.0 for v in ours[(catalog.TOOL_ERRORS, tool)])
    res = system.evaluate()
    firing = [a for a in res.active if a.rule == "ToolFailing" and a.state.value == "firing"]
    assert len(firing) == 1 and firing[0].labels["tool"] == "file_writer" and firing[0].labels["crew"] == "docs_crew"


def test_traceloop_instrumentation_gives_kickoff_and_task_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Traceloop's `opentelemetry-instrumentation-crewai` on the same crew: its workflow and task spans (it
    traces `LLM.call`, which a custom BaseLLM does not go through, so no LLM spans here) become the kickoff
    and task series; its task spans carry the description, not the task name, so that is the task label."""
    require("opentelemetry.instrumentation.crewai")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.crewai import CrewAIInstrumentor as TraceloopInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    system = PerfAlerts(parse_config(CONFIG), Store(tmp_path / "otlp.db"))
    with LiveServer(system) as srv:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=srv.url + "/v1/traces")))
        instrumentor = TraceloopInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            local = _kickoff(tmp_path, provider, tool_failures=0)
        finally:
            instrumentor.uninstrument()
            provider.shutdown()
    ours, theirs = _series(system), _series(local)
    kick = (catalog.KICKOFF_SECONDS, (("crew", "docs_crew"),))
    # Traceloop's workflow span wraps Crew.kickoff whole, crewai's own set-up before its kickoff event
    # included (0.3 s once in CI, under load): the listener's kickoff lies within the span's timing
    ((span_kick,), (listener_kick,)) = ours[kick], theirs[kick]
    assert listener_kick - 0.05 <= span_kick <= listener_kick + 2.0, (span_kick, listener_kick)
    (task_s,) = ours[(catalog.TASK_SECONDS, (("agent", "writer"), ("crew", "docs_crew"),
                                             ("task", "Write hello to a file.")))]
    (listener_task_s,) = theirs[(catalog.TASK_SECONDS, (("agent", "writer"), ("crew", "docs_crew"),
                                                        ("task", "write_report")))]
    assert listener_task_s - 0.05 <= task_s <= span_kick, (task_s, listener_task_s, span_kick)
    assert {m for m, _ in ours} == {catalog.KICKOFF_SECONDS, catalog.TASK_SECONDS}
