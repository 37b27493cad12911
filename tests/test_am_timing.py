"""Notification timing pinned against Alertmanager (issue 16): the aggregation group's timer
(dispatch/dispatch.go: the first flush group_wait after the group's first alert, then one every
group_interval), the dedup stage's decision at each flush (notify/dedup_stage.go
`DedupStage.needsUpdate`), and what the mute stage (notify/notify.go `MuteStage` over
inhibit/inhibit.go `Inhibitor.Mutes`) lets through to it. Driven by the injected clock through
plan() and deliver() to the console receiver; each test names the behaviour it pins."""

from __future__ import annotations

import textwrap
from pathlib import Path

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.outbox import Outbox
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0

RULES = """
rules:
  - name: HighLatency
    type: threshold
    metric: lat
    aggregate: last
    window: 10m
    op: ">"
    value: 30
    severity: warning
  - name: Errors
    type: threshold
    metric: err
    aggregate: last
    window: 10m
    op: ">"
    value: 10
    severity: critical
"""


class Rig:
    """A system on a manual clock whose console receiver's lines are kept."""

    def __init__(self, tmp_path: Path, route: str, extra: str = "") -> None:
        cfg = parse_config(RULES + textwrap.dedent(extra) + "receivers:\n  - name: team\n    console: {}\n"
                           + f"route: {{receiver: team, {route}}}\n", "am.yaml", env={})
        self.clock = ManualClock(T0)
        self.pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), self.clock)
        self.lines: list[str] = []
        self.n = Notifier(self.pa, console_write=self.lines.append)
        self.values: dict[str, float] = {}

    def at(self, offset: float, **values: float) -> list[dict[str, str]]:
        """Move to T0 + offset, set `metric_agent=value` (every value set so far is recorded again, as
        a live system would), evaluate, plan and deliver. Returns the notifications planned now,
        each as {alertname/agent: state}."""
        self.clock.set(T0 + offset)
        self.values.update(values)
        for key, v in self.values.items():
            metric, agent = key.split("_")
            self.pa.record(metric, v, {"agent": agent})
        self.pa.evaluate()
        created = self.n.plan().created
        self.n.deliver()
        out = []
        for nid in created:
            x = Outbox(self.pa.store).get(nid)
            assert x is not None
            out.append({f"{a['labels']['alertname']}/{a['labels']['agent']}": a["state"] for a in x.body["alerts"]})
        return out

    def sent_at(self, offsets: list[float], **values: float) -> list[float]:
        """Plan at each offset (values set at the first); the offsets at which something was sent."""
        hits = []
        for i, off in enumerate(offsets):
            if self.at(off, **(values if i == 0 else {})):
                hits.append(off)
        return hits

    def quiet(self, start: float, end: float, step: float = 60) -> None:
        """Plan every `step` seconds in [start, end) (a daemon's cycles); nothing may be sent."""
        off = start
        while off < end:
            assert self.at(off) == [], off
            off += step


def test_new_alert_in_a_notified_group_waits_for_the_groups_next_tick(tmp_path: Path) -> None:
    # dispatch.go aggrGroup.run: after the first flush (group_wait) the group flushes every group_interval;
    # an alert joining between flushes goes out at the next one, not at once, even when the last
    # notification was longer than group_interval ago
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h")
    assert r.at(0, lat_a=50) == []  # group_wait
    assert r.at(30) == [{"HighLatency/a": "firing"}]  # ticks now at 30 + k·300
    r.quiet(60, 400)  # the flush at 330 has nothing new
    assert r.at(400, lat_b=50) == []  # 370 s after the last notification: still waits for the tick
    r.quiet(420, 630)
    assert r.at(630) == [{"HighLatency/a": "firing", "HighLatency/b": "firing"}]
    assert len(r.lines) == 2


def test_ticks_continue_on_the_grid_when_nothing_is_sent(tmp_path: Path) -> None:
    # dispatch.go: the timer is reset to group_interval at every flush, whether the dedup stage sent
    # anything or not, so the grid is group_wait + k·group_interval from the group's creation
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h")
    r.at(0, lat_a=50)
    r.at(30)
    r.quiet(60, 1290)  # planning every minute: the flushes at 330, 630, 930, 1230 send nothing
    assert r.at(1290, lat_b=50) == []
    r.quiet(1320, 1530)
    assert r.at(1530) == [{"HighLatency/a": "firing", "HighLatency/b": "firing"}]


def test_repeat_interval_below_group_interval_repeats_every_group_interval(tmp_path: Path) -> None:
    # dedup_stage.go needsUpdate runs at flushes only: repeat_interval 1m with group_interval 5m
    # repeats every 5 minutes (Alertmanager issue #3370; PR #3389 warns about such a config);
    # perf-alerts used to re-send at every planning cycle
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 1m")
    offsets = [float(x) for x in range(0, 1260, 30)]
    assert r.sent_at(offsets, lat_a=50) == [30.0, 330.0, 630.0, 930.0, 1230.0]


def test_repeat_interval_is_checked_strictly_after_the_last_notification(tmp_path: Path) -> None:
    # needsUpdate: `entry.Timestamp.Before(now - repeat)`: a repeat_interval of exactly two group
    # intervals is not yet due at the second flush, so it goes out at the third (the known
    # "repeat_interval + group_interval" of Alertmanager)
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 10m")
    offsets = [float(x) for x in range(0, 2000, 60)] + [30.0 + k * 300 for k in range(7)]  # and each tick
    assert r.sent_at(sorted(set(offsets)), lat_a=50) == [30.0, 930.0, 1830.0]


