"""Policies with an injected clock: the condition language, cooldown, priority order, dry-run vs
enabled remediation, python/webhook/escalate actions, the audit log and verification of the effect."""

from __future__ import annotations

import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from perf_alerts.config import ConfigError, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.actions import audit_log, register_action
from perf_alerts.manage.condition import ConditionError, parse_condition
from perf_alerts.manage.policies import PolicyEngine, optimize_report
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0

BASE = """
global: {evaluation_interval: 1m}
rules:
  - {name: CritLatency, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 30,
     severity: critical}
receivers:
  - {name: ops, console: {}}
  - {name: oncall, console: {}}
route: {receiver: ops, group_wait: 0s}
"""

CALLS: list[dict[str, Any]] = []


def remedy(ctx: Any) -> dict[str, Any]:
    """A python action without dry-run support: must never be called in a dry run."""
    CALLS.append({"policy": ctx.policy, "params": ctx.params, "dry_run": ctx.dry_run})
    return {"restarted": ctx.params.get("what", "worker")}


def planner(ctx: Any, dry_run: bool) -> dict[str, Any]:
    """A python action that supports dry runs: called with dry_run=True to describe its plan."""
    CALLS.append({"policy": ctx.policy, "dry_run": dry_run})
    return {"plan": "scale up", "dry_run": dry_run}


@pytest.fixture(autouse=True)
def _clear_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def make(tmp_path: Path, policies: str, start: float = T0) -> tuple[PerfAlerts, ManualClock]:
    cfg = parse_config(textwrap.dedent(BASE) + textwrap.dedent(policies), "alerting.yaml", env={})
    clock = ManualClock(start)
    return PerfAlerts(cfg, db=tmp_path / "s.db", clock=clock), clock


def fire_critical(s: PerfAlerts, at: float) -> None:
    s.record("lat", 50.0, {"agent": "a"}, ts=at - 1)
    s.evaluate(at=at)
    assert any(a.state.value == "firing" for a in s.alerts())


def outbox(s: PerfAlerts) -> list[dict[str, Any]]:
    rows = s.store.con.execute("SELECT receiver, kind, body FROM notifications ORDER BY id").fetchall()
    return [{"receiver": r, "kind": k, "body": json.loads(b)} for r, k, b in rows]


# ----------------------------------------------------------------------------- the condition language


@pytest.mark.parametrize("text, values, expected", [
    ("health < 50 and firing.critical > 0", {"health": 40, "firing.critical": 1}, True),
    ("health < 50 and firing.critical > 0", {"health": 60, "firing.critical": 1}, False),
    ("health < 50 and firing.critical > 0", {"health": None, "firing.critical": 3}, False),  # no data → false
    ("not health >= 50", {"health": None}, False),  # unknown stays unknown under not
    ("health < 50 or firing.critical > 0", {"health": None, "firing.critical": 1}, True),
    ("firing.total >= 2 or pending.total > 0 and anomalies > 5", {"firing.total": 0, "pending.total": 1, "anomalies": 9}, True),
    ("(firing.total >= 2 or pending.total > 0) and anomalies > 5", {"firing.total": 3, "pending.total": 0, "anomalies": 1}, False),
    ("not (breaches == 0)", {"breaches": 2}, True),
    ("health.researcher <= 60.5", {"health.researcher": 60.5}, True),
    ("health.data-analyst != 100", {"health.data-analyst": 99}, True),
    ("firing.warning", {"firing.warning": 2}, True),
    ("true and not false", {}, True),
])
def test_conditions(text: str, values: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text).evaluate(values) is expected


@pytest.mark.parametrize("text, needle", [
    ("health <", "expected a number, a variable or '(' at the end"),
    ("(health < 50", "missing ')'"),
    ("health = 50", "use == for equality"),
    ("health < 50 && firing.critical > 0", "use and / or / not"),
    ("cpu > 90", "unknown variable 'cpu'; valid: health, health.<agent>, firing.critical"),
    ("firing.severe > 0", "firing takes one of critical, warning, info, total"),
    ("1 < health < 50", "chained comparison"),
    ("health < 50 firing.total", "unexpected 'firing.total'"),
    ("", "empty condition"),
    ("__import__('os').system('true')", "unexpected character"),
])
def test_condition_errors(text: str, needle: str) -> None:
    with pytest.raises(ConditionError) as e:
        parse_condition(text)
    assert needle in str(e.value)


