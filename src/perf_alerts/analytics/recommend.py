"""Recommendations (the `optimize` action): concrete, derived from the data, each with evidence.

Two layers:
- `gather_usage(store, start, end, agent)` reads the crew metrics of one window into small
  per-(agent, model) / per-(agent, tool) / per-agent aggregates (the only store access here);
- `recommend(current, previous, pricing)` is pure python/numpy over those aggregates, so it
  is tested with hand-made numbers.

`optimize(system, lookback, ...)` ties both together for the tool, the CLI and summaries.

    agent researcher: p95 LLM latency 8.2 s, 3.1× the crew median (2.6 s), on model gpt-4o
    agent writer: tool file_writer failing 12% of calls (24 of 200)
    agent reviewer: cost per LLM call up 80% vs the previous 24h — consider gpt-4o-mini
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from perf_alerts import catalog
from perf_alerts.textsafe import plural

if TYPE_CHECKING:
    from perf_alerts.config import ModelPrice
    from perf_alerts.core import PerfAlerts
    from perf_alerts.store import Store

# Thresholds: what is worth telling someone about.
MIN_CALLS = 5                 # fewer samples than this say nothing reliable
LATENCY_OUTLIER_RATIO = 2.0   # p95 vs the crew median of p95s
LATENCY_OUTLIER_MIN_S = 0.5   # ... and at least this many seconds above it
FAILURE_RATE = 0.05           # tool / task failure ratio worth acting on
MIN_FAILURES = 2
COST_UP_PCT = 25.0            # cost per call vs the previous window
TOKENS_UP_PCT = 50.0          # prompt tokens per call vs the previous window
REGRESSION_RATIO = 1.5        # task p95 vs the previous window
COST_SHARE = 0.6              # one agent's share of the crew's LLM spend
MAX_RECOMMENDATIONS = 10


# --------------------------------------------------------------------------- pricing


def match_price(model: str | None, pricing: Mapping[str, "ModelPrice"]) -> tuple[str, "ModelPrice"] | None:
    """The price-table entry for `model`: exact, without a provider prefix ("openai/gpt-4o"),
    or the longest entry the name starts with ("gpt-4o-2024-08-06" → "gpt-4o")."""
    if not model or not pricing:
        return None
    names = [model, model.split("/", 1)[1] if "/" in model else model]
    for n in names:
        if n in pricing:
            return n, pricing[n]
    lowered = {k.lower(): k for k in pricing}
    for n in names:
        n = n.lower()
        if n in lowered:
            return lowered[n], pricing[lowered[n]]
        best = max((k for k in lowered if n.startswith(k + "-") or n.startswith(k + ":") or n.startswith(k + "@")),
                   key=len, default=None)
        if best is not None:
            return lowered[best], pricing[lowered[best]]
    return None


def call_cost(model: str | None, prompt_tokens: float, completion_tokens: float,
              pricing: Mapping[str, "ModelPrice"]) -> float | None:
    """USD for one call from the per-1M-token price table; None when the model is not priced."""
    hit = match_price(model, pricing)
    if hit is None:
        return None
    p = hit[1]
    return (prompt_tokens * p.input + completion_tokens * p.output) / 1e6


# --------------------------------------------------------------------------- aggregates


@dataclass
class LLMStats:
    calls: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    errors: int = 0
    cost_usd: float = 0.0
    cost_calls: int = 0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    token_calls: int = 0

    @property
    def cost_per_call(self) -> float | None:
        return self.cost_usd / self.cost_calls if self.cost_calls else None

    @property
    def prompt_per_call(self) -> float | None:
        return self.prompt_tokens / self.token_calls if self.token_calls else None

    @property
    def completion_per_call(self) -> float | None:
        return self.completion_tokens / self.token_calls if self.token_calls else None


@dataclass
class ToolStats:
    calls: int = 0
    errors: int = 0
    p95_s: float | None = None


@dataclass
class TaskStats:
    runs: int = 0
    failures: int = 0
    p95_s: float | None = None


@dataclass
class Usage:
    """One window of crew metrics, aggregated."""

    llm: dict[tuple[str, str], LLMStats] = field(default_factory=dict)      # (agent, model)
    tools: dict[tuple[str, str], ToolStats] = field(default_factory=dict)   # (agent, tool)
    tasks: dict[str, TaskStats] = field(default_factory=dict)               # agent
    window_seconds: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.llm or self.tools or self.tasks)


def _p(values: list[np.ndarray], q: float) -> float | None:
    if not values:
        return None
    v = np.concatenate(values)
    return float(np.quantile(v, q)) if v.size else None


def gather_usage(store: "Store", start: float, end: float, agent: str | None = None) -> Usage:
    """Aggregate the crew metrics with start < ts <= end, per agent/model/tool."""
    wanted = (catalog.LLM_SECONDS, catalog.LLM_ERRORS, catalog.COST_USD, catalog.LLM_PROMPT_TOKENS,
              catalog.LLM_COMPLETION_TOKENS, catalog.TOOL_SECONDS, catalog.TOOL_ERRORS, catalog.TASK_SECONDS,
              catalog.TASK_FAILURES)
    series = [s for s in store.list_series() if s.metric in wanted and catalog.AGENT_LABEL in s.labels
              and (agent is None or s.labels[catalog.AGENT_LABEL] == agent)]
    usage = Usage(window_seconds=end - start)
    if not series:
        return usage
    block = store.query([s.id for s in series], start, end)
    lat: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    tool_lat: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    task_lat: dict[str, list[np.ndarray]] = defaultdict(list)
    for s in series:
        _, v = block.of(s.id)
        if v.size == 0:
            continue
        a = s.labels[catalog.AGENT_LABEL]
        model = s.labels.get("model", "unknown")
        tool = s.labels.get("tool", "unknown")
        m = s.metric
        if m in (catalog.LLM_SECONDS, catalog.LLM_ERRORS, catalog.COST_USD, catalog.LLM_PROMPT_TOKENS,
                 catalog.LLM_COMPLETION_TOKENS):
            st = usage.llm.setdefault((a, model), LLMStats())
            if m == catalog.LLM_SECONDS:
                st.calls += int(v.size)
                lat[(a, model)].append(v)
            elif m == catalog.LLM_ERRORS:
                st.errors += int(round(float(v.sum())))
            elif m == catalog.COST_USD:
                st.cost_usd += float(v.sum())
                st.cost_calls += int(v.size)
            elif m == catalog.LLM_PROMPT_TOKENS:
                st.prompt_tokens += float(v.sum())
                st.token_calls += int(v.size)
            else:
                st.completion_tokens += float(v.sum())
        elif m in (catalog.TOOL_SECONDS, catalog.TOOL_ERRORS):
            tt = usage.tools.setdefault((a, tool), ToolStats())
            if m == catalog.TOOL_SECONDS:
                tt.calls += int(v.size)
                tool_lat[(a, tool)].append(v)
            else:
                tt.errors += int(round(float(v.sum())))
        else:
            ts = usage.tasks.setdefault(a, TaskStats())
            if m == catalog.TASK_SECONDS:
                ts.runs += int(v.size)
                task_lat[a].append(v)
            else:
                ts.failures += int(round(float(v.sum())))
    for k, st in usage.llm.items():
        st.p50_s = _p(lat.get(k, []), 0.5)
        st.p95_s = _p(lat.get(k, []), 0.95)
    for k, tt in usage.tools.items():
        tt.p95_s = _p(tool_lat.get(k, []), 0.95)
    for a, ts in usage.tasks.items():
        ts.p95_s = _p(task_lat.get(a, []), 0.95)
    return usage


# --------------------------------------------------------------------------- rules of thumb


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def _secs(x: float) -> str:
    return f"{x:.1f} s" if x < 100 else f"{x:.0f} s"


def _window(seconds: float) -> str:
    from perf_alerts.timeutil import format_duration

    return format_duration(seconds)


def cheaper_model(model: str, prompt_per_call: float, completion_per_call: float,
                  pricing: Mapping[str, "ModelPrice"]) -> tuple[str, float, float] | None:
    """The priced model closest below `model` in per-call cost (smallest step down):
    (name, its cost per call, saving fraction). None if nothing is cheaper or `model` is unpriced."""
    hit = match_price(model, pricing)
    if hit is None:
        return None
    cur_name, cur = hit
    cur_cost = (prompt_per_call * cur.input + completion_per_call * cur.output) / 1e6
    if cur_cost <= 0:
        return None
    options = []
    for name, p in pricing.items():
        if name == cur_name:
            continue
        c = (prompt_per_call * p.input + completion_per_call * p.output) / 1e6
        if c < cur_cost * 0.9:
            options.append((c, name))
    if not options:
        return None
    c, name = max(options)  # the smallest step down keeps the most capability
    return name, c, 1.0 - c / cur_cost


def _rec(kind: str, agent: str, score: float, title: str, evidence: list[str], action: str,
         **labels: str) -> dict[str, Any]:
    priority = "high" if score >= 3 else ("medium" if score >= 1.5 else "low")
    return {"kind": kind, "agent": agent, "priority": priority, "score": round(score, 2),
            "title": title, "evidence": evidence, "action": action, "labels": {"agent": agent, **labels}}


def recommend(current: Usage, previous: Usage | None, pricing: Mapping[str, "ModelPrice"],
              top: int = MAX_RECOMMENDATIONS) -> list[dict[str, Any]]:
    """Concrete recommendations, worst first; each names its agent and carries its evidence."""
    prev = previous or Usage()
    win = _window(current.window_seconds) if current.window_seconds else "window"
    out: list[dict[str, Any]] = []

    # 1. LLM latency outliers against the crew median
    p95s = {k: st.p95_s for k, st in current.llm.items() if st.calls >= MIN_CALLS and st.p95_s is not None}
    if len(p95s) >= 2:
        med = float(np.median(list(p95s.values())))
        for (agent, model), p95 in p95s.items():
            if med > 0 and p95 >= LATENCY_OUTLIER_RATIO * med and p95 - med >= LATENCY_OUTLIER_MIN_S:
                ratio = p95 / med
                st = current.llm[(agent, model)]
                alt = cheaper_model(model, st.prompt_per_call or 0.0, st.completion_per_call or 0.0, pricing)
                action = (f"check {model}'s provider latency for this agent, shorten its prompts "
                          f"({st.prompt_per_call:.0f} prompt tokens per call) or move it to a faster model"
                          if st.prompt_per_call else f"check {model}'s provider latency or move this agent to a faster model")
                if alt:
                    action += f" (e.g. {alt[0]})"
                out.append(_rec("llm_latency_outlier", agent, ratio,
                                f"agent {agent}: p95 LLM latency {_secs(p95)}, {ratio:.1f}× the crew median ({_secs(med)}), on model {model}",
                                [f"{st.calls} LLM calls in the last {win}", f"p95 {p95:.2f} s, p50 {st.p50_s or 0:.2f} s",
                                 f"crew median of per-agent p95: {med:.2f} s"], action, model=model))

    # 2. Failing tools
    for (agent, tool), tt in current.tools.items():
        if tt.calls >= MIN_CALLS and tt.errors >= MIN_FAILURES:
            rate = tt.errors / tt.calls
            if rate >= FAILURE_RATE:
                prev_tool = prev.tools.get((agent, tool))
                ev = [f"{tt.errors} errors in {tt.calls} calls in the last {win}"]
                if prev_tool and prev_tool.calls:
                    ev.append(f"previous {win}: {prev_tool.errors} errors in {prev_tool.calls} calls ({prev_tool.errors / prev_tool.calls:.1%})")
                out.append(_rec("tool_failures", agent, 1.0 + rate * 20,
                                f"agent {agent}: tool {tool} failing {rate:.0%} of calls ({tt.errors} of {tt.calls})",
                                ev, f"inspect the {tool} errors (inputs, timeouts, credentials) and add retries or input validation",
                                tool=tool))

    # 3. Failing tasks
    for agent, ts in current.tasks.items():
        if ts.runs >= MIN_CALLS and ts.failures >= MIN_FAILURES:
            rate = ts.failures / ts.runs
            if rate >= FAILURE_RATE:
                out.append(_rec("task_failures", agent, 1.5 + rate * 20,
                                f"agent {agent}: {rate:.0%} of tasks failing ({ts.failures} of {ts.runs})",
                                [f"{plural(ts.failures, 'failed task')} of {ts.runs} in the last {win}"],
                                "look at the failed task outputs; tighten the task's expected_output or add a guardrail"))

    # 4. Cost per call drifting up, and 5. prompts growing
    for (agent, model), st in current.llm.items():
        prev_llm = prev.llm.get((agent, model))
        cur_cpc, prev_cpc = st.cost_per_call, (prev_llm.cost_per_call if prev_llm else None)
        if (cur_cpc is not None and prev_cpc and st.cost_calls >= MIN_CALLS and prev_llm and prev_llm.cost_calls >= MIN_CALLS):
            up = (cur_cpc / prev_cpc - 1.0) * 100.0
            if up >= COST_UP_PCT:
                alt = cheaper_model(model, st.prompt_per_call or 0.0, st.completion_per_call or 0.0, pricing)
                action = "trim the prompt/context this agent sends"
                title = f"agent {agent}: cost per LLM call up {up:.0f}% vs the previous {win} on {model}"
                if alt:
                    action += f", or consider {alt[0]} (about {alt[2]:.0%} cheaper per call per the pricing table)"
                    title += f" — consider {alt[0]} (cheaper per the pricing table)"
                ev = [f"cost per call {_money(prev_cpc)} → {_money(cur_cpc)} ({st.cost_calls} calls)",
                      f"spend in the last {win}: {_money(st.cost_usd)}"]
                if st.prompt_per_call and prev_llm.prompt_per_call:
                    ev.append(f"prompt tokens per call {prev_llm.prompt_per_call:.0f} → {st.prompt_per_call:.0f}")
                out.append(_rec("cost_increase", agent, 1.0 + up / 50.0, title, ev, action, model=model))
                continue
        if (st.prompt_per_call and prev_llm and prev_llm.prompt_per_call and st.token_calls >= MIN_CALLS
                and prev_llm.token_calls >= MIN_CALLS):
            up = (st.prompt_per_call / prev_llm.prompt_per_call - 1.0) * 100.0
            if up >= TOKENS_UP_PCT:
                out.append(_rec("prompt_growth", agent, 1.0 + up / 100.0,
                                f"agent {agent}: prompt tokens per call up {up:.0f}% vs the previous {win} on {model}",
                                [f"prompt tokens per call {prev_llm.prompt_per_call:.0f} → {st.prompt_per_call:.0f}"],
                                "check for growing context (memory, tool outputs, history) and trim it", model=model))

    # 6. Task latency regressions vs the previous window
    for agent, ts in current.tasks.items():
        prev_task = prev.tasks.get(agent)
        if ts.p95_s and prev_task and prev_task.p95_s and ts.runs >= MIN_CALLS and prev_task.runs >= MIN_CALLS:
            ratio = ts.p95_s / prev_task.p95_s
            if ratio >= REGRESSION_RATIO:
                out.append(_rec("task_latency_regression", agent, ratio,
                                f"agent {agent}: p95 task time {_secs(ts.p95_s)}, {ratio:.1f}× the previous {win} ({_secs(prev_task.p95_s)})",
                                [f"{ts.runs} tasks in the last {win}, {prev_task.runs} in the previous"],
                                "compare its LLM and tool latencies for the slower step; check provider status and timeouts"))

    # 7. One agent dominating spend on an expensive model
    total = sum(st.cost_usd for st in current.llm.values())
    if total > 0 and len({a for a, _ in current.llm}) >= 2:
        for (agent, model), st in current.llm.items():
            share = st.cost_usd / total
            if share >= COST_SHARE and st.cost_calls >= MIN_CALLS:
                alt = cheaper_model(model, st.prompt_per_call or 0.0, st.completion_per_call or 0.0, pricing)
                if alt and not any(r["kind"] == "cost_increase" and r["agent"] == agent for r in out):
                    out.append(_rec("cost_concentration", agent, 1.0 + share,
                                    f"agent {agent}: {share:.0%} of the crew's LLM spend on {model} — consider {alt[0]} (cheaper per the pricing table)",
                                    [f"{_money(st.cost_usd)} of {_money(total)} in the last {win}",
                                     f"{_money(st.cost_per_call or 0)} per call on {model} vs about {_money(alt[1])} on {alt[0]}"],
                                    f"try {alt[0]} for this agent's simpler tasks and compare output quality"))
    out.sort(key=lambda r: -r["score"])
    return out[:top]


def optimize(system: "PerfAlerts", lookback: float = 86400.0, agent: str | None = None,
             at: float | None = None, top: int = MAX_RECOMMENDATIONS) -> dict[str, Any]:
    """The optimize report: recommendations for the last `lookback` against the window before it."""
    from perf_alerts.timeutil import format_duration, iso

    at = system.clock.now() if at is None else at
    cur = gather_usage(system.store, at - lookback, at, agent)
    prev = gather_usage(system.store, at - 2 * lookback, at - lookback, agent)
    recs = recommend(cur, prev, system.config.pricing, top)
    return {
        "window": {"start": iso(at - lookback), "end": iso(at), "lookback": format_duration(lookback)},
        "scope": {"agent": agent},
        "recommendations": recs,
        "considered": {"agent_models": len(cur.llm), "agent_tools": len(cur.tools), "agents_with_tasks": len(cur.tasks)},
        "note": ("no crew metrics in the window" if cur.empty
                 else ("no recommendation: nothing crossed the thresholds" if not recs else None)),
    }
