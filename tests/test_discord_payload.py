"""Payload building: Discord's limits are never exceeded and no alert is ever invisible."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_discord import discord_errors  # independent re-implementation of Discord's checks

from perf_alerts.model import Alert, AlertState, Severity, fingerprint
from perf_alerts.notify.discord import limits as L
from perf_alerts.notify.discord.payload import (
    RESOLVED_COLOR,
    SEVERITY_COLORS,
    AlertGroup,
    DiscordMessage,
    build_messages,
    build_resolved_edit,
    safe_username,
)
from perf_alerts.notify.redact import clear_secrets, redact, register_secret

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def mk(rule: str = "HighLatency", labels: dict[str, str] | None = None, sev: Severity = Severity.WARNING,
       state: AlertState = AlertState.FIRING, value: float | None = 523.4, **ann: str) -> Alert:
    lb = {"alertname": rule, **(labels or {})}
    return Alert(fingerprint(rule, lb), rule, state, sev, lb, dict(ann), value=value, threshold=500.0,
                 window="5m", started_at=T0, resolved_at=T0 + 600 if state == AlertState.RESOLVED else None)


def storm(n_groups: int = 50, per_group: int = 20, seed: int = 7) -> list[AlertGroup]:
    rng = random.Random(seed)
    groups = []
    for g in range(n_groups):
        alerts = [
            mk("HighLatency", {"crew": f"crew-{g}", "agent": f"agent-{i}"}, rng.choice(list(Severity)),
               rng.choice([AlertState.FIRING] * 4 + [AlertState.RESOLVED]), rng.uniform(0, 1e4),
               summary=f"p95 latency of agent-{i} is high")
            for i in range(per_group)
        ]
        groups.append(AlertGroup(key=f"crew=crew-{g}", alerts=alerts, group_labels={"crew": f"crew-{g}"}))
    return groups


def check_valid(msgs: list[DiscordMessage]) -> None:
    """Both our validator and the fake server's independent one accept every message."""
    for m in msgs:
        assert L.validate_payload(m.payload, files=m.files) == []
        assert discord_errors(json.loads(json.dumps(m.payload)), len(m.files), edit=False) == {}
        assert len(m.payload["embeds"]) <= 10
        assert L.embeds_chars(m.payload["embeds"]) <= 6000
        assert len(m.files) <= 10 and all(len(f[1]) <= 10 * 1024 * 1024 for f in m.files)
        assert [a["filename"] for a in m.payload.get("attachments", [])] == [f[0] for f in m.files]


def visible_text(m: DiscordMessage) -> str:
    return json.dumps(m.payload["embeds"], ensure_ascii=False) + "".join(f[1].decode("utf-8", "replace") for f in m.files)


def assert_all_visible(groups: list[AlertGroup], msgs: list[DiscordMessage]) -> None:
    wanted = {a.fingerprint for g in groups for a in g.alerts}
    claimed = {fp for m in msgs for fp in m.alert_fingerprints}
    assert claimed == wanted
    # Not just claimed: each fingerprint literally appears (embed footer or attached file) in the
    # message that claims it. Digest lines show labels, so the attachment must carry those.
    for m in msgs:
        present = set(re.findall(r"\b[0-9a-f]{16}\b", visible_text(m)))
        assert set(m.alert_fingerprints) <= present


# ------------------------------------------------------------------ storm: batching + visibility


def test_storm_1000_alerts_50_groups_every_alert_visible_in_few_messages() -> None:
    groups = storm(50, 20)
    msgs = build_messages(groups, dashboard_url="https://grafana.example/d/crew")
    check_valid(msgs)
    assert_all_visible(groups, msgs)
    assert len(msgs) <= 10, "embeds of several groups must be batched"
    assert sorted(k for m in msgs for k in m.group_keys) == sorted(g.key for g in groups)
    digest = msgs[0].payload["embeds"][0]
    assert "full list attached" in digest["description"] and "more" in digest["description"]


