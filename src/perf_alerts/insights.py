"""Analysis reports over the store: health, summaries, trends, anomalies, forecasts.

The single implementation behind `perf-alerts analyze|predict`, the crew tool's
`analyze`/`predict` actions and the dashboard. Results are dataclasses (`AnalysisReport`,
`PredictionReport`) sized for a person or an LLM context: top-N lists, rounded numbers, no
raw series; their `to_dict()` is the JSON the CLI (`--json`), the API and the crew tool show.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perf_alerts import catalog
from perf_alerts.analytics import health as H
from perf_alerts.analytics.stats import group_quantile, summarize
from perf_alerts.analytics.trend import trend
from perf_alerts.config import Config
from perf_alerts.model import Alert, AlertState
from perf_alerts.rules.template import fmt_number
from perf_alerts.store import SampleBlock, SeriesInfo, Store
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.analytics.forecast import Forecast
    from perf_alerts.analytics.stats import SeriesSummary as SummaryStats


# --------------------------------------------------------------------------- report types
# Numbers are stored as reported (rounded); `to_dict()` gives the JSON, key for key and in order.

@dataclass(frozen=True)
class Window:
    start: str  # ISO time
    end: str
    lookback: str  # e.g. "24h"
    recent: str = ""  # what health judges as "now" (the last hour) against the rest of the lookback, e.g. "1h"

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "lookback": self.lookback, "recent": self.recent}


@dataclass(frozen=True)
class Scope:
    agent: str | None
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "labels": self.labels}


@dataclass(frozen=True)
class SeriesSummary:
    """One series' statistics over the window (`stats.SeriesSummary`, rounded by its `to_dict`)."""
    series: str
    metric: str
    labels: dict[str, str]
    stats: "SummaryStats"

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "metric": self.metric, "labels": self.labels, **self.stats.to_dict()}


@dataclass(frozen=True)
class TrendFinding:
    """A series whose trend is not flat: `analytics.trend.Trend.to_dict()`'s values, with the series."""
    series: str
    n: int
    slope_per_hour: float | None
    p_value: float | None
    significant: bool
    direction: str
    verdict: str  # worsening / improving / changing
    change_pct: float | None
    current_mean: float | None
    previous_mean: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "n": self.n, "slope_per_hour": self.slope_per_hour, "p_value": self.p_value,
                "significant": self.significant, "direction": self.direction, "verdict": self.verdict,
                "change_pct": self.change_pct, "current_mean": self.current_mean,
                "previous_mean": self.previous_mean}


@dataclass(frozen=True)
class AnomalyFinding:
    series: str
    max_score: float | None
    at: str  # ISO time of the highest score
    value: float | None
    points_over_threshold: int

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "max_score": self.max_score, "at": self.at, "value": self.value,
                "points_over_threshold": self.points_over_threshold}


@dataclass(frozen=True)
class AnalysisReport:
    window: Window
    scope: Scope
    health: H.Health
    agents: dict[str, H.Health]
    findings: list[str]
    trends: list[TrendFinding]
    anomalies: list[AnomalyFinding]
    summaries: list[SeriesSummary]
    series_analyzed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.to_dict(),
            "scope": self.scope.to_dict(),
            "health": self.health.to_dict(),
            "agents": {name: h.to_dict() for name, h in self.agents.items()},
            "findings": list(self.findings),
            "trends": [t.to_dict() for t in self.trends],
            "anomalies": [a.to_dict() for a in self.anomalies],
            "summaries": [x.to_dict() for x in self.summaries],
            "series_analyzed": self.series_analyzed,
        }