def test_repeat_interval_equal_to_group_interval_repeats_every_two(tmp_path: Path) -> None:
    # Alertmanager issue #676: group_interval 5m and repeat_interval 5m give a notification every 10 minutes
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 5m")
    offsets = sorted({float(x) for x in range(0, 1900, 60)} | {30.0 + k * 300 for k in range(7)})
    assert r.sent_at(offsets, lat_a=50) == [30.0, 630.0, 1230.0, 1830.0]


def test_resolution_goes_out_at_the_next_tick(tmp_path: Path) -> None:
    # needsUpdate: "all alerts resolved" notifies at the next flush (send_resolved), on the grid
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h")
    r.at(0, lat_a=50)
    r.at(30)
    assert r.at(100, lat_a=5) == []
    r.quiet(120, 330)
    assert r.at(330) == [{"HighLatency/a": "resolved"}]
    # the group is gone once resolved and flushed: a new alert starts a new group with group_wait
    assert r.at(400, lat_a=50) == []
    assert r.at(429) == []
    assert r.at(430) == [{"HighLatency/a": "firing"}]


INHIBIT = """
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [agent]
"""


def test_inhibited_whole_life_alert_resolving_with_its_source_is_in_the_groups_resolved_notification(
        tmp_path: Path) -> None:
    # The claim, checked against the source: a warning inhibited its whole life is in its
    # aggregation group; when it and its source resolve together, the next flush's MuteStage lets it
    # through (Inhibitor.Mutes skips resolved sources: "The cache might be stale and contain resolved
    # alerts") and needsUpdate sends it among the group's resolved alerts (the group had notified)
    r = Rig(tmp_path, "group_by: [agent], group_wait: 0s, group_interval: 5m, repeat_interval: 4h", INHIBIT)
    assert r.at(0, lat_a=50, err_a=50) == [{"Errors/a": "firing"}]  # the warning is inhibited
    assert r.at(100, lat_a=5, err_a=0) == []
    assert r.at(300) == [{"Errors/a": "resolved", "HighLatency/a": "resolved"}]


def test_inhibited_alert_resolving_while_its_source_fires_gets_no_notification(tmp_path: Path) -> None:
    # MuteStage asks Inhibitor.Mutes about the labels whatever the alert's state: a resolved target
    # is still muted while its source fires, and the flush removes it from the group
    # (aggrGroup.flush deletes resolved alerts once the pipeline ran): it is never mentioned
    r = Rig(tmp_path, "group_by: [agent], group_wait: 0s, group_interval: 5m, repeat_interval: 4h", INHIBIT)
    assert r.at(0, lat_a=50, err_a=50) == [{"Errors/a": "firing"}]
    assert r.at(100, lat_a=5) == []
    assert r.at(300) == []
    assert r.at(400, err_a=0) == []
    assert r.at(600) == [{"Errors/a": "resolved"}]


def test_inhibited_alert_in_a_group_that_never_notified_gets_no_resolution(tmp_path: Path) -> None:
    # needsUpdate: "If we haven't notified about the alert group before, notify right away unless we
    # only have resolved alerts" — the warning's own group (group_by alertname) never notified
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 0s, group_interval: 5m, repeat_interval: 4h", INHIBIT)
    assert r.at(0, lat_a=50, err_a=50) == [{"Errors/a": "firing"}]
    assert r.at(100, lat_a=5, err_a=0) == []
    assert r.at(300) == [{"Errors/a": "resolved"}]
    assert r.at(600) == []


def test_unmuted_alert_goes_out_at_the_groups_next_tick(tmp_path: Path) -> None:
    # An inhibited alert is in its aggregation group from the start (the dispatcher does not know
    # about muting), so when its source resolves it is shown at the group's next flush on the
    # existing grid, not group_wait later (Alertmanager issue #2496 describes the same timer)
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h", INHIBIT)
    assert r.at(0, lat_a=50, err_a=50) == []
    assert r.at(30) == [{"Errors/a": "firing"}]  # HighLatency's group flushes too, showing nothing
    assert r.at(100, err_a=0) == []
    r.quiet(120, 330)
    assert r.at(330) == [{"Errors/a": "resolved"}, {"HighLatency/a": "firing"}]


def _reload(r: Rig, tmp_path: Path, route: str, extra: str = "") -> None:
    cfg = parse_config(RULES + textwrap.dedent(extra) + "receivers:\n  - name: team\n    console: {}\n"
                       + f"route: {{receiver: team, {route}}}\n", "am.yaml", env={})
    r.pa = PerfAlerts(cfg, r.pa.store, r.clock)
    r.n = Notifier(r.pa, console_write=r.lines.append)


def test_a_reload_that_shortens_group_wait_reaches_existing_groups(tmp_path: Path) -> None:
    # Alertmanager rebuilds its aggregation groups on reload: a group_wait fixed from 2h to 30s
    # applies to the group already waiting (it waited the old 2h)
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 2h, group_interval: 5m, repeat_interval: 4h")
    assert r.at(0, lat_a=50) == []
    _reload(r, tmp_path, "group_by: [alertname], group_wait: 30s, group_interval: 5m, repeat_interval: 4h")
    sent = r.sent_at([60.0 * k for k in range(1, 30)])
    assert sent and sent[0] <= 120, sent


def test_a_reload_that_shortens_group_interval_reaches_existing_groups(tmp_path: Path) -> None:
    r = Rig(tmp_path, "group_by: [alertname], group_wait: 0s, group_interval: 6h, repeat_interval: 12h")
    assert r.at(0, lat_a=50) == [{"HighLatency/a": "firing"}]
    _reload(r, tmp_path, "group_by: [alertname], group_wait: 0s, group_interval: 5m, repeat_interval: 12h")
    r.at(60, lat_b=50)
    sent = r.sent_at([60.0 * k for k in range(2, 60)])
    assert sent and sent[0] <= 400, sent
