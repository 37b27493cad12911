"""Health's latency baseline (issue 11): a period is judged against the one before only when that
one has data reaching back far enough. The demo's day, summarised three minutes after it ended,
compared the day's p95 task time against the first three minutes of the simulation (the only data in
"the day before") and read latency 0, "3.89×", for a crew whose tasks had not slowed."""

from __future__ import annotations

from pathlib import Path

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.insights import agent_health
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

H = 3600.0
DAY = 86400.0
T = 1_800_000_000.0


def _store(tmp_path: Path, since: float, early_seconds: float, early_minutes: int) -> PerfAlerts:
    """One task a minute from `since` to T, 12 s each except the first `early_minutes` (`early_seconds`)."""
    pa = PerfAlerts(parse_config("{}", "empty.yaml", env={}), Store(tmp_path / "h.db"), ManualClock(T))
    recs = [{"metric": "crew_task_seconds", "timestamp": float(t), "labels": {"agent": "writer"},
             "value": early_seconds if t < since + early_minutes * 60 else 12.0}
            for t in range(int(since), int(T), 60)]
    assert pa.record_many(recs).rejected == 0
    return pa


def _latency(pa: PerfAlerts, recent: float, lookback: float) -> tuple[float | None, str]:
    h = agent_health(pa.store, pa.config, T, lookback, [], recent=recent)
    c = next(c for c in h.components if c.name == "latency")
    return c.score, c.evidence


def test_a_few_minutes_before_the_period_are_no_baseline(tmp_path: Path) -> None:
    pa = _store(tmp_path, T - DAY - 180, early_seconds=4.0, early_minutes=3)  # 3 quick tasks before the day
    score, evidence = _latency(pa, recent=DAY, lookback=2 * DAY)  # the day against the day before
    assert score is None and "too short a baseline" in evidence and "×" not in evidence


def test_a_baseline_as_long_as_the_window_is_used(tmp_path: Path) -> None:
    pa = _store(tmp_path, T - 2 * H, early_seconds=4.0, early_minutes=60)  # a store two hours old
    score, evidence = _latency(pa, recent=H, lookback=DAY)  # now: the last hour against the hour before
    assert score == 0.0 and "vs baseline 4 (3.00×)" in evidence
