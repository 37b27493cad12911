"""Issue 13, the first hour of a new user: what the CLI prints is English, complete and in one
place — global options after the subcommand, --help without typer's type noise, counts with
the right plural, label sets as {a="b"}, times to the second, one-line errors that name the
option, config problems with their line, config warnings once.

In-process (typer's CliRunner) so the file stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from perf_alerts.cli.main import app
from perf_alerts.textsafe import plural

T0 = 1767225600  # 2026-01-01T00:00:00Z

RULES = """\
receivers:
  - name: ops
    discord:
      webhook_url: ${PA13_UNSET_WEBHOOK:-}
route:
  receiver: ops
rules:
  - name: Slow
    type: threshold
    metric: crew_task_seconds
    aggregate: max
    window: 5m
    op: ">"
    value: 30
    severity: warning
    annotations: {summary: "{{ labels.agent }} slow: {{ value }}s"}
  - name: VerySlow
    type: threshold
    metric: crew_task_seconds
    aggregate: max
    window: 5m
    op: ">"
    value: 60
    severity: critical
"""


class Run:
    def __init__(self, tmp_path: Path, config_text: str = RULES) -> None:
        self.dir = tmp_path
        self.cfg = tmp_path / "alerting.yaml"
        self.cfg.write_text(config_text)
        self.db = tmp_path / "first.db"

    def __call__(self, *args: str, rc: int = 0, global_first: bool = True) -> Any:
        glob = ["--config", str(self.cfg), "--db", str(self.db)]
        argv = [*glob, *args] if global_first else [*args, *glob]
        r = CliRunner().invoke(app, argv)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert r.exit_code == rc, (argv, r.exit_code, r.stdout, r.stderr)
        return r


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.delenv("PA13_UNSET_WEBHOOK", raising=False)
    monkeypatch.delenv("PERF_ALERTS_CONFIG", raising=False)
    monkeypatch.delenv("PERF_ALERTS_DB", raising=False)
    return Run(tmp_path)


def _csv(path: Path, rows: list[tuple[float, str, float, str]]) -> Path:
    path.write_text("timestamp,metric,value,agent\n" + "".join(f"{t},{m},{v},{a}\n" for t, m, v, a in rows))
    return path


def test_global_options_work_after_the_subcommand_too(run: Run) -> None:
    r = run("alerts", global_first=False)
    assert r.stdout.strip() == "no alerts"
    assert run.db.is_file()  # `alerts --db x.db` used x.db, not ./perf_alerts.db
    assert not (Path.cwd() / "perf_alerts.db").exists() or (Path.cwd() / "perf_alerts.db").stat().st_mtime < run.db.stat().st_mtime
    # --db=x and -c x forms, after a nested subcommand
    r = CliRunner().invoke(app, ["silence", "list", f"--db={run.db}", "-c", str(run.cfg)])
    assert r.exit_code == 0 and r.stdout.strip() == "no silences", r.stdout + r.stderr


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, cmd)]
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        out += _commands(sub, path + (name,))
    return out


def test_every_help_page_is_clean_and_every_option_is_described() -> None:
    root = typer.main.get_command(app)
    pages = _commands(root)
    assert len(pages) > 20
    for path, cmd in pages:
        r = CliRunner().invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.stdout)
        text = r.stdout
        noise = re.search(r"<(str|int|float|bool|Path|text|list\[[^>]*\])>|\{[a-z_]+\}", text)
        assert noise is None, (path, noise, text)
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and "--help" not in p.opts:
                assert p.help, f"perf-alerts {' '.join(path)} {max(p.opts, key=len)} has no description"
        if getattr(cmd, "commands", None):  # a group's list gives each command's whole first sentence
            listed = text.split("Commands:", 1)[1]
            assert "..." not in listed, (path, listed)
    ingest = CliRunner().invoke(app, ["ingest", "--help"]).stdout
    assert "Usage: perf-alerts ingest [OPTIONS] FILES..." in ingest
    analyze = CliRunner().invoke(app, ["analyze", "--help"]).stdout
    assert re.search(r"--at TIME\s+As of this time", analyze) and re.search(r"--agent NAME\s+Only the series", analyze)
    assert re.search(r"--json\s+Machine-readable", analyze)


def test_counts_read_as_english() -> None:
    assert [plural(n, "rule") for n in (0, 1, 2)] == ["0 rules", "1 rule", "2 rules"]
    assert plural(1, "series", "series") == "1 series" and plural(1234, "sample") == "1,234 samples"
    assert plural(1, "predicted breach", "predicted breaches") == "1 predicted breach"


def test_reports_and_notifications_count_in_english_not_with_parenthesised_plurals() -> None:
    """The demo printed "2 critical incident(s)", "1 recommendation(s)", "1 alert(s) firing": the same
    counts a person reads in the summary, a Discord title and `analyze` go through plural()."""
    from perf_alerts.analytics.health import period_health

    one = period_health([], {"count": 2, "critical": 1, "warning": 1, "total_minutes": 20, "critical_minutes": 5}, 80.0)
    assert "1 critical incident (5 min) and no SLO data to judge the period by" in one.reasons, one.reasons
    two = period_health([], {"count": 2, "critical": 0, "warning": 2, "total_minutes": 20, "critical_minutes": 0}, 80.0)
    assert "2 warning incidents, 20 min" in two.reasons, two.reasons
    src = Path(__file__).resolve().parents[1] / "src" / "perf_alerts"
    lazy = [f"{f.relative_to(src)}:{i}" for f in sorted(src.rglob("*.py"))
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"\b(incident|recommendation|alert)\(s\)", line)]
    assert lazy == [], lazy


def test_evaluate_counts_distinct_series_and_speaks_english(run: Run) -> None:
    # two rules over the same 2 series: 2 series, not 4 (rule × series)
    _csv(run.dir / "a.csv", [(T0 + 60 * i, "crew_task_seconds", 5, a) for i in range(3) for a in ("x", "y")])
    run("ingest", str(run.dir / "a.csv"))
    r = run("evaluate", "--no-notify", "--at", str(T0 + 180))
    assert "evaluated 2 rules over 2 series at 2026-01-01T00:03:00Z: 0 firing, 0 pending, 0 transitions" in r.stdout


def test_reingesting_says_what_was_new_and_what_was_replaced(run: Run) -> None:
    f = _csv(run.dir / "a.csv", [(T0 + 60 * i, "crew_task_seconds", 5, "x") for i in range(3)])
    r = run("ingest", str(f))
    assert "3 samples stored in 1 series, 0 rejected" in r.stdout and "replaced" not in r.stdout
    r = run("ingest", str(f))
    assert "3 samples (0 new, 3 replaced a stored sample at the same time) stored in 1 series" in r.stdout
    d = run("ingest", str(f), "--json")
    assert '"replaced": 3' in d.stdout


def test_a_negative_duration_is_rejected_naming_the_line(run: Run) -> None:
    f = _csv(run.dir / "neg.csv", [(T0, "crew_task_seconds", -3, "x"), (T0 + 60, "crew_task_seconds", 4, "x"),
                                   (T0 + 60, "crew_cost_usd_delta", -1, "x")])
    r = run("ingest", str(f))
    assert "2 samples stored in 2 series, 1 rejected" in r.stdout
    assert "neg.csv:2:" in r.stderr and "crew_task_seconds is a duration" in r.stderr and "negative" in r.stderr
    jl = run.dir / "neg.jsonl"
    jl.write_text('{"timestamp": %d, "metric": "crew_llm_seconds", "value": -0.5, "labels": {}}\n' % T0)
    r = run("ingest", str(jl), rc=2)  # its only record rejected: nothing usable is bad input
    assert "0 samples stored" in r.stdout and "neg.jsonl:1:" in r.stderr and "cannot be negative" in r.stderr
    from perf_alerts.core import PerfAlerts
    from perf_alerts.errors import InputError

    pa = PerfAlerts(config=str(run.cfg), db=str(run.db))
    with pytest.raises(InputError, match="cannot be negative"):
        pa.record("crew_task_seconds", -1.0, {"agent": "x"}, ts=T0)
    assert pa.record_many([{"metric": "crew_tool_seconds", "value": -2, "timestamp": T0}]).rejected == 1


def test_collect_prints_label_sets_not_python_dicts(run: Run) -> None:
    r = run("collect")
    assert r.stdout.strip() and "{'" not in r.stdout and "':" not in r.stdout
    assert re.search(r'^host_\w+\{host="[^"]+"', r.stdout, re.M), r.stdout


def test_silence_and_ack_times_are_to_the_second(run: Run) -> None:
    r = run("silence", "add", "agent=x", "--duration", "1h")
    until = re.search(r"until (\S+):", r.stdout)
    assert until and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", until.group(1)), r.stdout


def test_ack_uses_the_time_the_alerts_were_evaluated_at(run: Run) -> None:
    _csv(run.dir / "a.csv", [(T0 + 60 * i, "crew_task_seconds", 45, "x") for i in range(5)])
    run("ingest", str(run.dir / "a.csv"))
    run("evaluate", "--no-notify", "--at", str(T0 + 120))
    from perf_alerts.store import Store

    fp = next(a.fingerprint for a in Store(run.db).load_alerts() if a.rule == "Slow")
    r = run("ack", fp, "--at", str(T0 + 300))
    assert "at 2026-01-01T00:05:00Z" in r.stdout
    stats = run("history", "--json").stdout
    assert '"mean_seconds": 180' in stats.replace("180.0", "180")  # MTTA 3 min, not "4d23h"


def test_ack_without_at_on_a_replayed_store_is_the_same_in_the_cli_and_the_api(run: Run) -> None:
    # one rule in the service layer (PerfAlerts.ack_time): the API's ack and the dashboard's button
    # acknowledge as of the last evaluation too, not the wall clock (MTTA would read years)
    _csv(run.dir / "a.csv", [(T0 + 60 * i, "crew_task_seconds", 45, a) for i in range(5) for a in ("x", "y")])
    run("ingest", str(run.dir / "a.csv"))
    run("evaluate", "--no-notify", "--at", str(T0 + 120))
    from perf_alerts.config import load_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.store import Store

    fps = sorted(a.fingerprint for a in Store(run.db).load_alerts() if a.rule == "Slow")
    r = run("ack", fps[0])
    assert "acknowledged as of the last evaluation (2026-01-01T00:02:00Z)" in r.stderr, r.stderr
    assert "at 2026-01-01T00:02:00Z" in r.stdout
    api = PerfAlerts(load_config(run.cfg), Store(run.db))  # the service call behind POST /alerts/{fp}/ack
    assert api.ack(fps[1], by="dashboard").acknowledged_at == T0 + 120
    again = run("ack", fps[0])
    assert "already acknowledged at 2026-01-01T00:02:00Z" in again.stdout and not again.stderr.strip()


def test_time_option_errors_name_the_option(run: Run) -> None:
    r = run("evaluate", "--no-notify", "--at", "yesterday", rc=2)
    assert r.stderr.startswith("perf-alerts: error: --at: ") and "now-1h" in r.stderr
    r = run("history", "--since", "last week", rc=2)
    assert r.stderr.startswith("perf-alerts: error: --since: ")


def test_config_warnings_are_shown_once_per_config_and_by_check_config(run: Run) -> None:
    first = run("evaluate", "--at", str(T0))
    assert first.stderr.count("no Discord webhook URL") == 1
    again = run("evaluate", "--at", str(T0 + 60))
    assert "no Discord webhook URL" not in again.stderr
    deliver = run("deliver")
    assert "no Discord webhook URL" not in deliver.stderr
    check = run("check-config")
    assert "no Discord webhook URL" in check.stderr and "OK (2 rules)" in check.stdout


@pytest.mark.parametrize(("yaml_text", "expected", "absent"), [
    ("rules:\n  - name: A\n    type: threshold\n    metrc: m\n    op: '>'\n    value: 1\n",
     ["alerting.yaml:4: rules[0].metrc: unknown field 'metrc'; did you mean 'metric'?"], ["Field required"]),
    ("rules:\n  - name: A\n    type: threshold\n    metric: m\n    op: '=>'\n    value: 1\n",
     ["alerting.yaml:5: rules[0].op: invalid value '=>' (did you mean '>='?)"], []),
    ("rules:\n  - name: A\n    type: threshold\n    metric: m\n    op: '>'\n    value: 1\n"
     "    annotations:\n      summary: 'x'\n      description: '{{ valeu }} over {{ threshold | rnd(1) }}'\n",
     ["alerting.yaml:9: rules[0].annotations.description (rule A): unknown template variable {{ valeu }}",
      "unknown template filter | rnd", "{{ window }}", "{{ detail.NAME }}", "| upper", "| lower"], []),
])
def test_check_config_problems_are_clear_and_have_a_line(tmp_path: Path, yaml_text: str, expected: list[str],
                                                         absent: list[str]) -> None:
    run = Run(tmp_path, yaml_text)
    r = run("check-config", rc=2)
    for e in expected:
        assert e in r.stderr, (e, r.stderr)
    for a in absent:
        assert a not in r.stderr, (a, r.stderr)


def test_an_empty_config_warns(tmp_path: Path) -> None:
    r = Run(tmp_path, "rules: []\n")("check-config")
    assert "OK (0 rules)" in r.stdout and "no rules: nothing is evaluated" in r.stderr


RULE_TEST_FAIL = """\
tests:
  - name: wrong expectation
    interval: 1m
    input_series:
      - series: 'crew_task_seconds{agent="x"}'
        values: '45x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: Slow
        exp_alerts:
          - exp_labels: {agent: y, severity: warning}
