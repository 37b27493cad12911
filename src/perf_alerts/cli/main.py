"""`perf-alerts`: thin commands over `perf_alerts.core.PerfAlerts`.

Exit codes: 0 ok, 1 a finding the user asked to fail on (firing alerts with
`--fail-on`, failing rule tests), 2 bad usage, bad input or bad config. User mistakes
print one clear line, never a traceback. Heavy imports happen inside the commands so
`perf-alerts --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from perf_alerts.cli import crew_cmd, import_cmd, manage_cmd, slo_cmd, web_cmd
from perf_alerts.cli import output as out
from perf_alerts.cli._common import app, state, system
from perf_alerts.errors import InputError
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import parse_duration_arg

__all__ = ["app", "main"]

if TYPE_CHECKING:
    from perf_alerts.notify.pipeline import DeliveryOutcome


# --------------------------------------------------------------------------- metrics in


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., help="CSV (timestamp,metric,value,+labels) or JSONL files."),
    fmt: Optional[str] = typer.Option(None, "--format", help="csv or jsonl (default: from the extension)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any record was rejected."),
) -> None:
    """Load metric samples from files; bad records are reported by line, good ones kept."""
    import time

    s = system()
    reports = []
    t0 = time.perf_counter()
    for f in files:
        if as_json or not sys.stderr.isatty():
            rep = s.ingest(f, fmt)
        else:
            from rich.markup import escape
            from rich.progress import Progress, SpinnerColumn, TextColumn

            from perf_alerts.textsafe import terminal_safe

            shown = escape(terminal_safe(str(f), newlines=False))  # a file name is data: no markup, no controls
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as prog:
                task = prog.add_task(f"ingesting {shown}", total=None)
                rep = s.ingest(f, fmt, progress=lambda n: prog.update(task, description=f"ingesting {shown}: {n:,} lines"))
        reports.append(rep)
    elapsed = time.perf_counter() - t0
    rejected = sum(r.rejected for r in reports)
    if as_json:
        out.emit_json({"files": [r.to_dict() for r in reports], "seconds": round(elapsed, 3)})
    else:
        for r in reports:
            stored = plural(r.accepted, "sample")
            if r.replaced:
                stored += f" ({r.accepted - r.replaced:,} new, {r.replaced:,} replaced a stored sample at the same time)"
            out.line(f"{r.source}: {stored} stored in {plural(r.series, 'series', 'series')}, {r.rejected:,} rejected")
            for e in r.errors:
                out.warn(str(e))
            if r.rejected > len(r.errors):
                out.warn(f"{r.source}: … and {r.rejected - len(r.errors):,} more rejected records")
    if rejected and not any(r.accepted for r in reports):
        # nothing usable at all is bad input (exit 2), like the API's 400 for a batch with no valid record
        out.error(f"no sample stored: all {rejected:,} records were rejected (see the lines above)")
        raise typer.Exit(2)
    if strict and rejected:
        raise typer.Exit(1)


@app.command()
def collect(as_json: bool = typer.Option(False, "--json")) -> None:
    """Record one reading of the host metrics (CPU, memory, disk)."""
    samples = system().collect_host(cpu_interval=0.2)
    if as_json:
        out.emit_json([{"metric": x.metric, "labels": x.labels, "value": x.value} for x in samples])
    else:
        for x in samples:
            out.line(f"{x.metric}{_fmt_labels(x.labels)} {x.value:.1f}")


# --------------------------------------------------------------------------- alerts


def _parse_at(at: Optional[str], option: str = "--at") -> Optional[float]:
    """A time option (`--at`, `--since`): ISO 8601, Unix seconds, now, now-1h; an error names the option."""
    if at is None:
        return None
    from perf_alerts.timeutil import SystemClock, TimeParseError, check_unix, parse_time_arg

    try:
        return check_unix(parse_time_arg(at, SystemClock()), at)  # also `now+…` beyond what can be shown
    except TimeParseError as e:
        raise InputError(f"{option}: {e}; relative times are now-1h, now-2d") from None


WORST_SHOWN = 20  # transitions `evaluate` prints when a cycle has more (all of them with --all / --json)


@app.command()
def evaluate(
    at: Optional[str] = typer.Option(None, "--at", help="Evaluation time: ISO 8601, Unix seconds, now, now-1h."),
    group: Optional[str] = typer.Option(None, "--group", help="Only rules of this group."),
    no_notify: bool = typer.Option(False, "--no-notify", help="Do not send notifications."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 if an alert of this severity (or worse) is firing."),
    show_all: bool = typer.Option(False, "--all", help=f"Print every transition (default: more than {WORST_SHOWN} are "
                                  f"summarised as counts per rule and state plus the worst {WORST_SHOWN})."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run one evaluation cycle of the rules and show what changed."""
    if fail_on:
        _fail_on(fail_on, [])  # a bad level is a usage error before anything is evaluated
    s = system()
    groups = sorted({r.group for r in s.config.rules})
    if group is not None and group not in groups:
        raise InputError(f"--group: no rule is in group {group!r}; groups: {', '.join(groups) or 'none'}")
    when = _parse_at(at)
    last = s.store.kv_get("last_evaluation")
    if when is not None and last and when < float(last.get("at", 0)):
        out.warn(f"--at {_iso(when)} is earlier than the last evaluation ({_iso(float(last['at']))}): "
                 "alert history will be out of order")
    res = s.evaluate(at=when, group=group)
    delivery = None
    if not no_notify:
        from perf_alerts.notify.pipeline import deliver_evaluation

        _warn_config_once(s)
        # console notifications go to stderr when stdout carries JSON
        delivery = deliver_evaluation(s, res, console_write=out.stderr_line if as_json else None)
    if as_json:
        d = res.to_dict()
        from perf_alerts.notify.mute import muting

        d["alerts"] = [v.to_dict() for v in s.views_of(res.active, muting, now=res.at)]  # as `alerts --json` shows them
        if delivery is not None:
            d["notifications"] = delivery.to_dict()
        out.emit_json(d)
    else:
        out.lines(_transition_lines(res.transitions, show_all, _rule_types(s)))
        firing = sum(1 for a in res.active if a.state.value == "firing")
        pending = sum(1 for a in res.active if a.state.value == "pending")
        failed = f", {plural(len(res.errors), 'rule')} failed (below)" if res.errors else ""
        out.line(f"evaluated {plural(res.rules, 'rule')} over {plural(res.series, 'series', 'series')} at {_iso(res.at)}: "
                 f"{firing} firing, {pending} pending, {plural(len(res.transitions), 'transition')}{failed}")
        for e in res.errors:
            out.warn(e)
        if delivery is not None:
            _print_delivery(delivery)
    if fail_on:
        _fail_on(fail_on, res.active)


