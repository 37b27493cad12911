"""`perf-alerts import-alertmanager` (issue 16, item 3): an Alertmanager configuration converted
into perf-alerts config that loads, and routes every label set to the same receivers as
Alertmanager would.

"Routes identically" is checked against a reference walk of the ORIGINAL Alertmanager tree
written here from Alertmanager's dispatch/route.go (`NewRoute`: receiver, group_by and timers
inherited, mute/active_time_intervals not; `Match`: depth-first, a child that matches stops the
search unless it says `continue`, a node without matching children is itself the match), with
its own small matcher evaluation. For every label set, the targets of that walk — each
Alertmanager receiver expanded into its Discord/webhook integrations, in order — must equal
what perf-alerts' `match_routes` gives on the converted config: receiver, group_by, group_wait,
group_interval, repeat_interval, mute and active time intervals.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pytest
import yaml

from perf_alerts.amimport import ImportResult, convert_alertmanager, convert_alertmanager_file
from perf_alerts.config import Config, ConfigError, Route, parse_config
from perf_alerts.notify.routing import match_routes
from perf_alerts.timeutil import parse_duration

DATA = Path(__file__).parent / "data" / "alertmanager"
FULL = DATA / "full.yml"

# every secret written in full.yml: none may appear in the output or the report
FULL_SECRETS = ("global-token-not-to-be-copied", "platform-secret-token", "audit-secret", "oncall-secret-token",
                "pd-secret-routing-key", "basic-secret-password", "finance-secret-key", "telegram-secret",
                "hooks.slack.com", "webhooks/111", "webhooks/222")


# --------------------------------------------------------------------------- the reference walk


@dataclass(frozen=True)
class Target:
    receiver: str  # Alertmanager receiver name
    integration: str  # "discord#0", "webhook#1", or "blackhole"
    group_by: str  # "..." or the sorted labels joined by ","
    group_wait: float
    group_interval: float
    repeat_interval: float
    mute: tuple[str, ...]
    active: tuple[str, ...]


_MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


def _am_matchers(node: dict[str, Any], key: str = "matchers", match: str = "match",
                 match_re: str = "match_re") -> list[tuple[str, str, str]]:
    out = [(str(k), "=", _text(v)) for k, v in (node.get(match) or {}).items()]
    out += [(str(k), "=~", _text(v)) for k, v in (node.get(match_re) or {}).items()]
    for s in node.get(key) or []:
        m = _MATCHER_RE.match(s)
        assert m, f"the reference parser takes quoted matchers only: {s!r}"
        out.append((m.group(1), m.group(2), m.group(3).replace('\\"', '"').replace("\\\\", "\\")))
    return out


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _hit(matchers: Iterable[tuple[str, str, str]], labels: dict[str, str]) -> bool:
    for label, op, value in matchers:
        actual = labels.get(label, "")  # Alertmanager: an absent label is the empty string
        ok = {"=": actual == value, "!=": actual != value}.get(op)
        if ok is None:
            ok = re.fullmatch(value, actual) is not None  # anchored as ^(?:value)$
            ok = ok if op == "=~" else not ok
        if not ok:
            return False
    return True


def _integrations(receiver: dict[str, Any]) -> list[str]:
    out = []
    for key, value in receiver.items():
        if key in ("discord_configs", "webhook_configs"):
            out += [f"{key.split('_')[0]}#{i}" for i in range(len(value or []))]
    return out or ["blackhole"]


def am_targets(am: dict[str, Any], labels: dict[str, str]) -> list[Target]:
    """dispatch/route.go, NewRoute + Match, over the original Alertmanager data."""
    receivers = {r["name"]: _integrations(r) for r in am["receivers"]}
    root_defaults = {"receiver": None, "group_by": "", "group_wait": 30.0, "group_interval": 300.0,
                     "repeat_interval": 4 * 3600.0}

    def opts(node: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
        o = dict(parent)
        if node.get("receiver"):
            o["receiver"] = node["receiver"]
        gb = node.get("group_by") or []
        if gb:  # `group_by: []` is read as absent: inherited
            o["group_by"] = "..." if gb == ["..."] else ",".join(sorted(gb))
        for k in ("group_wait", "group_interval", "repeat_interval"):
            if node.get(k) is not None:
                o[k] = parse_duration(str(node[k]))
        o["mute"] = tuple(node.get("mute_time_intervals") or ())  # not inherited
        o["active"] = tuple(node.get("active_time_intervals") or ())
        return o

    def match(node: dict[str, Any], parent: dict[str, Any]) -> list[dict[str, Any]] | None:
        if not _hit(_am_matchers(node), labels):
            return None
        me = opts(node, parent)
        found: list[dict[str, Any]] = []
        for child in node.get("routes") or []:
            got = match(child, me)
            if got is not None:
                found += got
                if not child.get("continue"):
                    break
        return found or [me]

    out = []
    for o in match(am["route"], root_defaults) or []:
        for integ in receivers[o["receiver"]]:
            out.append(Target(o["receiver"], integ, o["group_by"], o["group_wait"], o["group_interval"],
                              o["repeat_interval"], o["mute"], o["active"]))
    return out


def _node(root: Route, node_id: str) -> Route:
    node = root
    for i in node_id.split(".")[1:]:
        node = node.routes[int(i)]
    return node


def pa_targets(cfg: Config, result: ImportResult, labels: dict[str, str]) -> list[Target]:
    """perf-alerts' own routing (notify/routing.match_routes) on the converted config."""
    owner = {part: (am, i) for am, parts in result.receiver_parts.items() for i, part in enumerate(parts)}
    out = []
    for r in match_routes(cfg.route, labels):
        am_name, _ = owner[r.receiver]
        rc = cfg.receiver(r.receiver)
        kind = rc.kind if rc.blackhole else ("discord" if rc.discord is not None else "webhook")
        same_kind = [p for p in result.receiver_parts[am_name] if (cfg.receiver(p).discord is not None) == (kind == "discord")]
        integ = "blackhole" if kind == "blackhole" else f"{kind}#{same_kind.index(r.receiver)}"
        node = _node(cfg.route, r.id)
        gb = "..." if "..." in r.group_by else ",".join(sorted(r.group_by))
        out.append(Target(am_name, integ, gb, r.group_wait, r.group_interval, r.repeat_interval,
                          tuple(node.mute_time_intervals), tuple(node.active_time_intervals)))
    return out


