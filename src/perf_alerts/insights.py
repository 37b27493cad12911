"""Analysis reports over the store: health, summaries, trends, anomalies, forecasts.

The single implementation behind `perf-alerts analyze|predict`, the crew tool's
`analyze`/`predict` actions and the dashboard. Results are plain dicts sized for a
person or an LLM context: top-N lists, rounded numbers, no raw series.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from perf_alerts import catalog
from perf_alerts.analytics import health as H
from perf_alerts.analytics.stats import group_quantile, summarize
from perf_alerts.analytics.trend import trend
from perf_alerts.config import Config
from perf_alerts.model import Alert, AlertState
from perf_alerts.rules.template import fmt_number
from perf_alerts.store import SampleBlock, SeriesInfo, Store
from perf_alerts.timeutil import format_duration, iso


def _r(x: float | None, d: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else float(round(x, d))


def _p(p: float | None) -> str:
    if p is None:
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _series_name(s: SeriesInfo) -> str:
    if not s.labels:
        return s.metric
    return s.metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}"


def _select(store: Store, agent: str | None, labels: dict[str, str] | None,
            series: list[SeriesInfo] | None = None) -> list[SeriesInfo]:
    """The series of one agent / label set, from `series` when the caller already listed them."""
    out = []
    for s in store.list_series() if series is None else series:
        if agent is not None and s.labels.get(catalog.AGENT_LABEL) != agent:
            continue
        if labels and any(s.labels.get(k) != v for k, v in labels.items()):
            continue
        out.append(s)
    return out


def recent_window(lookback: float) -> float:
    """The 'now' part of a lookback: the last hour, or a quarter of a shorter lookback."""
    return min(3600.0, lookback / 4.0)


def agent_health(store: Store, config: Config, at: float, lookback: float, alerts: list[Alert],
                 agent: str | None = None, recent: float | None = None,
                 all_series: list[SeriesInfo] | None = None) -> H.Health:
    """Health of one agent (or everything): the `recent` window (default: now, the last hour) judged
    against the rest of the lookback. A whole period is judged with recent=period, lookback=2×period."""
    recent = recent_window(lookback) if recent is None else recent
    start = at - recent
    series = _select(store, agent, None, all_series)
    by_metric: dict[str, list[SeriesInfo]] = defaultdict(list)
    for s in series:
        by_metric[s.metric].append(s)

    comps: list[H.Component] = []
    # latency: the first latency metric with data, recent window vs its own baseline
    lat = next((m for m in catalog.LATENCY_METRICS if m in by_metric), None)
    if lat is None:
        comps.append(H.latency_component(None, None, "latency"))
    else:
        ids = [s.id for s in by_metric[lat]]
        cur = store.query(ids, start, at)
        prev = store.query(ids, at - lookback, start)
        cur_p95 = _p95(cur) if len(cur) else None
        prev_p95 = _p95(prev) if len(prev) else None
        comps.append(H.latency_component(cur_p95, prev_p95, lat))
    # errors: error events over attempts in the recent window
    errors = attempts = 0.0
    for err_metric, attempt_metric in catalog.ERROR_METRICS.items():
        if err_metric in by_metric:
            errors += store.query([s.id for s in by_metric[err_metric]], start, at).total
        if attempt_metric in by_metric:
            attempts += store.query([s.id for s in by_metric[attempt_metric]], start, at).count
    comps.append(H.error_component(errors, attempts))
    # alerts
    firing: dict[str, int] = defaultdict(int)
    for a in alerts:
        if a.state == AlertState.FIRING and (agent is None or a.labels.get(catalog.AGENT_LABEL) == agent):
            firing[a.severity.value] += 1
    comps.append(H.alert_component(dict(firing)))
    # host resources only for the overall score
    if agent is None:
        peaks = []
        for m in catalog.HOST_METRICS:
            if m in by_metric:
                blk = store.query([s.id for s in by_metric[m]], start, at)
                if len(blk):
                    peaks.append((float((blk.value if blk.hi is None else blk.hi).max()), m.replace("host_", "").replace("_percent", "")))
        if peaks:
            peak, what = max(peaks)
            comps.append(H.resource_component(peak, what))
        else:
            comps.append(H.resource_component(None, ""))
    return H.combine(comps)


def _p95(blk: SampleBlock) -> float:
    """The 95th percentile of a block's samples (downsampled rows weighted by what they stand for)."""
    return float(group_quantile(np.zeros(len(blk), dtype=np.int64), blk.value, 0.95, weights=blk.n)[0])


