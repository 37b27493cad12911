"""Notification policies: conditions over analytics and alert state → actions.

`PolicyEngine.evaluate(now)` judges every enabled policy (priority 1 first), runs the
actions of those whose condition holds and whose cooldown has passed, audits every
execution, and first settles the verifications that have come due. Only the variables a
condition uses are computed, and the expensive ones (anomalies, breaches) are cached for
a few minutes so a daemon ticking every minute does not re-score every series each time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from perf_alerts.store import LeadershipLost
from perf_alerts.config import Policy
from perf_alerts.manage import actions as A
from perf_alerts.condition import Condition, parse_condition
from perf_alerts.model import AlertState
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.insights import Breach, PredictionReport
    from perf_alerts.notify.pipeline import Notifier

log = logging.getLogger("perf_alerts.policies")

HEALTH_LOOKBACK = 86400.0
BREACH_HORIZON = 6 * 3600.0
EXPENSIVE_TTL = 300.0


def _minute(ts: Any) -> str:
    """An ISO time (or Unix seconds) as people read it in a notification: 2027-01-15 08:27 UTC."""
    from datetime import datetime, timezone

    from perf_alerts.timeutil import parse_timestamp

    if ts in (None, ""):
        return ""
    try:
        return datetime.fromtimestamp(parse_timestamp(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except Exception:
        return str(ts)


def insights_predict(system: "PerfAlerts", now: float) -> "PredictionReport":
    """The predicted breaches a `breaches` condition counts: every rule, BREACH_HORIZON ahead."""
    from perf_alerts import insights

    return insights.predict(system.store, system.config, now, BREACH_HORIZON, HEALTH_LOOKBACK, top=1000,
                            breaches_only=True)


class Variables:
    """The values conditions read, computed on first use for one instant."""

    def __init__(self, system: "PerfAlerts", now: float, cache: dict[str, tuple[float, Any]] | None = None) -> None:
        self.system = system
        self.now = now
        self.values: dict[str, Any] = {}
        self._alerts: list[Any] | None = None
        self._health: dict[str, Any] = {}  # the Health behind each health variable read, for the evidence
        self._cache = cache if cache is not None else {}

    def alerts(self) -> list[Any]:
        if self._alerts is None:
            self._alerts = self.system.store.load_alerts(states=[AlertState.FIRING, AlertState.PENDING])
        return self._alerts

    def get(self, name: str) -> Any:
        if name not in self.values:
            self.values[name] = self._compute(name)
        return self.values[name]

    def _compute(self, name: str) -> Any:
        from perf_alerts import insights

        head, _, rest = name.partition(".")
        if head in ("firing", "pending"):
            state = AlertState.FIRING if head == "firing" else AlertState.PENDING
            xs = [a for a in self.alerts() if a.state == state]
            return len(xs) if rest == "total" else sum(1 for a in xs if a.severity.value == rest)
        if head == "health":
            h = insights.agent_health(self.system.store, self.system.config, self.now, HEALTH_LOOKBACK,
                                      self.alerts(), rest or None)
            self._health[rest] = h
            return None if h.score is None else round(float(h.score), 2)
        if name == "anomalies":
            return self._cached(name, lambda: len(insights.analyze(
                self.system.store, self.system.config, self.now, HEALTH_LOOKBACK, self.alerts(), top=1000).anomalies))
        if name == "breaches":
            return len(self.breaches())
        raise KeyError(name)

    def breaches(self) -> list["Breach"]:
        """The predicted breaches behind `breaches` (insights.predict's entries, soonest first)."""
        def found() -> list["Breach"]:
            rep = insights_predict(self.system, self.now)
            return [b for b in rep.breaches if b.breach_at]
        return list(self._cached("breaches:list", found))

    def evidence(self, names: Any) -> list[str]:
        """What the variables a condition read stand for, in words a person can act on: which
        series and rule a predicted breach is on, when and how likely; which alerts are firing;
        what pulls a health score down. At most 5 lines per variable."""
        from perf_alerts.template import fmt_number
        from perf_alerts.textsafe import plural

        lines: list[str] = []
        names = sorted(set(names))
        if "breaches" in names:
            found = self.breaches()
            for b in found[:5]:
                at = _minute(b.breach_at)
                when = "breaching now" if b.status == "breaching" else f"predicted in {b.time_to_breach} (at {at})"
                sure = "" if b.probability is None else f", probability {float(b.probability):.0%}"
                early = _minute(b.earliest_plausible)
                early_txt = f", possibly as early as {early}" if early not in ("", at) else ""
                peak = "" if b.value is None else f"; forecast peak {fmt_number(b.value)}"
                now_v = "" if b.last_value is None else f", last value {fmt_number(b.last_value)}"
                lines.append(f"• rule {b.rule} ({b.threshold}) on {b.series}: {when}{sure}{early_txt}"
                             f"{peak}{now_v}")
            if len(found) > 5:
                lines.append(f"• … and {plural(len(found) - 5, 'more predicted breach', 'more predicted breaches')} "
                             "(perf-alerts predict lists them all)")
        for n in names:
            head, _, rest = n.partition(".")
            if head in ("firing", "pending") and self._alerts is not None:
                state = AlertState.FIRING if head == "firing" else AlertState.PENDING
                xs = [a for a in self._alerts if a.state == state and (rest == "total" or a.severity.value == rest)]
                for a in xs[:5]:
                    lab = ", ".join(f'{k}="{v}"' for k, v in sorted(a.labels.items()) if k not in ("alertname", "severity"))
                    since = _minute(a.started_at or a.active_since)
                    if head == "firing" and a.fired_value is not None:  # the value it fired with, then today's
                        now_v = "" if a.value is None or a.value == a.fired_value else f", {fmt_number(a.value)} now"
                        lines.append(f"• {head} {a.severity.value}: {a.rule} {{{lab}}} fired with "
                                     f"{fmt_number(a.fired_value)} at {since}{now_v}")
                        continue
                    val = "" if a.value is None else f" value {fmt_number(a.value)}"
                    lines.append(f"• {head} {a.severity.value}: {a.rule} {{{lab}}}{val} since {since}")
            if head == "health" and rest in self._health:
                h = self._health[rest]
                weak = sorted((c for c in h.components if c.score is not None), key=lambda c: c.score)[:2]
                if h.score is not None:
                    lines.append(f"• health{' of ' + rest if rest else ''} {h.score:.0f} ({h.status})"
                                 + "".join(f"; {c.name} {c.score:.0f}: {c.evidence}" for c in weak))
        return lines

    def _cached(self, name: str, fn: Any) -> Any:
        hit = self._cache.get(name)
        if hit is not None and 0 <= self.now - hit[0] < EXPENSIVE_TTL:
            return hit[1]
        v = fn()
        self._cache[name] = (self.now, v)
        return v


@dataclass
class Execution:
    policy: str
    priority: int
    action: str
    result: str  # ok, error, dry-run
    dry_run: bool
    who: str
    at: float
    audit_id: int | None = None
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "priority": self.priority, "action": self.action, "result": self.result,
                "dry_run": self.dry_run, "who": self.who, "at": iso(self.at), "audit_id": self.audit_id,
                "target": self.target, "detail": self.detail}