"""


def test_test_rules_failures_read_like_promtool(run: Run) -> None:
    (run.dir / "t.yaml").write_text(RULE_TEST_FAIL)
    r = run("test-rules", str(run.dir / "t.yaml"), rc=1)
    assert "alertname: Slow, time: 5m" in r.stdout
    assert 'exp:' in r.stdout and 'labels: {agent="y", alertname="Slow", severity="warning"}' in r.stdout
    assert 'got:' in r.stdout and 'labels: {agent="x", alertname="Slow", severity="warning"}' in r.stdout
    assert "{'" not in r.stdout and "annotations: {summary=" in r.stdout


def test_a_breach_prediction_notification_says_which_series_rule_when_and_how_sure(tmp_path: Path) -> None:
    """Issue 13: "A threshold breach is predicted within 6h — Condition … holds (breaches = 2 …)" named
    no metric, rule or time. The policy notification now leads with the facts."""
    import json
    import textwrap

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.policies import PolicyEngine
    from perf_alerts.timeutil import ManualClock

    now = 1_800_000_000.0
    cfg = parse_config(textwrap.dedent("""
        rules:
          - {name: SlowTasks, type: threshold, metric: crew_task_seconds, aggregate: last, window: 10m, op: ">",
             value: 30, severity: critical}
        receivers: [{name: ops, console: {}}]
        route: {receiver: ops, group_wait: 0s}
        policies:
          - name: breach-predicted
            when: "breaches > 0 and firing.critical == 0"
            actions: [{type: notify, severity: warning, title: "A threshold breach is predicted within 6h"}]
    """), "alerting.yaml", env={})
    pa = PerfAlerts(cfg, db=tmp_path / "p.db", clock=ManualClock(now))
    # 5 hours climbing steadily from 10 s to 28 s: 30 s is about half an hour away
    pa.record_many([{"metric": "crew_task_seconds", "value": 10 + 18 * i / 59, "timestamp": now - 5 * 3600 + i * 300,
                     "labels": {"agent": "researcher"}} for i in range(60)])
    ex = PolicyEngine(pa).evaluate()
    assert [(e.policy, e.result) for e in ex] == [("breach-predicted", "ok")]
    [body] = [json.loads(b) for (b,) in pa.store.con.execute("SELECT body FROM notifications WHERE kind = 'policy'")]
    text = json.dumps(body, ensure_ascii=False)
    assert body["title"] == "A threshold breach is predicted within 6h"
    assert "rule SlowTasks (> 30)" in text  # which rule, and its threshold
    assert 'crew_task_seconds{agent=\\"researcher\\"}' in text  # which series
    assert re.search(r"predicted in \d+m\d*s? \(at 2027-01-15 08:\d\d UTC\)", text), text  # when, to the minute
    assert re.search(r"probability \d+%", text), text  # how sure
    assert "Policy breach-predicted: condition breaches > 0 and firing.critical == 0 holds" in text
    assert "`" not in text


def test_out_directories_that_cannot_be_used_are_one_line_errors(run: Run) -> None:
    (run.dir / "afile").write_text("x")
    for args, needle in ((["summary", "--out", "/proc/nope"], "--out: cannot create the directory /proc/nope"),
                         (["demo", "--fast", "--out", str(run.dir / "afile")], "exists and is not a directory")):
        r = run(*args, rc=2)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("perf-alerts: error: ") and needle in lines[0], r.stderr


def test_analyze_on_an_empty_store_says_no_data_once(run: Run) -> None:
    r = run("analyze")
    assert "overall health now (the last 1h vs the 1d before): no data\n" in r.stdout
    assert "no data (no data)" not in r.stdout
    assert re.search(r"^window \S+Z → \S+Z; 0 series$", r.stdout, re.M) and ".0" not in r.stdout.splitlines()[0]


def test_a_change_against_the_previous_window_needs_more_than_one_sample() -> None:
    import numpy as np

    from perf_alerts.analytics.trend import trend

    t = np.arange(10.0) * 60
    one = trend(t, np.full(10, 23.17), previous=np.array([10.0]))
    assert one.change_pct is None  # not "+131.7% vs the previous 2h" from one sample
    five = trend(t, np.full(10, 20.0), previous=np.full(5, 10.0))
    assert five.change_pct == pytest.approx(100.0)


def test_a_policy_preview_shows_only_the_values_its_condition_read(tmp_path: Path) -> None:
    """`optimize` printed "firing.critical=no data" for a variable the condition never read (`and`
    stopped early): a count is never "no data"."""
    import textwrap

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.policies import PolicyEngine

    cfg = parse_config(textwrap.dedent("""
        policies:
          - name: p
            when: "firing.total > 0 and firing.critical > 0"
            actions: [{type: notify}]
    """), "alerting.yaml", env={})
    [outcome] = PolicyEngine(PerfAlerts(cfg, db=tmp_path / "p.db")).run(apply=False)
    assert (outcome.matched, outcome.values) == (False, {"firing.total": 0})


def test_a_file_with_no_valid_record_is_bad_input(run: Run, tmp_path: Path) -> None:
    """Every record rejected: exit 2 and one line saying nothing was stored (the API answers 400)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"metric": "m", "value": "x"}\n{"metric": "m", "value": 1e400}\n', encoding="utf-8")
    r = run("ingest", str(bad), rc=2)
    assert "no sample stored: all 2 records were rejected" in r.stderr
    good = tmp_path / "mixed.jsonl"
    good.write_text('{"metric": "m", "value": 1, "timestamp": 1767225600}\n{"metric": "m", "value": "x"}\n',
                    encoding="utf-8")
    run("ingest", str(good), rc=0)  # good data around a bad record: kept, exit 0


