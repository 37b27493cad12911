"""Trend: Theil–Sen slope with a Mann–Kendall significance test, judged by metric direction.

Theil–Sen (median of pairwise slopes) shrugs off the outliers performance data is full
of; Mann–Kendall says whether the monotone trend is real. Long series are reduced to
bucket means first so the pairwise step stays O(300²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

MAX_POINTS = 300
# the change against the previous window is a % of that window's mean: one or two samples are not a level
MIN_PREVIOUS_SAMPLES = 4

Verdict = Literal["worsening", "improving", "changing", "stable", "insufficient data"]


@dataclass(frozen=True)
class Trend:
    n: int
    slope_per_hour: float | None
    p_value: float | None
    significant: bool
    direction: Literal["up", "down", "flat", "unknown"]
    verdict: Verdict
    change_pct: float | None  # mean of this window vs the previous window of equal length
    current_mean: float | None
    previous_mean: float | None

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(round(x, digits))

        def sig(x: float | None, n: int = 3) -> float | None:
            return None if x is None or not math.isfinite(x) else float(f"{x:.{n}g}")

        return {
            "n": self.n, "slope_per_hour": sig(self.slope_per_hour, 4), "p_value": sig(self.p_value, 2),
            "significant": self.significant, "direction": self.direction, "verdict": self.verdict,
            "change_pct": r(self.change_pct), "current_mean": r(self.current_mean),
            "previous_mean": r(self.previous_mean),
        }


def _reduce(t: np.ndarray, v: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    if t.size <= max_points:
        return t, v
    edges = np.linspace(t[0], t[-1], max_points + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, max_points - 1)
    cnt = np.bincount(idx, minlength=max_points)
    keep = cnt > 0
    tm = np.bincount(idx, weights=t, minlength=max_points)[keep] / cnt[keep]
    vm = np.bincount(idx, weights=v, minlength=max_points)[keep] / cnt[keep]
    return tm, vm


def theil_sen(t: np.ndarray, v: np.ndarray) -> float:
    """Median pairwise slope (units of v per unit of t)."""
    i, j = np.triu_indices(t.size, k=1)
    dt = t[j] - t[i]
    ok = dt != 0
    if not ok.any():
        return 0.0
    return float(np.median((v[j][ok] - v[i][ok]) / dt[ok]))


def mann_kendall(v: np.ndarray) -> tuple[float, float]:
    """(S statistic, two-sided p-value) with the tie correction of the variance."""
    n = v.size
    i, j = np.triu_indices(n, k=1)
    s = float(np.sign(v[j] - v[i]).sum())
    _, tie_counts = np.unique(v, return_counts=True)
    ties = tie_counts[tie_counts > 1]
    var = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18.0
    if var <= 0:
        return s, 1.0
    z = (s - math.copysign(1, s)) / math.sqrt(var) if s != 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return s, p


def judge(direction: str, better: str, significant: bool) -> Verdict:
    """Direction + the metric's meaning → worsening/improving; never guessed from the sign alone."""
    if not significant or direction == "flat":
        return "stable"
    if better == "none":
        return "changing"
    bad_up = better == "lower"
    if direction == "up":
        return "worsening" if bad_up else "improving"
    return "improving" if bad_up else "worsening"


def trend(ts: np.ndarray, values: np.ndarray, *, better: str = "none", confidence: float = 0.95,
          previous: np.ndarray | None = None) -> Trend:
    """Trend of one series over its window; `previous` holds the values of the window before."""
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(t)
    t, v = t[ok], v[ok]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    cur_mean = float(v.mean()) if v.size else None
    prev = None if previous is None else np.asarray(previous, dtype=np.float64)
    prev = prev[np.isfinite(prev)] if prev is not None else None
    prev_mean = float(prev.mean()) if prev is not None and prev.size else None
    change = None
    if cur_mean is not None and prev_mean is not None and prev_mean != 0 and prev is not None \
            and prev.size >= MIN_PREVIOUS_SAMPLES and v.size >= MIN_PREVIOUS_SAMPLES:
        change = (cur_mean - prev_mean) / abs(prev_mean) * 100.0
    if v.size < 4:
        return Trend(int(v.size), None, None, False, "unknown", "insufficient data", change, cur_mean, prev_mean)
    tr, vr = _reduce(t, v, MAX_POINTS)
    slope = theil_sen(tr / 3600.0, vr)
    _, p = mann_kendall(vr)
    significant = p < (1.0 - confidence) and slope != 0.0
    direction: Literal["up", "down", "flat"] = "flat" if not significant else ("up" if slope > 0 else "down")
    return Trend(int(v.size), slope, p, significant, direction, judge(direction, better, significant), change,
                 cur_mean, prev_mean)
