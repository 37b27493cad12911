"""The notification pipeline end to end: routing, grouping, silences, inhibition,
escalation, outbox retries and dead letters, against a Discord-like server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fake_discord import FakeDiscord, fake_discord
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.discord.payload import RESOLVED_COLOR
from perf_alerts.notify.outbox import Outbox
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.notify.routing import match_routes
from perf_alerts.notify.silence import add_silence, expire_silence
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
    severity: critical
    annotations: {summary: "{{ labels.agent }} latency {{ value }}s"}
  - name: SlowTools
    type: threshold
    metric: tool
    aggregate: last
    window: 10m
    op: ">"
    value: 5
    severity: warning
"""


def config_text(oncall: str, ops: str, extra: str = "", group_wait: str = "0s") -> str:
    return RULES + textwrap.dedent(f"""
    receivers:
      - name: oncall
        discord: {{webhook_url: "{oncall}", mention_roles: ["111222333444555666"]}}
      - name: ops
        discord: {{webhook_url: "{ops}"}}
    route:
      receiver: ops
      group_by: [alertname]
      group_wait: {group_wait}
      group_interval: 5m
      repeat_interval: 1h
      routes:
        - matchers: {{severity: critical}}
          receiver: oncall
    delivery: {{max_attempts: 3, backoff_base: 10s, backoff_cap: 1m, cli_deadline: 5s}}
    """) + textwrap.dedent(extra)


def setup(tmp_path: Path, srv: FakeDiscord, extra: str = "", group_wait: str = "0s",
          store: Store | None = None) -> tuple[PerfAlerts, ManualClock, Notifier]:
    """A system on `store` (default: a SQLite file in tmp_path) delivering to the fake Discord."""
    cfg = parse_config(config_text(srv.url_for(1, "tok-oncall-secret"), srv.url_for(2, "tok-ops-secret"), extra, group_wait))
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, store if store is not None else Store(tmp_path / "s.db"), clock)
    return pa, clock, Notifier(pa)


def cycle(pa: PerfAlerts, clock: ManualClock, n: Notifier, minutes: float, samples: dict[tuple[str, str], float]) -> Any:
    clock.set(T0 + minutes * 60)
    for (metric, agent), v in samples.items():
        pa.record(metric, v, {"agent": agent})
    pa.evaluate()
    plan = n.plan()
    rep = n.deliver()
    return plan, rep


def embeds(srv: FakeDiscord, hook: int) -> list[dict[str, Any]]:
    return [e for m in srv.messages(hook) for e in m["embeds"]]


# --------------------------------------------------------------------------- routing


def test_route_tree_inheritance_and_continue() -> None:
    cfg = parse_config(textwrap.dedent("""
    receivers: [{name: a, console: {}}, {name: b, console: {}}, {name: c, console: {}}]
    route:
      receiver: a
      group_by: [alertname]
      group_wait: 1m
      routes:
        - matchers: {severity: critical}
          receiver: b
          continue: true
          group_by: [agent]
        - matchers: ['agent=~"re.*"']
          receiver: c
          routes:
            - matchers: {team: x}
              group_wait: 5s
    """))
    r = match_routes(cfg.route, {"severity": "critical", "agent": "researcher", "team": "x"})
    assert [(x.receiver, x.group_by, x.group_wait) for x in r] == [("b", ("agent",), 60.0), ("c", ("alertname",), 5.0)]
    assert [x.receiver for x in match_routes(cfg.route, {"severity": "info", "agent": "writer"})] == ["a"]


# --------------------------------------------------------------------------- delivery