def test_a_dry_run_action_says_what_it_would_do() -> None:
    from perf_alerts.cli.manage_cmd import _execution_text

    ex = {"action": "python", "target": "pkg.mod:restart", "dry_run": True, "result": "dry-run", "audit_id": None,
          "detail": {"would_call": "pkg.mod:restart", "params": {"agent": "writer"}, "imported": False}}
    text = _execution_text(ex)
    assert text == ('python pkg.mod:restart: dry run, would call pkg.mod:restart with {"agent": "writer"} '
                    '(not enabled: set enabled: true on the action to run it)')
    # without --apply every action is a dry run: no hint to enable an action that may be enabled
    assert _execution_text(ex, applied=False) == ('python pkg.mod:restart: dry run, would call pkg.mod:restart '
                                                  'with {"agent": "writer"}')
    live = {**ex, "dry_run": False, "result": "ok", "detail": {}}
    assert _execution_text(live) == "python pkg.mod:restart: ok"


def test_ack_after_the_evaluator_stopped_is_now_not_backdated(tmp_path: Path) -> None:
    # a daemon that crashed (or lost its lease) two hours ago did not replay history: the dashboard's
    # ack is at the clock's now, or MTTA would read 0 (review of the ack_time change)
    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.model import AlertState
    from perf_alerts.store import Store
    from perf_alerts.timeutil import ManualClock

    clock = ManualClock(T0)
    cfg = parse_config("rules:\n  - {name: Slow, type: threshold, metric: lat, aggregate: last, window: 10m, "
                       "op: '>', value: 30}\n", "c.yaml", env={})
    pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
    pa.record("lat", 50.0, {"agent": "a"})
    pa.evaluate()  # live: at the clock's now
    clock.set(T0 + 2 * 3600 + 1)
    fp = pa.alerts([AlertState.FIRING])[0].fingerprint
    assert pa.ack_time() == (T0 + 2 * 3600 + 1, False)
    assert pa.ack(fp, by="dashboard").acknowledged_at == T0 + 2 * 3600 + 1


def test_an_absent_alerts_value_reads_as_a_duration(tmp_path: Path) -> None:
    # an absent rule's value is the time since the series' last sample: "2h0m", not 7200
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app
    from perf_alerts.core import PerfAlerts
    from perf_alerts.store import Store

    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  - {name: Silent, type: absent, metric: lat, window: 30m, lookback: 1d}\n", encoding="utf-8")
    db = tmp_path / "s.db"
    PerfAlerts(str(cfg), Store(db)).record("lat", 1.0, {"agent": "a"}, ts=T0)
    glob = ["--config", str(cfg), "--db", str(db)]
    r = CliRunner().invoke(app, [*glob, "evaluate", "--no-notify", "--at", str(T0 + 7200)])
    assert r.exit_code == 0 and "value=2h" in r.output, r.output
    r = CliRunner().invoke(app, [*glob, "alerts"])
    assert r.exit_code == 0 and "2h" in r.output and "7200" not in r.output, r.output
