"""The demo: a simulated day of a three-agent crew with an incident, run through the real
pipeline — store, rules, alert state, schedules, policies, notifications, the crew tool,
the executive summary — on an accelerated injected clock.

Nothing it prints is written in advance: the timeline is read back from the store after
the run (alert events, the outbox, the action audit), so it is consistent with it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from perf_alerts.config import load_config
from perf_alerts.core import PerfAlerts
from perf_alerts.simulate import simulate_crew
from perf_alerts.store import Store
from perf_alerts.store.backend import is_postgres_url
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import ManualClock, SystemClock, format_duration, iso

TOOL_ACTIONS = ("analyze", "alerts", "optimize", "predict", "executive_summary", "dashboard")
ACK_AFTER = 20 * 60.0  # the simulated on-call person acknowledges the first critical alert after 20 minutes


def _drive(system: PerfAlerts, clock: ManualClock, sim: Any, step: float, console: Callable[[str], None]) -> int:
    """Feed the samples as they 'arrive' and run one daemon cycle per step of simulated time."""
    from perf_alerts.manage.daemon import Daemon

    daemon = Daemon(system, http=False, collect_host=False, console_write=console)
    samples = sim.samples
    i, n, t, ticks = 0, len(samples), sim.start, 0
    acked = False

    async def loop() -> None:
        nonlocal i, t, ticks, acked
        while t <= sim.end:
            j = i
            while j < n and samples[j].ts <= t:
                j += 1
            if j > i:
                system.store.insert_samples(samples[i:j])
                i = j
            clock.set(t)
            await daemon.tick(t)
            ticks += 1
            if not acked:
                crit = [a for a in system.alerts(["firing"]) if a.severity.value == "critical"
                        and a.started_at is not None and t - a.started_at >= ACK_AFTER]
                if crit:
                    system.ack(crit[0].fingerprint, by="demo:on-call")
                    acked = True
            t += step

    try:
        asyncio.run(loop())
    finally:
        daemon.leadership.leave()  # the demo's daemon is no replica once it is done: no lease or row left behind
    return ticks


def _timeline(system: PerfAlerts) -> list[dict[str, Any]]:
    """Alerts, escalations, acknowledgements, notifications and policy actions, in time order, from the store."""
    from perf_alerts.manage.actions import audit_log
    from perf_alerts.notify.outbox import Outbox

    rows: list[dict[str, Any]] = []
    alerts = {a.fingerprint: a for a in system.store.load_alerts()}
    for e in system.store.events():
        if e["event"] not in ("firing", "resolved", "escalated", "acknowledged"):
            continue
        a = alerts.get(e["fingerprint"])
        who = a.labels.get("agent") or a.labels.get("host") or "" if a else ""
        if a and a.labels.get("slo"):  # two SLOs' burn alerts on one agent are two alerts: say which
            who = f"{who} ({a.labels['slo']})" if who else a.labels["slo"]
        detail = e["detail"] or ""
        rows.append({"ts": e["ts"], "kind": "alert" if e["event"] in ("firing", "resolved") else e["event"],
                     "text": f"{e['event']:<12} {e['severity']:<8} {e['rule']} {who} {detail}".rstrip()})
    for nt in Outbox(system.store).recent(limit=10_000):
        d = nt.to_dict()
        what = d["title"] or f"{d['firing']} firing, {d['resolved']} resolved"
        rows.append({"ts": nt.created_at, "kind": "notification",
                     "text": f"notify → {nt.receiver:<10} {nt.kind:<10} {what} [{nt.state}]"})
    for act in audit_log(system, limit=1000):
        ts = act.get("ts") if isinstance(act.get("ts"), (int, float)) else None
        rows.append({"ts": ts if ts is not None else _ts(act.get("at")), "kind": "action",
                     "text": f"policy {act.get('policy')} → {act.get('action')} ({'dry-run' if act.get('dry_run') else 'live'}): "
                             f"{act.get('result')}"})
    rows.sort(key=lambda r: (r["ts"] or 0.0))
    for r in rows:
        r["at"] = iso(r["ts"])
    return rows


def _ts(text: Any) -> float:
    from perf_alerts.timeutil import parse_timestamp

    try:
        return parse_timestamp(text)
    except Exception:
        return 0.0


def _tool_calls(system: PerfAlerts, hours: float) -> list[dict[str, Any]]:
    """Every tool action, called the way an agent does (tool.run with keyword arguments)."""
    try:
        from perf_alerts.crew import AdvancedPerformanceAnalyticsTool
    except ImportError as e:  # crewai is an optional extra
        return [{"action": a, "status": "skip", "note": f"crewai not installed ({e})"} for a in TOOL_ACTIONS]
    tool = AdvancedPerformanceAnalyticsTool(system=system)
    out = []
    for action in TOOL_ACTIONS:
        kwargs: dict[str, Any] = {"action": action, "lookback_hours": hours}
        if action == "predict":
            kwargs["horizon_hours"] = 6
        res = tool.run(**kwargs)
        text = res.to_json() if hasattr(res, "to_json") else json.dumps(res, default=str)
        out.append({"action": action, "status": getattr(res, "status", "?"), "chars": len(text),
                    "data": getattr(res, "data", None), "error": getattr(res, "error", None)})
    return out


def _tool_line(call: dict[str, Any]) -> str:
    d = call.get("data") or {}
    a = call["action"]
    if call["status"] != "ok":
        return f"{a:<18} {call['status']}: {call.get('error') or call.get('note')}"
    if a == "analyze":
        h = d.get("health", {})  # the last hour against the rest of the lookback: say "now", as everywhere
        return (f"{a:<18} ok: health now {h.get('score')} ({h.get('status')}), "
                f"{plural(len(d.get('findings', [])), 'finding')}")
    if a == "alerts":
        return f"{a:<18} ok: {d.get('firing', len(d.get('alerts', [])))} firing, {d.get('pending', 0)} pending"
    if a == "optimize":
        return f"{a:<18} ok: {plural(len(d.get('recommendations', [])), 'recommendation')}"
    if a == "predict":
        return f"{a:<18} ok: {plural(len(d.get('breaches', [])), 'predicted breach', 'predicted breaches')}"
    if a == "executive_summary":
        p = d.get("health", {}).get("over_the_period", {})  # a day with critical incidents is not "healthy" here
        return (f"{a:<18} ok: health over the period {p.get('score')} ({p.get('status')}), "
                f"{plural(d.get('alerts', {}).get('fired_total') or 0, 'alert')} fired in it")
    return f"{a:<18} ok: {call['chars']:,} characters of JSON"


def run_demo(out_dir: Path = Path("demo-output"), db: str | None = None, config: str | None = None,
             fast: bool = False, echo: Callable[[str], None] | None = print, step: float = 300.0,
             with_tool: bool = True) -> dict[str, Any]:
    say = echo or (lambda _s: None)
    t_wall = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    # a postgresql:// URL stays a URL (Path() would fold its "//" into a file name)
    db_path: Path | str = (db if is_postgres_url(db) else Path(db)) if db else out_dir / "demo.db"
    if not db:
        for suffix in ("", "-wal", "-shm"):  # the demo's own scratch store starts empty each run
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    cfg = load_config(config)
    hours = 8.0 if fast else 24.0
    # the day ends at the last 5-minute mark (SLO buckets are 5-minute aligned) and its load wave is
    # its own (day_starts_at=start): the same series and alerts whatever the hour the demo runs at
    end = math.floor(SystemClock().now() / 300.0) * 300.0
    start = end - hours * 3600.0
    sim = simulate_crew(start, hours, day_starts_at=start)
    clock = ManualClock(start)
    store = Store(db_path)
    system = PerfAlerts(cfg, store, clock)

    receivers = {r.name: r.kind for r in cfg.receivers}
    say(f"perf-alerts demo: {hours:g}h of a 3-agent crew ({len(sim.samples):,} samples), one daemon cycle every "
        f"{format_duration(step)} of simulated time; receivers: "
        + ", ".join(f"{k}={v}" for k, v in receivers.items()))
    for w in cfg.warnings:
        say(f"  note: {w}")
    for inc in sim.incidents:
        say(f"  injected: {inc.describe()}")

    console_lines: list[str] = []
    ticks = _drive(system, clock, sim, step, console_lines.append)
    (out_dir / "notifications.txt").write_text("\n\n".join(console_lines) + "\n", encoding="utf-8")

    # everything runs first; what is printed is then read back from the store
    tool_calls = _tool_calls(system, hours) if with_tool else []
    from perf_alerts.manage.report import build_summary, send_summary, write_summary

    summary, md, png = build_summary(system, hours * 3600.0)
    files = write_summary(out_dir, summary, md, png)
    delivery = send_summary(system, summary, md, png, console_write=console_lines.append)
    timeline = _timeline(system)

    say("")
    say("timeline (simulated time):")
    for r in timeline:
        say(f"  {r['at'][11:19]}  {r['text']}")
    if tool_calls:
        say("")
        say("the crew tool, called as an agent calls it:")
        for c in tool_calls:
            say("  " + _tool_line(c))
    stats = system.alert_stats()
    h = summary.health
    say("")
    if summary.slos:
        say(f"SLOs over the {summary.period['length']} (objective · achieved · error budget left · burn, last hour):")
        for r in summary.slos:
            say(f"  {r['series']:<34} {r['objective_display']:>9} · {r['achieved_display']:>9} · "
                f"{r['budget_left_display']:>7} · {r['burn_display']:>7}  {r['status']}")
    incidents: dict[str, Any] = summary.incidents
    for i in incidents.get("list", []):
        say(f"incident {i['start_text']}, {i['duration_text']}, {i['severity']}: {', '.join(i['rules'])}"
            + (f" on {', '.join(i['agents'])}" if i["agents"] else "")
            + (f"; SLOs broken: {', '.join(i['slos'])}" if i["slos"] else "; no SLO broken")
            + (f"; budget burned fast (held): {', '.join(i['slos_burned'])}" if i.get("slos_burned") else ""))
    say(f"health over the period {h.get('period_score')} ({h.get('period_status')}): "
        + "; ".join(h.get("period_reasons") or []))
    say(f"health now (the last hour) {h['score']} ({h['status']}); {summary.alerts['fired_total']} alerts fired; "
        f"MTTA {format_duration(stats.mtta.mean_seconds)}, MTTR {format_duration(stats.mttr.mean_seconds)}")
    say(f"executive summary: {', '.join(files.values())} (delivered: {delivery.delivered})")

    report = {
        "simulated": {"start": iso(start), "end": iso(end), "hours": hours, "samples": len(sim.samples),
                      "incidents": [inc.describe() for inc in sim.incidents]},
        "ticks": ticks,
        "timeline": timeline,
        "alerts": [a.to_dict() for a in system.alerts()],
        "alert_stats": stats.to_dict(),
        "slos": summary.slos,
        "incidents": summary.incidents,
        "tool_calls": [{k: v for k, v in c.items() if k != "data"} for c in tool_calls],
        "summary_files": files,
        "summary_delivery": delivery.to_dict(),
        "db": store.display,
        "wall_seconds": round(time.perf_counter() - t_wall, 2),
    }
    (out_dir / "demo-report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "notifications.txt").write_text("\n\n".join(console_lines) + "\n", encoding="utf-8")
    say(f"wrote {out_dir}/ (demo-report.json, notifications.txt, executive-summary.*) and the store {store.display} "
        f"in {report['wall_seconds']}s")
    return report