def _converted(result: ImportResult) -> Config:
    return parse_config(result.text, "converted.yaml", env={})


def _am_data(path_or_text: Path | str) -> dict[str, Any]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _label_sets(universe: dict[str, list[str]], limit: int | None = None, seed: int = 16) -> list[dict[str, str]]:
    keys = sorted(universe)
    combos = list(itertools.product(*[universe[k] for k in keys]))
    if limit is not None and len(combos) > limit:
        combos = random.Random(seed).sample(combos, limit)
    return [{k: v for k, v in zip(keys, c) if v != ""} for c in combos]


def _assert_same_routing(am: dict[str, Any], result: ImportResult, label_sets: list[dict[str, str]]) -> int:
    cfg = _converted(result)
    checked = 0
    for labels in label_sets:
        want = am_targets(am, labels)
        got = pa_targets(cfg, result, labels)
        assert got == want, f"labels {labels}:\n  Alertmanager: {want}\n  perf-alerts:  {got}"
        checked += 1
    return checked


# --------------------------------------------------------------------------- the realistic configuration

FULL_UNIVERSE = {
    "alertname": ["Watchdog", "CostSpike", "AgentDown", "HighLatency", ""],
    "service": ["researcher", "writer", "reviewer", "database", "other", ""],
    "severity": ["critical", "warning", "info", "page", ""],
    "env": ["staging", "dev", "test", "prod", ""],
    "code": ["500", "404", ""],
    "owner": ["team-x", "team-y", ""],
    "team": ["ml", "finance", ""],
}


@pytest.fixture(scope="module")
def full() -> ImportResult:
    return convert_alertmanager_file(FULL)


def test_full_config_routes_every_label_set_as_alertmanager(full: ImportResult) -> None:
    # all 81,000 combinations of the labels full.yml's matchers look at (absent included)
    checked = _assert_same_routing(_am_data(FULL), full, _label_sets(FULL_UNIVERSE))
    assert checked == 5 * 6 * 5 * 5 * 3 * 3 * 3


