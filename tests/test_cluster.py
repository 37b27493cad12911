"""Several daemons on one store (issue 12 item 2): replicas, the leader lease, status.

The lease SQL runs on both backends (`make_store`: SQLite and PostgreSQL); the leadership
logic and the daemon's use of it run on SQLite with an injected wall clock (`ManualClock`), so
lease expiry is tested without sleeping. Real processes: `test_cluster_process.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from typer.testing import CliRunner

from perf_alerts.manage.cluster import (MIN_TTL, Leadership, Replica, cluster_status, lease_ttl, pid_scope,
                                        stale_after)
from perf_alerts.store import Store
from perf_alerts.store.cluster import ReplicaRecord
from perf_alerts.timeutil import ManualClock

T0 = 1_900_000_000.0


def replica(name: str, pid: int = 100, scope: str | None = None, http: str | None = None) -> Replica:
    return Replica(id=f"{name}:{pid}:abc", host=name, pid=pid, started=T0, http_url=http, version="test",
                   pid_scope=scope)


# --------------------------------------------------------------------------- the store (both backends)


def test_lease_acquire_renew_expire_takeover_and_term(make_store: Any) -> None:
    s = make_store()
    assert s.lease("leader") is None
    a = s.claim_lease("leader", "a", 10, T0)  # free: taken, term 1
    assert a is not None and (a.holder, a.term, a.expires_at, a.held_since) == ("a", 1, T0 + 10, T0)
    assert s.claim_lease("leader", "b", 10, T0 + 5) is None  # held by a: b cannot take it
    assert s.try_lead("leader", "b", 10, T0 + 9.99) is False
    r = s.claim_lease("leader", "a", 10, T0 + 6)  # renewed: same term, same since, later expiry
    assert r is not None and (r.holder, r.term, r.expires_at, r.held_since, r.renewed_at) == ("a", 1, T0 + 16, T0, T0 + 6)
    assert s.claim_lease("leader", "b", 10, T0 + 15.9) is None
    b = s.claim_lease("leader", "b", 10, T0 + 16)  # ran out: b takes it, the term grows
    assert b is not None and (b.holder, b.term, b.held_since) == ("b", 2, T0 + 16)
    assert s.try_lead("leader", "a", 10, T0 + 17) is False  # a's old lease is gone for good
    # a holder renewing a lease that ran out but nobody took keeps its term
    again = s.claim_lease("leader", "b", 10, T0 + 40)
    assert again is not None and (again.term, again.held_since) == (2, T0 + 16)
    # another lease name is independent
    assert s.try_lead("other", "a", 10, T0 + 40) is True
    assert s.lease("leader").holder == "b"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        s.claim_lease("leader", "b", 0, T0)


def test_resign_frees_the_lease_at_once_and_the_next_holder_gets_a_new_term(make_store: Any) -> None:
    s = make_store()
    assert s.try_lead("leader", "a", 60, T0)
    assert s.resign("leader", "b", T0 + 1) is False  # only the holder can resign
    assert s.lease("leader").holder == "a"  # type: ignore[union-attr]
    assert s.resign("leader", "a", T0 + 1) is True
    gone = s.lease("leader")
    assert gone is not None and gone.holder is None and not gone.held_at(T0 + 1)
    b = s.claim_lease("leader", "b", 60, T0 + 1.5)  # no waiting for the 60 s to run out
    assert b is not None and (b.holder, b.term) == ("b", 2)
    assert s.resign("leader", "b", T0 + 2) is True
    a = s.claim_lease("leader", "a", 60, T0 + 3)  # the same holder as before: still a new term
    assert a is not None and a.term == 3


def test_a_dead_holder_named_by_the_caller_is_replaced_before_expiry(make_store: Any) -> None:
    s = make_store()
    assert s.try_lead("leader", "a", 60, T0)
    assert s.claim_lease("leader", "b", 60, T0 + 1, dead_holder="c") is None  # c is not the holder
    b = s.claim_lease("leader", "b", 60, T0 + 1, dead_holder="a")
    assert b is not None and (b.holder, b.term) == ("b", 2)


def test_two_handles_race_for_a_free_lease_and_exactly_one_wins(make_store: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    first = make_store()
    stores = [first] + [make_store() for _ in range(5)]
    with ThreadPoolExecutor(len(stores)) as ex:
        won = list(ex.map(lambda i: stores[i].try_lead("leader", f"r{i}", 30, T0), range(len(stores))))
    assert sum(won) == 1
    lease = first.lease("leader")
    assert lease is not None and lease.term == 1 and lease.holder == f"r{won.index(True)}"


def test_heartbeat_upserts_and_replicas_are_listed_removed_and_forgotten(make_store: Any) -> None:
    s = make_store()
    a = ReplicaRecord(id="h1:1:aa", host="h1", pid=1, started_at=T0, heartbeat_at=T0, version="1", duties=("http",))
    b = ReplicaRecord(id="h2:2:bb", host="h2", pid=2, started_at=T0 + 1, heartbeat_at=T0 + 1)
    s.heartbeat(a, T0)
    s.heartbeat(b, T0 + 1)
    s.heartbeat(ReplicaRecord(id="h1:1:aa", host="h1", pid=1, started_at=T0 + 999, heartbeat_at=0,
                              http_url="http://h1:8080", version="2", duties=("http", "deliver", "lead")), T0 + 30)
    rows = s.list_replicas()
    assert [r.id for r in rows] == ["h1:1:aa", "h2:2:bb"]
    assert (rows[0].started_at, rows[0].heartbeat_at, rows[0].http_url, rows[0].version, rows[0].duties) == (
        T0, T0 + 30, "http://h1:8080", "2", ("http", "deliver", "lead"))  # identity and start kept
    assert rows[1].duties == () and rows[1].http_url is None
    assert s.forget_replicas(T0 + 2) == 1  # h2 silent since T0 + 1
    assert [r.id for r in s.list_replicas()] == ["h1:1:aa"]
    assert s.remove_replica("h1:1:aa") is True and s.remove_replica("h1:1:aa") is False
    assert s.list_replicas() == []


# --------------------------------------------------------------------------- leadership (injected clock)


def test_ttl_is_one_and_a_half_intervals_with_a_floor() -> None:
    assert lease_ttl(60) == 90 and lease_ttl(10) == 15
    assert lease_ttl(0.5) == MIN_TTL >= 2
    assert stale_after(60) == 180 and stale_after(1) >= 10


def test_one_leads_the_other_follows_and_takes_over_within_two_intervals(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="perf_alerts.cluster")
    interval = 10.0
    clock = ManualClock(T0)
    store = Store(tmp_path / "s.db")
    a = Leadership(store, replica("alpha"), interval, clock=clock)
    b = Leadership(store, replica("beta"), interval, clock=clock)
    ra = a.cycle()
    assert ra.leader and ra.changed and ra.holder == "alpha:100:abc" and ra.term == 1
    rb = b.cycle()
    assert not rb.leader and not rb.changed and rb.holder == "alpha:100:abc"
    assert a.leading and not b.leading and not b.still_leading()
    assert b.next_attempt_at() == min(T0 + a.ttl, T0 + interval)  # a follower comes back when the lease ends
    assert [m for m in caplog.messages if "leads now" in m] == [m for m in caplog.messages if "alpha" in m]
    # a keeps renewing every cycle: b never gets it
    for _ in range(5):
        clock.advance(interval)
        assert a.cycle().leader and not b.cycle().leader
    assert store.lease("leader").term == 1  # type: ignore[union-attr]
    # a dies (stops renewing) right after its last renewal; b attempts whenever it planned to
    died = clock.now()
    while not b.attempt().leader:
        clock.set(b.next_attempt_at())
        assert clock.now() - died <= 2 * interval, "no takeover within two evaluation intervals"
    took = clock.now() - died
    assert a.ttl <= took <= 2 * interval
    assert b.leading and b.term == 2 and store.lease("leader").holder == b.replica.id  # type: ignore[union-attr]
    assert any("beta:100:abc) leads now (term 2)" in m for m in caplog.messages)
    # a comes back (it was hung, not dead): its next check notices, logs once, and it follows
    assert a.leading is False  # its own lease ran out: no leader-only step without asking the store
    assert a.still_leading() is False
    lost = [m for m in caplog.messages if "lost leadership" in m]
    assert len(lost) == 1 and "alpha:100:abc" in lost[0] and "beta:100:abc (term 2)" in lost[0]
    assert not a.cycle().leader and len([m for m in caplog.messages if "lost leadership" in m]) == 1


def test_still_leading_checks_the_store_once_a_third_of_the_lease_has_passed(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = Store(tmp_path / "s.db")
    a = Leadership(store, replica("alpha"), 30.0, clock=clock)  # ttl 45 s: the store is asked after 15 s
    assert a.cycle().leader
    # another process takes the lease behind a's back (it thought a was dead)
    assert store.try_lead("leader", "intruder", 45, T0 + 1, dead_holder=a.replica.id)
    clock.set(T0 + 14)
    assert a.still_leading() is True  # fresh renewal: no store access
    clock.set(T0 + 15)
    assert a.still_leading() is False  # asked the store: lost
    assert not a.leading


def test_resign_and_leave_let_a_follower_take_over_at_once(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = Store(tmp_path / "s.db")
    a = Leadership(store, replica("alpha"), 60.0, clock=clock)
    b = Leadership(store, replica("beta"), 60.0, clock=clock)
    assert a.cycle().leader and not b.cycle().leader
    clock.advance(1)
    a.leave()
    assert [r.id for r in store.list_replicas()] == [b.replica.id]
    clock.advance(0.5)
    res = b.attempt()  # 88 s before a's lease would have run out
    assert res.leader and res.changed and res.term == 2


def test_a_dead_process_on_this_machine_is_replaced_at_once(tmp_path: Path) -> None:
    scope = pid_scope()
    if scope is None:
        pytest.skip("PIDs cannot be judged on this platform")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    clock = ManualClock(T0)
    me = Replica.current(clock)
    assert me.pid_scope == scope and me.id.startswith(f"{me.host}:{os.getpid()}:")
    for holder, pid, hscope, taken in [("other-machine", dead.pid, "elsewhere|pid:[1]", False),
                                       ("alive-here", os.getppid(), scope, False),
                                       ("dead-here", dead.pid, scope, True)]:
        store = Store(tmp_path / f"{holder}.db")
        old = Leadership(store, Replica(id=holder, host=me.host, pid=pid, started=T0, pid_scope=hscope), 60.0,
                         clock=clock)
        assert old.cycle().leader
        st = cluster_status(store, clock.now(), 60.0)
        assert [r.state for r in st.replicas] == ["alive" if hscope != scope or pid != dead.pid else "stale"], holder
        res = Leadership(store, me, 60.0, clock=clock).attempt()  # 90 s before the lease runs out
        assert res.leader is taken, holder
        assert res.term == (2 if taken else 1)


# --------------------------------------------------------------------------- status


def test_cluster_status_rows_leader_and_stale_replicas(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = Store(tmp_path / "s.db")
    a = Leadership(store, replica("alpha", http="http://alpha:8080"), 10.0, clock=clock)
    b = Leadership(store, replica("beta"), 10.0, clock=clock)
    a.cycle()
    clock.advance(2)
    b.cycle()
    st = cluster_status(store, T0 + 5, 10.0)
    assert st.leader == a.replica.id and st.term == 1 and st.alive == 2 and st.lease_ttl == 15
    by = {r.id: r for r in st.replicas}
    assert by[a.replica.id].leader and not by[b.replica.id].leader
    assert (by[a.replica.id].heartbeat_age, by[b.replica.id].heartbeat_age) == (5, 3)
    assert by[a.replica.id].http_url == "http://alpha:8080" and by[a.replica.id].state == "alive"
    # 40 s later only b beats: a is stale (> 3 intervals = 30 s) and its lease ran out
    clock.set(T0 + 40)
    b.cycle()
    st = cluster_status(store, T0 + 40, 10.0)
    by = {r.id: r for r in st.replicas}
    assert by[a.replica.id].state == "stale" and by[b.replica.id].state == "alive" and st.alive == 1
    assert st.leader == b.replica.id and st.term == 2 and by[b.replica.id].leader
    d = st.to_dict()
    assert d["leader"] == b.replica.id and [r["state"] for r in d["replicas"]] == ["stale", "alive"]
    assert json.loads(json.dumps(d)) == d
    # no live lease: no leader
    st = cluster_status(store, T0 + 100, 10.0)
    assert st.leader is None and st.leader_since is None and not any(r.leader for r in st.replicas)


def test_status_cli_json_and_text(tmp_path: Path) -> None:
    from perf_alerts.cli.main import app

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text("global: {evaluation_interval: 10s}\n")
    db = tmp_path / "s.db"
    base = ["--config", str(cfg), "--db", str(db)]
    r = CliRunner().invoke(app, base + ["status", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["replicas"] == [] and json.loads(r.stdout)["leader"] is None
    r = CliRunner().invoke(app, base + ["status"])
    assert r.exit_code == 0 and "leader: none" in r.stdout and "no daemon" in r.stdout
    store = Store(db)
    me = replica("alpha", http="http://127.0.0.1:9")
    Leadership(store, me, 10.0).cycle()  # the real clock: what `status` compares against
    Leadership(store, replica("beta"), 10.0).cycle()
    r = CliRunner().invoke(app, base + ["status", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["leader"] == me.id and len(d["replicas"]) == 2 and d["alive"] == 2
    assert [x["leader"] for x in d["replicas"]] == [True, False] and d["replicas"][0]["http"] == "http://127.0.0.1:9"
    assert 0 <= d["replicas"][0]["heartbeat_age"] < 60
    r = CliRunner().invoke(app, base + ["status"])
    assert r.exit_code == 0, r.output
    assert f"leader: {me.id}" in r.stdout and "2 replicas, 2 alive" in r.stdout and "beta:100:abc" in r.stdout


def test_api_status_shows_the_cluster(tmp_path: Path) -> None:
    require("fastapi")
    import httpx

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.http.app import create_app

    system = PerfAlerts(parse_config("global: {evaluation_interval: 10s}\n", "c.yaml", env={}),
                        Store(tmp_path / "s.db"), ManualClock(T0))  # the alert clock: not what leases use
    me = replica("alpha")
    Leadership(system.store, me, 10.0).cycle()

    async def get() -> dict[str, Any]:
        app = create_app(system, replica=me.id)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            r = await c.get("/api/v1/status")
            assert r.status_code == 200, r.text
            return dict(r.json())

    d = asyncio.run(get())
    assert d["cluster"]["leader"] == me.id and d["cluster"]["replica"] == me.id
    assert [r["id"] for r in d["cluster"]["replicas"]] == [me.id] and d["cluster"]["replicas"][0]["state"] == "alive"
    assert d["rules"] == 0  # the rest of the status is unchanged


# --------------------------------------------------------------------------- the daemon


DAEMON_CONFIG = """
global: {{evaluation_interval: 1m}}
rules:
  - {{name: Slow, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 1, severity: warning}}
