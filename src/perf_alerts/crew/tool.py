"""The CrewAI tools: `AdvancedPerformanceAnalyticsTool` (every perf-alerts action) and
`DiscordAlertTool` (an ad-hoc message through the notification pipeline).

Both are thin over the same core the CLI uses (`PerfAlerts`, `insights`,
`analytics.recommend`, `manage.summary`, `notify.pipeline`), on the same store and config
(`PERF_ALERTS_DB` / `PERF_ALERTS_CONFIG` unless given). Every call returns a `StepResult`
sized for an LLM context; bad arguments and failures become `fail` results, never
exceptions. The work is synchronous (SQLite), so the tools run the same from CrewAI's
worker threads and from inside a running event loop.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from crewai.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from perf_alerts.crew.result import StepResult
from perf_alerts.errors import ConfigError, PerfAlertsError
from perf_alerts.model import LabelFilterError, labels_match, parse_label_filter
from perf_alerts.timeutil import parse_duration_arg

if TYPE_CHECKING:
    from perf_alerts.alerts.view import AlertView
    from perf_alerts.insights import AnalysisReport, PredictionReport

log = logging.getLogger("perf_alerts.crew")

ACTIONS: tuple[str, ...] = ("analyze", "alerts", "optimize", "predict", "executive_summary", "dashboard")
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
LABEL_FILTERS: tuple[str, ...] = ("crew", "task", "model", "tool")
DEFAULT_LOOKBACK_HOURS = 24.0
DEFAULT_HORIZON_HOURS = 6.0
MAX_HOURS = 24.0 * 90
MAX_RESULT_CHARS = 7000  # ≈ 1,750 tokens at 4 chars/token: leaves room in a 2,000-token budget
TOP = 8

Hours = Optional[Union[float, str]]


def _never_cache(_args: Any = None, _result: Any = None) -> bool:
    """Results depend on live state (alerts, the clock): CrewAI must not serve them from its cache."""
    return False


# --------------------------------------------------------------------------- shared helpers


def _r(x: Any, digits: int = 3) -> Any:
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        if x == 0 or abs(x) >= 1:
            return round(x, digits if abs(x) < 1000 else 1)
        return float(f"{x:.{digits}g}")
    return x


def _round_all(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _round_all(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round_all(v) for v in x]
    return _r(x)


def fit_budget(data: dict[str, Any], max_chars: int = MAX_RESULT_CHARS) -> dict[str, Any]:
    """Shrink the longest lists until the JSON fits `max_chars`; say that it was shortened."""
    data = _round_all(data)

    def size(d: Any) -> int:
        return len(json.dumps(d, separators=(",", ":"), ensure_ascii=False))

    if size(data) <= max_chars:
        return data
    truncated = False
    for _ in range(60):
        if size(data) <= max_chars:
            break
        # find the longest list anywhere (by serialized size) and halve it
        best: tuple[int, Any, Any] | None = None
        stack: list[Any] = [data]
        while stack:
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
            for k, v in items:
                if isinstance(v, list) and len(v) > 1:
                    s = size(v)
                    if best is None or s > best[0]:
                        best = (s, node, k)
                if isinstance(v, (dict, list)):
                    stack.append(v)
        if best is None:
            break
        _, parent, key = best
        lst = parent[key]
        parent[key] = lst[: max(1, len(lst) // 2)]
        truncated = True
    if size(data) > max_chars:  # long strings: clip them
        def clip(x: Any) -> Any:
            if isinstance(x, str) and len(x) > 300:
                return x[:297] + "..."
            if isinstance(x, dict):
                return {k: clip(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clip(v) for v in x]
            return x

        data = clip(data)
        truncated = True
    if truncated:
        data["truncated"] = "lists shortened to fit an LLM context; narrow with agent/label filters for detail"
    return data


def _hours(value: Any, name: str, default_hours: float) -> float:
    """An `*_hours` argument ('24', 36, '36h', '2 days') → seconds; bare numbers are hours."""
    return parse_duration_arg(value, name, default=default_hours * 3600.0, lo=1.0, hi=MAX_HOURS * 3600.0,
                              bare_unit=3600.0)


def failure(what: str, e: BaseException) -> StepResult:
    """The one mapping of an exception to what the agent reads: a `fail` result, never a raise.

    A perf-alerts error is the agent's (or the operator's) to fix and its message says how; anything
    else is a bug, logged with its traceback, and the agent is told only that it happened."""
    if isinstance(e, ConfigError):
        return StepResult.fail(f"{what}: configuration problem: {e}")
    if isinstance(e, PerfAlertsError):
        return StepResult.fail(f"{what}: {e}")
    log.exception("%s failed", what, exc_info=e)
    return StepResult.fail(f"{what} failed: {type(e).__name__}: {e}")


class _StoreTool(BaseTool):
    """What both perf-alerts tools share: the system they work on (injected, or built from
    config/db — the environment by default), StepResult output, no CrewAI result cache (the
    answers depend on live state), and a `fail` result instead of an exception for bad arguments."""

    result_schema: Optional[type[BaseModel]] = StepResult
    cache_function: Callable[..., bool] = _never_cache
    config_path: Optional[str] = Field(default=None, description="perf-alerts config (default: PERF_ALERTS_CONFIG).")
    db_path: Optional[str] = Field(default=None, description="perf-alerts store (default: PERF_ALERTS_DB).")
    _system: Any = PrivateAttr(default=None)
    _system_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, system: Any = None, **data: Any) -> None:
        super().__init__(**data)
        self._system = system

    def _get_system(self) -> Any:
        with self._system_lock:
            if self._system is None:
                from perf_alerts.core import PerfAlerts

                self._system = PerfAlerts(config=self.config_path, db=self.db_path)
            return self._system

    def _usage(self) -> str:
        """What valid arguments look like, for the `fail` result of a bad call."""
        raise NotImplementedError

    # BaseTool.run validates arguments first; a validation error becomes a `fail` result here
    def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().run(*args, **kwargs)
        except ValueError as e:
            return self._invalid(e)

    def _invalid(self, e: Exception) -> StepResult:
        return StepResult.fail(f"invalid arguments: {e}. {self._usage()}")


def _alert_view(v: "AlertView") -> dict[str, Any]:
    """The compact rendering of an AlertView for an LLM: the series, not the bookkeeping."""
    from perf_alerts.timeutil import iso

    a = v.alert
    d: dict[str, Any] = {"rule": a.rule, "state": a.state.value, "severity": a.severity.value,
                         "labels": v.series_labels, "value": _r(a.value), "threshold": a.threshold,
                         "since": iso(v.since), "fingerprint": a.fingerprint}
    if v.summary:
        d["summary"] = v.summary
    for flag in v.flags:  # acknowledged / silenced / inhibited: only when true
        d[flag] = True
    return d


# --------------------------------------------------------------------------- the analytics tool


class PerformanceAnalyticsArgs(BaseModel):
    """Arguments of `advanced_performance_analytics` (lenient types; checked with clear messages)."""

    model_config = ConfigDict(extra="ignore")

    action: str = Field(
        ...,
        description="What to do: analyze (health, findings, trends, anomalies), alerts (evaluate the rules now "
                    "and list firing/pending alerts), optimize (recommendations with evidence), predict "
                    "(forecasts and predicted threshold breaches), executive_summary (the period's summary), "
                    "dashboard (snapshot: firing alerts, health per agent, recent history).",
        json_schema_extra={"enum": list(ACTIONS)},
    )
    lookback_hours: Hours = Field(None, description="Hours of history to analyse (default 24).")
    horizon_hours: Hours = Field(None, description="predict: hours ahead to forecast (default 6).")
    agent: Optional[str] = Field(None, description="Only this agent (its role as recorded in the metrics).")
    crew: Optional[str] = Field(None, description="Only this crew.")
    task: Optional[str] = Field(None, description="Only this task.")
    model: Optional[str] = Field(None, description="Only this LLM model.")
    tool: Optional[str] = Field(None, description="Only this tool.")
    labels: Optional[Union[dict[str, str], str]] = Field(
        None, description="Other label filters, e.g. {\"host\": \"web-1\"} or \"host=web-1,crew=c1\".")
    send_notifications: Optional[bool] = Field(
        False, description="alerts / executive_summary: also deliver through the notification pipeline (Discord).")


class AdvancedPerformanceAnalyticsTool(_StoreTool):
    """Performance analytics and alerting over the shared perf-alerts store."""

    name: str = "advanced_performance_analytics"
    description: str = (
        "Performance analytics and alerting for AI agent crews, over the shared perf-alerts metric store. "
        "Pass `action` = one of analyze, alerts, optimize, predict, executive_summary, dashboard; optional "
        "lookback_hours (default 24), horizon_hours (predict, default 6), agent / crew / task / model / tool "
        "filters, send_notifications (alerts, executive_summary). Returns compact JSON: "
        '{"success", "status", "data", "error"}.'
    )
    args_schema: type[BaseModel] = PerformanceAnalyticsArgs

    def __init__(self, system: Any = None, **data: Any) -> None:  # spelled out: type checkers see `system`
        super().__init__(system, **data)

    def _usage(self) -> str:
        return f"Valid actions: {', '.join(ACTIONS)}"

    def _invalid(self, e: Exception) -> StepResult:
        return StepResult.fail(f"invalid arguments: {e}. {self._usage()}", valid_actions=list(ACTIONS))

    def _run(self, action: str = "", lookback_hours: Hours = None, horizon_hours: Hours = None,
             agent: Optional[str] = None, crew: Optional[str] = None, task: Optional[str] = None,
             model: Optional[str] = None, tool: Optional[str] = None, labels: Union[dict[str, str], str, None] = None,
             send_notifications: Optional[bool] = False, **_ignored: Any) -> StepResult:
        act = (action or "").strip().lower().replace("-", "_").replace(" ", "_")
        if act not in ACTIONS:
            import difflib

            close = difflib.get_close_matches(act, ACTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return StepResult.fail(f"unknown action {action!r}{hint}; valid actions: {', '.join(ACTIONS)}",
                                   valid_actions=list(ACTIONS))
        try:
            lookback = _hours(lookback_hours, "lookback_hours", DEFAULT_LOOKBACK_HOURS)
            horizon = _hours(horizon_hours, "horizon_hours", DEFAULT_HORIZON_HOURS)
            filt = self._filters(crew, task, model, tool, labels)
        except PerfAlertsError as e:
            return StepResult.fail(str(e))
        agent = agent.strip() if isinstance(agent, str) and agent.strip() else None
        try:
            system = self._get_system()
            handler = getattr(self, f"_do_{act}")
            data = handler(system, lookback=lookback, horizon=horizon, agent=agent, labels=filt,
                           send=bool(send_notifications))
        except Exception as e:  # an action must never raise into the agent loop
            return failure(act, e)
        if isinstance(data, StepResult):
            return data
        status = data.pop("_status", "ok")
        note = data.pop("_note", None)
        data = fit_budget({"action": act, **data})
        if status == "uncertain":
            return StepResult.uncertain(note or "little data", data)
        return StepResult.ok(data)

    @staticmethod
    def _filters(crew: Optional[str], task: Optional[str], model: Optional[str], tool: Optional[str],
                 labels: Any) -> dict[str, str] | None:
        """The label filter: `labels` (a mapping or `crew=c1,task=t`) plus the crew/task/model/tool shortcuts."""
        out = parse_label_filter(labels, "labels")
        for k, v in (("crew", crew), ("task", task), ("model", model), ("tool", tool)):
            if isinstance(v, str) and v.strip():
                out[k] = v.strip()
        if "agent" in out:
            raise LabelFilterError("filter by agent with the `agent` parameter, not labels")
        return out or None

    # -- actions ---------------------------------------------------------------------
    def _do_analyze(self, system: Any, *, lookback: float, agent: str | None, labels: dict[str, str] | None,
                    **_: Any) -> dict[str, Any]:
        rep: AnalysisReport = system.analyze(lookback=lookback, agent=agent, labels=labels)
        agents = []
        for name, agent_h in rep.agents.items():
            h = agent_h.to_dict()  # scores as shown: rounded to 0.1
            weakest = min((c for c in h["components"] if c["score"] is not None), key=lambda c: c["score"], default=None)
            agents.append({"agent": name, "score": h["score"], "status": h["status"],
                           "weakest": None if weakest is None else f"{weakest['name']}: {weakest['evidence']}"})
        agents.sort(key=lambda d: (d["score"] is None, d["score"] if d["score"] is not None else 0.0))
        h = rep.health.to_dict()
        data: dict[str, Any] = {
            "window": rep.window.to_dict(), "scope": rep.scope.to_dict(),
            "health": {"score": h["score"], "status": h["status"],
                       "judged_over": _now_scope(lookback),
                       "components": [{"name": c["name"], "score": c["score"], "evidence": c["evidence"]}
                                      for c in h["components"]]},
            "agents": agents[:TOP],
            "findings": rep.findings[:TOP],
            "trends": [{"series": t.series, "verdict": t.verdict, "slope_per_hour": t.slope_per_hour,
                        "change_pct": t.change_pct, "p_value": t.p_value} for t in rep.trends[:5]],
            "anomalies": [a.to_dict() for a in rep.anomalies[:5]],
            "series_analyzed": rep.series_analyzed,
        }
        if len(agents) > TOP:
            data["agents_not_shown"] = len(agents) - TOP
        slos = _slo_facts(system, agent)
        if slos is not None:
            data["slos"] = slos
        if rep.series_analyzed == 0:
            data["_status"] = "uncertain"
            data["_note"] = "no data in the window: nothing to judge (widen lookback_hours or check the filters)"
        return data

    def _do_alerts(self, system: Any, *, send: bool, agent: str | None, labels: dict[str, str] | None,
                   **_: Any) -> dict[str, Any]:
        from perf_alerts.notify.mute import muting
        from perf_alerts.notify.pipeline import deliver_evaluation

        res = system.evaluate()
        active = [a for a in res.active if _matches(a.labels, agent, labels)]
        shown = system.views_of(active[:10], muting, now=res.at)
        firing = [a for a in active if a.state.value == "firing"]
        pending = [a for a in active if a.state.value == "pending"]
        data: dict[str, Any] = {
            "evaluated_at": res.to_dict()["at"], "rules": res.rules, "series_evaluated": res.series,
            "firing": len(firing), "pending": len(pending),
            "by_severity": {s: sum(1 for a in firing if a.severity.value == s) for s in SEVERITIES},
            "alerts": [_alert_view(v) for v in shown],
            "changes": [{"event": t.event, "rule": t.alert.rule, "severity": t.alert.severity.value,
                         "agent": t.alert.labels.get("agent")} for t in res.transitions[:10]],
        }
        if len(active) > 10:
            data["alerts_not_shown"] = len(active) - 10
        if res.errors:
            data["rule_errors"] = res.errors[:5]
        if send:
            rep = deliver_evaluation(system, res).to_dict()
            data["notifications"] = {"queued": rep["created"], "delivered": rep["delivered"], "dead": rep["dead"],
                                     "still_pending": rep["still_pending"], "disabled_receivers": rep["disabled"],
                                     "errors": rep["errors"][:3]}
        else:
            data["notifications"] = {"sent": False, "reason": "send_notifications was false"}
        return data

    def _do_optimize(self, system: Any, *, lookback: float, agent: str | None, **_: Any) -> dict[str, Any]:
        from perf_alerts.manage.policies import optimize_report

        # a preview, as `perf-alerts optimize` without --apply: nothing runs, nothing is audited
        report = optimize_report(system, lookback=lookback, agent=agent, apply=False)
        rep = report["recommendations"]
        data = {k: v for k, v in rep.items() if v is not None}
        data["recommendations"] = rep["recommendations"][:TOP]
        data["policies"] = [
            {"policy": p["policy"], "matched": p["matched"], "values": p["values"],
             "would_run": [f"{e['action']} ({'dry-run' if e['dry_run'] else 'live'})" for e in p["executions"]]}
            for p in report["policies"]
        ][:TOP]
        data["automated_actions"] = ("policies run in the daemon (perf-alerts run); this is a preview — "
                                     "`perf-alerts optimize --apply` runs the enabled actions")
        if rep["note"] and not rep["recommendations"] and rep["considered"]["agent_models"] == 0 \
                and rep["considered"]["agent_tools"] == 0:
            data["_status"] = "uncertain"
            data["_note"] = rep["note"]
        return data

    def _do_predict(self, system: Any, *, lookback: float, horizon: float, agent: str | None,
                    labels: dict[str, str] | None, **_: Any) -> dict[str, Any]:
        rep: PredictionReport = system.predict(horizon=horizon, lookback=lookback, agent=agent, labels=labels)
        forecasts = []
        for sf in rep.forecasts[:5]:
            f = sf.to_dict()  # the forecast's rounded JSON (analytics.forecast.Forecast.to_dict)
            pts = f.get("points", {})
            end = {k: (pts.get(k) or [None])[-1] for k in ("mean", "lower", "upper")}
            forecasts.append({"series": sf.series, "method": f.get("method"),
                              "last": f.get("last_observed", f.get("last_value")),
                              "at_horizon": end})
        data: dict[str, Any] = {
            "at": rep.at, "horizon": rep.horizon, "lookback": rep.lookback,
            "breaches": [b.to_dict() for b in rep.breaches[:TOP]], "forecasts": forecasts,
            "series_forecast": rep.series_forecast, "series_skipped": rep.series_skipped,
        }
        if not rep.breaches:
            data["breach_summary"] = f"no threshold breach predicted within {rep.horizon}"
        if rep.series_forecast == 0:
            data["_status"] = "uncertain"
            data["_note"] = "too little data to forecast (need at least 10 points per series in the lookback)"
        return data

    def _do_executive_summary(self, system: Any, *, lookback: float, horizon: float, send: bool,
                              **_: Any) -> dict[str, Any]:
        from perf_alerts.manage.report import build_summary, send_summary

        s, md, png = build_summary(system, lookback, chart=send)
        # the same summary object every rendering uses; the SLO rows with their display texts first
        data = {k: v for k, v in s.to_dict().items() if k not in ("agents", "slos_now", "slos")}
        data["slos"] = [{k: r[k] for k in ("series", "objective_display", "achieved_display", "budget_left_display",
                                           "burn_display", "status", "why", "achieved", "budget_remaining", "burn_rate")}
                        for r in s.slos][:12]
        data["slos_not_shown"] = max(0, len(s.slos) - 12)
        h = s.health
        data["health"] = {
            "over_the_period": {"score": h.get("period_score"), "status": h.get("period_status"),
                                "reasons": h.get("period_reasons"), "judged_over": f"the whole {s.period['length']}: "
                                "SLO compliance, incidents, and latency/errors/resources against the period before"},
            "now": {"score": h["score"], "status": h["status"], "judged_over": _now_scope(lookback),
                    "at_the_start_of_the_period": h.get("previous_score"), "change": h.get("change")},
        }
        if send:
            rep = send_summary(system, s, md, png).to_dict()
            data["delivery"] = {"state": rep["state"], "delivered": rep["delivered"], "dead": rep["dead"],
                                "still_pending": rep["still_pending"], "errors": rep["errors"][:3]}
            if rep["state"] != "delivered":  # queued in the background, retrying or dead: not known to be seen
                data["_status"] = "uncertain"
        return data

    def _do_dashboard(self, system: Any, *, lookback: float, agent: str | None, labels: dict[str, str] | None,
                      **_: Any) -> dict[str, Any]:
        from perf_alerts import insights
        from perf_alerts.model import AlertState
        from perf_alerts.notify.mute import muting
        from perf_alerts.timeutil import format_duration, iso

        now = system.clock.now()
        alerts = system.alerts()
        active = [a for a in alerts if a.state in (AlertState.FIRING, AlertState.PENDING)]
        health = []
        all_series = system.store.list_series()
        names = [agent] if agent else insights.agents_in_store(system.store, all_series)
        for name in names:
            h = insights.agent_health(system.store, system.config, now, lookback, alerts, name, all_series=all_series)
            health.append({"agent": name, "score": None if h.score is None else round(h.score, 1), "status": h.status})
        health.sort(key=lambda d: (d["score"] is None, d["score"] if d["score"] is not None else 0.0))
        overall = insights.agent_health(system.store, system.config, now, lookback, alerts, None, all_series=all_series)
        events = system.store.events(since=now - lookback)
        recent = [{"at": iso(e["ts"]), "event": e["event"], "rule": e["rule"], "severity": e["severity"]}
                  for e in events[-10:]][::-1]
        last = system.store.kv_get("last_evaluation")
        active_f = [a for a in active if _matches(a.labels, agent, labels)]
        return {
            "at": iso(now),
            "firing": [_alert_view(v) for v in
                       system.views_of([a for a in active_f if a.state == AlertState.FIRING][:10], muting, now=now)],
            "pending": sum(1 for a in active_f if a.state == AlertState.PENDING),
            "health": {"overall": None if overall.score is None else round(overall.score, 1),
                       "status": overall.status, "agents": health[:12]},
            "recent_history": recent,
            "history_window": format_duration(lookback),
            "last_evaluation": None if not last else {
                "at": iso(last.get("at")), "rules": last.get("rules"),
                "age": format_duration(max(0.0, now - float(last.get("at") or now))),
                "errors": (last.get("errors") or [])[:3]},
        }


def _now_scope(lookback: float) -> str:
    from perf_alerts.insights import recent_window
    from perf_alerts.timeutil import format_duration

    return f"now: the last {format_duration(recent_window(lookback))} against the rest of the window"


def _slo_facts(system: Any, agent: str | None) -> dict[str, Any] | None:
    """Every SLO now (its compliance window; budget SLOs: the current period), worst first: the rows of
    `perf-alerts slo`. None when no SLO is configured."""
    from perf_alerts.analytics.slo import slo_report

    if not system.config.slos:
        return None
    rep = slo_report(system.store, system.config, system.clock.now())
    order = {"breached": 0, "at risk": 1, "ok": 2, "no data": 3}
    rows = [r for r in rep["slos"] if agent is None or r["labels"].get("agent") in (None, agent)]
    rows.sort(key=lambda r: order.get(r["status"], 4))
    keep = ("name", "labels", "objective_text", "achieved_text", "budget_remaining", "burn_rate", "exhausted_at",
            "status", "why", "window")
    return {"at": rep["at"], "counts": rep["counts"], "rows": [{k: r[k] for k in keep} for r in rows[:8]],
            "not_shown": max(0, len(rows) - 8)}


def _matches(labels: dict[str, str], agent: str | None, filt: dict[str, str] | None) -> bool:
    return (agent is None or labels.get("agent") == agent) and labels_match(labels, filt)


# --------------------------------------------------------------------------- the Discord tool


class DiscordAlertArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(..., description="Short title of the message (one line).")
    text: str = Field("", description="The message body (plain text or Markdown).")
    severity: str = Field("info", description="critical, warning or info (routes the message to its channel).",
                          json_schema_extra={"enum": list(SEVERITIES)})
    metrics: Optional[dict[str, Union[float, str]]] = Field(
        None, description="Optional key numbers to show as fields, e.g. {\"p95_latency_s\": 8.2}.")


class DiscordAlertTool(_StoreTool):
    """Post an ad-hoc alert or message through the perf-alerts notification pipeline."""

    name: str = "discord_alert"
    description: str = (
        "Send an ad-hoc alert or message to the team's Discord through the perf-alerts notification pipeline "
        "(severity routing, Discord limits, rate limits, retries, secret redaction). Arguments: title, text, "
        "severity (critical, warning, info), optional metrics {name: number}. Returns the delivery state as JSON."
    )
    args_schema: type[BaseModel] = DiscordAlertArgs

    def __init__(self, system: Any = None, **data: Any) -> None:  # spelled out: type checkers see `system`
        super().__init__(system, **data)

    def _usage(self) -> str:
        return f"Required: title; optional: text, severity ({', '.join(SEVERITIES)}), metrics"

    def _run(self, title: str = "", text: str = "", severity: str = "info",
             metrics: Optional[dict[str, Any]] = None, **_ignored: Any) -> StepResult:
        from perf_alerts.notify.pipeline import deliver_message

        title = (title or "").strip()
        sev = (severity or "info").strip().lower()
        if not title:
            return StepResult.fail("title is required (one short line)")
        if sev not in SEVERITIES:
            return StepResult.fail(f"unknown severity {severity!r}; valid: {', '.join(SEVERITIES)}",
                                   valid_severities=list(SEVERITIES))
        clean_metrics: dict[str, Any] = {}
        for k, v in (metrics or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if not math.isfinite(float(v)):
                    return StepResult.fail(f"metric {k!r} must be a finite number, got {v!r}")
                clean_metrics[str(k)] = v
            else:
                clean_metrics[str(k)] = str(v)
        message: dict[str, Any] = {"title": title[:256], "severity": sev, "text": text or "", "metrics": clean_metrics}
        try:
            report = deliver_message(self._get_system(), message["title"], sev, message["text"],
                                     clean_metrics or None).to_dict()
        except Exception as e:
            return failure("delivery", e)
        view = {"state": report["state"], "delivered": report["delivered"], "dead": report["dead"],
                "still_pending": report["still_pending"], "errors": report["errors"][:3],
                "notifications": [{k: n[k] for k in ("receiver", "state", "attempts", "message_ids", "last_error")}
                                  for n in report.get("notifications", [])]}
        if report["state"] == "delivered":
            return StepResult.ok({"delivered": True, "delivery": view})
        if report.get("background"):
            return StepResult.uncertain("queued; it is being delivered in the background (called inside a "
                                        "running event loop, which must not wait)", {"delivered": False, "delivery": view})
        if report["state"] in ("queued for retry", "partially delivered"):
            return StepResult.uncertain("not all receivers have it yet; the outbox keeps retrying",
                                        {"delivered": report["state"] == "partially delivered", "delivery": view})
        return StepResult.fail(f"the message was not delivered: {report['state']}; "
                               f"{'; '.join(report['errors'][:2]) or 'see delivery'}", delivery=view)
