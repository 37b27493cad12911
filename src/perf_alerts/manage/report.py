"""Executive summary outputs: the PNG chart, the HTML page, the files on disk and the
delivery to the leadership receiver. The numbers come from `manage.summary`; this module
only renders them (matplotlib is imported here, lazily, and nowhere in the core).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perf_alerts.timeutil import parse_timestamp

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import DeliveryOutcome

SEVERITY_COLORS = {"critical": "#e53935", "warning": "#fb8c00", "info": "#1e88e5"}
BUCKETS = 24


def alert_timeline(system: "PerfAlerts", summary: dict[str, Any], buckets: int = BUCKETS) -> dict[str, Any]:
    """Firings per time bucket and severity over the summary's period, from the event log."""
    start = parse_timestamp(summary["period"]["start"])
    end = parse_timestamp(summary["period"]["end"])
    edges = np.linspace(start, end, buckets + 1)
    counts = {sev: np.zeros(buckets, dtype=int) for sev in SEVERITY_COLORS}
    for e in system.store.events(start, end):
        if e["event"] == "firing" and e["severity"] in counts:
            i = min(int(np.searchsorted(edges, e["ts"], side="right")) - 1, buckets - 1)
            counts[e["severity"]][max(i, 0)] += 1
    return {"edges": edges.tolist(), "counts": {k: v.tolist() for k, v in counts.items()}}


def chart_png(system: "PerfAlerts", summary: dict[str, Any]) -> bytes:
    """Two panels: health per agent (now vs the previous period) and alert firings over the period."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    timeline = alert_timeline(system, summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110, gridspec_kw={"width_ratios": [1, 1.6]})
    agents = [a for a in summary["agents"] if a["score"] is not None]
    names = [a["agent"] for a in agents] or ["no data"]
    cur = [a["score"] or 0 for a in agents] or [0]
    prev = [a["previous_score"] if a["previous_score"] is not None else np.nan for a in agents] or [np.nan]
    y = np.arange(len(names))
    ax1.barh(y + 0.2, cur, height=0.4, color=["#43a047" if s >= 80 else "#fb8c00" if s >= 50 else "#e53935" for s in cur],
             label="this period")
    ax1.barh(y - 0.2, prev, height=0.4, color="#b0bec5", label="previous period")
    ax1.set_yticks(y, names)
    ax1.set_xlim(0, 100)
    ax1.set_xlabel("health (0–100)")
    ax1.set_title("Health per agent")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    for yi, s in zip(y, cur):
        ax1.text(min(s + 1, 92), yi + 0.2, f"{s:.0f}", va="center", fontsize=8)

    from datetime import datetime, timezone

    edges = timeline["edges"]
    centers = [datetime.fromtimestamp((a + b) / 2, tz=timezone.utc) for a, b in zip(edges[:-1], edges[1:])]
    width = (edges[1] - edges[0]) / 86400.0 * 0.9 if len(edges) > 1 else 0.03
    bottom = np.zeros(len(centers))
    for sev, color in SEVERITY_COLORS.items():
        vals = np.asarray(timeline["counts"][sev])
        ax2.bar(centers, vals, width=width, bottom=bottom, color=color, label=sev)
        bottom += vals
    ax2.set_title(f"Alerts fired ({summary['alerts']['fired_total']} in {summary['period']['length']})")
    ax2.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax2.set_ylabel("firings")
    from matplotlib.ticker import MaxNLocator

    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(fontsize=8)
    fig.suptitle(f"perf-alerts — {summary['period']['start'][:16]} → {summary['period']['end'][:16]} UTC", fontsize=10)
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


def to_html(summary: dict[str, Any], markdown: str, chart: bytes | None = None) -> str:
    """A self-contained page (inline CSS, chart embedded), fit to mail or archive."""
    import base64

    h = summary["health"]
    rows = "".join(
        f"<tr><td>{_cell(a['agent'])}</td><td>{_cell(a['score'])}</td><td>{_cell(a['previous_score'])}</td>"
        f"<td>{_cell(a['change'])}</td><td>{_cell(a['status'])}</td><td>{_cell(a['weakest'])}</td></tr>"
        for a in summary["agents"])
    recs = "".join(f"<li><b>{_cell(r['title'])}</b> — {_cell(r['action'])}</li>" for r in summary["recommendations"])
    noisy = "".join(f"<li>{_cell(r['rule'])} ({_cell(r['severity'])}): {r['fired']}×</li>" for r in summary["noisiest_rules"])
    breaches = "".join(
        f"<li>{_cell(b.get('series'))}: {_cell(b.get('rule'))} {_cell(b.get('threshold'))} in {_cell(b.get('time_to_breach'))}"
        f" (p={_cell(b.get('probability'))})</li>" for b in summary["forecasts"]["breaches"])
    findings = "".join(f"<li>{_cell(f)}</li>" for f in summary.get("findings", []))
    img = (f'<img alt="health per agent and alerts fired" src="data:image/png;base64,{base64.b64encode(chart).decode()}">'
           if chart else "")
    a = summary["alerts"]
    sev = ", ".join(f"{k}: {v}" for k, v in a["fired_by_severity"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(summary.get('title', 'Executive summary'))}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;color:#1c2733;line-height:1.45}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;border-bottom:1px solid #e0e6ed;padding-bottom:.2em;margin-top:1.6em}}
table{{border-collapse:collapse;width:100%}} td,th{{border-bottom:1px solid #eef1f4;padding:.35em .5em;text-align:left}}
.kpi{{display:inline-block;margin:.3em 1.5em .3em 0}} .kpi b{{font-size:1.4em;display:block}}
img{{max-width:100%;margin-top:1em}}
</style></head><body>
<h1>{html.escape(summary.get('title', 'Executive summary'))}</h1>
<p>{html.escape(summary['period']['start'])} → {html.escape(summary['period']['end'])} ({html.escape(summary['period']['length'])})</p>
<div class="kpi"><b>{_cell(h['score'])}</b>health ({_cell(h['status'])}; change {_cell(h['change'])})</div>
<div class="kpi"><b>{a['fired_total']}</b>alerts fired ({html.escape(sev)})</div>
<div class="kpi"><b>{a['firing_now']}</b>firing now</div>
<div class="kpi"><b>{_cell(summary['mtta'].get('mean_seconds'))} s</b>MTTA</div>
<div class="kpi"><b>{_cell(summary['mttr'].get('mean_seconds'))} s</b>MTTR</div>
{img}
<h2>Agents</h2><table><tr><th>agent</th><th>health</th><th>previous</th><th>change</th><th>status</th><th>weakest component</th></tr>{rows}</table>
<h2>Findings</h2><ul>{findings or '<li>none</li>'}</ul>
<h2>Noisiest rules</h2><ul>{noisy or '<li>none</li>'}</ul>
<h2>Predicted breaches</h2><ul>{breaches or '<li>none within the horizon</li>'}</ul>
<h2>Recommendations</h2><ul>{recs or '<li>none</li>'}</ul>
<details><summary>Markdown version</summary><pre>{html.escape(markdown)}</pre></details>
</body></html>
"""