def test_a_bad_condition_is_a_config_error_with_file_and_line() -> None:
    text = textwrap.dedent(BASE) + "policies:\n  - name: p\n    when: \"health < and firing.critical > 0\"\n    actions: [{type: notify}]\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "alerting.yaml", env={})
    line = text.splitlines().index('    when: "health < and firing.critical > 0"') + 1
    assert str(e.value).startswith(f"alerting.yaml:{line}: policies[0].when: invalid condition:"), str(e.value)


@pytest.mark.parametrize("action, needle", [
    ("{type: remediate}", "unknown action type 'remediate'; valid: notify, escalate, optimization_review, webhook, python"),
    ("{type: python}", "exactly one of callable"),
    ("{type: python, callable: 'not a path'}", "must look like package.module:function"),
    ("{type: escalate}", "needs receivers"),
    ("{type: escalate, receivers: [nobody]}", "unknown receiver 'nobody'"),
    ("{type: webhook}", "needs url"),
])
def test_action_config_errors(action: str, needle: str) -> None:
    text = textwrap.dedent(BASE) + f"policies:\n  - name: p\n    when: firing.total > 0\n    actions: [{action}]\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "alerting.yaml", env={})
    assert needle in str(e.value)


# ----------------------------------------------------------------------------- the engine


NOTIFY = """
policies:
  - name: crit
    when: "firing.critical > 0"
    cooldown: 1h
    actions:
      - {type: notify, severity: critical, title: "Critical alerts firing"}
"""


def test_a_matching_policy_notifies_and_is_audited(tmp_path: Path) -> None:
    s, clock = make(tmp_path, NOTIFY)
    eng = PolicyEngine(s)
    assert eng.evaluate() == []  # nothing firing yet
    fire_critical(s, T0)
    ex = eng.evaluate()
    assert [(e.policy, e.action, e.result, e.dry_run) for e in ex] == [("crit", "notify", "ok", False)]
    msgs = [n for n in outbox(s) if n["kind"] == "policy"]
    assert len(msgs) == 1 and msgs[0]["body"]["title"] == "Critical alerts firing"
    assert msgs[0]["body"]["group_labels"]["policy"] == "crit"
    [row] = audit_log(s)
    assert row["who"] == "policy:crit" and row["action"] == "notify" and row["result"] == "ok"
    assert row["dry_run"] is False and row["at"] == "2027-01-15T08:00:00Z"
    assert row["detail"]["variables"] == {"firing.critical": 1}


def test_cooldown_holds_a_policy_back_and_survives_a_restart(tmp_path: Path) -> None:
    s, clock = make(tmp_path, NOTIFY)
    fire_critical(s, T0)
    assert len(PolicyEngine(s).evaluate()) == 1
    clock.advance("10m")
    eng2 = PolicyEngine(PerfAlerts(s.config, db=tmp_path / "s.db", clock=clock))  # a restart
    assert eng2.evaluate() == []
    st = eng2.status()[0]
    assert st["in_cooldown"] and st["cooldown_until"] == "2027-01-15T09:00:00Z" and st["fired_count"] == 1
    clock.advance("50m")  # 1 h after the first execution
    assert len(eng2.evaluate()) == 1
    assert len(audit_log(s)) == 2


def test_priority_one_runs_first(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    policies:
      - {name: low, when: "firing.total > 0", priority: 20, actions: [{type: notify, title: low}]}
      - {name: top, when: "firing.critical > 0", priority: 1, actions: [{type: notify, title: top}]}
      - {name: mid, when: "firing.total > 0", priority: 5, actions: [{type: notify, title: mid}]}
    """)
    fire_critical(s, T0)
    eng = PolicyEngine(s)
    assert [p["name"] for p in eng.status()] == ["top", "mid", "low"]
    assert [e.policy for e in eng.evaluate()] == ["top", "mid", "low"]
    assert [n["body"]["title"] for n in outbox(s) if n["kind"] == "policy"] == ["top", "mid", "low"]


def test_health_without_data_never_triggers(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    policies:
      - {name: sick, when: "health < 50", actions: [{type: notify}]}
      - {name: sick-or-firing, when: "health < 50 or firing.critical > 0", actions: [{type: notify}]}
    """)
    eng = PolicyEngine(s)
    assert eng.evaluate() == []
    assert eng.last_outcomes[0].values == {"health": None}


REMEDIATE = """
policies:
  - name: fix
    when: "firing.critical > 0"
    cooldown: 0s
    actions:
      - {type: python, callable: "test_policies:remedy", params: {what: researcher}}
      - {type: python, callable: "test_policies:remedy", enabled: true, params: {what: writer}}
      - {type: python, callable: "test_policies:planner"}
"""


