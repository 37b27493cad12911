"""SLO burn-rate rules from kept buckets: a cycle reads the new samples and the windows' edges,
not the windows.

Per SLO, `SLOBurnState` keeps per split group the sums of its events (bad amount, total amount,
event count, and the count of events of the SLO's own metric) in aligned buckets of `BUCKET`
seconds, (k·B, (k+1)·B], covering the SLO's longest burn window. Buckets up to `GRACE` before
the evaluation are sealed (a sample arriving up to `GRACE` after its timestamp is still
counted); a bucket is dropped once it left the longest window. A window (at - W, at] is then
the sealed buckets entirely inside it plus raw events: those of its left edge (a, ⌈a/B⌉·B],
from the sealed bucket it lies in (read once while an edge lies in it), and those of the
unsealed recent part, read each cycle once for every window. Every sum is
over the same events as `analytics.slo.burn_alert_results` reads from the store, so the
results are the same: exactly for event counts, and for the sums of values (a budget SLO's
spend, failure counts) to the rounding of a different summation order (relative 1e-12). A
sample written more than `GRACE` after its timestamp into a sealed bucket is not counted in
that bucket (it is when it lies on an edge); the state rebuilt (a restart after a config
change, a replay) counts it.

The state of each SLO is kept in the store (`store.rulestate`) under `slo:<name>` (the three
burn rules of an SLO share it): one row of metadata and one row per sealed bucket, written
when a bucket is sealed or dropped; after a restart the state continues, after a change of the
SLO's definition it is rebuilt from history (one read of the longest window).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from perf_alerts.analytics.slo import (
    BurnResult, burn_from_sums, group_key, load_events, slo_series, window_results,
)
from perf_alerts.rules.history import BACKWARD_TOLERANCE, WHOLE, decode_arrays, encode_arrays

if TYPE_CHECKING:
    from perf_alerts.analytics.slo import QueryFn
    from perf_alerts.config import SLO, Config
    from perf_alerts.store import SeriesInfo, Store

__all__ = ["BUCKET", "GRACE", "SLOBurnState", "burn_results"]

STATE_VERSION = 1
BUCKET = 300.0   # seconds per kept bucket
GRACE = 600.0    # buckets that ended at least this long before the evaluation are sealed
_BAD, _TOT, _N, _NM = range(4)   # the sums kept per bucket and group


def _ceil_k(x: float) -> int:
    """The smallest k with k·B >= x (exact at the boundaries, whatever the division rounds to)."""
    k = math.ceil(x / BUCKET)
    while (k - 1) * BUCKET >= x:
        k -= 1
    while k * BUCKET < x:
        k += 1
    return int(k)


def _floor_k(x: float) -> int:
    """The largest k with k·B <= x."""
    k = math.floor(x / BUCKET)
    while k * BUCKET > x:
        k -= 1
    while (k + 1) * BUCKET <= x:
        k += 1
    return int(k)


class _Raw:
    """Events read raw in one cycle, with group indices of the state's numbering."""

    def __init__(self) -> None:
        self.t: list[np.ndarray] = []
        self.g: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []   # (4, n): bad, total, 1, main

    def add(self, t: np.ndarray, g: np.ndarray, bad: np.ndarray, tot: np.ndarray, main: np.ndarray) -> None:
        self.t.append(t)
        self.g.append(g)
        self.vals.append(np.vstack([bad, tot, np.ones(t.size), main.astype(float)]))

    def sums(self, lo: float, hi: float, groups: int) -> np.ndarray:
        """(4, groups): the sums of the events in (lo, hi]."""
        out = np.zeros((4, groups))
        for t, g, v in zip(self.t, self.g, self.vals):
            m = (t > lo) & (t <= hi)
            if m.any():
                gm = g[m]
                for r in range(4):
                    out[r] += np.bincount(gm, weights=v[r][m], minlength=groups)
        return out


