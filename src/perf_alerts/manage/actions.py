"""Automated actions, their registry, the audit log and the verification of their effect.

Action types: `notify` and `escalate` (through the notification pipeline's outbox),
`optimization_review` (the recommendations of `analytics.recommend`), `webhook` (a JSON
POST) and `python` (a registered callable: `package.module:function`, a name registered
with `register_action`, or an entry point in the `perf_alerts.actions` group).

`webhook` and `python` are remediation: they run for real only when the action says
`enabled: true`; otherwise they are a dry run that records what would have happened.
A python callable that accepts a `dry_run` keyword is called with `dry_run=True` in a
dry run so it can describe its plan; one that does not is not called at all.

Every execution — real or dry — is a row in `action_audit` (who, what, when, result).
An action with `target_metric` is verified `verify_after` later: the metric's mean over
the same length of time before and after the action, judged with the metric's direction
(`Config.metric_meta(metric).better`), gives improved / no change / worse.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import keyword
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from perf_alerts.config import PolicyAction
from perf_alerts.errors import ConfigError
from perf_alerts.model import AlertState, alert_snapshot, sort_worst_first
from perf_alerts.notify.redact import redact, register_secret
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier

log = logging.getLogger("perf_alerts.actions")

ENTRY_POINT_GROUP = "perf_alerts.actions"
VERIFICATIONS = ("pending", "improved", "no change", "worse", "changed", "no data")

_registry: dict[str, Callable[..., Any]] = {}
_registry_lock = threading.Lock()


class ActionError(ConfigError):
    """A policy action that cannot run as configured (its callable or entry point is missing)."""


def register_action(name: str, fn: Callable[..., Any] | None = None) -> Any:
    """Register a python action under `name` (also usable as a decorator)."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        with _registry_lock:
            _registry[name] = f
        return f

    return deco(fn) if fn is not None else deco


def check_callable_path(path: str) -> tuple[str, str]:
    """`package.module:function.attr` → (module, attribute path), checked by syntax only: nothing
    is imported. Raises ActionError naming what is wrong."""
    mod_name, sep, attr = path.partition(":")
    parts = mod_name.split(".") + attr.split(".")
    bad = next((p for p in parts if not p.isidentifier() or keyword.iskeyword(p)), None)
    if not sep or bad is not None:
        why = "no ':' between module and function" if not sep else f"{bad!r} is not a Python identifier"
        raise ActionError(f"callable {path!r} must look like package.module:function ({why})")
    return mod_name, attr


