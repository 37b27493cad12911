"""The PostgreSQL backend's own behaviour (issue 12 items 1 and 5): URLs, errors that name the
host and never the password, versioned migrations that several daemons may run at once, and a
daemon that rides out a PostgreSQL restart without losing a sample batch or an outbox entry.

The behaviour both backends share is tested once for both (the `store_url` fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_discord import fake_discord
from test_delivery_concurrency import (PY, Procs, agent, free_port, log_problems, seed, tally, wait_until,
                                       write_config, HOOK_ID, TOKEN)

from perf_alerts.errors import StoreError, StoreUnavailable
from perf_alerts.store import Store
from perf_alerts.store.backend import is_postgres_url, redact_url
from perf_alerts.store.schema import SCHEMA_VERSION


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PY, "-m", "perf_alerts", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_url_recognised_and_redacted() -> None:
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url("postgres://u:p@h:5/db")
    assert not is_postgres_url("perf_alerts.db") and not is_postgres_url("/tmp/postgresql/x.db")
    assert redact_url("postgresql://bob:s3cret@db.example:5432/perf") == "postgresql://bob:***@db.example:5432/perf"
    assert "s3cret" not in redact_url("postgresql://bob@h/perf?password=s3cret&sslmode=require")


def test_unreachable_server_is_one_line_naming_the_host_exit_2() -> None:
    port = free_port()  # nothing listens there
    r = _cli("--db", f"postgresql://bob:hunter2secret@127.0.0.1:{port}/perf", "alerts")
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}/perf" in lines[0], r.stderr
    assert "hunter2secret" not in r.stderr + r.stdout and "Traceback" not in r.stderr


@pytest.mark.parametrize("secret", ["Xy?Z9secret", "a[b#c/dsecret", "pa%zzsecret"])
def test_a_password_with_url_characters_never_shows(secret: str) -> None:
    port = free_port()
    for url in (f"postgresql://bob:{secret}@127.0.0.1:{port}/perf", f"postgresql://bob@127.0.0.1:{port}/perf?password={secret}"):
        r = _cli("--db", url, "alerts")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r
        assert secret not in r.stderr + r.stdout and "Traceback" not in r.stderr, r.stderr


def test_wrong_password_is_one_line_naming_the_host_never_the_password(pg_server: Any, pg_url: str) -> None:
    if not getattr(pg_server, "owned", False):
        pytest.skip("needs the test's own server (it changes pg_hba.conf)")
    hba = pg_server.datadir / "pg_hba.conf"
    before = hba.read_text()
    pg_server._execute("DO $$ BEGIN CREATE ROLE pw_user LOGIN PASSWORD 'the-right-one'; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    hba.write_text("host all pw_user 127.0.0.1/32 scram-sha-256\n" + before)
    pg_server._run("pg_ctl", "reload", "-D", str(pg_server.datadir))
    try:
        time.sleep(0.3)
        wrong = pg_url.replace("postgres@", "pw_user:wrong-Pa55word@")
        r = _cli("--db", wrong, "alerts")
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "127.0.0.1" in lines[0] and "password authentication failed" in lines[0], lines
        assert "wrong-Pa55word" not in r.stderr + r.stdout
    finally:
        hba.write_text(before)
        pg_server._run("pg_ctl", "reload", "-D", str(pg_server.datadir))


def test_schema_version_recorded_once_and_a_newer_store_refused(pg_url: str) -> None:
    s = Store(pg_url)
    s.close()
    s = Store(pg_url)  # opening again adds nothing
    try:
        versions = [r[0] for r in s.con.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [SCHEMA_VERSION]
        with s.transaction() as con:
            con.execute("INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                        (SCHEMA_VERSION + 1, time.time(), "from a newer perf-alerts"))
    finally:
        s.close()
    with pytest.raises(StoreError, match="upgrade perf-alerts"):
        Store(pg_url)


def test_several_processes_create_the_schema_at_once(pg_url: str) -> None:
    code = (f"from perf_alerts.store import Store; s = Store({pg_url!r}); "
            "s.insert_samples([]); print(len(s.list_series())); s.close()")
    procs = [subprocess.Popen([*PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    s = Store(pg_url)
    try:
        assert [r[0] for r in s.con.execute("SELECT version FROM schema_version")] == [SCHEMA_VERSION]
    finally:
        s.close()


def test_a_stopped_server_gives_store_unavailable_after_the_retry_window(pg_server: Any, pg_url: str) -> None:
    if not getattr(pg_server, "owned", False):
        pytest.skip("needs the test's own server (it stops it)")
    s = Store(pg_url)
    try:
        s._backend.retry_for = 1.0  # type: ignore[attr-defined]
        s.kv_set("k", 1)
        pg_server.stop()
        t = time.monotonic()
        with pytest.raises(StoreUnavailable, match="127.0.0.1"):
            s.kv_get("k")
        assert time.monotonic() - t < 10
        pg_server.start()
        assert s.kv_get("k") == 1  # and back once the server is
    finally:
        if not pg_server.running:
            pg_server.start()
        s.close()


@pytest.mark.slow
def test_daemon_rides_out_postgresql_restarts_without_losing_samples_or_notifications(
        pg_server: Any, pg_url: str, tmp_path: Path) -> None:
    """A daemon serving HTTP ingest and delivering alerts on PostgreSQL; a client pushes sample
    batches all along; PostgreSQL is restarted twice under it. Every batch the API accepted is
    stored, the API never answered with an error, every alert reached Discord, the daemon lives on."""
    if not getattr(pg_server, "owned", False):
        pytest.skip("needs the test's own server (it restarts it)")
    cfg = write_config(tmp_path)
    n_agents = 6
    agents = {agent(i) for i in range(n_agents)}
    pushed: list[int] = []
    errors: list[str] = []
    stop = threading.Event()
    with fake_discord(limit=50, per_seconds=1.0) as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        procs = Procs(tmp_path, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        port = free_port()
        api = f"http://127.0.0.1:{port}/api/v1/metrics"
        try:
            daemon = procs.daemon("daemon", cfg, pg_url, port)  # type: ignore[arg-type]

            def up() -> bool:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=0.5).status_code == 200
                except httpx.HTTPError:
                    return daemon.poll() is not None

            assert wait_until(up, 30, 0.1) and daemon.poll() is None, procs.logs()
            t0 = time.time()

            def push() -> None:
                i = 0
                with httpx.Client(timeout=60) as client:
                    while not stop.is_set():
                        batch = [{"metric": "pushed", "value": float(i), "labels": {"src": "pusher"},
                                  "timestamp": t0 + i * 0.001 + k * 1e-6} for k in range(20)]
                        try:
                            r = client.post(api, json={"samples": batch})
                            if r.status_code == 200:
                                pushed.append(len(batch))
                            else:
                                errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        except httpx.HTTPError as e:
                            errors.append(type(e).__name__)
                        i += 1
                        time.sleep(0.02)

            pusher = threading.Thread(target=push, daemon=True)
            pusher.start()
            time.sleep(1.0)
            # alerts fire while the server goes away: their notifications must all arrive
            seed(cfg, pg_url, url, range(n_agents), evaluate=False, plan=False)  # type: ignore[arg-type]
            for _ in range(2):
                time.sleep(0.5)
                pg_server.restart()
            time.sleep(1.0)
            stop.set()
            pusher.join(90)
            done = wait_until(lambda: tally(srv, agents, set())["lost"] == 0, 40, 0.2)
            time.sleep(1.0)
            alive = daemon.poll() is None
            rc = procs.terminate(daemon)
        finally:
            stop.set()
            procs.cleanup()
        res = tally(srv, agents, set())
    logs = procs.logs()
    s = Store(pg_url)
    try:
        stored = s.con.execute("SELECT COUNT(*) FROM samples JOIN series ON series.id = samples.series_id "
                               "WHERE series.metric = 'pushed'").fetchone()[0]
        states = dict(s.con.execute("SELECT state, COUNT(*) FROM notifications GROUP BY state").fetchall())
    finally:
        s.close()
    info = json.dumps({"pushed": sum(pushed), "stored": stored, "errors": errors[:10], "outbox": states,
                       **res}, indent=1) + "\n" + logs[-6000:]
    assert sum(pushed) > 100 and errors == [], info  # the API waited the restarts out instead of failing
    assert stored == sum(pushed), info  # every accepted batch is in the store
    assert done and res["lost"] == 0 and res["max_copies"] <= 2, info
    assert set(states) == {"delivered"}, info
    assert alive and rc == 0, info
    assert "PostgreSQL at 127.0.0.1" in logs and "retrying" in logs, info  # it said what happened
    assert not log_problems(logs), info


@pytest.mark.slow
def test_the_whole_demo_runs_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """Every stage on PostgreSQL: ingest, rules, alert state, schedules, policies, the outbox,
    escalations, the executive summary and the crew tool's actions (the demo's day, fast)."""
    import os

    out = tmp_path / "demo-output"
    r = subprocess.run([*PY, "-m", "perf_alerts", "--db", pg_url, "demo", "--fast", "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "PERF_ALERTS_CONFIG": "", "DISCORD_WEBHOOK_URL": ""})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    report = json.loads((out / "demo-report.json").read_text())
    assert report["db"] == pg_url and not (out / "demo.db").exists()
    s = Store(pg_url)
    try:
        fired = [e for e in s.events() if e["event"] == "firing"]
        states = dict(s.con.execute("SELECT state, COUNT(*) FROM notifications GROUP BY state").fetchall())
    finally:
        s.close()
    assert {"CriticalPerformanceDegradation", "CrewToolErrors"} <= {e["rule"] for e in fired}
    summary = json.loads((out / "executive-summary.json").read_text())
    assert summary["alerts"]["fired_total"] == len(fired)
    assert set(states) == {"delivered"}, states
    assert all(c["status"] == "ok" for c in report["tool_calls"]), report["tool_calls"]


@pytest.mark.parametrize("target", ["postgresq://perf:Secret9@127.0.0.1:1/db", "mysql://root:Secret9@h/db",
                                    "host=127.0.0.1 port=5432 dbname=x user=perf password=Secret9"])
def test_a_store_that_is_not_a_postgresql_url_or_a_path_is_refused(target: str, tmp_path: Path) -> None:
    r = subprocess.run([*PY, "-m", "perf_alerts", "--db", target, "status"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r
    assert "Secret9" not in r.stderr + r.stdout
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after it
