"""Backtest: replay stored history through the rules with a scratch alert state.

Nothing is written to the live alert table: this is an alert-noise preview of what the
rules would have raised, per rule, before a rule is deployed.

The replay runs every rule at every step through the same `Evaluator.evaluate` and
`apply_results` as a live cycle (one implementation of what a rule means). What a replay knows
that a live cycle does not — every step's time in advance, and a store that does not change
under it — serves four shortcuts, each below the rules' semantics:

* the store's samples are read once into memory (`_ReplayStore`, up to PRELOAD_MAX samples):
  the many small reads of each step (history rules' new points, windows' edges) cost no query;
* an SLO's windowed sums (`rules.sloburn.SLOBurnState.advance`, the part that reads the store)
  come from one read of the replayed range and running sums (`_ReplayBurnState`), computed for
  a chunk of steps at a time so memory does not grow with the number of steps; the burn rates,
  which windows are judged, the results' order and details are `SLOBurnState.results`;
* an anomaly rule's new points are scored many steps ahead in one pass of its streaming
  detector (`_ReplayAnomalyHistory`);
* a window's samples are kept from one step to the next and moved forward by reading only the
  new ones (`Evaluator(replay=True)`): an SLO alert that fires reads its whole compliance window
  (28 days) every step, which dominated a replay of a store where an SLO burns.

tests/test_backtest_speed.py checks that the replay gives the same transitions as the
step-by-step path (`fast=False`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np

from perf_alerts.alerts.state import Transition, apply_results
from perf_alerts.analytics.slo import load_events
from perf_alerts.config import Config, Rule
from perf_alerts.model import Alert, AlertState
from perf_alerts.rules.evaluate import Evaluator, SeriesIndex
from perf_alerts.rules.history import REBUILD_SERIES, AnomalyHistory, ScoredPoint
from perf_alerts.rules.sloburn import SLOBurnState
from perf_alerts.store import SampleBlock, Store
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.analytics.slo import QueryFn
    from perf_alerts.config import SLO
    from perf_alerts.store import SeriesInfo

__all__ = ["MAX_STEPS", "BacktestReport", "BacktestRow", "backtest"]

MAX_STEPS = 20_000
#: the replay's SLO sums are computed for this many steps at a time (at most; fewer with many groups)
SUM_CHUNK = 256
#: an anomaly rule's replay scores the points of this many steps ahead at a time
SCORE_AHEAD = 256
#: a replay reads the whole store into memory once when it holds at most this many samples
#: (about 50 bytes each); a larger store is read step by step
PRELOAD_MAX = 2_000_000


@dataclass(frozen=True)
class BacktestRow:
    """What one rule would have raised over the replayed range."""

    rule: str
    type: str
    severity: str
    alerts: int              # firing transitions
    alerts_per_day: float
    distinct_series: int     # alerts (fingerprints) that fired at least once
    firing_time: str         # summed over its alerts, e.g. "1h4m"
    error: str | None        # the rule failed (then it was not replayed further)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "type": self.type, "severity": self.severity, "alerts": self.alerts,
                "alerts_per_day": self.alerts_per_day, "distinct_series": self.distinct_series,
                "firing_time": self.firing_time, "error": self.error}


@dataclass(frozen=True)
class BacktestReport:
    """A replay's outcome: one row per alerting rule, or `error` (nothing was replayed)."""

    rows: tuple[BacktestRow, ...] = ()
    start: str | None = None   # the replayed range, ISO
    end: str | None = None
    step: str = ""
    evaluations: int = 0
    total_alerts: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`backtest --json`): an error report has only `error` and empty `rules`."""
        if self.error is not None:
            return {"error": self.error, "rules": []}
        return {"start": self.start, "end": self.end, "step": self.step, "evaluations": self.evaluations,
                "total_alerts": self.total_alerts, "rules": [r.to_dict() for r in self.rows]}


@dataclass(frozen=True)
class _Grid:
    """The replay's evaluation times: start + i·step, i < n (computed exactly as the loop does)."""

    start: float
    step: float
    n: int

    def index(self, at: float) -> int | None:
        i = int(round((at - self.start) / self.step))
        return i if 0 <= i < self.n and self.start + i * self.step == at else None

    def times(self, i: int, j: int) -> np.ndarray:
        return self.start + np.arange(i, j, dtype=np.float64) * self.step