def test_full_config_spot_checks(full: ImportResult) -> None:
    """A few routes read by a person, so the reference walk is not the only judge."""
    cfg = _converted(full)

    def receivers(**labels: str) -> list[str]:
        return [r.receiver for r in match_routes(cfg.route, labels)]

    # a critical researcher alert: the audit archive (continue), then 'oncall's two integrations
    assert receivers(alertname="HighLatency", service="researcher", severity="critical") == [
        "audit", "oncall-discord", "oncall-webhook"]
    # in staging, the route below 'oncall' goes back to the agents' Discord (muted off hours)
    routes = match_routes(cfg.route, {"alertname": "X", "service": "writer", "severity": "critical", "env": "staging"})
    assert [r.receiver for r in routes] == ["audit", "agents"]
    assert _node(cfg.route, routes[1].id).mute_time_intervals == ["offhours"]
    # the watchdog goes to the blackhole; without an alertname, the audit route does not match ('.+')
    assert receivers(alertname="Watchdog") == ["audit", "devnull"]
    assert receivers(service="other") == ["platform"]
    # cost alerts of a team: finance (continue) then the ml catch-all; group_by [] on 'ml' inherits the root's
    routes = match_routes(cfg.route, {"alertname": "CostSpike", "team": "ml"})
    assert [r.receiver for r in routes] == ["audit", "finance", "ml"]
    assert routes[2].group_by == ("alertname", "cluster") and routes[1].group_interval == 3600.0


def test_full_config_receivers(full: ImportResult) -> None:
    cfg = _converted(full)
    assert full.receiver_parts["oncall"] == ["oncall-discord", "oncall-webhook"]
    platform = cfg.receiver("platform")
    assert platform.discord is not None and platform.discord.username == "alertmanager" and platform.send_resolved
    agents = cfg.receiver("agents")  # discord (send_resolved: false) + email: the email dropped
    assert agents.discord is not None and agents.send_resolved is False
    pager = cfg.receiver("oncall-webhook")
    assert pager.webhook is not None and pager.webhook.timeout == 15.0 and pager.send_resolved is False
    for name in ("devnull", "db-team", "team-x-mails"):  # no (supported) integration: blackholes
        assert cfg.receiver(name).blackhole, name
    # secrets as environment references, resolved by perf-alerts at load time
    env = {"DISCORD_WEBHOOK_PLATFORM": "https://discord.com/api/webhooks/9/tok",
           "WEBHOOK_URL_FINANCE": "https://finance.example.org/alerts",
           "WEBHOOK_HEADER_FINANCE_X_API_KEY": "k3y", "WEBHOOK_TOKEN_ONCALL": "t0k",
           "WEBHOOK_BASIC_AUTH_ERRORS": "YW06cHc="}
    loaded = parse_config(full.text, "converted.yaml", env=env)
    assert loaded.receiver("platform").discord.webhook_url == env["DISCORD_WEBHOOK_PLATFORM"]  # type: ignore[union-attr]
    assert loaded.receiver("finance").webhook.headers == {"X-Team": "finance", "X-Api-Key": "k3y"}  # type: ignore[union-attr]
    assert loaded.receiver("oncall-webhook").webhook.headers == {"Authorization": "Bearer t0k"}  # type: ignore[union-attr]
    assert loaded.receiver("errors").webhook.headers == {"Authorization": "Basic YW06cHc="}  # type: ignore[union-attr]
    # webhooks without their own http_config get global.http_config's authorization, as in Alertmanager
    assert loaded.receiver("audit").webhook.headers["Authorization"].startswith("Bearer ")  # type: ignore[union-attr]
    assert not [w for w in loaded.warnings if "written in the file" in w]  # no literal secret left


