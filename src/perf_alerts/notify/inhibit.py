"""Inhibition: a firing source alert mutes matching target alerts that share the `equal` labels
(e.g. a critical on an agent mutes that agent's warnings)."""

from __future__ import annotations

from typing import Iterable

from perf_alerts.config import InhibitRule
from perf_alerts.model import Alert, AlertState


def inhibited(alerts: Iterable[Alert], rules: list[InhibitRule]) -> set[str]:
    """Fingerprints of the alerts muted by some firing source alert (never by themselves)."""
    alerts = list(alerts)
    muted: set[str] = set()
    for rule in rules:
        sources: dict[tuple[str, ...], set[str]] = {}
        for s in alerts:
            if s.state == AlertState.FIRING and all(m.matches(s.labels) for m in rule.source_matchers):
                sources.setdefault(tuple(s.labels.get(k, "") for k in rule.equal), set()).add(s.fingerprint)
        if not sources:
            continue
        for t in alerts:
            if not all(m.matches(t.labels) for m in rule.target_matchers):
                continue
            src = sources.get(tuple(t.labels.get(k, "") for k in rule.equal))
            if src and src - {t.fingerprint}:
                muted.add(t.fingerprint)
    return muted