@dataclass(frozen=True)
class Breach:
    """A series past a threshold/forecast rule's limit now (`status` breaching) or predicted to be."""
    series: str
    rule: str
    threshold: str  # e.g. "> 60"
    status: str  # breaching / predicted
    value: float | None
    last_value: float | None
    breach_at: str | None  # ISO time
    time_to_breach: str  # "now" or a duration
    time_to_breach_hours: float | None
    probability: float | None
    earliest_plausible: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, "rule": self.rule, "threshold": self.threshold, "status": self.status,
                "value": self.value, "last_value": self.last_value, "breach_at": self.breach_at,
                "time_to_breach": self.time_to_breach, "time_to_breach_hours": self.time_to_breach_hours,
                "probability": self.probability, "earliest_plausible": self.earliest_plausible}


@dataclass(frozen=True)
class SeriesForecast:
    """One series' forecast (`analytics.forecast.Forecast`; its JSON is `to_dict(max_points=6)`)."""
    series: str
    forecast: "Forecast"

    def to_dict(self) -> dict[str, Any]:
        return {"series": self.series, **self.forecast.to_dict(max_points=6)}


@dataclass(frozen=True)
class PredictionReport:
    at: str  # ISO time
    horizon: str  # durations, e.g. "6h"
    lookback: str
    breaches: list[Breach]
    forecasts: list[SeriesForecast]
    series_forecast: int
    series_skipped: int
    min_points: int
    breaching_now: int
    predicted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "horizon": self.horizon, "lookback": self.lookback,
            "breaches": [b.to_dict() for b in self.breaches], "forecasts": [f.to_dict() for f in self.forecasts],
            "series_forecast": self.series_forecast, "series_skipped": self.series_skipped,
            "min_points": self.min_points, "breaching_now": self.breaching_now, "predicted": self.predicted,
        }


def _r(x: float | None, d: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else float(round(x, d))


def _iso(ts: float) -> str:
    out = iso(ts)
    assert out is not None
    return out


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
        # a baseline must reach back at least half as long as the window it judges: a day judged against
        # the last 3 minutes of the day before (a store that began just before the period) is no baseline
        reach = start - float(prev.ts.min()) if len(prev) else 0.0
        if prev_p95 is not None and reach < recent / 2.0:
            comps.append(H.latency_component(cur_p95, None, lat, f"the earlier data ({format_duration(reach)} before "
                                             f"the window) is too short a baseline"))
        else:
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
            agent: str | None = None, labels: dict[str, str] | None = None, top: int = 10) -> AnalysisReport:
    from perf_alerts.analytics.anomaly import anomaly_scores, threshold_for

    start = at - lookback
    all_series = store.list_series()  # listed once for the report, the health and every agent
    series = _select(store, agent, labels, all_series)
    block = store.query([s.id for s in series], start - lookback, at)
    threshold = threshold_for(None)
    summaries: list[SeriesSummary] = []
    trends: list[TrendFinding] = []
    anomalies: list[AnomalyFinding] = []
    for s in series:
        one = block.series(s.id)
        t, v = one.ts, one.value
        cur = t > start
        if not cur.any():
            continue
        meta = config.metric_meta(s.metric)
        now = one.slice(cur)
        summ = summarize(now.ts, now.value, n=now.n, lo=now.lo, hi=now.hi)
        summaries.append(SeriesSummary(_series_name(s), s.metric, s.labels, summ))
        tr = trend(t[cur], v[cur], better=meta.better, previous=v[~cur])
        if tr.verdict in ("worsening", "improving", "changing"):
            trends.append(TrendFinding(series=_series_name(s), **tr.to_dict()))
        if t.size >= 20:
            scores = anomaly_scores(v, t)
            recent = scores[cur]
            hits = int((recent >= threshold).sum())
            if hits:
                i = int(np.argmax(np.where(cur, scores, -1)))
                anomalies.append(AnomalyFinding(_series_name(s), _r(float(scores[i]), 3), _iso(float(t[i])),
                                                _r(float(v[i])), hits))
    trends.sort(key=lambda d: (d.verdict != "worsening", d.p_value if d.p_value is not None else 1.0))
    anomalies.sort(key=lambda d: -(d.max_score or 0))

    overall = agent_health(store, config, at, lookback, alerts, agent, all_series=all_series)
    agents: dict[str, H.Health] = {}
    if agent is None:
        for name in agents_in_store(store, all_series):
            agents[name] = agent_health(store, config, at, lookback, alerts, name, all_series=all_series)
    per_agent = {name: h.to_dict() for name, h in agents.items()}  # the findings judge the rounded scores shown

    findings: list[str] = []
    for name, h in sorted(per_agent.items(), key=lambda kv: (kv[1]["score"] is None, kv[1]["score"] or 0)):
        if h["score"] is not None and h["score"] < 80:
            worst = min((c for c in h["components"] if c["score"] is not None), key=lambda c: c["score"])
            findings.append(f"agent {name}: health {h['score']:.0f} ({h['status']}); worst component {worst['name']}: {worst['evidence']}")
    for tf in trends[:5]:
        if tf.verdict == "worsening":
            change = "" if tf.change_pct is None else f", {tf.change_pct:+.1f}% vs the previous {format_duration(lookback)}"
            unit = config.metric_meta(tf.series.split("{", 1)[0]).unit  # "0.0000238 per hour" of what?
            findings.append(f"{tf.series} is worsening: {fmt_number(tf.slope_per_hour, 3)}"
                            f"{(' ' + unit) if unit else ''} per hour "
                            f"(Mann-Kendall {_p(tf.p_value)}{change})")
    for af in anomalies[:3]:
        findings.append(f"{af.series}: anomaly score {af.max_score} at {af.at} (value {af.value})")
    firing = [a for a in alerts if a.state == AlertState.FIRING]
    if firing:
        findings.insert(0, f"{plural(len(firing), 'alert')} firing: " + ", ".join(sorted({a.rule for a in firing})))

    return AnalysisReport(
        window=Window(_iso(start), _iso(at), format_duration(lookback), format_duration(recent_window(lookback))),
        scope=Scope(agent, labels or {}),
        health=overall,
        agents=agents,
        findings=findings[:top],
        trends=trends[:top],
        anomalies=anomalies[:top],
        summaries=sorted(summaries, key=lambda d: d.series)[: top * 3],
        series_analyzed=len(summaries),
    )