def test_digest_lists_worst_first_and_counts() -> None:
    alerts = [mk(labels={"agent": f"i{i}"}, sev=Severity.INFO) for i in range(20)]
    alerts += [mk(labels={"agent": f"r{i}"}, sev=Severity.CRITICAL, state=AlertState.RESOLVED) for i in range(5)]
    alerts += [mk(labels={"agent": f"w{i}"}, sev=Severity.WARNING) for i in range(10)]
    alerts += [mk(labels={"agent": "c0"}, sev=Severity.CRITICAL)]
    g = AlertGroup("alertname=HighLatency", alerts, {"alertname": "HighLatency"})
    [m] = build_messages([g])
    desc = m.payload["embeds"][0]["description"]
    assert "**31 firing**" in desc and "1 critical" in desc and "10 warning" in desc and "20 info" in desc
    assert "**5 resolved**" in desc
    lines = [ln for ln in desc.splitlines() if ln.startswith(("🔴", "🟠", "🔵", "🟢")) and "`" in ln]
    assert lines[0].startswith("🔴") and "c0" in lines[0]
    assert lines[1].startswith("🟠")
    assert m.payload["embeds"][0]["title"].startswith("[FIRING:31, RESOLVED:5] HighLatency")
    assert m.payload["embeds"][0]["color"] == SEVERITY_COLORS[Severity.CRITICAL]
    body = m.files[0][1].decode()
    # the attachment is worst-first too and holds all 36
    assert body.count("\n| firing |") == 31 and body.count("\n| resolved |") == 5
    assert body.index("c0") < body.index("\n| firing | warning |") < body.index("\n| firing | info |") < body.index("\n| resolved |")


# ------------------------------------------------------------------ adversarial inputs


@pytest.mark.parametrize("case", ["huge_annotations", "thousand_labels", "unicode", "300_in_one_group", "60_groups"])
def test_adversarial_inputs_never_exceed_limits(case: str) -> None:
    rng = random.Random(case)
    if case == "huge_annotations":
        groups = [AlertGroup(f"g{k}", [mk(labels={"i": str(i), "k": str(k)}, summary="S" * 100_000,
                                          description="  D " * 50_000, runbook_url="https://rb.example/" + "x" * 5000)
                                       for i in range(k + 1)], {"k": str(k)}) for k in range(7)]
    elif case == "thousand_labels":
        groups = [AlertGroup("g", [mk(labels={f"l{j}": "v" * 300 for j in range(1000)} | {"i": str(i)}) for i in range(3)], {})]
    elif case == "unicode":
        s = "🔥👩‍👩‍👧‍👦 ﷽ Z̷̢͎a̸l̵g̷o̶ \u200b\u202e עברית " * 400
        groups = [AlertGroup(s[:3000], [mk(rule="Ünïcødé🔥" * 50, labels={"crew": s[:2000], "i": str(i)}, summary=s, description=s)
                                        for i in range(n)], {"crew": s[:500]}, title=s) for n in (1, 4, 30)]
    elif case == "300_in_one_group":
        groups = [AlertGroup("alertname=HighLatency", [mk(labels={"agent": f"a{i}"}, sev=rng.choice(list(Severity)), summary="x" * 500) for i in range(300)], {"alertname": "HighLatency"})]
    else:
        groups = [AlertGroup(f"crew=c{k}", [mk(labels={"crew": f"c{k}", "a": str(i)}, summary="y" * rng.randint(0, 3000)) for i in range(rng.randint(1, 40))], {"crew": f"c{k}"}) for k in range(60)]
    msgs = build_messages(groups, username="perf-alerts", dashboard_url="https://dash.example/x")
    check_valid(msgs)
    assert_all_visible(groups, msgs)


def test_each_field_truncated_with_ellipsis() -> None:
    a = mk(summary="A" * 10_000)
    [m] = build_messages([AlertGroup("g", [a], {})])
    e = m.payload["embeds"][0]
    assert e["description"].endswith("…") and L.text_len(e["description"]) <= 4096