def test_full_config_inhibit_rules_and_time_intervals(full: ImportResult) -> None:
    cfg = _converted(full)
    first, second = cfg.inhibit_rules
    assert [str(m) for m in first.source_matchers] == ['severity="critical"']
    assert first.equal == ["alertname", "cluster"]
    # legacy source_match / target_match_re: equality and anchored regexes
    assert [str(m) for m in second.source_matchers] == ['alertname="AgentDown"']
    assert [str(m) for m in second.target_matchers] == ['alertname=~"Agent.+"', 'service=~"researcher|writer"']
    names = [t.name for t in cfg.time_intervals]
    assert sorted(names) == ["business-hours", "maintenance", "offhours"]  # the deprecated spelling joined them
    data = {t["name"]: t for t in full.data["time_intervals"]}
    # unquoted 17:30, 1:3 and 2026:2027 are text, as Alertmanager (Go's YAML) reads them, not base-60 numbers
    assert data["business-hours"]["time_intervals"][0]["times"] == [{"start_time": "09:00", "end_time": "17:30"}]
    assert data["maintenance"]["time_intervals"][0]["days_of_month"] == ["1:3", "-1"]
    assert data["maintenance"]["time_intervals"][0]["years"] == ["2026:2027"]


def test_no_secret_reaches_the_output_or_the_report(full: ImportResult) -> None:
    everything = full.text + "\n".join(n.text for n in full.notes)
    for secret in FULL_SECRETS:
        assert secret not in everything, secret
    # and every variable to set is named once, in the report and in the file's header
    assert full.env_vars == sorted(set(full.env_vars), key=full.env_vars.index)
    for var in full.env_vars:
        assert f"${{{var}}}" in full.text and f"#   set {var} " in full.text


def test_unsupported_parts_are_reported_one_per_line(full: ImportResult) -> None:
    unsupported = [n.text for n in full.notes if n.kind == "unsupported"]
    for line in ("receiver 'agents': email_configs not supported; dropped",
                 "receiver 'oncall': pagerduty_configs not supported; dropped",
                 "receiver 'db-team': slack_configs not supported; dropped (2 configs)",
                 "receiver 'team-x-mails': email_configs not supported; dropped",
                 "receiver 'ml': telegram_configs not supported; dropped",
                 "receiver 'ml': msteams_configs not supported; dropped",
                 "global.slack_api_url: ignored (it configures an integration perf-alerts does not support)"):
        assert line in unsupported, line
    assert any("templates: not supported" in u for u in unsupported)
    assert any("max_alerts: 50 not supported" in u for u in unsupported)
    assert any("tls_config not supported" in u for u in unsupported)
    assert any(".title not supported" in u for u in unsupported)
    notes = [n.text for n in full.notes if n.kind == "note"]
    assert any(n.startswith("global.resolve_timeout: not applicable") for n in notes)
    assert any("receiver 'db-team' has no supported integration left: it is a blackhole" in n for n in notes)
    assert all("\n" not in n.text for n in full.notes)


# --------------------------------------------------------------------------- the documentation's shapes


def test_simple_example_shape_routes_as_alertmanager() -> None:
    """doc/examples/simple.yml's shape: legacy match/match_re (with ^…$ anchors), email/PagerDuty only."""
    result = convert_alertmanager_file(DATA / "simple.yml")
    universe = {"service": ["search", "index", "crawl", "billing", "database", "searchx", ""],
                "severity": ["critical", "warning", ""], "owner": ["search", "billing", "other", ""]}
    _assert_same_routing(_am_data(DATA / "simple.yml"), result, _label_sets(universe))
    cfg = _converted(result)
    assert all(r.blackhole for r in cfg.receivers if r.name != "console")  # nothing perf-alerts can send to
    assert cfg.route.group_by == ["alertname", "cluster", "service"]
    assert [str(m) for m in cfg.inhibit_rules[0].target_matchers] == ['severity="warning"']


def test_configuration_docs_shapes_route_as_alertmanager() -> None:
    """The configuration documentation's shapes: new matcher syntax, group_by [...], continue on a
    route whose receiver has several integrations (guard routes), time intervals with every field."""
    result = convert_alertmanager_file(DATA / "docs.yml")
    universe = {"service": ["foo1", "foo2", "baz", "files", "database", "other", ""],
                "severity": ["critical", "warning", ""], "owner": ["team-X", "team-Y", ""],
                "alertname": ["Heartbeat", "Other", ""], "env": ["dev", ""]}
    _assert_same_routing(_am_data(DATA / "docs.yml"), result, _label_sets(universe))
    cfg = _converted(result)
    assert cfg.route.group_by == ["..."]
    assert result.receiver_parts["team-DB-pager"] == ["team-DB-pager-discord-1", "team-DB-pager-discord-2"]
    assert cfg.receiver("team-DB-pager-discord-2").send_resolved is False
    offhours = next(t for t in cfg.time_intervals if t.name == "offhours")
    assert offhours.time_intervals[0].location == "Europe/Berlin"


