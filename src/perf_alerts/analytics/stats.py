"""Window aggregates and summaries over many series at once (numpy, no per-series loop).

Input is a `SampleBlock`-shaped triple sorted by (series_id, ts); every function returns
one value per series present, in series-id order. This is what keeps one evaluation of
10,000 series × 5 rules well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
                   bounds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per-group quantile with linear interpolation (numpy's default method)."""
    uniq, starts, counts = bounds or group_bounds(series_id)
    if uniq.size == 0:
        return np.empty(0)
    order = np.lexsort((values, series_id))
    v = values[order]
    pos = starts + q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, starts + counts - 1)
    frac = pos - lo
    return v[lo] + (v[hi] - v[lo]) * frac


def group_aggregate(series_id: np.ndarray, ts: np.ndarray, values: np.ndarray, how: str,
                    window: float, kind: str = "gauge") -> tuple[np.ndarray, np.ndarray]:
    """Aggregate each series' samples in the window.

    `rate` is per second: for counters (`kind="counter"`), the increase over the window
    with resets handled (Prometheus semantics, without extrapolation); for gauges and
    events, the sum of values divided by the window (e.g. error events per second).
    """
    bounds = group_bounds(series_id)
    uniq, starts, counts = bounds
    if uniq.size == 0:
        return uniq, np.empty(0)
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
        w = window if window > 0 else 1.0
        if kind != "counter":
            return uniq, np.add.reduceat(values, starts) / w
        d = np.diff(values, prepend=values[:1])
        d[starts] = 0.0  # no delta across series boundaries
        inc = np.where(d < 0, values, d)  # a reset: the counter restarted from 0
        inc[starts] = 0.0
        return uniq, np.add.reduceat(inc, starts) / w
    raise ValueError(f"unknown aggregate {how!r}")


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


def summarize(ts: np.ndarray, values: np.ndarray) -> SeriesSummary:
    """Summary of one series; an empty series is reported as count 0 with no invented numbers."""
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    mask = np.isfinite(v)
    v, t = v[mask], t[mask]
    n = int(v.size)
    if n == 0:
        return SeriesSummary(0, None, None, None, None, None, None, None, None, None, None, None)
    p50, p95, p99 = np.quantile(v, [0.5, 0.95, 0.99])
    span = float(t.max() - t.min()) if n > 1 else 0.0
    return SeriesSummary(
        count=n, mean=float(v.mean()), min=float(v.min()), max=float(v.max()),
        p50=float(p50), p95=float(p95), p99=float(p99), std=float(v.std(ddof=1)) if n > 1 else 0.0,
        per_hour=(n - 1) / span * 3600.0 if span > 0 else None,
        first_ts=float(t.min()), last_ts=float(t.max()), last=float(v[np.argmax(t)]),
    )


def summarize_block(series_id: np.ndarray, ts: np.ndarray, values: np.ndarray) -> dict[int, SeriesSummary]:
    """Summaries for every series in a block, vectorised across series."""
    uniq, starts, counts = group_bounds(series_id)
    if uniq.size == 0:
        return {}
    bounds = (uniq, starts, counts)
    sums = np.add.reduceat(values, starts)
    mean = sums / counts
    sq = np.add.reduceat((values - np.repeat(mean, counts)) ** 2, starts)
    std = np.sqrt(np.where(counts > 1, sq / np.maximum(counts - 1, 1), 0.0))
    mn = np.minimum.reduceat(values, starts)
    mx = np.maximum.reduceat(values, starts)
    p50 = group_quantile(series_id, values, 0.5, bounds)
    p95 = group_quantile(series_id, values, 0.95, bounds)
    p99 = group_quantile(series_id, values, 0.99, bounds)
    first = ts[starts]
    lastidx = starts + counts - 1
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
