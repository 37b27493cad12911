"""The daemon as a real subprocess: metrics pushed over HTTP break a rule, the notification arrives at
a Discord-like server, SIGTERM stops it cleanly with an undelivered notification kept in the
outbox, a restart sends it — nothing lost, nothing sent twice — and schedule state survives."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from fake_discord import fake_discord

HOOK_ID = 4242


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path) -> Path:
    p = tmp_path / "alerting.yaml"
    p.write_text(textwrap.dedent("""
    global: {evaluation_interval: 0.5s}
    rules:
      - name: HighLatency
        type: threshold
        metric: crew_task_seconds
        aggregate: last
        window: 10m
        op: ">"
        value: 30
        severity: critical
        group: critical
        annotations: {summary: "{{ labels.agent }} task time {{ value }}s"}
    receivers:
      - name: oncall
        discord: {webhook_url: "${TEST_HOOK}"}
    route: {receiver: oncall, group_by: [agent], group_wait: 0s, group_interval: 1s}
    delivery: {max_attempts: 50, backoff_base: 0.5s, backoff_cap: 1s}
    schedules:
      - {name: checks, every: continuous, job: evaluate, group: critical}
      - {name: review, every: daily, job: optimization_review}
    """))
    return p


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start(cfg: Path, db: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own descriptor; ours is closed (no leaked file)
        return subprocess.Popen(
            [sys.executable, "-m", "perf_alerts", "--config", str(cfg), "--db", str(db), "run", "--port", str(port),
             "--no-host-metrics"],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def api_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/status", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def push(port: int, agent: str, value: float) -> None:
    r = httpx.post(f"http://127.0.0.1:{port}/api/v1/metrics", timeout=5,
                   json=[{"metric": "crew_task_seconds", "value": value, "labels": {"agent": agent}}])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text


def outbox(db: Path) -> list[tuple[int, str, str, list[str]]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT id, state, body, message_ids FROM notifications ORDER BY id").fetchall()
    finally:
        con.close()
    return [(i, st, ",".join(sorted(a["labels"].get("agent", "") for a in json.loads(b)["alerts"])), json.loads(m))
            for i, st, b, m in rows]


def stop(p: subprocess.Popen[bytes], log: Path) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("the daemon did not stop on SIGTERM:\n" + log.read_text())
    assert rc == 0, log.read_text()


def test_daemon_end_to_end_survives_sigterm_and_restart(tmp_path: Path) -> None:
    cfg, db, log = write_config(tmp_path), tmp_path / "store.db", tmp_path / "daemon.log"
    with fake_discord() as srv:
        env = {"TEST_HOOK": srv.url_for(HOOK_ID, "daemon-token-secret"), "PERF_ALERTS_TOKEN": ""}
        port = free_port()
        p = start(cfg, db, port, env, log)
        try:
            wait_for(lambda: api_up(port) or p.poll() is not None, 20, "the daemon's API")
            assert p.poll() is None, log.read_text()

            # 1. metrics over HTTP break the rule → a notification arrives in Discord
            push(port, "researcher", 55.0)
            wait_for(lambda: len(srv.messages(HOOK_ID)) >= 1, 10, "the first Discord message")

            # 2. Discord goes down; a second agent breaks the rule; the notification waits in the outbox
            srv.go_down(True)
            push(port, "writer", 70.0)
            wait_for(lambda: any(a == "writer" and st == "failed" for _, st, a, _ in outbox(db)), 10,
                     "a failed delivery attempt for the second alert")
            # the schedules API shows the daemon's scheduler
            sched = httpx.get(f"http://127.0.0.1:{port}/api/v1/schedules", timeout=5).json()["schedules"]
            assert {x["name"] for x in sched} == {"checks", "review"}
            assert next(x for x in sched if x["name"] == "checks")["runs"] >= 1
        finally:
            stop(p, log)

        rows = outbox(db)
        assert [st for _, st, a, _ in rows if a == "writer"] == ["failed"]  # kept, not lost
        runs_before = sqlite3.connect(db).execute("SELECT runs FROM schedules WHERE name = 'checks'").fetchone()[0]

        # 3. Discord comes back; a restart sends what was left, and nothing twice
        srv.go_down(False)
        p = start(cfg, db, port, env, log)
        try:
            wait_for(lambda: len(srv.messages(HOOK_ID)) >= 2, 15, "the second Discord message after the restart")
            time.sleep(1.5)  # a few more cycles: nothing else may arrive
        finally:
            stop(p, log)

    msgs = srv.messages(HOOK_ID)
    text = json.dumps(msgs)
    assert len(msgs) == 2, text
    assert text.count("researcher") >= 1 and text.count("writer") >= 1
    assert "researcher" not in json.dumps(msgs[1]) and "writer" not in json.dumps(msgs[0])
    rows = outbox(db)
    assert [(st, a) for _, st, a, _ in rows] == [("delivered", "researcher"), ("delivered", "writer")]
    assert all(len(m) == 1 for *_, m in rows)  # one Discord message each, recorded
    con = sqlite3.connect(db)
    runs_after = con.execute("SELECT runs FROM schedules WHERE name = 'checks'").fetchone()[0]
    review_runs = con.execute("SELECT runs FROM schedules WHERE name = 'review'").fetchone()[0]
    con.close()
    assert runs_after > runs_before  # the restarted daemon carried on with the persisted schedule state
    assert review_runs == 0  # a daily job waits for its slot; restarts do not trigger it
    out = log.read_text()
    assert "daemon-token-secret" not in out  # the webhook URL never reaches the log
    assert "Traceback" not in out, out


def test_run_once_evaluates_and_delivers(tmp_path: Path) -> None:
    cfg, db = write_config(tmp_path), tmp_path / "store.db"
    from perf_alerts.core import PerfAlerts

    PerfAlerts(str(cfg), db=db).record("crew_task_seconds", 99.0, {"agent": "a"})
    with fake_discord() as srv:
        env = {**os.environ, "TEST_HOOK": srv.url_for(HOOK_ID, "once-token")}
        r = subprocess.run([sys.executable, "-m", "perf_alerts", "--config", str(cfg), "--db", str(db), "run", "--once",
                            "--no-host-metrics"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert len(srv.messages(HOOK_ID)) == 1
    assert [st for _, st, _, _ in outbox(db)] == ["delivered"]


def test_one_daemon_tick_with_an_injected_clock(tmp_path: Path) -> None:
    import asyncio

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.daemon import Daemon
    from perf_alerts.timeutil import ManualClock

    out = tmp_path / "out.jsonl"
    cfg = parse_config(textwrap.dedent(f"""
    global: {{evaluation_interval: 1m}}
    rules:
      - {{name: Slow, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 1, severity: warning}}
    receivers: [{{name: f, file: {{path: "{out}"}}}}]
    route: {{receiver: f, group_wait: 0s}}
    schedules: [{{name: all, every: continuous}}]
    policies:
      - {{name: p, when: "firing.warning > 0", actions: [{{type: notify, title: "policy says hi"}}]}}
    """), "c.yaml", env={})
    clock = ManualClock(1_800_000_000.0)
    s = PerfAlerts(cfg, db=tmp_path / "s.db", clock=clock)
    s.record("lat", 5.0, {"agent": "a"}, ts=clock.now() - 1)
    d = Daemon(s, http=False, collect_host=False)
    rep = asyncio.run(d.tick())
    assert [j["schedule"] for j in rep["jobs"]] == ["all"]
    assert [a["policy"] for a in rep["actions"]] == ["p"]
    assert rep["delivery"]["delivered"] == 2  # the alert group and the policy message
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2
    clock.advance("30s")
    rep = asyncio.run(d.tick())
    assert rep["jobs"] == [] and rep["actions"] == [] and rep["delivery"]["delivered"] == 0
    assert s.store.kv_get("daemon")["ticks"] == 2