# --------------------------------------------------------------------------- random trees


def _random_am_config(rng: random.Random) -> str:
    """A random but valid Alertmanager config over labels a, b, c: nested routes, continue, legacy and
    new matchers, regexes, receivers with zero to three integrations."""
    receivers = []
    for i in range(4):
        r: dict[str, Any] = {"name": f"r{i}"}
        kinds = [rng.choice(["discord", "webhook"]) for _ in range(rng.choice([0, 1, 2, 2, 3]))]
        for k in kinds:
            key = f"{k}_configs"
            conf = ({"webhook_url": f"https://discord.com/api/webhooks/{i}/t"} if k == "discord"
                    else {"url": f"https://hooks.example.org/{i}"})
            r.setdefault(key, []).append(conf)
        receivers.append(r)

    def matchers() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(rng.choice([0, 1, 1, 2])):
            label, form = rng.choice("abc"), rng.choice(["new", "new", "match", "match_re"])
            value = rng.choice(["x", "y", ""]) if form != "match_re" else rng.choice(["x|y", "x", ".*", "y?"])
            if form == "new":
                op = rng.choice(["=", "!=", "=~", "!~"])
                value = value if op in ("=", "!=") else rng.choice(["x|y", "x", ".+", ""])
                out.setdefault("matchers", []).append(f'{label}{op}"{value}"')
            else:
                out.setdefault(form, {})[label] = value
        return out

    def route(depth: int) -> dict[str, Any]:
        node: dict[str, Any] = matchers()
        if rng.random() < 0.6:
            node["receiver"] = f"r{rng.randrange(4)}"
        if rng.random() < 0.4:
            node["continue"] = True
        if rng.random() < 0.2:
            node["group_by"] = rng.choice([["a"], ["..."], [], ["b", "c"]])
        if rng.random() < 0.2:
            node["repeat_interval"] = rng.choice(["1h", "30m"])
        if depth < 3 and rng.random() < 0.7:
            node["routes"] = [route(depth + 1) for _ in range(rng.randint(1, 3))]
        return node

    root = {"receiver": f"r{rng.randrange(4)}", "routes": [route(1) for _ in range(rng.randint(1, 4))]}
    return yaml.safe_dump({"route": root, "receivers": receivers}, sort_keys=False)


def test_random_route_trees_route_as_alertmanager() -> None:
    """100 random trees × all 27 label sets: the split-receiver catch-alls and their guard routes
    give exactly Alertmanager's receivers, whatever the continue children."""
    rng = random.Random(1616)
    universe = {k: ["x", "y", ""] for k in "abc"}
    label_sets = _label_sets(universe)
    guards = 0
    for _ in range(100):
        text = _random_am_config(rng)
        result = convert_alertmanager(text, "random.yml")
        guards += sum("guard route" in n.text for n in result.notes)
        try:
            _assert_same_routing(yaml.safe_load(text), result, label_sets)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- Alertmanager config:\n{text}\n--- converted:\n{result.text}") from None
    assert guards > 10  # the guard construction was exercised, not only plain trees


# --------------------------------------------------------------------------- Alertmanager's semantics, one by one


def _convert(body: str, receivers: str = "") -> ImportResult:  # noqa: D103
    return convert_alertmanager(textwrap.dedent(body) + receivers, "am.yml")


RECEIVERS = """
receivers:
  - name: a
    webhook_configs: [{url: 'http://a.example.org/'}]
  - name: b
    webhook_configs: [{url: 'http://b.example.org/'}]
"""


def test_root_without_group_by_groups_everything_together() -> None:
    # dispatch/route.go DefaultRouteOpts: GroupBy is empty (perf-alerts' own default is [alertname])
    cfg = _converted(_convert("route: {receiver: a}\n", RECEIVERS))
    r = match_routes(cfg.route, {"alertname": "X", "x": "1"})[0]
    assert r.group_by == () and r.group_labels({"alertname": "X"}) == {}
    assert (r.group_wait, r.group_interval, r.repeat_interval) == (30.0, 300.0, 4 * 3600.0)


