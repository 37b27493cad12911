"""Delivery across processes: a crash between 'written to the outbox' and 'sent', a Discord
outage, and the CLI (`evaluate` sends before it exits, `notifications`, `silence`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fake_discord import fake_discord
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.outbox import Outbox
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0


def write_config(tmp_path: Path, group_by: str = "agent") -> Path:
    p = tmp_path / "alerting.yaml"
    p.write_text(textwrap.dedent(f"""
    rules:
      - name: HighLatency
        type: threshold
        metric: lat
        aggregate: last
        window: 10m
        op: ">"
        value: 30
        severity: critical
        annotations: {{summary: "{{{{ labels.agent }}}} latency {{{{ value }}}}s"}}
    receivers:
      - name: oncall
        discord: {{webhook_url: "${{TEST_HOOK}}"}}
    route: {{receiver: oncall, group_by: [{group_by}], group_wait: 0s}}
    delivery: {{max_attempts: 20, backoff_base: 1s, backoff_cap: 2s, cli_deadline: 20s}}
    """))
    return p


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_crash_after_outbox_write_delivers_exactly_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    db = tmp_path / "s.db"
    with fake_discord() as srv:
        env = {"TEST_HOOK": srv.url_for(7, "crash-token-secret")}
        # process 1: evaluates, writes the outbox, and is killed before sending anything
        p1 = run(f"""
            import os, signal
            from perf_alerts.core import PerfAlerts
            from perf_alerts.notify.pipeline import Notifier
            from perf_alerts.timeutil import ManualClock
            pa = PerfAlerts({str(cfg)!r}, {str(db)!r}, ManualClock({T0}))
            for i in range(12):
                pa.record("lat", 50 + i, {{"agent": f"agent{{i}}"}})
            pa.evaluate()
            created = Notifier(pa).plan().created
            print(len(created), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """, env)
        assert p1.returncode == -9, p1.stderr
        assert int(p1.stdout.strip()) == 12
        assert srv.stats.requests == 0
        # process 2: a fresh start delivers everything that was planned
        p2 = run(f"""
            from perf_alerts.core import PerfAlerts
            from perf_alerts.notify.pipeline import Notifier
            from perf_alerts.timeutil import ManualClock
            pa = PerfAlerts({str(cfg)!r}, {str(db)!r}, ManualClock({T0 + 1}))
            n = Notifier(pa)
            n.plan()  # a restart must not plan the same groups again
            print(n.deliver().delivered)
        """, env)
        assert p2.returncode == 0, p2.stderr
        assert p2.stdout.strip() == "12"
        # process 3: nothing left to send
        p3 = run(f"""
            from perf_alerts.core import PerfAlerts
            from perf_alerts.notify.pipeline import Notifier
            from perf_alerts.timeutil import ManualClock
            pa = PerfAlerts({str(cfg)!r}, {str(db)!r}, ManualClock({T0 + 2}))
            n = Notifier(pa)
            n.plan()
            print(n.deliver().delivered)
        """, env)
        assert p3.stdout.strip() == "0"
    text = json.dumps([m["embeds"] for m in srv.messages(7)])
    for i in range(12):
        assert text.count(f"agent{i} latency") == 1, f"agent{i} delivered {text.count(f'agent{i} latency')} times"


def test_outage_delays_but_loses_nothing(tmp_path: Path) -> None:
    cfg = parse_config(write_config(tmp_path).read_text(), env={"TEST_HOOK": "http://127.0.0.1:1/api/webhooks/1/x"})
    with fake_discord() as srv:
        cfg.receivers[0].discord.webhook_url = srv.url_for(8, "outage-token")  # type: ignore[union-attr]
        clock = ManualClock(T0)
        pa = PerfAlerts(cfg, Store(tmp_path / "o.db"), clock)
        n = Notifier(pa)
        srv.go_down(True)
        for i in range(3):
            pa.record("lat", 50, {"agent": f"a{i}"})
        pa.evaluate()
        n.plan()
        for minute in range(10):  # ten minutes of outage: retried, never dead
            clock.set(T0 + 60 * minute)
            n.deliver()
        assert srv.messages(8) == []
        assert [x.state for x in Outbox(pa.store).recent()] == ["failed"] * 3
        srv.go_down(False)
        clock.set(T0 + 700)
        assert n.deliver().delivered == 3
        assert len(srv.messages(8)) == 1  # all three in one message


def test_cli_evaluate_sends_and_lists_notifications(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, group_by="alertname")
    db = tmp_path / "cli.db"
    csv = tmp_path / "m.csv"
    csv.write_text("timestamp,metric,value,agent\n2026-11-26T10:00:00Z,lat,45,researcher\n2026-11-26T10:00:00Z,lat,50,writer\n")
    with fake_discord() as srv:
        env = {**os.environ, "TEST_HOOK": srv.url_for(9, "cli-token-secret"), "PERF_ALERTS_DB": str(db),
               "PERF_ALERTS_CONFIG": str(cfg)}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "perf_alerts", *args], capture_output=True, text=True,
                                  env=env, cwd=tmp_path, timeout=120)

        assert cli("ingest", str(csv)).returncode == 0
        ev = cli("evaluate", "--at", "2026-11-26T10:01:00Z", "--json")
        assert ev.returncode == 0, ev.stderr
        d = json.loads(ev.stdout)
        assert d["notifications"]["delivered"] == 1 and d["notifications"]["still_pending"] == 0
        assert len(srv.messages(9)) == 1
        nl = cli("notifications", "--json")
        [item] = json.loads(nl.stdout)
        assert {"id", "receiver", "state", "attempts", "alerts", "message_ids"} <= set(item)
        assert item["state"] == "delivered" and len(item["alerts"]) == 2 and item["message_ids"]
        # silences from the CLI: created, listed, honoured, expired
        sa = cli("silence", "add", "agent=researcher", "--duration", "1h", "--comment", "known issue", "--json")
        assert sa.returncode == 0, sa.stderr
        sid = json.loads(sa.stdout)["id"]
        listed = json.loads(cli("silence", "list", "--json").stdout)
        assert [x["id"] for x in listed] == [sid] and listed[0]["state"] == "active"
        assert cli("silence", "add", "--duration", "1h").returncode == 2  # no matcher: refused
        bad = cli("silence", "add", 'agent=~"("')
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and "regular expression" in bad.stderr
        assert cli("silence", "expire", sid).returncode == 0
        assert json.loads(cli("silence", "list", "--json").stdout) == []
        everything = "".join(p.stdout + p.stderr for p in (ev, nl, sa))
        assert "cli-token-secret" not in everything
