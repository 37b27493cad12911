"""The default anomaly detector, streaming, vectorised over many series (numpy only).

`LikelihoodBank` holds the state of `analytics.anomaly.Likelihood` (the default detector) for
many series at once, as one float64 matrix (one row per state variable, one column per
series), and advances every series by one point per numpy call: `Likelihood.step`'s exact
recursions, applied to a whole column vector. An anomaly rule over 5,000 series therefore
scores a cycle's new points in a few numpy calls per point of time, not one Python call per
point, and its state (the matrix) is a few kB per series, stored as bytes.

The scores equal `anomaly_scores(values, timestamps)` over the same points (the batch form,
from the first point the bank saw), to float rounding (tests/test_history_rules.py checks
1e-9). Seasonal views ("daily", "weekly") need the value one period earlier: the caller
gives it (`lags`), read from the points it already holds or from the store, so the bank
keeps no raw history. `max_period` leaves out the views whose period does not fit in the
rule's lookback (the batch form over that lookback never finds their lag either).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from perf_alerts.analytics.anomaly import (
    _CAL_REF,
    _REL_FLOOR,
    Likelihood,
    RobustLikelihood,
    _decades_batch,
    _decay,
)
from perf_alerts.detectors import threshold_for

__all__ = ["LikelihoodBank", "lag_values"]

_CH = ("jump", "level")


def lag_values(src_t: np.ndarray, src_x: np.ndarray, t: np.ndarray, period: float, lag_tol: float) -> np.ndarray:
    """For each time in `t` (sorted), the value one `period` earlier from the sorted points
    (`src_t`, `src_x`) as `Likelihood` picks it (the last point at or before `t - period + 1`,
    no older than `t - period * (1 + lag_tol)`, strictly before `t`), or NaN."""
    out = np.full(t.shape[0], np.nan)
    if src_t.size == 0 or t.size == 0:
        return out
    target = t - period
    k = np.searchsorted(src_t, target + 1.0, side="right") - 1
    kk = np.maximum(k, 0)
    ok = (k >= 0) & (src_t[kk] >= target - lag_tol * period) & (src_t[kk] < t)
    out[ok] = src_x[kk[ok]]
    return out


class LikelihoodBank:
    """State of the default detector for `n` series: `state` is (variables, series)."""

    #: the detectors a bank can run: the default and its heavy-tail calibrated form
    DETECTORS: dict[str, type[Likelihood]] = {"default": Likelihood, "likelihood": Likelihood,
                                              "robust": RobustLikelihood}

    def __init__(self, n: int = 0, *, sensitivity: float | None = None, max_period: float | None = None,
                 detector: str = "default", **params: Any) -> None:
        if sensitivity is not None:
            params.setdefault("alert_level", threshold_for(sensitivity))
        if detector not in self.DETECTORS:
            raise ValueError(f"LikelihoodBank runs {', '.join(self.DETECTORS)}, not {detector!r}")
        self.det = self.DETECTORS[detector](**params)
        p = self.det.params
        self.p = p
        fams = ["plain"]
        if p["seasonal"]:
            for name, period in Likelihood.families.items():
                if name != "plain" and (max_period is None or period * (1.0 - p["lag_tol"]) <= max_period):
                    fams.append(name)
        self.families: list[str] = fams
        self.periods = {f: Likelihood.families[f] for f in fams}
        self.scales = self.det._scales()
        names = ["n", "x0", "abs_sum", "te", "since", "hold_ref", "hold_burst"]
        for f in fams:
            names += [f"{f}.n", f"{f}.prev", f"{f}.lvl_s", f"{f}.lvl_w"]
            for c in _CH:
                pre = f"{f}.{c}."
                names += [pre + "sc_s", pre + "sc_w", pre + "lm", pre + "k"]
                for q in range(len(self.scales)):
                    names += [f"{pre}avg{q}", f"{pre}hw{q}", f"{pre}h1{q}", f"{pre}h2{q}"]
                    if self._calibrated(c, q):
                        names += [f"{pre}cal{q}_{k}" for k in range(3)]
        self.names = names
        self.ix = {name: i for i, name in enumerate(names)}
        self.state = self.init(n)

    def _calibrated(self, channel: str, q: int) -> bool:
        """Whether this channel average's decades go through `Likelihood._calibrated`."""
        return bool(self.p["calibrate"]) and f"{channel}{q}" in self.p["cal_paths"]

    # -- state ------------------------------------------------------------------------
    def init(self, n: int) -> np.ndarray:
        """Fresh state columns for `n` series (the detector's `init_state`)."""
        st = np.zeros((len(self.names), n))
        for name in ("x0", *(f"{f}.prev" for f in self.families)):
            st[self.ix[name]] = np.nan           # None
        st[self.ix["te"]] = -np.inf
        st[self.ix["since"]] = -1.0              # None
        for f in self.families:
            for c in _CH:
                st[self.ix[f"{f}.{c}.lm"]] = -1e300
        return st

    # -- one point per series ------------------------------------------------------
    def step(self, st: np.ndarray, x: np.ndarray, t: np.ndarray,
             lags: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Advance the columns `st` (modified in place) by one finite point each; returns the scores.

        `lags[family]`: the value one period before each point (NaN: none), see `lag_values`."""
        p, ix = self.p, self.ix
        m = int(p["warmup"])
        n = st[ix["n"]]
        x0 = st[ix["x0"]]
        x0[:] = np.where(np.isnan(x0), x, x0)
        abs_sum = st[ix["abs_sum"]]
        abs_sum += np.where(n < m, np.abs(x), 0.0)
        te = st[ix["te"]]
        if len(self.families) > 1:
            te[:] = np.maximum(te, np.where(np.isfinite(t), t, -np.inf))
        best_s, best_fit = self._family(st, "plain", x - x0, None)
        c = None
        if p["log_c"] > 0 and len(self.families) > 1:
            c = p["log_c"] * abs_sum / m
            c = np.where(c > 0, c, 1.0)
        for fam in self.families[1:]:
            lag = None if lags is None else lags.get(fam)
            if lag is None:
                continue
            on = np.isfinite(lag) & np.isfinite(te) & (n >= m)
            if not on.any():
                continue
            lag0 = np.where(on, lag, 0.0)
            if c is not None:
                y = np.arcsinh(x / c) - np.arcsinh(lag0 / c)
            else:
                y = x - lag0
            s, fit = self._family(st, fam, y, on)
            if c is not None:
                fit = fit * np.hypot(c, x)
            better = on & (fit < best_fit)
            best_s = np.where(better, s, best_s)
            best_fit = np.where(better, fit, best_fit)
        s = np.where(n >= max(m, int(p["min_history"])), best_s * p["gain"], 0.0)
        n += 1.0
        gap = int(p["spacing"])
        since = st[ix["since"]]
        since[:] = np.where(since >= 0, since + 1.0, since)
        held = (gap > 0) & (since >= 0) & (since <= gap)
        cand = (gap > 0) & (s >= p["alert_level"])
        ref = st[ix["hold_ref"]]
        burst = cand & (st[ix["hold_burst"]] > 0)
        esc = float(p["escalate"])
        new = cand & ~held
        grow = cand & held & burst
        escal = cand & held & ~burst & (esc > 0) & (s >= esc * ref)
        since[:] = np.where(new, 0.0, since)
        ref[:] = np.where(new | escal, s, np.where(grow, np.maximum(ref, s), ref))
        burst = burst | new | escal
        held = held & ~escal
        st[ix["hold_burst"]] = burst
        out = np.minimum(s, 1.0)
        out = np.where(held, out * p["damp"], out)
        out = np.where(np.isnan(out), 0.0, out)
        return np.clip(out, 0.0, 1.0)

    def _family(self, st: np.ndarray, fam: str, y: np.ndarray, on: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        p, ix = self.p, self.ix
        prev = st[ix[f"{fam}.prev"]]
        lvl_s, lvl_w = st[ix[f"{fam}.lvl_s"]], st[ix[f"{fam}.lvl_w"]]
        first = np.isnan(prev)
        with np.errstate(invalid="ignore", divide="ignore"):
            jump = np.where(first, 0.0, y - prev)
            level = np.where(first, 0.0, y - lvl_s / np.where(lvl_w > 0, lvl_w, 1.0))
        d = _decay(p["level_hl"])
        tails = self.det._tails(fam)
        s_j, _ = self._channel(st, f"{fam}.jump.", jump, y, "jump", tails, on)
        s_l, fit = self._channel(st, f"{fam}.level.", level, y, "level", tails, on)
        fn = st[ix[f"{fam}.n"]]
        fit = np.where(fn < int(p["select_after"]), np.inf, fit)
        self._set(lvl_s, d * lvl_s + y, on)
        self._set(lvl_w, d * lvl_w + 1.0, on)
        self._set(prev, y, on)
        self._set(fn, fn + 1.0, on)
        return np.maximum(s_j, s_l), fit

    @staticmethod
    def _set(row: np.ndarray, value: np.ndarray, on: np.ndarray | None) -> None:
        if on is None:
            row[:] = value
        else:
            row[on] = value[on]

    def _channel(self, st: np.ndarray, pre: str, e: np.ndarray, y: np.ndarray, name: str,
                 tails: tuple[str, ...], on: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        p, ix = self.p, self.ix
        ae = np.abs(e)
        sc_s, sc_w = st[ix[pre + "sc_s"]], st[ix[pre + "sc_w"]]
        prev_scale = np.where(sc_w > 0, sc_s / np.where(sc_w > 0, sc_w, 1.0), 0.0)
        floor = np.maximum(_REL_FLOOR * np.abs(y), 1e-12)
        z = np.minimum(ae / np.maximum(prev_scale, floor), 1e12)
        r = z / (z + p["z_half"])
        score = np.zeros_like(z)
        heavy: np.ndarray | float = 1.0
        d_h = _decay(p["hist_hl"])
        for q, (hl, dec) in enumerate(self.scales):
            d_av = _decay(hl)
            a_row = st[ix[f"{pre}avg{q}"]]
            avg = d_av * a_row + r * (1.0 - d_av)
            self._set(a_row, avg, on)
            if p["tail_pow"] != 1.0:
                avg = np.maximum(avg, 0.0) ** p["tail_pow"]
            hw, h1, h2 = st[ix[f"{pre}hw{q}"]], st[ix[f"{pre}h1{q}"]], st[ix[f"{pre}h2{q}"]]
            pos = hw > 0
            hw_safe = np.where(pos, hw, 1.0)
            mu = np.where(pos, h1 / hw_safe, 0.0)
            var = np.where(pos, np.maximum(h2 / hw_safe - mu * mu, 0.0), 0.0)
            sd = np.maximum(np.sqrt(var), p["min_std"])
            gam = f"{name}{q}" in tails
            with np.errstate(invalid="ignore", divide="ignore"):
                zz = self.det._std_batch(avg, mu, sd, gam)
            dd = _decades_batch(zz)
            if self._calibrated(name, q):
                ref = _CAL_REF[f"{name}{q}{'g' if gam else ''}"]
                rows = [st[ix[f"{pre}cal{q}_{k}"]] for k in range(len(ref))]
                with np.errstate(invalid="ignore", divide="ignore"):
                    cd, h = self.det._calibrated(dd, hw, rows, ref)
                for k, lv in enumerate(ref):
                    self._set(rows[k], d_h * rows[k] + (dd >= lv), on)
                if q == 0:
                    heavy = h
                dd = cd
            score = np.maximum(score, dd / dec)
            self._set(hw, d_h * hw + 1.0, on)
            self._set(h1, d_h * h1 + avg, on)
            self._set(h2, d_h * h2 + avg * avg, on)
        if name not in p["lik_channels"]:
            score = np.zeros_like(z)
        if p["z_full"] > 0:
            score = np.maximum(score, z / p["z_full"])
        k = st[ix[pre + "k"]]
        if p["jump_ratio"] > 0:
            lm = st[ix[pre + "lm"]]
            lz = np.log(np.maximum(z, 1e-300))
            ref = np.maximum(lm, math.log(p["jump_ref"]))
            ext = 0.5 * (lz - ref) / math.log(p["jump_ratio"])
            if p["calibrate"] and p["cal_extreme"]:
                ext = ext * heavy
            score = np.maximum(score, ext)
            seen = np.where(k >= p["warmup"], lz, -np.inf)
            self._set(lm, np.maximum(seen, lm + math.log(_decay(p["jump_hl"]))), on)
        self._set(k, k + 1.0, on)
        d_sc = _decay(p["scale_hl"])
        self._set(sc_s, d_sc * sc_s + ae, on)
        self._set(sc_w, d_sc * sc_w + 1.0, on)
        return score, prev_scale

    # -- many points per series ----------------------------------------------------
    def run(self, cols: np.ndarray, x: np.ndarray, t: np.ndarray, valid: np.ndarray,
            lags: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Advance the series `cols` (column indices into `self.state`) through a (len(cols), K)
        block of points (`valid` marks the real ones; each row's points in time order and
        first); returns their scores (0 where not valid). `lags[family]` as `x`."""
        out = np.zeros(x.shape)
        if x.size == 0:
            return out
        st = self.state
        for k in range(x.shape[1]):
            v = valid[:, k]
            lk = None if lags is None else {f: a[:, k] for f, a in lags.items()}
            if v.all():
                sub = st[:, cols]
                out[:, k] = self.step(sub, x[:, k], t[:, k], lk)
                st[:, cols] = sub
                continue
            rows = np.flatnonzero(v)
            if rows.size == 0:
                break                     # rows are first: no later column has a point
            c = cols[rows]
            sub = st[:, c]
            out[rows, k] = self.step(sub, x[rows, k], t[rows, k],
                                     None if lk is None else {f: a[rows] for f, a in lk.items()})
            st[:, c] = sub
        return out
