"""Explainable health score 0–100: a weighted mean of components, each with its evidence.

A component with no data is left out (and said to be missing) instead of being given a
made-up default; with no component at all the score is None ("no data").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf_alerts.textsafe import plural

WEIGHTS = {"latency": 0.35, "errors": 0.35, "alerts": 0.2, "resources": 0.1}

# Latency at or below 1.1× its own baseline is healthy; 3× is fully degraded.
LATENCY_OK_RATIO = 1.1
LATENCY_BAD_RATIO = 3.0
# An error ratio of 20% or more is fully degraded.
ERROR_BAD_RATIO = 0.20
ALERT_PENALTY = {"critical": 40.0, "warning": 15.0, "info": 5.0}
RESOURCE_OK, RESOURCE_BAD = 80.0, 100.0


@dataclass(frozen=True)
class Component:
    name: str
    score: float | None
    evidence: str
    weight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": None if self.score is None else round(self.score, 1),
                "weight": self.weight, "evidence": self.evidence}


@dataclass(frozen=True)
class Health:
    score: float | None
    status: str  # healthy / degraded / critical / no data
    components: list[Component] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"score": None if self.score is None else round(self.score, 1), "status": self.status,
                "components": [c.to_dict() for c in self.components]}


def _clamp(x: float) -> float:
    return max(0.0, min(100.0, x))


def latency_component(recent_p95: float | None, baseline_p95: float | None, metric: str,
                      no_baseline: str = "no earlier baseline to compare with") -> Component:
    if recent_p95 is None:
        return Component("latency", None, f"no {metric} samples in the window", WEIGHTS["latency"])
    if baseline_p95 is None or baseline_p95 <= 0:
        return Component("latency", None, f"p95 {metric} {recent_p95:.3g}; {no_baseline}", WEIGHTS["latency"])
    ratio = recent_p95 / baseline_p95
    score = _clamp(100.0 * (1.0 - (ratio - LATENCY_OK_RATIO) / (LATENCY_BAD_RATIO - LATENCY_OK_RATIO)))
    return Component("latency", score, f"p95 {metric} {recent_p95:.3g} vs baseline {baseline_p95:.3g} ({ratio:.2f}×)",
                     WEIGHTS["latency"])


def error_component(errors: float, attempts: float) -> Component:
    if attempts <= 0:
        return Component("errors", None, "no attempts recorded in the window", WEIGHTS["errors"])
    ratio = errors / attempts
    score = _clamp(100.0 * (1.0 - ratio / ERROR_BAD_RATIO))
    return Component("errors", score, f"{int(errors)} errors in {int(attempts)} calls ({ratio:.1%})",
                     WEIGHTS["errors"])


def alert_component(firing: dict[str, int]) -> Component:
    penalty = sum(ALERT_PENALTY.get(sev, 0.0) * n for sev, n in firing.items())
    parts = [f"{n} {sev}" for sev, n in sorted(firing.items()) if n]
    return Component("alerts", _clamp(100.0 - penalty), ("firing: " + ", ".join(parts)) if parts else "no firing alerts",
                     WEIGHTS["alerts"])


def resource_component(peak_percent: float | None, what: str) -> Component:
    if peak_percent is None:
        return Component("resources", None, "no host metrics in the window", WEIGHTS["resources"])
    score = _clamp(100.0 * (RESOURCE_BAD - peak_percent) / (RESOURCE_BAD - RESOURCE_OK)) if peak_percent > RESOURCE_OK else 100.0
    return Component("resources", score, f"peak {what} {peak_percent:.0f}%", WEIGHTS["resources"])


def status_for(score: float | None) -> str:
    if score is None:
        return "no data"
    if score >= 80:
        return "healthy"
    if score >= 50:
        return "degraded"
    return "critical"


def combine(components: list[Component]) -> Health:
    """Weighted mean over the components that have data (alerts alone do not make a score)."""
    measured = [c for c in components if c.score is not None and c.name != "alerts"]
    if not measured:
        return Health(None, "no data", components)
    usable = [c for c in components if c.score is not None]
    total_w = sum(c.weight for c in usable)
    score = sum(c.weight * (c.score or 0.0) for c in usable) / total_w
    return Health(score, status_for(score), components)


# --------------------------------------------------------------------------- health over a period

# a period's status caps its score, so the number and the word never disagree ("98.6 — critical" cannot be)
STATUS_CAP = {"healthy": 100.0, "degraded": 79.0, "critical": 49.0}


@dataclass(frozen=True)
class PeriodHealth:
    """How a period went, judged from what happened in it: SLO compliance over the period, incident
    minutes (a critical or warning alert firing) and the alerts fired; the measured components' score
    (latency, errors, resources against the period before) is capped by that verdict."""

    score: float | None
    status: str
    reasons: list[str]
    component_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"score": None if self.score is None else round(self.score, 1), "status": self.status,
                "reasons": list(self.reasons),
                "component_score": None if self.component_score is None else round(self.component_score, 1)}


def period_health(slos: list[dict[str, Any]], incidents: dict[str, Any], component_score: float | None) -> PeriodHealth:
    """`slos`: the period's SLO rows (`SLOStatus.to_dict()` plus `series`); `incidents`: `count`,
    `critical`, `warning`, `total_minutes`, `critical_minutes`.

    - an SLO breached over the period: critical when a critical incident came with it, else degraded;
    - a critical incident with every SLO held (and measured): healthy, and said so; with no SLO data to
      judge it by: degraded;
    - an SLO at risk (little budget left) or warning incidents without SLO data: degraded;
    - otherwise healthy; nothing measured at all: no data.
    """
    measured = [s for s in slos if s.get("status") != "no data"]
    breached = [s for s in measured if s.get("status") == "breached"]
    at_risk = [s for s in measured if s.get("status") == "at risk"]
    crit = int(incidents.get("critical") or 0)
    warn = int(incidents.get("warning") or 0)
    reasons: list[str] = []
    for s in breached:
        reasons.append(f"SLO {s.get('series', s.get('name'))} breached: {s.get('why')}")
    if breached:
        status = "critical" if crit else "degraded"
        if crit:
            reasons.append(f"{plural(crit, 'critical incident')}, {incidents.get('critical_minutes', 0):g} min")
    elif crit:
        if measured:
            status = "healthy"
            reasons.append(f"{plural(crit, 'critical incident')} ({incidents.get('critical_minutes', 0):g} min) but every "
                           f"SLO held ({len(measured)} measured)")
        else:
            status = "degraded"
            reasons.append(f"{plural(crit, 'critical incident')} ({incidents.get('critical_minutes', 0):g} min) and no SLO "
                           f"data to judge the period by")
    elif at_risk:
        status = "degraded"
    elif measured or component_score is not None:
        status = "healthy"
    else:
        status = "no data"
    for s in at_risk:
        reasons.append(f"SLO {s.get('series', s.get('name'))} at risk: {s.get('why')}")
    if warn and not crit:
        reasons.append(f"{plural(warn, 'warning incident')}, {incidents.get('total_minutes', 0):g} min")
    if status == "healthy" and not reasons:
        reasons.append(f"every SLO held ({len(measured)} measured) and no critical incident" if measured
                       else "no SLO data; no critical incident; judged from the measured components")
    if status == "no data":
        reasons.append("no SLO data, no incidents and no measurements in the period")
    order = ("healthy", "degraded", "critical")
    if component_score is not None and status in order and order.index(status_for(component_score)) > order.index(status):
        status = status_for(component_score)
        reasons.append(f"the measured components (latency, errors, resources against the period before) score "
                       f"{component_score:.1f}")
    score = None if component_score is None else min(component_score, STATUS_CAP.get(status, 100.0))
    if score is not None and component_score is not None and score < component_score:
        reasons.append(f"score capped at {STATUS_CAP[status]:g} ({status}); the measured components alone give "
                       f"{component_score:.1f}")
    return PeriodHealth(score, status, reasons, component_score)
