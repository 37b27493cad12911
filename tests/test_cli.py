"""The `perf-alerts` CLI end to end: every command is a real new process on a temp directory.

Subprocesses are used sparingly (one long scenario plus one table of bad inputs), so the
whole file stays a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perf_alerts.store import Store

T0 = 1767225600  # 2026-01-01T00:00:00Z
REQUIRED_ALERT_KEYS = {"fingerprint", "rule", "state", "severity", "labels", "value", "started_at"}


class CLI:
    """Runs `python -m perf_alerts ...` in `cwd` with PERF_ALERTS_DB / PERF_ALERTS_CONFIG set."""

    def __init__(self, cwd: Path, config: Path) -> None:
        self.cwd = cwd
        self.db = cwd / "perf_alerts_test.db"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PERF_ALERTS_", "DISCORD_"))}  # no real webhook, no stray store
        env.update(PERF_ALERTS_DB=str(self.db), PERF_ALERTS_CONFIG=str(config), COLUMNS="200",
                   CREWAI_DISABLE_TELEMETRY="true", CREWAI_TRACING_ENABLED="false")
        self.env = env

    def __call__(self, *args: str, rc: int | None = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "perf_alerts", *args], cwd=self.cwd, env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert "Traceback" not in r.stderr, f"{args}: {r.stderr}"
        if rc is not None:
            assert r.returncode == rc, f"{args}: rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
        return r

    def json(self, *args: str, rc: int | None = 0) -> Any:
        r = self(*args, "--json", rc=rc)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:  # pragma: no cover - the message is the point
            pytest.fail(f"{args}: --json output is not JSON:\n{r.stdout}\nstderr:{r.stderr}")


@pytest.fixture
def cli(tmp_path: Path, issue_rule_yaml: str) -> CLI:
    (tmp_path / "config").mkdir()
    cfg = tmp_path / "config" / "alerting.yaml"
    cfg.write_text(issue_rule_yaml)
    return CLI(tmp_path, cfg)


def _history_csv(path: Path) -> int:
    """10 minutes of task times every 30 s: researcher 45 s from 00:02 on (breaks HighLatency), writer 5 s.

    One NaN row is slipped in; returns its line number.
    """
    lines = ["timestamp,metric,value,agent,crew"]
    for i in range(21):
        t = T0 + 30 * i
        lines.append(f"{t},crew_task_seconds,{45 if i >= 4 else 5},researcher,c1")
        lines.append(f"{t},crew_task_seconds,5,writer,c1")
    lines.insert(10, "2026-01-01T00:04:10Z,crew_task_seconds,NaN,writer,c1")
    path.write_text("\n".join(lines) + "\n")
    return 11


def test_cli_end_to_end_scenario(cli: CLI) -> None:
    # config
    r = cli("check-config")
    assert "OK (1 rule)" in r.stdout
    cc = cli.json("check-config")
    assert (cc["ok"], cc["config"], cc["rules"], cc["problems"]) == (True, cli.env["PERF_ALERTS_CONFIG"], 1, [])

    # ingest: the good rows are stored, the NaN row is one warning naming file:line
    nan_line = _history_csv(cli.cwd / "history.csv")
    r = cli("ingest", "history.csv")
    assert "42 samples stored in 2 series, 1 rejected" in r.stdout
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and f"history.csv:{nan_line}:" in err[0] and "finite" in err[0], r.stderr
    rep = cli.json("ingest", "history.csv")  # ingesting again is idempotent (same series and instants)
    assert rep["files"][0]["accepted"] == 42 and rep["files"][0]["rejected"] == 1
    assert rep["files"][0]["errors"] == [err[0].split("warning: ", 1)[1]]

    # pending at 00:05 (condition true, `for: 2m` not yet elapsed): no --fail-on exit for a pending alert
    ev = cli.json("evaluate", "--at", "2026-01-01T00:05:00Z", "--fail-on", "critical", rc=0)
    assert [(t["event"], t["rule"], t["labels"]["agent"]) for t in ev["transitions"]] == [
        ("pending", "HighLatency", "researcher")]
    assert (ev["firing"], ev["pending"]) == (0, 1)

    # firing two minutes later; --fail-on critical turns that into exit 1, the output is still printed
    ev = cli.json("evaluate", "--at", "2026-01-01T00:07:00Z", "--fail-on", "critical", rc=1)
    assert [(t["event"], t["severity"]) for t in ev["transitions"]] == [("firing", "critical")]
    assert (ev["firing"], ev["pending"]) == (1, 0)
    fp = ev["transitions"][0]["fingerprint"]

    # alerts --json: the required keys, firing, with the values of the rule
    (a,) = cli.json("alerts")
    assert REQUIRED_ALERT_KEYS <= set(a)
    assert (a["fingerprint"], a["rule"], a["state"], a["severity"]) == (fp, "HighLatency", "firing", "critical")
    assert a["labels"]["agent"] == "researcher" and a["labels"]["crew"] == "c1"
    assert a["value"] == 45 and a["started_at"] == "2026-01-01T00:07:00Z"
    assert a["annotations"]["summary"] == "researcher p95 task time 45s"
    assert a["acknowledged"] is False
    assert [x["fingerprint"] for x in cli.json("alerts", "--state", "firing")] == [fp]
    assert cli.json("alerts", "--state", "pending") == []
    assert fp[:8] in cli("alerts").stdout  # the table for people shows the fingerprint too

    # ack by a unique prefix
    r = cli("ack", fp[:6], "--by", "oncall")
    assert fp in r.stdout and "oncall" in r.stdout

    # a new process sees the acknowledgement and the unchanged firing state
    (a2,) = cli.json("alerts")
    assert (a2["state"], a2["acknowledged"], a2["acknowledged_by"]) == ("firing", True, "oncall")
    assert a2["started_at"] == a["started_at"]

    # evaluating again at the same instant (and a minute later) does not re-fire nor drop the ack
    for at in ("2026-01-01T00:07:00Z", "2026-01-01T00:08:00Z"):
        ev = cli.json("evaluate", "--at", at, "--no-notify")
        assert ev["transitions"] == [], at
        assert ev["firing"] == 1
    (a3,) = cli.json("alerts")
    assert (a3["state"], a3["acknowledged"], a3["started_at"]) == ("firing", True, "2026-01-01T00:07:00Z")

    # the persisted history has exactly one firing and one acknowledgement
    st = Store(cli.db)
    events = [(e["event"], e["fingerprint"]) for e in st.events()]
    st.close()
    assert events.count(("firing", fp)) == 1, events
    assert events.count(("acknowledged", fp)) == 1, events
    assert events.count(("pending", fp)) == 1, events

    # backtest: the ingested history raises one HighLatency alert; the live alert is untouched
    bt = cli.json("backtest")
    (row,) = [x for x in bt["rules"] if x["rule"] == "HighLatency"]
    assert (row["alerts"], row["distinct_series"], row["error"]) == (1, 1, None)
    assert bt["total_alerts"] == 1
    assert bt["start"] == "2026-01-01T00:00:00Z" and bt["end"] == "2026-01-01T00:10:00Z"
    assert cli.json("alerts") == [a3]

    # analytics on the same data
    an = cli.json("analyze", "--at", "2026-01-01T00:10:00Z", "--lookback", "1h")
    assert an["series_analyzed"] == 2
    assert set(an["agents"]) == {"researcher", "writer"}
    assert an["health"]["score"] is None or 0 <= an["health"]["score"] <= 100
    pr = cli.json("predict", "--at", "2026-01-01T00:10:00Z", "--lookback", "1h", "--horizon", "1h")
    assert isinstance(pr["breaches"], list) and isinstance(pr["forecasts"], list)
    assert len(pr["forecasts"]) + pr["series_skipped"] == 2

    # no data after 00:10: the alert resolves, and stays resolved in a new process
    ev = cli.json("evaluate", "--at", "2026-01-01T00:20:00Z", "--no-notify")
    assert [t["event"] for t in ev["transitions"]] == ["resolved"]
    (a4,) = cli.json("alerts", "--state", "resolved")
    assert (a4["fingerprint"], a4["resolved_at"]) == (fp, "2026-01-01T00:20:00Z")
    assert cli.json("alerts", "--state", "active") == []


def test_cli_bad_inputs_exit_2_with_one_line_and_no_traceback(cli: CLI) -> None:
    d = cli.cwd
    (d / "broken.yaml").write_text("rules:\n  - name: A\n   type: threshold\n")
    (d / "unknown_type.yaml").write_text("rules:\n  - name: A\n    type: thresold\n    metric: m\n")
    (d / "nan_value.yaml").write_text("rules:\n  - name: A\n    type: threshold\n    metric: m\n    op: '>'\n"
                                      "    value: .nan\n")
    (d / "nohdr.csv").write_text("time,name,val\n1,m,1\n")
    (d / "data.txt").write_text("timestamp,metric,value\n")
    (d / "notadb.db").write_text("this is not SQLite\n")
    (d / "broken_test.yaml").write_text("tests:\n  - name: x\n   interval: 1m\n")
    cases: list[tuple[list[str], list[str]]] = [
        (["--config", "broken.yaml", "evaluate"], ["broken.yaml:3:4:", "invalid YAML"]),
        (["--config", "broken.yaml", "check-config"], ["broken.yaml:3:4:"]),
        (["--config", "unknown_type.yaml", "evaluate"], ["unknown_type.yaml:3:", "rules[0].type", "threshold, trend"]),
        (["--config", "unknown_type.yaml", "check-config"], ["unknown_type.yaml:3:", "rules[0].type"]),
        (["--config", "nan_value.yaml", "check-config"], ["nan_value.yaml:6:", "rules[0].value", "finite"]),
        (["--config", "missing.yaml", "alerts"], ["missing.yaml", "not found"]),
        (["ingest", "missing.csv"], ["missing.csv", "not found"]),
        (["ingest", "nohdr.csv"], ["nohdr.csv:1:", "timestamp"]),
        (["ingest", "data.txt"], ["data.txt", "format"]),
        (["evaluate", "--at", "next tuesday"], ["next tuesday"]),
        (["evaluate", "--at", "1767225600000"], ["1767225600000"]),  # milliseconds
        (["evaluate", "--fail-on", "severe"], ["--fail-on", "critical, warning, info"]),
        (["alerts", "--state", "open"], ["--state", "firing"]),
        (["ack", "deadbeef"], ["deadbeef"]),
        (["--db", "notadb.db", "alerts"], ["SQLite"]),
        (["test-rules", "nothere.yaml"], ["nothere.yaml"]),
        (["test-rules", "broken_test.yaml"], ["broken_test.yaml:3"]),
        (["analyze", "--lookback", "forever"], ["--lookback", "forever"]),
    ]
    for args, words in cases:
        r = cli(*args, rc=2)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, (args, r.stderr)
        for w in words:
            assert w in lines[0], (args, w, lines[0])
        assert r.stdout == "", (args, r.stdout)  # a bad --fail-on evaluates nothing, etc.
    # nothing was evaluated or stored by any of them
    assert Store(cli.db).load_alerts() == []

    # check-config --json on a broken file: machine-readable problems, still exit 2
    out = cli.json("--config", "unknown_type.yaml", "check-config", rc=2)
    assert out["ok"] is False and out["problems"][0].startswith("unknown_type.yaml:3: rules[0].type")


def test_cli_ingest_bad_lines_jsonl_and_strict(cli: CLI) -> None:
    (cli.cwd / "m.jsonl").write_text(
        '{"timestamp": "2026-01-01T00:00:00Z", "metric": "crew_task_seconds", "value": 1, "labels": {"agent": "a"}}\n'
        '{"timestamp": 1767225600, "metric": "crew_task_seconds", "value": NaN}\n'
        "not json\n"
        '{"timestamp": 1767225660, "metric": "crew_task_seconds", "value": 2, "labels": {"agent": "a"}}\n')
    r = cli("ingest", "m.jsonl", rc=0)  # good records kept; each bad one is one line naming file:line
    assert "2 samples stored in 1 series, 2 rejected" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert [ln.split("warning: ", 1)[1].split(": ", 1)[0] for ln in lines] == ["m.jsonl:2", "m.jsonl:3"], lines
    out = cli.json("ingest", "--strict", "m.jsonl", rc=1)  # --strict: a rejected record is a finding (exit 1)
    assert out["files"][0]["rejected"] == 2
    assert [e.split(": ")[0] for e in out["files"][0]["errors"]] == ["m.jsonl:2", "m.jsonl:3"]
    st = Store(cli.db)
    assert st.sample_count() == 2
    st.close()
    # the global --db option wins over PERF_ALERTS_DB
    cli("--db", "other.db", "ingest", "m.jsonl")
    other = Store(cli.cwd / "other.db")
    assert other.sample_count() == 2
    other.close()


RULE_TEST_PASS = """\
rule_files: [config/alerting.yaml]
evaluation_interval: 1m
tests:
  - name: researcher slow fires after for
    interval: 1m
    input_series:
      - series: 'crew_task_seconds{agent="researcher"}'
        values: '5x3 45x10'
      - series: 'crew_task_seconds{agent="writer"}'
        values: '45x14'
    alert_rule_test:
      - eval_time: 5m
        alertname: HighLatency
        exp_alerts: []
      - eval_time: 10m
        alertname: HighLatency
        exp_alerts:
          - exp_labels: {agent: researcher, severity: critical}
            exp_annotations: {summary: "researcher p95 task time 45s"}