@dataclass
class PolicyOutcome:
    policy: str
    matched: bool
    values: dict[str, Any]
    skipped: str | None = None  # "cooldown until …", "disabled"
    executions: list[Execution] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "matched": self.matched, "values": self.values, "skipped": self.skipped,
                "executions": [e.to_dict() for e in self.executions]}


class PolicyEngine:
    def __init__(self, system: "PerfAlerts", notifier: "Notifier | None" = None,
                 policies: list[Policy] | None = None) -> None:
        self.system = system
        self.notifier = notifier
        self.policies = list(system.config.policies if policies is None else policies)
        self._conditions: dict[str, Condition] = {p.name: parse_condition(p.when) for p in self.policies}
        self._cache: dict[str, tuple[float, Any]] = {}
        self.last_outcomes: list[PolicyOutcome] = []

    def ordered(self) -> list[Policy]:
        """Priority 1 first; equal priorities keep their config order."""
        return [p for _, p in sorted(enumerate(self.policies), key=lambda ip: (ip[1].priority, ip[0]))]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, now: float | None = None, *, who: str | None = None, apply: bool = True,
                 dry_run_all: bool = False) -> list[Execution]:
        """Judge the policies and run the actions due; returns the executions (in order).

        `who` defaults to `policy:<name>`. `apply=False` is a preview: everything is a dry
        run, nothing is audited and no cooldown starts (`perf-alerts optimize` without
        --apply). `dry_run_all` runs every action as a dry run but audits it.
        """
        return [e for o in self.run(now, who=who, apply=apply, dry_run_all=dry_run_all) for e in o.executions]

    def run(self, now: float | None = None, *, who: str | None = None, apply: bool = True,
            dry_run_all: bool = False) -> list[PolicyOutcome]:
        now = self.system.clock.now() if now is None else float(now)
        if apply:
            try:
                A.verify_due(self.system, now)
            except LeadershipLost:
                raise
            except Exception:  # verification must never stop the policies
                log.exception("verifying past actions failed")
        variables = Variables(self.system, now, self._cache)
        states = self.system.store.policy_states()
        outcomes: list[PolicyOutcome] = []
        for pol in self.ordered():
            if not pol.enabled:
                outcomes.append(PolicyOutcome(pol.name, False, {}, "disabled"))
                continue
            cond = self._conditions[pol.name]
            t0 = time.perf_counter()
            try:
                matched = cond.evaluate(variables.get)
            except Exception as e:
                log.exception("policy %s: evaluating its condition failed", pol.name)
                outcomes.append(PolicyOutcome(pol.name, False, {}, f"error: {type(e).__name__}: {e}"))
                continue
            # the values the condition read (`and`/`or` stop early: one it never read is left out, not "no data")
            values = {k: variables.values[k] for k in sorted(cond.variables) if k in variables.values}
            out = PolicyOutcome(pol.name, matched, values)
            outcomes.append(out)
            log.debug("policy %s: %s in %.3fs", pol.name, matched, time.perf_counter() - t0)
            if not matched:
                continue
            st = states.get(pol.name)
            last_fired = st.last_fired if st else None
            if apply and last_fired is not None and now - float(last_fired) < pol.cooldown:
                out.skipped = f"cooldown until {iso(float(last_fired) + pol.cooldown)}"
                if apply:
                    self._save(pol.name, now, None, values)
                continue
            for act in pol.actions:
                dry = (not apply) or dry_run_all or not act.enabled
                ctx = A.ActionContext(self.system, pol.name, act, values, now, dry, who or f"policy:{pol.name}",
                                      self.notifier, cond.text, variables.evidence(cond.variables))
                res = A.execute(ctx)
                if ctx.notifier is not None and self.notifier is None:
                    self.notifier = ctx.notifier
                aid = A.record(self.system, ctx, res) if apply else None
                out.executions.append(Execution(pol.name, pol.priority, act.type, res.result, dry, ctx.who, now,
                                                aid, res.target, res.detail))
            if apply:
                self._save(pol.name, now, now, values)
        self.last_outcomes = outcomes
        return outcomes

    def _save(self, name: str, matched_at: float, fired_at: float | None, values: dict[str, Any]) -> None:
        self.system.store.save_policy_state(name, matched_at, fired_at, values)

    # ------------------------------------------------------------------ status
    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        now = self.system.clock.now() if now is None else float(now)
        states = self.system.store.policy_states()
        out = []
        for pol in self.ordered():
            st = states.get(pol.name)
            last_fired = st.last_fired if st else None
            until = None if last_fired is None else float(last_fired) + pol.cooldown
            out.append({
                "name": pol.name, "when": pol.when, "priority": pol.priority, "enabled": pol.enabled,
                "cooldown": format_duration(pol.cooldown), "last_matched": iso(st.last_matched) if st else None,
                "last_fired": iso(last_fired), "fired_count": st.fired_count if st else 0,
                "last_values": st.last_values if st else None,
                "in_cooldown": until is not None and now < until, "cooldown_until": iso(until) if until and now < until else None,
                "actions": [{"type": a.type, "mode": "live" if a.enabled else "dry-run",
                             "target_metric": a.target_metric} for a in pol.actions],
            })
        return out


def optimize_report(system: "PerfAlerts", lookback: float = 86400.0, agent: str | None = None, *,
                    apply: bool = False, who: str = "cli", at: float | None = None,
                    deliver: bool = True) -> dict[str, Any]:
    """What `perf-alerts optimize` (and the crew tool's `optimize`) shows: recommendations, and what the
    policies do now — a preview unless `apply` (then enabled actions run, audited as `who`)."""
    from perf_alerts.analytics.recommend import optimize

    now = system.clock.now() if at is None else float(at)
    recs = optimize(system, lookback=lookback, agent=agent, at=now)
    engine = PolicyEngine(system)
    outcomes = engine.run(now, who=who, apply=apply)
    rep: dict[str, Any] = {"at": iso(now), "applied": apply, "recommendations": recs,
                           "policies": [o.to_dict() for o in outcomes]}
    if apply and deliver and engine.notifier is not None and engine.notifier.outbox.open_count():
        _, d = engine.notifier.flush(now, system.config.delivery.cli_deadline, flush_new_groups=False)
        rep["delivery"] = d.to_dict()
    return rep
