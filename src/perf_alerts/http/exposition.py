"""`GET /metrics`: perf-alerts' own health in the Prometheus text format (prometheus-client).

One custom collector reads every value at scrape time; nothing is mutated behind a global
registry. Two sources, by what the number describes:

- the store, for state every process on it shares (any replica answers the same): alerts by
  state and severity (and acknowledged), the outbox by receiver and state, disabled receivers,
  the last evaluation (the leader's), the replicas and the leader lease;
- this process (`perf_alerts.selfmetrics`), for what it did itself since it started: samples
  ingested and rejected, notifications delivered / failed / dead and Discord requests and 429s
  by receiver, evaluation durations (a histogram and the last one), rule evaluation errors,
  Prometheus source queries.

A store that cannot be read does not fail the scrape: `perf_alerts_store_up` is 0 and the process
metrics are still there. Labels carry receiver, rule, state and severity names and the replica
id, never a webhook URL or a token.

prometheus-client is imported here only, and this module only when `/metrics` is first asked
for (the `web` extra's app imports it lazily); without it `/metrics` answers 503 saying so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

from perf_alerts import selfmetrics
from perf_alerts.model import AlertState, Severity
from perf_alerts.timeutil import SystemClock

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts

log = logging.getLogger("perf_alerts.http")

PREFIX = "perf_alerts_"
# the 0.0.4 text format: what every Prometheus 2.x and 3.x scrapes (prometheus-client writes it)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTBOX_STATES = ("pending", "sending", "failed", "delivered", "dead", "dropped")

# selfmetrics counter → (exposed name without _total, help, label names)
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "samples_ingested": ("samples_ingested", "Samples this process wrote to the store (every source: API, files, "
                                             "crew listener, host, OTLP)", ()),
    "samples_rejected": ("samples_rejected", "Samples this process refused (bad name, value, timestamp or labels)", ()),
    "notifications_delivered": ("notifications_delivered", "Notifications this process delivered, by receiver",
                                ("receiver",)),
    "notification_failures": ("notification_failures", "Failed delivery attempts of this process (retried or dead), "
                                                       "by receiver", ("receiver",)),
    "notifications_dead": ("notifications_dead", "Notifications this process dead-lettered, by receiver", ("receiver",)),
    "discord_requests": ("discord_requests", "HTTP requests this process sent to Discord webhooks, by receiver",
                         ("receiver",)),
    "discord_rate_limited": ("discord_rate_limited", "429 (rate limited) answers Discord gave this process, by receiver",
                             ("receiver",)),
    "rule_evaluation_errors": ("rule_evaluation_errors", "Rule evaluations of this process that failed, by rule",
                               ("rule",)),
    "prometheus_queries": ("prometheus_source_queries", "Queries this process sent to the Prometheus source, by outcome",
                           ("outcome",)),
    "evaluations": ("evaluations", "Evaluation cycles this process ran", ()),
}
# counters whose zero is worth showing for every configured receiver (so rate() has a series from the start)
_PER_RECEIVER = ("notifications_delivered", "notification_failures", "notifications_dead")
_PER_DISCORD_RECEIVER = ("discord_requests", "discord_rate_limited")


class PerfAlertsCollector:
    """A prometheus-client collector over one `PerfAlerts` (and, in the daemon, its replica id)."""

    def __init__(self, system: "PerfAlerts", *, replica: str | None = None,
                 disabled_receivers: Callable[[], dict[str, str]] | None = None) -> None:
        self.system = system
        self.replica = replica
        self.disabled_receivers = disabled_receivers

    def describe(self) -> list[Any]:
        return []  # read at scrape time only: registering must not touch the store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield from self._process()
        up = GaugeMetricFamily(PREFIX + "store_up", "1 when the store could be read for this scrape")
        try:
            families = list(self._store())
        except Exception as e:  # the process metrics still go out; the store's absence is a metric
            log.warning("GET /metrics: the store could not be read: %s", type(e).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    # ------------------------------------------------------------------ this process
    def _process(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        snap = selfmetrics.snapshot()
        info = GaugeMetricFamily(PREFIX + "build_info", "perf-alerts version of this process (value 1)",
                                 labels=["version"])
        info.add_metric([_version()], 1.0)
        yield info
        receivers = [r.name for r in self.system.config.receivers]
        discord = [r.name for r in self.system.config.receivers if r.kind == "discord"]
        for key, (name, doc, labels) in _COUNTERS.items():
            fam = CounterMetricFamily(PREFIX + name, doc, labels=list(labels))
            values = dict(snap.counters.get(key, {}))
            if not labels:
                values.setdefault((), 0.0)
            elif key in _PER_RECEIVER or key in _PER_DISCORD_RECEIVER:
                for r in (receivers if key in _PER_RECEIVER else discord):
                    values.setdefault((("receiver", r),), 0.0)
            for lk, v in sorted(values.items()):
                d = dict(lk)
                fam.add_metric([d.get(x, "") for x in labels], v)
            yield fam
        h = snap.histograms.get("evaluation_duration_seconds")
        hist = HistogramMetricFamily(PREFIX + "evaluation_duration_seconds",
                                     "Duration of this process's evaluation cycles (every rule of a group, "
                                     "state written)")
        if h is None:
            h = selfmetrics.Histogram(selfmetrics.EVALUATION_BUCKETS, [0] * (len(selfmetrics.EVALUATION_BUCKETS) + 1))
        hist.add_metric([], [(_le(le), float(n)) for le, n in h.cumulative()], sum_value=h.sum)
        yield hist
        last = snap.values.get("last_evaluation_duration_seconds", {}).get(())
        if last is not None:
            g = GaugeMetricFamily(PREFIX + "last_evaluation_duration_seconds",
                                  "Duration of this process's last evaluation cycle")
            g.add_metric([], last)
            yield g

    # ------------------------------------------------------------------ the store (shared state)
    def _store(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from perf_alerts.manage.cluster import cluster_status

        s = self.system
        store = s.store
        alerts = GaugeMetricFamily(PREFIX + "alerts", "Alerts in the store by state and severity",
                                   labels=["state", "severity"])
        acked = GaugeMetricFamily(PREFIX + "alerts_acknowledged",
                                  "Acknowledged alerts in the store by state and severity", labels=["state", "severity"])
        by: dict[tuple[str, str], int] = {(st.value, sev.value): 0 for st in AlertState for sev in Severity}
        by_ack = dict.fromkeys(by, 0)
        for state, severity, is_acked, n in store.alert_counts():
            by[(state, severity)] = by.get((state, severity), 0) + n
            if is_acked:
                by_ack[(state, severity)] = by_ack.get((state, severity), 0) + n
        for k in sorted(by):
            alerts.add_metric(list(k), float(by[k]))
            acked.add_metric(list(k), float(by_ack.get(k, 0)))
        yield alerts
        yield acked

        outbox = GaugeMetricFamily(PREFIX + "outbox_notifications",
                                   "Notifications in the outbox by receiver and state (pending, sending and failed "
                                   "are the queue still to deliver)", labels=["receiver", "state"])
        depth: dict[tuple[str, str], int] = {(r.name, st): 0 for r in s.config.receivers for st in OUTBOX_STATES}
        for receiver, state, n in store.outbox_state_counts():
            depth[(receiver, state)] = depth.get((receiver, state), 0) + n
        for k in sorted(depth):
            outbox.add_metric(list(k), float(depth[k]))
        yield outbox
        open_ = GaugeMetricFamily(PREFIX + "outbox_open", "Notifications still to deliver (pending, sending, failed)")
        open_.add_metric([], float(sum(n for (_, st), n in depth.items() if st in ("pending", "sending", "failed"))))
        yield open_

        if self.disabled_receivers is not None:
            disabled = self.disabled_receivers()
            fam = GaugeMetricFamily(PREFIX + "receiver_disabled",
                                    "1 when a receiver is disabled (its endpoint answered 404/401)", labels=["receiver"])
            for r in s.config.receivers:
                fam.add_metric([r.name], 1.0 if r.name in disabled else 0.0)
            yield fam

        rules = GaugeMetricFamily(PREFIX + "rules", "Configured alerting rules")
        rules.add_metric([], float(len(s.config.rules)))
        yield rules
        last = store.kv_get("last_evaluation")
        if isinstance(last, dict) and last.get("at") is not None:
            at = GaugeMetricFamily(PREFIX + "last_evaluation_timestamp_seconds",
                                   "When rules were last evaluated on this store (alert clock, Unix seconds)")
            at.add_metric([], float(last["at"]))
            yield at
            errs = GaugeMetricFamily(PREFIX + "last_evaluation_errors",
                                     "Rules that failed in the last evaluation on this store")
            errs.add_metric([], float(len(last.get("errors") or [])))
            yield errs

        cluster = cluster_status(store, SystemClock().now(), float(s.config.global_.evaluation_interval))
        reps = GaugeMetricFamily(PREFIX + "replicas", "Daemons registered on this store, by liveness",
                                 labels=["state"])
        alive = cluster.alive
        reps.add_metric(["alive"], float(alive))
        reps.add_metric(["stale"], float(len(cluster.replicas) - alive))
        yield reps
        has = GaugeMetricFamily(PREFIX + "leader_present", "1 when a replica holds a live leader lease")
        has.add_metric([], 1.0 if cluster.leader else 0.0)
        yield has
        if cluster.term is not None:
            term = GaugeMetricFamily(PREFIX + "leader_term", "The leader lease's term (grows at each change of leader)")
            term.add_metric([], float(cluster.term))
            yield term
        if self.replica is not None:
            me = GaugeMetricFamily(PREFIX + "leader", "1 when this daemon (replica) is the leader, 0 when a follower",
                                   labels=["replica"])
            me.add_metric([self.replica], 1.0 if cluster.leader == self.replica else 0.0)
            yield me


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("perf-alerts")
    except Exception:
        return "0"


def _le(x: float) -> str:
    return "+Inf" if x == float("inf") else repr(float(x))


def exposition(collector: PerfAlertsCollector) -> bytes:
    """The text exposition of one scrape (a fresh registry: nothing global is touched)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)


__all__ = ["CONTENT_TYPE", "PerfAlertsCollector", "exposition"]
