"""Config validation and legacy keys pinned against Alertmanager's config loader (issue 16):
each test names the Alertmanager behaviour (config/config.go) it reproduces."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perf_alerts.config import ConfigError, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.outbox import Outbox
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0


def _load(body: str):  # type: ignore[no-untyped-def]
    return parse_config(textwrap.dedent(body), "am.yaml", env={})


def _rejects(body: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as e:
        _load(body)
    text = str(e.value)
    for n in needles:
        assert n in text, text
    return text


def test_root_route_with_matchers_is_rejected() -> None:
    # Alertmanager: "root route must not have any matchers" (they would be silently ignored)
    _rejects("""
        route:
          receiver: console
          matchers: ['severity="critical"']
        """, "am.yaml:4:", "root route must not have any matchers")


def test_root_route_with_legacy_match_is_rejected() -> None:
    # Alertmanager: the root route's match/match_re count as matchers too
    _rejects("""
        route:
          receiver: console
          match: {severity: critical}
        """, "am.yaml:", "root route must not have any matchers")


def test_root_route_with_continue_is_rejected() -> None:
    # Alertmanager: "cannot have continue in root route"
    _rejects("""
        route:
          receiver: console
          continue: true
        """, "am.yaml:4:", "continue")


@pytest.mark.parametrize("key", ["group_interval", "repeat_interval"])
def test_zero_intervals_are_rejected(key: str) -> None:
    # Alertmanager: "group_interval cannot be zero" / "repeat_interval cannot be zero", also on child routes
    _rejects(f"""
        route:
          receiver: console
          routes:
            - matchers: {{a: b}}
              {key}: 0s
        """, "am.yaml:6:", f"{key} cannot be zero")


def test_duplicate_group_by_label_is_rejected() -> None:
    # Alertmanager: "duplicated label %q in group_by"
    _rejects("""
        route:
          group_by: [alertname, agent, alertname]
        """, "am.yaml:3:", "duplicated label 'alertname' in group_by")


def test_invalid_group_by_label_is_rejected() -> None:
    # Alertmanager: group_by entries must be valid label names
    _rejects("""
        route:
          group_by: [alertname, 1bad]
        """, "am.yaml:3:", "invalid label name '1bad' in group_by")


def test_wildcard_group_by_mixed_with_labels_is_rejected() -> None:
    # Alertmanager: "cannot have wildcard group_by (`...`) and other other labels at the same time"
    _rejects("""
        route:
          group_by: ['...', alertname]
        """, "am.yaml:3:", "wildcard")
    assert _load("route: {group_by: ['...']}").route.group_by == ["..."]


def test_empty_receiver_name_is_rejected() -> None:
    # Alertmanager: "missing name in receiver"
    _rejects("""
        receivers:
          - name: ''
            console: {}
        """, "am.yaml:3:", "missing name in receiver")


def test_bad_equal_label_name_is_rejected() -> None:
    # Alertmanager: "invalid label name %q in equal list"
    _rejects("""
        inhibit_rules:
          - source_matchers: {severity: critical}
            target_matchers: {severity: warning}
            equal: [agent, 'not-a-label']
        """, "am.yaml:5:", "invalid label name 'not-a-label' in equal list")


def test_legacy_match_and_match_re_become_matchers() -> None:
    # Alertmanager: `match` is label equality, `match_re` an anchored regex (^(?:re)$); both are
    # ANDed with `matchers`
    cfg = _load("""
        route:
          receiver: console
          routes:
            - match: {team: db}
              match_re: {service: 'mysql|postgres'}
              matchers: ['env!="dev"']
        """)
    child = cfg.route.routes[0]
    assert sorted(str(m) for m in child.matchers) == ['env!="dev"', 'service=~"mysql|postgres"', 'team="db"']
    assert all(m.matches({"team": "db", "service": s, "env": "prod"}) for m in child.matchers for s in ["mysql"])
    regex = next(m for m in child.matchers if m.op == "=~")
    assert regex.matches({"service": "postgres"})
    assert not regex.matches({"service": "postgres-replica"})  # anchored


def test_legacy_source_and_target_match_in_inhibit_rules() -> None:
    # Alertmanager: inhibit rules take source_match/source_match_re and target_match/target_match_re
    cfg = _load("""
        inhibit_rules:
          - source_match: {severity: critical}
            target_match_re: {severity: 'warning|info'}
            equal: [agent]
        """)
    rule = cfg.inhibit_rules[0]
    assert [str(m) for m in rule.source_matchers] == ['severity="critical"']
    assert [str(m) for m in rule.target_matchers] == ['severity=~"warning|info"']


def test_legacy_match_re_uses_re2() -> None:
    # Alertmanager compiles match_re with Go's RE2: a backreference is a config error
    _rejects("""
        route:
          routes:
            - match_re: {a: '(x)\\1'}
        """, "am.yaml:", "invalid regular expression")


# --------------------------------------------------------------------------- receivers

PIPE = """
rules:
  - name: HighLatency
    type: threshold
    metric: lat
    aggregate: last
    window: 10m
    op: ">"
    value: 30
    severity: critical
