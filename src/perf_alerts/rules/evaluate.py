"""Rule evaluation: one rule at one instant → one result per matching series.

Pure with respect to alert state: it reads samples, computes each series' value and
whether the condition holds; `perf_alerts.alerts.state` (which defines `SeriesResult`)
turns results into transitions.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, cast

import numpy as np

from perf_alerts.alerts.state import SeriesResult, alert_labels
from perf_alerts.analytics.stats import block_aggregate
from perf_alerts.config import Config, Rule
from perf_alerts.model import fingerprint
from perf_alerts.store import SampleBlock, SeriesInfo, Store

__all__ = ["Evaluator", "SeriesIndex", "SeriesResult", "compare"]

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


def compare(values: Any, op: str, threshold: float) -> Any:
    return _OPS[op](values, threshold)


def _weights(b: SampleBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block's (n, lo, hi), those of one-sample rows (1, value, value) when it carries none."""
    if b.n is None or b.lo is None or b.hi is None:
        return np.ones(len(b), dtype=np.int64), b.value, b.value
    return b.n, b.lo, b.hi


def _moved(old: SampleBlock, new: SampleBlock, start: float) -> SampleBlock:
    """`old`'s rows after `start` and `new`'s (later, per series), sorted by (series, time) as
    `store.query` returns them; weights (n, lo, hi) kept only while some row stands for several samples."""
    if len(new):
        pos = np.searchsorted(old.series_id, new.series_id, side="right")   # each series' new rows after its old
        sid = np.insert(old.series_id, pos, new.series_id)
        ts = np.insert(old.ts, pos, new.ts)
        val = np.insert(old.value, pos, new.value)
        if old.n is None and new.n is None:
            n = lo = hi = None
        else:  # a side without weights: each row stands for one sample (n 1, its value as min and max)
            (on, olo, ohi), (nn, nlo, nhi) = _weights(old), _weights(new)
            n, lo, hi = np.insert(on, pos, nn), np.insert(olo, pos, nlo), np.insert(ohi, pos, nhi)
    else:
        sid, ts, val, n, lo, hi = old.series_id, old.ts, old.value, old.n, old.lo, old.hi
    keep = ts > start
    if not keep.all():
        sid, ts, val = sid[keep], ts[keep], val[keep]
        if n is not None and lo is not None and hi is not None:
            n, lo, hi = n[keep], lo[keep], hi[keep]
    if n is None or not bool((n != 1).any()):
        return SampleBlock(sid, ts, val)
    return SampleBlock(sid, ts, val, n, lo, hi)