class _ReplayStore:
    """The store for a replay, its samples read once: `query` and `last_timestamps` answer from
    memory what the store answers (the same rows and weights, as `store.query` returns them);
    everything else is the store's. A replay's store does not change under it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        span = store.time_range()
        ids = sorted(s.id for s in store.list_series())
        assert span is not None
        self._blk = store.query(ids, span[0] - 1.0, span[1])
        ids_u, starts = np.unique(self._blk.series_id, return_index=True)
        bounds = np.append(starts, len(self._blk)).tolist()
        # per series: its first row and its times (a view)
        self._of = {int(sid): (bounds[k], self._blk.ts[bounds[k]:bounds[k + 1]]) for k, sid in enumerate(ids_u.tolist())}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def query(self, series_ids: Any, start: float, end: float) -> SampleBlock:
        parts = []
        for sid in sorted(set(int(i) for i in series_ids)):
            got = self._of.get(sid)
            if got is not None:
                a, ts = got
                i, j = ts.searchsorted(start, side="right"), ts.searchsorted(end, side="right")
                if j > i:
                    parts.append(slice(a + int(i), a + int(j)))
        if not parts:
            return SampleBlock(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0))
        # rows copied (an index array, not a view): a caller may not change the replay's samples
        blk = self._blk.slice(np.concatenate([np.arange(p.start, p.stop) for p in parts]))
        if blk.n is not None and not bool((blk.n != 1).any()):
            return SampleBlock(blk.series_id, blk.ts, blk.value)   # raw rows only: read without weights
        return blk

    def last_timestamps(self, series_ids: Any, before: float) -> dict[int, float]:
        out: dict[int, float] = {}
        for sid in sorted(set(int(i) for i in series_ids)):
            got = self._of.get(sid)
            if got is not None:
                j = int(got[1].searchsorted(before, side="right"))
                if j > 0:
                    out[sid] = float(got[1][j - 1])
        return out


class _ReplayBurnState(SLOBurnState):
    """An SLO's kept state for a replay: `advance` answers each span's per-group sums over
    (at - span, at] from one read of the replayed range (plus the longest window before it) and
    per-group running sums, instead of sealing buckets step by step. The first call goes through
    `SLOBurnState.advance`, which numbers the groups as a live cycle does; `results` is untouched.

    Event counts are exact (integers); sums of values (a budget SLO's spend) can differ from the
    step path's bucket sums by the rounding of a different summation order (relative ~1e-15 of the
    range's total), as the step path's own differ from a read of the whole window."""

    def __init__(self, slo: SLO, grid: _Grid) -> None:
        super().__init__(slo)
        self.grid = grid
        self._groups_t: list[np.ndarray] | None = None   # per group: its events' times, sorted
        self._groups_c: list[np.ndarray] = []             # per group: (4, n + 1) running sums from 0
        self._c_lo = self._c_hi = 0                       # steps whose sums are in _chunk
        self._chunk: dict[float, np.ndarray] = {}         # span → (4, steps, groups)

    def _load(self, store: Store, query: QueryFn | None) -> None:
        role: list[np.ndarray] = []
        lo = self.grid.start - self.longest
        hi = self.grid.start + (self.grid.n - 1) * self.grid.step
        ev = load_events(store, self.slo, lo, hi, query, parts=self.parts, key_index=self.key_index, role=role)
        self._pad()
        vals = np.vstack([ev.bad, ev.tot, np.ones(ev.t.size), role[0].astype(float)])
        order = np.lexsort((ev.t, ev.g))
        g, t, vals = ev.g[order], ev.t[order], vals[:, order]
        bounds = np.searchsorted(g, np.arange(self._groups() + 1))
        self._groups_t, self._groups_c = [], []
        for k in range(self._groups()):
            a, b = int(bounds[k]), int(bounds[k + 1])
            self._groups_t.append(t[a:b])
            self._groups_c.append(np.concatenate([np.zeros((4, 1)), np.cumsum(vals[:, a:b], axis=1)], axis=1))

    def _compute(self, i: int) -> None:
        G = self._groups()
        assert self._groups_t is not None
        per_step = 4 * G * len(self.spans)
        j = min(self.grid.n, i + max(1, min(SUM_CHUNK, (1 << 20) // max(per_step, 1))))
        ats = self.grid.times(i, j)
        chunk: dict[float, np.ndarray] = {}
        hi_of = [np.searchsorted(t, ats, side="right") for t in self._groups_t]
        for span in self.spans:
            out = np.zeros((4, j - i, G))
            a = ats - span
            for k, (t, c) in enumerate(zip(self._groups_t, self._groups_c)):
                lo = np.searchsorted(t, a, side="right")
                out[:, :, k] = c[:, hi_of[k]] - c[:, lo]
            chunk[span] = out
        self._c_lo, self._c_hi, self._chunk = i, j, chunk

    def advance(self, store: Store, at: float, cycle: Any = None, query: QueryFn | None = None,
                series_epoch: Any = None) -> dict[float, np.ndarray]:
        if self._cycle is not None and self._cycle == (cycle, at) and cycle is not None:
            return self._sums
        i = self.grid.index(at)
        if i is None or self._groups_t is None or series_epoch is None or series_epoch is not self._epoch:
            sums = super().advance(store, at, cycle, query, series_epoch)
            if i is not None and series_epoch is not None:
                self._load(store, query)
            else:
                self._groups_t = None
            return sums
        if not self._c_lo <= i < self._c_hi:
            self._compute(i)
        r = i - self._c_lo
        sums = {span: arr[:, r, :] for span, arr in self._chunk.items()}
        self._cycle, self._sums = (cycle, at), sums
        return sums


class _ReplayAnomalyHistory(AnomalyHistory):
    """An anomaly rule's kept state for a replay: the new points of `SCORE_AHEAD` steps are scored
    in one pass of the streaming detector (`AnomalyHistory._score`, the same code a live cycle
    runs, with the same points in the same order: a stream's scores do not depend on how its points
    are batched), instead of one or two points per step. Each step then reports the highest score
    in its window among the points up to its time (`_peaks`), and the detector's point count as it
    was at that time. Off the replay's grid (or going back) it is a plain `AnomalyHistory`."""

    def __init__(self, rule: Rule, grid: _Grid) -> None:
        super().__init__(rule)
        self.grid = grid
        self.ahead = -np.inf   # every point of the series up to this time is scored

    def reset(self) -> None:
        super().reset()
        self.ahead = -np.inf

    def advance(self, store: Store, series: list[SeriesInfo], at: float) -> list[ScoredPoint]:
        i = self.grid.index(at)
        if i is None or (self.at is not None and at < self.at):
            self.ahead = -np.inf
            return super().advance(store, series, at)
        ids = np.unique(np.fromiter((s.id for s in series), dtype=np.int64, count=len(series)))
        cols = self._columns(ids, at)
        fresh = self.last_t[cols] > self.ahead   # not scored ahead yet (never happens in one replay)
        if at > self.ahead or fresh.any():
            ahead = float(self.grid.times(min(i + SCORE_AHEAD, self.grid.n) - 1, min(i + SCORE_AHEAD, self.grid.n))[0])
            last = self.last_t[cols]
            for k in range(0, ids.size, REBUILD_SERIES):   # memory bounded as a rebuild's
                g = np.arange(k, min(k + REBUILD_SERIES, ids.size))
                blk = store.query(ids[g].tolist(), float(last[g].min()), ahead)
                b_sid, b_t, b_x = blk.series_id, blk.ts, blk.value
                col_of = np.searchsorted(self.sids, b_sid)
                keep = (b_t > self.last_t[col_of]) & np.isfinite(b_x) & np.isfinite(b_t)
                if keep.any():
                    # `at`: the points kept for the windows are those after at - window (later steps' too)
                    self._score(store, b_sid[keep], b_t[keep], b_x[keep], col_of[keep], at)
            self.ahead = ahead
        if self.at is None or at > self.at:
            self.at = at
            win = self.r_t > at - self.rule.window
            self.r_sid, self.r_t, self.r_s, self.r_x = self.r_sid[win], self.r_t[win], self.r_s[win], self.r_x[win]
        peaks = self._peaks(ids, at)
        if not peaks:
            return peaks
        # the detector's count at `at`: less the points scored ahead of it (all still kept: after `at`)
        later = self.r_sid[self.r_t > at]
        if later.size == 0:
            return peaks
        u, c = np.unique(later, return_counts=True)
        ahead_of = dict(zip(u.tolist(), c.tolist()))
        return [replace(p, points=p.points - ahead_of.get(p.sid, 0)) for p in peaks]


def backtest(store: Store, config: Config, start: float | None = None, end: float | None = None,
             step: float | None = None, progress: Callable[[int, int], None] | None = None, *,
             fast: bool = True,
             on_transitions: Callable[[Rule, list[Transition]], None] | None = None) -> BacktestReport:
    """Replay the range (default: the stored samples') every `step` (default: the evaluation
    interval; at most MAX_STEPS steps). `fast=False` runs the plain step-by-step path (the
    reference the tests and `bench/backtest.py` compare against); `on_transitions` sees every
    rule's transitions at every step."""
    span = store.time_range()
    if span is None and (start is None or end is None):
        # (rules on a Prometheus source replay from the server: they need only the time range)
        return BacktestReport(error="the store holds no samples to replay (give --start and --end to replay rules "
                                    "on a Prometheus source)")
    start = span[0] if start is None and span is not None else start
    end = span[1] if end is None and span is not None else end
    assert start is not None and end is not None
    if end <= start:
        return BacktestReport(error=f"nothing to replay: the range {iso(start)} .. {iso(end)} is empty")
    step = step or config.global_.evaluation_interval
    n_steps = int((end - start) // step) + 1
    if n_steps > MAX_STEPS:
        step = (end - start) / (MAX_STEPS - 1)
        n_steps = MAX_STEPS
    if fast and span is not None and store.sample_count() <= PRELOAD_MAX:
        store = cast(Store, _ReplayStore(store))
    evaluator = Evaluator(store, config, SeriesIndex(store), replay=fast)
    if fast:
        grid = _Grid(start, step, n_steps)
        for slo in config.slos:
            evaluator.seed_state(f"slo:{slo.name}", _ReplayBurnState(slo, grid))
        for rule in config.alerting_rules():
            if rule.type == "anomaly" and rule.source != "prometheus" and AnomalyHistory.supports(rule):
                evaluator.seed_state(rule.name, _ReplayAnomalyHistory(rule, grid))
    rules_all = config.alerting_rules()  # the SLOs' burn-rate alerts too: what an evaluation runs
    state: dict[str, dict[str, Alert]] = {r.name: {} for r in rules_all}
    fired: dict[str, int] = defaultdict(int)
    firing_seconds: dict[str, float] = defaultdict(float)
    series_hit: dict[str, set[str]] = defaultdict(set)
    errors: dict[str, str] = {}
    for i in range(n_steps):
        at = start + i * step
        evaluator.new_step()  # memory stays flat in the number of steps
        for rule in rules_all:
            if rule.name in errors:
                continue
            try:
                results = evaluator.evaluate(rule, at)
            except Exception as e:  # report the broken rule, keep replaying the others
                errors[rule.name] = f"{type(e).__name__}: {e}"
                continue
            cur = state[rule.name]
            if not results and not cur:
                continue   # nothing to advance (apply_results would return nothing)
            save, delete, trs = apply_results(rule, results, cur, at)
            for fp in delete:
                cur.pop(fp, None)
            for a in save:
                cur[a.fingerprint] = a
            for t in trs:
                if t.event == "firing":
                    fired[rule.name] += 1
                    series_hit[rule.name].add(t.alert.fingerprint)
            if on_transitions is not None and trs:
                on_transitions(rule, trs)
            firing_seconds[rule.name] += step * sum(1 for a in cur.values() if a.state == AlertState.FIRING)
        if progress is not None:
            progress(i + 1, n_steps)
    days = max((end - start) / 86400.0, 1e-9)
    rows = tuple(
        BacktestRow(rule=r.name, type=r.type, severity=r.severity.value, alerts=fired[r.name],
                    alerts_per_day=round(fired[r.name] / days, 2), distinct_series=len(series_hit[r.name]),
                    firing_time=format_duration(firing_seconds[r.name]), error=errors.get(r.name))
        for r in rules_all
    )
    return BacktestReport(rows=rows, start=iso(start), end=iso(end), step=format_duration(step),
                          evaluations=n_steps, total_alerts=sum(fired.values()))
