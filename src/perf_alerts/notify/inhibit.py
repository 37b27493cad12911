"""Inhibition: a firing source alert mutes matching target alerts that share the `equal` labels
(e.g. a critical on an agent mutes that agent's warnings)."""

from __future__ import annotations

from typing import Iterable

from perf_alerts.config import InhibitRule
from perf_alerts.model import Alert, AlertState


def inhibited(alerts: Iterable[Alert], rules: list[InhibitRule]) -> set[str]:
    """Fingerprints of the alerts muted by some firing source alert (never by themselves).

    As Alertmanager's `InhibitRule.hasEqual`: when a target also matches the source matchers,
    sources that also match the target matchers do not count, so two alerts that each match
    both sides do not mute each other."""
    alerts = list(alerts)
    muted: set[str] = set()
    for rule in rules:
        # equal-label values → [(fingerprint, also matches the target side)]
        sources: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
        for s in alerts:
            if s.state == AlertState.FIRING and all(m.matches(s.labels) for m in rule.source_matchers):
                two_sided = all(m.matches(s.labels) for m in rule.target_matchers)
                sources.setdefault(tuple(s.labels.get(k, "") for k in rule.equal), []).append((s.fingerprint, two_sided))
        if not sources:
            continue
        for t in alerts:
            if not all(m.matches(t.labels) for m in rule.target_matchers):
                continue
            src = sources.get(tuple(t.labels.get(k, "") for k in rule.equal), [])
            exclude_two_sided = all(m.matches(t.labels) for m in rule.source_matchers)
            if any(fp != t.fingerprint and not (exclude_two_sided and two_sided) for fp, two_sided in src):
                muted.add(t.fingerprint)
    return muted
