"""The alert state machine: pending → firing → resolved, with for / keep_firing_for /
recovery (hysteresis) / cooldown. Pure: takes the current alerts and a rule's results,
returns the new alerts and the transitions; the caller persists both in one transaction.

Its input, `SeriesResult` (one per series a rule looked at), and the labels and annotation
context an alert gets are defined here, below `rules`: the rule evaluator produces results,
and the rule tools (backtest, test-rules) replay them through `apply_results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from perf_alerts.config import Rule
from perf_alerts.model import Alert, AlertState, fingerprint
from perf_alerts.template import render_annotation
from perf_alerts.timeutil import format_duration


@dataclass(slots=True)
class SeriesResult:
    """One series' outcome of one rule evaluation: what the state machine advances on."""

    labels: dict[str, str]
    value: float | None
    active: bool  # the firing condition holds
    holding: bool  # still beyond the recovery threshold (hysteresis); equals `active` without recovery
    detail: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None  # filled by the Evaluator from its cache; computed when missing


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changed state at `at`: what the notification pipeline reacts to."""

    alert: Alert
    previous: AlertState | None  # None: the alert is new
    event: str  # pending, firing, resolved, cancelled
    at: float


def alert_labels(rule: Rule, series_labels: Mapping[str, str]) -> dict[str, str]:
    """An alert's labels: the series', the rule's, `alertname` and `severity` (its fingerprint's input)."""
    return {**series_labels, **rule.labels, "alertname": rule.name, "severity": rule.severity.value}


def rule_operator(rule: Rule) -> str | None:
    """The comparison an alert of `rule` states between its value and threshold (None: none applies)."""
    if rule.type == "anomaly":
        return ">="  # the anomaly score against the score threshold
    if rule.type == "absent":
        return None
    return rule.op


def template_context(rule: Rule, labels: Mapping[str, str], value: float | None,
                     detail: Mapping[str, Any]) -> dict[str, Any]:
    """What a rule's annotation templates can use (`{{ labels.agent }}`, `{{ value }}`, ...).

    Annotations are rendered while an alert is pending and once more when it goes firing,
    with the value that made it fire; they are not re-rendered while it stays firing, so
    `{{ value }}` in a notification is always the firing value, never a later one."""
    return {
        "labels": dict(labels), "value": "" if value is None else value, "threshold": rule.threshold,
        "op": rule_operator(rule) or "",
        "rule": rule.name, "metric": rule.metric, "window": format_duration(rule.window),
        "severity": rule.severity.value, "detail": dict(detail),
    }


def apply_results(rule: Rule, results: Iterable[SeriesResult], current: dict[str, Alert],
                  at: float) -> tuple[list[Alert], list[str], list[Transition]]:
    """Advance every alert of `rule` to time `at`.

    `current` holds this rule's stored alerts by fingerprint. Returns (alerts to save,
    fingerprints to delete, transitions). `value` follows every evaluation; the facts of
    the state changes (`fired_value` at `started_at`, `resolved_value`) and the annotations
    rendered at firing stay as they were when the state changed.
    """
    save: list[Alert] = []
    delete: list[str] = []
    transitions: list[Transition] = []
    seen: set[str] = set()

    for r in results:
        if r.fingerprint is not None:
            fp = r.fingerprint
            if not r.active and fp not in current:
                continue  # the common case: a healthy series with no alert; nothing to compute
            labels = alert_labels(rule, r.labels)
        else:
            labels = alert_labels(rule, r.labels)
            fp = fingerprint(rule.name, labels)
        seen.add(fp)
        a = current.get(fp)
        if not r.active and a is None:
            continue
        if a is None or a.state != AlertState.FIRING:
            ctx = template_context(rule, labels, r.value, r.detail)
            annotations = {k: render_annotation(k, v, ctx) for k, v in rule.annotations.items()}
        else:
            annotations = a.annotations  # rendered with the firing value when it fired
        if r.active:
            if a is None or a.state == AlertState.RESOLVED:
                if a is not None and rule.cooldown > 0 and a.resolved_at is not None \
                        and at < a.resolved_at + rule.cooldown:
                    continue  # still cooling down from the last episode: do not re-raise yet
                prev = None if a is None else a.state
                new = Alert(
                    fingerprint=fp, rule=rule.name, state=AlertState.PENDING, severity=rule.severity,
                    labels=labels, annotations=annotations, value=r.value, threshold=rule.threshold,
                    window=format_duration(rule.window), active_since=at, last_eval_at=at, last_true_at=at,
                    started_at=None if a is None else a.started_at,
                    resolved_at=None if a is None else a.resolved_at,
                    fire_count=0 if a is None else a.fire_count, operator=rule_operator(rule),
                    fired_value=None if a is None else a.fired_value,
                    resolved_value=None if a is None else a.resolved_value,
                )
                transitions.append(Transition(new, prev, "pending", at))
                if rule.for_ <= 0:
                    new = _fire(new, at, r.value)
                    transitions.append(Transition(new, AlertState.PENDING, "firing", at))
                save.append(new)
            elif a.state == AlertState.PENDING:
                a = replace(a, value=r.value, annotations=annotations, last_eval_at=at, last_true_at=at,
                            operator=rule_operator(rule))
                if at - (at if a.active_since is None else a.active_since) >= rule.for_:
                    a = _fire(a, at, r.value)
                    transitions.append(Transition(a, AlertState.PENDING, "firing", at))
                save.append(a)
            else:  # firing
                save.append(replace(a, value=r.value, annotations=annotations, last_eval_at=at, last_true_at=at,
                                    cleared_at=None))
        elif a is not None and a.state != AlertState.RESOLVED:
            if a.state == AlertState.FIRING and r.holding:
                # back inside the threshold but not past the recovery level: stays firing
                save.append(replace(a, value=r.value, annotations=annotations, last_eval_at=at, last_true_at=at,
                                    cleared_at=None))
            else:
                changed, gone, tr = _inactive(rule, replace(a, value=r.value, annotations=annotations), at, r.value)
                save += changed
                delete += gone
                transitions += tr

    # alerts whose series produced no result this cycle (no data in window, series gone): a sum,
    # count or rate over an empty window is 0 (no errors left in it); anything else has no value
    empty = 0.0 if rule.type == "threshold" and rule.aggregate in ("sum", "count", "rate") else None
    for fp, a in current.items():
        if fp in seen or a.state == AlertState.RESOLVED:
            continue
        changed, gone, tr = _inactive(rule, a, at, empty)
        save += changed
        delete += gone
        transitions += tr
    return save, delete, transitions


def _fire(a: Alert, at: float, value: float | None) -> Alert:
    return replace(a, state=AlertState.FIRING, started_at=at, resolved_at=None, cleared_at=None, acknowledged_at=None,
                   acknowledged_by=None, escalation_level=0, escalated_at=None, fire_count=a.fire_count + 1,
                   fired_value=value, resolved_value=None)


def _inactive(rule: Rule, a: Alert, at: float, value: float | None
              ) -> tuple[list[Alert], list[str], list[Transition]]:
    """`a` no longer meets its condition at `at`; `value` is its series' value then (None: no data)."""
    if a.state == AlertState.PENDING:
        # never fired this episode: drop it (or return to the previous resolved episode for cooldowns)
        tr = [Transition(a, AlertState.PENDING, "cancelled", at)]
        if a.fire_count > 0:
            back = replace(a, state=AlertState.RESOLVED, active_since=None, last_eval_at=at)
            return [back], [], tr
        return [], [a.fingerprint], tr
    # firing: keep_firing_for counts from the first evaluation where the condition no longer held
    cleared = a.cleared_at if a.cleared_at is not None else at
    if rule.keep_firing_for > 0 and at - cleared < rule.keep_firing_for:
        return [replace(a, last_eval_at=at, cleared_at=cleared)], [], []
    resolved = replace(a, state=AlertState.RESOLVED, resolved_at=at, last_eval_at=at, cleared_at=None,
                       resolved_value=value)
    return [resolved], [], [Transition(resolved, AlertState.FIRING, "resolved", at)]