_EVENT_ORDER = ("firing", "pending", "resolved", "cancelled")


def _transition_lines(transitions: list[Any], show_all: bool, types: dict[str, str] | None = None) -> list[str]:
    """What `evaluate` prints for a cycle's transitions: every one when there are at most
    WORST_SHOWN (or with --all), in the order they happened; else (an alert storm: thousands of
    lines nobody reads) the counts per rule and state, the worst WORST_SHOWN (critical, then
    warning, info; firing before pending, resolved, cancelled) and how many more there are."""

    def fmt(t: Any) -> str:
        return (f"{t.event:9} {t.alert.severity.value:8} {t.alert.rule} {_fmt_labels(t.alert.labels)} "
                f"value={_fmt_value(t.alert.value, (types or {}).get(t.alert.rule))}")

    if show_all or len(transitions) <= WORST_SHOWN:
        return [fmt(t) for t in transitions]
    counts: dict[str, dict[str, int]] = {}
    severity: dict[str, Any] = {}
    for t in transitions:
        by_event = counts.setdefault(t.alert.rule, {})
        by_event[t.event] = by_event.get(t.event, 0) + 1
        severity.setdefault(t.alert.rule, t.alert.severity)
    events = [e for e in _EVENT_ORDER if any(e in c for c in counts.values())]
    events += sorted({e for c in counts.values() for e in c} - set(events))
    rules = sorted(counts, key=lambda r: (-severity[r].rank, r))
    width = max(len(r) for r in rules)
    cols = [max(len(e), *(len(f"{c.get(e, 0):,}") for c in counts.values())) for e in events]
    head = f"  {'rule':{width}}  {'severity':8}  " + "  ".join(f"{e:>{w}}" for e, w in zip(events, cols))
    rows = [f"  {r:{width}}  {severity[r].value:8}  " + "  ".join(f"{counts[r].get(e, 0):>{w},}" for e, w in zip(events, cols))
            for r in rules]
    rank = {e: i for i, e in enumerate(_EVENT_ORDER)}
    worst = sorted(transitions, key=lambda t: (-t.alert.severity.rank, rank.get(t.event, len(rank))))[:WORST_SHOWN]
    more = len(transitions) - len(worst)
    return [f"{len(transitions):,} transitions per rule and state:", head, *rows,
            f"worst {len(worst)}:", *(fmt(t) for t in worst),
            f"… and {more:,} more {'transition' if more == 1 else 'transitions'} (--all or --json shows every one)"]


