"""Crew instrumentation: a CrewAI event listener that records crew performance into the store.

    from perf_alerts.crew import instrument
    instrument(crew)                        # one line; returns the listener

Per crew / agent / task / tool / model it records (names in `perf_alerts.catalog`):
LLM call seconds, prompt and completion tokens, cost (USD from `Config.pricing`), LLM
errors, tool call seconds, tool errors, task seconds, task failures and kickoff seconds.
Errors and failures are events with value 1; `*_seconds` are recorded for failed attempts too.

CrewAI runs sync handlers on a thread pool, so a "completed" event can be handled before
its "started" one: durations come from the events' own timestamps and each start/end pair
is matched whichever arrives first. Handlers only append to a lock-protected buffer; the
buffer is written with one `Store.insert_samples` batch when it reaches `flush_every`
samples, at the end of each kickoff, and on `flush()` / `close()`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from crewai.events import BaseEventListener
from crewai.events.base_events import BaseEvent
from crewai.events.event_bus import CrewAIEventsBus, crewai_event_bus
from crewai.events.types.crew_events import (
    CrewKickoffCompletedEvent,
    CrewKickoffFailedEvent,
    CrewKickoffStartedEvent,
)
from crewai.events.types.llm_events import LLMCallCompletedEvent, LLMCallFailedEvent, LLMCallStartedEvent
from crewai.events.types.task_events import TaskCompletedEvent, TaskFailedEvent, TaskStartedEvent
from crewai.events.types.tool_usage_events import (
    ToolUsageErrorEvent,
    ToolUsageFinishedEvent,
    ToolUsageStartedEvent,
)

from perf_alerts import catalog
from perf_alerts.analytics.recommend import call_cost
from perf_alerts.model import Sample

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts

log = logging.getLogger("perf_alerts.crew")
UNKNOWN = "unknown"
MAX_PENDING = 10_000  # unmatched start events kept (a crash mid-call must not leak memory forever)
_WS = re.compile(r"\s+")


def _label(value: Any, limit: int = 80) -> str:
    if value is None:
        return UNKNOWN
    s = _WS.sub(" ", str(value)).strip()
    if not s:
        return UNKNOWN
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _ts(dt: Any) -> float:
    if isinstance(dt, datetime):
        return dt.timestamp()
    if isinstance(dt, (int, float)):
        return float(dt)
    return time.time()


def _tokens(usage: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    if not usage:
        return None, None

    def first(*keys: str) -> float | None:
        for k in keys:
            v = usage.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                return float(v)
        return None

    return (first("prompt_tokens", "input_tokens", "prompt_token_count"),
            first("completion_tokens", "output_tokens", "candidates_token_count"))


class CrewMetricsListener(BaseEventListener):
    """Records crew metrics from CrewAI events. Registering happens on construction; `close()` undoes it.

    `crew`: only record events of this crew (its agents, tasks and kickoffs); None records every crew.
    """

    def __init__(self, system: "PerfAlerts | None" = None, crew: Any = None, *, flush_every: int = 256,
                 pricing: Mapping[str, Any] | None = None) -> None:
        if system is None:
            from perf_alerts.core import default_system

            system = default_system()
        self.system = system
        self.pricing = system.config.pricing if pricing is None else pricing
        self.flush_every = max(1, int(flush_every))
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buf: list[Sample] = []
        self._pending: dict[tuple[str, str], tuple[float, Any]] = {}
        self._crew_of: dict[str, str] = {}  # agent id / task id → crew name
        self._only: set[str] | None = None
        self._only_crews: set[int] = set()
        self._only_name: str | None = None
        self._handlers: list[tuple[type[BaseEvent], Callable[..., Any]]] = []
        # failed attempts seen by the tool wrappers, per (agent role, tool name): (start, end) times
        self._raised: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self.recorded = 0
        self.write_errors: list[str] = []
        self._closed = False
        if crew is not None:
            self._adopt_crew(crew)
            self._watch_tools(crew)
            self._only = set(self._crew_of)
            self._only_crews.add(id(crew))
            self._only_name = getattr(crew, "name", None)
        super().__init__()

    # -- registration -----------------------------------------------------------------
    def setup_listeners(self, crewai_event_bus: CrewAIEventsBus) -> None:
        # Annotated: mypy would otherwise join the event classes to pydantic's ModelMetaclass.
        pairs: list[tuple[type[BaseEvent], Callable[..., Any]]] = [
            (CrewKickoffStartedEvent, self._on_kickoff_started),
            (CrewKickoffCompletedEvent, self._on_kickoff_ended),
            (CrewKickoffFailedEvent, self._on_kickoff_ended),
            (TaskStartedEvent, self._on_task_started),
            (TaskCompletedEvent, self._on_task_ended),
            (TaskFailedEvent, self._on_task_ended),
            (LLMCallStartedEvent, self._on_llm_started),
            (LLMCallCompletedEvent, self._on_llm_ended),
            (LLMCallFailedEvent, self._on_llm_ended),
            (ToolUsageStartedEvent, self._on_tool_started),
            (ToolUsageFinishedEvent, self._on_tool_ended),
            (ToolUsageErrorEvent, self._on_tool_ended),
        ]
        for event_type, handler in pairs:
            crewai_event_bus.on(event_type)(handler)
        self._handlers = pairs

    def close(self) -> None:
        """Unregister from the event bus and write what is buffered."""
        if not self._closed:
            for event_type, handler in self._handlers:
                crewai_event_bus.off(event_type, handler)
            self._closed = True
        self.flush()

    def __enter__(self) -> "CrewMetricsListener":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- buffering --------------------------------------------------------------------
    def _add(self, samples: list[Sample]) -> None:
        with self._lock:
            self._buf.extend(samples)
            full = len(self._buf) >= self.flush_every
        if full:
            self.flush()

    def flush(self, wait_for_bus: bool = False) -> int:
        """Write buffered samples to the store; with `wait_for_bus`, first let pending handlers finish."""
        if wait_for_bus:
            crewai_event_bus.flush()
        with self._flush_lock:  # one writer at a time keeps batches whole and ordered
            with self._lock:
                batch, self._buf = self._buf, []
            if not batch:
                return 0
            try:
                n = self.system.store.insert_samples(batch)
            except Exception as e:  # never break the crew because the store is unavailable
                from perf_alerts.notify.redact import redact

                text = redact(f"{type(e).__name__}: {e}")
                if not self.write_errors or self.write_errors[-1] != text:
                    # the traceback once per new error (a bug must be findable; a store that stays
                    # down must not log every flush), the text kept for whoever reads write_errors
                    log.exception("crew metrics: writing %d samples to the store failed (kept for the next "
                                  "flush)", len(batch))
                self.write_errors.append(text)
                del self.write_errors[:-20]
                with self._lock:  # keep them for the next attempt (bounded)
                    self._buf[:0] = batch[-10 * self.flush_every:]
                return 0
            self.recorded += n
            return n

    def pending_samples(self) -> int:
        with self._lock:
            return len(self._buf)

    # -- pairing ----------------------------------------------------------------------
    def _pair(self, key: tuple[str, str], ts: float, payload: Any, is_start: bool) -> tuple[float, Any] | None:
        """Match a start with its end, in whichever order they arrive: returns the other side or None."""
        k = (("s:" if not is_start else "e:") + key[0], key[1])
        mine = (("s:" if is_start else "e:") + key[0], key[1])
        with self._lock:
            other = self._pending.pop(k, None)
            if other is None:
                if len(self._pending) >= MAX_PENDING:
                    self._pending.pop(next(iter(self._pending)))
                self._pending[mine] = (ts, payload)
        return other

    # -- crew membership --------------------------------------------------------------
    def _adopt_crew(self, crew: Any) -> str:
        name = _label(getattr(crew, "name", None) or "crew")
        for a in getattr(crew, "agents", None) or []:
            if getattr(a, "id", None) is not None:
                self._crew_of[str(a.id)] = name
        for t in getattr(crew, "tasks", None) or []:
            if getattr(t, "id", None) is not None:
                self._crew_of[str(t.id)] = name
            ag = getattr(t, "agent", None)
            if ag is not None and getattr(ag, "id", None) is not None:
                self._crew_of[str(ag.id)] = name
        return name

    def _watch_tools(self, crew: Any) -> None:
        """Count every raising attempt of the crew's tools.

        CrewAI's ToolUsage re-invokes a tool that raised once, silently (no event), before it
        reports an error; only a second failure emits ToolUsageErrorEvent. The wrappers see each
        raise; the event handlers then attribute the ones no event reported (see _on_tool_ended).
        """
        for agent in getattr(crew, "agents", None) or []:
            role = _label(getattr(agent, "role", None))
            for tool in getattr(agent, "tools", None) or []:
                run = getattr(tool, "_run", None)
                if run is None or getattr(run, "_perf_alerts_watched", False):
                    continue
                key = (role, _label(str(getattr(tool, "name", "")).strip().lower()))
                try:
                    object.__setattr__(tool, "_run", self._watched(run, key))
                except Exception:  # a tool we cannot wrap is still measured through the events
                    continue

    def _watched(self, run: Callable[..., Any], key: tuple[str, str]) -> Callable[..., Any]:
        def watched(*args: Any, **kwargs: Any) -> Any:
            start = time.time()
            try:
                return run(*args, **kwargs)
            except Exception:
                with self._lock:
                    self._raised.setdefault(key, []).append((start, time.time()))
                raise

        watched._perf_alerts_watched = True  # type: ignore[attr-defined]
        return watched

    def _take_raised(self, labels: dict[str, str], reported: bool) -> list[tuple[float, float]]:
        """Raised attempts of this agent's tool not yet accounted for; one is the event's own when `reported`."""
        key = (labels["agent"], labels["tool"])
        with self._lock:
            got = self._raised.pop(key, [])
        if reported and got:
            got = got[:-1]  # the last raise is the one this error event reports
        return got

    def _crew_for(self, *ids: Any) -> str | None:
        """The crew name for the first known id; None when filtering and the event is not ours."""
        for i in ids:
            if i is not None:
                name = self._crew_of.get(str(i))
                if name is not None:
                    return name
        return None if self._only is not None else UNKNOWN

    # -- kickoff ----------------------------------------------------------------------
    def _is_ours(self, source: Any) -> bool:
        return self._only is None or id(source) in self._only_crews or (
            getattr(source, "name", None) is not None and getattr(source, "name", None) == self._only_name)

    def _on_kickoff_started(self, source: Any, event: CrewKickoffStartedEvent) -> None:
        if not self._is_ours(source):
            return
        crew_name = self._adopt_crew(source) if source is not None else _label(event.crew_name)
        key = ("kickoff", str(event.event_id))
        other = self._pair(key, _ts(event.timestamp), crew_name, True)
        if other is not None:
            self._record_kickoff(crew_name, _ts(event.timestamp), other[0])

    def _on_kickoff_ended(self, source: Any, event: Any) -> None:
        if not self._is_ours(source):
            return
        crew_name = _label(getattr(source, "name", None) or event.crew_name)
        key = ("kickoff", str(event.started_event_id))
        other = self._pair(key, _ts(event.timestamp), crew_name, False)
        if other is not None:
            self._record_kickoff(other[1] or crew_name, other[0], _ts(event.timestamp))
        self.flush()

    def _record_kickoff(self, crew_name: str, start: float, end: float) -> None:
        self._add([Sample(catalog.KICKOFF_SECONDS, {"crew": crew_name}, end, max(0.0, end - start))])

    # -- tasks ------------------------------------------------------------------------
    def _task_labels(self, event: Any) -> dict[str, str] | None:
        task = getattr(event, "task", None)
        agent = getattr(task, "agent", None) if task is not None else None
        crew_name = self._crew_for(event.task_id, getattr(agent, "id", None))
        if crew_name is None:
            return None
        return {"crew": crew_name, "agent": _label(getattr(agent, "role", None) or event.agent_role),
                "task": _label(getattr(task, "name", None) or event.task_name)}

    def _on_task_started(self, source: Any, event: TaskStartedEvent) -> None:
        labels = self._task_labels(event)
        if labels is None:
            return
        other = self._pair(("task", str(event.event_id)), _ts(event.timestamp), labels, True)
        if other is not None:
            self._record_task(labels, _ts(event.timestamp), other[0], other[1])

    def _on_task_ended(self, source: Any, event: Any) -> None:
        labels = self._task_labels(event)
        if labels is None:
            return
        failed = isinstance(event, TaskFailedEvent)
        other = self._pair(("task", str(event.started_event_id)), _ts(event.timestamp), failed, False)
        if other is not None:
            self._record_task(labels, other[0], _ts(event.timestamp), failed)

    def _record_task(self, labels: dict[str, str], start: float, end: float, failed: Any) -> None:
        out = [Sample(catalog.TASK_SECONDS, labels, end, max(0.0, end - start))]
        if failed is True:
            out.append(Sample(catalog.TASK_FAILURES, labels, end, 1.0))
        self._add(out)

    # -- LLM calls --------------------------------------------------------------------
    def _llm_labels(self, event: Any) -> dict[str, str] | None:
        crew_name = self._crew_for(event.task_id, event.agent_id)
        if crew_name is None:
            return None
        return {"crew": crew_name, "agent": _label(event.agent_role), "task": _label(event.task_name),
                "model": _label(event.model, 120)}

    def _on_llm_started(self, source: Any, event: LLMCallStartedEvent) -> None:
        labels = self._llm_labels(event)
        if labels is None:
            return
        other = self._pair(("llm", event.call_id), _ts(event.timestamp), labels, True)
        if other is not None:
            self._record_llm(labels, _ts(event.timestamp), other[0], other[1])

    def _on_llm_ended(self, source: Any, event: Any) -> None:
        labels = self._llm_labels(event)
        if labels is None:
            return
        other = self._pair(("llm", event.call_id), _ts(event.timestamp), event, False)
        if other is not None:
            self._record_llm(labels, other[0], _ts(event.timestamp), event)

    def _record_llm(self, labels: dict[str, str], start: float, end: float, ended: Any) -> None:
        out = [Sample(catalog.LLM_SECONDS, labels, end, max(0.0, end - start))]
        if isinstance(ended, LLMCallFailedEvent):
            out.append(Sample(catalog.LLM_ERRORS, labels, end, 1.0))
        else:
            prompt, completion = _tokens(getattr(ended, "usage", None))
            if prompt is not None:
                out.append(Sample(catalog.LLM_PROMPT_TOKENS, labels, end, prompt))
            if completion is not None:
                out.append(Sample(catalog.LLM_COMPLETION_TOKENS, labels, end, completion))
            if prompt is not None or completion is not None:
                cost = call_cost(getattr(ended, "model", None) or labels["model"], prompt or 0.0, completion or 0.0,
                                 self.pricing)
                if cost is not None and math.isfinite(cost):
                    out.append(Sample(catalog.COST_USD, labels, end, cost))
        self._add(out)

    # -- tool calls -------------------------------------------------------------------
    def _tool_labels(self, event: Any) -> dict[str, str] | None:
        agent_obj = getattr(event, "agent", None)
        crew_name = self._crew_for(event.task_id, event.agent_id, getattr(agent_obj, "id", None))
        if crew_name is None:
            return None
        role = event.agent_role or getattr(agent_obj, "role", None)
        return {"crew": crew_name, "agent": _label(role), "task": _label(event.task_name),
                "tool": _label(str(event.tool_name).strip().lower() if event.tool_name else None)}

    def _on_tool_started(self, source: Any, event: ToolUsageStartedEvent) -> None:
        if self._tool_labels(event) is None:
            return
        other = self._pair(("tool", str(event.event_id)), _ts(event.timestamp), None, True)
        if other is not None:
            labels, end, failed = other[1]
            self._record_tool(labels, _ts(event.timestamp), end, failed)

    def _on_tool_ended(self, source: Any, event: Any) -> None:
        labels = self._tool_labels(event)
        if labels is None:
            return
        failed = isinstance(event, ToolUsageErrorEvent) or getattr(event, "failure", None) is not None
        for r_start, r_end in self._take_raised(labels, reported=isinstance(event, ToolUsageErrorEvent)):
            self._record_tool(labels, r_start, r_end, True)  # attempts that raised without an event
        end = _ts(event.timestamp)
        if isinstance(event, ToolUsageFinishedEvent):
            end = _ts(event.finished_at)
        if event.started_event_id is None:  # no scope to pair with: use what the event itself says
            start = _ts(event.started_at) if isinstance(event, ToolUsageFinishedEvent) else end
            self._record_tool(labels, start, end, failed)
            return
        other = self._pair(("tool", str(event.started_event_id)), end, (labels, end, failed), False)
        if other is not None:
            start = _ts(event.started_at) if isinstance(event, ToolUsageFinishedEvent) else other[0]
            self._record_tool(labels, start, end, failed)

    def _record_tool(self, labels: dict[str, str], start: float, end: float, failed: bool) -> None:
        out = [Sample(catalog.TOOL_SECONDS, labels, end, max(0.0, end - start))]
        if failed:
            out.append(Sample(catalog.TOOL_ERRORS, labels, end, 1.0))
        self._add(out)


def instrument(crew: Any = None, system: "PerfAlerts | None" = None, **options: Any) -> CrewMetricsListener:
    """Attach perf-alerts metrics to `crew` (or, with no crew, to every crew in the process).

    Returns the listener: `.flush()` writes what is buffered, `.close()` detaches it.
    """
    listener = CrewMetricsListener(system=system, crew=crew, **options)
    if crew is not None:
        try:  # keep it alive as long as the crew, and reachable from it
            object.__setattr__(crew, "_perf_alerts_listener", listener)
        except Exception:
            pass
    return listener
