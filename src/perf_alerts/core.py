"""The system façade: one object over config, store and clock that every front end uses.

The CLI, the crew tool, the HTTP API and the daemon all call these methods, so an
agent sees exactly what the dashboard and the CLI show.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from perf_alerts import selfmetrics
from perf_alerts.alerts.state import Transition, apply_results
from perf_alerts.config import Config, Rule, load_config
from perf_alerts.errors import ConflictError, InputError, NotFoundError
from perf_alerts.model import Alert, AlertState, Sample, SampleError, sort_worst_first
from perf_alerts.rules.evaluate import Evaluator
from perf_alerts.store import Store
from perf_alerts.timeutil import Clock, SystemClock, TimeParseError, iso

log = logging.getLogger("perf_alerts")

if TYPE_CHECKING:
    from perf_alerts.alerts.history import AlertStats
    from perf_alerts.alerts.view import AlertView, MutingFn
    from perf_alerts.insights import AnalysisReport, PredictionReport
    from perf_alerts.rules.backtest import BacktestReport
    from perf_alerts.store.retention import RetentionReport


RECORD_FIELDS = {"metric", "value", "timestamp", "ts", "labels"}


@dataclass
class RecordReport:
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "errors": self.errors[:50]}


@dataclass
class EvaluationResult:
    at: float
    rules: int
    series: int
    transitions: list[Transition]
    active: list[Alert]
    errors: list[str] = field(default_factory=list)
    slo_rules: int = 0  # SLO burn-rate alert rules evaluated (not counted in `rules`, the configured rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "rules": self.rules,
            "slo_alert_rules": self.slo_rules,
            "series_evaluated": self.series,
            "transitions": [
                {"fingerprint": t.alert.fingerprint, "rule": t.alert.rule, "event": t.event,
                 "severity": t.alert.severity.value, "labels": t.alert.labels} for t in self.transitions
            ],
            "firing": sum(1 for a in self.active if a.state == AlertState.FIRING),
            "pending": sum(1 for a in self.active if a.state == AlertState.PENDING),
            "errors": self.errors,
        }


class AlertNotFound(NotFoundError, LookupError):
    """No alert has this fingerprint (or fingerprint prefix)."""


class InvalidFingerprint(AlertNotFound, InputError):
    """Not something a fingerprint can start with: empty, or not hex. An empty `$VAR` or a `%`
    must never select whatever alert happens to be the only one."""


class AmbiguousFingerprint(AlertNotFound, ConflictError):
    """A prefix more than one alert's fingerprint starts with; `matches` lists them."""

    def __init__(self, message: str, matches: list[str]) -> None:
        super().__init__(message)
        self.matches = matches


class AckRefused(ConflictError):
    """The alert exists but cannot be acknowledged in its state (resolved, or still pending)."""


_FINGERPRINT_PREFIX_RE = re.compile(r"[0-9a-f]{1,64}")


