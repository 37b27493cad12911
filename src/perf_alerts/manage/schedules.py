"""Schedules: jobs on a cadence, with their state (last run, next run, overdue) in the store.

Slots are aligned to UTC: an interval schedule's slots are the multiples of its interval
since the Unix epoch; `daily`/`weekly` slots fall at `at` (and `weekday`). A tick runs a
schedule when the latest slot at or before `now` is newer than the slot it last ran for,
so after any downtime a missed job runs once — not once per missed slot — and a restart
picks up where the previous process left off.

A schedule seen for the first time runs at once if it is an interval schedule (an
evaluation should not wait an hour for its first slot); a daily or weekly report waits for
its first slot instead of going out at every deployment.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from perf_alerts.config import Schedule
from perf_alerts.store import LeadershipLost
from perf_alerts.store.management import ScheduleState
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier

log = logging.getLogger("perf_alerts.schedules")

JOB_ORDER = {"evaluate": 0, "predictive_analysis": 1, "optimization_review": 2, "summary": 3}
DEFAULT_PERIOD = {"summary": 7 * 86400.0, "optimization_review": 86400.0, "predictive_analysis": 86400.0}
IMPLICIT_NAME = "evaluate-all"
# how long a started slot stays claimed by its process (wall clock): a process that died running
# it leaves the slot to the next one after this, so the slot is neither run twice nor lost
SLOT_CLAIM_LEASE = 900.0


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def effective_schedules(config: Any) -> list[Schedule]:
    """The configured schedules; a config without any evaluates every rule continuously."""
    if config.schedules:
        return list(config.schedules)
    return [Schedule(name=IMPLICIT_NAME, every="continuous", job="evaluate")]


def latest_slot(sch: Schedule, now: float, evaluation_interval: float) -> float:
    """The latest slot at or before `now`."""
    step = sch.interval(evaluation_interval)
    off = sch.offset
    return math.floor((now - off) / step) * step + off


def first_slot_at_or_after(sch: Schedule, t: float, evaluation_interval: float) -> float:
    s = latest_slot(sch, t, evaluation_interval)
    return s if s >= t else s + sch.interval(evaluation_interval)


def waits_for_first_slot(sch: Schedule) -> bool:
    return sch.every in ("daily", "weekly")


@dataclass
class JobRun:
    schedule: str
    job: str
    slot: float
    at: float
    status: str  # ok, error, not available
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    missed_slots: int = 0  # slots skipped while nothing ran (downtime): run once for all of them

    def to_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "job": self.job, "slot": iso(self.slot), "at": iso(self.at),
                "status": self.status, "result": self.result, "seconds": round(self.seconds, 3),
                "missed_slots": self.missed_slots}


class Scheduler:
    """Runs the configured jobs when their slot comes; state persisted in the `schedules` table."""

    def __init__(self, system: "PerfAlerts", notifier: "Notifier | None" = None,
                 schedules: list[Schedule] | None = None) -> None:
        self.system = system
        self._notifier = notifier
        self.schedules = schedules if schedules is not None else effective_schedules(system.config)
        self._rule_errors: dict[tuple[str | None, str], str] = {}  # (group, "rule X") → its last error

    @property
    def evaluation_interval(self) -> float:
        return float(self.system.config.global_.evaluation_interval)

    @property
    def notifier(self) -> "Notifier":
        if self._notifier is None:
            from perf_alerts.notify.pipeline import Notifier

            self._notifier = Notifier(self.system)
        return self._notifier

    # ------------------------------------------------------------------ state
    def _due(self, sch: Schedule, st: ScheduleState, now: float) -> tuple[bool, float, int]:
        step = sch.interval(self.evaluation_interval)
        slot = latest_slot(sch, now, self.evaluation_interval)
        last_slot = st.last_slot
        if last_slot is None:
            if waits_for_first_slot(sch) and slot < float(st.first_seen):
                return False, slot, 0
            return True, slot, 0
        if slot <= float(last_slot) + 1e-6:
            return False, slot, 0
        missed = max(0, int(round((slot - float(last_slot)) / step)) - 1)
        return True, slot, missed

    # ------------------------------------------------------------------ ticking
    def tick(self, now: float | None = None, *, leading: Callable[[], bool] | None = None) -> list[JobRun]:
        """Run every schedule whose slot has come (once per slot, however long the gap).

        `leading`: asked before each job (the daemon's leadership check); when it says no, this
        replica lost leadership and runs no further job (the new leader runs them)."""
        now = self.system.clock.now() if now is None else float(now)
        active = [s for s in self.schedules if s.enabled]
        store = self.system.store
        store.ensure_schedules([s.name for s in active], now)
        states = store.schedule_states()
        runs: list[JobRun] = []
        for sch in sorted(active, key=lambda s: JOB_ORDER.get(s.job, 9)):
            due, slot, missed = self._due(sch, states[sch.name], now)
            if not due:
                continue
            if leading is not None and not leading():
                log.info("schedules: this replica no longer leads; %s and the rest are left to the leader", sch.name)
                break
            if not store.claim_schedule_slot(sch.name, slot, _owner(), time.time(), SLOT_CLAIM_LEASE):
                log.info("schedule %s: this slot is being run (or was run) by another process", sch.name)
                continue
            if missed:
                log.info("schedule %s: %d missed slot(s) since the last run; running once now", sch.name, missed)
            run = self.run_job(sch, now, slot)
            run.missed_slots = missed
            self._record(run)
            runs.append(run)
        return runs

    def run_job(self, sch: Schedule, now: float, slot: float | None = None) -> JobRun:
        t0 = time.perf_counter()
        try:
            status, result = getattr(self, f"_job_{sch.job}")(sch, now)
        except LeadershipLost:  # this replica's lease went away mid-job: the new leader runs it
            raise
        except Exception as e:  # a failing job must not stop the others, nor the daemon
            log.exception("schedule %s (%s) failed", sch.name, sch.job)
            status, result = "error", {"error": f"{type(e).__name__}: {e}"}
        return JobRun(sch.name, sch.job, now if slot is None else slot, now, status, result, time.perf_counter() - t0)

    def _record(self, run: JobRun) -> None:
        result = run.result
        if len(json.dumps(result, default=str)) > 20000:
            result = {"truncated": True, "status": run.status}
        self.system.store.record_schedule_run(run.schedule, at=run.at, slot=run.slot, status=run.status,
                                              result=result, seconds=run.seconds)

    # ------------------------------------------------------------------ jobs
    def _job_evaluate(self, sch: Schedule, now: float) -> tuple[str, dict[str, Any]]:
        res = self.system.evaluate(at=now, group=sch.group)
        d = res.to_dict()
        # a rule that fails says so in the log when its error starts or changes (not every cycle),
        # and once when it works again: a daemon under systemd shows nothing else
        failing = {(sch.group, e.split(":", 1)[0]): e for e in res.errors}
        for key, text in failing.items():
            if self._rule_errors.get(key) != text:
                log.warning("%s", text)
        for key in [k for k in self._rule_errors if k[0] == sch.group and k not in failing]:
            log.info("%s: evaluates again", key[1])
            del self._rule_errors[key]
        self._rule_errors.update(failing)
        return ("error" if res.errors and not res.rules else "ok"), {
            "group": sch.group, "rules": d["rules"], "series": d["series_evaluated"], "firing": d["firing"],
            "pending": d["pending"], "transitions": len(d["transitions"]), "errors": d["errors"][:5]}

    def _job_summary(self, sch: Schedule, now: float) -> tuple[str, dict[str, Any]]:
        from perf_alerts.manage.report import build_summary, summary_message

        period = sch.period or DEFAULT_PERIOD["summary"]
        summary, _md, png = build_summary(self.system, period, at=now, chart=sch.send)
        self.system.store.kv_set("schedule:last_summary", {"at": now, "schedule": sch.name, "summary": summary.to_dict()})
        out: dict[str, Any] = {"period": format_duration(period), "headline": summary.headline[:3]}
        if sch.send:
            title, text, files = summary_message(summary, png)
            out["notifications"] = self.notifier.enqueue_message(title, text, "info", kind="executive_summary",
                                                                 files=files, at=now)
        return "ok", out

    def _job_optimization_review(self, sch: Schedule, now: float) -> tuple[str, dict[str, Any]]:
        try:
            from perf_alerts.analytics.recommend import optimize
        except ImportError:
            return "not available", {"error": "recommendations (perf_alerts.analytics.recommend) are not in this build"}
        lookback = sch.period or DEFAULT_PERIOD["optimization_review"]
        rep = optimize(self.system, lookback=lookback, at=now)
        recs = rep.get("recommendations", [])
        self.system.store.kv_set("schedule:last_optimization_review", {"at": now, "schedule": sch.name, "report": rep})
        out: dict[str, Any] = {"lookback": format_duration(lookback), "recommendations": len(recs),
                               "titles": [r["title"] for r in recs[:5]], "note": rep.get("note")}
        if sch.send and recs:
            text = "\n".join(f"• [{r['priority']}] {r['title']}\n  → {r['action']}" for r in recs[:10])
            out["notifications"] = self.notifier.enqueue_message(
                f"Optimization review: {plural(len(recs), 'recommendation')}", text, "info",
                labels={"schedule": sch.name}, kind="optimization_review", at=now)
        return "ok", out

    def _job_predictive_analysis(self, sch: Schedule, now: float) -> tuple[str, dict[str, Any]]:
        lookback = sch.period or DEFAULT_PERIOD["predictive_analysis"]
        rep = self.system.predict(horizon=sch.horizon, lookback=lookback, at=now)
        breaches = [b for b in rep.breaches if b.breach_at]
        out: dict[str, Any] = {"horizon": format_duration(sch.horizon), "series_forecast": rep.series_forecast,
                               "breaches": len(breaches),
                               "top": [f"{b.series} {b.threshold} in {b.time_to_breach}" for b in breaches[:5]]}
        if sch.send and breaches:
            text = "\n".join(f"• {b.series}: {b.rule} ({b.threshold}) in {b.time_to_breach} "
                             f"(probability {b.probability})" for b in breaches[:10])
            out["notifications"] = self.notifier.enqueue_message(
                f"Predicted breaches within {format_duration(sch.horizon)}: {len(breaches)}", text, "warning",
                labels={"schedule": sch.name}, kind="prediction", at=now)
        return "ok", out

    # ------------------------------------------------------------------ status
    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every schedule with its last run, next run and whether it is overdue."""
        now = self.system.clock.now() if now is None else float(now)
        states = self.system.store.schedule_states()
        grace = max(2 * self.evaluation_interval, 60.0)
        out = []
        for sch in self.schedules:
            st = states.get(sch.name)
            step = sch.interval(self.evaluation_interval)
            last_slot = st.last_slot if st else None
            if not sch.enabled:
                nxt = None
            elif last_slot is not None:
                nxt = float(last_slot) + step
            elif st is not None and waits_for_first_slot(sch):
                nxt = first_slot_at_or_after(sch, float(st.first_seen), self.evaluation_interval)
            elif st is not None:
                nxt = float(st.first_seen)
            else:  # never seen by a scheduler: when it would next fall
                nxt = now if not waits_for_first_slot(sch) else first_slot_at_or_after(sch, now, self.evaluation_interval)
            overdue = nxt is not None and now > nxt + grace
            out.append({
                "name": sch.name, "every": sch.every, "interval": format_duration(step), "interval_seconds": step,
                "job": sch.job, "group": sch.group, "at": sch.at, "weekday": sch.weekday, "send": sch.send,
                "enabled": sch.enabled, "last_run": iso(st.last_run if st else None),
                "last_status": st.last_status if st else None, "last_result": st.last_result if st else None,
                "last_seconds": st.last_seconds if st else None, "runs": st.runs if st else 0,
                "next_run": iso(nxt), "overdue": overdue,
                "overdue_by": format_duration(now - nxt) if overdue and nxt is not None else None,
            })
        return out

    def uncovered_groups(self) -> list[str]:
        """Rule groups no enabled evaluate schedule covers (their rules would never be evaluated)."""
        ev = [s for s in self.schedules if s.enabled and s.job == "evaluate"]
        if any(s.group is None for s in ev):
            return []
        covered = {s.group for s in ev}
        return sorted({r.group for r in self.system.config.rules} - covered)


