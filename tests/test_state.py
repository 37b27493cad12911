"""The alert state machine with an injected clock: for, keep_firing_for, recovery, cooldown,
acknowledgement, persistence, and no double firing after a restart."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import AlertState
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0  # a fixed instant; all times below are offsets from it


def make(tmp_path: Path, rule_yaml: str) -> tuple[PerfAlerts, ManualClock]:
    cfg = parse_config("rules:\n" + textwrap.indent(textwrap.dedent(rule_yaml), "  "))
    clock = ManualClock(T0)
    return PerfAlerts(cfg, Store(tmp_path / "s.db"), clock), clock


LATENCY = """
- name: HighLatency
  type: threshold
  metric: lat
  aggregate: last
  window: 5m
  op: ">"
  value: 30
  for: 2m
  severity: critical
  annotations: {summary: "{{ labels.agent }} latency {{ value }}s"}
"""


def step(pa: PerfAlerts, clock: ManualClock, minutes: float, value: float | None, agent: str = "a") -> list[str]:
    """Advance the clock, record a sample, evaluate; returns the transition events."""
    clock.set(T0 + minutes * 60)
    if value is not None:
        pa.record("lat", value, {"agent": agent})
    res = pa.evaluate()
    assert res.errors == [], res.errors  # a rule that raised would otherwise look like "no transition"
    return [t.event for t in res.transitions]


def state(pa: PerfAlerts) -> str | None:
    alerts = pa.alerts()
    return alerts[0].state.value if alerts else None


def test_for_duration_pending_then_firing(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY)
    assert step(pa, clock, 0, 10) == []
    assert step(pa, clock, 1, 40) == ["pending"]
    assert state(pa) == "pending"
    assert step(pa, clock, 2, 41) == []  # 1 minute pending < for: 2m
    assert step(pa, clock, 3, 42) == ["firing"]
    a = pa.alerts()[0]
    assert a.state == AlertState.FIRING and a.started_at == T0 + 180 and a.active_since == T0 + 60
    assert a.annotations["summary"] == "a latency 42s"
    assert step(pa, clock, 4, 43) == []  # stays firing, no second firing transition
    assert step(pa, clock, 5, 10) == ["resolved"]
    assert pa.alerts()[0].resolved_at == T0 + 300


def test_pending_cancelled_when_condition_clears_before_for(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY)
    assert step(pa, clock, 0, 40) == ["pending"]
    assert step(pa, clock, 1, 10) == ["cancelled"]
    assert pa.alerts() == []
    assert step(pa, clock, 2, 50) == ["pending"]  # a fresh pending period: `for` starts again
    assert step(pa, clock, 3, 50) == []
    assert step(pa, clock, 4, 50) == ["firing"]


def test_for_zero_fires_immediately(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    assert step(pa, clock, 0, 40) == ["pending", "firing"]


def test_keep_firing_for(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s\n  keep_firing_for: 3m"))
    step(pa, clock, 0, 40)
    assert step(pa, clock, 1, 10) == []  # cleared, but keep_firing_for holds it
    assert step(pa, clock, 3, 10) == []
    assert state(pa) == "firing"
    assert step(pa, clock, 4, 10) == ["resolved"]  # 3 minutes after the condition last held


def test_keep_firing_for_rearms_when_condition_returns(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s\n  keep_firing_for: 3m"))
    step(pa, clock, 0, 40)
    step(pa, clock, 2, 10)
    assert step(pa, clock, 3, 45) == []  # true again: still the same firing episode
    assert step(pa, clock, 5, 10) == []  # cleared again at 5: a fresh keep_firing_for period
    assert step(pa, clock, 7, 10) == []
    assert step(pa, clock, 8, 10) == ["resolved"]
    assert pa.alert_stats().episodes == 1


def test_recovery_hysteresis(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s\n  recovery: 20"))
    step(pa, clock, 0, 40)
    assert step(pa, clock, 1, 25) == []  # below 30 but above the recovery level 20: still firing
    assert state(pa) == "firing"
    assert pa.alerts()[0].value == 25
    assert step(pa, clock, 2, 19) == ["resolved"]


def test_recovery_does_not_start_alerts(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s\n  recovery: 20"))
    assert step(pa, clock, 0, 25) == []  # between recovery and value: nothing to keep firing
    assert pa.alerts() == []


def test_cooldown_suppresses_refire(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s\n  cooldown: 10m"))
    step(pa, clock, 0, 40)
    assert step(pa, clock, 1, 10) == ["resolved"]
    assert step(pa, clock, 2, 40) == []  # within the cooldown: not re-raised
    assert step(pa, clock, 10, 40) == []
    assert state(pa) == "resolved"
    assert step(pa, clock, 11, 40) == ["pending", "firing"]  # cooldown over
    assert pa.alerts()[0].fire_count == 2


def test_missing_data_resolves_firing_alert(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    step(pa, clock, 0, 40)
    assert step(pa, clock, 6, None) == ["resolved"]  # the only sample left the 5m window


def test_separate_alerts_per_series(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    clock.set(T0)
    pa.record("lat", 40, {"agent": "a"})
    pa.record("lat", 50, {"agent": "b"})
    pa.record("lat", 5, {"agent": "c"})
    res = pa.evaluate()
    firing = sorted(a.labels["agent"] for a in res.active)
    assert firing == ["a", "b"]
    assert len({a.fingerprint for a in res.active}) == 2
    assert all(a.labels["alertname"] == "HighLatency" and a.labels["severity"] == "critical" for a in res.active)


def test_ack_and_refire_clears_ack(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    step(pa, clock, 0, 40)
    fp = pa.alerts()[0].fingerprint
    clock.set(T0 + 90)
    a = pa.ack(fp[:6], by="alice")
    assert a.acknowledged and a.acknowledged_by == "alice" and a.acknowledged_at == T0 + 90
    assert pa.ack(fp).acknowledged_at == T0 + 90  # idempotent
    step(pa, clock, 3, 10)  # resolves
    step(pa, clock, 4, 40)  # a new episode
    assert not pa.alerts()[0].acknowledged
    stats = pa.alert_stats()
    assert stats.episodes == 2
    assert stats.mtta.mean_seconds == 90.0
    assert stats.mttr.mean_seconds == 180.0
    assert stats.by_severity["critical"].fired == 2
    # the JSON form (perf-alerts history --json, the demo report) keeps its keys
    d = stats.to_dict()
    assert d["episodes"] == 2 and d["mtta"] == {"count": 1, "mean_seconds": 90.0, "median_seconds": 90.0}
    assert set(d) == {"episodes", "mtta", "mttr", "by_severity", "by_rule"}
    assert set(d["by_rule"][0]) == {"rule", "severity", "fired", "mtta", "mttr"}


def test_state_survives_a_new_process_and_is_not_refired(tmp_path: Path) -> None:
    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    step(pa, clock, 0, 40)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("rules:\n" + textwrap.indent(textwrap.dedent(LATENCY.replace("for: 2m", "for: 0s")), "  "))
    script = f"""
