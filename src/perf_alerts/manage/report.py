"""Executive summary outputs: the PNG chart, the HTML page, the files on disk and the
delivery to the leadership receiver. The numbers come from `manage.summary`; this module
only renders them (matplotlib is imported here, lazily, and nowhere in the core).
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perf_alerts.textsafe import plural
from perf_alerts.timeutil import parse_timestamp

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.summary import ExecutiveSummary
    from perf_alerts.notify.pipeline import DeliveryOutcome

SEVERITY_COLORS = {"critical": "#e53935", "warning": "#fb8c00", "info": "#1e88e5"}
BUCKETS = 24


def alert_timeline(system: "PerfAlerts", summary: "ExecutiveSummary", buckets: int = BUCKETS) -> dict[str, Any]:
    """Firings per time bucket and severity over the summary's period, from the event log."""
    start = parse_timestamp(summary.period["start"])
    end = parse_timestamp(summary.period["end"])
    edges = np.linspace(start, end, buckets + 1)
    counts = {sev: np.zeros(buckets, dtype=int) for sev in SEVERITY_COLORS}
    for e in system.store.events(start, end):
        if e["event"] == "firing" and e["severity"] in counts:
            i = min(int(np.searchsorted(edges, e["ts"], side="right")) - 1, buckets - 1)
            counts[e["severity"]][max(i, 0)] += 1
    return {"edges": edges.tolist(), "counts": {k: v.tolist() for k, v in counts.items()}}


def chart_data(summary: "ExecutiveSummary") -> dict[str, Any]:
    """What the chart's left panel draws: each SLO's error budget left over the period (the summary's numbers)."""
    rows = [r for r in summary.slos if r.get("budget_remaining") is not None]
    return {"title": f"Error budget left over the period ({summary.period['length']})",
            "series": [r["series"] for r in rows], "budget_remaining": [r["budget_remaining"] for r in rows],
            "labels": [r["budget_left_display"] for r in rows], "status": [r["status"] for r in rows]}