def test_child_group_by_empty_list_inherits() -> None:
    # config.go: group_by: [] leaves GroupBy nil, and NewRoute keeps the parent's grouping
    cfg = _converted(_convert("""
        route:
          receiver: a
          group_by: [alertname]
          routes: [{matchers: ['x="1"'], group_by: []}]
        """, RECEIVERS))
    assert match_routes(cfg.route, {"x": "1"})[0].group_by == ("alertname",)


def test_legacy_match_value_is_the_text_written() -> None:
    # Go's YAML decodes `code: 500` into the string "500" for a map[string]string
    cfg = _converted(_convert("""
        route:
          receiver: a
          routes: [{match: {code: 500, ok: yes}, receiver: b}]
        """, RECEIVERS))
    assert [r.receiver for r in match_routes(cfg.route, {"code": "500", "ok": "yes"})] == ["b"]


def test_a_receiver_used_only_as_inherited_is_split_at_every_target() -> None:
    # the root's receiver has two integrations; the child inherits it and both are notified
    result = _convert("""
        route:
          receiver: both
          routes: [{matchers: ['x="1"'], group_wait: 1s}]
        receivers:
          - name: both
            discord_configs: [{webhook_url: 'https://discord.com/api/webhooks/1/t'}]
            webhook_configs: [{url: 'http://b.example.org/'}]
        """)
    cfg = _converted(result)
    assert [(r.receiver, r.group_wait) for r in match_routes(cfg.route, {"x": "1"})] == [
        ("both-discord", 1.0), ("both-webhook", 1.0)]
    assert [r.receiver for r in match_routes(cfg.route, {})] == ["both-discord", "both-webhook"]


def test_catch_alls_copy_the_routes_time_intervals() -> None:
    # mute/active_time_intervals are not inherited (dispatch/route.go): the catch-alls carry the node's own
    result = _convert("""
        route:
          receiver: a
          routes: [{matchers: ['x="1"'], receiver: both, mute_time_intervals: [night]}]
        time_intervals:
          - name: night
            time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]
        receivers:
          - name: a
          - name: both
            webhook_configs: [{url: 'http://a.example.org/'}, {url: 'http://b.example.org/'}]
        """)
    cfg = _converted(result)
    routes = match_routes(cfg.route, {"x": "1"})
    assert [r.receiver for r in routes] == ["both-webhook-1", "both-webhook-2"]
    assert all(_node(cfg.route, r.id).mute_time_intervals == ["night"] for r in routes)


# --------------------------------------------------------------------------- errors: one line, file:line


