"""Executive summary for a period: health and its change, alerts, MTTA/MTTR, noisiest rules,
worst agents, trends, forecasts and recommendations — as an `ExecutiveSummary` (`to_dict()`: JSON) and as Markdown.

Built only from the façade (`PerfAlerts.analyze`, `.predict`, `.alert_stats`) and
`analytics.recommend.optimize`, so it says exactly what the CLI and the dashboard say.
HTML, PNG chart and Discord embeds are rendered from it elsewhere (`manage.report`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from perf_alerts.analytics.health import period_health
from perf_alerts.analytics.slo import human_time, iso_seconds
from perf_alerts.model import AlertState, Severity
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import format_duration

if TYPE_CHECKING:
    from perf_alerts.alerts.history import AlertStats
    from perf_alerts.core import PerfAlerts

TOP = 5


@dataclass
class _PastAlert:
    """The few fields `insights.agent_health` reads, rebuilt from the alert history."""

    state: AlertState
    severity: Severity
    labels: dict[str, str]


def _firing_at(system: "PerfAlerts", t: float) -> list[_PastAlert]:
    """Alerts that were firing at time `t`, from the event log (labels from the alert table when kept)."""
    from perf_alerts.alerts.history import episodes

    out: list[_PastAlert] = []
    for ep in episodes(system.store.events(None, t)):
        if ep["fired_at"] <= t and (ep["resolved_at"] is None or ep["resolved_at"] > t):
            a = system.store.get_alert(ep["fingerprint"])
            out.append(_PastAlert(AlertState.FIRING, Severity(ep["severity"]), dict(a.labels) if a else {}))
    return out


def _fired_between(system: "PerfAlerts", start: float, end: float) -> list[_PastAlert]:
    """Every alert episode that fired in [start, end], once each."""
    from perf_alerts.alerts.history import episodes

    out: list[_PastAlert] = []
    for ep in episodes(system.store.events(None, end)):
        if start <= ep["fired_at"] <= end:
            a = system.store.get_alert(ep["fingerprint"])
            out.append(_PastAlert(AlertState.FIRING, Severity(ep["severity"]), dict(a.labels) if a else {}))
    return out


@dataclass(frozen=True)
class ExecutiveSummary:
    """The executive summary of a period. The top-level fields are typed; the rows inside them stay
    JSON-shaped dicts (the SLO rows, incidents, cost, agents, trends, breaches ... are read by key by
    every renderer and served as they are). `to_dict()` is the JSON `GET /api/v1/summary`, the CLI
    and the crew tool show, key for key and in this order; `title` is set by `report.build_summary`
    (absent from the dict when None)."""

    period: dict[str, Any]  # start, end (ISO), length, start_text, end_text
    health: dict[str, Any]  # now (score, status, previous_score, change, components) and over the period
    agents: list[dict[str, Any]]  # agent, score, status, previous_score, change, weakest; weakest first
    worst_agents: list[dict[str, Any]]
    alerts: dict[str, Any]  # fired_by_severity, fired_total, firing_now, firing_now_by_severity, firing_now_rules
    mtta: dict[str, Any]  # alert_stats' mtta plus its text
    mttr: dict[str, Any]
    mtta_mttr_by_severity: dict[str, dict[str, Any]]
    noisiest_rules: list[dict[str, Any]]  # rule, severity, fired
    slos: list[dict[str, Any]]  # SLO rows over the period, with their display texts (`slo_table`)
    slos_now: list[dict[str, Any]]  # the same over each SLO's own window
    incidents: dict[str, Any]  # `incident_report`
    cost: list[dict[str, Any]]  # `cost_report`
    trends: list[dict[str, Any]]
    forecasts: dict[str, Any]  # horizon, breaches
    recommendations: list[dict[str, Any]]  # title, priority, action
    findings: list[str]
    risks: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        if d["title"] is None:
            del d["title"]
        return d


def _change(cur: float | None, prev: float | None) -> float | None:
    return None if cur is None or prev is None else round(cur - prev, 1)


def executive_summary(system: "PerfAlerts", period_seconds: float = 86400.0, at: float | None = None,
                      horizon_seconds: float | None = None, top: int = TOP) -> ExecutiveSummary:
    """The summary of the `period_seconds` ending at `at` (default now), compared with the period before."""
    from perf_alerts import insights
    from perf_alerts.analytics.recommend import optimize

    at = system.clock.now() if at is None else at
    period = float(period_seconds)
    start = at - period
    horizon = horizon_seconds if horizon_seconds is not None else min(period, 6 * 3600.0)

    rep = system.analyze(lookback=period, at=at)
    past_alerts = _firing_at(system, start)
    # the period as a whole (not only its last hour): this period against the one before, with
    # every alert that fired in it counted
    fired_in_period = _fired_between(system, start, at)
    whole = insights.agent_health(system.store, system.config, at, 2 * period, fired_in_period,  # type: ignore[arg-type]
                                  recent=period)
    prev_overall = insights.agent_health(system.store, system.config, start, period, past_alerts)  # type: ignore[arg-type]
    health_now = rep.health.to_dict()  # scores as shown: rounded to 0.1
    cur_score = health_now["score"]
    prev_score = None if prev_overall.score is None else round(prev_overall.score, 1)

    agents: list[dict[str, Any]] = []
    for name, agent_h in rep.agents.items():
        h = agent_h.to_dict()
        prev_h = insights.agent_health(system.store, system.config, start, period, past_alerts, name)  # type: ignore[arg-type]
        ps = None if prev_h.score is None else round(prev_h.score, 1)
        weakest = min((c for c in h["components"] if c["score"] is not None), key=lambda c: c["score"], default=None)
        agents.append({"agent": name, "score": h["score"], "status": h["status"], "previous_score": ps,
                       "change": _change(h["score"], ps),
                       "weakest": None if weakest is None else f"{weakest['name']}: {weakest['evidence']}"})
    agents.sort(key=lambda d: (d["score"] is None, d["score"] if d["score"] is not None else 0.0))

    stats = system.alert_stats(since=start, until=at)
    firing_now = [a for a in system.alerts([AlertState.FIRING])]
    by_sev = {sev: stats.by_severity[sev].fired for sev in ("critical", "warning", "info")}
    firing_by_sev = {sev: sum(1 for a in firing_now if a.severity.value == sev) for sev in ("critical", "warning", "info")}

    pred = system.predict(horizon=horizon, lookback=period, at=at)
    opt = optimize(system, lookback=period, at=at, top=top)

    worsening = [t for t in rep.trends if t.verdict == "worsening"][:top]
    slo_rows = slo_table(system, at, period)
    slo_now = slo_table(system, at, None)
    incidents = incident_report(system, start, at, slo_rows, stats)
    whole_score = None if whole.score is None else round(whole.score, 1)
    verdict = period_health([r for r in slo_rows], incidents, whole_score)
    mtta = {**stats.mtta.to_dict(), "text": format_duration(stats.mtta.mean_seconds)}
    mttr = {**stats.mttr.to_dict(), "text": format_duration(stats.mttr.mean_seconds)}
    summary = ExecutiveSummary(
        period={"start": iso_seconds(start), "end": iso_seconds(at), "length": format_duration(period),
                "start_text": human_time(start), "end_text": human_time(at)},
        health={
            "score": cur_score, "status": health_now["status"], "previous_score": prev_score,
            "change": _change(cur_score, prev_score),
            "period_score": None if verdict.score is None else round(verdict.score, 1), "period_status": verdict.status,
            "period_reasons": verdict.reasons, "period_component_score": whole_score,
            "period_components": [c.to_dict() for c in whole.components],
            "components": [{"name": c["name"], "score": c["score"], "evidence": c["evidence"]}
                           for c in health_now["components"]],
        },
        agents=agents,
        worst_agents=[a for a in agents if a["score"] is not None][:3],
        alerts={
            "fired_by_severity": by_sev, "fired_total": sum(by_sev.values()),
            "firing_now": len(firing_now), "firing_now_by_severity": firing_by_sev,
            "firing_now_rules": sorted({a.rule for a in firing_now})[:top],
        },
        mtta=mtta, mttr=mttr,
        mtta_mttr_by_severity={sev: {"mtta": v.mtta.to_dict(), "mttr": v.mttr.to_dict()}
                               for sev, v in stats.by_severity.items() if v.fired},
        noisiest_rules=[{"rule": r.rule, "severity": r.severity, "fired": r.fired}
                        for r in stats.by_rule[:top]],
        slos=slo_rows,
        slos_now=slo_now,
        incidents=incidents,
        cost=cost_report(slo_rows, slo_now),
        trends=[{"series": t.series, "verdict": t.verdict, "slope_per_hour": t.slope_per_hour,
                 "change_pct": t.change_pct, "p_value": t.p_value,
                 "unit": _unit(system, t.series),
                 "text": _trend_text(t.to_dict(), _unit(system, t.series))} for t in worsening],
        forecasts={"horizon": pred.horizon, "breaches": [
            {"series": b.series, "rule": b.rule, "threshold": b.threshold, "time_to_breach": b.time_to_breach,
             "breach_at": b.breach_at, "probability": b.probability}
            for b in pred.breaches[:top]]},
        recommendations=[{"title": r["title"], "priority": r["priority"], "action": r["action"]}
                         for r in opt["recommendations"][:top]],
        findings=list(rep.findings[:top]),
    )
    summary = replace(summary, risks=_risks(summary))
    return replace(summary, headline=_headline(summary))


# --------------------------------------------------------------------------- SLOs, incidents, cost


def burn_text(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def left_text(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def slo_table(system: "PerfAlerts", at: float, window: float | None) -> list[dict[str, Any]]:
    """The SLO rows (per split value) with the texts every rendering shows, so all show the same."""
    from perf_alerts.analytics.slo import slo_statuses

    rows = []
    for st in slo_statuses(system.store, system.config, at, window):
        d = st.to_dict()
        d["series"] = st.series()
        d["objective_display"] = st.objective_value_text()
        d["achieved_display"] = st.achieved_text()
        d["budget_left_display"] = left_text(st.budget_remaining)
        d["burn_display"] = burn_text(st.burn_rate)
        d["exhausted_display"] = human_time(st.exhausted_at) or "—"
        rows.append(d)
    return rows


def incident_report(system: "PerfAlerts", start: float, end: float, slo_rows: list[dict[str, Any]],
                    stats: "AlertStats") -> dict[str, Any]:
    """Incidents in [start, end]: the time a critical or warning alert was firing (overlapping alerts merged
    into one incident), from the alert event history; with the rules, agents and SLOs each involved."""
    from perf_alerts.alerts.history import episodes

    eps = []
    for ep in episodes(system.store.events(None, end)):
        if ep["severity"] not in ("critical", "warning"):
            continue
        a, b = ep["fired_at"], ep["resolved_at"] if ep["resolved_at"] is not None else end
        if b < start or a > end:
            continue
        alert = system.store.get_alert(ep["fingerprint"])
        eps.append({"start": max(a, start), "end": min(b, end), "ongoing": ep["resolved_at"] is None or ep["resolved_at"] > end,
                    "severity": ep["severity"], "rule": ep["rule"], "labels": dict(alert.labels) if alert else {}})
    eps.sort(key=lambda e: e["start"])
    merged: list[dict[str, Any]] = []
    for e in eps:
        if merged and e["start"] <= merged[-1]["end"]:
            m = merged[-1]
            m["end"] = max(m["end"], e["end"])
            m["ongoing"] = m["ongoing"] or e["ongoing"]
            m["eps"].append(e)
        else:
            merged.append({"start": e["start"], "end": e["end"], "ongoing": e["ongoing"], "eps": [e]})
    breached = [r for r in slo_rows if r["status"] == "breached"]
    out = []
    for m in merged:
        sev = "critical" if any(e["severity"] == "critical" for e in m["eps"]) else "warning"
        agents = sorted({e["labels"]["agent"] for e in m["eps"] if e["labels"].get("agent")})
        burning = {_slo_series(system, e["labels"]) for e in m["eps"] if e["labels"].get("slo")}
        # the SLOs this incident broke: breached over the period, and raised by its burn alerts or, on an agent
        # of the incident, overspent while it lasted (an agent's breach elsewhere in the period is not this
        # incident's); the others whose budget it burned fast (a burn alert fired) but that held
        slos = {r["series"] for r in breached if r["series"] in burning}
        same_agent = [r for r in breached if r["series"] not in slos
                      and r["labels"].get("agent") and r["labels"].get("agent") in agents]
        slos |= _overspent_during(system, same_agent, m["start"], m["end"])
        minutes = (m["end"] - m["start"]) / 60.0
        out.append({"start": iso_seconds(m["start"]), "end": iso_seconds(m["end"]), "start_text": human_time(m["start"]),
                    "minutes": round(minutes, 1), "duration_text": format_duration(m["end"] - m["start"]),
                    "severity": sev, "ongoing": m["ongoing"], "rules": sorted({e["rule"] for e in m["eps"]}),
                    "agents": agents, "slos": sorted(slos), "slos_burned": sorted(burning - slos)})
    # incident minutes: the union of the episodes of that severity (a critical and a warning at once count once)
    def union_minutes(sevs: tuple[str, ...]) -> float:
        total, cur_a, cur_b = 0.0, None, None
        for e in (x for x in eps if x["severity"] in sevs):
            if cur_b is None or e["start"] > cur_b:
                if cur_b is not None and cur_a is not None:
                    total += cur_b - cur_a
                cur_a, cur_b = e["start"], e["end"]
            else:
                cur_b = max(cur_b, e["end"])
        if cur_a is not None and cur_b is not None:
            total += cur_b - cur_a
        return total / 60.0

    total = union_minutes(("critical", "warning"))
    crit_min = union_minutes(("critical",))
    longest = max((i["minutes"] for i in out), default=0.0)
    return {
        "count": len(out), "critical": sum(1 for i in out if i["severity"] == "critical"),
        "warning": sum(1 for i in out if i["severity"] == "warning"),
        "total_minutes": round(total, 1), "critical_minutes": round(crit_min, 1), "longest_minutes": round(longest, 1),
        "total_text": format_duration(total * 60.0), "longest_text": format_duration(longest * 60.0),
        "mtta_text": format_duration(stats.mtta.mean_seconds), "mttr_text": format_duration(stats.mttr.mean_seconds),
        "list": out[:10], "not_shown": max(0, len(out) - 10),
    }


def _overspent_during(system: "PerfAlerts", rows: list[dict[str, Any]], start: float, end: float) -> set[str]:
    """Of these SLO rows, those whose error budget was overspent (burned faster than it lasts) between
    start and end: what ties an SLO breached over a period to one incident in it."""
    from perf_alerts.analytics.slo import slo_statuses

    if not rows or end <= start:
        return set()
    wanted = {r["series"] for r in rows}
    during = slo_statuses(system.store, system.config, end, end - start, names=sorted({r["name"] for r in rows}))
    return {st.series() for st in during if st.series() in wanted
            and st.budget_remaining is not None and st.budget_remaining < 0}


def _slo_series(system: "PerfAlerts", labels: dict[str, str]) -> str:
    """`task-latency{agent=researcher}` from an SLO burn alert's labels: the name the SLO table uses."""
    name = labels["slo"]
    try:
        by = system.config.slo(name).by
    except KeyError:  # an SLO since removed from the configuration
        by = []
    lab = ",".join(f"{k}={labels.get(k, '')}" for k in by)
    return f"{name}{{{lab}}}" if lab else name


