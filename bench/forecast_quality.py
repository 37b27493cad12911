#!/usr/bin/env python3
"""Forecast quality bench: interval coverage, time-to-breach error, baselines, speed.

    python3 bench/forecast_quality.py                 # synthetic only
    python3 bench/forecast_quality.py --nab /work/shared/nab-dev
    python3 bench/forecast_quality.py --json          # machine-readable
    python3 bench/forecast_quality.py --quick         # fewer seeds

Methods compared side by side on the same rolling origins:
  ours            perf_alerts forecast(), default interval ("auto": analytic
                  h-step variance calibrated by in-sample empirical quantiles)
  ours_analytic   forecast(interval="analytic")   (Gaussian ETS formula)
  ours_empirical  forecast(interval="empirical")
  naive           last value, +- z * sd(first differences) * sqrt(h)
  linreg          OLS line over the history, +- z * residual sd (constant)

NAB time to breach (only with --nab): at 9 rolling origins per series,
thresholds between the current level and the future max (">") / min ("<")
that the actual data does cross within the horizon (true time = first
crossing in the data), scored for ours (mean path, what a forecast rule with
min_probability <= 0.5 fires on), ours_bound (the interval bound: earliest
plausible breach), linreg and last value; plus thresholds beyond the future
extreme, where any predicted breach is a false alarm.  See run_nab_breach().

Rolling origins: at several cut points fit on the past and forecast the next
H points; actuals are compared with the forecast interpolated at their
timestamps.  Coverage = fraction of actuals inside the 95% interval, split by
horizon bucket (short/medium/long = thirds of the horizon).  Width and the
interval score (Winkler, lower is better) are divided by the sd of the
series' first differences in the fit window, so they pool across series.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from statistics import NormalDist

import numpy as np

try:
    from perf_alerts.analytics.forecast import forecast, time_to_breach
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from perf_alerts.analytics.forecast import forecast, time_to_breach

LEVEL = 0.95
Z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
METHODS = ("ours", "ours_analytic", "ours_empirical", "naive", "linreg")


# ---------------------------------------------------------------- baselines

def _naive(t, y, t_future):
    d = np.diff(t)
    dt = float(np.median(d[d > 0])) if np.any(d > 0) else 1.0
    sd = float(np.std(np.diff(y))) if y.size > 2 else 0.0
    h = np.maximum((t_future - t[-1]) / dt, 1.0)
    mean = np.full(t_future.size, y[-1])
    return mean, mean - Z * sd * np.sqrt(h), mean + Z * sd * np.sqrt(h)


def _linreg(t, y, t_future):
    x0 = t[-1]
    b, a = np.polyfit(t - x0, y, 1)
    res = y - (a + b * (t - x0))
    sd = float(np.std(res, ddof=2)) if y.size > 2 else 0.0
    mean = a + b * (t_future - x0)
    return mean, mean - Z * sd, mean + Z * sd


def _predict(method, t, y, t_future, horizon, season="auto"):
    """(mean, lower, upper) at t_future for one method."""
    if method == "naive":
        return _naive(t, y, t_future)
    if method == "linreg":
        return _linreg(t, y, t_future)
    interval = {"ours": "auto", "ours_analytic": "analytic", "ours_empirical": "empirical"}[method]
    fc = forecast(t, y, horizon, level=LEVEL, season=season, interval=interval)
    ts = np.concatenate([[fc.last_timestamp], fc.timestamps])
    lv = fc.last_value

    def at(arr):
        return np.interp(t_future, ts, np.concatenate([[lv], arr]))
    return at(fc.mean), at(fc.lower), at(fc.upper)


# ---------------------------------------------------------------- coverage

class Acc:
    """Pooled coverage / width / interval-score accumulator for one method."""

    def __init__(self):
        self.inside = {"short": [], "medium": [], "long": []}
        self.width, self.score, self.abserr = [], [], []

    def add(self, frac_h, actual, mean, lo, hi, scale):
        ins = (actual >= lo) & (actual <= hi)
        for name, a, b in (("short", 0, 1 / 3), ("medium", 1 / 3, 2 / 3), ("long", 2 / 3, 1.01)):
            sel = (frac_h > a) & (frac_h <= b)
            self.inside[name].extend(ins[sel].tolist())
        a = 1 - LEVEL
        w = hi - lo
        sc = w + (2 / a) * (lo - actual) * (actual < lo) + (2 / a) * (actual - hi) * (actual > hi)
        self.width.extend((w / scale).tolist())
        self.score.extend((sc / scale).tolist())
        self.abserr.extend((np.abs(actual - mean) / scale).tolist())

    def summary(self):
        allv = sum(self.inside.values(), [])
        out = {"coverage": _mean(allv)}
        for k, v in self.inside.items():
            out[f"cov_{k}"] = _mean(v)
        out["width"] = _mean(self.width)
        out["score"] = _mean(self.score)
        out["mae"] = _mean(self.abserr)
        out["n_points"] = len(allv)
        return out


def _mean(v):
    return float(np.mean(v)) if len(v) else float("nan")


def _origins(t, y, H_points, cuts, max_hist=None):
    """Rolling origins: for each cut yield (t_hist, y_hist, t_future, y_future, horizon_s, dt).

    The history is t <= the cut (at most max_hist points), the future the next
    H_points * dt seconds (dt = median sampling interval of the history).
    """
    n = t.size
    for c in cuts:
        i = int(c * n)
        if i < 10 or i + 2 > n:
            continue
        j0 = 0 if max_hist is None else max(0, i - max_hist)
        th, yh = t[j0:i], y[j0:i]
        d = np.diff(th)
        dt = float(np.median(d[d > 0]))
        horizon = H_points * dt
        fut = (t > th[-1]) & (t <= th[-1] + horizon)
        if fut.sum() < 1:
            continue
        yield th, yh, t[fut], y[fut], horizon, dt


def rolling_eval(series, H_points, cuts, accs, methods, season="auto", max_hist=None):
    """series: list of (t, y). For each cut, fit on t<=cut, score the next H points."""
    for t, y in series:
        for th, yh, tf, yf, horizon, _dt in _origins(t, y, H_points, cuts, max_hist):
            scale = float(np.std(np.diff(yh))) or 1.0
            frac_h = (tf - th[-1]) / horizon
            for mth in methods:
                mean, lo, hi = _predict(mth, th, yh, tf, horizon, season)
                accs.setdefault(mth, Acc()).add(frac_h, yf, mean, lo, hi, scale)


# ---------------------------------------------------------------- synthetic

def synth_configs():
    """name -> generator(seed) returning (t, y)."""
    def trend_noise(sd, n=1200, step=300.0):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.arange(n) * step
            slope = r.uniform(-1, 1) * 15 / n     # up to +-15 units over the series
            return t, 100 + slope * np.arange(n) + r.normal(0, sd, n)
        return gen

    def damped(sd, n=1200, step=300.0):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.arange(n) * step
            x = np.arange(n)
            tau = r.uniform(0.3, 0.8) * n
            return t, 50 + 20 * (1 - np.exp(-x / tau)) + r.normal(0, sd, n)
        return gen

    def seasonal(sd, n=96 * 12, step=900.0, slope=True):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.arange(n) * step
            x = np.arange(n)
            ph = r.uniform(0, 2 * np.pi)
            y = 20 + 5 * np.sin(2 * np.pi * x / 96 + ph) + 2 * np.sin(4 * np.pi * x / 96)
            if slope:
                y = y + r.uniform(-1, 1) * 5 * x / n
            return t, y + r.normal(0, sd, n)
        return gen

    def local_linear(sd, n=1200, step=60.0):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.arange(n) * step
            lvl = np.cumsum(r.normal(0, 0.2 * sd, n)) + np.arange(n) * r.uniform(-1, 1) * 0.02 * sd
            return t, 10 + lvl + r.normal(0, sd, n)
        return gen

    def irregular(sd, n=1500):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.cumsum(r.exponential(60.0, n))
            slope = r.uniform(-1, 1) * 5 * sd / t.ptp() * 3 if hasattr(t, "ptp") else \
                r.uniform(-1, 1) * 5 * sd / np.ptp(t) * 3
            return t, 30 + slope * (t - t[0]) + r.normal(0, sd, n)
        return gen

    def heavy(sd, n=1200, step=300.0):
        def gen(seed):
            r = np.random.default_rng(seed)
            t = 1.7e9 + np.arange(n) * step
            slope = r.uniform(-1, 1) * 5 * sd / n * 3
            return t, 100 + slope * np.arange(n) + sd * r.standard_t(3, n) / math.sqrt(3)
        return gen

    cfg = {}
    for sd in (0.2, 1.0, 5.0):
        cfg[f"trend+noise sd={sd}"] = trend_noise(sd)
    cfg["damped trend sd=1"] = damped(1.0)
    cfg["damped trend sd=0.2"] = damped(0.2)
    cfg["daily season+trend sd=1"] = seasonal(1.0)
    cfg["daily season sd=0.3"] = seasonal(0.3, slope=False)
    cfg["local linear trend (random walk)"] = local_linear(1.0)
    cfg["irregular sampling trend sd=1"] = irregular(1.0)
    cfg["heavy-tailed t3 noise"] = heavy(1.0)
    return cfg


def run_synthetic(seeds, H=48, cuts=(0.55, 0.65, 0.75, 0.85, 0.95), methods=METHODS):
    per_cfg, pooled = {}, {}
    for name, gen in synth_configs().items():
        accs = {}
        series = [gen(s) for s in range(seeds)]
        # truncate so every cut has a full horizon of actuals where possible
        rolling_eval(series, H, cuts, accs, methods)
        per_cfg[name] = {m: a.summary() for m, a in accs.items()}
        for m, a in accs.items():
            p = pooled.setdefault(m, Acc())
            for k in p.inside:
                p.inside[k].extend(a.inside[k])
            p.width.extend(a.width)
            p.score.extend(a.score)
            p.abserr.extend(a.abserr)
    return per_cfg, {m: a.summary() for m, a in pooled.items()}


# ---------------------------------------------------------------- NAB

def load_nab(root):
    out = []
    data = os.path.join(root, "data")
    for cat in sorted(os.listdir(data)):
        d = os.path.join(data, cat)
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".csv"):
                continue
            ts, vs = [], []
            with open(os.path.join(d, fn), newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        dt = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
                        ts.append(dt.replace(tzinfo=timezone.utc).timestamp())
                        vs.append(float(row["value"]))
                    except (KeyError, ValueError):
                        continue
            if len(ts) > 100:
                out.append((f"{cat}/{fn}", np.array(ts), np.array(vs)))
    return out


def run_nab(root, H=72, cuts=(0.5, 0.6, 0.7, 0.8, 0.9), methods=METHODS, max_hist=4000):
    series = load_nab(root)
    accs, per_series, per_cat = {}, {}, {}
    for name, t, y in series:
        a1 = {}
        rolling_eval([(t, y)], H, cuts, a1, methods, max_hist=max_hist)
        per_series[name] = {m: round(a.summary()["coverage"], 3) for m, a in a1.items()}
        cat = name.split("/")[0]
        for tgt in (accs, per_cat.setdefault(cat, {})):
            for m, a in a1.items():
                p = tgt.setdefault(m, Acc())
                for k in p.inside:
                    p.inside[k].extend(a.inside[k])
                p.width.extend(a.width)
                p.score.extend(a.score)
                p.abserr.extend(a.abserr)
    return ({m: a.summary() for m, a in accs.items()},
            {c: {m: a.summary() for m, a in d.items()} for c, d in per_cat.items()},
            per_series, len(series))


# ---------------------------------------------------------------- time to breach

def run_breach(seeds, fracs=(0.25, 0.5, 0.75, 0.9)):
    """Linear trend + noise crossing a threshold at a known time T*.

    At an origin a fraction f of the way to T*, fit on [0, origin] and ask for
    the time to breach with a horizon of 2x the true remaining time.
    """
    res = {}
    step = 300.0
    for noise in (0.5, 2.0):
        for f in fracs:
            errs = {"ours": [], "linreg": [], "naive": []}
            rel = {k: [] for k in errs}
            miss = {k: 0 for k in errs}
            probs = []
            for s in range(seeds):
                r = np.random.default_rng(1000 + s)
                n_star = int(r.integers(400, 1200))     # breach at step n_star
                slope = r.uniform(0.02, 0.1)
                thr = 50.0 + slope * n_star
                n0 = max(int(f * n_star), 20)
                x = np.arange(n0)
                t = 1.7e9 + x * step
                y = 50.0 + slope * x + r.normal(0, noise, n0)
                true_s = (n_star - (n0 - 1)) * step
                horizon = 2 * true_s
                fc = forecast(t, y, horizon)
                br = time_to_breach(fc, thr, ">")
                probs.append(br.probability)
                # linear regression extrapolation
                b, a = np.polyfit(x, y, 1)
                lr_s = ((thr - a) / b - (n0 - 1)) * step if b > 0 else None
                if lr_s is not None and lr_s > horizon:
                    lr_s = None
                preds = {"ours": br.seconds, "linreg": lr_s,
                         "naive": 0.0 if y[-1] > thr else None}
                for k, p in preds.items():
                    if p is None:
                        miss[k] += 1
                    else:
                        errs[k].append(abs(p - true_s))
                        rel[k].append(abs(p - true_s) / true_s)
            key = f"noise={noise} f={f}"
            res[key] = {k: {"median_abs_err_s": _med(errs[k]),
                            "median_rel_err_pct": _med(rel[k], 100),
                            "miss_rate": miss[k] / seeds} for k in errs}
            res[key]["ours"]["mean_probability"] = float(np.mean(probs))
    return res


def _med(v, mul=1.0):
    return float(np.median(v) * mul) if v else None


# ---------------------------------------------------------------- NAB time to breach

BREACH_METHODS = ("ours", "ours_bound", "linreg", "last")
NAB_BREACH_CUTS = tuple(round(0.5 + 0.05 * k, 2) for k in range(9))   # 0.50 .. 0.90
_CMP = {">": np.greater, "<": np.less}


def _cross_s(t0, ts, path, thr, op):
    """Seconds from t0 to the first crossing of the piecewise-linear path (t0, ts) -> (p0, path).

    path[0] (at t0) must not be in breach; None if the path never crosses.
    """
    hit = _CMP[op](path[1:], thr)
    if not hit.any():
        return None
    i = int(np.argmax(hit)) + 1
    tt = np.concatenate([[t0], ts])
    p0, p1 = float(path[i - 1]), float(path[i])
    frac = 1.0 if p1 == p0 else min(max((thr - p0) / (p1 - p0), 0.0), 1.0)
    return float(tt[i - 1] + frac * (tt[i] - tt[i - 1]) - t0)


def _noise_sd(yh):
    """Robust per-point noise sd: MAD of first differences / sqrt(2) (spikes don't inflate it)."""
    d = np.diff(yh[-1000:])
    sd = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)
    if sd <= 0:                       # quantised / mostly-constant series
        sd = float(np.std(d)) / math.sqrt(2)
    return sd if sd > 0 else 1e-9 * (float(np.max(np.abs(yh))) + 1.0)