def test_huge_file_split_under_10_mib() -> None:
    big = [mk(labels={"i": str(i), "blob": "z" * 2000}, summary="q" * 1400, description="d") for i in range(5000)]
    groups = [AlertGroup("huge", big, {})]
    msgs = build_messages(groups)
    check_valid(msgs)
    assert_all_visible(groups, msgs)
    assert any(len(m.files) > 1 for m in msgs)  # > 10 MiB of rows -> several parts


# ------------------------------------------------------------------ rendering rules


def test_single_alert_embed_fields_colour_timestamp_link() -> None:
    a = mk(sev=Severity.CRITICAL, summary="Latency high", description="p95 above 500ms", runbook_url="https://rb.example/latency")
    [m] = build_messages([AlertGroup("alertname=HighLatency", [a], {"alertname": "HighLatency"})],
                         dashboard_url="https://dash.example/d/1")
    [e] = m.payload["embeds"]
    assert e["title"] == "[FIRING:1] HighLatency"
    assert e["color"] == SEVERITY_COLORS[Severity.CRITICAL] == 0xE53935
    assert e["description"] == "Latency high\n\np95 above 500ms"
    names = {f["name"]: f["value"] for f in e["fields"]}
    assert names["Value"] == "523.4" and names["Threshold"] == "500" and names["Window"] == "5m"
    assert "`alertname=HighLatency`" in names["Labels"]
    assert names["Runbook"] == "[Open runbook](https://rb.example/latency)"
    assert e["timestamp"] == "2026-01-01T00:00:00Z"
    assert e["url"] == "https://dash.example/d/1"
    assert a.fingerprint in e["footer"]["text"]


def test_colours_by_severity_and_green_when_resolved() -> None:
    groups = [AlertGroup(s.value, [mk(labels={"s": s.value}, sev=s)], {}) for s in Severity]
    groups.append(AlertGroup("r", [mk(labels={"s": "r"}, sev=Severity.CRITICAL, state=AlertState.RESOLVED)], {}))
    [m] = build_messages(groups)
    colors = {e["footer"]["text"].split(" · ")[1]: e["color"] for e in m.payload["embeds"]}
    assert colors == {"critical": 0xE53935, "warning": 0xFFA000, "info": 0x1E88E5, "r": RESOLVED_COLOR}
    resolved = [e for e in m.payload["embeds"] if e["color"] == RESOLVED_COLOR][0]
    assert resolved["title"].startswith("[RESOLVED]") and resolved["timestamp"] == "2026-01-01T00:10:00Z"


def test_group_title_counts_firing_and_distinguishes_alerts() -> None:
    g = AlertGroup("alertname=HighLatency", [mk(labels={"agent": f"a{i}"}) for i in range(3)], {"alertname": "HighLatency"})
    [m] = build_messages([g])
    titles = [e["title"] for e in m.payload["embeds"]]
    assert titles == [f"[FIRING:3] HighLatency · agent=a{i}" for i in range(3)]


def test_mentions_only_through_allowed_mentions() -> None:
    a = mk(summary="@everyone @here <@&999> ping!")
    plain, = build_messages([AlertGroup("g", [a], {})])
    assert plain.payload["allowed_mentions"] == {"parse": []}
    assert "content" not in plain.payload
    esc = AlertGroup("g2", [mk(labels={"x": "1"})], {}, mention_roles=["123456789012345678", "everyone", "@here", "42"])
    [m] = build_messages([esc, AlertGroup("g3", [mk(labels={"x": "2"})], {})])
    assert m.payload["content"] == "<@&123456789012345678> <@&42>"
    assert m.payload["allowed_mentions"] == {"parse": [], "roles": ["123456789012345678", "42"]}
    assert "everyone" not in m.payload["content"] and "@here" not in m.payload["content"]
    assert m.group_keys[0] == "g2"  # escalations first


