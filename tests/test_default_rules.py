"""Every shipped default rule fires on data that means trouble and stays quiet on healthy data:
each compares in the direction that means trouble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perf_alerts.config import load_config, packaged_config_dir
from perf_alerts.core import PerfAlerts
from perf_alerts.model import Sample
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0
MIN = 60.0
RNG = np.random.default_rng(11)


def _series(metric: str, labels: dict[str, str], ts: np.ndarray, values: np.ndarray) -> list[Sample]:
    return [Sample(metric, labels, float(t), float(v)) for t, v in zip(ts, values)]


def every(minutes_back: float, step: float) -> np.ndarray:
    return T0 - np.arange(0.0, minutes_back * MIN, step)[::-1]


def task_seconds(bad: bool) -> list[Sample]:
    t = every(30, 30.0)
    v = 20 + RNG.normal(0, 2, t.size)
    if bad:
        v[t > T0 - 12 * MIN] = 90 + RNG.normal(0, 3, int((t > T0 - 12 * MIN).sum()))
    return _series("crew_task_seconds", {"agent": "researcher"}, t, v)


def memory(bad: bool) -> list[Sample]:
    t = every(20, MIN) + 10 * MIN  # keeps reporting while the rule's `for` runs
    return _series("host_memory_percent", {"host": "h1"}, t, np.full(t.size, 95.0 if bad else 60.0))


def llm_latency(bad: bool) -> list[Sample]:
    t = every(3 * 24 * 60, 5 * MIN)
    v = 2.0 + RNG.normal(0, 0.1, t.size)
    if bad:
        v[-1] = 9.0
    return _series("crew_llm_call_seconds", {"agent": "writer"}, t, v)


def rising_task_seconds(bad: bool) -> list[Sample]:
    t = every(12 * 60, 5 * MIN)
    hours = (t - t[0]) / 3600
    v = (10 + 3.5 * hours if bad else 20 + 0 * hours) + RNG.normal(0, 0.5, t.size)  # bad: 52 s now, 60 s in ~2.3 h
    return _series("crew_task_seconds", {"agent": "reviewer"}, t, np.minimum(v, 55))


def cost(bad: bool) -> list[Sample]:
    t = every(12 * 60, 5 * MIN)
    recent = t > T0 - 6 * 3600
    v = np.where(recent, 0.0020 if bad else 0.0010, 0.0010) * (1 + RNG.normal(0, 0.02, t.size))
    return _series("crew_cost_usd", {"agent": "reviewer"}, t, v)


def events(metric: str, n: int) -> list[Sample]:
    t = T0 - np.linspace(30, 8 * MIN, n) if n else np.empty(0)
    return _series(metric, {"agent": "writer", "tool": "file_writer"}, t, np.ones(len(t)))


def silent(bad: bool) -> list[Sample]:
    last = T0 - (3 * 3600 if bad else 10 * MIN)
    return _series("crew_task_seconds", {"agent": "editor"}, np.array([last - 60, last]), np.array([10.0, 11.0]))


CASES = {
    "CriticalPerformanceDegradation": task_seconds,
    "ResourceExhaustion": memory,
    "PerformanceAnomaly": llm_latency,
    "PredictedLatencyBreach": rising_task_seconds,
    "CostDrift": cost,
    "CrewToolErrors": lambda bad: events("crew_tool_errors", 4 if bad else 1),
    "CrewTaskFailures": lambda bad: events("crew_task_failures", 3 if bad else 1),
    "CrewSilent": silent,
}


def run(tmp_path: Path, rule: str, bad: bool) -> list[str]:
    cfg = load_config(packaged_config_dir() / "alerting.yaml", env={})
    only = [r for r in cfg.rules if r.name == rule]
    assert only, f"default rule {rule} is gone"
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, Store(tmp_path / f"{rule}-{bad}.db"), clock)
    pa.store.insert_samples(CASES[rule](bad))
    fired: list[str] = []
    # evaluate over the rule's `for` period, as the schedules would
    steps = int(max(only[0].for_, 0) // MIN) + 1
    for k in range(steps):
        res = pa.evaluate(at=T0 + k * MIN, rules=only)
        assert not res.errors, res.errors
        fired += [t.alert.rule for t in res.transitions if t.event == "firing"]
    return fired


def test_every_default_rule_is_covered() -> None:
    cfg = load_config(packaged_config_dir() / "alerting.yaml", env={})
    assert {r.name for r in cfg.rules} == set(CASES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_default_rule_fires_on_trouble_only(tmp_path: Path, rule: str) -> None:
    assert run(tmp_path, rule, bad=True) == [rule]
    assert run(tmp_path, rule, bad=False) == []


def test_predicted_breach_summary_reads_as_a_sentence(tmp_path: Path) -> None:
    cfg = load_config(packaged_config_dir() / "alerting.yaml", env={})
    only = [r for r in cfg.rules if r.name == "PredictedLatencyBreach"]
    pa = PerfAlerts(cfg, Store(tmp_path / "p.db"), ManualClock(T0))
    pa.store.insert_samples(CASES["PredictedLatencyBreach"](True))
    summaries = []
    for k in range(int(only[0].for_ // MIN) + 1):
        res = pa.evaluate(at=T0 + k * MIN, rules=only)
        summaries += [t.alert.annotations["summary"] for t in res.transitions if t.event == "firing"]
    [text] = summaries
    assert "task time over 60s" in text and ("predicted in" in text or "breaching now" in text), text
    assert " in now" not in text