def _breach_preds(th, yh, horizon, thr, op, fc, br):
    """Predicted seconds to breach per method (None = no breach within the horizon)."""
    # linreg: OLS line over the same history window, extrapolated from its value at t_last
    b, a = np.polyfit(th - th[-1], yh, 1)
    if _CMP[op](a, thr):
        lr = 0.0
    elif (b > 0 if op == ">" else b < 0):
        lr = (thr - a) / b
    else:
        lr = None
    bound = None if br.bound_at is None else br.bound_at - fc.last_timestamp
    out = {"ours": br.seconds, "ours_bound": bound, "linreg": lr,
           # last value: in breach now or never (never here: origins already in breach are skipped)
           "last": 0.0 if _CMP[op](yh[-1], thr) else None}
    return {k: (None if v is None or v > horizon * (1 + 1e-9) else float(v)) for k, v in out.items()}


def run_nab_breach(root, H=72, cuts=NAB_BREACH_CUTS, max_hist=4000, qs=(0.5, 0.8),
                   min_exc=3.0, level_pts=5):
    """Time to breach on NAB with thresholds the actual future does (or does not) cross.

    At each rolling origin (history <= cut, at most max_hist points; horizon H
    points): level L = median of the last `level_pts` observations (model-free,
    so no scored method sets its own threshold), sigma = robust noise sd of the
    history, excursion e = max(future) - L for op ">" (L - min(future) for "<").
      crossing cases (when e >= min_exc * sigma, a real move, not noise):
          threshold = L +- q * e; the true time is the first crossing in the data.
      no-crossing case (every origin):
          threshold = L +- max(1.5 e, e + 2 sigma, 3 sigma), beyond the future
          extreme; any predicted breach within the horizon is a false alarm.
    Cases where the last observation is already in breach are skipped (the
    rule would be firing as a plain threshold already).
    """
    series = load_nab(root)
    cases = {}     # key -> list of (true_s, dt, {method: pred_s}, prob, category)
    falses = {}    # key -> list of ({method: pred_s}, prob, category)
    n_orig = skipped = 0
    for name, t, y in series:
        cat = name.split("/")[0]
        for th, yh, tf, yf, horizon, dt in _origins(t, y, H, cuts, max_hist):
            n_orig += 1
            fc = forecast(th, yh, horizon)
            L = float(np.median(yh[-level_pts:]))
            sig = _noise_sd(yh)
            y_last = float(yh[-1])
            path = np.concatenate([[y_last], yf])
            for op, sign, ext in ((">", 1.0, float(np.max(yf))), ("<", -1.0, float(np.min(yf)))):
                e = sign * (ext - L)
                todo = []
                if e >= min_exc * sig:
                    todo += [(f"{op} q={q}", L + sign * q * e, True) for q in qs]
                todo.append((f"{op} beyond", L + sign * max(1.5 * e, e + 2 * sig, 3 * sig), False))
                for key, thr, crosses in todo:
                    if _CMP[op](y_last, thr):
                        skipped += 1
                        continue
                    br = time_to_breach(fc, thr, op)
                    preds = _breach_preds(th, yh, horizon, thr, op, fc, br)
                    if crosses:
                        true_s = _cross_s(th[-1], tf, path, thr, op)
                        if true_s is None:          # cannot happen (ext is in yf); be safe
                            continue
                        cases.setdefault(key, []).append((true_s, dt, preds, br.probability, cat))
                    else:
                        falses.setdefault(key, []).append((preds, br.probability, cat))

    def summ_cross(rows):
        out = {"n": len(rows),
               "median_true_steps": _med([r[0] / r[1] for r in rows])}
        for m in BREACH_METHODS:
            got = [(r[0], r[1], r[2][m]) for r in rows if r[2][m] is not None]
            out[m] = {
                "median_abs_err_s": _med([abs(p - ts) for ts, _, p in got]),
                "median_abs_err_steps": _med([abs(p - ts) / dt for ts, dt, p in got]),
                "median_rel_err_pct": _med([abs(p - ts) / ts for ts, _, p in got if ts > 0], 100),
                "miss_rate": 1 - len(got) / len(rows) if rows else None,
                "early_rate": (sum(p <= ts for ts, _, p in got) / len(rows)) if rows else None,
            }
        out["ours"]["mean_probability"] = _mean([r[3] for r in rows]) if rows else None
        return out

    def summ_false(rows):
        out = {"n": len(rows)}
        for m in BREACH_METHODS:
            out[m] = {"false_breach_rate": (sum(r[0][m] is not None for r in rows) / len(rows))
                      if rows else None}
        out["ours"]["mean_probability"] = _mean([r[1] for r in rows]) if rows else None
        return out

    order = [f"{op} q={q}" for op in (">", "<") for q in qs]
    res_c = {k: summ_cross(cases[k]) for k in order if k in cases}
    res_c["all"] = summ_cross(sum(cases.values(), []))
    res_f = {k: summ_false(falses[k]) for k in ("> beyond", "< beyond") if k in falses}
    res_f["all"] = summ_false(sum(falses.values(), []))
    cats = sorted({r[-1] for v in list(cases.values()) + list(falses.values()) for r in v})
    per_cat = {c: {"crossing": summ_cross([r for v in cases.values() for r in v if r[-1] == c]),
                   "no_crossing": summ_false([r for v in falses.values() for r in v if r[-1] == c])}
               for c in cats}
    return {"crossing": res_c, "no_crossing": res_f, "per_category": per_cat,
            "n_series": len(series), "n_origins": n_orig, "skipped_in_breach": skipped,
            "horizon_points": H, "cuts": list(cuts), "qs": list(qs),
            "min_excursion_noise_sd": min_exc, "level_points": level_pts}