def test_remediation_is_a_dry_run_unless_enabled(tmp_path: Path) -> None:
    s, clock = make(tmp_path, REMEDIATE)
    fire_critical(s, T0)
    ex = PolicyEngine(s).evaluate()
    assert [(e.result, e.dry_run) for e in ex] == [("dry-run", True), ("ok", False), ("dry-run", True)]
    # the disabled action without dry-run support was not called; the enabled one was; the planner was
    # asked for its plan only
    assert CALLS == [{"policy": "fix", "params": {"what": "writer"}, "dry_run": False},
                     {"policy": "fix", "dry_run": True}]
    assert ex[0].detail == {"would_call": "test_policies:remedy", "params": {"what": "researcher"}}
    assert ex[1].detail["returned"] == {"restarted": "writer"}
    rows = list(reversed(audit_log(s)))
    assert [(r["result"], r["dry_run"], r["target"]) for r in rows] == [
        ("dry-run", True, "test_policies:remedy"), ("ok", False, "test_policies:remedy"),
        ("dry-run", True, "test_policies:planner")]


def test_preview_and_apply_from_the_cli(tmp_path: Path) -> None:
    s, clock = make(tmp_path, REMEDIATE)
    fire_critical(s, T0)
    rep = optimize_report(s, apply=False, who="cli:alice")
    assert all(e["dry_run"] for p in rep["policies"] for e in p["executions"])
    assert CALLS == [{"policy": "fix", "dry_run": True}]  # only the planner, asked for its plan
    assert audit_log(s) == []  # a preview is not an execution
    CALLS.clear()
    rep = optimize_report(s, apply=True, who="cli:alice")
    assert [e["dry_run"] for e in rep["policies"][0]["executions"]] == [True, False, True]
    assert {r["who"] for r in audit_log(s)} == {"cli:alice"}
    assert "recommendations" in rep["recommendations"]


def test_registered_python_action_and_a_broken_one(tmp_path: Path) -> None:
    seen: list[str] = []
    register_action("test-scale-up", lambda ctx: seen.append(ctx.policy) or "scaled")
    s, clock = make(tmp_path, """
    policies:
      - name: p
        when: "firing.total > 0"
        actions:
          - {type: python, entry_point: test-scale-up, enabled: true}
          - {type: python, entry_point: no-such-action, enabled: true}
          - {type: python, callable: "no_such_module_xyz:fn", enabled: true}
          - {type: notify}
    """)
    fire_critical(s, T0)
    ex = PolicyEngine(s).evaluate()
    assert seen == ["p"]
    assert [e.result for e in ex] == ["ok", "error", "error", "ok"]  # one failure does not stop the rest
    assert "no python action named 'no-such-action'" in ex[1].detail["error"]
    assert "cannot import 'no_such_module_xyz'" in ex[2].detail["error"]


