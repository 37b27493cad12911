"""Executive summary for a period: health and its change, alerts, MTTA/MTTR, noisiest rules,
worst agents, trends, forecasts and recommendations — as a dict (JSON) and as Markdown.

Built only from the façade (`PerfAlerts.analyze`, `.predict`, `.alert_stats`) and
`analytics.recommend.optimize`, so it says exactly what the CLI and the dashboard say.
HTML, PNG chart and Discord embeds are rendered from this dict elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perf_alerts.model import AlertState, Severity
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
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


def _change(cur: float | None, prev: float | None) -> float | None:
    return None if cur is None or prev is None else round(cur - prev, 1)


def executive_summary(system: "PerfAlerts", period_seconds: float = 86400.0, at: float | None = None,
                      horizon_seconds: float | None = None, top: int = TOP) -> dict[str, Any]:
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
    cur_score = rep["health"]["score"]
    prev_score = None if prev_overall.score is None else round(prev_overall.score, 1)

    agents: list[dict[str, Any]] = []
    for name, h in rep["agents"].items():
        prev_h = insights.agent_health(system.store, system.config, start, period, past_alerts, name)  # type: ignore[arg-type]
        ps = None if prev_h.score is None else round(prev_h.score, 1)
        weakest = min((c for c in h["components"] if c["score"] is not None), key=lambda c: c["score"], default=None)
        agents.append({"agent": name, "score": h["score"], "status": h["status"], "previous_score": ps,
                       "change": _change(h["score"], ps),
                       "weakest": None if weakest is None else f"{weakest['name']}: {weakest['evidence']}"})
    agents.sort(key=lambda d: (d["score"] is None, d["score"] if d["score"] is not None else 0.0))

    stats = system.alert_stats(since=start, until=at)
    firing_now = [a for a in system.alerts([AlertState.FIRING])]
    by_sev = {sev: stats["by_severity"][sev]["fired"] for sev in ("critical", "warning", "info")}
    firing_by_sev = {sev: sum(1 for a in firing_now if a.severity.value == sev) for sev in ("critical", "warning", "info")}

    pred = system.predict(horizon=horizon, lookback=period, at=at)
    opt = optimize(system, lookback=period, at=at, top=top)

    worsening = [t for t in rep["trends"] if t.get("verdict") == "worsening"][:top]
    summary: dict[str, Any] = {
        "period": {"start": iso(start), "end": iso(at), "length": format_duration(period)},
        "health": {
            "score": cur_score, "status": rep["health"]["status"], "previous_score": prev_score,
            "change": _change(cur_score, prev_score),
            "period_score": None if whole.score is None else round(whole.score, 1), "period_status": whole.status,
            "period_components": [c.to_dict() for c in whole.components],
            "components": [{"name": c["name"], "score": c["score"], "evidence": c["evidence"]}
                           for c in rep["health"]["components"]],
        },
        "agents": agents,
        "worst_agents": [a for a in agents if a["score"] is not None][:3],
        "alerts": {
            "fired_by_severity": by_sev, "fired_total": sum(by_sev.values()),
            "firing_now": len(firing_now), "firing_now_by_severity": firing_by_sev,
            "firing_now_rules": sorted({a.rule for a in firing_now})[:top],
        },
        "mtta": stats["mtta"], "mttr": stats["mttr"],
        "mtta_mttr_by_severity": {sev: {"mtta": v["mtta"], "mttr": v["mttr"]}
                                  for sev, v in stats["by_severity"].items() if v["fired"]},
        "noisiest_rules": [{"rule": r["rule"], "severity": r["severity"], "fired": r["fired"]}
                           for r in stats["by_rule"][:top]],
        "trends": [{"series": t["series"], "verdict": t["verdict"], "slope_per_hour": t.get("slope_per_hour"),
                    "change_pct": t.get("change_pct"), "p_value": t.get("p_value")} for t in worsening],
        "forecasts": {"horizon": pred["horizon"], "breaches": [
            {k: b.get(k) for k in ("series", "rule", "threshold", "time_to_breach", "breach_at", "probability")}
            for b in pred["breaches"][:top]]},
        "recommendations": [{"title": r["title"], "priority": r["priority"], "action": r["action"]}
                            for r in opt["recommendations"][:top]],
        "findings": rep["findings"][:top],
    }
    summary["headline"] = _headline(summary)
    return summary


def _headline(s: dict[str, Any]) -> list[str]:
    h = s["health"]
    out: list[str] = []
    if h["score"] is None:
        out.append(f"No crew data in the last {s['period']['length']}: health cannot be judged.")
    else:
        ch = "" if h["change"] is None else f" ({h['change']:+.1f} vs the start of the period)"
        over = "" if h.get("period_score") is None else \
            f"; over the whole {s['period']['length']} {h['period_score']:.0f}/100, {h['period_status']}"
        out.append(f"Health now {h['score']:.0f}/100, {h['status']}{ch}{over}.")
    al = s["alerts"]
    parts = [f"{n} {sev}" for sev, n in al["fired_by_severity"].items() if n]
    out.append(f"{al['fired_total']} alert(s) fired" + (f" ({', '.join(parts)})" if parts else "")
               + f"; {al['firing_now']} firing now.")
    if s["mtta"]["count"] or s["mttr"]["count"]:
        out.append(f"MTTA {format_duration(s['mtta']['mean_seconds'])}, MTTR {format_duration(s['mttr']['mean_seconds'])}.")
    if s["worst_agents"]:
        w = s["worst_agents"][0]
        out.append(f"Weakest agent: {w['agent']} at {w['score']:.0f}/100" + (f" ({w['weakest']})." if w["weakest"] else "."))
    if s["forecasts"]["breaches"]:
        b = s["forecasts"]["breaches"][0]
        out.append(f"Predicted: {b['series']} to breach {b['rule']} ({b['threshold']}) in {b['time_to_breach']}.")
    if s["recommendations"]:
        out.append(f"Top recommendation: {s['recommendations'][0]['title']}.")
    return out


def _fmt(x: Any) -> str:
    return "—" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


def to_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown (for files, Discord descriptions and the dashboard)."""
    s = summary
    p = s["period"]
    lines = [f"# Performance executive summary", "", f"Period: {p['start']} → {p['end']} ({p['length']})", ""]
    lines += [f"- {x}" for x in s["headline"]]
    h = s["health"]
    lines += ["", "## Health", "",
              f"Over the period: **{_fmt(h.get('period_score'))}** ({h.get('period_status', '—')}), "
              f"this {p['length']} against the one before:", ""]
    for c in h.get("period_components", []):
        lines.append(f"- {c['name']}: {_fmt(c['score'])} — {c['evidence']}")
    lines += ["", f"Now (the last hour): **{_fmt(h['score'])}** ({h['status']}); at the start of the period "
              f"{_fmt(h['previous_score'])}" + ("" if h["change"] is None else f", change {h['change']:+.1f}"), ""]
    for c in h["components"]:
        lines.append(f"- {c['name']}: {_fmt(c['score'])} — {c['evidence']}")
    if s["agents"]:
        lines += ["", "| agent | health | status | change | weakest |", "|---|---|---|---|---|"]
        for a in s["agents"]:
            ch = "—" if a["change"] is None else f"{a['change']:+.1f}"
            lines.append(f"| {a['agent']} | {_fmt(a['score'])} | {a['status']} | {ch} | {a['weakest'] or '—'} |")
    al = s["alerts"]
    lines += ["", "## Alerts", "",
              f"Fired: {al['fired_total']} (critical {al['fired_by_severity']['critical']}, warning "
              f"{al['fired_by_severity']['warning']}, info {al['fired_by_severity']['info']}); firing now: {al['firing_now']}",
              f"MTTA {format_duration(s['mtta']['mean_seconds'])} ({s['mtta']['count']} acknowledged), "
              f"MTTR {format_duration(s['mttr']['mean_seconds'])} ({s['mttr']['count']} resolved)"]
    if s["noisiest_rules"]:
        lines += ["", "Noisiest rules:"] + [f"- {r['rule']} ({r['severity']}): {r['fired']}×" for r in s["noisiest_rules"]]
    if s["trends"]:
        lines += ["", "## Worsening trends", ""]
        for t in s["trends"]:
            ch = "" if t["change_pct"] is None else f", {t['change_pct']:+.1f}% vs the previous period"
            lines.append(f"- {t['series']}: {_fmt(t['slope_per_hour'])} per hour{ch}")
    if s["forecasts"]["breaches"]:
        lines += ["", f"## Forecasts (next {s['forecasts']['horizon']})", ""]
        for b in s["forecasts"]["breaches"]:
            lines.append(f"- {b['series']}: {b['rule']} ({b['threshold']}) in {b['time_to_breach']} "
                         f"(probability {_fmt(b['probability'])})")
    if s["recommendations"]:
        lines += ["", "## Recommendations", ""]
        for r in s["recommendations"]:
            lines.append(f"- [{r['priority']}] {r['title']} — {r['action']}")
    return "\n".join(lines) + "\n"


__all__ = ["executive_summary", "to_markdown"]