# ---------------------------------------------------------------- speed

def run_speed(n=1000, reps=30):
    r = np.random.default_rng(0)
    out = {}
    t = 1.7e9 + np.arange(n) * 60.0
    y = np.arange(n) * 0.01 + r.normal(0, 1, n)
    t_s = 1.7e9 + np.arange(n) * 900.0       # ~10 days at 15 min -> daily season
    y_s = 5 * np.sin(2 * np.pi * np.arange(n) / 96) + r.normal(0, 1, n)
    t_i = 1.7e9 + np.cumsum(r.exponential(60.0, n))
    for name, (tt, yy, hz) in {"regular_1000": (t, y, 3600.0),
                               "seasonal_1000": (t_s, y_s, 86400.0),
                               "irregular_1000": (t_i, y, 3600.0)}.items():
        forecast(tt, yy, hz)
        t0 = time.perf_counter()
        for _ in range(reps):
            fc = forecast(tt, yy, hz)
        dt = time.perf_counter() - t0
        out[name] = {"forecasts_per_s": reps / dt, "ms_per_forecast": 1000 * dt / reps,
                     "method": fc.method}
    return out


# ---------------------------------------------------------------- output

def _fmt_cov_table(title, d):
    lines = [title, f"  {'method':<15}{'cover':>7}{'short':>7}{'med':>7}{'long':>7}"
                    f"{'width':>8}{'score':>8}{'mae':>7}{'n':>8}"]
    for m in METHODS:
        if m not in d:
            continue
        s = d[m]
        lines.append(f"  {m:<15}{s['coverage']:>7.3f}{s['cov_short']:>7.3f}{s['cov_medium']:>7.3f}"
                     f"{s['cov_long']:>7.3f}{s['width']:>8.2f}{s['score']:>8.2f}{s['mae']:>7.2f}"
                     f"{s['n_points']:>8}")
    return "\n".join(lines)