def test_firing_then_resolved_edits_the_original_message(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        plan, rep = cycle(pa, clock, n, 0, {("lat", "researcher"): 50, ("tool", "writer"): 9})
        assert rep.delivered == 2 and rep.dead == 0
        crit = srv.messages(1)
        assert len(crit) == 1
        assert crit[0]["embeds"][0]["color"] != RESOLVED_COLOR
        assert "researcher latency 50s" in json.dumps(crit[0]["embeds"])
        # role mention only through allowed_mentions
        assert "<@&111222333444555666>" in crit[0]["content"]
        assert crit[0]["allowed_mentions"]["roles"] == ["111222333444555666"]
        assert len(srv.messages(2)) == 1  # the warning went to ops
        notif = Outbox(pa.store).recent()
        assert all(x.message_ids for x in notif)

        # recovery: the critical resolves; after group_interval the original message turns green
        cycle(pa, clock, n, 1, {("lat", "researcher"): 10})
        assert srv.stats.edits == 0  # group_interval (5m) not over yet
        plan, rep = cycle(pa, clock, n, 6, {("lat", "researcher"): 10})
        assert srv.stats.edits == 1
        assert len(srv.messages(1)) == 1  # edited, not re-posted
        edited = srv.messages(1)[0]
        assert edited["edited"] and edited["embeds"][0]["color"] == RESOLVED_COLOR
        assert "RESOLVED" in edited["embeds"][0]["title"].upper()


def test_group_wait_interval_and_repeat(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, group_wait="30s")
        cycle(pa, clock, n, 0, {("tool", "a"): 9})
        assert srv.messages(2) == []  # group_wait: collecting the burst
        cycle(pa, clock, n, 0.25, {("tool", "b"): 9})
        cycle(pa, clock, n, 0.5, {})
        msgs = srv.messages(2)
        assert len(msgs) == 1 and "[FIRING:2]" in json.dumps(msgs[0]["embeds"])
        cycle(pa, clock, n, 2, {("tool", "c"): 9})  # a new alert inside group_interval: held back
        assert len(srv.messages(2)) == 1
        cycle(pa, clock, n, 5.5, {("tool", "a"): 9, ("tool", "b"): 9, ("tool", "c"): 9})
        assert len(srv.messages(2)) == 2  # group_interval over: one update with all three
        cycle(pa, clock, n, 30, {("tool", "a"): 9, ("tool", "b"): 9, ("tool", "c"): 9})
        assert len(srv.messages(2)) == 2  # unchanged: nothing before repeat_interval
        cycle(pa, clock, n, 66, {("tool", "a"): 9, ("tool", "b"): 9, ("tool", "c"): 9})
        assert len(srv.messages(2)) == 3  # repeat_interval (1h) after the last send


def test_silence_mutes_until_expired(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        sil = add_silence(pa.store, {"agent": "a"}, T0, T0 + 3600, "alice", "deploy", T0)
        plan, _ = cycle(pa, clock, n, 0, {("tool", "a"): 9, ("tool", "b"): 9})
        assert plan.silenced == 1
        text = json.dumps(srv.messages(2))
        assert "agent=b" in text.replace("`", "").replace(" ", "") or '"b"' in text
        assert "agent=a" not in text.replace("`", "").replace(" ", "")
        expire_silence(pa.store, sil.id, T0 + 600)
        cycle(pa, clock, n, 10, {("tool", "a"): 9, ("tool", "b"): 9})
        assert len(srv.messages(2)) == 2  # now announced


def test_inhibition(tmp_path: Path) -> None:
    extra = """
    inhibit_rules:
      - source_matchers: {severity: critical}
        target_matchers: {severity: warning}
        equal: [agent]
    """
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, extra)
        plan, _ = cycle(pa, clock, n, 0, {("lat", "a"): 50, ("tool", "a"): 9, ("tool", "b"): 9})
        assert plan.inhibited == 1
        ops = json.dumps(srv.messages(2))
        assert len(srv.messages(1)) == 1
        assert "SlowTools" in ops and ops.count("fp ") == 1  # only agent b's warning


def test_escalation_levels_and_ack_stops_it(tmp_path: Path) -> None:
    extra = """
    escalations:
      - name: crit
        matchers: {severity: critical}
        levels:
          - {after: 15m, receivers: [oncall], mention_roles: ["999888777666555444"]}
          - {after: 45m, receivers: [oncall, ops]}
        repeat_interval: 1h
    """
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, extra)
        cycle(pa, clock, n, 0, {("lat", "a"): 50})
        assert len(srv.messages(1)) == 1
        cycle(pa, clock, n, 14, {("lat", "a"): 50})
        assert len(srv.messages(1)) == 1
        plan, _ = cycle(pa, clock, n, 15, {("lat", "a"): 50})
        assert plan.escalations == 1
        esc = srv.messages(1)[-1]
        assert "Escalation" in json.dumps(esc["embeds"]) and "<@&999888777666555444>" in esc["content"]
        assert "999888777666555444" in esc["allowed_mentions"]["roles"]
        assert pa.alerts()[0].escalation_level == 1
        cycle(pa, clock, n, 45, {("lat", "a"): 50})
        assert pa.alerts()[0].escalation_level == 2
        assert "Escalation" in json.dumps(srv.messages(2)[-1]["embeds"])  # level 2 also tells ops
        pa.ack(pa.alerts()[0].fingerprint, by="bob")
        before = (len(srv.messages(1)), len(srv.messages(2)))
        cycle(pa, clock, n, 110, {("lat", "a"): 50})  # past repeat_interval, but acknowledged
        assert (len(srv.messages(1)), len(srv.messages(2))) == before


