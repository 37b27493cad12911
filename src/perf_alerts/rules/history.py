"""History-based rules that keep state between cycles: a cycle reads and scores only new points.

`AnomalyHistory` (an `anomaly` rule with the default detector) keeps every series' detector
state (`analytics.streaming.LikelihoodBank`: one float64 matrix) and the scores of the points
still inside the rule's `window`. A cycle reads the samples newer than each series' last
scored point (plus, for the daily view, the few samples one day before them), advances all
series together one point of time per numpy call, and reports each series' highest score in
the window: time proportional to the new points, not to the lookback.

What a score means: the detector is causal and streaming (SPEC §4); each series' state starts
at the rule's first evaluation (`at - lookback`, or when the series appears) and then sees
every later point once, so a score equals `anomaly_scores` (the batch form) over the series
from that start: the same as recomputing over the lookback on the first cycle, and with a
longer memory afterwards (the detector's filters forget with their own half-lives, not at the
lookback's edge). Samples that arrive later than a series' last scored point are not scored
(a stream does not go back). An evaluation more than `BACKWARD_TOLERANCE` earlier than the
last one (a replay from the start) starts the state anew; a smaller step back (a clock step)
is answered from the kept state.

The state is kept in the store (`store.rulestate`) under the rule's name and a hash of the
parameters that shape it, so a restart continues where it stopped and a changed rule (another
detector, sensitivity, lookback or window) rebuilds from history.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perf_alerts.alerts.state import SeriesResult
from perf_alerts.analytics.forecast import Forecast
from perf_alerts.analytics.streaming import LikelihoodBank

if TYPE_CHECKING:
    from perf_alerts.config import Rule
    from perf_alerts.store import SeriesInfo, Store

__all__ = ["AnomalyHistory", "ForecastHistory", "ScoredPoint", "TrendHistory", "anomaly_results", "decode_arrays",
           "encode_arrays", "forecast_outlooks", "state_key", "trend_results"]

STATE_VERSION = 1
WHOLE = -1          # the rule_state part of a state kept whole per rule
#: how far behind the newest series a series may lag and still be read in the same query
_SAME_QUERY = 3600.0
#: an evaluation this much earlier than the last one is a clock step (another replica's clock,
#: a correction): the kept state answers it (samples already scored are not scored again; the
#: window's scores from before the last evaluation's window may be gone). Earlier still: a replay
#: that starts over, and the state is rebuilt.
BACKWARD_TOLERANCE = 300.0
#: series rebuilt from history together (bounds the memory of a rebuild)
REBUILD_SERIES = 500
#: a seasonal lag is first looked for this far before one period back (then within its tolerance)
_NEAR_LAG = 600.0


def _lags_by_row(src_row: np.ndarray, src_t: np.ndarray, src_x: np.ndarray, q_row: np.ndarray, q_t: np.ndarray,
                 period: float, tol: float) -> np.ndarray:
    """`lag_values` for many series at once: the points (`src_row`, `src_t`, `src_x`) and the
    query times (`q_row`, `q_t`) of each series (row), any order; NaN where there is no lag."""
    out = np.full(q_t.shape[0], np.nan)
    if src_t.size == 0 or q_t.size == 0:
        return out
    base = float(min(src_t.min(), q_t.min())) - period * (1.0 + tol) - 10.0
    width = float(max(src_t.max(), q_t.max())) - base + 10.0
    order = np.lexsort((src_t, src_row))
    s_row, s_t, s_x = src_row[order], src_t[order], src_x[order]
    keys = s_row * width + (s_t - base)
    target = q_t - period
    k = np.searchsorted(keys, q_row * width + (target + 1.0 - base), side="right") - 1
    kk = np.maximum(k, 0)
    # the composite key can round at the boundary: step back once where the point is past it
    back = (k >= 0) & (s_row[kk] == q_row) & (s_t[kk] > target + 1.0)
    k = np.where(back, k - 1, k)
    kk = np.maximum(k, 0)
    ok = (k >= 0) & (s_row[kk] == q_row) & (s_t[kk] >= target - tol * period) & (s_t[kk] < q_t)
    out[ok] = s_x[kk[ok]]
    return out


def state_key(rule: Rule, *fields: str) -> str:
    """Hash of the rule's parameters that shape its kept state (and the state format)."""
    doc = {f: getattr(rule, f) for f in ("type", "metric", *fields)}
    doc["v"] = STATE_VERSION
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def encode_arrays(arrays: dict[str, np.ndarray]) -> str:
    """numpy arrays → TEXT (base64 of an uncompressed `.npz`; no pickles)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_arrays(text: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class ScoredPoint:
    """A series' highest score inside the rule's window (the first such point)."""

    sid: int
    score: float
    value: float
    at: float
    points: int        # points the detector has scored for this series


class AnomalyHistory:
    """The kept state of one anomaly rule (default or robust detector) over all its series."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.key = state_key(rule, "detector", "sensitivity", "lookback", "window")
        self.bank = LikelihoodBank(0, sensitivity=rule.sensitivity, max_period=rule.lookback, detector=rule.detector)
        self.sids = np.zeros(0, dtype=np.int64)      # sorted; column j of bank.state is sids[j]
        self.origin = np.zeros(0)                    # the state starts after this time
        self.last_t = np.zeros(0)                    # the last scored point (origin before any)
        self.at: float | None = None
        # scored points inside the window, sorted by (series id, time)
        self.r_sid = np.zeros(0, dtype=np.int64)
        self.r_t = np.zeros(0)
        self.r_s = np.zeros(0)
        self.r_x = np.zeros(0)
        self.loaded = False

    @staticmethod
    def supports(rule: Rule) -> bool:
        return rule.detector in LikelihoodBank.DETECTORS  # the default and its heavy-tail form (robust)

    # -- persistence ---------------------------------------------------------------
    def to_text(self) -> str:
        return encode_arrays({
            "names": np.array(self.bank.names), "sids": self.sids, "origin": self.origin, "last_t": self.last_t,
            "state": self.bank.state, "at": np.array([np.nan if self.at is None else self.at]),
            "r_sid": self.r_sid, "r_t": self.r_t, "r_s": self.r_s, "r_x": self.r_x,
        })

    def load_text(self, text: str) -> bool:
        """Take a stored state; False (nothing changed) when it does not fit this code's layout."""
        try:
            a = decode_arrays(text)
            if [str(n) for n in a["names"]] != self.bank.names or a["state"].shape[0] != len(self.bank.names):
                return False
            sids = a["sids"].astype(np.int64)
            if a["state"].shape[1] != sids.size:
                return False
        except (ValueError, KeyError, OSError):
            return False
        self.sids, self.origin, self.last_t = sids, a["origin"].astype(float), a["last_t"].astype(float)
        self.bank.state = np.ascontiguousarray(a["state"], dtype=float)
        at = float(a["at"][0])
        self.at = None if np.isnan(at) else at
        self.r_sid, self.r_t = a["r_sid"].astype(np.int64), a["r_t"].astype(float)
        self.r_s, self.r_x = a["r_s"].astype(float), a["r_x"].astype(float)
        return True

    def load(self, store: Store) -> None:
        if self.loaded:
            return
        self.loaded = True
        row = store.rule_state_load(self.rule.name, self.key).get(WHOLE)
        if row is not None:
            self.load_text(row[1])

    def save(self, store: Store) -> None:
        store.rule_state_save(self.rule.name, self.key, [(WHOLE, self.at or 0.0, self.to_text())], fresh=True)

    def reset(self) -> None:
        self.bank.state = self.bank.init(0)
        self.sids = np.zeros(0, dtype=np.int64)
        self.origin = self.last_t = np.zeros(0)
        self.at = None
        self.r_sid = np.zeros(0, dtype=np.int64)
        self.r_t = self.r_s = self.r_x = np.zeros(0)

    # -- a cycle -----------------------------------------------------------------------
    def _columns(self, ids: np.ndarray, at: float) -> np.ndarray:
        """Columns of `ids` (sorted), adding fresh state for series seen for the first time."""
        new = np.setdiff1d(ids, self.sids, assume_unique=True)
        if new.size:
            start = at - self.rule.lookback
            sids = np.concatenate([self.sids, new])
            order = np.argsort(sids, kind="stable")
            self.sids = sids[order]
            self.origin = np.concatenate([self.origin, np.full(new.size, start)])[order]
            self.last_t = np.concatenate([self.last_t, np.full(new.size, start)])[order]
            self.bank.state = np.ascontiguousarray(
                np.concatenate([self.bank.state, self.bank.init(new.size)], axis=1)[:, order])
        return np.searchsorted(self.sids, ids)

    def advance(self, store: Store, series: list[SeriesInfo], at: float) -> list[ScoredPoint]:
        """Score every new point of `series` up to `at`; each series' highest score in the window."""
        if self.at is not None and at < self.at - BACKWARD_TOLERANCE:
            self.reset()   # a replay that starts over: a stream does not go back
        ids = np.unique(np.fromiter((s.id for s in series), dtype=np.int64, count=len(series)))
        cols = self._columns(ids, at)
        last = self.last_t[cols]
        # one query for the series that are up to date; the ones far behind (new, or silent for a
        # while: a rebuild from history) in groups of REBUILD_SERIES, so memory stays bounded
        newest = float(last.max()) if last.size else at
        near = last >= newest - _SAME_QUERY
        far = np.flatnonzero(~near)
        groups = [np.flatnonzero(near)] + [far[i:i + REBUILD_SERIES] for i in range(0, far.size, REBUILD_SERIES)]
        for g in groups:
            if g.size == 0:
                continue
            blk = store.query(ids[g].tolist(), float(last[g].min()), at)
            b_sid, b_t, b_x = blk.series_id, blk.ts, blk.value
            col_of = np.searchsorted(self.sids, b_sid)
            keep = (b_t > self.last_t[col_of]) & np.isfinite(b_x) & np.isfinite(b_t)
            if keep.any():
                self._score(store, b_sid[keep], b_t[keep], b_x[keep], col_of[keep], at)  # sorted by (series, time)
        if self.at is None or at > self.at:
            self.at = at
            # the window: drop what left it
            win = self.r_t > at - self.rule.window
            self.r_sid, self.r_t, self.r_s, self.r_x = self.r_sid[win], self.r_t[win], self.r_s[win], self.r_x[win]
        return self._peaks(ids, at)

    def _score(self, store: Store, b_sid: np.ndarray, b_t: np.ndarray, b_x: np.ndarray, col_of: np.ndarray,
               at: float) -> None:
        u_cols, start, count = np.unique(col_of, return_index=True, return_counts=True)
        rows, k_max = u_cols.size, int(count.max())
        pos = np.arange(b_t.size) - np.repeat(start, count)
        row_of = np.repeat(np.arange(rows), count)
        X = np.zeros((rows, k_max))
        T = np.zeros((rows, k_max))
        V = np.zeros((rows, k_max), dtype=bool)
        X[row_of, pos], T[row_of, pos], V[row_of, pos] = b_x, b_t, True
        lags = self._lags(store, u_cols, b_t, b_x, start, count, row_of, pos, (rows, k_max))
        S = self.bank.run(u_cols, X, T, V, lags)
        self.last_t[u_cols] = b_t[start + count - 1]
        # keep the new points still inside the window
        inwin = b_t > at - self.rule.window
        r_sid = np.concatenate([self.r_sid, b_sid[inwin]])
        r_t = np.concatenate([self.r_t, b_t[inwin]])
        r_s = np.concatenate([self.r_s, S[row_of, pos][inwin]])
        r_x = np.concatenate([self.r_x, b_x[inwin]])
        order = np.lexsort((r_t, r_sid))
        self.r_sid, self.r_t, self.r_s, self.r_x = r_sid[order], r_t[order], r_s[order], r_x[order]

    def _lags(self, store: Store, u_cols: np.ndarray, b_t: np.ndarray, b_x: np.ndarray, start: np.ndarray,
              count: np.ndarray, row_of: np.ndarray, pos: np.ndarray,
              shape: tuple[int, int]) -> dict[str, np.ndarray] | None:
        """The value one period before each new point, per seasonal view: from the new points
        themselves and the stored samples of the series since its state began."""
        fams = self.bank.families[1:]
        if not fams:
            return None
        tol = float(self.bank.p["lag_tol"])
        sids = self.sids[u_cols]
        out: dict[str, np.ndarray] = {}
        first_t, last_t = b_t[start], b_t[start + count - 1]
        origin = self.origin[u_cols]
        for fam in fams:
            period = self.bank.periods[fam]
            # per series, the stored samples one period back that precede this cycle's points:
            # first the few minutes around the lags (regular data has its lag there), then the
            # whole tolerance for the series that had none there
            need = last_t - period + 1.0 > origin          # some point can have a lag since the state began
            lo = np.maximum(origin, first_t - period * (1.0 + tol) - 2.0)
            hi = np.minimum(last_t - period + 1.0, first_t)
            mid = np.minimum(np.maximum(lo, first_t - period - _NEAR_LAG), hi)
            o_sid, o_t, o_x = self._query_rows(store, sids, mid, hi, need & (hi > mid))
            row = np.asarray(np.searchsorted(sids, o_sid))
            found = np.zeros(sids.size, dtype=bool)
            found[row[o_t <= first_t[row] - period + 1.0]] = True
            far = need & ~found & (mid > lo)
            if far.any():
                f_sid, f_t, f_x = self._query_rows(store, sids, lo, mid, far)
                o_sid, o_t, o_x = np.r_[o_sid, f_sid], np.r_[o_t, f_t], np.r_[o_x, f_x]
                row = np.asarray(np.searchsorted(sids, o_sid))
            ok = need[row] & (o_t > origin[row]) & (o_t < first_t[row])
            lag = np.full(shape, np.nan)
            sel = need[row_of]
            lag[row_of[sel], pos[sel]] = _lags_by_row(np.r_[row[ok], row_of], np.r_[o_t[ok], b_t],
                                                      np.r_[o_x[ok], b_x], row_of[sel], b_t[sel], period, tol)
            out[fam] = lag
        return out

    @staticmethod
    def _query_rows(store: Store, sids: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Samples of the series `sids[sel]` in their ranges (lo, hi], read in at most two queries
        (the series whose range starts near the latest one, and the others), sorted by series."""
        parts = []
        if sel.any():
            top = float(lo[sel].max())
            near = sel & (lo >= top - _SAME_QUERY)
            for g in (near, sel & ~near):
                if g.any():
                    blk = store.query(sids[g].tolist(), float(lo[g].min()), float(hi[g].max()))
                    parts.append((blk.series_id, blk.ts, blk.value))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        sid = np.concatenate([p[0] for p in parts])
        order = np.argsort(sid, kind="stable")    # each part is sorted by (series, time); series are disjoint
        return sid[order], np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order]

    def _peaks(self, ids: np.ndarray, at: float) -> list[ScoredPoint]:
        sel = np.isin(self.r_sid, ids) & (self.r_t <= at) & (self.r_t > at - self.rule.window)
        sid, t, s, x = self.r_sid[sel], self.r_t[sel], self.r_s[sel], self.r_x[sel]
        if sid.size == 0:
            return []
        u, start = np.unique(sid, return_index=True)
        peak = np.maximum.reduceat(s, start)
        group = np.repeat(np.arange(u.size), np.diff(np.r_[start, sid.size]))
        idx = np.arange(sid.size)
        first = np.minimum.reduceat(np.where(s == peak[group], idx, sid.size), start)
        n = self.bank.state[self.bank.ix["n"], np.searchsorted(self.sids, u)]
        return [ScoredPoint(int(a), float(b), float(c), float(d), int(e))
                for a, b, c, d, e in zip(u.tolist(), s[first].tolist(), x[first].tolist(), t[first].tolist(),
                                         n.tolist())]


def anomaly_history_for(rule: Rule, cache: dict[str, Any]) -> AnomalyHistory:
    """The evaluator's `AnomalyHistory` for `rule` (a new one when its parameters changed)."""
    key = state_key(rule, "detector", "sensitivity", "lookback", "window")
    h = cache.get(rule.name)
    if not isinstance(h, AnomalyHistory) or h.key != key:
        h = cache[rule.name] = AnomalyHistory(rule)
    return h


def anomaly_results(cache: dict[str, Any], store: Store, rule: Rule, series: list[SeriesInfo], at: float,
                    keep: bool) -> list[SeriesResult]:
    """An anomaly rule's results at `at` from its kept state (`keep`: the state is read from and
    written to the store; else it lives in `cache` only, e.g. a backtest's)."""
    h = anomaly_history_for(rule, cache)
    if keep:
        h.load(store)
    peaks = h.advance(store, series, at)
    if keep:
        h.save(store)
    threshold = rule.threshold
    assert threshold is not None
    recovery = rule.recovery if rule.recovery is not None else threshold
    by_id = {s.id: s for s in series}
    return [SeriesResult(by_id[p.sid].labels, p.score, p.score >= threshold, p.score >= recovery,
                         {"observed": p.value, "observed_at": p.at, "points": p.points})
            for p in peaks]


# --------------------------------------------------------------------------- forecast rules

#: a forecast rule's series is refitted at most this often (and at least every half horizon)
REFIT_EVERY = 3600.0


@dataclass
class _Fit:
    fc: Forecast
    fit_at: float            # when it was fitted
    due: float               # when it is fitted again
    t_last: float            # the last sample seen (at the fit or since)
    last: float
    points: int              # samples in the lookback at the fit, plus those seen since


class ForecastHistory:
    """The kept fits of one forecast rule: a series is refitted (from its lookback, exactly as
    `breach_outlook`) once per refit interval, the refits of many series spread over the
    interval; in between, a cycle reads only the samples since the last one, and the outlook is
    the last fit's forecast (at most one refit interval old) judged from the newest sample
    (`analytics.forecast.outlook_from`): "breaching now" is always exact, a prediction can lag
    by up to the interval (tests/test_history_rules.py measures the agreement). Fits are kept
    in the store one row per series, written only when the series is refitted."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.key = state_key(rule, "lookback", "horizon")
        self.refit = min(REFIT_EVERY, max(rule.horizon / 2.0, 60.0))
        self.fits: dict[int, _Fit] = {}
        self.at: float | None = None
        self.loaded = False
        self.dirty: set[int] = set()

    # -- persistence -----------------------------------------------------------------
    @staticmethod
    def _encode(f: _Fit) -> str:
        fc = f.fc
        meta = {"fit_at": f.fit_at, "due": f.due, "t_last": f.t_last, "last": f.last, "points": f.points,
                "level": fc.level, "step": fc.step, "method": fc.method, "season_period": fc.season_period,
                "last_timestamp": fc.last_timestamp, "last_value": fc.last_value, "last_observed": fc.last_observed,
                "params": fc.params}
        return encode_arrays({"meta": np.array(json.dumps(meta, default=float)), "timestamps": fc.timestamps,
                              "mean": fc.mean, "lower": fc.lower, "upper": fc.upper})

    @staticmethod
    def _decode(text: str) -> _Fit | None:
        try:
            a = decode_arrays(text)
            m = json.loads(str(a["meta"]))
            fc = Forecast(a["timestamps"], a["mean"], a["lower"], a["upper"], float(m["level"]), float(m["step"]),
                          str(m["method"]), m["season_period"], float(m["last_timestamp"]), float(m["last_value"]),
                          m["last_observed"], dict(m["params"]))
            return _Fit(fc, float(m["fit_at"]), float(m["due"]), float(m["t_last"]), float(m["last"]),
                        int(m["points"]))
        except (ValueError, KeyError, TypeError, OSError):
            return None

    def load(self, store: Store) -> None:
        if self.loaded:
            return
        self.loaded = True
        for part, (_, text) in store.rule_state_load(self.rule.name, self.key).items():
            f = self._decode(text)
            if f is not None:
                self.fits[part] = f

    def save(self, store: Store) -> None:
        if self.dirty:
            store.rule_state_save(self.rule.name, self.key,
                                  [(sid, self.fits[sid].fit_at, self._encode(self.fits[sid]))
                                   for sid in sorted(self.dirty) if sid in self.fits],
                                  drop=[sid for sid in self.dirty if sid not in self.fits], fresh=True)
            self.dirty.clear()

    # -- a cycle -----------------------------------------------------------------------
    def _phase(self, sid: int) -> float:
        """Where in the refit interval a series' first refit falls (spreads the refits)."""
        return ((sid * 2654435761) % 1000) / 1000.0 * self.refit

    def outlooks(self, store: Store, series: list[SeriesInfo], at: float) -> list[tuple[SeriesInfo, Any]]:
        from perf_alerts.analytics.forecast import breach_outlook, forecast_until, outlook_from

        rule = self.rule
        assert rule.op is not None and rule.value is not None
        if self.at is not None and at < self.at - BACKWARD_TOLERANCE:
            self.dirty.update(self.fits)
            self.fits.clear()   # a replay that starts over
        self.at = at
        due, kept = [], []
        for s in series:
            f = self.fits.get(s.id)
            if f is None or at >= f.due or at < f.fit_at or float(f.fc.timestamps[-1]) <= at + 60.0:
                due.append(s)
            else:
                kept.append(s)
        out: list[tuple[SeriesInfo, Any]] = []
        if due:
            blk = store.query([s.id for s in due], at - rule.lookback, at)
            for s in due:
                t, v = blk.of(s.id)
                prev = self.fits.pop(s.id, None)
                self.dirty.add(s.id)
                fc = forecast_until(t, v, at + rule.horizon) if t.size >= 10 else None
                o = breach_outlook(t, v, at, rule.horizon, rule.value, rule.op, rule.min_probability, fc=fc)
                if fc is not None and o is not None:
                    nxt = at + self.refit if prev is not None else at + self._phase(s.id) + 1.0
                    self.fits[s.id] = _Fit(fc, at, nxt, o.last_timestamp, o.last_value, o.points)
                out.append((s, o))
        if kept:
            since = min(self.fits[s.id].t_last for s in kept)
            blk = store.query([s.id for s in kept], since, at)
            for s in kept:
                f = self.fits[s.id]
                t, v = blk.of(s.id)
                new = t > f.t_last
                if new.any():
                    f.t_last, f.last = float(t[new][-1]), float(v[new][-1])
                    f.points += int(new.sum())
                out.append((s, outlook_from(_extended(f.fc, at + rule.horizon), f.t_last, f.last, f.points, at,
                                            rule.horizon, rule.value, rule.op, rule.min_probability)))
        order = {s.id: i for i, s in enumerate(series)}
        out.sort(key=lambda p: order[p[0].id])
        return out


def _extended(fc: Forecast, until: float) -> Forecast:
    """`fc` reaching `until`: a fit made up to one refit interval ago ends that much before the
    horizon's end; its last step (mean and interval half-widths) is continued in a straight line."""
    ts = fc.timestamps
    if ts.size < 2 or ts[-1] >= until:
        return fc
    k = np.arange(1, int(np.ceil((until - ts[-1]) / fc.step)) + 1, dtype=float)
    mean = fc.mean[-1] + k * (fc.mean[-1] - fc.mean[-2])
    up = (fc.upper[-1] - fc.mean[-1]) + k * max(0.0, (fc.upper[-1] - fc.mean[-1]) - (fc.upper[-2] - fc.mean[-2]))
    lo = (fc.mean[-1] - fc.lower[-1]) + k * max(0.0, (fc.mean[-1] - fc.lower[-1]) - (fc.mean[-2] - fc.lower[-2]))
    cat = np.concatenate
    return Forecast(cat((ts, ts[-1] + k * fc.step)), cat((fc.mean, mean)), cat((fc.lower, mean - lo)),
                    cat((fc.upper, mean + up)), fc.level, fc.step, fc.method, fc.season_period, fc.last_timestamp,
                    fc.last_value, fc.last_observed, fc.params)


def forecast_history_for(rule: Rule, cache: dict[str, Any]) -> ForecastHistory:
    key = state_key(rule, "lookback", "horizon")
    h = cache.get(rule.name)
    if not isinstance(h, ForecastHistory) or h.key != key:
        h = cache[rule.name] = ForecastHistory(rule)
    return h


def forecast_outlooks(cache: dict[str, Any], store: Store, rule: Rule, series: list[SeriesInfo], at: float,
                      keep: bool) -> list[tuple[SeriesInfo, Any]]:
    """Each series' breach outlook at `at` from the rule's kept fits (`keep`: kept in the store too)."""
    h = forecast_history_for(rule, cache)
    if keep:
        h.load(store)
    out = h.outlooks(store, series, at)
    if keep:
        h.save(store)
    else:
        h.dirty.clear()
    return out


# --------------------------------------------------------------------------- trend rules (change_pct)

class TrendHistory:
    """The kept sums of a `trend` rule that measures `change_pct` (the mean of the last `lookback`
    against the mean of the one before): per series the sum and count of each window, updated
    each cycle from three thin slices (the new samples, the ones crossing from the current into
    the previous window, the ones leaving the previous window) instead of rereading both windows.
    The value equals `analytics.trend.trend(...).change_pct` (to float rounding); the full trend
    (Theil–Sen slope, Mann–Kendall) is computed for the series whose rule holds, for the detail."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.key = state_key(rule, "lookback", "trend_measure")
        self.sids = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros((4, 0))       # current sum, current count, previous sum, previous count
        self.at: float | None = None
        self.loaded = False

    @staticmethod
    def supports(rule: Rule) -> bool:
        return rule.trend_measure == "change_pct"

    def load(self, store: Store) -> None:
        if self.loaded:
            return
        self.loaded = True
        row = store.rule_state_load(self.rule.name, self.key).get(WHOLE)
        if row is None:
            return
        try:
            a = decode_arrays(row[1])
            sids, sums, at = a["sids"].astype(np.int64), a["sums"].astype(float), float(a["at"][0])
        except (ValueError, KeyError, OSError):
            return
        if sums.shape == (4, sids.size):
            self.sids, self.sums, self.at = sids, sums, at

    def save(self, store: Store) -> None:
        store.rule_state_save(self.rule.name, self.key, [(WHOLE, self.at or 0.0, encode_arrays(
            {"sids": self.sids, "sums": self.sums, "at": np.array([self.at or 0.0])}))], fresh=True)

    def _add(self, store: Store, ids: np.ndarray, lo: float, hi: float, rows: tuple[tuple[int, float], ...]) -> None:
        """Add the samples of `ids` in (lo, hi] to the sums: (row, sign) for each."""
        if hi <= lo or ids.size == 0:
            return
        blk = store.query(ids.tolist(), lo, hi)
        ok = np.isfinite(blk.value)
        col = np.searchsorted(self.sids, blk.series_id[ok])
        v = blk.value[ok]
        n = self.sids.size
        s, c = np.bincount(col, weights=v, minlength=n), np.bincount(col, minlength=n).astype(float)
        for row, sign in rows:
            self.sums[row] += sign * (s if row % 2 == 0 else c)

    def advance(self, store: Store, series: list[SeriesInfo], at: float) -> None:
        lb = self.rule.lookback
        ids = np.unique(np.fromiter((s.id for s in series), dtype=np.int64, count=len(series)))
        if self.at is None or at < self.at or at - self.at >= lb:
            self.sids, self.sums, self.at = np.zeros(0, dtype=np.int64), np.zeros((4, 0)), None
        new = np.setdiff1d(ids, self.sids, assume_unique=True)
        if new.size:
            sids = np.concatenate([self.sids, new])
            order = np.argsort(sids, kind="stable")
            self.sids = sids[order]
            self.sums = np.concatenate([self.sums, np.zeros((4, new.size))], axis=1)[:, order]
        old = np.setdiff1d(ids, new, assume_unique=True)
        if self.at is not None and old.size:
            prev = self.at
            self._add(store, old, prev, at, ((0, 1.0), (1, 1.0)))                               # new samples
            self._add(store, old, prev - lb, at - lb, ((0, -1.0), (1, -1.0), (2, 1.0), (3, 1.0)))  # current → previous
            self._add(store, old, prev - 2 * lb, at - 2 * lb, ((2, -1.0), (3, -1.0)))          # leave the previous
        if new.size:  # first seen (or a fresh state): both windows read once
            self._add(store, new, at - lb, at, ((0, 1.0), (1, 1.0)))
            self._add(store, new, at - 2 * lb, at - lb, ((2, 1.0), (3, 1.0)))
        self.at = at

    def results(self, store: Store, series: list[SeriesInfo], at: float, better: str,
                holding: Any) -> list[SeriesResult]:
        from perf_alerts.analytics.trend import MIN_PREVIOUS_SAMPLES, trend

        rule = self.rule
        assert rule.op is not None and rule.value is not None
        col = np.searchsorted(self.sids, [s.id for s in series])
        cs, cn, ps, pn = (self.sums[r, col] for r in range(4))
        cn, pn = np.rint(cn), np.rint(pn)
        out: list[SeriesResult] = []
        full: list[int] = []
        for i, s in enumerate(series):
            if cn[i] <= 0:
                continue
            cur_mean = cs[i] / cn[i]
            prev_mean = ps[i] / pn[i] if pn[i] > 0 else None
            if prev_mean is None or prev_mean == 0 or pn[i] < MIN_PREVIOUS_SAMPLES or cn[i] < MIN_PREVIOUS_SAMPLES:
                continue
            value = float((cur_mean - prev_mean) / abs(prev_mean) * 100.0)
            active = bool(_OPS_CMP[rule.op](value, rule.value))
            hold = bool(holding(rule, value))
            detail = {"trend": {"n": int(cn[i]), "change_pct": round(value, 4), "current_mean": round(cur_mean, 4),
                                "previous_mean": round(prev_mean, 4)}}
            if active or hold:
                full.append(len(out))
            out.append(SeriesResult(s.labels, value, active, hold, detail))
        if full:  # the whole trend (slope, significance, verdict) for the series whose rule holds
            by_labels = {id(s.labels): s.id for s in series}
            sids = [by_labels[id(out[k].labels)] for k in full]
            blk = store.query(sids, at - 2 * rule.lookback, at)
            for k, sid in zip(full, sids):
                t, v = blk.of(sid)
                cur = t > at - rule.lookback
                out[k].detail = {"trend": trend(t[cur], v[cur], better=better, confidence=rule.confidence,
                                                previous=v[~cur]).to_dict()}
        return out


_OPS_CMP = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
            "==": np.equal, "!=": np.not_equal}


def trend_results(cache: dict[str, Any], store: Store, rule: Rule, series: list[SeriesInfo], at: float, keep: bool,
                  better: str, holding: Any) -> list[SeriesResult]:
    """A `change_pct` trend rule's results at `at` from its kept window sums."""
    key = state_key(rule, "lookback", "trend_measure")
    h = cache.get(rule.name)
    if not isinstance(h, TrendHistory) or h.key != key:
        h = cache[rule.name] = TrendHistory(rule)
    if keep:
        h.load(store)
    h.advance(store, series, at)
    if keep:
        h.save(store)
    return h.results(store, series, at, better, holding)