def _fmt_nab_breach(nb):
    f = lambda v, spec: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    lines = [f"NAB time to breach ({nb['n_series']} series x {len(nb['cuts'])} origins = "
             f"{nb['n_origins']}, H={nb['horizon_points']} points; level = median of last "
             f"{nb['level_points']} obs; crossing cases need a future move >= "
             f"{nb['min_excursion_noise_sd']:g} noise sd; threshold = level +- q * move)",
             f"  {'case':<10}{'n':>5}{'true':>8}  {'method':<11}{'abs err s':>10}{'steps':>7}"
             f"{'rel %':>7}{'miss':>7}{'early':>7}"]
    for key, d in nb["crossing"].items():
        for k, m in enumerate(BREACH_METHODS):
            s = d[m]
            head = (f"  {key:<10}{d['n']:>5}{f(d['median_true_steps'], '.0f'):>8}" if k == 0
                    else " " * 25)
            extra = f"  P={d['ours']['mean_probability']:.2f}" if m == "ours" else ""
            lines.append(f"{head}  {m:<11}{f(s['median_abs_err_s'], '.0f'):>10}"
                         f"{f(s['median_abs_err_steps'], '.1f'):>7}{f(s['median_rel_err_pct'], '.0f'):>7}"
                         f"{f(s['miss_rate'], '.2f'):>7}{f(s['early_rate'], '.2f'):>7}{extra}")
    lines.append("  true = median true time to breach (steps); errors over cases with a predicted breach;"
                 " miss = no predicted breach within H;\n  early = predicted <= true (fraction of all"
                 " cases); ours_bound = interval bound crossing (Breach.bound_at); P = mean P(breach)")
    lines.append("  no crossing (threshold beyond the future max/min): false-breach rate")
    lines.append(f"  {'case':<10}{'n':>5}  " + "".join(f"{m:>11}" for m in BREACH_METHODS)
                 + "   P(ours)")
    for key, d in nb["no_crossing"].items():
        lines.append(f"  {key:<10}{d['n']:>5}  " + "".join(f"{f(d[m]['false_breach_rate'], '.2f'):>11}"
                                                     for m in BREACH_METHODS)
                     + f"   {f(d['ours']['mean_probability'], '.2f'):>6}")
    lines.append("  per category (ours vs linreg: miss / early / false):")
    for c, d in nb["per_category"].items():
        cr, nc = d["crossing"], d["no_crossing"]
        lines.append(f"    {c:<24}n={cr['n']:>3}/{nc['n']:>3}  " + "   ".join(
            f"{m} {f(cr[m]['miss_rate'], '.2f')}/{f(cr[m]['early_rate'], '.2f')}/"
            f"{f(nc[m]['false_breach_rate'], '.2f')}" for m in ("ours", "linreg")))
    lines.append(f"  ({nb['skipped_in_breach']} thresholds skipped: already in breach at the origin)")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nab", help="NAB-layout dir (data/<category>/*.csv)")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--quick", action="store_true", help="fewer seeds")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args(argv)
    seeds = 4 if args.quick else 12
    report = {"level": LEVEL}
    t0 = time.perf_counter()
    if not args.skip_synthetic:
        per_cfg, pooled = run_synthetic(seeds)
        report["synthetic"] = {"pooled": pooled, "per_config": per_cfg, "seeds": seeds,
                               "horizon_points": 48}
        report["breach"] = run_breach(seeds * 3)
        report["speed"] = run_speed()
    if args.nab:
        pooled, per_cat, per_series, nser = run_nab(args.nab)
        report["nab"] = {"pooled": pooled, "per_category": per_cat, "per_series": per_series,
                         "n_series": nser, "horizon_points": 72}
        report["nab_breach"] = run_nab_breach(args.nab)
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report, indent=1, default=float))
        return
    out = []
    if "synthetic" in report:
        out.append(_fmt_cov_table(f"Synthetic coverage @95% (pooled, {seeds} seeds x "
                                  f"{len(per_cfg)} configs x 5 origins, H=48)",
                                  report["synthetic"]["pooled"]))
        out.append("  per config (coverage: ours / analytic / empirical / naive / linreg):")
        for name, d in per_cfg.items():
            out.append(f"    {name:<34}" + " ".join(f"{d[m]['coverage']:.3f}" for m in METHODS)
                       + f"   width ours={d['ours']['width']:.2f}")
        out.append("\nTime to breach (linear trend crossing a threshold; median errors)")
        out.append(f"  {'case':<18}{'method':<8}{'abs err s':>11}{'rel err %':>11}{'miss':>7}")
        for key, d in report["breach"].items():
            for m, s in d.items():
                ae = "-" if s["median_abs_err_s"] is None else f"{s['median_abs_err_s']:.0f}"
                re_ = "-" if s["median_rel_err_pct"] is None else f"{s['median_rel_err_pct']:.1f}"
                extra = f"  P(breach)={s['mean_probability']:.2f}" if "mean_probability" in s else ""
                out.append(f"  {key:<18}{m:<8}{ae:>11}{re_:>11}{s['miss_rate']:>7.2f}{extra}")
        out.append("\nSpeed")
        for k, s in report["speed"].items():
            out.append(f"  {k:<16}{s['forecasts_per_s']:>8.1f} forecasts/s "
                       f"({s['ms_per_forecast']:.1f} ms, {s['method']})")
    if "nab" in report:
        out.append("")
        out.append(_fmt_cov_table(f"NAB coverage @95% ({report['nab']['n_series']} series x 5 "
                                  f"origins, H=72 points)", report["nab"]["pooled"]))
        for c, d in report["nab"]["per_category"].items():
            out.append(f"    {c:<34}" + " ".join(f"{d[m]['coverage']:.3f}" for m in METHODS if m in d))
    if "nab_breach" in report:
        out.append("")
        out.extend(_fmt_nab_breach(report["nab_breach"]))
    out.append(f"\nelapsed {report['elapsed_s']} s")
    print("\n".join(out))


if __name__ == "__main__":
    main()
