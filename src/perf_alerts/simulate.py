"""A simulated three-agent crew: the data behind the demo, the benchmarks and many tests.

Everything is generated from a seed, vectorised: task durations with a daily load
pattern, LLM and tool calls per task, token counts and cost, plus optional incidents
(a latency spike, an error burst, a slow cost drift) at known times, so tests can check
that the alerts raised match the incidents injected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perf_alerts import catalog
from perf_alerts.model import Sample

AGENTS = {
    # agent: (median task seconds, LLM calls per task, model, tool)
    "researcher": (18.0, 3, "gpt-4o", "web_search"),
    "writer": (11.0, 2, "gpt-4o-mini", "file_writer"),
    "reviewer": (7.0, 2, "gpt-4o-mini", "grammar_check"),
}
PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}  # USD per 1M tokens, as in config/alerting.yaml


@dataclass(frozen=True)
class Incident:
    kind: str  # latency_spike, error_burst, cost_drift
    agent: str
    start: float
    end: float
    magnitude: float

    def describe(self) -> str:
        from perf_alerts.timeutil import format_duration, iso

        what = {"latency_spike": f"task latency ×{self.magnitude:g}",
                "error_burst": f"{self.magnitude:.0%} of tool calls failing",
                "cost_drift": f"cost per LLM call drifting up to +{self.magnitude:.0%}"}[self.kind]
        return f"{self.kind} on {self.agent}: {what} from {iso(self.start)} for {format_duration(self.end - self.start)}"


@dataclass
class Simulation:
    samples: list[Sample] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0


def default_incidents(start: float, hours: float) -> list[Incident]:
    """The demo's incident: a latency spike, an error burst and a slow cost drift, at fixed fractions of the day."""
    h = 3600.0
    span = hours * h
    return [
        Incident("latency_spike", "researcher", start + 0.58 * span, start + 0.58 * span + min(1.0, hours / 8) * h, 4.0),
        Incident("error_burst", "writer", start + 0.70 * span, start + 0.70 * span + min(0.75, hours / 10) * h, 0.8),
        Incident("cost_drift", "reviewer", start + 0.45 * span, start + span, 1.2),
    ]


def simulate_crew(start: float, hours: float = 24.0, *, seed: int = 7, task_interval: float = 120.0,
                  incidents: list[Incident] | None = None, crew: str = "content_crew",
                  day_starts_at: float = 0.0) -> Simulation:
    """A seeded day of a 3-agent crew. The daily load wave peaks in the afternoon of a day that
    starts at `day_starts_at` (default: UTC midnight); the demo passes its own start, so the
    same seed gives the same series, and so the same alerts, whatever the hour it is run at."""
    rng = np.random.default_rng(seed)
    incidents = default_incidents(start, hours) if incidents is None else incidents
    end = start + hours * 3600.0
    samples: list[Sample] = []
    for agent, (median, llm_calls, model, tool) in AGENTS.items():
        n = int(hours * 3600.0 / task_interval)
        t = start + np.sort(rng.uniform(0, end - start, n))
        hour = ((t - day_starts_at) % 86400.0) / 3600.0
        load = 1.0 + 0.25 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi)  # busier in the afternoon
        dur = median * load * rng.lognormal(0.0, 0.18, n)
        err_p = np.full(n, 0.01)
        cost_mult = np.ones(n)
        for inc in incidents:
            if inc.agent != agent:
                continue
            inside = (t >= inc.start) & (t < inc.end)
            if inc.kind == "latency_spike":
                dur = np.where(inside, dur * inc.magnitude, dur)
            elif inc.kind == "error_burst":
                err_p = np.where(inside, inc.magnitude, err_p)
            elif inc.kind == "cost_drift":
                frac = np.clip((t - inc.start) / max(inc.end - inc.start, 1.0), 0.0, 1.0)
                cost_mult = cost_mult * (1.0 + inc.magnitude * frac)
        base = {"crew": crew, "agent": agent}
        task_failed = rng.random(n) < err_p * 0.5
        for i in range(n):
            ti = float(t[i])
            samples.append(Sample(catalog.TASK_SECONDS, {**base, "task": f"{agent}_task"}, ti, float(dur[i])))
            if task_failed[i]:
                samples.append(Sample(catalog.TASK_FAILURES, {**base, "task": f"{agent}_task"}, ti, 1.0))
        # LLM calls inside each task
        k = n * llm_calls
        lt = np.repeat(t, llm_calls) - rng.uniform(0, 1, k) * np.repeat(dur, llm_calls)
        lsec = np.repeat(dur, llm_calls) / (llm_calls + 1) * rng.lognormal(0, 0.1, k)
        prompt = rng.integers(800, 2400, k).astype(float)
        completion = rng.integers(150, 600, k).astype(float)
        pin, pout = PRICES[model]
        cost = (prompt * pin + completion * pout) / 1e6 * np.repeat(cost_mult, llm_calls)
        lab = {**base, "model": model}
        for i in range(k):
            ti = float(lt[i])
            samples.append(Sample(catalog.LLM_SECONDS, lab, ti, float(lsec[i])))
            samples.append(Sample(catalog.LLM_PROMPT_TOKENS, lab, ti, float(prompt[i])))
            samples.append(Sample(catalog.LLM_COMPLETION_TOKENS, lab, ti, float(completion[i])))
            samples.append(Sample(catalog.COST_USD, lab, ti, float(cost[i])))
        # one tool call per task
        tt = t - dur * 0.5
        tsec = rng.lognormal(np.log(1.2), 0.3, n)
        tool_err = rng.random(n) < np.repeat(err_p, 1)
        tl = {**base, "tool": tool}
        for i in range(n):
            samples.append(Sample(catalog.TOOL_SECONDS, tl, float(tt[i]), float(tsec[i])))
            if tool_err[i]:
                samples.append(Sample(catalog.TOOL_ERRORS, tl, float(tt[i]), 1.0))
    # host metrics every minute
    ht = start + np.arange(0.0, end - start, 60.0)
    hour = ((ht - day_starts_at) % 86400.0) / 3600.0
    cpu = np.clip(35 + 15 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi) + rng.normal(0, 4, ht.size), 0, 100)
    mem = np.clip(55 + 0.4 * (ht - start) / 3600.0 + rng.normal(0, 1.5, ht.size), 0, 100)
    disk = 61 + 0.05 * (ht - start) / 3600.0
    host = {"host": "crew-host-1"}
    for i in range(ht.size):
        samples.append(Sample(catalog.HOST_CPU, host, float(ht[i]), float(cpu[i])))
        samples.append(Sample(catalog.HOST_MEMORY, host, float(ht[i]), float(mem[i])))
        samples.append(Sample(catalog.HOST_DISK, {**host, "mount": "/"}, float(ht[i]), float(disk[i])))
    samples.sort(key=lambda s: s.ts)
    return Simulation(samples, incidents, start, end)