"""


def _system(tmp_path: Path, receivers: str, receiver: str):  # type: ignore[no-untyped-def]
    cfg = parse_config(PIPE + textwrap.dedent(receivers) + f"route: {{receiver: {receiver}, group_wait: 0s, "
                       "group_interval: 1m, repeat_interval: 1h}\n", "am.yaml", env={})
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
    lines: list[str] = []
    return cfg, pa, clock, Notifier(pa, console_write=lines.append), lines


def test_blackhole_receiver_drops_silently_and_is_not_a_failure(tmp_path: Path) -> None:
    # Alertmanager: a receiver with no integration (`- name: devnull`) is valid and its
    # notifications go nowhere, without an error
    cfg, pa, clock, n, lines = _system(tmp_path, "receivers:\n  - name: devnull\n", "devnull")
    assert cfg.receiver("devnull").blackhole and cfg.receiver("devnull").kind == "blackhole"
    assert not any("devnull" in w for w in cfg.warnings)
    pa.record("lat", 50, {"agent": "a"})
    pa.evaluate()
    assert len(n.plan().created) == 1
    rep = n.deliver()
    assert (rep.delivered, rep.failed, rep.dead, rep.dropped, rep.errors) == (0, 0, 0, 1, [])
    assert lines == []
    assert [x.state for x in Outbox(pa.store).recent()] == ["dropped"]
    assert Outbox(pa.store).open_count() == 0


def test_receiver_with_two_integrations_is_still_rejected() -> None:
    _rejects("""
        receivers:
          - name: both
            console: {}
            file: {path: /tmp/x}
        """, "am.yaml:3:", "at most one")


@pytest.mark.parametrize("send_resolved, expected", [(True, ["firing", "resolved"]), (False, ["firing"])])
def test_receiver_send_resolved(tmp_path: Path, send_resolved: bool, expected: list[str]) -> None:
    # Alertmanager: webhook/discord configs send resolved notifications unless send_resolved: false
    sr = "" if send_resolved else "\n    send_resolved: false"
    cfg, pa, clock, n, lines = _system(tmp_path, f"receivers:\n  - name: r\n    console: {{}}{sr}\n", "r")
    assert cfg.receiver("r").send_resolved is send_resolved
    pa.record("lat", 50, {"agent": "a"})
    pa.evaluate()
    n.plan()
    n.deliver()
    clock.set(T0 + 20 * 60)  # no more data: the alert resolves
    pa.evaluate()
    n.plan()
    n.deliver()
    clock.set(T0 + 40 * 60)
    n.plan()
    n.deliver()
    states = []
    for x in reversed(Outbox(pa.store).recent()):
        alerts = x.body.get("alerts", [])
        states.append("firing" if any(a.get("state") == "firing" for a in alerts) else "resolved")
    assert states == expected


def test_webhook_receiver_posts_alertmanagers_webhook_payload(tmp_path: Path) -> None:
    # Alertmanager's webhook notifier (notify/webhook/webhook.go, template.Data): version "4",
    # groupKey, truncatedAlerts, status, receiver, groupLabels, commonLabels, commonAnnotations,
    # externalURL, and per alert status/labels/annotations/startsAt/endsAt/generatorURL/
    # fingerprint, endsAt being Go's zero time while the alert fires. A receiver written for
    # Alertmanager (what import-alertmanager maps webhook_configs to) must read it unchanged.
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from typing import Any

    got: list[dict[str, Any]] = []
    agents: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            agents.append(self.headers.get("User-Agent", ""))
            self.send_response(200)
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
        cfg, pa, clock, n, _ = _system(tmp_path, "global: {dashboard_url: 'http://dash.example:8080'}\n"
                                       f"receivers:\n  - name: am-hook\n    webhook: {{url: '{url}'}}\n", "am-hook")
        pa.record("lat", 50, {"agent": "a", "crew": "c"})
        pa.record("lat", 60, {"agent": "b", "crew": "c"})
        pa.evaluate()
        n.plan()
        assert n.deliver().delivered == 1
        clock.set(T0 + 20 * 60)  # no more data: both resolve
        pa.evaluate()
        n.plan()
        n.deliver()
        clock.set(T0 + 40 * 60)
        n.plan()
        n.deliver()
    finally:
        srv.shutdown()
        srv.server_close()
    firing, resolved = got[0], got[-1]
    assert agents and all(a.startswith("perf-alerts/") for a in agents)  # as Alertmanager/<version>
    for body in (firing, resolved):
        assert body["version"] == "4" and body["receiver"] == "am-hook" and body["truncatedAlerts"] == 0
        assert isinstance(body["groupKey"], str) and body["groupKey"]
        assert body["groupLabels"] == {"alertname": "HighLatency"}
        assert body["commonLabels"]["crew"] == "c" and "agent" not in body["commonLabels"]
        assert body["commonLabels"]["alertname"] == "HighLatency"
        assert isinstance(body["commonAnnotations"], dict) and body["externalURL"] == "http://dash.example:8080"
        assert sorted(a["labels"]["agent"] for a in body["alerts"]) == ["a", "b"]
        for a in body["alerts"]:
            assert set(a) >= {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert firing["status"] == "firing" and {a["status"] for a in firing["alerts"]} == {"firing"}
    assert {a["endsAt"] for a in firing["alerts"]} == {"0001-01-01T00:00:00Z"}
    assert resolved["status"] == "resolved" and {a["status"] for a in resolved["alerts"]} == {"resolved"}
    assert all(a["endsAt"] > a["startsAt"] for a in resolved["alerts"])
