"""Hostile text at every output boundary (issue 10): nothing reaches a terminal or a Discord
channel unescaped.

A label value can be pushed by anyone who can reach the API or write a metrics file. Printed
raw, ESC sequences recolour the terminal, OSC 8 plants a hyperlink, CR/LF forge lines; sent
raw to Discord, `[text](url)` becomes a masked link and `<@id>` a mention. These tests push
such values and read what the console receiver, the CLI (tables, lines, JSON), the log and
the Discord payload make of them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perf_alerts.alerts.state import SeriesResult, apply_results
from perf_alerts.config import parse_config
from perf_alerts.model import Alert, AlertState, Severity
from perf_alerts.notify.discord import AlertGroup, build_messages
from perf_alerts.notify.discord.limits import validate_payload
from perf_alerts.template import render, render_annotation
from perf_alerts.textsafe import discord_code, discord_escape, terminal_safe

ESC = "\x1b"
# colour, an OSC-8 hyperlink, a window title, a CR-LF that starts a forged log line, an 8-bit CSI, a bidi override
HOSTILE = (f"{ESC}[31;1mRED{ESC}[0m {ESC}]8;;http://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\ "
           f"{ESC}]0;pwned\x07\r\n2026-01-01 00:00:00 INFO forged line\x9b2J\u202eevil")
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
MASKED_LINK = re.compile(r"(?<!\\)\[(?:[^\]\\]|\\.)*(?<!\\)\]\(")  # an unescaped [text]( in Discord markdown


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in RAW_CONTROL.findall(text)})


# --------------------------------------------------------------------------- the two escapes


def test_terminal_safe_shows_every_control_character_escaped() -> None:
    out = terminal_safe(HOSTILE)
    assert raw_controls(out) == []
    assert "\\x1b[31;1mRED" in out and "\\x1b]8;;http://evil.example/" in out and "\\x07" in out
    assert "\\r\n2026-01-01" in out  # the newline itself is kept in multi-line text...
    one = terminal_safe(HOSTILE, newlines=False)
    assert "\n" not in one and "\\r\\n2026-01-01" in one  # ...and shown as \n on one line
    assert "\\x9b2J" in out and "\\u202eevil" in out
    assert terminal_safe("\x00\x08\t\x7f\u2028") == "\\x00\\x08\\t\\x7f\\u2028"
    for plain in ("researcher", "gpt-4o-mini", "C:\\temp\\x", "naïve — ünïcode ✓ 漢字", "a\nb"):
        assert terminal_safe(plain) == plain
    assert terminal_safe(42) == "42"


@pytest.mark.parametrize("value,expected", [
    ("researcher", "researcher"),
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("research_task", "research_task"),
    ("v1.2 (beta) 10:30", "v1.2 (beta) 10:30"),
    ("[click me](http://evil.example/x)", "\\[click me\\](http://evil.example/x)"),
    ("@everyone", "@\u200beveryone"),
    ("<@123456789012345678> <@&42> <#7> <:e:1> <t:0>", "\\<@123456789012345678> \\<@&42> \\<#7> \\<:e:1> \\<t:0>"),
    ("```py\nx```", "\\`\\`\\`py\\nx\\`\\`\\`"),
    ("**b** _i_ ~~s~~ ||sp||", "\\*\\*b\\*\\* \\_i\\_ \\~\\~s\\~\\~ \\|\\|sp\\|\\|"),
    ("# big", "\\# big"), ("-# small", "\\-# small"), ("- item", "\\- item"), ("> quote", "\\> quote"),
    ("1. one", "1\\. one"),
    ("a\\*b", "a\\\\\\*b"),  # a backslash in the data does not escape the author's next character
    ("ends\\", "ends\\\\"),
])
def test_discord_escape(value: str, expected: str) -> None:
    assert discord_escape(value) == expected


def test_discord_code_cannot_be_broken_out_of() -> None:
    assert discord_code("a`b") == "`aˋb`"
    assert discord_code("x\ny\x1b") == "`x\\ny\\x1b`"
    assert discord_code("") == "` `"


# --------------------------------------------------------------------------- annotations and the Discord payload

RULE_YAML = """\
rules:
  - name: HighLatency
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 5m
    op: ">"
    value: 30
    severity: critical
    annotations:
      summary: "**{{ labels.agent }}** is slow ({{ value }}s) on {{ labels.crew | upper }}"
      description: "See [the runbook](https://rb.example/latency) — {{ labels.agent }}"
      runbook_url: "https://rb.example/{{ labels.agent }}?crew={{ labels.crew }}"