"""

RULE_TEST_FAIL = """\
rule_files: [config/alerting.yaml]
tests:
  - name: expects an alert that never fires
    interval: 1m
    input_series:
      - series: 'crew_task_seconds{agent="researcher"}'
        values: '5+0x10 _ 5'
    alert_rule_test:
      - eval_time: 10m
        alertname: HighLatency
        exp_alerts:
          - exp_labels: {agent: researcher}
"""


def test_cli_test_rules_pass_and_fail(cli: CLI) -> None:
    (cli.cwd / "pass.yaml").write_text(RULE_TEST_PASS)
    (cli.cwd / "fail.yaml").write_text(RULE_TEST_FAIL)
    r = cli("test-rules", "pass.yaml", rc=0)
    assert "PASS" in r.stdout and "1 passed, 0 failed" in r.stdout
    out = cli.json("test-rules", "pass.yaml", "fail.yaml", rc=1)
    assert (out["passed"], out["failed"]) == (1, 1)
    failed = [t for t in out["tests"] if not t["passed"]]
    assert [t["file"] for t in failed] == ["fail.yaml"]
    assert "HighLatency" in failed[0]["failures"][0] and "researcher" in failed[0]["failures"][0]


def test_help_works_and_the_cli_does_not_import_crewai(tmp_path: Path, issue_rule_yaml: str) -> None:
    r = subprocess.run([sys.executable, "-m", "perf_alerts", "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    for cmd in ("ingest", "evaluate", "alerts", "ack", "analyze", "predict", "check-config", "test-rules", "backtest"):
        assert cmd in r.stdout, cmd
    assert "--config" in r.stdout and "--db" in r.stdout

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(issue_rule_yaml)
    script = """
