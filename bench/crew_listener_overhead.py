"""Overhead of the perf-alerts crew listener per LLM call and per tool call.

Two measurements, both over many prebuilt events (event construction is not timed):
1. handlers direct: the listener's own handlers for one call (start + end), including its share
   of the batched SQLite writes (a real store file), in µs per call;
2. through CrewAI's event bus: `crewai_event_bus.emit` of the start/end pair for N calls, then
   `flush()`, without and with the listener registered (a no-op handler stands in for CrewAI's
   other listeners in the baseline) → ratio and µs added per call.

    .venv/bin/python bench/crew_listener_overhead.py [--n 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crewai.events.event_bus import crewai_event_bus  # noqa: E402
from crewai.events.types.llm_events import (  # noqa: E402
    LLMCallCompletedEvent, LLMCallStartedEvent, LLMCallType,
)
from crewai.events.types.tool_usage_events import ToolUsageFinishedEvent, ToolUsageStartedEvent  # noqa: E402

from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.crew.instrument import CrewMetricsListener  # noqa: E402
from perf_alerts.store import Store  # noqa: E402

CFG = "pricing:\n  gpt-4o-mini: {input: 0.15, output: 0.60}\n"
COMMON = {"agent_role": "researcher", "task_name": "research", "task_id": "t1"}


def llm_events(n: int) -> list[tuple]:
    out = []
    for i in range(n):
        s = LLMCallStartedEvent(call_id=f"c{i}", model="gpt-4o-mini", **COMMON)
        e = LLMCallCompletedEvent(call_id=f"c{i}", model="gpt-4o-mini", response="ok", call_type=LLMCallType.LLM_CALL,
                                  usage={"prompt_tokens": 1200, "completion_tokens": 300}, **COMMON)
        out.append((s, e))
    return out


def tool_events(n: int) -> list[tuple]:
    out = []
    now = datetime.now(timezone.utc)
    for i in range(n):
        s = ToolUsageStartedEvent(tool_name="web_search", tool_args={"q": "x"}, **COMMON)
        e = ToolUsageFinishedEvent(tool_name="web_search", tool_args={"q": "x"}, started_at=now, finished_at=now,
                                   output="r", **COMMON)
        e.started_event_id = s.event_id
        out.append((s, e))
    return out


def direct(listener: CrewMetricsListener, pairs: list[tuple], kind: str) -> float:
    on_start = listener._on_llm_started if kind == "llm" else listener._on_tool_started
    on_end = listener._on_llm_ended if kind == "llm" else listener._on_tool_ended
    t0 = time.perf_counter()
    for s, e in pairs:
        on_start(None, s)
        on_end(None, e)
    listener.flush()
    return (time.perf_counter() - t0) / len(pairs) * 1e6


def through_bus(pairs: list[tuple]) -> float:
    """CrewAI's console listener prints tool events; its output goes to /dev/null while timing."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        t0 = time.perf_counter()
        for s, e in pairs:
            crewai_event_bus.emit(None, s)
            crewai_event_bus.emit(None, e)
        crewai_event_bus.flush()
        return (time.perf_counter() - t0) / len(pairs) * 1e6
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    n = ap.parse_args().n
    tmp = tempfile.mkdtemp()
    system = PerfAlerts(parse_config(CFG), Store(Path(tmp) / "bench.db"))

    listener = CrewMetricsListener(system=system)
    listener.close()  # registered handlers off: measure the handlers alone first
    d_llm = direct(listener, llm_events(n), "llm")
    d_tool = direct(listener, tool_events(n), "tool")

    def noop(source, event):  # CrewAI's own listeners stand-in, so the baseline pays the dispatch
        return None

    for et in (LLMCallStartedEvent, LLMCallCompletedEvent, ToolUsageStartedEvent, ToolUsageFinishedEvent):
        crewai_event_bus.on(et)(noop)
    through_bus(llm_events(500))  # warm the executor
    base_llm = through_bus(llm_events(n))
    base_tool = through_bus(tool_events(n))
    listener = CrewMetricsListener(system=system)
    with_llm = through_bus(llm_events(n))
    with_tool = through_bus(tool_events(n))
    listener.close()
    recorded = system.store.sample_count()

    print(f"crew listener overhead (n={n:,} calls each; store: SQLite file; recorded {recorded:,} samples)")
    print(f"  handlers direct : {d_llm:7.1f} µs per LLM call (4 samples: seconds, 2× tokens, cost), "
          f"{d_tool:7.1f} µs per tool call")
    print(f"  via event bus   : LLM call {base_llm:7.1f} → {with_llm:7.1f} µs "
          f"(×{with_llm / base_llm:.2f}, +{with_llm - base_llm:.1f} µs); "
          f"tool call {base_tool:7.1f} → {with_tool:7.1f} µs (×{with_tool / base_tool:.2f}, "
          f"+{with_tool - base_tool:.1f} µs)")
    print(f"  vs a 1 s LLM call: {d_llm / 1e6:.4%} added")


if __name__ == "__main__":
    main()