def cost_report(period_rows: list[dict[str, Any]], now_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Budget SLOs: the spend over the period against the limit for it, and the current period's projection."""
    from perf_alerts.analytics.slo import money

    now_by = {r["series"]: r for r in now_rows if r["kind"] == "budget"}
    out = []
    for r in period_rows:
        if r["kind"] != "budget":
            continue
        n = now_by.get(r["series"], {})
        out.append({"slo": r["series"], "spent": r["achieved"], "limit": r["limit"], "status": r["status"],
                    "spent_text": money(r["achieved"], r["unit"]), "limit_text": money(r["limit"], r["unit"]),
                    "current_period": n.get("window"), "current_spent_text": money(n.get("achieved"), r["unit"]),
                    "current_limit_text": money(n.get("limit"), r["unit"]),
                    "projected": n.get("projected"), "projected_text": money(n.get("projected"), r["unit"]),
                    "projected_status": n.get("status")})
    return out


def _unit(system: "PerfAlerts", series: str) -> str:
    return system.config.metric_meta(series.split("{", 1)[0]).unit


def _trend_text(t: dict[str, Any], unit: str) -> str:
    from perf_alerts.template import fmt_number

    parts = []
    if t.get("slope_per_hour") is not None:
        parts.append(f"{'+' if t['slope_per_hour'] >= 0 else ''}{fmt_number(t['slope_per_hour'], 3)}"
                     f"{(' ' + unit) if unit else ''} per hour")
    if t.get("change_pct") is not None:
        parts.append(f"{t['change_pct']:+.1f}% vs the previous period")
    return ", ".join(parts) or "worsening"


def _risks(s: ExecutiveSummary) -> list[str]:
    out = []
    for r in s.slos_now:
        if r["status"] in ("breached", "at risk"):
            extra = f", budget gone by {r['exhausted_display']}" if r["exhausted_at"] else ""
            out.append(f"SLO {r['series']} {r['status']} now ({r['window']} window): {r['why']}{extra}")
    for c in s.cost:
        if c["projected_status"] in ("at risk", "breached"):
            out.append(f"Cost {c['slo']}: projected {c['projected_text']} for the {c['current_period']} period "
                       f"against {c['current_limit_text']}")
    for b in s.forecasts["breaches"]:
        out.append(f"Predicted: {b['series']} to breach {b['rule']} ({b['threshold']}) in {b['time_to_breach']}")
    for t in s.trends:
        out.append(f"Worsening: {t['series']} {t['text']}")
    return out[:8]


def _headline(s: ExecutiveSummary) -> list[str]:
    h = s.health
    length = s.period["length"]
    out: list[str] = []
    slos = s.slos
    measured = [r for r in slos if r["status"] != "no data"]
    inc = s.incidents
    if h["score"] is None and not measured and not inc["count"] and h.get("period_score") is None:
        out.append(f"No crew data in the last {length}: health cannot be judged.")
    else:
        score = "" if h.get("period_score") is None else f" {_fmt(h['period_score'])}/100,"
        why = h.get("period_reasons") or []
        out.append(f"Health over the period ({length}):{score} {h['period_status']}" + (f" — {why[0]}" if why else "") + ".")
    if slos and not measured:
        out.append(f"SLOs over the period: no data for any of the {len(slos)}.")
    elif slos:
        held = sum(1 for r in measured if r["status"] != "breached")
        breached = [r for r in measured if r["status"] == "breached"]
        nodata = len(slos) - len(measured)
        line = f"SLOs over the period: {held} of {len(measured)} measured held"
        if breached:
            line += "; breached: " + ", ".join(f"{r['series']} {r['achieved_display']} (objective {r['objective_display']})"
                                               for r in breached[:4])
        if nodata:
            line += f"; {nodata} without data"
        out.append(line + ".")
    if inc["count"]:
        out.append(f"{plural(inc['count'], 'incident')} ({inc['critical']} critical, {inc['warning']} warning): "
                   f"{inc['total_text']} in total, longest {inc['longest_text']}; MTTA {inc['mtta_text']}, "
                   f"MTTR {inc['mttr_text']}.")
    else:
        out.append("No incident (no critical or warning alert fired) in the period.")
    for c in s.cost[:2]:
        if c["spent"] is None and c["projected"] is None:
            out.append(f"Cost {c['slo']}: no spend recorded in the period (limit {c['limit_text']}).")
            continue
        out.append(f"Cost {c['slo']}: {c['spent_text']} over the period (limit {c['limit_text']}); current "
                   f"{c['current_period']} period {c['current_spent_text']}, projected {c['projected_text']} of "
                   f"{c['current_limit_text']}.")
    if h["score"] is not None:
        ch = "" if h["change"] is None else f" ({h['change']:+.1f} vs the start of the period)"
        out.append(f"Health now (the last hour): {_fmt(h['score'])}/100, {h['status']}{ch}.")
    al = s.alerts
    parts = [f"{n} {sev}" for sev, n in al["fired_by_severity"].items() if n]
    out.append(f"{plural(al['fired_total'], 'alert')} fired" + (f" ({', '.join(parts)})" if parts else "")
               + f"; {al['firing_now']} firing now.")
    if s.worst_agents:
        w = s.worst_agents[0]
        out.append(f"Weakest agent now: {w['agent']} at {_fmt(w['score'])}/100" + (f" ({w['weakest']})." if w["weakest"] else "."))
    if s.forecasts["breaches"]:
        b = s.forecasts["breaches"][0]
        out.append(f"Predicted: {b['series']} to breach {b['rule']} ({b['threshold']}) in {b['time_to_breach']}.")
    if s.recommendations:
        out.append(f"Top recommendation: {s.recommendations[0]['title']}.")
    return out


def _fmt(x: Any) -> str:
    return "—" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


def to_markdown(summary: ExecutiveSummary) -> str:
    """The summary as Markdown (for files, Discord descriptions and the dashboard): SLOs first, then
    incidents, cost, risks and recommendations, then the details."""
    s = summary
    p = s.period
    lines = ["# Performance executive summary", "",
             f"Period: {p.get('start_text', p['start'])} → {p.get('end_text', p['end'])} ({p['length']})", ""]
    lines += [f"- {x}" for x in s.headline]
    if s.slos:
        lines += ["", f"## SLOs (over the period, {p['length']})", "",
                  "| SLO | objective | achieved | budget left | burn (last hour) | status |", "|---|---|---|---|---|---|"]
        for r in s.slos:
            lines.append(f"| {r['series']} | {r['objective_display']} | {r['achieved_display']} | "
                         f"{r['budget_left_display']} | {r['burn_display']} | {r['status']} |")
    inc = s.incidents
    if inc is not None:
        lines += ["", "## Incidents", "",
                  f"{plural(inc['count'], 'incident')} ({inc['critical']} critical, {inc['warning']} warning); "
                  f"{inc['total_text']} in total, longest {inc['longest_text']}; MTTA {inc['mtta_text']}, "
                  f"MTTR {inc['mttr_text']}"]
        if inc["list"]:
            lines.append("")
        for i in inc["list"]:
            lines.append(f"- {i['start_text']}, {i['duration_text']}{' (ongoing)' if i['ongoing'] else ''}, "
                         f"{i['severity']}: {', '.join(i['rules'])}"
                         + (f" on {', '.join(i['agents'])}" if i["agents"] else "")
                         + (f"; SLOs broken: {', '.join(i['slos'])}" if i["slos"] else "")
                         + (f"; budget burned fast (held): {', '.join(i['slos_burned'])}" if i["slos_burned"] else ""))
    if s.cost:
        lines += ["", "## Cost", ""]
        for c in s.cost:
            lines.append(f"- {c['slo']}: {c['spent_text']} over the period (limit {c['limit_text']}, {c['status']}); "
                         f"current {c['current_period']} period {c['current_spent_text']}, projected "
                         f"{c['projected_text']} of {c['current_limit_text']}")
    if s.risks:
        lines += ["", "## Risks", ""] + [f"- {x}" for x in s.risks]
    if s.recommendations:
        lines += ["", "## Recommendations", ""]
        for r in s.recommendations:
            lines.append(f"- [{r['priority']}] {r['title']} — {r['action']}")
    h = s.health
    lines += ["", "## Health", "",
              f"Over the period: **{_fmt(h.get('period_score'))}** ({h.get('period_status', '—')})"
              + (": " + "; ".join(h.get("period_reasons") or []) if h.get("period_reasons") else "")]
    if h.get("period_components"):
        lines += ["", f"Measured components, this {p['length']} against the one before:", ""]
    for c in h.get("period_components", []):
        lines.append(f"- {c['name']}: {_fmt(c['score'])} — {c['evidence']}")
    lines += ["", f"Now (the last hour): **{_fmt(h['score'])}** ({h['status']}); at the start of the period "
              f"{_fmt(h['previous_score'])}" + ("" if h["change"] is None else f", change {h['change']:+.1f}"), ""]
    for c in h["components"]:
        lines.append(f"- {c['name']}: {_fmt(c['score'])} — {c['evidence']}")
    if s.agents:
        lines += ["", "Per agent, now (the last hour):", "",
                  "| agent | health | status | change | weakest |", "|---|---|---|---|---|"]
        for a in s.agents:
            ch = "—" if a["change"] is None else f"{a['change']:+.1f}"
            lines.append(f"| {a['agent']} | {_fmt(a['score'])} | {a['status']} | {ch} | {a['weakest'] or '—'} |")
    al = s.alerts
    lines += ["", "## Alerts", "",
              f"Fired: {al['fired_total']} (critical {al['fired_by_severity']['critical']}, warning "
              f"{al['fired_by_severity']['warning']}, info {al['fired_by_severity']['info']}); firing now: {al['firing_now']}",
              f"MTTA {format_duration(s.mtta['mean_seconds'])} ({s.mtta['count']} acknowledged), "
              f"MTTR {format_duration(s.mttr['mean_seconds'])} ({s.mttr['count']} resolved)"]
    if s.noisiest_rules:
        lines += ["", "Noisiest rules:"] + [f"- {r['rule']} ({r['severity']}): {r['fired']}×" for r in s.noisiest_rules]
    if s.trends:
        lines += ["", "## Worsening trends", ""]
        for t in s.trends:
            lines.append(f"- {t['series']}: {t.get('text') or _fmt(t['slope_per_hour'])}")
    if s.forecasts["breaches"]:
        lines += ["", f"## Forecasts (next {s.forecasts['horizon']})", ""]
        for b in s.forecasts["breaches"]:
            lines.append(f"- {b['series']}: {b['rule']} ({b['threshold']}) in {b['time_to_breach']} "
                         f"(probability {_fmt(b['probability'])})")
    return "\n".join(lines) + "\n"


__all__ = ["ExecutiveSummary", "executive_summary", "to_markdown"]
