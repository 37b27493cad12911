"""Forecasting for ``forecast`` alert rules and the ``predict`` action.

Damped-trend Holt (additive), with additive Holt-Winters seasonality when the
data has a daily/weekly season, fitted by minimising the one-step-ahead SSE
over a parameter grid (vectorised over the grid: one pass over time for all
parameter combinations at once).  Irregularly sampled data (unix seconds) is
resampled to a regular grid of bucket means anchored at the last observation;
empty buckets are treated as missing (the filter predicts through them).

Prediction intervals: the model's analytic h-step variance (ETS(A,Ad,A)
"class 1" formula, Hyndman et al. 2008), calibrated by the in-sample empirical
h-step error quantiles (``interval="auto"``, the default; see
``bench/forecast_quality.py`` for the coverage measurements that chose it).

Only numpy + stdlib; importing this module is cheap.

    fc = forecast(ts, values, horizon_seconds=6 * 3600)
    br = time_to_breach(fc, 90.0, ">")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["Forecast", "Breach", "forecast", "time_to_breach"]

MAX_FIT_POINTS = 2000        # resampled points used for fitting (at most)
MAX_HORIZON_POINTS = 5000    # forecast points (at most)
MIN_HORIZON_POINTS = 6       # try to have at least this many steps in the horizon
MIN_MODEL_POINTS = 6         # fewer observed buckets than this -> naive forecast
DAY = 86400.0
WEEK = 7 * DAY
_NICE_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1200, 1800,
               3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400)

# Parameter grid for the non-seasonal models (one vectorised pass).
_ALPHAS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)
_BETA_FRACS = (0.002, 0.01, 0.05, 0.15, 0.35, 0.7)      # beta = alpha * frac
_PHIS = (0.8, 0.9, 0.95, 0.98, 0.995, 1.0)
# Seasonal grid (smaller: the season adds a dimension).
_S_ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9)
_S_BETA_FRACS = (0.0, 0.02, 0.1, 0.4)
_S_PHIS = (0.9, 0.98, 1.0)
_S_GAMMAS = (0.01, 0.05, 0.15, 0.3)


# --------------------------------------------------------------------------
# Public data classes
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Forecast:
    timestamps: np.ndarray      # future unix seconds, last_timestamp + step * (1..H)
    mean: np.ndarray
    lower: np.ndarray           # prediction interval at `level`
    upper: np.ndarray
    level: float                # e.g. 0.95
    step: float                 # seconds between forecast points (resampling step)
    method: str                 # "damped_holt", "holt", "ses", "holt_winters(period=24)", "naive"
    season_period: int | None   # in steps, when a season was used
    last_timestamp: float
    last_value: float           # last smoothed level (incl. the seasonal component)
    # extras (defaulted, so positional construction with the fields above works)
    last_observed: float | None = None   # raw last observation (used by time_to_breach)
    params: dict = field(default_factory=dict)  # alpha/beta/phi/gamma/sigma/interval/...

    @property
    def horizon_seconds(self) -> float:
        return float(self.timestamps[-1] - self.last_timestamp) if len(self.timestamps) else 0.0

    def to_dict(self, max_points: int = 24) -> dict:
        """Compact JSON-able summary (rounded), for CLI/LLM output."""
        n = len(self.timestamps)
        if n <= max_points or max_points < 2:
            idx = np.arange(min(n, max(max_points, 1)) if max_points < 2 else n)
            if max_points < 2 and n:
                idx = np.array([n - 1])
        else:
            idx = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))
        out = {
            "method": self.method,
            "level": round(float(self.level), 4),
            "step_s": _rnd(self.step),
            "season_period": self.season_period,
            "last_timestamp": _rnd_t(self.last_timestamp),
            "last_value": _rnd(self.last_value),
            "horizon_s": _rnd(self.horizon_seconds),
            "n_points": int(n),
            "points": {
                "t": [_rnd_t(x) for x in self.timestamps[idx]],
                "mean": [_rnd(x) for x in self.mean[idx]],
                "lower": [_rnd(x) for x in self.lower[idx]],
                "upper": [_rnd(x) for x in self.upper[idx]],
            },
        }
        if self.last_observed is not None:
            out["last_observed"] = _rnd(self.last_observed)
        if self.params:
            out["params"] = {k: (_rnd(v) if isinstance(v, (float, np.floating)) else v)
                             for k, v in self.params.items()}
        return out


@dataclass(frozen=True)
class Breach:
    at: float | None          # unix seconds when the mean forecast first crosses (None if not within horizon)
    seconds: float | None     # time-to-breach from last observation
    probability: float        # P(breach within horizon), normal approx from the interval, in [0, 1]
    bound_at: float | None    # when the pessimistic bound first crosses (earliest plausible breach)

    def to_dict(self) -> dict:
        return {"at": _rnd_t(self.at) if self.at is not None else None,
                "seconds": _rnd(self.seconds) if self.seconds is not None else None,
                "probability": round(float(self.probability), 4),
                "bound_at": _rnd_t(self.bound_at) if self.bound_at is not None else None}


def _rnd(x, sig: int = 5):
    x = float(x)
    if not math.isfinite(x):
        return None
    if x == 0.0:
        return 0.0
    digits = sig - 1 - int(math.floor(math.log10(abs(x))))
    return round(x, max(digits, -15)) if digits > 0 else float(round(x, digits))


def _rnd_t(x):
    x = float(x)
    return int(round(x)) if abs(x - round(x)) < 1e-6 or abs(x) > 1e6 else round(x, 3)


# --------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------

def _clean(timestamps, values):
    t = np.asarray(timestamps, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"timestamps and values must have the same length "
                         f"(got {t.size} and {y.size})")
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size < 3:
        raise ValueError(f"forecast needs at least 3 finite (timestamp, value) points, "
                         f"got {t.size} (NaN/inf are ignored)")
    order = np.argsort(t, kind="stable")
    return t[order], y[order]


def _nice_step(raw: float) -> float:
    """Round an automatic step to a 'nice' value (so seasons are whole steps)."""
    for s in _NICE_STEPS:
        if s >= raw / 1.1:
            return float(s)
    return float(math.ceil(raw / 1.1 / DAY) * DAY)


def _choose_step(t: np.ndarray, horizon: float) -> float:
    d = np.diff(t)
    d = d[d > 0]
    span = float(t[-1] - t[0])
    if d.size == 0 or span <= 0:
        return max(horizon / MIN_HORIZON_POINTS, 1e-9) if horizon > 0 else 1.0
    med = float(np.median(d))
    raw = max(med, span / MAX_FIT_POINTS)
    if horizon > 0 and horizon / raw < MIN_HORIZON_POINTS:
        # long history, short horizon: finer step, history gets truncated instead
        raw = max(med, horizon / MIN_HORIZON_POINTS)
    if horizon > 0:
        raw = max(raw, horizon / MAX_HORIZON_POINTS)
    return _nice_step(raw)


def _resample(t: np.ndarray, y: np.ndarray, step: float):
    """Bucket means on a grid anchored at the last timestamp (NaN = empty)."""
    t_last = float(t[-1])
    k = np.floor((t_last - t) / step + 0.5).astype(np.int64)
    keep = k < MAX_FIT_POINTS
    k, yy = k[keep], y[keep]
    n = int(k.max()) + 1
    idx = n - 1 - k
    sums = np.bincount(idx, weights=yy, minlength=n)
    cnt = np.bincount(idx, minlength=n)
    g = np.full(n, np.nan)
    nz = cnt > 0
    g[nz] = sums[nz] / cnt[nz]
    return g, idx, yy


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def _init_level_trend(g: np.ndarray, obs: np.ndarray, whole: bool = False):
    """Level/trend at index -1 from a line through the first half (or all) of the points."""
    oi = np.flatnonzero(obs)
    n0 = int(oi.size) if whole else int(min(oi.size, max(10, oi.size // 2)))
    x, v = oi[:n0].astype(float), g[oi[:n0]]
    if n0 >= 2 and np.ptp(x) > 0:
        b, a = np.polyfit(x, v, 1)
    else:
        a, b = float(v.mean()), 0.0
    return float(a - b), float(b)


def _grid(alphas, beta_fracs, phis, gammas=(0.0,), with_ses=True):
    rows = []
    for a in alphas:
        for g in gammas:
            if g > 0 and a + g > 1.0:
                continue
            if with_ses:
                rows.append((a, 0.0, 1.0, g, 0.0))   # no trend (SES / seasonal SES)
            for bf in beta_fracs:
                for p in phis:
                    rows.append((a, a * bf, p, g, 1.0))
    arr = np.array(rows, dtype=float)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4]


def _sse_grid(g, obs, l0, b0, alpha, beta, phi, gamma, trendon, s0, m, burn, hist=None):
    """One-step-ahead SSE for every parameter combination (vectorised over the grid).

    hist: optional dict; filled with the (n, K) level/trend/seasonal state history.
    """
    K = alpha.size
    n = g.size
    if hist is not None:
        Lh, Bh = np.empty((n, K)), np.empty((n, K))
        Sh = np.empty((n, K)) if m else None
        hist.update(L=Lh, B=Bh, S=Sh)
    lvl = np.broadcast_to(np.asarray(l0, float), (K,)).copy()
    b = np.broadcast_to(np.asarray(b0, float), (K,)) * trendon
    sse = np.zeros(K)
    S = None
    if m:
        S = np.repeat(np.asarray(s0, float)[:, None], K, axis=1)   # (m, K): row per phase
    ylist = g.tolist()
    olist = obs.tolist()
    with np.errstate(all="ignore"):
        for t in range(g.size):
            pb = phi * b
            f = lvl + pb
            if olist[t]:
                if m:
                    srow = S[t % m]
                    e = ylist[t] - (f + srow)
                    srow += gamma * e
                else:
                    e = ylist[t] - f
                if t >= burn:
                    sse += e * e
                lvl = f + alpha * e
                b = pb + beta * e
            else:
                lvl = f
                b = pb
            if hist is not None:
                Lh[t] = lvl
                Bh[t] = b
                if m:
                    Sh[t] = S[t % m]
    sse[~np.isfinite(sse)] = np.inf
    return sse


def _run_single(g, obs, l0, b0, alpha, beta, phi, gamma, s0, m):
    """Scalar filter for the chosen parameters, keeping the state history."""
    n = g.size
    L = np.empty(n)
    B = np.empty(n)
    Spost = np.zeros(n)        # seasonal value of phase t%m after the update at t
    fitted = np.full(n, np.nan)
    lvl, b = l0, b0
    s = [float(x) for x in s0] if m else []
    ylist = g.tolist()
    olist = obs.tolist()
    for t in range(n):
        pb = phi * b
        f = lvl + pb
        sv = s[t % m] if m else 0.0
        if olist[t]:
            fitted[t] = f + sv
            e = ylist[t] - fitted[t]
            lvl = f + alpha * e
            b = pb + beta * e
            if m:
                sv = sv + gamma * e
                s[t % m] = sv
        else:
            lvl, b = f, pb
        L[t], B[t], Spost[t] = lvl, b, sv
    return L, B, Spost, np.array(s), fitted


def _phi_cum_vec(phi: np.ndarray, h: int) -> np.ndarray:
    """phi + ... + phi^h for a vector of phi."""
    phi = np.asarray(phi, float)
    with np.errstate(all="ignore"):
        out = phi * (1.0 - phi ** h) / (1.0 - phi)
    return np.where(np.abs(1.0 - phi) < 1e-12, float(h), out)


def _phi_cum(phi: float, hs: ArrayLike) -> np.ndarray:
    """phi + phi^2 + ... + phi^h."""
    hs = np.asarray(hs, float)
    if abs(1.0 - phi) < 1e-12:
        return hs
    return phi * (1.0 - phi ** hs) / (1.0 - phi)


def _analytic_var_factor(alpha, beta, phi, gamma, m, H):
    """v_h / sigma^2 = 1 + sum_{j=1}^{h-1} c_j^2,  c_j = a + b*phi_j + g*[j%m==0]."""
    j = np.arange(1, H, dtype=float)
    c = alpha + beta * _phi_cum(phi, j)
    if m:
        c = c + gamma * ((np.arange(1, H) % m) == 0)
    return np.concatenate([[1.0], 1.0 + np.cumsum(c * c)])


def _classical_seasonal(g: np.ndarray, m: int):
    """Seasonal indices (by phase t % m) and strength from a classical decomposition."""
    n = g.size
    x = np.arange(n)
    obs = np.isfinite(g)
    yi = np.interp(x, x[obs], g[obs])
    # centred moving average of length m (2 x m for even m)
    if m % 2 == 0:
        w = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        w = np.ones(m) / m
    trend = np.convolve(yi, w, mode="valid")
    off = (w.size - 1) // 2
    det = np.full(n, np.nan)
    det[off:off + trend.size] = yi[off:off + trend.size] - trend
    det[~obs] = np.nan
    ph = x % m
    ok = np.isfinite(det)
    cnt = np.bincount(ph[ok], minlength=m)
    sums = np.bincount(ph[ok], weights=det[ok], minlength=m)
    with np.errstate(all="ignore"):
        idx = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
    idx = idx - idx.mean()
    d = det[ok]
    rem = d - idx[ph[ok]]
    vd = float(np.var(d)) if d.size > 1 else 0.0
    strength = 0.0 if vd <= 0 else max(0.0, 1.0 - float(np.var(rem)) / vd)
    return idx, strength


# --------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------

@dataclass
class _Fit:
    alpha: float
    beta: float
    phi: float
    gamma: float
    trend: bool
    m: int
    sse: float
    nres: int
    l0: float
    b0: float
    s0: np.ndarray


def _fit(g, obs, m=0, s0=None, H=1) -> _Fit:
    if m:
        gd = g - s0[np.arange(g.size) % m]
        grid = _grid(_S_ALPHAS, _S_BETA_FRACS, _S_PHIS, _S_GAMMAS)
    else:
        gd = g
        grid = _grid(_ALPHAS, _BETA_FRACS, _PHIS)
        s0 = np.zeros(0)
    # two initialisations, each tried with every parameter combination: a line
    # through the first half (adapts to curvature) and through all points (with
    # small alpha/beta this makes Holt as good as OLS on a truly linear trend)
    (la, ba), (lb, bb) = _init_level_trend(gd, obs), _init_level_trend(gd, obs, whole=True)
    K0 = grid[0].size
    alpha, beta, phi, gamma, trendon = (np.tile(a, 2) for a in grid)
    l0 = np.r_[np.full(K0, la), np.full(K0, lb)]
    b0 = np.r_[np.full(K0, ba), np.full(K0, bb)]
    burn = 2
    n = g.size
    hs = [h for h in sorted({1, H // 3, (2 * H) // 3, H}) if 1 <= h <= (n - burn) // 3]
    sse = _sse_grid(g, obs, l0, b0, alpha, beta, phi, gamma, trendon, s0, m, burn)
    nres = int(obs[burn:].sum())
    # floor relative to the data scale, so float noise on exact data can't drive AIC
    scale = float(np.nanmax(np.abs(g))) + 1e-300
    floor = (1e-9 * scale) ** 2
    sse = np.maximum(sse, max(nres, 1) * floor)
    # Select by AIC rather than raw SSE: a trend / damping must pay for itself
    # (raw SSE prefers damping on tiny differences).
    k = _nparams(trendon, phi, m)
    with np.errstate(divide="ignore"):
        aic = max(nres, 1) * np.log(sse / max(nres, 1)) + 2 * k
    if len(hs) > 1:
        # The forecast horizon is known.  One-step SSE can hardly tell a damped
        # from an undamped trend, multi-step errors can: take the best
        # (alpha, beta, gamma) per trend/phi class by one-step AIC, then choose
        # between those classes by the mean AIC over in-sample h-step errors
        # at h in {1, H/3, 2H/3, H}.
        cls = trendon * 10 + phi
        best_per_class: list[int] = []
        for c in np.unique(cls):
            idx = np.flatnonzero(cls == c)
            best_per_class.append(int(idx[np.argmin(aic[idx])]))
        cand = np.array(best_per_class)
        hist: dict[str, Any] = {}
        _sse_grid(g, obs, l0[cand], b0[cand], alpha[cand], beta[cand], phi[cand], gamma[cand],
                  trendon[cand], s0, m, burn, hist)
        crit = aic[cand].copy()
        with np.errstate(all="ignore"):
            for h in hs[1:]:
                o = np.arange(burn, n - h)
                o = o[obs[o + h]]
                if o.size < 10:
                    crit += aic[cand]
                    continue
                pred = hist["L"][o] + _phi_cum_vec(phi[cand], h)[None, :] * hist["B"][o]
                if m:
                    tp = o + h - m * int(math.ceil(h / m))
                    sv = np.where((tp >= 0)[:, None], hist["S"][np.maximum(tp, 0)],
                                  np.asarray(s0, float)[(o + h) % m][:, None])
                    pred = pred + sv
                mse = np.mean((g[o + h][:, None] - pred) ** 2, axis=0)
                mse = np.where(np.isfinite(mse), np.maximum(mse, floor), np.inf)
                crit += max(nres, 1) * np.log(mse) + 2 * k[cand]   # same weight as 1-step
        i = int(cand[np.argmin(crit)])
        sse_i = float(sse[i])
        return _Fit(float(alpha[i]), float(beta[i]), float(phi[i]), float(gamma[i]),
                    bool(trendon[i]), m, sse_i, nres, float(l0[i]), float(b0[i] * trendon[i]), s0)
    i = int(np.argmin(aic))
    return _Fit(float(alpha[i]), float(beta[i]), float(phi[i]), float(gamma[i]),
                bool(trendon[i]), m, float(sse[i]), nres, float(l0[i]),
                float(b0[i] * trendon[i]), s0)


def _nparams(trendon, phi, m):
    """alpha + l0, (+ beta + b0), (+ phi if damped), (+ gamma + m seasonal states)."""
    k = 2 + 2 * np.asarray(trendon, float) + (np.asarray(phi) < 1.0)
    return k + ((1 + m) if m else 0)


def _aic(f: _Fit) -> float:
    k = float(_nparams(f.trend, f.phi, f.m))
    n = max(f.nres, 1)
    return n * math.log(max(f.sse, 1e-300) / n) + 2 * k


def _season_candidates(season, step, n_obs_span):
    if season is None or season is False:
        return []
    if isinstance(season, str):
        s = season.lower()
        if s in ("none", "off", "no"):
            return []
        if s == "auto":
            periods, forced = (DAY, WEEK), False
        elif s in ("daily", "day", "1d"):
            periods, forced = (DAY,), True
        elif s in ("weekly", "week", "7d"):
            periods, forced = (WEEK,), True
        else:
            raise ValueError(f"season must be 'auto', 'daily', 'weekly', None or a period "
                             f"in seconds, got {season!r}")
    else:
        periods, forced = (float(season),), True
    out = []
    for P in periods:
        m = int(round(P / step))
        if m < 3 or abs(m * step - P) > 0.05 * P:
            continue
        if n_obs_span < 2 * m:
            continue
        out.append((m, forced))
    return out


def forecast(timestamps, values, horizon_seconds: float, *, level: float = 0.95,
             step: float | None = None, season: str | float | None = "auto",
             interval: str = "auto") -> Forecast:
    """Forecast an irregularly sampled series ``horizon_seconds`` past its last point.

    season: "auto" (daily/weekly when >= 2 full periods and significant),
            "daily"/"weekly"/period in seconds (use it when there's enough data),
            None (no season).
    interval: "auto" (analytic h-step variance calibrated by in-sample empirical
              h-step error quantiles), "analytic", or "empirical".
    """
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    horizon_seconds = float(horizon_seconds)
    if not (horizon_seconds > 0 and math.isfinite(horizon_seconds)):
        raise ValueError(f"horizon_seconds must be a positive number, got {horizon_seconds!r}")
    if interval not in ("auto", "analytic", "empirical"):
        raise ValueError(f"interval must be 'auto', 'analytic' or 'empirical', got {interval!r}")
    t, y = _clean(timestamps, values)
    if step is None:
        step = _choose_step(t, horizon_seconds)
    else:
        step = float(step)
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"step must be a positive number of seconds, got {step!r}")
        step = max(step, horizon_seconds / MAX_HORIZON_POINTS)
    H = max(1, int(math.ceil(horizon_seconds / step - 1e-9)))
    t_last = float(t[-1])
    last_obs = float(np.mean(y[t == t_last]))
    fut_t = t_last + step * np.arange(1, H + 1)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)

    g, raw_idx, raw_y = _resample(t, y, step)
    obs = np.isfinite(g)
    n_obs = int(obs.sum())

    if n_obs < MIN_MODEL_POINTS:
        return _naive(g, obs, y, fut_t, H, z, level, step, t_last, last_obs)

    # Non-seasonal fit, then seasonal candidates compared by AIC.
    best = _fit(g, obs, H=H)
    first = int(np.argmax(obs))
    span_n = g.size - first
    for m, forced in _season_candidates(season, step, span_n):
        s0, strength = _classical_seasonal(g[first:], m)
        if not forced and strength < 0.25:
            continue
        # phase of the sub-series starts at `first`
        s0 = np.roll(s0, first % m)
        f = _fit(g, obs, m, s0, H=H)
        if forced or _aic(f) < _aic(best) - 2.0:
            if forced or best.m == 0 or _aic(f) < _aic(best):
                best = f

    f = best
    m = f.m
    L, B, Spost, s_end, fitted = _run_single(g, obs, f.l0, f.b0, f.alpha, f.beta, f.phi,
                                             f.gamma, f.s0 if m else np.zeros(0), m)
    n = g.size
    hs = np.arange(1, H + 1)
    mean = L[-1] + _phi_cum(f.phi, hs) * B[-1]
    if m:
        mean = mean + s_end[(n - 1 + hs) % m]
    dof = max(f.nres - int(_nparams(f.trend, f.phi, m)), 1)
    sigma = math.sqrt(f.sse / dof)
    vf = _analytic_var_factor(f.alpha, f.beta, f.phi, f.gamma, m, H)
    sd = sigma * np.sqrt(vf)
    # Bucket means are less noisy than the single observations the interval is
    # for (several points per bucket: irregular/bursty data or a coarsened step):
    # add the within-bucket excess of the raw one-step errors.
    sel = (raw_idx >= 2) & np.isfinite(fitted[raw_idx])
    extra = 0.0
    if sel.sum() >= 5:
        fr = fitted[raw_idx[sel]]
        extra = max(0.0, float(np.mean((raw_y[sel] - fr) ** 2)
                               - np.mean((g[raw_idx[sel]] - fr) ** 2)))
    sd_obs = np.sqrt(sd * sd + extra)

    r_lo = r_hi = np.full(H, z)
    mode = "analytic"
    if interval in ("auto", "empirical") and sigma > 0:
        emp = _empirical_ratios(g, obs, L, B, Spost, f, sd / sigma, H, level)
        if emp is not None:
            e_lo, e_hi, n_err = emp
            if interval == "empirical":
                r_lo, r_hi, mode = e_lo, e_hi, "empirical"
            else:
                # Average of the empirical ratio and the normal z: on NAB this
                # keeps the analytic coverage with ~15% narrower intervals (heavy
                # tails inflate sigma; their central 95% is narrower than
                # +-1.96 sigma), and on Gaussian data both agree.  Pure
                # empirical under-covers out of sample (in-sample optimism,
                # non-stationarity); see bench/forecast_quality.py.
                r_lo = 0.5 * (e_lo + z)
                r_hi = 0.5 * (e_hi + z)
                mode = "auto"
    # half-widths never shrink with the horizon (the empirical ratios are noisy)
    lower = mean - np.maximum.accumulate(r_lo * sd_obs)
    upper = mean + np.maximum.accumulate(r_hi * sd_obs)

    if m:
        method = f"holt_winters(period={m})"
    elif not f.trend:
        method = "ses"
    elif f.phi < 1.0:
        method = "damped_holt"
    else:
        method = "holt"
    params = {"alpha": f.alpha, "beta": f.beta, "phi": f.phi, "sigma": sigma,
              "sigma_obs": math.sqrt(sigma * sigma + extra),
              "n_fit": int(n_obs), "interval": mode}
    if m:
        params["gamma"] = f.gamma
    last_value = float(L[-1] + (Spost[-1] if m else 0.0))
    return Forecast(fut_t, mean, lower, upper, float(level), float(step), method,
                    m or None, t_last, last_value, last_obs, params)


def _empirical_ratios(g, obs, L, B, Spost, f: _Fit, vf_sqrt, H, level):
    """In-sample h-step error quantiles, as multiples of the analytic sd (per h).

    Returns (ratio_lo, ratio_hi, n_errors) interpolated over h = 1..H, or None.
    """
    n = g.size
    m = f.m
    burn = max(2, min(m, n // 4) if m else 2)
    hmax = min(H, (n - burn) // 3)
    if hmax < 1:
        return None
    hs_eval = np.unique(np.round(np.geomspace(1, hmax, min(hmax, 10))).astype(int))
    q_lo, q_hi = (1 - level) / 2, 1 - (1 - level) / 2
    rl, rh, hv, ne = [], [], [], []
    sig = math.sqrt(f.sse / max(f.nres, 1))
    for h in hs_eval:
        o = np.arange(burn, n - h)
        tgt = o + h
        ok = obs[tgt]
        o, tgt = o[ok], tgt[ok]
        if o.size < 20:
            continue
        pred = L[o] + _phi_cum(f.phi, [h])[0] * B[o]
        if m:
            tp = o + h - m * int(math.ceil(h / m))
            sv = np.where(tp >= 0, Spost[np.maximum(tp, 0)], f.s0[tgt % m])
            pred = pred + sv
        err = g[tgt] - pred
        sdh = sig * vf_sqrt[h - 1]
        if sdh <= 0:
            continue
        lo, hi = np.quantile(err, [q_lo, q_hi])
        rl.append(max(-lo / sdh, 0.0))
        rh.append(max(hi / sdh, 0.0))
        hv.append(h)
        ne.append(o.size)
    if not hv:
        return None
    x = np.log(np.arange(1, H + 1))
    xp = np.log(np.array(hv, float))
    return np.interp(x, xp, rl), np.interp(x, xp, rh), float(min(ne))


def _naive(g, obs, y, fut_t, H, z, level, step, t_last, last_obs):
    vals = g[obs]
    idx = np.flatnonzero(obs)
    last = float(vals[-1])
    if idx.size >= 2:
        d = np.diff(vals) / np.sqrt(np.diff(idx))
        sigma = float(np.sqrt(np.mean(d * d)))
    else:
        sigma = float(np.std(y))
    hs = np.arange(1, H + 1)
    mean = np.full(H, last)
    sd = sigma * np.sqrt(hs)
    # few points: widen (t-like) so small-sample intervals aren't overconfident
    infl = 1.0 + 2.0 / max(idx.size - 1, 1)
    return Forecast(fut_t, mean, mean - infl * z * sd, mean + infl * z * sd, float(level),
                    float(step), "naive", None, t_last, last, last_obs,
                    {"sigma": sigma, "n_fit": int(idx.size), "interval": "naive"})


# --------------------------------------------------------------------------
# Time to breach
# --------------------------------------------------------------------------

_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _first_crossing(ts: np.ndarray, path: np.ndarray, thr: float, op: str):
    hit = _OPS[op](path, thr)
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    if i == 0:
        return float(ts[0])
    p0, p1 = float(path[i - 1]), float(path[i])
    frac = 1.0 if p1 == p0 else min(max((thr - p0) / (p1 - p0), 0.0), 1.0)
    return float(ts[i - 1] + frac * (ts[i] - ts[i - 1]))


def time_to_breach(fc: Forecast, threshold: float, op: str) -> Breach:
    """When the forecast crosses ``threshold`` (op in >, >=, <, <=).

    The mean path starts at the last observation (``fc.last_observed``, or the
    smoothed ``last_value``) and is interpolated linearly between forecast
    points.  probability = max over horizon of P(Y_h op threshold) under a
    normal approximation with the (one-sided) interval width; this is the
    probability of being in breach at the most likely time, a lower bound on
    P(breach at some time within the horizon).
    """
    if op not in _OPS:
        raise ValueError(f"op must be one of '>', '>=', '<', '<=', got {op!r}")
    thr = float(threshold)
    start = fc.last_observed if fc.last_observed is not None else fc.last_value
    up = op in (">", ">=")
    ts = np.concatenate([[fc.last_timestamp], np.asarray(fc.timestamps, float)])
    if _OPS[op](start, thr):
        return Breach(at=float(fc.last_timestamp), seconds=0.0, probability=1.0,
                      bound_at=float(fc.last_timestamp))
    mean = np.concatenate([[start], fc.mean])
    bound = np.concatenate([[start], fc.upper if up else fc.lower])
    at = _first_crossing(ts, mean, thr, op)
    bound_at = _first_crossing(ts, bound, thr, op)
    z = NormalDist().inv_cdf(0.5 + fc.level / 2.0)
    m = np.asarray(fc.mean, float)
    half = (np.asarray(fc.upper) - m) if up else (m - np.asarray(fc.lower))
    sd = np.maximum(half, 0.0) / z
    dist = (thr - m) if up else (m - thr)     # > 0: not yet in breach
    with np.errstate(divide="ignore", invalid="ignore"):
        zz = np.where(sd > 0, dist / np.where(sd > 0, sd, 1.0),
                      np.where(dist < 0, -np.inf, np.where(dist == 0, 0.0, np.inf)))
    if zz.size:
        zmin = float(np.min(zz))
        if op in (">=", "<=") and zmin == 0.0:
            p = 1.0 if np.any((sd == 0) & (dist == 0)) else 0.5
        else:
            p = 1.0 - NormalDist().cdf(zmin) if math.isfinite(zmin) else (1.0 if zmin < 0 else 0.0)
    else:
        p = 0.0
    if at is not None:
        p = max(p, 0.5)
    p = min(max(p, 0.0), 1.0)
    return Breach(at=at, seconds=None if at is None else at - fc.last_timestamp,
                  probability=p, bound_at=bound_at)


# --------------------------------------------------------------------------
# Breach outlook: the one answer to "will this series breach its threshold?"
# --------------------------------------------------------------------------

MIN_BREACH_POINTS = 10   # the fewest samples a breach outlook is made from (rules, predict, the tool)
BREACH_OPS = tuple(_OPS)  # the operators a breach can be forecast for (== / != cannot)


@dataclass(frozen=True)
class BreachOutlook:
    """Where a series stands against a threshold at evaluation time `at`, over [at, at + horizon].

    status: "breaching" (its last sample is already past the threshold: a fact, not a
    prediction), "predicted" (the forecast crosses within the horizon with at least the
    asked probability), or "clear". Times are never earlier than `at`. `value` is in the
    metric's unit and reads consistently with the operator: the last sample when breaching,
    else the forecast mean's peak (in the direction of the operator) within the horizon —
    past the threshold when predicted, short of it when clear — or, when a prediction rests
    on the pessimistic bound alone (min_probability < 0.5), the bound's peak.
    """

    status: str
    op: str
    threshold: float
    at: float
    horizon: float
    value: float
    breach_at: float | None     # breaching: `at`; predicted: when the mean forecast crosses (>= at)
    probability: float
    bound_at: float | None      # earliest plausible crossing (>= at)
    last_value: float
    last_timestamp: float
    points: int
    method: str                 # forecast method, or "observed" when breaching

    @property
    def active(self) -> bool:
        return self.status in ("breaching", "predicted")

    @property
    def seconds(self) -> float | None:
        """From `at` to the breach (0 when breaching now)."""
        return None if self.breach_at is None else max(0.0, self.breach_at - self.at)

    def describe(self) -> str:
        """One phrase: 'breaching now (last 72.1)', 'predicted in 2h 5m (p=0.83)', 'not predicted'."""
        from perf_alerts.timeutil import format_duration

        if self.status == "breaching":
            return f"breaching now (last {self.last_value:.4g} {self.op} {self.threshold:g})"
        if self.status == "predicted":
            return f"predicted in {format_duration(self.seconds)} (p={self.probability:.2f})"
        return f"not predicted within {format_duration(self.horizon)}"

    def to_dict(self) -> dict:
        return {"status": self.status, "op": self.op, "threshold": self.threshold, "value": _rnd(self.value),
                "breach_at": None if self.breach_at is None else _rnd_t(self.breach_at),
                "seconds": None if self.seconds is None else _rnd(self.seconds),
                "probability": round(float(self.probability), 4),
                "bound_at": None if self.bound_at is None else _rnd_t(self.bound_at),
                "last_value": _rnd(self.last_value), "last_timestamp": _rnd_t(self.last_timestamp),
                "points": self.points, "method": self.method}


def breach_outlook(timestamps, values, at: float, horizon: float, threshold: float, op: str,
                   min_probability: float = 0.5, *, fc: Forecast | None = None) -> BreachOutlook | None:
    """The breach outlook of one series at `at` (None: fewer than `MIN_BREACH_POINTS` samples,
    or no forecast possible). `fc`: a forecast of the same samples reaching at least
    `at + horizon`, when the caller already made one (several thresholds, one forecast)."""
    if op not in _OPS:
        raise ValueError(f"a breach needs an ordering operator (>, >=, <, <=), got {op!r}")
    t = np.asarray(timestamps, dtype=float)
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(t) & np.isfinite(y) & (t <= at)
    t, y = t[ok], y[ok]
    if t.size < MIN_BREACH_POINTS:
        return None
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    t_last = float(t[-1])
    last = float(np.mean(y[t == t_last]))
    if _OPS[op](last, float(threshold)):
        fc = None
    elif fc is None:
        fc = forecast_until(t, y, at + horizon)
        if fc is None:
            return None
    return outlook_from(fc, t_last, last, int(t.size), at, horizon, threshold, op, min_probability)


def outlook_from(fc: Forecast | None, t_last: float, last: float, points: int, at: float, horizon: float,
                 threshold: float, op: str, min_probability: float = 0.5) -> BreachOutlook | None:
    """`breach_outlook` from its parts: the series' last sample (`t_last`, `last`), how many samples
    it has, and a forecast (None only when `last` breaches already). A rule with kept state
    (`rules/history.py`) calls it with the forecast of its last fit and the newest sample."""
    thr = float(threshold)
    up = op in (">", ">=")
    if _OPS[op](last, thr):
        return BreachOutlook("breaching", op, thr, at, horizon, last, at, 1.0, at, last, t_last, points,
                             "observed")
    if fc is None:
        return None
    # only the part of the forecast from `at` to `at + horizon` counts
    keep = (fc.timestamps >= at) & (fc.timestamps <= at + horizon + 1e-6)
    if not keep.any():  # a step longer than the horizon: the first point past `at`
        keep = fc.timestamps >= at
        keep &= np.cumsum(keep) == 1
    part = Forecast(fc.timestamps[keep], fc.mean[keep], fc.lower[keep], fc.upper[keep], fc.level, fc.step,
                    fc.method, fc.season_period, fc.last_timestamp, fc.last_value, last, fc.params)
    br = time_to_breach(part, thr, op)
    breach_at = None if br.at is None else max(float(br.at), at)
    bound_at = None if br.bound_at is None else max(float(br.bound_at), at)
    value = float(part.mean.max() if up else part.mean.min())
    status = "predicted" if (breach_at is not None or bound_at is not None) and br.probability >= min_probability \
        else "clear"
    if status == "predicted" and breach_at is None:
        # only the pessimistic bound crosses, and that is likely enough (min_probability < 0.5)
        breach_at = bound_at
        bound = part.upper if up else part.lower
        value = float(bound.max() if up else bound.min())
    return BreachOutlook(status, op, thr, at, horizon, value, breach_at, float(br.probability), bound_at, last,
                         t_last, points, fc.method)


def forecast_until(timestamps, values, until: float) -> Forecast | None:
    """A forecast of the samples reaching `until` (None when it cannot be made)."""
    t = np.asarray(timestamps, dtype=float)
    if t.size == 0:
        return None
    h = until - float(np.nanmax(t))
    try:
        return forecast(t, values, max(h, 1.0))
    except ValueError:
        return None
