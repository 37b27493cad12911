"""Several `perf-alerts run` daemons on one store, as real processes (issue 12 item 2), on
SQLite and on PostgreSQL (`store_url`).

1. Two daemons start on one store: exactly one leads (the lease, the logs, both dashboards
   agree), both serve the API; the leader is SIGKILLed and the other leads within two
   evaluation intervals and evaluates from then on; `perf-alerts status --json` shows it.
2. The leader is frozen (SIGSTOP: alive, its PID exists, so only the lease running out can
   free it): the other leads within two evaluation intervals; thawed (SIGCONT), the old leader
   logs that it lost leadership and follows; stopped cleanly, both leave the replicas.

Timing is measured with deadlines, never by sleeping for a guessed while.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from perf_alerts.store import Store
from test_delivery_concurrency import Procs, free_port, log_problems, wait_until

INTERVAL = 2.0  # evaluation interval of the daemons: lease 3 s (1.5 intervals), takeover within 4 s

_CONFIG = """\
global: {evaluation_interval: 2s}
rules:
  - {name: Slow, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 1, severity: warning}
receivers: [{name: f, file: {path: "@OUT@"}}]
route: {receiver: f, group_wait: 0s}
schedules: [{name: checks, every: continuous, job: evaluate}]
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def live_holder(store: Store) -> str | None:
    lease = store.lease("leader")
    return lease.holder if lease is not None and lease.held_at(time.time()) else None


def replica_ids(store: Store) -> dict[int, str]:
    """pid → replica id, of the replicas with a row."""
    return {r.pid: r.id for r in store.list_replicas()}


def evaluations(store: Store) -> int:
    st = store.schedule_states().get("checks")
    return st.runs if st is not None else 0


def lease_holder(store: Store) -> str | None:
    lease = store.lease("leader")
    assert lease is not None
    return lease.holder


def stopped_state(pid: int) -> bool:
    """Whether every thread of the process is stopped by a signal (Linux /proc; elsewhere assumed at once)."""
    try:
        stats = [t.read_text() for t in Path(f"/proc/{pid}/task").glob("*/stat")]  # none without /proc
    except OSError:  # a thread ended meanwhile: look again
        return False
    return all(st.rsplit(")", 1)[1].split()[0] in ("T", "t") for st in stats)


def unlocked(db: str) -> bool:
    """Whether a follower could write the lease now. A process frozen inside a write transaction
    holds SQLite's one write lock (everyone waits for it, leader or not: SQLite's nature), and on
    PostgreSQL the lease row while it renews; the frozen-leader test freezes it outside those."""
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, connect_timeout=5) as con:
            try:
                con.execute("SELECT 1 FROM leases WHERE name = 'leader' FOR UPDATE NOWAIT")
            except psycopg.errors.LockNotAvailable:
                return False
            finally:
                con.rollback()
        return True
    con = sqlite3.connect(db, timeout=0.2)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


def api_status(port: int) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=2)
    except httpx.HTTPError:
        return None
    return dict(r.json()) if r.status_code == 200 else None


def status_json(tmp: Path, cfg: Path, db: str, env: dict[str, str]) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "perf_alerts", "--config", str(cfg), "--db", str(db), "status", "--json"],
                       env=env, cwd=tmp, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


class Cluster:
    """Two daemons on one store, started and (whatever happens) reaped; `store` is the test's own handle."""

    def __init__(self, tmp: Path, db: str) -> None:
        self.tmp = tmp
        self.cfg, self.db = tmp / "alerting.yaml", db
        self.cfg.write_text(_CONFIG.replace("@OUT@", str(tmp / "out.jsonl")))
        self.store = Store(db)  # creates the schema before the daemons race to
        self.procs = Procs(tmp, {"PERF_ALERTS_TOKEN": ""})
        self.ports = {"d1": free_port(), "d2": free_port()}
        self.p = {name: self.procs.daemon(name, self.cfg, db, port) for name, port in self.ports.items()}  # type: ignore[arg-type]

    def close(self) -> None:
        self.procs.cleanup()
        self.store.close()

    def name_of(self, replica: str | None) -> str | None:
        pids = {rid: pid for pid, rid in replica_ids(self.store).items()}
        pid = pids.get(replica or "")
        return next((n for n, p in self.p.items() if p.pid == pid), None)

    def started(self) -> tuple[str, str]:
        """Wait until both replicas beat and one leads; (leader name, follower name)."""
        ok = wait_until(lambda: len(replica_ids(self.store)) == 2 and self.name_of(live_holder(self.store)) is not None
                        and all(api_status(port) for port in self.ports.values()), 60, 0.1)
        assert ok, self.procs.logs()
        leader = self.name_of(live_holder(self.store))
        assert leader is not None
        return leader, next(n for n in self.p if n != leader)

    def took_over(self, name: str, since: float) -> float:
        """Seconds from `since` until `name` holds a live lease (fails after two intervals and a margin)."""
        ok = wait_until(lambda: self.name_of(live_holder(self.store)) == name, 2 * INTERVAL + 10, 0.02)
        took = time.monotonic() - since
        assert ok, f"{name} never took over\n{self.procs.logs()}"
        return took