CONFIG_WARNINGS_KEY = "cli.config_warnings_shown"


def _warn_config_once(s: Any) -> None:
    """The config's warnings (a receiver without a webhook URL, …) once per config and store, not on
    every `evaluate` / `deliver`: what was shown is remembered in the store's kv (per config file, by
    the warnings' digest, so a new or changed warning is shown again). `check-config` always lists them."""
    import hashlib

    warnings = list(s.config.warnings)
    if not warnings:
        return
    digest = hashlib.sha256("\n".join(warnings).encode()).hexdigest()[:16]
    shown = s.store.kv_get(CONFIG_WARNINGS_KEY) or {}
    if shown.get(s.config.source) == digest:
        return
    for w in warnings:
        out.warn(w)
    out.warn("(config warnings are shown once per config; `perf-alerts check-config` lists them again)")
    s.store.kv_set(CONFIG_WARNINGS_KEY, {**shown, s.config.source: digest})


def _print_delivery(o: "DeliveryOutcome") -> None:
    r = o.delivery
    created = len(o.plan.created) if o.plan else len(o.notifications or [])
    if created or r.delivered or o.still_pending or r.dead or r.failed:
        out.line(f"notifications: {created} queued, {r.delivered} delivered, {r.dead} dead, "
                 f"{o.still_pending} still pending, {plural(r.failed, 'failed attempt')} ({plural(r.requests, 'request')}, "
                 f"{r.rate_limited} rate-limited)")
    else:
        out.line("notifications: nothing due, nothing pending")
    for name, reason in o.disabled.items():
        out.error(f"receiver {name} is DISABLED ({reason}); fix its webhook and restart — nothing is sent to it")
    for e in r.errors[:5]:
        out.warn(e)


def _fail_on(level: str, alerts: list[Any]) -> None:
    from perf_alerts.model import AlertState, Severity

    try:
        sev = Severity(level)
    except ValueError:
        raise InputError(f"--fail-on: unknown severity {level!r}; valid: critical, warning, info") from None
    if any(a.state == AlertState.FIRING and a.severity.rank >= sev.rank for a in alerts):
        raise typer.Exit(1)


def _iso(ts: Optional[float]) -> str:
    from perf_alerts.timeutil import iso

    return "-" if ts is None else (iso(float(int(ts))) or "-")  # to the second: people read these


_to_second = out.to_second


def _fmt_labels(labels: dict[str, str]) -> str:
    """A label set as Prometheus writes it: {agent="researcher", crew="c1"}."""
    from perf_alerts.rules.testing import fmt_label_set

    return fmt_label_set({k: v for k, v in labels.items() if k not in ("alertname", "severity")})


def _fmt_value(v: Optional[float], rule_type: str | None = None) -> str:
    """An alert's value as a person reads it: an `absent` rule's is the time since the series'
    last sample ("2h0m", not 7200), any other the number."""
    from perf_alerts.rules.template import fmt_number
    from perf_alerts.timeutil import format_duration

    if v is None:
        return "-"
    return format_duration(v) if rule_type == "absent" else fmt_number(v)