def chart_png(system: "PerfAlerts", summary: "ExecutiveSummary") -> bytes:
    """Two panels: each SLO's error budget left over the period, and alert firings over the period."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    timeline = alert_timeline(system, summary)
    data = chart_data(summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110, gridspec_kw={"width_ratios": [1.2, 1.6]})
    names = data["series"] or ["no SLO data"]
    left = [max(-1.0, min(1.0, x)) * 100 for x in data["budget_remaining"]] or [0.0]
    y = np.arange(len(names))
    colors = ["#e53935" if st == "breached" else "#fb8c00" if st == "at risk" else "#43a047" for st in data["status"]]
    ax1.barh(y, left, height=0.6, color=colors or ["#b0bec5"])
    ax1.axvline(0, color="#37474f", linewidth=0.8)
    ax1.set_yticks(y, names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlim(-135, 125)  # room for the value labels beside the bars
    ax1.set_xlabel("error budget left, % (negative: overspent)")
    ax1.set_title(data["title"], fontsize=9)
    for yi, v, lab in zip(y, left, data["labels"]):
        ax1.text(v + (2 if v >= 0 else -2), yi, lab, va="center", ha="left" if v >= 0 else "right", fontsize=7)

    from datetime import datetime, timezone

    edges = timeline["edges"]
    centers = [datetime.fromtimestamp((a + b) / 2, tz=timezone.utc) for a, b in zip(edges[:-1], edges[1:])]
    width = (edges[1] - edges[0]) / 86400.0 * 0.9 if len(edges) > 1 else 0.03
    bottom = np.zeros(len(centers))
    for sev, color in SEVERITY_COLORS.items():
        vals = np.asarray(timeline["counts"][sev])
        ax2.bar(centers, vals, width=width, bottom=bottom, color=color, label=sev)
        bottom += vals
    ax2.set_title(f"Alerts fired over the period ({summary.alerts['fired_total']} in {summary.period['length']})",
                  fontsize=9)
    ax2.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax2.set_ylabel("firings")
    from matplotlib.ticker import MaxNLocator

    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(fontsize=8)
    p = summary.period
    h = summary.health
    verdict = "" if h.get("period_status") is None else f" — over the period: {h['period_status']}"
    fig.suptitle(f"perf-alerts — {p.get('start_text', p['start'])} → {p.get('end_text', p['end'])}{verdict}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _cell(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


def to_html(summary: "ExecutiveSummary", markdown: str, chart: bytes | None = None) -> str:
    """A self-contained page (inline CSS, chart embedded), fit to mail or archive. Every number is the
    summary's own text (the Markdown, the Discord message and the crew tool show the same)."""
    import base64

    e = html.escape
    h = summary.health
    p = summary.period
    inc = summary.incidents
    slo_rows = "".join(
        f"<tr><td>{e(r['series'])}</td><td>{e(r['objective_display'])}</td><td>{e(r['achieved_display'])}</td>"
        f"<td>{e(r['budget_left_display'])}</td><td>{e(r['burn_display'])}</td><td>{e(r['status'])}</td>"
        f"<td>{e(r['why'])}</td></tr>" for r in summary.slos)
    incidents = "".join(
        f"<li>{e(i['start_text'])}, {e(i['duration_text'])}{' (ongoing)' if i['ongoing'] else ''}, {e(i['severity'])}: "
        f"{e(', '.join(i['rules']))}" + (f" on {e(', '.join(i['agents']))}" if i["agents"] else "")
        + (f"; SLOs broken: {e(', '.join(i['slos']))}" if i["slos"] else "")
        + (f"; budget burned fast (held): {e(', '.join(i.get('slos_burned', [])))}" if i.get("slos_burned") else "")
        + "</li>" for i in inc.get("list", []))
    cost = "".join(
        f"<li>{e(c['slo'])}: {e(c['spent_text'])} over the period (limit {e(c['limit_text'])}, {e(c['status'])}); "
        f"current {e(str(c['current_period']))} period {e(c['current_spent_text'])}, projected {e(c['projected_text'])} "
        f"of {e(c['current_limit_text'])}</li>" for c in summary.cost)
    risks = "".join(f"<li>{e(x)}</li>" for x in summary.risks)
    rows = "".join(
        f"<tr><td>{_cell(a['agent'])}</td><td>{_cell(a['score'])}</td><td>{_cell(a['previous_score'])}</td>"
        f"<td>{_cell(a['change'])}</td><td>{_cell(a['status'])}</td><td>{_cell(a['weakest'])}</td></tr>"
        for a in summary.agents)
    recs = "".join(f"<li><b>{_cell(r['title'])}</b> — {_cell(r['action'])}</li>" for r in summary.recommendations)
    noisy = "".join(f"<li>{_cell(r['rule'])} ({_cell(r['severity'])}): {r['fired']}×</li>" for r in summary.noisiest_rules)
    breaches = "".join(
        f"<li>{_cell(b.get('series'))}: {_cell(b.get('rule'))} {_cell(b.get('threshold'))} in {_cell(b.get('time_to_breach'))}"
        f" (p={_cell(b.get('probability'))})</li>" for b in summary.forecasts["breaches"])
    trends = "".join(f"<li>{e(t['series'])}: {e(t.get('text') or '')}</li>" for t in summary.trends)
    findings = "".join(f"<li>{_cell(f)}</li>" for f in summary.findings)
    headline = "".join(f"<li>{e(x)}</li>" for x in summary.headline)
    img = (f'<img alt="error budget left per SLO and alerts fired over the period" '
           f'src="data:image/png;base64,{base64.b64encode(chart).decode()}">' if chart else "")
    a = summary.alerts
    sev = ", ".join(f"{k}: {v}" for k, v in a["fired_by_severity"].items())
    reasons = "; ".join(h.get("period_reasons") or [])
    mtta = summary.mtta.get("text") or _dur(summary.mtta.get("mean_seconds"))
    mttr = summary.mttr.get("text") or _dur(summary.mttr.get("mean_seconds"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(summary.title or 'Executive summary')}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;color:#1c2733;line-height:1.45}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;border-bottom:1px solid #e0e6ed;padding-bottom:.2em;margin-top:1.6em}}
table{{border-collapse:collapse;width:100%}} td,th{{border-bottom:1px solid #eef1f4;padding:.35em .5em;text-align:left}}
.kpi{{display:inline-block;margin:.3em 1.5em .3em 0;vertical-align:top}} .kpi b{{font-size:1.4em;display:block}}
img{{max-width:100%;margin-top:1em}}
</style></head><body>
<h1>{e(summary.title or 'Executive summary')}</h1>
<p>{e(p.get('start_text') or p['start'])} → {e(p.get('end_text') or p['end'])} ({e(p['length'])})</p>
<div class="kpi"><b>{_cell(h.get('period_score'))}</b>over the period ({_cell(h.get('period_status'))})</div>
<div class="kpi"><b>{_cell(h['score'])}</b>now, the last hour ({_cell(h['status'])})</div>
<div class="kpi"><b>{inc.get('count', 0)}</b>incidents ({e(str(inc.get('total_text', '-')))} in total)</div>
<div class="kpi"><b>{a['fired_total']}</b>alerts fired ({e(sev)})</div>
<div class="kpi"><b>{e(mtta)}</b>MTTA</div>
<div class="kpi"><b>{e(mttr)}</b>MTTR</div>
<p>{e(reasons)}</p>
<ul>{headline}</ul>
<h2>SLOs (over the period, {e(p['length'])})</h2>
<table><tr><th>SLO</th><th>objective</th><th>achieved</th><th>budget left</th><th>burn (last hour)</th><th>status</th><th>why</th></tr>{slo_rows or '<tr><td colspan="7">no SLOs configured</td></tr>'}</table>
<h2>Incidents</h2>
<p>{plural(int(inc.get('count', 0)), 'incident')} ({inc.get('critical', 0)} critical, {inc.get('warning', 0)} warning);
{e(str(inc.get('total_text', '-')))} in total, longest {e(str(inc.get('longest_text', '-')))}; MTTA {e(str(inc.get('mtta_text', mtta)))}, MTTR {e(str(inc.get('mttr_text', mttr)))}</p>
<ul>{incidents or '<li>none</li>'}</ul>
<h2>Cost</h2><ul>{cost or '<li>no budget SLO configured</li>'}</ul>
<h2>Risks</h2><ul>{risks or '<li>none</li>'}</ul>
<h2>Recommendations</h2><ul>{recs or '<li>none</li>'}</ul>
{img}
<h2>Agents, now (the last hour)</h2><table><tr><th>agent</th><th>health</th><th>at the start of the period</th><th>change</th><th>status</th><th>weakest component</th></tr>{rows}</table>
<h2>Worsening trends</h2><ul>{trends or '<li>none</li>'}</ul>
<h2>Findings</h2><ul>{findings or '<li>none</li>'}</ul>
<h2>Noisiest rules</h2><ul>{noisy or '<li>none</li>'}</ul>
<h2>Predicted breaches</h2><ul>{breaches or '<li>none within the horizon</li>'}</ul>
<details><summary>Markdown version</summary><pre>{e(markdown)}</pre></details>
</body></html>
"""


def _dur(seconds: Any) -> str:
    from perf_alerts.timeutil import format_duration

    return format_duration(seconds)


def build_summary(system: "PerfAlerts", period_seconds: float, at: float | None = None,
                  chart: bool = True) -> tuple["ExecutiveSummary", str, bytes | None]:
    """The summary (titled), its Markdown and (when matplotlib is installed) the chart."""
    from perf_alerts.manage.summary import executive_summary, to_markdown

    summary = executive_summary(system, period_seconds, at=at)
    if summary.title is None:
        summary = replace(summary, title=f"Executive performance summary ({summary.period['length']})")
    md = to_markdown(summary)
    png: bytes | None = None
    if chart:
        try:
            png = chart_png(system, summary)
        except ImportError:  # matplotlib is an optional extra
            png = None
    return summary, md, png


def write_summary(out_dir: Path, summary: "ExecutiveSummary", md: str, png: bytes | None) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "executive-summary.md", "html": out_dir / "executive-summary.html",
             "json": out_dir / "executive-summary.json"}
    files["markdown"].write_text(md, encoding="utf-8")
    files["html"].write_text(to_html(summary, md, png), encoding="utf-8")
    files["json"].write_text(json.dumps(summary.to_dict(), indent=2, default=str), encoding="utf-8")
    if png:
        files["chart"] = out_dir / "executive-summary.png"
        files["chart"].write_bytes(png)
    return {k: str(v) for k, v in files.items()}


def summary_message(summary: "ExecutiveSummary", png: bytes | None) -> tuple[str, str, list[tuple[str, bytes, str]]]:
    """(title, text, files) of the message that carries a summary: the headline numbers, the chart attached."""
    files = [("executive-summary.png", png, "image/png")] if png else []
    return str(summary.title or "Executive performance summary"), _discord_text(summary), files


def send_summary(system: "PerfAlerts", summary: "ExecutiveSummary", md: str, png: bytes | None,
                 console_write: Any = None) -> "DeliveryOutcome":
    """To the receivers routed for kind=executive_summary now, with the chart attached (multipart)."""
    from perf_alerts.notify.pipeline import deliver_summary

    title, text, files = summary_message(summary, png)
    return deliver_summary(system, title, text, files=files or None, console_write=console_write)


def _discord_text(summary: "ExecutiveSummary") -> str:
    """The summary's headline (the same sentences the Markdown opens with) plus the noisiest rules:
    Discord embeds hold 4,096 characters; the rest is in the attached chart and the files."""
    lines = [f"• {x}" for x in summary.headline]
    rows = summary.slos
    if rows:
        worst = sorted(rows, key=lambda r: {"breached": 0, "at risk": 1, "ok": 2}.get(r["status"], 3))[:6]
        lines.append("SLOs over the period (objective · achieved · budget left · burn, last hour):")
        lines += [f"  {r['series']}: {r['objective_display']} · {r['achieved_display']} · {r['budget_left_display']} · "
                  f"{r['burn_display']} — {r['status']}" for r in worst]
        if len(rows) > len(worst):
            lines.append(f"  … and {len(rows) - len(worst)} more in the attached summary")
    if summary.noisiest_rules:
        lines.append("• Noisiest rules: " + ", ".join(f"{r['rule']} ×{r['fired']}" for r in summary.noisiest_rules[:3]))
    # the lines carry data (agent and label values, rule names): literal text in Discord, never
    # markdown, links or mentions; none of the summary's own words rely on markdown
    from perf_alerts.textsafe import discord_escape

    return "\n".join(discord_escape(x) for x in lines)[:3800]
