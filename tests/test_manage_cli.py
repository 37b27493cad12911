"""`perf-alerts schedules|policies|audit|optimize` over a store (typer's runner, JSON output)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from perf_alerts.cli.main import app

CONFIG = """
rules:
  - {name: Crit, type: threshold, metric: lat, aggregate: last, window: 1h, op: ">", value: 30, severity: critical,
     group: critical}
receivers: [{name: f, file: {path: "OUT"}}]
route: {receiver: f, group_wait: 0s}
schedules:
  - {name: crit, every: high, job: evaluate, group: critical}
  - {name: weekly, every: weekly, at: "09:00", job: summary, send: true}
policies:
  - name: crit-firing
    when: "firing.critical > 0"
    actions:
      - {type: notify}
      - {type: python, callable: "perf_alerts.manage.remediation:log_only", target_metric: lat}
"""


def setup(tmp_path: Path) -> list[str]:
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(textwrap.dedent(CONFIG).replace("OUT", str(tmp_path / "out.jsonl")))
    return ["--config", str(cfg), "--db", str(tmp_path / "s.db")]


def run(args: list[str]) -> dict | list:  # type: ignore[type-arg]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_schedules_policies_optimize_audit(tmp_path: Path) -> None:
    base = setup(tmp_path)
    sch = run(base + ["schedules", "--json"])
    assert [(x["name"], x["last_run"], x["overdue"]) for x in sch] == [("crit", None, False), ("weekly", None, False)]
    pol = run(base + ["policies", "--json"])
    assert pol[0]["name"] == "crit-firing" and [a["mode"] for a in pol[0]["actions"]] == ["live", "dry-run"]

    from perf_alerts.core import PerfAlerts

    s = PerfAlerts(str(tmp_path / "alerting.yaml"), db=tmp_path / "s.db")
    s.record("lat", 99.0, {"agent": "a"})
    s.evaluate()

    preview = run(base + ["optimize", "--json"])
    assert preview["applied"] is False and preview["policies"][0]["matched"] is True
    assert all(e["dry_run"] for e in preview["policies"][0]["executions"])
    assert run(base + ["audit", "--json"]) == []

    applied = run(base + ["optimize", "--apply", "--json"])
    assert [e["dry_run"] for e in applied["policies"][0]["executions"]] == [False, True]
    audit = run(base + ["audit", "--json"])
    assert [(a["action"], a["dry_run"]) for a in reversed(audit)] == [("notify", False), ("python", True)]
    assert all(a["who"].startswith("cli:") for a in audit)
    assert run(base + ["policies", "--json"])[0]["in_cooldown"] is True
    # the notify action's message was sent before the command exited
    assert (tmp_path / "out.jsonl").read_text().count("crit-firing") >= 1


def test_human_output_and_bad_lookback(tmp_path: Path) -> None:
    base = setup(tmp_path)
    for cmd in (["schedules"], ["policies"], ["audit"], ["optimize"]):
        r = CliRunner().invoke(app, base + cmd)
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, base + ["optimize", "--lookback", "soon"])
    assert r.exit_code == 2 and "--lookback" in r.output