def test_escalation_repeats_while_unacknowledged(tmp_path: Path) -> None:
    extra = """
    escalations:
      - name: crit
        levels: [{after: 10m, receivers: [oncall]}]
        repeat_interval: 30m
    """
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, extra)
        for m in (0, 10, 20, 39, 40, 70):
            cycle(pa, clock, n, m, {("lat", "a"): 50})
        escalations = [m for m in srv.messages(1) if "Escalation" in json.dumps(m["embeds"])]
        assert len(escalations) == 3  # at 10, 40 and 70 minutes


# --------------------------------------------------------------------------- outbox


def test_5xx_retried_with_backoff_then_delivered(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        srv.fail_next(1, 503)
        plan, rep = cycle(pa, clock, n, 0, {("lat", "a"): 50})
        assert rep.failed == 1 and srv.messages(1) == []
        [x] = Outbox(pa.store).recent("failed")
        assert x.attempts == 1 and "503" in (x.last_error or "")
        assert T0 + 5 <= x.next_attempt_at <= T0 + 10  # base 10s, full jitter, at least half the base
        assert n.deliver(T0 + 1).delivered == 0  # not due yet
        rep = n.deliver(x.next_attempt_at)
        assert rep.delivered == 1 and len(srv.messages(1)) == 1


def test_dead_letter_after_retry_budget(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        srv.fail_next(10, 500)
        cycle(pa, clock, n, 0, {("lat", "a"): 50})
        for _ in range(5):
            nxt = Outbox(pa.store).next_due_at()
            if nxt is None:
                break
            n.deliver(nxt)
        [dead] = Outbox(pa.store).recent("dead")
        assert dead.attempts == 3 and "gave up after 3 attempts" in (dead.last_error or "")
        assert srv.messages(1) == []


def test_404_disables_receiver_loudly_and_never_leaks_the_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        srv.disappear(1)
        plan, rep = cycle(pa, clock, n, 0, {("lat", "a"): 50, ("tool", "b"): 9})
        assert rep.disabled_receivers == ["oncall"]
        assert n.disabled_receivers().keys() == {"oncall"}
        assert len(srv.messages(2)) == 1  # ops still works
        requests_after = srv.stats.requests
        cycle(pa, clock, n, 3, {("lat", "c"): 50, ("tool", "b"): 9})  # a new critical: not sent to the dead webhook
        assert srv.stats.requests == requests_after
        dead = Outbox(pa.store).recent("dead")
        assert dead and all("disabled" in (d.last_error or "") for d in dead)
        everything = caplog.text + json.dumps([d.to_dict() for d in Outbox(pa.store).recent()])
        assert "tok-oncall-secret" not in everything and "tok-ops-secret" not in everything
        assert "oncall disabled" in caplog.text


def test_storm_is_batched_into_few_requests(tmp_path: Path) -> None:
    with fake_discord(limit=5, per_seconds=2.0) as srv:
        pa, clock, n = setup(tmp_path, srv)
        pa.config.route.group_by = ["agent"]
        samples = {("tool", f"agent{i:02d}"): 9.0 for i in range(30)}
        samples.update({("tool", f"agent{i:02d}x{j}"): 9.0 for i in range(30) for j in range(5)})
        # 180 alerts; group by agent label → 180 groups; one webhook
        plan, rep = cycle(pa, clock, n, 0, samples)
        assert rep.delivered == len(plan.created)
        assert srv.stats.requests <= 20 and srv.stats.rejected == 0 and srv.stats.inside_wait == 0
        msgs = srv.messages(2)
        visible = json.dumps([m["embeds"] for m in msgs]) + "".join(
            a["data"].decode("utf-8", "replace") for m in msgs for a in m["attachments"])
        fps = {a.fingerprint for a in pa.alerts()}
        assert len(fps) == 180
        assert [fp for fp in fps if fp not in visible] == []  # every alert is in an embed or an attached list
        for m in Outbox(pa.store).recent(limit=1000):
            assert m.state == "delivered"


def test_missing_webhook_env_falls_back_to_console_with_warning(tmp_path: Path) -> None:
    text = RULES + textwrap.dedent("""
    receivers:
      - name: oncall
        discord: {webhook_url: "${PA_TEST_UNSET_HOOK}"}
    route: {receiver: oncall, group_wait: 0s}
    """)
    cfg = parse_config(text, env={})
    assert cfg.receiver("oncall").kind == "console"
    assert any("no Discord webhook URL" in w for w in cfg.warnings)
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
    lines: list[str] = []
    n = Notifier(pa, console_write=lines.append)
    pa.record("lat", 50, {"agent": "a"})
    pa.evaluate()
    n.plan()
    assert n.deliver().delivered == 1
    assert "HighLatency" in lines[0] and "a latency 50s" in lines[0]


def test_adhoc_message_routes_and_delivers(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        ids = n.enqueue_message("Deploy finished", "crew v2 is live", "info")
        assert n.deliver().delivered == len(ids) == 1
        assert "Deploy finished" in json.dumps(srv.messages(2))


def test_announced_alert_muted_then_resolved_still_gets_its_resolution(tmp_path: Path) -> None:
    extra = """
    inhibit_rules:
      - source_matchers: {severity: critical}
        target_matchers: {severity: warning}
        equal: [agent]
    """
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, extra)
        cycle(pa, clock, n, 0, {("tool", "a"): 9})  # warning announced to ops
        assert len(srv.messages(2)) == 1
        cycle(pa, clock, n, 1, {("tool", "a"): 9, ("lat", "a"): 50})  # a critical on the same agent mutes it
        cycle(pa, clock, n, 2, {("lat", "a"): 50})  # the warning's data stops: it resolves while muted
        cycle(pa, clock, n, 20, {("lat", "a"): 50})
        ops = srv.messages(2)
        assert ops[0]["edited"] and ops[0]["embeds"][0]["color"] == RESOLVED_COLOR  # its message turned green


def test_gap_escalates_through_every_level(tmp_path: Path) -> None:
    extra = """
    escalations:
      - name: crit
        levels:
          - {after: 15m, receivers: [oncall]}
          - {after: 45m, receivers: [ops]}
    """
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, extra)
        cycle(pa, clock, n, 0, {("lat", "a"): 50})
        plan, _ = cycle(pa, clock, n, 50, {("lat", "a"): 50})  # the process was down: both levels now due
        assert plan.escalations == 2
        assert "level 1" in json.dumps(srv.messages(1)[-1]["embeds"])  # level 1's people are still told
        assert "level 2" in json.dumps(srv.messages(2)[-1]["embeds"])


def test_alerts_of_a_removed_rule_resolve(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        cycle(pa, clock, n, 0, {("tool", "a"): 9})
        pa.config.rules = [r for r in pa.config.rules if r.name != "SlowTools"]
        clock.set(T0 + 600)
        res = pa.evaluate()
        assert [(t.alert.rule, t.event) for t in res.transitions] == [("SlowTools", "resolved")]
        assert [e["detail"] for e in pa.store.events() if e["event"] == "resolved"] == ["rule removed from the configuration"]
        n.plan()
        n.deliver()
        assert srv.messages(2)[0]["embeds"][0]["color"] == RESOLVED_COLOR


def test_shipped_config_routes_by_severity_and_falls_back_to_the_console() -> None:
    from perf_alerts.config import load_config, packaged_config_dir

    env = {"DISCORD_WEBHOOK_CRITICAL": "https://discord.com/api/webhooks/1/a", "DISCORD_WEBHOOK_OPS":
           "https://discord.com/api/webhooks/2/b", "DISCORD_WEBHOOK_LEADERSHIP": "https://discord.com/api/webhooks/3/c"}
    cfg = load_config(packaged_config_dir() / "alerting.yaml", env=env)
    assert not [w for w in cfg.warnings if "webhook" in w.lower()]
    where = {lab: [r.receiver for r in match_routes(cfg.route, dict(lab))] for lab in (
        (("severity", "critical"),), (("severity", "warning"),), (("severity", "info"),),
        (("kind", "executive_summary"), ("severity", "info")))}
    assert where == {(("severity", "critical"),): ["oncall"], (("severity", "warning"),): ["ops"],
                     (("severity", "info"),): ["ops"], (("kind", "executive_summary"), ("severity", "info")): ["leadership"]}
    assert {r.name: r.kind for r in cfg.receivers if r.name != "console"} == {
        "oncall": "discord", "ops": "discord", "leadership": "discord"}
    # one shared variable serves all three channels
    shared = load_config(packaged_config_dir() / "alerting.yaml", env={"DISCORD_WEBHOOK_URL": env["DISCORD_WEBHOOK_OPS"]})
    assert {r.kind for r in shared.receivers} == {"discord", "console"}
    # without the variables each receiver prints to the console, and says so at start-up
    bare = load_config(packaged_config_dir() / "alerting.yaml", env={})
    assert {r.name: r.kind for r in bare.receivers if r.name != "console"} == {
        "oncall": "console", "ops": "console", "leadership": "console"}
    assert sum("no Discord webhook URL" in w for w in bare.warnings) == 3