def agents_in_store(store: Store, all_series: list[SeriesInfo] | None = None) -> list[str]:
    series = store.list_series() if all_series is None else all_series
    return sorted({s.labels[catalog.AGENT_LABEL] for s in series if catalog.AGENT_LABEL in s.labels})


def analyze(store: Store, config: Config, at: float, lookback: float, alerts: list[Alert],
            agent: str | None = None, labels: dict[str, str] | None = None, top: int = 10) -> dict[str, Any]:
    from perf_alerts.analytics.anomaly import anomaly_scores, threshold_for

    start = at - lookback
    all_series = store.list_series()  # listed once for the report, the health and every agent
    series = _select(store, agent, labels, all_series)
    block = store.query([s.id for s in series], start - lookback, at)
    threshold = threshold_for(None)
    summaries: list[dict[str, Any]] = []
    trends: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    for s in series:
        one = block.series(s.id)
        t, v = one.ts, one.value
        cur = t > start
        if not cur.any():
            continue
        meta = config.metric_meta(s.metric)
        now = one.slice(cur)
        summ = summarize(now.ts, now.value, n=now.n, lo=now.lo, hi=now.hi)
        summaries.append({"series": _series_name(s), "metric": s.metric, "labels": s.labels, **summ.to_dict()})
        tr = trend(t[cur], v[cur], better=meta.better, previous=v[~cur])
        if tr.verdict in ("worsening", "improving", "changing"):
            trends.append({"series": _series_name(s), **tr.to_dict()})
        if t.size >= 20:
            scores = anomaly_scores(v, t)
            recent = scores[cur]
            hits = int((recent >= threshold).sum())
            if hits:
                i = int(np.argmax(np.where(cur, scores, -1)))
                anomalies.append({"series": _series_name(s), "max_score": _r(float(scores[i]), 3),
                                  "at": iso(float(t[i])), "value": _r(float(v[i])), "points_over_threshold": hits})
    trends.sort(key=lambda d: (d["verdict"] != "worsening", d["p_value"] if d["p_value"] is not None else 1.0))
    anomalies.sort(key=lambda d: -(d["max_score"] or 0))

    overall = agent_health(store, config, at, lookback, alerts, agent, all_series=all_series)
    per_agent = {}
    if agent is None:
        for name in agents_in_store(store, all_series):
            per_agent[name] = agent_health(store, config, at, lookback, alerts, name, all_series=all_series).to_dict()

    findings: list[str] = []
    for name, h in sorted(per_agent.items(), key=lambda kv: (kv[1]["score"] is None, kv[1]["score"] or 0)):
        if h["score"] is not None and h["score"] < 80:
            worst = min((c for c in h["components"] if c["score"] is not None), key=lambda c: c["score"])
            findings.append(f"agent {name}: health {h['score']:.0f} ({h['status']}); worst component {worst['name']}: {worst['evidence']}")
    for tdict in trends[:5]:
        if tdict["verdict"] == "worsening":
            change = "" if tdict["change_pct"] is None else f", {tdict['change_pct']:+.1f}% vs the previous {format_duration(lookback)}"
            findings.append(f"{tdict['series']} is worsening: {fmt_number(tdict['slope_per_hour'], 3)} per hour "
                            f"(Mann-Kendall {_p(tdict['p_value'])}{change})")
    for adict in anomalies[:3]:
        findings.append(f"{adict['series']}: anomaly score {adict['max_score']} at {adict['at']} (value {adict['value']})")
    firing = [a for a in alerts if a.state == AlertState.FIRING]
    if firing:
        findings.insert(0, f"{len(firing)} alert(s) firing: " + ", ".join(sorted({a.rule for a in firing})))

    return {
        "window": {"start": iso(start), "end": iso(at), "lookback": format_duration(lookback)},
        "scope": {"agent": agent, "labels": labels or {}},
        "health": overall.to_dict(),
        "agents": per_agent,
        "findings": findings[:top],
        "trends": trends[:top],
        "anomalies": anomalies[:top],
        "summaries": sorted(summaries, key=lambda d: d["series"])[: top * 3],
        "series_analyzed": len(summaries),
    }