def predict(store: Store, config: Config, at: float, horizon: float, lookback: float,
            agent: str | None = None, labels: dict[str, str] | None = None, top: int = 10,
            breaches_only: bool = False) -> PredictionReport:
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
    forecasts: list[SeriesForecast] = []
    breaches: list[Breach] = []
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
        forecasts.append(SeriesForecast(_series_name(s), fc))
        for rule in limits.get(s.metric, []):
            if not all(m.matches(s.labels) for m in rule.matchers):
                continue
            min_p = rule.min_probability if rule.type == "forecast" else 0.5
            o = breach_outlook(t, v, at, horizon, rule.value, rule.op, min_p, fc=fc)
            if o is None or not o.active:
                continue
            secs = o.seconds
            breaches.append(Breach(
                series=_series_name(s), rule=rule.name, threshold=f"{rule.op} {rule.value:g}",
                status=o.status, value=_r(o.value), last_value=_r(o.last_value),
                breach_at=iso(o.breach_at),
                time_to_breach="now" if o.status == "breaching" else format_duration(secs),
                time_to_breach_hours=_r(None if secs is None else secs / 3600, 2),
                probability=_r(o.probability, 3), earliest_plausible=iso(o.bound_at),
            ))
    breaches.sort(key=lambda b: (b.status != "breaching", b.time_to_breach_hours is None,
                                 b.time_to_breach_hours or 0, -(b.probability or 0)))
    return PredictionReport(
        at=_iso(at), horizon=format_duration(horizon), lookback=format_duration(lookback),
        breaches=breaches[:top], forecasts=forecasts[:top], series_forecast=len(forecasts),
        series_skipped=skipped, min_points=MIN_BREACH_POINTS,
        breaching_now=sum(1 for b in breaches if b.status == "breaching"),
        predicted=sum(1 for b in breaches if b.status == "predicted"),
    )