def test_username_validated_with_fallback() -> None:
    assert safe_username("Ops Bot") == "Ops Bot"
    for bad in ("", "   ", "x" * 81, "My Discord Bot", "cLyDe", None):
        assert safe_username(bad) == "perf-alerts"
    [m] = build_messages([AlertGroup("g", [mk()], {})], username="discord-alerts")
    assert m.payload["username"] == "perf-alerts"


def test_bad_dashboard_url_is_dropped_not_sent() -> None:
    for url in ("javascript:alert(1)", "https://x/" + "a" * 3000, "https://x/a b"):
        [m] = build_messages([AlertGroup("g", [mk()], {})], dashboard_url=url)
        assert "url" not in m.payload["embeds"][0]


def test_adhoc_message_with_png_attachment() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    g = AlertGroup("summary", [], {}, title="Weekly executive summary", description="All crews healthy.", files=[("chart.png", png, "image/png")])
    [m] = build_messages([g])
    check_valid([m])
    e = m.payload["embeds"][0]
    assert e["image"] == {"url": "attachment://chart.png"} and m.files[0][0] == "chart.png"


def test_empty_input_builds_nothing() -> None:
    assert build_messages([]) == []


# ------------------------------------------------------------------ resolved edit


def test_resolved_edit_of_single_alert() -> None:
    a = mk(sev=Severity.CRITICAL, summary="down")
    a.state, a.resolved_at = AlertState.RESOLVED, T0 + 120
    body = build_resolved_edit(a)
    assert L.validate_payload(body, edit=True) == []
    [e] = body["embeds"]
    assert e["color"] == RESOLVED_COLOR and e["title"] == "[RESOLVED] HighLatency"
    assert {f["name"]: f["value"] for f in e["fields"]}["Duration"] == "2m"
    assert body["allowed_mentions"] == {"parse": []} and "content" not in body


def test_resolved_edit_of_batched_message_fits_one_message() -> None:
    groups = [AlertGroup(f"g{k}", [mk(labels={"k": str(k), "i": str(i)}, state=AlertState.RESOLVED, summary="s" * 900) for i in range(4)], {}) for k in range(3)]
    body = build_resolved_edit(groups)
    assert L.validate_payload(body, edit=True) == []
    assert discord_errors(body, 0, edit=True) == {}
    assert all(e["color"] == RESOLVED_COLOR for e in body["embeds"])


# ------------------------------------------------------------------ limits.validate_payload


def _emb(**kw: object) -> dict[str, object]:
    return {"title": "t", **kw}


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"content": "x" * 2001}, "content"),
        ({"embeds": [_emb()] * 11}, "embeds"),
        ({"embeds": [_emb(title="x" * 257)]}, "embeds.0.title"),
        ({"embeds": [_emb(description="x" * 4097)]}, "embeds.0.description"),
        ({"embeds": [_emb(fields=[{"name": "n", "value": "v"}] * 26)]}, "embeds.0.fields"),
        ({"embeds": [_emb(fields=[{"name": "n" * 257, "value": "v"}])]}, "embeds.0.fields.0.name"),
        ({"embeds": [_emb(fields=[{"name": "n", "value": "v" * 1025}])]}, "embeds.0.fields.0.value"),
        ({"embeds": [_emb(fields=[{"name": "n", "value": "   "}])]}, "embeds.0.fields.0.value"),
        ({"embeds": [_emb(footer={"text": "f" * 2049})]}, "embeds.0.footer.text"),
        ({"embeds": [_emb(author={"name": "a" * 257})]}, "embeds.0.author.name"),
        ({"embeds": [_emb(description="d" * 4000), _emb(description="d" * 2000)]}, "embeds"),
        ({"embeds": [_emb(color=16777216)]}, "embeds.0.color"),
        ({"embeds": [_emb(color=-1)]}, "embeds.0.color"),
        ({"embeds": [_emb(url="https://x/" + "u" * 2048)]}, "embeds.0.url"),
        ({"content": "x", "username": "My DISCORD hook"}, "username"),
        ({"content": "x", "username": "clyde"}, "username"),
        ({"content": "x", "username": "  "}, "username"),
        ({"content": "x", "username": "u" * 81}, "username"),
        ({"content": "x", "avatar_url": "https://a/" + "b" * 2048}, "avatar_url"),
        ({"content": "x", "allowed_mentions": {"parse": ["roles"], "roles": ["1"]}}, "allowed_mentions"),
        ({}, "(body)"),
        ({"content": "   "}, "(body)"),
    ],
)
def test_validate_payload_reports_field_path(payload: dict[str, object], path: str) -> None:
    problems = L.validate_payload(payload)
    assert any(p.startswith(path + ":") for p in problems), problems
    # and the fake Discord (independent implementation) rejects it too
    errs = discord_errors(payload, 0, edit=False)
    assert errs or path == "(body)"