class SeriesIndex:
    """Series per metric, filtered by matchers; cached for one evaluation cycle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_metric: dict[str, list[SeriesInfo]] = {}

    def select(self, rule: Rule) -> list[SeriesInfo]:
        if rule.metric not in self._by_metric:
            self._by_metric[rule.metric] = self.store.list_series(rule.metric)
        series = self._by_metric[rule.metric]
        if not rule.matchers:
            return series
        return [s for s in series if all(m.matches(s.labels) for m in rule.matchers)]


class Evaluator:
    """Evaluates rules against a store; the same code path serves live cycles and backtests.

    Keeps two caches: fingerprints per (rule, series), or per (rule, labels) for a result of no
    one series (an SLO group's), for its lifetime (they never change), and sample blocks per cycle (`new_cycle`), so rules over the same metric and window
    read SQLite once.
    """

    def __init__(self, store: Store, config: Config, index: SeriesIndex | None = None, *,
                 keep_state: bool = False, replay: bool = False) -> None:
        self.store = store
        self.config = config
        self.index = index or SeriesIndex(store)
        self._fps: dict[tuple[str, int], str] = {}
        self._label_fps: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._blocks: dict[tuple[Any, ...], SampleBlock] = {}
        self._cycle = 0   # counts new_cycle/new_step: what a rule may reuse within one evaluation
        # history-based rules' state between cycles (rules/history.py); `keep_state`: also in the store
        self._history: dict[str, Any] = {}
        self.keep_state = keep_state
        self._prometheus: Evaluator | None = None  # `source: prometheus` rules (rules/prometheus.py)
        # `replay` (a backtest over a store that does not change under it): each window's block is kept
        # from one step to the next and moved forward by reading only its new samples (`_slide`)
        self.replay = replay
        self._windows: dict[tuple[Any, ...], tuple[float, float, SampleBlock, int]] = {}

    def new_cycle(self) -> None:
        self.index = SeriesIndex(self.store)
        self._blocks.clear()
        self._cycle += 1

    def new_step(self) -> None:
        """A new evaluation time over the same series (a backtest): forget the fetched blocks,
        keep the series index. Without it a replay keeps every step's samples in memory.
        A replay's moving windows are kept while the last step used them."""
        self._blocks.clear()
        self._windows = {k: w for k, w in self._windows.items() if w[3] == self._cycle}
        self._cycle += 1

    def seed_state(self, name: str, state: Any) -> None:
        """Start with `state` as the kept state `name` (a history-based rule's or an SLO's, as
        rules/history.py and rules/sloburn.py key them): a backtest seeds replay forms of them."""
        self._history[name] = state

    def evaluate(self, rule: Rule, at: float) -> list[SeriesResult]:
        if rule.source == "prometheus" and not getattr(self.store, "is_prometheus_view", False):
            return self._evaluate_prometheus(rule, at)
        series = self.index.select(rule)
        fn = getattr(self, f"_eval_{rule.type}")
        results: list[SeriesResult] = fn(rule, series, at)
        sid_of = {id(s.labels): s.id for s in series}
        for r in results:
            sid = sid_of.get(id(r.labels))
            if sid is None:
                # a result not of one series (an SLO group's, an absent rule's expected series): by its labels
                lkey = (rule.name, tuple(sorted(r.labels.items())))
                fp = self._label_fps.get(lkey)
                if fp is None:
                    fp = self._label_fps[lkey] = fingerprint(rule.name, alert_labels(rule, r.labels))
                r.fingerprint = fp
                continue
            key = (rule.name, sid)
            fp = self._fps.get(key)
            if fp is None:
                fp = self._fps[key] = fingerprint(rule.name, alert_labels(rule, r.labels))
            r.fingerprint = fp
        return results

    def _evaluate_prometheus(self, rule: Rule, at: float) -> list[SeriesResult]:
        """A `source: prometheus` rule: this same evaluation over a view of the store whose series and
        samples are the rule's PromQL result (raises PrometheusError: the rule's error, not the cycle's)."""
        from perf_alerts.rules.prometheus import PrometheusView

        if self._prometheus is None:
            view = PrometheusView(self.store, self.config)
            self._prometheus = Evaluator(cast(Store, view), self.config, keep_state=self.keep_state)
        cast(PrometheusView, self._prometheus.store).prepare(rule, at)
        self._prometheus.new_cycle()
        return self._prometheus.evaluate(rule, at)

    # -- helpers ----------------------------------------------------------------------
    def _block(self, series: list[SeriesInfo], start: float, end: float) -> SampleBlock:
        key = (tuple(s.id for s in series), start, end)
        blk = self._blocks.get(key)
        if blk is None:
            blk = self._blocks[key] = (self._slide(key[0], start, end) if self.replay
                                       else self.store.query([s.id for s in series], start, end))
        return blk

    def _slide(self, ids: tuple[int, ...], start: float, end: float) -> SampleBlock:
        """The samples of `ids` in (start, end], from the last step's block of the same window length
        moved forward: its rows after `start` and the store's rows in (its end, end]. The same rows
        `store.query` returns as long as the store does not change between steps (a replay's)."""
        wkey = (ids, round(end - start, 6))
        prev = self._windows.get(wkey)
        if prev is None or start < prev[0] or end < prev[1]:
            blk = self.store.query(list(ids), start, end)
        else:
            old = prev[2]
            new = (self.store.query(list(ids), prev[1], end) if end > prev[1]
                   else SampleBlock(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)))
            blk = _moved(old, new, start)
        self._windows[wkey] = (start, end, blk, self._cycle)
        return blk

    def _holding(self, rule: Rule, value: float) -> bool:
        assert rule.op is not None
        limit = rule.recovery if rule.recovery is not None else rule.value
        assert limit is not None
        return bool(compare(value, rule.op, limit))

    # -- rule types --------------------------------------------------------------------
    def _eval_threshold(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        assert rule.op is not None and rule.value is not None
        if not series:
            return []
        block = self._block(series, at - rule.window, at)
        kind = self.config.metric_meta(rule.metric).kind
        sids, agg = block_aggregate(block, rule.aggregate, rule.window, kind)
        if sids.size == 0:
            return []
        active = compare(agg, rule.op, rule.value)
        limit = rule.recovery if rule.recovery is not None else rule.value
        holding = compare(agg, rule.op, limit)
        by_id = {s.id: s for s in series}
        return [
            SeriesResult(by_id[int(sid)].labels, float(v), bool(a), bool(h))
            for sid, v, a, h in zip(sids.tolist(), agg.tolist(), active.tolist(), holding.tolist())
        ]

    def _eval_trend(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        from perf_alerts.analytics.trend import trend

        assert rule.op is not None and rule.value is not None
        if not series:
            return []
        better = self.config.metric_meta(rule.metric).better
        from perf_alerts.rules.history import TrendHistory, trend_results

        if TrendHistory.supports(rule):  # change_pct: kept sums of both windows (rules/history.py)
            return trend_results(self._history, self.store, rule, series, at, self.keep_state, better, self._holding)
        lb = rule.lookback
        block = self._block(series, at - 2 * lb, at)
        out: list[SeriesResult] = []
        for s in series:
            t, v = block.of(s.id)
            cur = t > at - lb
            if not cur.any():
                continue
            tr = trend(t[cur], v[cur], better=better, confidence=rule.confidence, previous=v[~cur])
            if rule.trend_measure == "change_pct":
                value = tr.change_pct
                ok = value is not None
            else:
                value = tr.slope_per_hour
                ok = value is not None and tr.significant
            if value is None:
                continue
            active = bool(ok and compare(value, rule.op, rule.value))
            holding = bool(ok and self._holding(rule, value))
            out.append(SeriesResult(s.labels, float(value), active, holding, {"trend": tr.to_dict()}))
        return out

    def _eval_anomaly(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        from perf_alerts.analytics.anomaly import anomaly_scores

        if not series:
            return []
        from perf_alerts.rules.history import AnomalyHistory, anomaly_results

        if AnomalyHistory.supports(rule):  # the default detector: incremental, from kept state
            return anomaly_results(self._history, self.store, rule, series, at, self.keep_state)
        threshold = rule.threshold
        assert threshold is not None
        block = self._block(series, at - rule.lookback, at)
        out: list[SeriesResult] = []
        for s in series:
            t, v = block.of(s.id)
            if t.size == 0:
                continue
            # the rule's sensitivity also sets where the detector starts spacing out its alerts
            scores = anomaly_scores(v, t, detector=rule.detector, sensitivity=rule.sensitivity)
            recent = t > at - rule.window
            if not recent.any():
                continue
            i = int(np.argmax(np.where(recent, scores, -1.0)))
            score = float(scores[i])
            active = score >= threshold
            holding = score >= (rule.recovery if rule.recovery is not None else threshold)
            out.append(SeriesResult(s.labels, score, active, holding,
                                    {"observed": float(v[i]), "observed_at": float(t[i]), "points": int(t.size)}))
        return out

    def _eval_forecast(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        """Each series' breach outlook (`analytics.forecast.breach_outlook`, the same as `predict`'s):
        active when breaching now or predicted to within the horizon; the value is in the metric's
        unit (the last sample, or the forecast's peak), so it reads against the threshold."""
        from perf_alerts.timeutil import format_duration

        assert rule.op is not None and rule.value is not None
        if not series:
            return []
        from perf_alerts.rules.history import forecast_outlooks

        out: list[SeriesResult] = []
        # each series refitted once per refit interval, from kept fits in between (rules/history.py)
        for s, o in forecast_outlooks(self._history, self.store, rule, series, at, self.keep_state):
            if o is None:
                continue
            out.append(SeriesResult(
                s.labels, o.value, o.active, o.active,
                {"status": o.status, "outlook": o.describe(), "breach_at": o.breach_at,
                 "probability": round(o.probability, 3), "method": o.method, "last_value": o.last_value,
                 "time_to_breach": "now" if o.status == "breaching" else format_duration(o.seconds),
                 "hours_to_breach": None if o.seconds is None else round(o.seconds / 3600.0, 3)},
            ))
        return out

    def _eval_slo_burn(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        """An SLO burn-rate alert (generated from `slos:`): every SLO window that raises `rule.name`,
        from each SLO's kept buckets (rules/sloburn.py; the same as `analytics.slo.burn_alert_results`)."""
        from perf_alerts.rules.sloburn import burn_results

        return [SeriesResult(r.labels, r.value, r.active, r.active, r.detail)
                for r in burn_results(self._history, self.store, self.config, rule.name, at, self.keep_state,
                                      cycle=self._cycle, query=self._block, series_epoch=self.index)]

    def _eval_absent(self, rule: Rule, series: list[SeriesInfo], at: float) -> list[SeriesResult]:
        window = rule.window
        if not series:
            # like PromQL absent(): a rule that names its series (equality matchers) expects them to exist;
            # a rule without matchers only watches series that have reported before
            labels = {m.label: m.value for m in rule.matchers if m.op == "="}
            if not labels:
                return []
            return [SeriesResult(labels, None, True, True, {"reason": "no series matches"})]
        last = self.store.last_timestamps([s.id for s in series], at)
        out = []
        for s in series:
            lt = last.get(s.id)
            age = None if lt is None else at - lt
            active = age is None or age > window
            out.append(SeriesResult(s.labels, age, active, active, {"last_seen": lt}))
        return out