def resolve_callable(spec: PolicyAction, *, import_modules: bool = True) -> Callable[..., Any] | None:
    """The function a python action names (import path, registered name or entry point).

    With `import_modules=False` (a dry run) nothing is imported, so no module's top-level code
    runs: a callable whose module is not loaded yet, or an entry point not loaded yet, gives None.
    """
    if spec.callable:
        mod_name, attr = check_callable_path(spec.callable)
        if not import_modules and mod_name not in sys.modules:
            return None
        try:
            obj: Any = importlib.import_module(mod_name)
        except ImportError as e:
            raise ActionError(f"cannot import {mod_name!r} for {spec.callable!r}: {e}") from None
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise ActionError(f"{spec.callable!r}: {mod_name} has no attribute {attr!r}")
        if not callable(obj):
            raise ActionError(f"{spec.callable!r} is not callable")
        return obj  # type: ignore[no-any-return]
    name = spec.entry_point or ""
    with _registry_lock:
        if name in _registry:
            return _registry[name]
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not eps:
        known = sorted(set(_registry) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise ActionError(f"no python action named {name!r} (registered: {', '.join(known) or 'none'}; "
                          f"entry point group {ENTRY_POINT_GROUP})")
    if not import_modules and eps[0].module not in sys.modules:
        return None
    fn = eps[0].load()
    if not callable(fn):
        raise ActionError(f"entry point {name!r} is not callable")
    return fn  # type: ignore[no-any-return]


@dataclass
class ActionContext:
    """What an action (and a python action's callable) gets to see."""

    system: "PerfAlerts"
    policy: str
    action: PolicyAction
    variables: dict[str, Any]
    now: float
    dry_run: bool
    who: str
    notifier: "Notifier | None" = None
    condition: str = ""
    evidence: list[str] = field(default_factory=list)  # what the condition's values stand for (policies.Variables.evidence)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.action.params)


@dataclass
class ActionResult:
    result: str  # ok, error, dry-run
    target: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- implementations


def _notifier(ctx: ActionContext) -> "Notifier":
    if ctx.notifier is None:
        from perf_alerts.notify.pipeline import Notifier

        ctx.notifier = Notifier(ctx.system)
    return ctx.notifier


def _values_text(variables: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "no data" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    return ", ".join(f"{k} = {f(v)}" for k, v in sorted(variables.items()))


def _policy_text(ctx: ActionContext) -> str:
    """A policy notification a person can act on: the facts first (which series and rule, when, how
    sure; which alerts), then the policy and the condition that sent it."""
    parts = [ctx.action.message] if ctx.action.message else []
    parts += ctx.evidence
    parts.append(f"Policy {ctx.policy}: condition {ctx.condition} holds ({_values_text(ctx.variables)}).")
    return "\n".join(parts)


def _do_notify(ctx: ActionContext) -> ActionResult:
    a = ctx.action
    title = a.title or f"Policy {ctx.policy}: {ctx.condition}"
    text = _policy_text(ctx)
    labels = {"policy": ctx.policy, **a.labels}
    if ctx.dry_run:
        return ActionResult("dry-run", "route", {"would_send": {"title": title, "severity": a.severity.value,
                                                                "labels": labels}})
    ids = _notifier(ctx).enqueue_message(title, text, a.severity.value, labels=labels, kind="policy", at=ctx.now)
    return ActionResult("ok", "route", {"title": title, "notifications": ids})


def _do_escalate(ctx: ActionContext) -> ActionResult:
    a = ctx.action
    firing = sort_worst_first([x for x in ctx.system.store.load_alerts(states=[AlertState.FIRING])])
    target = ",".join(a.receivers)
    title = a.title or f"⚠ Escalation by policy {ctx.policy}: {ctx.condition}"
    if ctx.dry_run:
        return ActionResult("dry-run", target, {"would_escalate": len(firing), "receivers": a.receivers})
    body = {"title": title, "description": _policy_text(ctx),
            "group_labels": {"escalation": f"policy:{ctx.policy}", **a.labels},
            "mention_roles": list(a.mention_roles), "alerts": [alert_snapshot(x) for x in firing[:25]]}
    n = _notifier(ctx)
    ids = []
    with ctx.system.store.transaction() as con:
        for rcv in a.receivers:
            ids.append(n.outbox.enqueue(con, rcv, "escalation", f"policy|{ctx.policy}|{rcv}", body, ctx.now))
    return ActionResult("ok", target, {"notifications": ids, "alerts": len(firing)})


def _do_optimization_review(ctx: ActionContext) -> ActionResult:
    from perf_alerts.analytics.recommend import optimize

    a = ctx.action
    rep = optimize(ctx.system, lookback=a.lookback, at=ctx.now)
    recs = rep.get("recommendations", [])
    detail: dict[str, Any] = {"recommendations": [{"title": r["title"], "priority": r["priority"], "action": r["action"]}
                                                  for r in recs[:10]], "note": rep.get("note")}
    if ctx.dry_run:
        detail["would_send"] = bool(a.send and recs)
        return ActionResult("dry-run", "recommendations", detail)
    if a.send and recs:
        text = "\n".join(f"• [{r['priority']}] {r['title']}\n  → {r['action']}" for r in recs[:10])
        detail["notifications"] = _notifier(ctx).enqueue_message(
            a.title or f"Optimization review (policy {ctx.policy}): {plural(len(recs), 'recommendation')}", text, "info",
            labels={"policy": ctx.policy, **a.labels}, kind="optimization_review", at=ctx.now)
    return ActionResult("ok", "recommendations", detail)


def _payload(ctx: ActionContext) -> dict[str, Any]:
    return {"policy": ctx.policy, "condition": ctx.condition, "at": iso(ctx.now), "who": ctx.who,
            "variables": ctx.variables, "params": ctx.params,
            "firing": [{"rule": x.rule, "severity": x.severity.value, "labels": x.labels}
                       for x in sort_worst_first(ctx.system.store.load_alerts(states=[AlertState.FIRING]))[:25]]}


def _do_webhook(ctx: ActionContext) -> ActionResult:
    a = ctx.action
    url = a.url or ""
    if not url:
        return ActionResult("error", "webhook", {"error": "no webhook URL (environment variable not set?)"})
    register_secret(url)
    for v in a.headers.values():
        register_secret(v)
    payload = _payload(ctx)
    if ctx.dry_run:
        return ActionResult("dry-run", "webhook", {"would_post": sorted(payload)})
    from perf_alerts.notify.engine import engine, in_running_loop
    from perf_alerts.notify.receivers import post_json

    if in_running_loop():  # policies run in worker threads; never wait on a running loop
        return ActionResult("error", "webhook", {"error": "called inside a running event loop; run policies "
                                                          "from a worker thread"})
    eng = engine()  # the process's one HTTP client and event loop, as for notifications
    reply = eng.run(post_json(eng.http(), url, payload, a.headers, a.timeout))
    if reply.status is None:
        return ActionResult("error", "webhook", {"error": reply.error})
    return ActionResult("ok" if reply.ok else "error", "webhook", {"status": reply.status})


def _do_python(ctx: ActionContext) -> ActionResult:
    a = ctx.action
    target = a.callable or f"entry_point:{a.entry_point}"
    # a dry run never imports: importing runs the module's top-level code, which is not a dry run
    fn = resolve_callable(a, import_modules=not ctx.dry_run)
    if fn is None:
        return ActionResult("dry-run", target, {
            "would_call": target, "params": ctx.params, "imported": False,
            "note": "dry run: the module was not imported (its top-level code would run); only the syntax of "
                    "the path was checked, so whether the function exists is known on the first real run"})
    try:
        takes_dry_run = "dry_run" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_dry_run = False
    if ctx.dry_run and not takes_dry_run:
        return ActionResult("dry-run", target, {"would_call": target, "params": ctx.params})
    out = fn(ctx, dry_run=ctx.dry_run) if takes_dry_run else fn(ctx)
    detail: dict[str, Any] = {"returned": _jsonable(out)}
    return ActionResult("dry-run" if ctx.dry_run else "ok", target, detail)


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x)
        return x
    except (TypeError, ValueError):
        return redact(repr(x))[:500]


ACTIONS: dict[str, Callable[[ActionContext], ActionResult]] = {
    "notify": _do_notify, "escalate": _do_escalate, "optimization_review": _do_optimization_review,
    "webhook": _do_webhook, "python": _do_python,
}


def execute(ctx: ActionContext) -> ActionResult:
    """Run one action (or its dry run); never raises — a failure is an `error` result."""
    try:
        return ACTIONS[ctx.action.type](ctx)
    except Exception as e:
        log.exception("action %s of policy %s failed", ctx.action.type, ctx.policy)
        return ActionResult("error", None, {"error": redact(f"{type(e).__name__}: {e}")})


# ----------------------------------------------------------------------------- metric windows and verification


def metric_mean(system: "PerfAlerts", metric: str, matchers: list[Any], start: float, end: float) -> float | None:
    """Mean of `metric` (series matching `matchers`) over start < ts <= end; None without data."""
    ids = [s.id for s in system.store.list_series(metric) if all(m.matches(s.labels) for m in matchers)]
    if not ids:
        return None
    blk = system.store.query(ids, start, end)
    return float(np.mean(blk.value)) if len(blk) else None


def judge(before: float | None, after: float | None, better: str, tolerance: float) -> str:
    if before is None or after is None:
        return "no data"
    scale = max(abs(before), 1e-12)
    if abs(after - before) / scale <= tolerance:
        return "no change"
    if better == "lower":
        return "improved" if after < before else "worse"
    if better == "higher":
        return "improved" if after > before else "worse"
    return "changed"


# ----------------------------------------------------------------------------- the audit log


def record(system: "PerfAlerts", ctx: ActionContext, res: ActionResult) -> int:
    """Write the audit row (and, for a real action on a target metric, the 'before' value)."""
    a = ctx.action
    metric = a.target_metric
    before = due = None
    verification = None
    if metric and res.result == "ok" and not ctx.dry_run:
        before = metric_mean(system, metric, a.target_matchers, ctx.now - a.verify_after, ctx.now)
        due = ctx.now + a.verify_after
        verification = "pending"
    extra: dict[str, Any] = {"variables": ctx.variables}
    if metric:
        extra.update(target_matchers=[m.model_dump() for m in a.target_matchers], tolerance=a.tolerance,
                     verify_after=a.verify_after)
    detail = json.dumps({**res.detail, **extra}, default=str)
    return system.store.add_action_audit(
        policy=ctx.policy, action=a.type, target=res.target, who=ctx.who, at=ctx.now, dry_run=ctx.dry_run,
        result=res.result, detail_json=redact(detail), metric=metric, before_value=before, verify_due_at=due,
        verification=verification)


def verify_due(system: "PerfAlerts", now: float, tolerance_for: Callable[[int], float] | None = None) -> list[dict[str, Any]]:
    """Judge every pending verification whose time has come; returns the updated audit rows."""
    done = []
    for row in system.store.due_verifications(now):
        if row.metric is None or row.verify_due_at is None:  # not written by `record`: nothing to measure
            system.store.set_verification(row.id, None, "no data")
            continue
        matchers = _matchers(row.detail.get("target_matchers"))
        tol = float(row.detail.get("tolerance", 0.05))
        after = metric_mean(system, row.metric, matchers, row.at, row.verify_due_at)
        verdict = judge(row.before_value, after, system.config.metric_meta(row.metric).better, tol)
        system.store.set_verification(row.id, after, verdict)
        done.append({"id": row.id, "metric": row.metric, "before": row.before_value, "after": after,
                     "verification": verdict})
    return done


class _MatchesNothing:
    """Stands for a stored matcher this version refuses (e.g. a regex RE2 cannot run)."""

    def matches(self, labels: Any) -> bool:
        return False


def _matchers(raw: Any) -> list[Any]:
    """The target matchers stored with an audit row; one that no longer validates matches nothing
    (the verification then says "no data") instead of failing every later verification."""
    from pydantic import ValidationError

    from perf_alerts.config import Matcher

    out: list[Any] = []
    for m in raw if isinstance(raw, list) else []:
        try:
            out.append(Matcher.model_validate(m))
        except ValidationError as e:
            log.warning("stored target matcher %s is not valid (%s); it matches no series",
                        redact(str(m))[:120], str(e.errors()[0].get("msg", "invalid"))[:200])
            out.append(_MatchesNothing())
    return out


def audit_log(system: "PerfAlerts", limit: int = 100, policy: str | None = None) -> list[dict[str, Any]]:
    """The newest audit rows (of one policy), newest first, times as ISO 8601."""
    out = []
    for r in system.store.action_audit(limit, policy):
        d = dataclasses.asdict(r)
        d["at"] = iso(r.at)
        d["verify_due_at"] = iso(r.verify_due_at)
        out.append(d)
    return out


def verification_window(action: PolicyAction) -> str:
    return format_duration(action.verify_after)
