"""Notifications carry the facts of the state change they report: the value (and time) at
which an alert went firing and the value that resolved it, consistent with the rule's
operator, never a value re-read when the message is planned or sent (issue 11)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from perf_alerts.alerts.state import SeriesResult, apply_results
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import Alert, AlertState, Severity, alert_from_snapshot, alert_snapshot
from perf_alerts.notify.discord.payload import AlertGroup, build_messages
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0

CONFIG = """
rules:
  - name: CrewToolErrors
    type: threshold
    metric: crew_tool_errors
    aggregate: sum
    window: 10m
    op: ">="
    value: 3
    recovery: 1
    severity: critical
    annotations: {summary: "{{ labels.agent }}: {{ value }} tool errors in {{ window }}"}
receivers:
  - name: oncall
    console: {}
route:
  receiver: oncall
  group_wait: 1m
  group_interval: 1m
  repeat_interval: 4h
  send_resolved: true
escalations:
  - name: crit
    matchers: {severity: critical}
    levels:
      - {after: 15m, receivers: [oncall]}
"""


def _system(tmp_path: Path) -> tuple[PerfAlerts, ManualClock, Notifier, list[str]]:
    clock = ManualClock(T0)
    pa = PerfAlerts(parse_config(textwrap.dedent(CONFIG)), Store(tmp_path / "s.db"), clock)
    lines: list[str] = []
    return pa, clock, Notifier(pa, console_write=lines.append), lines


def _at(pa: PerfAlerts, clock: ManualClock, n: Notifier, minutes: float) -> None:
    clock.set(T0 + minutes * 60)
    pa.evaluate()
    n.plan()
    n.deliver()


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"▌ {name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no field {name!r} in:\n{text}")


def test_firing_resolved_and_escalation_state_the_facts_of_their_state_change(tmp_path: Path) -> None:
    pa, clock, n, lines = _system(tmp_path)
    pa.record("crew_tool_errors", 1, {"agent": "writer"}, ts=T0 - 9 * 60)
    pa.record("crew_tool_errors", 1, {"agent": "writer"}, ts=T0 - 60)
    pa.record("crew_tool_errors", 1, {"agent": "writer"}, ts=T0 - 30)
    _at(pa, clock, n, 0)  # sum 3 >= 3: firing; group_wait holds the message back
    assert lines == []
    (a,) = pa.alerts()
    assert a.state == AlertState.FIRING and a.fired_value == 3 and a.fired_at == T0 and a.operator == ">="

    # a minute later the oldest error left the window: sum 2, still held by the recovery level (>= 1)
    _at(pa, clock, n, 1)
    (a,) = pa.alerts()
    assert a.state == AlertState.FIRING and a.value == 2
    (firing,) = lines
    assert "[FIRING:1]" in firing
    assert _field(firing, "Value") == "3" and _field(firing, "Threshold") == ">= 3"
    assert "writer: 3 tool errors in 10m" in firing  # {{ value }} is the firing value

    # one more error keeps it above the recovery level; the escalation at 15 minutes states the firing facts
    pa.record("crew_tool_errors", 1, {"agent": "writer"}, ts=T0 + 8 * 60)
    _at(pa, clock, n, 15)
    esc = lines[-1]
    assert "Escalation" in esc
    assert _field(esc, "Value") == "3" and _field(esc, "Threshold") == ">= 3"
    assert "writer: 3 tool errors" in esc and "1 tool errors" not in esc

    # the errors leave the window: resolved with the value that resolved it, 0 errors in the window
    # (a sum over an empty window), below the recovery level
    _at(pa, clock, n, 19)
    (a,) = pa.alerts()
    assert a.state == AlertState.RESOLVED and a.resolved_value == 0 and a.fired_value == 3
    res = lines[-1]
    assert "[RESOLVED]" in res
    assert _field(res, "Value") == "0" and _field(res, "Threshold") == ">= 3"
    assert _field(res, "Fired with").startswith("3 at ")
    # the facts survive the store and the outbox snapshot
    again = alert_from_snapshot(alert_snapshot(pa.store.load_alerts()[0]))
    assert (again.fired_value, again.resolved_value, again.operator) == (3, 0, ">=")


def test_state_machine_freezes_the_firing_facts_and_records_the_resolution() -> None:
    cfg = parse_config(textwrap.dedent("""
    rules:
      - {name: Slow, type: threshold, metric: lat, aggregate: last, window: 5m, op: ">", value: 10,
         for: 2m, keep_firing_for: 3m, annotations: {summary: "lat {{ value }} {{ op }} {{ threshold }}"}}
    """))
    rule = cfg.rules[0]
    cur: dict[str, Alert] = {}

    def step(at: float, value: float | None) -> list[str]:
        res = [] if value is None else [SeriesResult({"agent": "a"}, value, value > 10, value > 10)]
        save, delete, tr = apply_results(rule, res, cur, T0 + at)
        for x in save:
            cur[x.fingerprint] = x
        for fp in delete:
            cur.pop(fp)
        return [t.event for t in tr]

    assert step(0, 12) == ["pending"]
    assert step(60, 15) == []
    assert step(120, 20) == ["firing"]  # fires at 20: the value that completed `for`
    (a,) = cur.values()
    assert (a.fired_value, a.started_at, a.annotations["summary"]) == (20, T0 + 120, "lat 20 > 10")
    assert step(180, 40) == [] and step(240, 5) == []  # worse, then cleared (keep_firing_for)
    (a,) = cur.values()
    assert a.state == AlertState.FIRING and a.value == 5 and a.fired_value == 20
    assert a.annotations["summary"] == "lat 20 > 10" and a.shown_value == 20
    assert step(420, None) == ["resolved"]  # no data: resolved without a resolving value
    (a,) = cur.values()
    assert a.resolved_value is None and a.fired_value == 20
    msg = build_messages([AlertGroup(key="k", alerts=[a], group_labels={})])[0]
    fields = {f["name"]: f["value"] for f in msg.payload["embeds"][0]["fields"]}
    assert fields["Value"] == "no data" and fields["Threshold"] == "> 10" and fields["Fired with"].startswith("20 at")


def test_an_alert_stored_before_the_facts_existed_still_renders() -> None:
    a = Alert(fingerprint="f" * 16, rule="Old", state=AlertState.FIRING, severity=Severity.WARNING,
              labels={"alertname": "Old"}, value=7.0, threshold=5.0, started_at=T0)
    msg = build_messages([AlertGroup(key="k", alerts=[a], group_labels={})])[0]
    fields = {f["name"]: f["value"] for f in msg.payload["embeds"][0]["fields"]}
    assert fields["Value"] == "7" and fields["Threshold"] == "5"


def test_alert_snapshot_is_what_asdict_gives() -> None:
    # the outbox stores snapshots; the fast builder must keep asdict's content (and copy the dicts)
    from dataclasses import asdict

    from perf_alerts.model import Alert, AlertState, Severity, alert_from_snapshot, alert_snapshot

    a = Alert("fp", "R", AlertState.FIRING, Severity.CRITICAL, {"agent": "a"}, {"summary": "s"}, value=3.0,
              threshold=2.0, started_at=10.0, operator=">=", fired_value=3.0, escalation_level=1)
    want = asdict(a)
    want["state"], want["severity"] = "firing", "critical"
    snap = alert_snapshot(a)
    assert snap == want and list(snap) == list(want)
    snap["labels"]["agent"] = "changed"
    assert a.labels == {"agent": "a"}  # a copy, not the alert's own dict
    assert alert_from_snapshot(alert_snapshot(a)) == a