import json, sys
import perf_alerts
after_import = sorted(m for m in sys.modules if m.split('.')[0] == 'crewai')
from perf_alerts.cli.main import main
codes = []
for argv in (['--help'], ['check-config'], ['alerts', '--json'], ['evaluate', '--no-notify', '--json']):
    sys.argv = ['perf-alerts', *argv]
    try:
        main()
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code or 0)
after_cli = sorted(m for m in sys.modules if m.split('.')[0] == 'crewai')
sys.stderr.write('RESULT ' + json.dumps({'import': after_import, 'cli': after_cli, 'codes': codes}) + '\\n')
"""
    env = {**os.environ, "PERF_ALERTS_DB": str(tmp_path / "x.db"), "PERF_ALERTS_CONFIG": str(cfg)}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    (res,) = [json.loads(x[len("RESULT "):]) for x in r.stderr.splitlines() if x.startswith("RESULT ")]
    assert res == {"import": [], "cli": [], "codes": [0, 0, 0, 0]}


@pytest.mark.parametrize("prefix", ["", "  ", "%", "_"])
def test_ack_with_an_empty_or_wildcard_prefix_matches_nothing(tmp_path: Path, issue_rule_yaml: str, prefix: str) -> None:
    """`perf-alerts ack "$UNSET"` must not acknowledge whatever alert happens to be the only one."""
    from perf_alerts.config import parse_config
    from perf_alerts.core import AlertNotFound, PerfAlerts

    s = PerfAlerts(config=parse_config(issue_rule_yaml, "a.yaml"), db=tmp_path / "a.db")
    s.record_many([{"metric": "crew_task_seconds", "value": 99, "timestamp": T0 + i, "labels": {"agent": "researcher"}}
                   for i in range(0, 300, 30)])
    s.evaluate(at=T0 + 300)
    assert len(s.alerts()) == 1
    with pytest.raises(AlertNotFound):
        s.ack(prefix)
