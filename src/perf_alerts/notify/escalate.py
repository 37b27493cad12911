"""Escalation: 'still unacknowledged after D → notify these receivers, mention these roles'."""

from __future__ import annotations

from dataclasses import dataclass

from perf_alerts.config import EscalationLevel, EscalationPolicy
from perf_alerts.model import Alert, AlertState


@dataclass(frozen=True)
class Escalation:
    alert: Alert
    policy: str
    level: int  # 1-based level reached
    spec: EscalationLevel
    repeat: bool


def policy_for(alert: Alert, policies: list[EscalationPolicy]) -> EscalationPolicy | None:
    for p in policies:
        if all(m.matches(alert.labels) for m in p.matchers):
            return p
    return None


def due_escalations(alerts: list[Alert], policies: list[EscalationPolicy], now: float,
                    muted: set[str] = frozenset()) -> list[Escalation]:  # type: ignore[assignment]
    """Escalations due now. Acknowledged, silenced/inhibited and non-firing alerts never escalate."""
    out: list[Escalation] = []
    for a in alerts:
        if a.state != AlertState.FIRING or a.acknowledged or a.fingerprint in muted or a.started_at is None:
            continue
        p = policy_for(a, policies)
        if p is None:
            continue
        age = now - a.started_at
        reached = sum(1 for lv in p.levels if age >= lv.after)
        if reached > a.escalation_level:
            # every level reached since the last cycle: after a gap, level 1's people still hear about it
            for level in range(a.escalation_level + 1, reached + 1):
                out.append(Escalation(a, p.name, level, p.levels[level - 1], repeat=False))
        elif (reached == len(p.levels) and p.repeat_interval and a.escalated_at is not None
              and now - a.escalated_at >= p.repeat_interval):
            out.append(Escalation(a, p.name, reached, p.levels[-1], repeat=True))
    return out