def predict(store: Store, config: Config, at: float, horizon: float, lookback: float,
            agent: str | None = None, labels: dict[str, str] | None = None, top: int = 10,
            breaches_only: bool = False) -> dict[str, Any]:
    """Forecasts per series and, for every threshold/forecast rule, the series breaching it now or
    predicted to within the horizon.

    Breaches come from `analytics.forecast.breach_outlook`, the code `forecast` rules fire on:
    a rule applies to the series its matchers select; a series whose last sample is already past
    the threshold is `status: breaching` (time to breach "now"), not a prediction; no time is
    earlier than `at`; a forecast rule needs its `min_probability`, a threshold rule even odds.
    The rule's threshold and operator are judged on this call's `horizon` and `lookback`.
    `breaches_only` forecasts only the series some rule puts a limit on (what a policy
    counting predicted breaches needs, at a fraction of the cost).
    """
    from perf_alerts.analytics.forecast import BREACH_OPS, MIN_BREACH_POINTS, breach_outlook, forecast_until

    limits: dict[str, list[Any]] = defaultdict(list)
    for rule in config.rules:
        if rule.type in ("threshold", "forecast") and rule.op in BREACH_OPS and rule.value is not None:
            limits[rule.metric].append(rule)
    series = [s for s in _select(store, agent, labels) if not breaches_only or s.metric in limits]
    block = store.query([s.id for s in series], at - lookback, at)
    forecasts: list[dict[str, Any]] = []
    breaches: list[dict[str, Any]] = []
    skipped = 0
    for s in series:
        t, v = block.of(s.id)
        if t.size < MIN_BREACH_POINTS:
            skipped += 1
            continue
        fc = forecast_until(t, v, at + horizon)
        if fc is None:
            skipped += 1
            continue
        forecasts.append({"series": _series_name(s), **fc.to_dict(max_points=6)})
        for rule in limits.get(s.metric, []):
            if not all(m.matches(s.labels) for m in rule.matchers):
                continue
            min_p = rule.min_probability if rule.type == "forecast" else 0.5
            o = breach_outlook(t, v, at, horizon, rule.value, rule.op, min_p, fc=fc)
            if o is None or not o.active:
                continue
            secs = o.seconds
            breaches.append({
                "series": _series_name(s), "rule": rule.name, "threshold": f"{rule.op} {rule.value:g}",
                "status": o.status, "value": _r(o.value), "last_value": _r(o.last_value),
                "breach_at": iso(o.breach_at),
                "time_to_breach": "now" if o.status == "breaching" else format_duration(secs),
                "time_to_breach_hours": _r(None if secs is None else secs / 3600, 2),
                "probability": _r(o.probability, 3), "earliest_plausible": iso(o.bound_at),
            })
    breaches.sort(key=lambda b: (b["status"] != "breaching", b["time_to_breach_hours"] is None,
                                 b["time_to_breach_hours"] or 0, -(b["probability"] or 0)))
    return {
        "at": iso(at), "horizon": format_duration(horizon), "lookback": format_duration(lookback),
        "breaches": breaches[:top], "forecasts": forecasts[:top], "series_forecast": len(forecasts),
        "series_skipped": skipped, "min_points": MIN_BREACH_POINTS,
        "breaching_now": sum(1 for b in breaches if b["status"] == "breaching"),
        "predicted": sum(1 for b in breaches if b["status"] == "predicted"),
    }