def test_two_daemons_one_leads_and_the_other_takes_over_when_it_is_killed(tmp_path: Path, store_url: str) -> None:
    c = Cluster(tmp_path, store_url)
    try:
        leader, follower = c.started()
        ids = {n: replica_ids(c.store)[p.pid] for n, p in c.p.items()}
        # both serve the API and agree on who leads; both accept metrics
        for name, port in c.ports.items():
            st = api_status(port)
            assert st is not None and st["cluster"]["leader"] == ids[leader] and st["cluster"]["replica"] == ids[name]
            r = httpx.post(f"http://127.0.0.1:{port}/api/v1/metrics", json=[{"metric": "lat", "value": 5,
                                                                           "labels": {"agent": name}}], timeout=10)
            assert r.status_code == 200, r.text
        # a few cycles later the follower still follows, and only the leader has evaluated
        before = evaluations(c.store)
        assert wait_until(lambda: evaluations(c.store) >= before + 2, 6 * INTERVAL, 0.1), c.procs.logs()
        assert live_holder(c.store) == ids[leader]
        assert "leads now" in c.procs.log(leader) and "leads now" not in c.procs.log(follower)

        c.p[leader].send_signal(signal.SIGKILL)
        c.p[leader].wait()
        killed = time.monotonic()
        took = c.took_over(follower, killed)
        assert took <= 2 * INTERVAL, f"took over after {took:.2f} s\n{c.procs.logs()}"
        at_takeover = evaluations(c.store)
        assert wait_until(lambda: evaluations(c.store) > at_takeover, 3 * INTERVAL, 0.1), c.procs.logs()

        st = status_json(tmp_path, c.cfg, c.db, c.procs.env)
        assert st["leader"] == ids[follower]
        rows = {r["id"]: r for r in st["replicas"]}
        assert set(rows) == set(ids.values()) and rows[ids[follower]]["leader"] and not rows[ids[leader]]["leader"]
        assert rows[ids[follower]]["heartbeat_age"] < 2 * INTERVAL and rows[ids[follower]]["state"] == "alive"
        assert rows[ids[leader]]["state"] == "stale"  # its process is gone (this machine): stale at once
        assert rows[ids[follower]]["http"].rstrip("/") == f"http://127.0.0.1:{c.ports[follower]}"

        assert c.procs.terminate(c.p[follower]) == 0
        assert set(replica_ids(c.store).values()) == {ids[leader]}  # the killed one's row stays (stale), the other left
        assert lease_holder(c.store) is None  # resigned
    finally:
        c.close()
    assert not log_problems(c.procs.logs()), c.procs.logs()


def test_a_frozen_leader_is_replaced_when_its_lease_runs_out_and_follows_when_it_thaws(tmp_path: Path,
                                                                                      store_url: str) -> None:
    c = Cluster(tmp_path, store_url)
    try:
        leader, follower = c.started()
        ids = {n: replica_ids(c.store)[p.pid] for n, p in c.p.items()}
        for _ in range(100):  # frozen (alive, PID and all: only the lease running out frees it) ...
            c.p[leader].send_signal(signal.SIGSTOP)
            assert wait_until(lambda: stopped_state(c.p[leader].pid), 5, 0.001)
            if unlocked(c.db):  # ... outside a write transaction
                break
            c.p[leader].send_signal(signal.SIGCONT)
            time.sleep(0.01)
        stopped = time.monotonic()
        try:
            took = c.took_over(follower, stopped)
            assert took <= 2 * INTERVAL, f"took over after {took:.2f} s\n{c.procs.logs()}"
        finally:
            c.p[leader].send_signal(signal.SIGCONT)
        assert wait_until(lambda: "lost leadership" in c.procs.log(leader), 5 * INTERVAL, 0.1), c.procs.logs()
        assert live_holder(c.store) == ids[follower]
        lines = [ln for ln in c.procs.log(leader).splitlines() if "leadership" in ln]
        assert len([ln for ln in lines if "lost leadership" in ln]) == 1, lines
        # the thawed one serves again and knows who leads; it does not take the lease back
        assert wait_until(lambda: (api_status(c.ports[leader]) or {}).get("cluster", {}).get("leader") == ids[follower],
                          5 * INTERVAL, 0.1), c.procs.logs()
        time.sleep(INTERVAL)  # a cycle of the thawed replica (it must stay a follower through it)
        assert live_holder(c.store) == ids[follower]
        st = status_json(tmp_path, c.cfg, c.db, c.procs.env)
        assert st["leader"] == ids[follower] and [r["leader"] for r in st["replicas"]].count(True) == 1

        for name in (follower, leader):
            assert c.procs.terminate(c.p[name]) == 0, c.procs.logs()
        assert replica_ids(c.store) == {}  # both left cleanly
        assert lease_holder(c.store) is None
    finally:
        c.close()
    assert not log_problems(c.procs.logs()), c.procs.logs()