def build_summary(system: "PerfAlerts", period_seconds: float, at: float | None = None,
                  chart: bool = True) -> tuple[dict[str, Any], str, bytes | None]:
    """The summary dict, its Markdown and (when matplotlib is installed) the chart."""
    from perf_alerts.manage.summary import executive_summary, to_markdown

    summary = executive_summary(system, period_seconds, at=at)
    summary.setdefault("title", f"Executive performance summary ({summary['period']['length']})")
    md = to_markdown(summary)
    png: bytes | None = None
    if chart:
        try:
            png = chart_png(system, summary)
        except ImportError:  # matplotlib is an optional extra
            png = None
    return summary, md, png


def write_summary(out_dir: Path, summary: dict[str, Any], md: str, png: bytes | None) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "executive-summary.md", "html": out_dir / "executive-summary.html",
             "json": out_dir / "executive-summary.json"}
    files["markdown"].write_text(md, encoding="utf-8")
    files["html"].write_text(to_html(summary, md, png), encoding="utf-8")
    files["json"].write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    if png:
        files["chart"] = out_dir / "executive-summary.png"
        files["chart"].write_bytes(png)
    return {k: str(v) for k, v in files.items()}


def summary_message(summary: dict[str, Any], png: bytes | None) -> tuple[str, str, list[tuple[str, bytes, str]]]:
    """(title, text, files) of the message that carries a summary: the headline numbers, the chart attached."""
    files = [("executive-summary.png", png, "image/png")] if png else []
    return str(summary.get("title") or "Executive performance summary"), _discord_text(summary), files


def send_summary(system: "PerfAlerts", summary: dict[str, Any], md: str, png: bytes | None,
                 console_write: Any = None) -> "DeliveryOutcome":
    """To the receivers routed for kind=executive_summary now, with the chart attached (multipart)."""
    from perf_alerts.notify.pipeline import deliver_summary

    title, text, files = summary_message(summary, png)
    return deliver_summary(system, {**summary, "title": title, "text": text}, files=files or None,
                           console_write=console_write)


def _discord_text(summary: dict[str, Any]) -> str:
    """The summary's headline (the same sentences the Markdown opens with) plus the noisiest rules:
    Discord embeds hold 4,096 characters; the rest is in the attached chart and the files."""
    lines = [f"• {x}" for x in summary.get("headline", [])]
    if summary["noisiest_rules"]:
        lines.append("• Noisiest rules: " + ", ".join(f"{r['rule']} ×{r['fired']}" for r in summary["noisiest_rules"][:3]))
    return "\n".join(lines)[:3800]