def test_escalate_action_goes_to_its_receivers(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    policies:
      - {name: esc, when: "firing.critical > 0", actions: [{type: escalate, receivers: [oncall]}]}
    """)
    fire_critical(s, T0)
    [e] = PolicyEngine(s).evaluate()
    assert e.result == "ok" and e.target == "oncall"
    [n] = [n for n in outbox(s) if n["kind"] == "escalation"]
    assert n["receiver"] == "oncall" and len(n["body"]["alerts"]) == 1


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            got.append(json.loads(self.rfile.read(n)))
            self.send_response(204)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/remediate/secret-token", got
    srv.shutdown()
    srv.server_close()


def test_webhook_action_dry_run_then_enabled(tmp_path: Path, hook_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = hook_server
    cfg = textwrap.dedent(BASE) + textwrap.dedent("""
    policies:
      - name: hook
        when: "firing.critical > 0"
        cooldown: 0s
        actions:
          - {type: webhook, url: "${HOOK}"}
          - {type: webhook, url: "${HOOK}", enabled: true, params: {service: crew}}
    """)
    clock = ManualClock(T0)
    s = PerfAlerts(parse_config(cfg, "c.yaml", env={"HOOK": url}), db=tmp_path / "s.db", clock=clock)
    fire_critical(s, T0)
    ex = PolicyEngine(s).evaluate()
    assert [(e.result, e.dry_run) for e in ex] == [("dry-run", True), ("ok", False)]
    assert len(got) == 1 and got[0]["policy"] == "hook" and got[0]["params"] == {"service": "crew"}
    assert got[0]["firing"][0]["rule"] == "CritLatency"
    assert "secret-token" not in json.dumps(audit_log(s))  # the URL is a secret


@pytest.mark.parametrize("after_value, expected", [(5.0, "improved"), (10.2, "no change"), (20.0, "worse")])
def test_verification_compares_the_target_metric_before_and_after(tmp_path: Path, after_value: float,
                                                                    expected: str) -> None:
    s, clock = make(tmp_path, """
    policies:
      - name: fix
        when: "firing.critical > 0"
        cooldown: 1d
        actions:
          - {type: python, callable: "test_policies:remedy", enabled: true,
             target_metric: crew_task_seconds, target_matchers: {agent: a}, verify_after: 10m}
    """)
    for i in range(10):  # before: 10 s tasks for agent a (and noise for another agent, not matched)
        s.record("crew_task_seconds", 10.0, {"agent": "a"}, ts=T0 - 540 + i * 60)
        s.record("crew_task_seconds", 99.0, {"agent": "b"}, ts=T0 - 540 + i * 60)
    fire_critical(s, T0)
    eng = PolicyEngine(s)
    [e] = eng.evaluate()
    [row] = audit_log(s)
    assert row["verification"] == "pending" and row["before_value"] == pytest.approx(10.0)
    assert row["verify_due_at"] == "2027-01-15T08:10:00Z"
    for i in range(1, 11):
        s.record("crew_task_seconds", after_value, {"agent": "a"}, ts=T0 + i * 60)
    clock.advance("5m")
    eng.evaluate()
    assert audit_log(s)[0]["verification"] == "pending"  # not due yet
    clock.advance("5m")
    eng.evaluate()
    [row] = audit_log(s)
    assert row["verification"] == expected
    assert row["after_value"] == pytest.approx(after_value)


def test_verification_direction_comes_from_metric_metadata(tmp_path: Path) -> None:
    # a higher-is-better metric that went down got worse
    s, clock = make(tmp_path, """
    metrics:
      answer_quality: {better: higher}
    policies:
      - name: fix
        when: "firing.critical > 0"
        actions:
          - {type: notify, target_metric: answer_quality, verify_after: 10m}
    """)
    s.record("answer_quality", 0.9, {}, ts=T0 - 60)
    fire_critical(s, T0)
    eng = PolicyEngine(s)
    eng.evaluate()
    s.record("answer_quality", 0.5, {}, ts=T0 + 60)
    clock.advance("10m")
    eng.evaluate()
    assert audit_log(s)[0]["verification"] == "worse"


def test_verification_without_data_says_so(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    policies:
      - {name: fix, when: "firing.critical > 0",
         actions: [{type: notify, target_metric: crew_task_seconds, verify_after: 5m}]}
    """)
    fire_critical(s, T0)
    eng = PolicyEngine(s)
    eng.evaluate()
    clock.advance("5m")
    eng.evaluate()
    assert audit_log(s)[0]["verification"] == "no data"


def test_dry_runs_are_not_verified(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    policies:
      - {name: fix, when: "firing.critical > 0",
         actions: [{type: python, callable: "test_policies:remedy", target_metric: crew_task_seconds}]}
    """)
    fire_critical(s, T0)
    PolicyEngine(s).evaluate()
    [row] = audit_log(s)
    assert row["dry_run"] and row["verification"] is None


def test_the_default_policy_parses_and_its_remediation_is_a_dry_run(tmp_path: Path) -> None:
    from perf_alerts.config import load_config, packaged_config_dir

    cfg = load_config(packaged_config_dir() / "alerting.yaml", env={})
    pol = next(p for p in cfg.policies if p.when == "health < 50 and firing.critical > 0")
    assert [a.type for a in pol.actions][:2] == ["notify", "optimization_review"]
    assert all(not a.enabled for a in pol.actions if a.type in ("python", "webhook"))


def test_a_policy_message_gives_the_value_an_alert_fired_with(tmp_path: Path) -> None:
    """Issue 11: a policy's message listed 'CriticalPerformanceDegradation … value 100.1 since 10:47'
    while the alert's own notification said it fired at 10:47 with 89.3: the value it fired with, and
    the current one as 'now'."""
    s, clock = make(tmp_path, NOTIFY)
    fire_critical(s, T0)  # fires with 50
    s.record("lat", 80.0, {"agent": "a"}, ts=T0 + 59)
    clock.set(T0 + 60)
    s.evaluate(at=T0 + 60)
    PolicyEngine(s).evaluate()
    [msg] = [n for n in outbox(s) if n["kind"] == "policy"]
    text = json.dumps(msg["body"])
    assert "CritLatency" in text and "fired with 50 at 2027-01-15 08:00 UTC, 80 now" in text
    assert "value 80 since" not in text