@pytest.mark.parametrize("body, needle", [
    ("route: {receiver: a\n", "am.yml:2:1: invalid YAML"),
    ("- just\n- a list\n", "am.yml:1: not an Alertmanager configuration"),
    ("rules: []\nreceivers: []\n", "no route: section (it has rules: a perf-alerts config?)"),
    ("route: {receiver: nope}\n" + RECEIVERS, "am.yml:1: route.receiver: undefined receiver 'nope' used in route"),
    ("route:\n  receiver: a\n  routes:\n    - matchers: ['x=~\"(\"']\n" + RECEIVERS, "am.yml:4: route.routes[0].matchers[0]"),
    ("route:\n  receiver: a\n  group_wait: 5 minutes\n" + RECEIVERS, "am.yml:3: route.group_wait: invalid duration"),
    ("route:\n  receiver: a\n  matchers: ['x=\"1\"']\n" + RECEIVERS, "root route must not have any matchers"),
    ("route:\n  receiver: a\n  continue: true\n" + RECEIVERS, "am.yml:3: route.continue: cannot have continue"),
    ("route:\n  receiver: a\n  routes: [{mute_time_intervals: [nope]}]\n" + RECEIVERS, "undefined time interval 'nope'"),
    ("route:\n  receiver: a\n  recevier: b\n" + RECEIVERS, "unknown field 'recevier' in a route"),
    ("route:\n  receiver: a\n  receiver: b\n" + RECEIVERS, "am.yml:3: duplicate key 'receiver'"),
    ("route: {receiver: a}\nreceivers:\n  - name: a\n    discord_configs: [{username: x}]\n",
     "am.yml:4: receivers[0].discord_configs[0]: one of webhook_url or webhook_url_file must be configured"),
    ("route: {receiver: a}\nreceivers:\n  - name: a\n  - name: a\n", "am.yml:4: receivers[1].name: notification config name 'a' is not unique"),
    ("route: {receiver: a}\ntime_intervals:\n  - name: t\n    time_intervals: [{times: [{start_time: 9:00, end_time: '10:00'}]}]\n"
     + RECEIVERS, "am.yml:3: time_intervals[0]"),
])
def test_bad_input_is_one_line_with_file_and_line(body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        convert_alertmanager(body, "am.yml")
    text = str(e.value)
    assert needle in text, text
    assert "\n" not in text


# --------------------------------------------------------------------------- the command


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_ALERTS_", "DISCORD_"))}
    r = subprocess.run([sys.executable, "-m", "perf_alerts", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_cli_converts_to_stdout_and_the_result_passes_check_config(tmp_path: Path) -> None:
    r = _run("import-alertmanager", str(FULL), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# perf-alerts configuration converted from the Alertmanager configuration full.yml")
    lines = r.stderr.splitlines()
    assert "perf-alerts: warning: receiver 'ml': telegram_configs not supported; dropped" in lines
    assert any(ln.startswith("perf-alerts: set DISCORD_WEBHOOK_ONCALL to the Discord webhook URL") for ln in lines)
    for secret in FULL_SECRETS:
        assert secret not in r.stdout and secret not in r.stderr
    out = tmp_path / "converted.yaml"
    out.write_text(r.stdout)
    check = _run("--config", str(out), "check-config", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "OK (0 rules)" in check.stdout


def test_cli_out_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "perf.yaml"
    r = _run("import-alertmanager", str(DATA / "docs.yml"), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "" and out.read_text().startswith("# perf-alerts configuration")
    assert f"wrote {out}" in r.stderr
    out.write_text("mine")
    r = _run("import-alertmanager", str(DATA / "docs.yml"), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2 and out.read_text() == "mine"
    assert r.stderr.strip() == f"perf-alerts: error: --out: {out} exists; add --force to overwrite it"
    r = _run("import-alertmanager", str(DATA / "docs.yml"), "--out", str(out), "--force", cwd=tmp_path)
    assert r.returncode == 0 and out.read_text().startswith("# perf-alerts configuration")


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: [unclosed\n")
    r = _run("import-alertmanager", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and f"{bad}:3:1: invalid YAML" in r.stderr, r.stderr
    r = _run("import-alertmanager", str(tmp_path / "missing.yml"), cwd=tmp_path)
    assert r.returncode == 2 and "missing.yml: file not found" in r.stderr


# --------------------------------------------------------------------------- end to end


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
"""


def test_converted_config_delivers_to_each_integration_through_the_pipeline(tmp_path: Path) -> None:
    """The user's path: convert, put the rules in the same file, set the variables the report names,
    run. A receiver with two Discord integrations notifies both webhooks; the one with
    send_resolved: false gets no resolved notification (Alertmanager's per-integration setting)."""
    from fake_discord import fake_discord

    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.outbox import Outbox
    from perf_alerts.notify.pipeline import Notifier
    from perf_alerts.store import Store
    from perf_alerts.timeutil import ManualClock

    result = _convert("""
        route:
          receiver: quiet
          group_wait: 0s
          group_interval: 1m
          repeat_interval: 1h
          routes:
            - matchers: ['severity="critical"']
              receiver: oncall
        receivers:
          - name: quiet
          - name: oncall
            discord_configs:
              - webhook_url: 'https://discord.com/api/webhooks/1/first-secret'
              - webhook_url: 'https://discord.com/api/webhooks/2/second-secret'
                send_resolved: false
            email_configs:
              - to: oncall@example.org
        """)
    assert result.env_vars == ["DISCORD_WEBHOOK_ONCALL", "DISCORD_WEBHOOK_ONCALL_2"]
    t0 = 1_800_000_000.0
    with fake_discord() as srv:
        env = {"DISCORD_WEBHOOK_ONCALL": srv.url_for(1, "a"), "DISCORD_WEBHOOK_ONCALL_2": srv.url_for(2, "b")}
        cfg = parse_config(RULES + result.text, "alerting.yaml", env=env)
        clock = ManualClock(t0)
        pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
        notifier = Notifier(pa, console_write=lambda _line: None)
        pa.record("lat", 50, {"agent": "a"})
        for at in (t0, t0 + 20 * 60, t0 + 40 * 60):  # fires; no more data: resolves; the resolved goes out
            clock.set(at)
            pa.evaluate()
            notifier.plan()
            notifier.deliver()
        assert len(srv.posted(1)) == 1 and len(srv.posted(2)) == 1  # one firing message on each webhook
        sent = sorted((n.receiver, n.state, any(a.get("state") == "firing" for a in n.body.get("alerts", [])))
                      for n in Outbox(pa.store).recent())
        assert sent == [("oncall-discord-1", "delivered", False), ("oncall-discord-1", "delivered", True),
                        ("oncall-discord-2", "delivered", True)]


def test_converted_time_intervals_mute_the_route_in_perf_alerts(tmp_path: Path) -> None:
    """Time intervals pass through in Alertmanager's shape and act in perf-alerts' pipeline: a route
    muted 07:00-09:00 UTC sends nothing at 08:00 and notifies once the window is over."""
    from fake_discord import fake_discord

    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier
    from perf_alerts.store import Store
    from perf_alerts.timeutil import ManualClock

    result = _convert("""
        route:
          receiver: quiet
          group_wait: 0s
          group_interval: 5m
          routes:
            - matchers: ['severity="critical"']
              receiver: oncall
              mute_time_intervals: [morning]
        time_intervals:
          - name: morning
            time_intervals:
              - times: [{start_time: 07:00, end_time: 09:00}]
                location: UTC
        receivers:
          - name: quiet
          - name: oncall
            discord_configs: [{webhook_url_file: /run/secrets/oncall}]
        """)
    t0 = 1_800_000_000.0  # Friday 2027-01-15 08:00 UTC
    with fake_discord() as srv:
        cfg = parse_config(RULES + result.text, "alerting.yaml", env={"DISCORD_WEBHOOK_ONCALL": srv.url_for(1, "a")})
        clock = ManualClock(t0)
        pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
        notifier = Notifier(pa, console_write=lambda _line: None)
        posted = []
        for minutes in (0, 30, 59, 61, 66):
            clock.set(t0 + minutes * 60)
            pa.record("lat", 50, {"agent": "a"})
            pa.evaluate()
            notifier.plan()
            notifier.deliver()
            posted.append(len(srv.posted(1)))
        assert posted == [0, 0, 0, 1, 1]  # muted until 09:00, then sent at the group's next tick, once


@pytest.mark.parametrize("http, reported", [("", True), ("global:\n  http_config: {follow_redirects: true}\n", True),
                                             ("global:\n  http_config: {follow_redirects: false}\n", False)])
def test_follow_redirects_is_reported_unless_false(http: str, reported: bool) -> None:
    # Alertmanager follows a webhook's redirects unless told not to (default true); perf-alerts never
    # does: every webhook receiver that would follow one is reported, an explicit false matches
    from perf_alerts.amimport import convert_alertmanager

    res = convert_alertmanager(http + "route: {receiver: hook}\nreceivers:\n  - name: hook\n"
                               "    webhook_configs: [{url: 'http://127.0.0.1:9/x'}]\n", "am.yml")
    notes = [str(n) for n in res.notes if "redirect" in str(n)]
    assert bool(notes) is reported, res.notes
    assert not any("not supported; dropped" in n for n in notes)


def test_a_recursive_alias_is_one_line_not_a_recursion_error() -> None:
    # `route: &a {routes: [*a]}`: refused in one line as check-config does, never a RecursionError
    from perf_alerts.amimport import convert_alertmanager
    from perf_alerts.config import ConfigError

    with pytest.raises(ConfigError, match="recursive alias"):
        convert_alertmanager("route: &a\n  receiver: x\n  routes: [*a]\nreceivers: [{name: x}]\n", "am.yml")