"""
EVIL = "[click me](http://evil.example/phish) @everyone <@&123456789012345678> `x` ||spoiler||"


def _fire(labels: dict[str, str]) -> Alert:
    rule = parse_config(RULE_YAML, "t.yaml", env={}).rules[0]
    save, _, _ = apply_results(rule, [SeriesResult(labels, 42.0, True, True)], {}, 1_767_225_600.0)
    (alert,) = save
    assert alert.state == AlertState.FIRING
    return alert


def test_label_values_in_annotations_are_escaped_the_authors_markdown_is_not() -> None:
    a = _fire({"agent": EVIL, "crew": "demo"})
    summary, description = a.annotations["summary"], a.annotations["description"]
    # the author's bold and masked link are as written; the value cannot make a link, a mention or code
    assert summary.startswith("**\\[click me\\](http://evil.example/phish) @\u200beveryone \\<@&")
    assert summary.endswith("** is slow (42s) on DEMO")
    assert "\\`x\\`" in summary and "\\|\\|spoiler\\|\\|" in summary
    assert MASKED_LINK.findall(summary) == []
    assert MASKED_LINK.findall(description) == ["[the runbook]("]
    # a URL annotation percent-encodes its values: data cannot end the link or add to the query
    assert a.annotations["runbook_url"].startswith("https://rb.example/%5Bclick%20me%5D%28http%3A%2F%2Fevil")
    assert a.annotations["runbook_url"].endswith("?crew=demo")
    # ordinary values are unchanged
    b = _fire({"agent": "gpt-4o-mini_agent", "crew": "demo"})
    assert b.annotations["summary"] == "**gpt-4o-mini_agent** is slow (42s) on DEMO"
    assert b.annotations["runbook_url"] == "https://rb.example/gpt-4o-mini_agent?crew=demo"


def test_render_escapes_values_only() -> None:
    ctx = {"labels": {"a": "*x*"}, "value": 3}
    assert render("*{{ labels.a }}* {{ value }}", ctx) == "**x** 3"
    assert render("*{{ labels.a }}* {{ value }}", ctx, discord_escape) == "*\\*x\\** 3"
    assert render_annotation("summary", "_{{ labels.a }}_", ctx) == "_\\*x\\*_"
    assert render_annotation("dashboard_url", "https://d/{{ labels.a }}", ctx) == "https://d/%2Ax%2A"


def test_discord_embeds_show_hostile_labels_as_text() -> None:
    a = _fire({"agent": EVIL, "crew": "demo\n# forged heading"})
    b = _fire({"agent": "writer", "crew": "x`y"})
    group = AlertGroup(key="alertname=HighLatency", alerts=[a, b], group_labels={"alertname": "HighLatency"})
    (msg,) = build_messages([group], dashboard_url="https://dash.example/")
    assert validate_payload(msg.payload) == []
    assert msg.payload["allowed_mentions"] == {"parse": []}
    emb = next(e for e in msg.payload["embeds"] if "click me" in e["description"])
    # description: the author's runbook link is the only masked link
    assert MASKED_LINK.findall(emb["description"]) == ["[the runbook]("]
    assert "\\[click me\\](http://evil.example/phish)" in emb["description"]
    # title: the labels that tell the alerts apart, escaped
    assert "\\[click me\\]" in emb["title"] and MASKED_LINK.findall(emb["title"]) == []
    # the labels field: each label one code span, nothing breaks out of it, no raw newline
    labels = next(f["value"] for f in emb["fields"] if f["name"] == "Labels")
    assert "\n" not in labels and "`crew=demo\\n# forged heading`" in labels
    other = next(e for e in msg.payload["embeds"] if e is not emb)
    other_labels = next(f["value"] for f in other["fields"] if f["name"] == "Labels")
    assert "`crew=xˋy`" in other_labels
    # the runbook link: a `(` or `)` in the address could not end the masked link early
    runbook = next(f["value"] for f in emb["fields"] if f["name"] == "Runbook")
    assert runbook.startswith("[Open runbook](https://rb.example/") and runbook.count("(") == 1 \
        and runbook.count(")") == 1 and runbook.endswith(")")


def test_digest_lines_show_labels_as_code() -> None:
    alerts = [_fire({"agent": f"{EVIL} {i}", "crew": "demo"}) for i in range(8)]
    group = AlertGroup(key="alertname=HighLatency", alerts=alerts, group_labels={"alertname": "HighLatency"})
    (msg,) = build_messages([group])
    (emb,) = msg.payload["embeds"]
    assert "digest" in emb["footer"]["text"]
    lines = [ln for ln in emb["description"].splitlines() if ln.startswith("🔴")]
    assert len(lines) >= 2
    for line in lines:
        code = re.match(r"^\S+ `([^`]*)`", line)
        assert code, line  # the labels are one intact code span
        assert MASKED_LINK.findall(line[code.end():]) == []  # and the summary after it shows no link


# --------------------------------------------------------------------------- the console receiver


def _alert(labels: dict[str, str], summary: str) -> Alert:
    return Alert(fingerprint="0123456789abcdef", rule="HighLatency", state=AlertState.FIRING,
                 severity=Severity.CRITICAL, labels={"alertname": "HighLatency", "severity": "critical", **labels},
                 annotations={"summary": summary, "description": "line one\nline two " + HOSTILE},
                 value=42.0, threshold=30.0, window="5m", started_at=1_767_225_600.0)


def test_console_receiver_prints_nothing_a_terminal_acts_on() -> None:
    from perf_alerts.config import Receiver
    from perf_alerts.model import alert_snapshot
    from perf_alerts.notify.outbox import Notification
    from perf_alerts.notify.receivers import render_text, send_console

    a = _alert({"agent": HOSTILE}, "slow: " + HOSTILE)
    group = AlertGroup(key="k" + HOSTILE, alerts=[a], group_labels={"alertname": "HighLatency"})
    text = "\n".join(render_text(m, "console" + ESC + "[2J") for m in build_messages([group]))
    assert raw_controls(text) == [], text
    assert "\\x1b[31;1mRED" in text and "\\x1b]8;;http://evil.example/" in text
    # every line is one of the receiver's own: a data CR-LF did not start a forged line
    for line in text.splitlines():
        assert line.startswith(("───", "▌", "📎")), line
    assert "▌ line one" in text and "▌ line two " in text  # the author's newlines stay lines

    printed: list[str] = []
    body = {"group_labels": {"alertname": "HighLatency"}, "alerts": [alert_snapshot(a)]}
    n = Notification(id=1, receiver="console", kind="alerts", group_key="k", created_at=0.0, body=body,
                     state="pending", attempts=0, next_attempt_at=0.0, last_error=None)
    rcv = Receiver.model_validate({"name": "console", "console": {}})
    send_console([n], rcv, None, write=printed.append)
    assert printed and all(raw_controls(p) == [] for p in printed)


# --------------------------------------------------------------------------- the CLI


class _CLI:
    def __init__(self, cwd: Path, config: Path) -> None:
        self.cwd = cwd
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_ALERTS_", "DISCORD_"))}
        env.update(PERF_ALERTS_DB=str(cwd / "t.db"), PERF_ALERTS_CONFIG=str(config), COLUMNS="200")
        self.env = env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "perf_alerts", *args], cwd=self.cwd, env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stdout, r.stderr)
        return r


def test_cli_tables_lines_and_json_are_terminal_safe(tmp_path: Path, issue_rule_yaml: str) -> None:
    """A hostile label pushed from a file, through evaluate (its transitions and the console
    receiver on stdout), `alerts` (the table) and `alerts --json`."""
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(issue_rule_yaml)
    t0 = 1_767_225_600
    rows = [{"timestamp": t0 + 30 * i, "metric": "crew_task_seconds", "value": 45.0,
             "labels": {"agent": "researcher", "crew": HOSTILE}} for i in range(12)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli = _CLI(tmp_path, cfg)
    cli("ingest", "m.jsonl")
    outputs = [cli("evaluate", "--at", "2026-01-01T00:03:00Z"), cli("evaluate", "--at", "2026-01-01T00:06:00Z"),
               cli("alerts")]
    for r in outputs:
        assert raw_controls(r.stdout) == [] and raw_controls(r.stderr) == [], (r.stdout, r.stderr)
    assert "\\x1b[31;1mRED" in outputs[2].stdout  # the table shows the value, escaped
    assert "forged line" not in "".join(ln[:40] for ln in outputs[0].stdout.splitlines())  # no line starts with it
    assert "\\x1b]8;;http://evil.example/" in outputs[1].stdout  # the console receiver's message
    j = subprocess.run([sys.executable, "-m", "perf_alerts", "alerts", "--json"], cwd=tmp_path, env=cli.env,
                       capture_output=True, text=True, timeout=120)
    assert raw_controls(j.stdout) == [] and "\\u009b2J" in j.stdout and "\\u202eevil" in j.stdout
    assert json.loads(j.stdout)[0]["labels"]["crew"] == HOSTILE  # the same data, only written safely


def test_cli_output_helpers(capsys: pytest.CaptureFixture[str]) -> None:
    from perf_alerts.cli import output as out

    out.line("label " + HOSTILE)
    out.block("report\n" + HOSTILE)
    out.table(None, ["a", "b"], [(HOSTILE, ":warning: [bold]x[/bold]")])
    out.warn("bad " + HOSTILE)
    out.error("worse " + HOSTILE)
    out.stderr_line(HOSTILE)
    out.emit_json({"v": HOSTILE})
    got = capsys.readouterr()
    assert raw_controls(got.out) == [] and raw_controls(got.err) == []
    first = got.out.splitlines()[0]
    assert first.startswith("label ") and "\\r\\n2026-01-01" in first  # one line stays one line
    assert "report\n" in got.out  # a block keeps its own lines
    assert ":warning: [bold]x[/bold]" in got.out  # no emoji codes, no markup
    assert json.loads(got.out[got.out.index("{"):])["v"] == HOSTILE


# --------------------------------------------------------------------------- the log of run / dashboard


def test_the_daemon_log_is_redacted_and_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    from perf_alerts.cli._common import setup_logging

    names = ("perf_alerts", "uvicorn")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    try:
        setup_logging()
        log = logging.getLogger("perf_alerts.http")
        log.warning("bad label %s from https://discord.com/api/webhooks/123/SECRETtoken", HOSTILE)
        try:
            raise ValueError("boom " + HOSTILE)
        except ValueError:
            log.exception("request failed")
        logging.getLogger("uvicorn.error").error("Invalid HTTP request: %s", HOSTILE)
    finally:
        for n, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    err = capsys.readouterr().err
    assert raw_controls(err) == [], err
    assert "SECRETtoken" not in err
    lines = err.splitlines()
    assert sum(1 for ln in lines if "forged line" in ln) == 3  # each on its record's own line, escaped
    assert not any(ln.startswith("2026-01-01 00:00:00 INFO forged") for ln in lines)
    # a traceback keeps its lines, indented under its first (an exception message's own newline
    # cannot start what looks like a record)
    tb = lines.index("Traceback (most recent call last):")
    assert lines[tb - 1].endswith("ERROR perf_alerts.http: request failed")
    assert any(ln.startswith("  ValueError: boom \\x1b[31;1mRED") for ln in lines)
    assert any(ln.startswith("  2026-01-01 00:00:00 INFO forged line") for ln in lines)
    assert any("uvicorn.error" in ln and "\\x1b[31;1m" in ln for ln in lines)


def test_payload_of_ordinary_alerts_is_unchanged_by_escaping() -> None:
    """The escaping is minimal: an everyday alert renders exactly as before."""
    a = _fire({"agent": "researcher", "crew": "demo"})
    assert a.annotations == {
        "summary": "**researcher** is slow (42s) on DEMO",
        "description": "See [the runbook](https://rb.example/latency) — researcher",
        "runbook_url": "https://rb.example/researcher?crew=demo",
    }
    (msg,) = build_messages([AlertGroup(key="k", alerts=[a], group_labels={})])
    emb: dict[str, Any] = msg.payload["embeds"][0]
    assert emb["description"] == "**researcher** is slow (42s) on DEMO\n\nSee [the runbook](https://rb.example/latency) — researcher"
    assert "`agent=researcher`" in next(f["value"] for f in emb["fields"] if f["name"] == "Labels")
