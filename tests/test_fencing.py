"""Leader-only writes are fenced (issue 12 review): a replica whose lease ran out, or was taken
by another replica, while it was in the middle of a leader-only step writes nothing — on both
backends, checked under the store's write lock, not only before the step."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.cluster import Leadership, Replica
from perf_alerts.manage.schedules import Scheduler
from perf_alerts.store import LeadershipLost
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0
CONFIG = textwrap.dedent("""
    global: {evaluation_interval: 10s}
    rules:
      - {name: Hot, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 30, group: critical}
    receivers: [{name: ops, console: {}}]
    route: {receiver: ops, group_wait: 0s}
    schedules:
      - {name: crit, every: 1m, job: evaluate, group: critical}
""")


def _replica(name: str, clock: ManualClock) -> Replica:
    r = Replica.current(clock)
    return Replica(id=f"{name}:{r.pid}:x", host=name, pid=r.pid, started=r.started)


def test_a_step_that_outlived_its_lease_writes_nothing(make_store: Any) -> None:
    store = make_store()
    lease_clock = ManualClock(1000.0)
    a = Leadership(store, _replica("a", lease_clock), 10.0, clock=lease_clock)
    b = Leadership(store, _replica("b", lease_clock), 10.0, clock=lease_clock)
    assert a.attempt().leader
    fence_a = a.fence()
    assert fence_a is not None and b.fence() is None
    system = PerfAlerts(parse_config(CONFIG, "alerting.yaml", env={}), store, ManualClock(T0))
    system.record("lat", 50.0, {"agent": "x"})
    # a passes its check and starts a step; it pauses past its lease; b takes over
    lease_clock.advance("60s")
    assert b.attempt().leader and b.term == a.term + 1  # type: ignore[operator]
    with store.fenced(fence_a):
        with pytest.raises(LeadershipLost, match="no longer holds"):
            system.evaluate(at=T0)
        with pytest.raises(LeadershipLost):
            Scheduler(system).tick(T0)
    assert store.load_alerts() == []  # a's evaluation left nothing
    assert store.schedule_states().get("crit") is None or store.schedule_states()["crit"].last_slot is None
    # the new leader's own steps go through
    with store.fenced(b.fence()):
        runs = Scheduler(system).tick(T0)
    assert [r.schedule for r in runs] == ["crit"] and len(store.load_alerts()) == 1


def test_a_live_lease_lets_writes_through_and_expiry_alone_stops_them(make_store: Any) -> None:
    store = make_store()
    lease_clock = ManualClock(1000.0)
    a = Leadership(store, _replica("a", lease_clock), 10.0, clock=lease_clock)
    assert a.attempt().leader
    fence = a.fence()
    with store.fenced(fence):
        store.kv_set("x", 1)  # not exclusive: never fenced
        store.record_schedule_run("s", at=1.0, slot=1.0, status="ok", result={}, seconds=0.0)
        lease_clock.advance("30s")  # nobody took it over, but it ran out
        with pytest.raises(LeadershipLost):
            store.record_schedule_run("s", at=2.0, slot=2.0, status="ok", result={}, seconds=0.0)
    store.record_schedule_run("s", at=3.0, slot=3.0, status="ok", result={}, seconds=0.0)  # unfenced: as before
