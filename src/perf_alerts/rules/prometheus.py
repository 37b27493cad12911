"""`source: prometheus` rules: their PromQL result as series and samples the Evaluator works on.

The Evaluator evaluates such a rule with a second Evaluator over a `PrometheusView` of the
store: a store whose `list_series` are the rule's query result, whose `query` and
`last_timestamps` read the fetched points, and whose other methods (rule state kept between
cycles) are the real store's. So every rule type goes through the same code as a rule on
stored samples, incremental history included (same alert state, routing, Discord):

- a `threshold` rule runs an instant query (`/api/v1/query` at the evaluation time): each result
  series has one point, its value at `at`, which the rule compares (the PromQL does the
  aggregation; the rule's aggregate is `last`);
- `trend`, `anomaly`, `forecast` and `absent` rules read history: a range query
  (`/api/v1/query_range`) over the span the rule reads (trend: twice its lookback, anomaly and
  forecast: the lookback, absent: three windows) every `step` (the rule's, else `prometheus.step`).
  A block asked for beyond the fetched span is fetched again for that span.

A result series' id is negative and derived from the rule and its labels, so it never meets a
store series and stays the same from one cycle to the next (the alert's fingerprint comes from
the rule and the labels, as for stored series). The series' metric is the result's `__name__`,
else the rule's `metric` (which defaults to the rule's name): it names the unit and direction
from `metrics:`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from perf_alerts.model import canonical_labels
from perf_alerts.sources.prometheus import PrometheusClient, PrometheusError, PromSeries
from perf_alerts.store import SampleBlock, SeriesInfo

if TYPE_CHECKING:
    from perf_alerts.config import Config, Rule
    from perf_alerts.store import Store

__all__ = ["PrometheusView"]


def _series_id(rule: str, labels: dict[str, str]) -> int:
    h = hashlib.sha256(f"{rule}\x00{canonical_labels(labels)}".encode()).digest()
    return -(int.from_bytes(h[:7], "big") + 1)


class PrometheusView:
    """The store as a `source: prometheus` rule sees it: `prepare(rule, at)` runs the rule's query;
    then `list_series`, `query` and `last_timestamps` answer from its result. Anything else is
    the real store's (the rule state that history-based rules keep between cycles)."""

    is_prometheus_view = True

    def __init__(self, store: "Store", config: "Config") -> None:
        self._store = store
        self.config = config
        self._current: list[SeriesInfo] = []
        self._client: PrometheusClient | None = None
        self._points: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._span: dict[str, tuple[float, float]] = {}  # rule name → the fetched (start, end]
        self._rule_of: dict[int, "Rule"] = {}
        self._down: tuple[float, str] | None = None  # (evaluation time, why): the server did not answer then

    @property
    def client(self) -> PrometheusClient:
        if self._client is None:
            self._client = PrometheusClient.from_settings(self.config.prometheus)
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._store, name)

    def prepare(self, rule: "Rule", at: float) -> None:
        """Run the rule's query at `at` (raises PrometheusError); forget the previous rule's points."""
        self._points.clear()
        self._span.clear()
        self._rule_of.clear()
        self._client = None  # from the config and environment each time: a rotated token is used at once
        self._current = []
        if self._down is not None and self._down[0] == at:
            # one cycle, one wait: the other rules of the cycle are not held up by rules × timeout
            raise PrometheusError(f"{self._down[1]} (not asked again in this cycle)")
        try:
            self._current = self.select(rule, at)
        except PrometheusError as e:
            if e.unavailable:
                self._down = (at, str(e))
            raise

    # -- the store's reading methods, over the fetched result ---------------------------------
    def list_series(self, metric: str | None = None) -> list[SeriesInfo]:
        return list(self._current)

    def query(self, series_ids: Sequence[int], start: float, end: float) -> SampleBlock:
        by_id = {s.id: s for s in self._current}
        return self.block([by_id[i] for i in dict.fromkeys(int(x) for x in series_ids) if i in by_id], start, end)

    def span(self, rule: "Rule", at: float) -> tuple[float, float] | None:
        """What the rule reads: None for an instant query (threshold), else (start, end)."""
        if rule.type == "threshold":
            return None
        # absent: three windows, so a series that stopped within them is still there to be missed
        back = {"trend": 2 * rule.lookback, "absent": 3 * rule.window}.get(rule.type, rule.lookback)
        return at - max(back, 1.0), at

    def select(self, rule: "Rule", at: float) -> list[SeriesInfo]:
        """Run the rule's query; its result series, filtered by the rule's matchers."""
        assert rule.query is not None
        span = self.span(rule, at)
        if span is None:
            # an instant query's point is the value at `at`: stamp it so (Prometheus stamps it with
            # the time it was sent, to the millisecond), so the rule's window always holds it
            result = [replace(s, ts=np.full(s.ts.shape, at)) for s in self.client.query(rule.query, at)]
            fetched = (at - max(rule.window, 1.0), at)
        else:
            result = self._range(rule, *span)
            fetched = span
        self._span[rule.name] = fetched
        return self._keep(rule, result)

    def _range(self, rule: "Rule", start: float, end: float) -> list[PromSeries]:
        assert rule.query is not None
        step = rule.step if rule.step is not None else float(self.config.prometheus.step)
        # on the step's grid (Grafana does the same): the same points from one cycle to the next, so a
        # history-based rule's kept state sees one consistent stream and Prometheus' cache is reused
        lo, hi = math.floor(start / step) * step, math.floor(end / step) * step
        return self.client.query_range(rule.query, lo, hi if hi > lo else end, step)

    def _keep(self, rule: "Rule", result: list[PromSeries]) -> list[SeriesInfo]:
        out: list[SeriesInfo] = []
        for s in result:
            if rule.matchers and not all(m.matches(s.labels) for m in rule.matchers):
                continue
            sid = _series_id(rule.name, s.labels)
            self._points[sid] = (s.ts, s.values)
            self._rule_of[sid] = rule
            out.append(SeriesInfo(sid, s.metric or rule.metric, s.labels))
        return out

    def block(self, series: list[SeriesInfo], start: float, end: float) -> SampleBlock:
        """The points of these series with start < ts <= end (the store's window), fetched again
        when the rule asks for more history than its first query read."""
        rule = self._rule_of.get(series[0].id) if series else None
        if rule is not None:
            lo, hi = self._span.get(rule.name, (start, end))
            if start < lo - 1e-6 or end > hi + 1e-6:
                self._range_refetch(rule, start, end)
        ids, ts, vals = [], [], []
        for s in sorted(series, key=lambda x: x.id):
            t, v = self._points.get(s.id, (np.empty(0), np.empty(0)))
            keep = (t > start) & (t <= end)
            ids.append(np.full(int(keep.sum()), s.id, dtype=np.int64))
            ts.append(t[keep])
            vals.append(v[keep])
        if not ids:
            e = np.empty(0)
            return SampleBlock(np.empty(0, dtype=np.int64), e, e.copy())
        return SampleBlock(np.concatenate(ids), np.concatenate(ts), np.concatenate(vals))

    def _range_refetch(self, rule: "Rule", start: float, end: float) -> None:
        lo, hi = self._span.get(rule.name, (start, end))
        lo, hi = min(lo, start), max(hi, end)
        for s in self._range(rule, lo, hi):
            sid = _series_id(rule.name, s.labels)
            if sid in self._points:
                self._points[sid] = (s.ts, s.values)
        self._span[rule.name] = (lo, hi)

    def last_timestamps(self, series_ids: Sequence[int], before: float) -> dict[int, float]:
        """Each series' last point at or before `before` (an absent rule's "last seen")."""
        out: dict[int, float] = {}
        for sid in series_ids:
            t, _ = self._points.get(int(sid), (np.empty(0), np.empty(0)))
            t = t[t <= before]
            if t.size:
                out[int(sid)] = float(t.max())
        return out