import json
from perf_alerts.core import PerfAlerts
from perf_alerts.timeutil import ManualClock
pa = PerfAlerts({str(cfg_path)!r}, {str(tmp_path / 's.db')!r}, ManualClock({T0 + 60}))
alerts = [a.to_dict() for a in pa.alerts()]
pa.record("lat", 41, {{"agent": "a"}})
res = pa.evaluate()
print(json.dumps({{"alerts": alerts, "events": [t.event for t in res.transitions]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    import json

    d = json.loads(out.stdout)
    assert [a["state"] for a in d["alerts"]] == ["firing"]
    assert d["events"] == []  # the other process knew it was firing: no second notification
    # and this process sees what the other one wrote
    assert pa.alerts()[0].value == 41


def test_ack_unknown_ambiguous_and_empty(tmp_path: Path) -> None:
    from dataclasses import replace

    from perf_alerts.core import AlertNotFound

    pa, clock = make(tmp_path, LATENCY.replace("for: 2m", "for: 0s"))
    with pytest.raises(AlertNotFound, match="no alert"):
        pa.ack("deadbeef")
    step(pa, clock, 0, 40)
    a = pa.alerts()[0]
    with pa.store.transaction() as con:  # two alerts whose fingerprints share a prefix
        pa.store.save_alerts([replace(a, fingerprint="abc1000000000000"), replace(a, fingerprint="abc2000000000000")], con)
    with pytest.raises(AlertNotFound, match="ambiguous"):
        pa.ack("abc")
    assert pa.ack("abc2").fingerprint == "abc2000000000000"
    for bad in ("", "  ", "%", "_"):  # never a wildcard: an empty $VAR must not acknowledge anything
        with pytest.raises(AlertNotFound):
            pa.ack(bad)
