"""Window aggregates and summaries over many series at once (numpy, no per-series loop).

Input is a `SampleBlock`-shaped triple sorted by (series_id, ts); every function returns
one value per series present, in series-id order. This is what keeps one evaluation of
10,000 series × 5 rules well under a second.

Rows of a downsampled period stand for several raw samples (`n`, with their min `lo` and
max `hi`; see `perf_alerts.store.retention`). Every aggregate takes them into account, so
a sum, count, rate, mean, min or max over a downsampled week is the raw week's; quantiles
weigh each bucket's mean by its count. Without `n` (raw samples only) the fast paths run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from perf_alerts.store import SampleBlock

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def group_bounds(series_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique ids, start index, count) of each run of equal ids in a sorted array."""
    n = series_id.shape[0]
    if n == 0:
        e = np.empty(0, dtype=np.int64)
        return e, e, e
    change = np.flatnonzero(series_id[1:] != series_id[:-1]) + 1
    starts = np.concatenate(([0], change))
    counts = np.diff(np.concatenate((starts, [n])))
    return series_id[starts], starts, counts


def group_quantile(series_id: np.ndarray, values: np.ndarray, q: float,
                   bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Per-group quantile with linear interpolation (numpy's default method).

    With integer `weights`, as if each value were repeated that many times."""
    uniq, starts, counts = bounds or group_bounds(series_id)
    if uniq.size == 0:
        return np.empty(0)
    order = np.lexsort((values, series_id))
    v = values[order]
    if weights is not None:
        w = np.asarray(weights)[order].astype(np.int64)
        cum = np.cumsum(w)  # the expanded index one past each row
        offset = np.concatenate(([0], cum))[starts]  # expanded index of each group's first value
        total = np.add.reduceat(w, starts)
        wpos = q * (total - 1)
        k_lo = np.floor(wpos).astype(np.int64)
        k_hi = np.minimum(k_lo + 1, total - 1)
        i_lo = np.searchsorted(cum, offset + k_lo, side="right")
        i_hi = np.searchsorted(cum, offset + k_hi, side="right")
        return v[i_lo] + (v[i_hi] - v[i_lo]) * (wpos - k_lo)
    pos = starts + q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, starts + counts - 1)
    frac = pos - lo
    return v[lo] + (v[hi] - v[lo]) * frac


def group_aggregate(series_id: np.ndarray, ts: np.ndarray, values: np.ndarray, how: str,
                    window: float, kind: str = "gauge", *, n: np.ndarray | None = None,
                    lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate each series' samples in the window.

    `rate` is per second: for counters (`kind="counter"`), the increase over the window
    with resets handled (Prometheus semantics, without extrapolation); for gauges and
    events, the sum of values divided by the window (e.g. error events per second).
    `n`, `lo`, `hi`: the rows' weights (downsampled rows; see the module docstring).
    """
    bounds = group_bounds(series_id)
    uniq, starts, counts = bounds
    if uniq.size == 0:
        return uniq, np.empty(0)
    if n is not None:
        w = n.astype(np.float64)
        if how == "count":
            return uniq, np.add.reduceat(w, starts)
        if how == "sum" or (how == "rate" and kind != "counter"):
            total = np.add.reduceat(values * w, starts)
            return uniq, total if how == "sum" else total / (window if window > 0 else 1.0)
        if how == "avg":
            return uniq, np.add.reduceat(values * w, starts) / np.add.reduceat(w, starts)
        if how == "min":
            return uniq, np.minimum.reduceat(values if lo is None else lo, starts)
        if how == "max":
            return uniq, np.maximum.reduceat(values if hi is None else hi, starts)
        if how in PERCENTILES:
            return uniq, group_quantile(series_id, values, PERCENTILES[how], bounds, weights=n)
    if how == "last":
        return uniq, values[starts + counts - 1]
    if how == "count":
        return uniq, counts.astype(np.float64)
    if how == "sum":
        return uniq, np.add.reduceat(values, starts)
    if how == "avg":
        return uniq, np.add.reduceat(values, starts) / counts
    if how == "min":
        return uniq, np.minimum.reduceat(values, starts)
    if how == "max":
        return uniq, np.maximum.reduceat(values, starts)
    if how in PERCENTILES:
        return uniq, group_quantile(series_id, values, PERCENTILES[how], bounds)
    if how == "rate":
        span = window if window > 0 else 1.0
        if kind != "counter":
            return uniq, np.add.reduceat(values, starts) / span
        d = np.diff(values, prepend=values[:1])
        d[starts] = 0.0  # no delta across series boundaries
        inc = np.where(d < 0, values, d)  # a reset: the counter restarted from 0
        inc[starts] = 0.0
        return uniq, np.add.reduceat(inc, starts) / span
    raise ValueError(f"unknown aggregate {how!r}")


def block_aggregate(block: "SampleBlock", how: str, window: float, kind: str = "gauge"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """`group_aggregate` over a store block, its downsampled rows' weights included."""
    return group_aggregate(block.series_id, block.ts, block.value, how, window, kind,
                           n=block.n, lo=block.lo, hi=block.hi)


@dataclass(frozen=True)
class SeriesSummary:
    count: int
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    std: float | None
    per_hour: float | None  # samples per hour over the observed span
    first_ts: float | None
    last_ts: float | None
    last: float | None

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else float(round(x, digits))

        return {
            "count": self.count, "mean": r(self.mean), "min": r(self.min), "max": r(self.max),
            "p50": r(self.p50), "p95": r(self.p95), "p99": r(self.p99), "std": r(self.std),
            "per_hour": r(self.per_hour), "last": r(self.last),
        }


def summarize(ts: np.ndarray, values: np.ndarray, *, n: np.ndarray | None = None, lo: np.ndarray | None = None,
              hi: np.ndarray | None = None) -> SeriesSummary:
    """Summary of one series; an empty series is reported as count 0 with no invented numbers.

    `n`, `lo`, `hi`: the rows' weights (downsampled rows): counts, means, minima and maxima are
    the raw samples'; the spread and quantiles are those of the bucket means, weighted."""
    if n is not None:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return summarize(ts, values)
        sid = np.zeros(v.size, dtype=np.int64)
        return summarize_block(sid, np.asarray(ts, dtype=np.float64), v, n=n, lo=lo, hi=hi)[0]
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    mask = np.isfinite(v)
    v, t = v[mask], t[mask]
    n_ = int(v.size)
    if n_ == 0:
        return SeriesSummary(0, None, None, None, None, None, None, None, None, None, None, None)
    p50, p95, p99 = np.quantile(v, [0.5, 0.95, 0.99])
    span = float(t.max() - t.min()) if n_ > 1 else 0.0
    return SeriesSummary(
        count=n_, mean=float(v.mean()), min=float(v.min()), max=float(v.max()),
        p50=float(p50), p95=float(p95), p99=float(p99), std=float(v.std(ddof=1)) if n_ > 1 else 0.0,
        per_hour=(n_ - 1) / span * 3600.0 if span > 0 else None,
        first_ts=float(t.min()), last_ts=float(t.max()), last=float(v[np.argmax(t)]),
    )


def summarize_block(series_id: np.ndarray, ts: np.ndarray, values: np.ndarray, *, n: np.ndarray | None = None,
                    lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> dict[int, SeriesSummary]:
    """Summaries for every series in a block, vectorised across series (weights: see `summarize`)."""
    uniq, starts, rows = group_bounds(series_id)
    if uniq.size == 0:
        return {}
    bounds = (uniq, starts, rows)
    w = np.ones(values.shape[0]) if n is None else n.astype(np.float64)
    counts = rows if n is None else np.add.reduceat(w, starts)
    sums = np.add.reduceat(values * w, starts) if n is not None else np.add.reduceat(values, starts)
    mean = sums / counts
    sq = np.add.reduceat(w * (values - np.repeat(mean, rows)) ** 2, starts)
    std = np.sqrt(np.where(counts > 1, sq / np.maximum(counts - 1, 1), 0.0))
    mn = np.minimum.reduceat(values if lo is None else lo, starts)
    mx = np.maximum.reduceat(values if hi is None else hi, starts)
    p50 = group_quantile(series_id, values, 0.5, bounds, n)
    p95 = group_quantile(series_id, values, 0.95, bounds, n)
    p99 = group_quantile(series_id, values, 0.99, bounds, n)
    first = ts[starts]
    lastidx = starts + rows - 1
    last_ts = ts[lastidx]
    span = last_ts - first
    out: dict[int, SeriesSummary] = {}
    for i, sid in enumerate(uniq.tolist()):
        out[int(sid)] = SeriesSummary(
            int(counts[i]), float(mean[i]), float(mn[i]), float(mx[i]), float(p50[i]), float(p95[i]),
            float(p99[i]), float(std[i]),
            float((counts[i] - 1) / span[i] * 3600.0) if span[i] > 0 else None,
            float(first[i]), float(last_ts[i]), float(values[lastidx[i]]),
        )
    return out