class PerfAlerts:
    """perf-alerts in one object. Thread-safe for the sync API (one SQLite connection per thread)."""

    def __init__(self, config: Config | str | os.PathLike[str] | None = None,
                 db: Store | str | os.PathLike[str] | None = None, clock: Clock | None = None) -> None:
        self.config = config if isinstance(config, Config) else load_config(config)
        self.store = db if isinstance(db, Store) else Store(db)
        self.clock: Clock = clock or SystemClock()
        self._evaluator: Evaluator | None = None
        self._rule_tracebacks: dict[str, str] = {}  # rule → the error whose traceback was logged
        self._owns_store = not isinstance(db, Store)

    def close(self) -> None:
        """Close the store this object opened (its connections; a PostgreSQL pool), so a program
        that opens and drops many PerfAlerts does not keep their connections. A Store passed in
        belongs to the caller and stays open. The notification engine is the process's and closes
        at exit. Idempotent; `with PerfAlerts(...) as pa:` closes on leaving."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> "PerfAlerts":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metrics in -------------------------------------------------------------------
    def record(self, metric: str, value: float, labels: Mapping[str, str] | None = None,
               ts: float | str | None = None) -> Sample:
        """Store one sample now (or at `ts`); raises SampleError naming the bad field."""
        s = Sample.checked(metric, value, self.clock.now() if ts is None else ts, labels)
        self.store.insert_samples([s])
        return s

    def record_many(self, records: Iterable[Sample | Mapping[str, Any]]) -> RecordReport:
        """Store many samples; bad ones are reported by position and the good ones kept.

        A bad record (a non-finite or out-of-range number, a name or label beyond the limits of
        `Sample.checked`) is `record <index>: <why>` in `errors` (the first MAX_RECORD_ERRORS of
        them; `rejected` counts all), never an exception.
        """
        MAX_RECORD_ERRORS = 1000
        report = RecordReport()
        good: list[Sample] = []
        now = self.clock.now()
        for i, r in enumerate(records):
            try:
                if isinstance(r, Sample):
                    s = Sample.checked(r.metric, r.value, r.ts, r.labels)
                elif isinstance(r, Mapping):
                    unknown = set(r) - RECORD_FIELDS
                    if unknown:
                        names = sorted(str(k)[:40] for k in unknown)
                        raise SampleError(f"unknown field(s) {', '.join(names[:10])}"
                                          f"{f' and {len(names) - 10} more' if len(names) > 10 else ''}; "
                                          "valid: metric, value, timestamp, labels")
                    ts = r.get("timestamp", r.get("ts", now))
                    s = Sample.checked(r.get("metric"), r.get("value"), ts, r.get("labels"))
                else:
                    raise SampleError(f"expected a Sample or a mapping, got {type(r).__name__}")
            except (SampleError, TimeParseError, OverflowError) as e:  # OverflowError: a number beyond float
                report.rejected += 1
                if len(report.errors) < MAX_RECORD_ERRORS:  # a million bad records are not a million lines
                    report.errors.append(f"record {i}: {e}")
                continue
            good.append(s)
        report.accepted = self.store.insert_samples(good)
        selfmetrics.inc("samples_rejected", report.rejected)
        return report

    def ingest(self, path: str | Path, fmt: str | None = None,
               progress: Callable[[int], None] | None = None) -> Any:
        from perf_alerts.sources.files import ingest_file

        report = ingest_file(self.store, path, fmt, progress)
        selfmetrics.inc("samples_rejected", report.rejected)
        return report

    def collect_host(self, cpu_interval: float | None = None) -> list[Sample]:
        from perf_alerts.sources.host import collect_host

        samples = collect_host(self.clock, cpu_interval=cpu_interval)
        self.store.insert_samples(samples)
        return samples

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self, at: float | None = None, group: str | None = None,
                 rules: list[Rule] | None = None) -> EvaluationResult:
        """One evaluation cycle: every rule (of `group`) at time `at`, state persisted atomically."""
        started = time.monotonic()
        at = self.clock.now() if at is None else at
        rules = rules if rules is not None else self.config.rules_in_group(group)
        if self._evaluator is None or self._evaluator.config is not self.config:
            self._evaluator = Evaluator(self.store, self.config, keep_state=True)  # history rules resume after a restart
        evaluator = self._evaluator
        evaluator.new_cycle()
        computed = []
        errors: list[str] = []
        seen_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()  # distinct series, not rule × series
        for rule in rules:
            try:
                results = evaluator.evaluate(rule, at)
            except Exception as e:  # one broken rule must not stop the others
                text = f"rule {rule.name}: {type(e).__name__}: {e}"
                errors.append(text)
                selfmetrics.inc("rule_evaluation_errors", rule=rule.name)
                if self._rule_tracebacks.get(rule.name) != text:  # the traceback once per rule and error
                    self._rule_tracebacks[rule.name] = text
                    log.debug("evaluating %s failed", rule.name, exc_info=True)
                continue
            self._rule_tracebacks.pop(rule.name, None)
            metric = str(getattr(rule, "metric", None) or rule.name)
            seen_series.update((metric, tuple(sorted(r.labels.items()))) for r in results)
            computed.append((rule, results))
        transitions: list[Transition] = []
        with self.store.transaction() as con:
            names = [r.name for r, _ in computed]
            current: dict[str, dict[str, Alert]] = {n: {} for n in names}
            if names:
                for a in self.store.load_alerts(rules=names, con=con):
                    current[a.rule][a.fingerprint] = a
            for rule, results in computed:
                save, delete, trs = apply_results(rule, results, current[rule.name], at)
                self.store.save_alerts(save, con)
                self.store.delete_alerts(delete, con)
                cur = current[rule.name]
                for fp in delete:
                    cur.pop(fp, None)
                cur.update((a.fingerprint, a) for a in save)
                self.store.add_events(
                    ((t.alert.fingerprint, t.alert.rule, t.alert.severity.value, t.at, t.event, _num(t.alert.value), None)
                     for t in trs), con)
                transitions += trs
            transitions += self._retire_orphans(at, con)
            n_slo = sum(1 for r in rules if r.type == "slo_burn")
            # replayed: evaluated at a time an hour or more from this process's clock (`evaluate --at`)
            self.store.kv_set("last_evaluation", {"at": at, "rules": len(rules) - n_slo, "slo_alert_rules": n_slo,
                                                  "errors": errors, "replayed": abs(at - self.clock.now()) > 3600},
                              con)
            # the active alerts: this cycle's rules from memory, the other rules' from the store
            live = (AlertState.FIRING, AlertState.PENDING)
            active = [a for cur in current.values() for a in cur.values() if a.state in live]
            others = sorted({r.name for r in self.config.alerting_rules()} - set(current))
            if others:
                active += self.store.load_alerts(states=live, rules=others, con=con)
        took = time.monotonic() - started  # GET /metrics: this process's evaluations
        selfmetrics.inc("evaluations")
        selfmetrics.observe("evaluation_duration_seconds", took)
        selfmetrics.set_value("last_evaluation_duration_seconds", took)
        return EvaluationResult(at, len(rules) - n_slo, len(seen_series), transitions, sort_worst_first(active), errors, n_slo)

    def _retire_orphans(self, at: float, con: Any) -> list[Transition]:
        """Alerts of a rule that was renamed or removed resolve now: nothing will ever evaluate them again."""
        from dataclasses import replace

        known = {r.name for r in self.config.alerting_rules()}  # SLO burn alerts included
        live_rules = self.store.live_alert_rules(con)
        gone = sorted(live_rules - known)
        if not gone:
            return []
        orphans = self.store.load_alerts(states=[AlertState.FIRING, AlertState.PENDING], rules=gone, con=con)
        out: list[Transition] = []
        for a in orphans:
            if a.state == AlertState.PENDING:
                self.store.delete_alerts([a.fingerprint], con)
                out.append(Transition(a, AlertState.PENDING, "cancelled", at))
                continue
            done = replace(a, state=AlertState.RESOLVED, resolved_at=at, last_eval_at=at, cleared_at=None)
            self.store.save_alerts([done], con)
            self.store.add_events([(a.fingerprint, a.rule, a.severity.value, at, "resolved", _num(a.value),
                                    "rule removed from the configuration")], con)
            out.append(Transition(done, AlertState.FIRING, "resolved", at))
        return out

    # -- alerts ------------------------------------------------------------------------
    def alerts(self, states: Iterable[AlertState | str] | None = None) -> list[Alert]:
        return sort_worst_first(self.store.load_alerts(states=states))

    def alert_views(self, states: Iterable[AlertState | str] | None, muting: "MutingFn", *,
                    now: float | None = None) -> list["AlertView"]:
        """The alerts (of `states`, None for all), worst first, as every front end shows them: with
        their rule's metric and whether they are silenced or inhibited now.

        `muting` is `perf_alerts.notify.mute.muting`, handed in by the front end: silences and
        inhibition belong to the notification layer, which sits above this façade.
        """
        return self.views_of(self.alerts(states), muting, now=now)

    def views_of(self, alerts: Iterable[Alert], muting: "MutingFn", *, now: float | None = None) -> list["AlertView"]:
        """Views of alerts the caller already has (an evaluation's active alerts, one page of a list)."""
        from perf_alerts.alerts.view import build_views

        now = self.clock.now() if now is None else now
        # inhibition is judged against every firing alert, not only the ones shown
        return build_views(alerts, self.config.alerting_rules(), muting(self.store, self.config, self.alerts([AlertState.FIRING]), now))

    def resolve_fingerprint(self, prefix: str) -> Alert:
        """The one alert whose fingerprint starts with `prefix` (hex, any case): the lookup every front
        end uses, so `ack 3f2a` and `POST /alerts/3f2a/ack` accept and refuse the same prefixes.

        Raises InvalidFingerprint (not hex / empty), AlertNotFound, or AmbiguousFingerprint.
        """
        p = prefix.strip().lower()
        if not p:
            raise InvalidFingerprint("no fingerprint given (see `perf-alerts alerts` for fingerprints)")
        if not _FINGERPRINT_PREFIX_RE.fullmatch(p):
            raise InvalidFingerprint(f"fingerprint {prefix.strip()[:80]!r} is not valid (up to 64 hex characters; "
                                     "a unique prefix is enough)")
        matches = self.store.find_alerts(p)
        if not matches:
            raise AlertNotFound(f"no alert with fingerprint {prefix.strip()!r} (see `perf-alerts alerts`)")
        if len(matches) > 1:
            fps = [a.fingerprint for a in matches]
            raise AmbiguousFingerprint(f"fingerprint prefix {prefix.strip()!r} is ambiguous: {', '.join(fps[:20])}"
                                       + (f" and {len(fps) - 20} more" if len(fps) > 20 else ""), fps)
        return matches[0]

    def ack_time(self) -> tuple[float, bool]:
        """When an acknowledgement given now takes effect, and whether that is not the clock's now.

        On a store whose last evaluation replayed history (`evaluate --at` an hour or more away
        from the clock it ran by), acknowledging at the wall clock would make MTTA read days: the
        acknowledgement is placed at that evaluation instead. A store whose evaluations simply
        stopped (a crashed daemon, a lost lease) is not replayed: its acks are now. One rule for
        every front end (the CLI's `ack`, the API's ack, the dashboard's button).
        """
        now = self.clock.now()
        last = self.store.kv_get("last_evaluation") or {}
        replayed = last.get("replayed")
        if replayed is None:  # written before the flag existed: judged by the distance from now
            replayed = bool(last) and abs(now - float(last.get("at", 0))) > 3600
        if replayed and "at" in last:
            return float(last["at"]), True
        return now, False

    def ack(self, fingerprint: str, by: str = "cli", at: float | None = None) -> Alert:
        """Acknowledge an alert (at `at`, default `ack_time()`); stops its escalation. Acknowledging twice keeps
        the first time.

        Raises the errors of `resolve_fingerprint`, or AckRefused for a resolved or pending alert.
        """
        a = self.resolve_fingerprint(fingerprint)
        if a.acknowledged:
            return a
        if a.state == AlertState.RESOLVED:
            raise AckRefused(f"alert {a.fingerprint} ({a.rule}) is already resolved")
        if a.state == AlertState.PENDING:
            # an acknowledgement belongs to a firing episode; a pending alert may never fire
            raise AckRefused(f"alert {a.fingerprint} ({a.rule}) is pending, not firing yet; acknowledge it once it fires")
        now = self.ack_time()[0] if at is None else at
        if a.started_at is not None and now < a.started_at:
            raise InputError(f"cannot acknowledge alert {a.fingerprint} ({a.rule}) before it started")
        with self.store.transaction() as con:
            self.store.acknowledge_alert(a.fingerprint, now, by, con)
            self.store.add_events([(a.fingerprint, a.rule, a.severity.value, now, "acknowledged", _num(a.value), by)], con)
        out = self.store.get_alert(a.fingerprint)
        if out is None:  # deleted (a pending alert cancelled) between the lookup and the update
            raise AlertNotFound(f"alert {a.fingerprint} ({a.rule}) no longer exists")
        return out

    def alert_stats(self, since: float | None = None, until: float | None = None) -> "AlertStats":
        from perf_alerts.alerts.history import alert_stats

        return alert_stats(self.store.events(since, until))

    # -- analysis ----------------------------------------------------------------------
    def analyze(self, lookback: float = 86400.0, agent: str | None = None,
                labels: dict[str, str] | None = None, at: float | None = None) -> "AnalysisReport":
        from perf_alerts import insights

        at = self.clock.now() if at is None else at
        return insights.analyze(self.store, self.config, at, lookback, self.alerts(), agent, labels)

    def predict(self, horizon: float = 6 * 3600.0, lookback: float = 86400.0, agent: str | None = None,
                labels: dict[str, str] | None = None, at: float | None = None) -> "PredictionReport":
        from perf_alerts import insights

        at = self.clock.now() if at is None else at
        return insights.predict(self.store, self.config, at, horizon, lookback, agent, labels)

    def backtest(self, start: float | None = None, end: float | None = None, step: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> "BacktestReport":
        from perf_alerts.rules.backtest import backtest

        return backtest(self.store, self.config, start, end, step, progress)

    def apply_retention(self) -> "RetentionReport":
        g = self.config.global_
        return self.store.apply_retention(self.clock.now(), g.retention, g.downsample_after, g.downsample_step,
                                          kind_of=lambda metric: self.config.metric_meta(metric).kind)


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


_default: PerfAlerts | None = None


def default_system() -> PerfAlerts:
    """The process-wide instance used by `perf_alerts.record(...)` (config/db from the environment)."""
    global _default
    if _default is None:
        _default = PerfAlerts()
    return _default