class SLOBurnState:
    """One SLO's kept buckets (see the module's docstring)."""

    def __init__(self, slo: SLO) -> None:
        self.slo = slo
        self.name = f"slo:{slo.name}"
        doc = {"slo": slo.model_dump(mode="json", exclude={"labels", "description", "objective", "limit", "period",
                                                            "window"}),
               "bucket": BUCKET, "grace": GRACE, "v": STATE_VERSION}
        self.key = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]
        self.longest = max(w.long for w in slo.windows)
        self.spans = sorted({self.longest, *(w.long for w in slo.windows), *(w.short for w in slo.windows),
                             *(w.long / 2 for w in slo.windows)})
        self.key_index: dict[tuple[str, ...], int] = {}
        self.k0 = self.k_end = 0            # sealed buckets k0 .. k_end-1
        self.buckets = np.zeros((4, 0, 0))  # (sum, bucket, group)
        self.at: float | None = None
        self.fresh = True                   # no bucket kept yet (the range starts where the first cycle needs it)
        self.loaded = False
        self.saved: set[int] = set()        # the bucket rows in the store
        self.changed = False
        self._cycle: tuple[Any, float] | None = None
        self._sums: dict[float, np.ndarray] = {}
        self.parts: list[tuple[list[SeriesInfo], str]] = []
        self._groups_of: list[list[int]] = []   # per part: its series' groups, by series id, each once
        self._epoch: Any = None
        self._edges: dict[int, _Raw] = {}   # raw events of the sealed buckets the windows' left edges lie in
        self.thinned: float | None = None   # the store's downsampled_until when the buckets were counted

    # -- persistence ---------------------------------------------------------------
    def load(self, store: Store) -> None:
        if self.loaded:
            return
        self.loaded = True
        rows = store.rule_state_load(self.name, self.key)
        meta = rows.get(WHOLE)
        if meta is None:
            return
        try:
            m = json.loads(meta[1])
            keys = [tuple(str(x) for x in k) for k in m["keys"]]
            k0, k_end, at, thinned = int(m["k0"]), int(m["k_end"]), m["at"], m["thinned"]
            G = len(keys)
            buckets = np.zeros((4, k_end - k0, G))
            for k in range(k0, k_end):
                a = decode_arrays(rows[k][1])["sums"]
                if a.shape[0] != 4 or a.shape[1] > G:
                    return
                buckets[:, k - k0, :a.shape[1]] = a
        except (ValueError, KeyError, TypeError, OSError):
            return
        self.key_index = {k: i for i, k in enumerate(keys)}
        self.k0, self.k_end, self.buckets = k0, k_end, buckets
        self.at = None if at is None else float(at)
        self.thinned = None if thinned is None else float(thinned)
        self.fresh = False
        self.saved = set(rows) - {WHOLE}

    def save(self, store: Store) -> None:
        if not self.changed:
            return
        keys = [list(k) for k, _ in sorted(self.key_index.items(), key=lambda kv: kv[1])]
        meta = json.dumps({"keys": keys, "k0": self.k0, "k_end": self.k_end, "at": self.at, "thinned": self.thinned})
        rows: list[tuple[int, float, str]] = [(WHOLE, self.at or 0.0, meta)]
        for k in range(self.k0, self.k_end):
            if k not in self.saved:
                rows.append((k, k * BUCKET, encode_arrays({"sums": self.buckets[:, k - self.k0, :]})))
        drop = [k for k in self.saved if not self.k0 <= k < self.k_end]
        store.rule_state_save(self.name, self.key, rows, drop=drop, fresh=True)
        self.saved = set(range(self.k0, self.k_end))
        self.changed = False

    def reset(self) -> None:
        self.key_index = {}
        self.k0 = self.k_end = 0
        self.buckets = np.zeros((4, 0, 0))
        self.at = None
        self.fresh = True
        self.changed = True
        self._edges.clear()
        self._epoch = None

    # -- a cycle -----------------------------------------------------------------------
    def _groups(self) -> int:
        return len(self.key_index)

    def _pad(self) -> None:
        G = self._groups()
        if self.buckets.shape[2] < G:
            self.buckets = np.concatenate(
                [self.buckets, np.zeros((4, self.buckets.shape[1], G - self.buckets.shape[2]))], axis=2)

    def _read(self, store: Store, parts: list[tuple[list[SeriesInfo], str]], lo: float, hi: float,
              raw: _Raw, query: QueryFn | None = None) -> None:
        role: list[np.ndarray] = []
        ev = load_events(store, self.slo, lo, hi, query, parts=parts, key_index=self.key_index, role=role)
        if ev.t.size:
            raw.add(ev.t, ev.g, ev.bad, ev.tot, role[0])

    def _seal(self, store: Store, parts: list[tuple[list[SeriesInfo], str]], at: float) -> None:
        """Drop the buckets that left the longest window; seal the ones that ended GRACE before `at`."""
        k_need = _ceil_k(at - self.longest)
        if self.fresh or k_need > self.k_end:
            self.k0 = self.k_end = k_need
            self.buckets = np.zeros((4, 0, self._groups()))
            self.fresh = False
            self.changed = True
        elif k_need > self.k0:
            self.buckets = self.buckets[:, k_need - self.k0:, :]
            self.k0 = k_need
            self.changed = True
        k_seal = _floor_k(at - GRACE)
        if k_seal <= self.k_end:
            return
        raw = _Raw()
        self._read(store, parts, self.k_end * BUCKET, k_seal * BUCKET, raw)
        nb, G = k_seal - self.k_end, self._groups()
        self._pad()
        new = np.zeros((4, nb, G))
        for t, g, v in zip(raw.t, raw.g, raw.vals):
            k = np.ceil(t / BUCKET).astype(np.int64) - 1
            k = np.where(k * BUCKET >= t, k - 1, k)
            k = np.where((k + 1) * BUCKET < t, k + 1, k)
            flat = (k - self.k_end) * G + g
            for r in range(4):
                new[r] += np.bincount(flat, weights=v[r], minlength=nb * G).reshape(nb, G)
        self.buckets = np.concatenate([self.buckets, new], axis=1)
        self.k_end = k_seal
        self.changed = True

    def advance(self, store: Store, at: float, cycle: Any = None, query: QueryFn | None = None,
                series_epoch: Any = None) -> dict[float, np.ndarray]:
        """Every span's per-group sums over (at - span, at]: {span: (4, groups)}."""
        if self._cycle is not None and self._cycle == (cycle, at) and cycle is not None:
            return self._sums
        if self.at is not None and at < self.at - BACKWARD_TOLERANCE:
            self.reset()   # a replay that starts over
        thinned = store.downsampled_until()
        if thinned != self.thinned:
            # retention thinned samples: where that reached into the kept buckets, they are read again
            if not self.fresh and thinned is not None and thinned > self.k0 * BUCKET:
                self.reset()
            self.thinned = thinned
            self.changed = True
        if series_epoch is None or series_epoch is not self._epoch:
            # the series (kept while the caller's series index is: a backtest's steps share it), each one's
            # group numbered, in the order `burn_alert_results` meets them
            self._epoch = series_epoch
            self.parts = slo_series(store, self.slo)
            self._groups_of = []
            for series, _ in self.parts:
                gis = []
                for s in sorted(series, key=lambda s: s.id):
                    gis.append(self.key_index.setdefault(group_key(self.slo, s), len(self.key_index)))
                self._groups_of.append(list(dict.fromkeys(gis)))
        parts = self.parts
        self._seal(store, parts, at)
        self._pad()
        kh = min(_floor_k(at), self.k_end)
        plan: dict[float, tuple[float, int]] = {}    # span → (a, kl): buckets kl..kh-1, raw (a, kl·B] and (kh·B, at]
        recent_lo = kh * BUCKET
        for span in self.spans:
            a = at - span
            kl = max(_ceil_k(a), self.k0)
            if kl < kh:
                plan[span] = (a, kl)
            else:
                plan[span] = (a, -1)
                recent_lo = min(recent_lo, a)
        recent = _Raw()
        if at > recent_lo:
            self._read(store, parts, recent_lo, at, recent, query)
        # each left edge lies in a sealed bucket: its raw events are read once and kept while an edge is in it
        edge_k = sorted({kl - 1 for a, kl in plan.values() if kl >= 0 and (kl - 1) * BUCKET <= a < kl * BUCKET})
        wide = _Raw()   # a left edge before the first kept bucket (an evaluation a little earlier than the last)
        wide_lo = min((a for a, kl in plan.values() if kl >= 0 and a < (kl - 1) * BUCKET), default=None)
        if wide_lo is not None:
            self._read(store, parts, wide_lo, self.k0 * BUCKET, wide, query)
        self._edges = {k: self._edges[k] for k in edge_k if k in self._edges}
        for k in edge_k:
            if k not in self._edges:
                self._edges[k] = raw = _Raw()
                self._read(store, parts, k * BUCKET, (k + 1) * BUCKET, raw, query)
        self._pad()
        G = self._groups()
        sums: dict[float, np.ndarray] = {}
        for span, (a, kl) in plan.items():
            if kl < 0:
                sums[span] = recent.sums(a, at, G)
            else:
                s = self.buckets[:, kl - self.k0:kh - self.k0, :].sum(axis=1)
                s = s + recent.sums(kh * BUCKET, at, G)
                if a < (kl - 1) * BUCKET:
                    s = s + wide.sums(a, kl * BUCKET, G)
                elif a < kl * BUCKET:
                    s = s + self._edges[kl - 1].sums(a, kl * BUCKET, G)
                sums[span] = s
        if self.at is None or at > self.at:
            self.at = at
        self._cycle, self._sums = (cycle, at), sums
        return sums

    def results(self, store: Store, config: Config, alert: str, at: float, cycle: Any,
                query: QueryFn | None, series_epoch: Any = None) -> list[BurnResult]:
        slo = self.slo
        wins = [w for w in slo.windows if w.alert == alert]
        if not wins:
            return []
        sums = self.advance(store, at, cycle, query, series_epoch)
        keys = [k for k, _ in sorted(self.key_index.items(), key=lambda kv: kv[1])]
        span = sums[self.longest]
        # the order `burn_alert_results` gives: groups by first appearance over the metric's series (when
        # the longest window has events of it), then the total metric's
        order: list[int] = []
        for gis, any_events in zip(self._groups_of, (span[_NM].sum() > 0, (span[_N] - span[_NM]).sum() > 0)):
            if any_events:
                order += gis
        order = list(dict.fromkeys(order))
        per_window = []
        for w in wins:
            lo, sh, half = sums[w.long], sums[w.short], sums[w.long / 2]
            bl = burn_from_sums(slo, lo[_BAD], lo[_TOT], lo[_N], w.long)
            bs = burn_from_sums(slo, sh[_BAD], sh[_TOT], sh[_N], w.short)
            judged = (span[_N] - half[_N]) > 0.5   # an event in (at - longest, at - long/2]
            per_window.append((w, bl, bs, judged))
        return window_results(store, config, slo, at, query, keys, order, per_window)


def burn_results(cache: dict[str, Any], store: Store, config: Config, alert: str, at: float, keep: bool,
                 cycle: Any = None, query: QueryFn | None = None, series_epoch: Any = None) -> list[BurnResult]:
    """`analytics.slo.burn_alert_results` from each SLO's kept buckets (`keep`: kept in the store too).
    `series_epoch`: an object that stays the same while the store's series do (the evaluator's
    series index); None reads the series every time."""
    out: list[BurnResult] = []
    for slo in config.slos:
        if not any(w.alert == alert for w in slo.windows):
            continue
        h = cache.get(f"slo:{slo.name}")
        if not isinstance(h, SLOBurnState) or h.slo != slo:
            h = SLOBurnState(slo)
            cache[h.name] = h
        if keep:
            h.load(store)
        out += h.results(store, config, alert, at, cycle, query, series_epoch)
        if keep:
            h.save(store)
    return out