receivers: [{{name: f, file: {{path: "{out}"}}}}]
route: {{receiver: f, group_wait: 0s}}
schedules: [{{name: all, every: continuous}}]
policies:
  - {{name: p, when: "firing.warning > 0", actions: [{{type: notify, title: "policy says hi"}}]}}
"""


def _daemons(tmp_path: Path, n: int) -> tuple[list[Any], ManualClock, ManualClock, Path]:
    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.daemon import Daemon

    out = tmp_path / "out.jsonl"
    cfg = parse_config(textwrap.dedent(DAEMON_CONFIG.format(out=out)), "c.yaml", env={})
    alert_clock, lease_clock = ManualClock(1_800_000_000.0), ManualClock(T0)
    ds = []
    for i in range(n):
        s = PerfAlerts(cfg, db=tmp_path / "s.db", clock=alert_clock)
        ds.append(Daemon(s, http=False, collect_host=False, replica=replica(f"r{i}"), lease_clock=lease_clock))
    ds[0].system.record("lat", 5.0, {"agent": "a"}, ts=alert_clock.now() - 1)
    return ds, alert_clock, lease_clock, out


def test_only_the_leader_runs_leader_steps_and_a_follower_takes_over(tmp_path: Path) -> None:
    (a, b), alert_clock, lease_clock, out = _daemons(tmp_path, 2)
    ra = asyncio.run(a.tick())
    assert ra["leader"] and [j["schedule"] for j in ra["jobs"]] == ["all"] and [x["policy"] for x in ra["actions"]] == ["p"]
    assert ra["planned"] is not None and ra["delivery"]["delivered"] == 2
    alert_clock.advance("1m")  # a new slot, a still leads: b follows, nothing evaluated, planned or run
    lease_clock.advance(1)
    rb = asyncio.run(b.tick())
    assert not rb["leader"] and rb["jobs"] == [] and rb["actions"] == [] and rb["planned"] is None
    assert "retention" not in rb
    # b still delivers: a message queued by anyone is sent by the follower
    b.notifier.enqueue_message("hello", "from anyone", "info")
    assert asyncio.run(b.tick())["delivery"]["delivered"] == 1
    assert len(out.read_text().splitlines()) == 3
    # a stops (killed: no resign); its lease runs out and b leads, running the next slot
    alert_clock.advance("1m")
    lease_clock.advance(a.leadership.ttl)
    rb = asyncio.run(b.tick())
    assert rb["leader"] and rb["term"] == 2 and [j["schedule"] for j in rb["jobs"]] == ["all"]
    ra = asyncio.run(a.tick())  # a is back: it follows
    assert not ra["leader"] and ra["jobs"] == [] and ra["planned"] is None


def test_a_leader_that_loses_the_lease_mid_cycle_stops_at_once(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="perf_alerts.cluster")
    (a, b), _alert_clock, lease_clock, out = _daemons(tmp_path, 2)
    real_tick = a.scheduler.tick

    def slow_tick(now: float | None = None, **kw: Any) -> Any:
        runs = real_tick(now, **kw)
        lease_clock.advance(a.leadership.ttl + 1)  # the evaluation took longer than the lease ...
        assert b.leadership.attempt().leader  # ... and b took over meanwhile
        return runs

    a.scheduler.tick = slow_tick  # type: ignore[method-assign]
    ra = asyncio.run(a.tick())
    assert ra["leader"] and [j["schedule"] for j in ra["jobs"]] == ["all"]  # it led when the cycle began
    assert ra["actions"] == [] and ra["planned"] is None and "retention" not in ra  # and stopped when it lost
    assert sum("lost leadership" in m for m in caplog.messages) == 1
    assert not out.exists() or out.read_text() == ""


def test_the_scheduler_asks_before_each_job_and_stops_when_leadership_is_lost(tmp_path: Path) -> None:
    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.schedules import Scheduler

    cfg = parse_config(textwrap.dedent("""
    rules:
      - {name: A, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 1, group: a}
      - {name: B, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 1, group: b}
    schedules:
      - {name: first, every: continuous, job: evaluate, group: a}
      - {name: second, every: continuous, job: evaluate, group: b}
    """), "c.yaml", env={})
    s = PerfAlerts(cfg, db=tmp_path / "s.db", clock=ManualClock(1_800_000_000.0))
    answers = iter([True, False])
    asked: list[bool] = []

    def leading() -> bool:
        asked.append(next(answers))
        return asked[-1]

    runs = Scheduler(s).tick(leading=leading)
    assert [r.schedule for r in runs] == ["first"] and asked == [True, False]
    assert [r.schedule for r in Scheduler(s).tick()] == ["second"]  # left for the next leader, not lost


def test_a_lone_daemon_leads_at_once_and_resigns_when_it_stops(tmp_path: Path) -> None:
    (a,), _alert_clock, lease_clock, out = _daemons(tmp_path, 1)
    assert asyncio.run(a.run(once=True)) == 0
    assert len(out.read_text().splitlines()) == 2  # evaluated, planned, delivered in its one cycle
    store = a.system.store
    lease = store.lease("leader")
    assert lease is not None and lease.holder is None and lease.term == 1  # resigned
    assert store.list_replicas() == []  # and left
    assert store.kv_get("daemon")["replica"] == a.replica.id


def test_dashboard_header_shows_the_leader_and_the_replicas(tmp_path: Path) -> None:
    from test_dashboard_browser import CHROMIUM_ARGS, _chromium, _playwright  # skips without the web extra
    from test_http import LiveServer

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts

    executable, sync_playwright = _chromium(), _playwright()
    system = PerfAlerts(parse_config("global: {evaluation_interval: 10s}\n", "c.yaml", env={}), Store(tmp_path / "s.db"))
    lead, other, old = replica("alpha"), replica("beta"), replica("gamma")
    long_ago = time.time() - 3600
    Leadership(system.store, old, 10.0, clock=ManualClock(long_ago)).cycle()  # silent for an hour: stale
    system.store.resign("leader", old.id, long_ago)
    Leadership(system.store, lead, 10.0).cycle()  # the real clock, as the page compares
    Leadership(system.store, other, 10.0).cycle()
    problems: list[str] = []
    with LiveServer(system, replica=other.id) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.set_default_timeout(10_000)
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-loaded='true']")
            box = page.locator("header #cluster")
            assert box.inner_text() == f"leader: {lead.id} · 3 replicas (1 stale)"
            title = box.get_attribute("title") or ""
            assert f"{lead.id} (leader): heartbeat" in title and f"{old.id}: heartbeat" in title and "stale" in title
        finally:
            browser.close()
    assert problems == [], problems