def test_validate_payload_counts_after_trimming_and_accepts_the_edges() -> None:
    ok = {"content": " " * 10 + "x" * 2000 + "\n\n", "username": "u" * 80,
          "embeds": [_emb(title="  " + "t" * 256 + "  ", color=0xFFFFFF, fields=[{"name": "n" * 256, "value": "v" * 1024}] * 4)]}
    assert L.validate_payload(ok) == []
    total = {"embeds": [{"description": "d" * 4096}, {"description": "d" * 1904}]}
    assert L.validate_payload(total) == []  # exactly 6000
    total["embeds"][1]["description"] += "d"  # type: ignore[index]
    assert L.validate_payload(total) != []


def test_validate_payload_files_limits() -> None:
    files = [(f"f{i}.txt", b"x", "text/plain") for i in range(11)]
    assert any(p.startswith("files:") for p in L.validate_payload({"content": "x"}, files=files))
    big = [("big.bin", b"x" * (10 * 1024 * 1024 + 1), "application/octet-stream")]
    assert any(p.startswith("files.0:") for p in L.validate_payload({"content": "x"}, files=big))
    assert L.validate_payload({}, files=[("a.txt", b"x", "text/plain")]) == []


# ------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    "url",
    [
        "https://discord.com/api/webhooks/123456789/AbC-dEf_123.xyz",
        "https://discordapp.com/api/webhooks/123456789/AbC-dEf_123.xyz",
        "https://ptb.discord.com/api/v10/webhooks/123456789/AbC-dEf_123.xyz?wait=true",
        "https://canary.discordapp.com/api/v9/webhooks/123456789/AbC-dEf_123.xyz/messages/55",
        "http://127.0.0.1:8080/api/webhooks/123456789/AbC-dEf_123.xyz",
    ],
)
def test_redact_webhook_urls(url: str) -> None:
    out = redact(f"error posting to {url}: boom")
    assert "AbC-dEf_123.xyz" not in out
    assert "/webhooks/123456789/***" in out and out.endswith(": boom")


def test_redact_registered_secrets_and_credentials() -> None:
    try:
        register_secret("https://hooks.example.com/services/T00/B00/SUPERSECRETVALUE")
        register_secret("tok_abcdefghijkl")
        text = ("posting https://hooks.example.com/services/T00/B00/SUPERSECRETVALUE failed; "
                "token tok_abcdefghijkl; encoded https%3A%2F%2Fhooks.example.com%2Fservices%2FT00%2FB00%2FSUPERSECRETVALUE; "
                "https://user:pw123456@example.com/x?api_key=K123&x=1")
        out = redact(text)
        for secret in ("SUPERSECRETVALUE", "tok_abcdefghijkl", "pw123456", "K123"):
            assert secret not in out
        assert redact(out) == out  # idempotent
        assert redact("short") == "short"
    finally:
        clear_secrets()