def _rule_types(s: Any) -> dict[str, str]:
    return {r.name: r.type for r in s.config.alerting_rules()}


@app.command("alerts")
def alerts_cmd(
    state_: Optional[str] = typer.Option(None, "--state", help="pending, firing, resolved, active (pending+firing) or all."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List alerts, worst first, with whether they are acknowledged, silenced or inhibited."""
    from perf_alerts.model import parse_alert_states
    from perf_alerts.notify.mute import muting

    s = system()
    views = s.alert_views(parse_alert_states(state_, "--state"), muting)
    types = _rule_types(s)
    if as_json:
        out.emit_json([v.to_dict() for v in views])
        return
    if not views:
        out.line("no alerts")
        return
    out.table(None, ["fingerprint", "state", "severity", "rule", "labels", "value", "since", "flags"], [
        (v.fingerprint, v.alert.state.value, v.alert.severity.value, v.alert.rule, _fmt_labels(v.alert.labels),
         _fmt_value(v.alert.value, types.get(v.alert.rule)), _iso(v.since), ", ".join(v.flags))
        for v in views
    ])


@app.command()
def ack(
    fingerprint: str = typer.Argument(..., help="Alert fingerprint (a unique prefix is enough)."),
    by: str = typer.Option(os.environ.get("USER", "cli"), "--by", help="Who acknowledges."),
    at: Optional[str] = typer.Option(None, "--at", help="Acknowledge as of this time (default: now); "
                                     "use the --at the alert was evaluated with when replaying history."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Acknowledge an alert (stops its escalation)."""
    s = system()
    when = _parse_at(at)
    replayed = False
    if when is None:
        when, replayed = s.ack_time()  # as of the last evaluation when the store holds replayed history
    already = s.resolve_fingerprint(fingerprint).acknowledged  # acknowledging twice keeps the first one
    a = s.ack(fingerprint, by=by, at=when)
    if replayed and not already:
        out.warn(f"acknowledged as of the last evaluation ({_iso(when)}), not the wall clock; pass --at to choose")
    if as_json:
        out.emit_json(a.to_dict())
    elif already:
        out.line(f"{a.fingerprint} ({a.rule}) was already acknowledged at {_iso(a.acknowledged_at)} "
                 f"by {a.acknowledged_by}")
    else:
        out.line(f"acknowledged {a.fingerprint} ({a.rule}) at {_iso(a.acknowledged_at)} by {a.acknowledged_by}")


@app.command()
def history(
    since: Optional[str] = typer.Option(None, "--since", help="e.g. now-7d"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Alert statistics from history: episodes, MTTA and MTTR per rule and severity."""
    st = system().alert_stats(since=_parse_at(since, "--since"))
    if as_json:
        out.emit_json(st.to_dict())
        return
    from perf_alerts.timeutil import format_duration

    out.line(f"{plural(st.episodes, 'firing episode')}; MTTA {format_duration(st.mtta.mean_seconds)}, "
             f"MTTR {format_duration(st.mttr.mean_seconds)}")
    out.table(None, ["rule", "severity", "fired", "MTTA", "MTTR"], [
        (r.rule, r.severity, r.fired, format_duration(r.mtta.mean_seconds), format_duration(r.mttr.mean_seconds))
        for r in st.by_rule
    ])


# --------------------------------------------------------------------------- analytics


@app.command()
def analyze(
    lookback: str = typer.Option("24h", "--lookback", help="Window to analyse."),
    agent: Optional[str] = typer.Option(None, "--agent"),
    labels: Optional[str] = typer.Option(None, "--labels", help="Only series with these labels: crew=c1,task=report."),
    at: Optional[str] = typer.Option(None, "--at"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Health (overall and per agent), findings, trends and anomalies."""
    from perf_alerts.model import parse_label_filter

    rep = system().analyze(lookback=parse_duration_arg(lookback, "--lookback"), agent=agent,
                           labels=parse_label_filter(labels, "--labels") or None, at=_parse_at(at))
    if as_json:
        out.emit_json(rep.to_dict())
        return
    h = rep.health.to_dict()  # scores as shown: rounded to 0.1
    out.line(f"window {_to_second(rep.window.start)} → {_to_second(rep.window.end)}; "
             f"{plural(rep.series_analyzed, 'series', 'series')}")
    # health judges the last hour against the rest of the lookback: it is "now", not the whole window's
    # (the executive summary gives health over a period)
    over = f"now (the last {rep.window.recent} vs the {rep.window.lookback} before)"
    out.line(f"overall health {over}: " + ("no data" if h["score"] is None else f"{h['score']} ({h['status']})"))
    for c in h["components"]:
        out.line(f"  {c['name']:10} {c['score'] if c['score'] is not None else '-':>6}  {c['evidence']}")
    if rep.agents:
        agents = {name: ah.to_dict() for name, ah in rep.agents.items()}
        out.table("agents", ["agent", "health", "status", "weakest"], [
            (name, d["score"], d["status"],
             min((c for c in d["components"] if c["score"] is not None), key=lambda c: c["score"], default={"evidence": "-"})["evidence"])
            for name, d in agents.items()
        ])
    if rep.findings:
        out.line("findings:")
        for f in rep.findings:
            out.line(f"  - {f}")


@app.command()
def predict(
    horizon: str = typer.Option("6h", "--horizon"),
    lookback: str = typer.Option("24h", "--lookback"),
    agent: Optional[str] = typer.Option(None, "--agent"),
    labels: Optional[str] = typer.Option(None, "--labels", help="Only series with these labels: crew=c1,task=report."),
    at: Optional[str] = typer.Option(None, "--at"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Forecasts and predicted threshold breaches with time-to-breach."""
    from perf_alerts.model import parse_label_filter

    rep = system().predict(horizon=parse_duration_arg(horizon, "--horizon"),
                           lookback=parse_duration_arg(lookback, "--lookback"), agent=agent,
                           labels=parse_label_filter(labels, "--labels") or None, at=_parse_at(at))
    if as_json:
        out.emit_json(rep.to_dict())
        return
    out.line(f"at {_to_second(rep.at)}: {plural(rep.series_forecast, 'series', 'series')} forecast {rep.horizon} ahead "
             f"({rep.series_skipped} with fewer than {rep.min_points} samples in the last {rep.lookback})")
    now = [b for b in rep.breaches if b.status == "breaching"]
    ahead = [b for b in rep.breaches if b.status != "breaching"]
    if now:
        out.table("breaching now", ["series", "rule", "threshold", "last value"], [
            (b.series, b.rule, b.threshold, b.last_value) for b in now
        ])
    if not ahead:
        out.line(f"no {'further ' if now else ''}threshold breach predicted within {rep.horizon}")
        return
    out.table("predicted breaches", ["series", "rule", "threshold", "in", "at", "predicted peak", "probability"], [
        (b.series, b.rule, b.threshold, b.time_to_breach, b.breach_at or "-", b.value, b.probability)
        for b in ahead
    ])


# --------------------------------------------------------------------------- rules


@app.command("check-config")
def check_config(as_json: bool = typer.Option(False, "--json")) -> None:
    """Validate the configuration; exit 2 with file:line:field on a problem."""
    from perf_alerts.config import ConfigError, config_source_note, load_config, resolve_config_path
    from perf_alerts.rules.template import template_problems

    path = resolve_config_path(state.config)
    note = config_source_note(state.config)  # e.g. ./config/alerting.yaml picked up from the working directory
    if note:
        out.stderr_line(f"perf-alerts: {note}")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        if as_json:
            out.emit_json({"ok": False, "config": str(path), "problems": e.problems})
        else:
            for p in e.problems:
                out.error(p)
        raise typer.Exit(2) from None
    problems = _template_problems(path, cfg, template_problems)
    if not as_json:
        for w in cfg.warnings:  # shown once by evaluate / deliver; here every time
            out.warn(w)
        if not cfg.rules:
            out.warn(f"{path}: no rules: nothing is evaluated and no alert can ever fire")
    if as_json:
        out.emit_json({"ok": not problems, "config": str(path), "rules": len(cfg.rules), "problems": problems,
                       "warnings": list(cfg.warnings) + ([] if cfg.rules else ["no rules"])})
    else:
        for p in problems:
            out.error(p)
        if not problems:
            out.line(f"{path}: OK ({plural(len(cfg.rules), 'rule')})")
            for line in _time_interval_lines(cfg, time.time()):
                out.line(line)
    if problems:
        raise typer.Exit(2)


def _time_interval_lines(cfg: Any, now: float) -> list[str]:
    """One line per time interval: which routes it mutes or activates, and whether it is open now, so
    a business-hours or maintenance window can be checked before it silently holds a page back."""
    from perf_alerts.notify.timeintervals import in_interval

    uses = cfg.time_interval_uses()
    lines = []
    for name, specs in cfg.time_interval_map().items():
        state_now = "in the interval now" if in_interval(specs, now) else "outside it now"
        lines.append(f"time interval {name!r}: {'; '.join(uses[name]) or 'used by no route'} ({state_now})")
    return lines


def _template_problems(path: Path, cfg: Any, check: Any) -> list[str]:
    """file:line: rules[i].annotations.KEY: the problem, for every annotation template of the config."""
    from perf_alerts.config import yaml_lines

    try:
        marks, data = yaml_lines(path.read_text(encoding="utf-8"))
    except Exception:  # the packaged default or an unreadable file: no line numbers, the problems still
        marks, data = {}, {}
    raw_rules = data.get("rules") if isinstance(data, dict) else None
    index = {r.get("name"): i for i, r in enumerate(raw_rules or []) if isinstance(r, dict)}
    problems = []
    for r in cfg.rules:
        i = index.get(r.name)
        for k, v in r.annotations.items():
            for p in check(v):
                line = marks.get(("rules", i, "annotations", k)) if i is not None else None
                where = f"{path}:{line}" if line else f"{path}"
                problems.append(f"{where}: rules[{i if i is not None else '?'}].annotations.{k} (rule {r.name}): {p}")
    return problems


@app.command("test-rules")
def test_rules(
    files: list[Path] = typer.Argument(..., help="Rule test files (promtool-style YAML)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run rule unit tests; exit 1 when a test fails."""
    from perf_alerts.config import load_config
    from perf_alerts.rules.testing import run_rule_tests

    results = []
    for f in files:
        # the active config is loaded only for test files that do not name their own rule_files
        results.append((str(f), run_rule_tests(f, lambda: load_config(state.config))))
    failed = sum(1 for _, rs in results for r in rs if not r.passed)
    total = sum(len(rs) for _, rs in results)
    if as_json:
        out.emit_json({"passed": total - failed, "failed": failed,
                       "tests": [{"file": f, "name": r.name, "passed": r.passed, "failures": r.failures}
                                 for f, rs in results for r in rs]})
    else:
        for fname, rs in results:
            for r in rs:
                out.line(f"{'PASS' if r.passed else 'FAIL'} {fname}: {r.name}")
                for msg in r.failures:
                    for ln in msg.split("\n"):  # promtool's layout: exp and got on lines of their own
                        out.line(f"     {ln}")
        out.line(f"{total - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def backtest(
    start: Optional[str] = typer.Option(None, "--start", help="Default: the first stored sample."),
    end: Optional[str] = typer.Option(None, "--end", help="Default: the last stored sample."),
    step: Optional[str] = typer.Option(None, "--step", help="Default: global.evaluation_interval."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replay stored history through the rules: how many alerts each rule would have raised."""
    s = system()
    step_s = parse_duration_arg(step, "--step") if step else None
    if as_json or not sys.stderr.isatty():
        rep = s.backtest(_parse_at(start, "--start"), _parse_at(end, "--end"), step_s)
    else:
        from rich.console import Console
        from rich.progress import Progress

        # on stderr (the terminal the test above checked), so stdout stays the report alone
        with Progress(console=Console(stderr=True), transient=True) as prog:
            task = prog.add_task("replaying", total=None)
            rep = s.backtest(_parse_at(start, "--start"), _parse_at(end, "--end"), step_s,
                             progress=lambda i, n: prog.update(task, completed=i, total=n))
    if as_json:
        out.emit_json(rep.to_dict())
        return
    if rep.error is not None:
        out.line(rep.error)
        return
    out.line(f"replayed {_to_second(rep.start)} → {_to_second(rep.end)} every {rep.step} ({plural(rep.evaluations, 'evaluation')}): "
             f"{plural(rep.total_alerts, 'alert')}")
    out.table(None, ["rule", "type", "severity", "alerts", "per day", "series", "firing time", "error"], [
        (r.rule, r.type, r.severity, r.alerts, r.alerts_per_day, r.distinct_series, r.firing_time, r.error or "")
        for r in rep.rows
    ])


# --------------------------------------------------------------------------- notifications


@app.command()
def notifications(
    state_: Optional[str] = typer.Option(None, "--state", help="pending, failed, delivered or dead."),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Notifications in the outbox with their delivery state (newest first)."""
    from perf_alerts.notify.pipeline import list_notifications

    listing = list_notifications(system(), state_, limit)
    items, disabled = listing.items, listing.disabled
    if as_json:
        out.emit_json([n.to_dict() for n in items])
        return
    for name, reason in disabled.items():
        out.error(f"receiver {name} is DISABLED: {reason}")
    if not items:
        out.line("no notifications")
        return
    out.table(None, ["id", "receiver", "kind", "state", "attempts", "alerts", "message ids", "created", "error"], [
        (n.id, n.receiver, n.kind, n.state_text, n.attempts, len(n.fingerprints), ",".join(n.message_ids)[:40],
         _iso(n.created_at), (n.last_error or "")[:60]) for n in items
    ])


@app.command()
def deliver(
    deadline: Optional[str] = typer.Option(None, "--deadline", help="Keep retrying this long (default delivery.cli_deadline)."),
    at: Optional[str] = typer.Option(None, "--at", help="Plan as of this time (default: now): group timers and "
                                     "time intervals are judged then; use the --at the alerts were evaluated with "
                                     "when replaying history."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Send the notifications that are due (after an outage, or a run with --no-notify)."""
    from perf_alerts.notify.pipeline import deliver_due

    s = system()
    _warn_config_once(s)
    limit = parse_duration_arg(deadline, "--deadline") if deadline else None
    d = deliver_due(s, at=_parse_at(at), console_write=out.stderr_line if as_json else None, deadline=limit)
    if as_json:
        out.emit_json(d.to_dict())
    else:
        _print_delivery(d)


silence_app = typer.Typer(help="Silence alerts by label matchers for a while (persisted).", no_args_is_help=True)
app.add_typer(silence_app, name="silence")


@silence_app.command("add")
def silence_add(
    matchers: Optional[list[str]] = typer.Argument(None, help='Matchers like agent=researcher or alertname=~"High.*".'),
    duration: str = typer.Option("2h", "--duration", "-d", help="How long it lasts from --start (ignored with --end)."),
    start: Optional[str] = typer.Option(None, "--start", help="When it starts (default: now), e.g. a maintenance "
                                        "window ahead, or the --at of a replayed history; as amtool's --start."),
    end: Optional[str] = typer.Option(None, "--end", help="When it ends (default: --start + --duration)."),
    comment: str = typer.Option("", "--comment", "-m"),
    by: str = typer.Option(os.environ.get("USER", "cli"), "--by"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a silence (from now, or from --start)."""
    from perf_alerts.errors import InputError
    from perf_alerts.notify.silence import add_silence

    if not matchers:  # one line, as every other usage error (typer would print its usage block)
        raise InputError('silence add: give at least one matcher, e.g. agent=researcher or alertname=~"High.*"')
    s = system()
    now = s.clock.now()
    begins = _parse_at(start, "--start")
    begins = now if begins is None else begins
    ends = _parse_at(end, "--end")
    if ends is None:
        ends = begins + parse_duration_arg(duration, "--duration", lo=1.0)
    elif ends <= begins:
        raise InputError(f"--end: {_iso(ends)} is not after the start {_iso(begins)}")
    sil = add_silence(s.store, matchers, begins, ends, by, comment, now)
    if as_json:
        out.emit_json(sil.to_dict(now))
    else:
        out.line(f"silence {sil.id} until {_iso(sil.ends_at)}: {', '.join(sil.to_dict()['matchers'])}")


@silence_app.command("list")
def silence_list(
    all_: bool = typer.Option(False, "--all", help="Include expired silences."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List silences."""
    from perf_alerts.notify.silence import list_silences

    s = system()
    now = s.clock.now()
    items = [x for x in list_silences(s.store) if all_ or x.state(now) != "expired"]
    if as_json:
        out.emit_json([x.to_dict(now) for x in items])
        return
    if not items:
        out.line("no silences")
        return
    out.table(None, ["id", "state", "matchers", "starts", "ends", "by", "comment"], [
        (x.id, x.state(now), ", ".join(x.to_dict()["matchers"]), _iso(x.starts_at), _iso(x.ends_at), x.created_by,
         x.comment) for x in items
    ])


@silence_app.command("expire")
def silence_expire(silence_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """End a silence now."""
    from perf_alerts.notify.silence import expire_silence

    s = system()
    sil = expire_silence(s.store, silence_id, s.clock.now())
    if as_json:
        out.emit_json(sil.to_dict(s.clock.now()))
    else:
        out.line(f"silence {sil.id} expired")


@app.command()
def summary(
    period: str = typer.Option("7d", "--period", help="The period the summary covers, ending now (or --at)."),
    at: Optional[str] = typer.Option(None, "--at"),
    send: bool = typer.Option(False, "--send", help="Deliver it to the receivers routed for executive summaries."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write Markdown, HTML, JSON and the PNG chart here."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Executive summary: health and its change, alerts, MTTA/MTTR, trends, forecasts, recommendations."""
    from perf_alerts.manage.report import build_summary, send_summary, write_summary

    s = system()
    if out_dir is not None:
        _writable_dir(out_dir)
    data, md, png = build_summary(s, parse_duration_arg(period, "--period", lo=1.0), at=_parse_at(at),
                                  chart=bool(send or out_dir))
    result: dict[str, Any] = {"summary": data.to_dict()}
    if out_dir is not None:
        result["files"] = write_summary(out_dir, data, md, png)
    if send:
        _warn_config_once(s)
        sent = send_summary(s, data, md, png, console_write=out.stderr_line if as_json else None)
        result["delivery"] = sent.to_dict()
    if as_json:
        out.emit_json(result)
        return
    out.block(md)
    for kind, path in result.get("files", {}).items():
        out.line(f"wrote {kind}: {path}")
    if send:
        _print_delivery(sent)


def _writable_dir(path: Path, option: str = "--out") -> None:
    """`--out DIR` exists as a directory (created if missing) before any work, or one clear error line."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{option}: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option}: cannot create the directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"{option}: the directory {path} is not writable")


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-output"), "--out", help="Where the demo writes its outputs."),
    fast: bool = typer.Option(False, "--fast", help="A shorter simulated period (for tests)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Simulate a day of a three-agent crew with an incident and run it through the real pipeline."""
    from perf_alerts.demo import run_demo

    _writable_dir(out_dir)
    rep = run_demo(out_dir=out_dir, db=state.db, config=state.config, fast=fast, echo=None if as_json else out.line)
    if as_json:
        out.emit_json(rep)


# the commands of the other modules (they import cli._common, never this module)
app.add_typer(crew_cmd.crew_app, name="crew")  # crewai is imported inside its commands only
app.command("dashboard")(web_cmd.dashboard)  # fastapi/uvicorn imported inside
manage_cmd.register(app)  # run, status, optimize, schedules, policies, audit
slo_cmd.register(app)  # slo
import_cmd.register(app)  # import-alertmanager


def main() -> None:
    app()


if __name__ == "__main__":
    main()
