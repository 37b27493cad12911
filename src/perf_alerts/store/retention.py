"""Retention and downsampling, in short write transactions and in time linear in the new work.

Why this shape: the daemon runs retention every hour beside ingest, evaluation and the
CLI, all of which need SQLite's single write lock. One transaction over the whole table
(the first version) grew quadratically with history and held the lock for minutes, so
every other writer gave up after its busy timeout. Here:

- work goes **series by series**, each statement a seek on the `(series_id, ts)` key,
  never a scan of the table;
- transactions are **time-boxed** (`max_lock_seconds`, 0.1 s by default): the run commits
  and pauses so waiting writers get the lock, then goes on;
- a **watermark** in `kv` (`retention`) remembers up to where samples were thinned, so an
  hourly run only thins the hour that became old since the last run. A run cut short
  (crash, stop) simply redoes its range: thinning is idempotent (a bucket that holds one
  sample is left as it is).

Thinning is by metric kind (`Config.metric_meta(metric).kind`), and keeps what each kind's
aggregates need, exactly:

- **events** (one sample per occurrence: latencies, tokens, cost, errors) and **gauges**
  (a level read now and then: host CPU, memory) become one row per bucket at the bucket's
  start holding the mean, with `n` (how many samples it stands for) and `lo`/`hi` (their min
  and max). So sums (mean × n: the cost of a week), counts (n: its calls), means, minima
  and maxima over a downsampled period are what they were before;
- **counters** (monotonic totals, `*_total`) keep their last value per bucket, plus the
  samples on either side of each reset, so increases and rates over any range are unchanged.

Samples that arrive with timestamps older than the watermark (a late backfill) are not
thinned. `kv['downsampled']` records up to where rows may stand for several samples, so
queries of the recent past (every evaluation) need not read the weights.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from perf_alerts.store.backend import Connection


import numpy as np

from perf_alerts.config import default_metric_meta

WATERMARK_KEY = "retention"
DOWNSAMPLED_KEY = "downsampled"  # rows before this time may stand for several samples (n > 1)


@dataclass
class RetentionReport:
    deleted: int = 0  # samples older than the retention period, dropped
    downsampled: int = 0  # raw samples replaced by bucket averages
    buckets: int = 0  # bucket rows written in their place
    series: int = 0
    transactions: int = 0
    max_lock_seconds: float = 0.0  # the longest this run held the write lock at once
    seconds: float = 0.0
    thinned_from: float | None = None  # the range this run thinned: [from, until)
    thinned_until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RetentionQueries:
    """Mixed into `Store`; uses `self.con`, `self.transaction()`, `self.kv_get`, `self.kv_set`."""

    if TYPE_CHECKING:  # provided by Store
        @property
        def con(self) -> Connection: ...

        def transaction(self) -> AbstractContextManager[Connection]: ...

        def _write(self, exclusive: bool = True) -> AbstractContextManager[Connection]: ...

        dialect: str

        def kv_get(self, key: str) -> Any: ...

        def kv_set(self, key: str, value: Any, con: Connection | None = None) -> None: ...

    def apply_retention(self, now: float, retention: float, downsample_after: float, step: float, *,
                        max_lock_seconds: float = 0.1, pause: float = 0.11,
                        kind_of: Callable[[str], str] | None = None) -> RetentionReport:
        """Drop samples older than `retention`; thin those that became older than
        `downsample_after` since the last run into `step`-second buckets, each metric by its
        kind (`kind_of(metric)`: gauge, event or counter; default: the naming conventions)."""
        kind_of = kind_of or (lambda m: default_metric_meta(m).kind)
        t_start = time.monotonic()
        rep = RetentionReport()
        drop_before = now - retention if retention > 0 else None
        mark = self.kv_get(WATERMARK_KEY) or {}
        lo = hi = None
        if downsample_after > 0 and step > 0:
            hi = now - downsample_after
            hi -= hi % step
            prev = mark.get("thinned_until") if mark.get("step") == step else None
            if prev is None:
                row = self.con.execute("SELECT MIN(ts) FROM samples").fetchone()
                prev = float(row[0]) if row and row[0] is not None else hi
            lo = float(prev) - float(prev) % step
            if drop_before is not None:
                lo = max(lo, drop_before - drop_before % step)
            if lo >= hi:
                lo = hi = None
        rep.thinned_from, rep.thinned_until = lo, hi

        series = [(int(r[0]), str(r[1])) for r in self.con.execute("SELECT id, metric FROM series ORDER BY id")]
        ids = [sid for sid, _ in series]
        kinds: dict[str, str] = {}
        for _, metric in series:
            if metric not in kinds:
                kinds[metric] = kind_of(metric)
        counters = {sid for sid, metric in series if kinds[metric] == "counter"}
        rep.series = len(ids)
        i = 0
        while i < len(ids):
            # not exclusive: it touches samples (row by row on PostgreSQL) and its own watermark, so
            # on PostgreSQL evaluations and deliveries go on beside it (on SQLite every write is)
            with self._write(exclusive=False) as con:
                t0 = time.monotonic()
                if i == 0 and hi is not None:
                    # before any row is thinned: queries reaching before `hi` read the weights
                    mark_ds = self.kv_get(DOWNSAMPLED_KEY)
                    if mark_ds is None or float(mark_ds) < hi:
                        self.kv_set(DOWNSAMPLED_KEY, hi, con)
                while i < len(ids):
                    sid = ids[i]
                    i += 1
                    if drop_before is not None:
                        rep.deleted += con.execute("DELETE FROM samples WHERE series_id = ? AND ts <= ?",
                                                   (sid, drop_before)).rowcount
                    if lo is not None and hi is not None:
                        self._thin_series(con, sid, lo, hi, step, rep, sid in counters, self.dialect == "postgresql")
                    if time.monotonic() - t0 >= max_lock_seconds:
                        break
                if i >= len(ids) and hi is not None:
                    # the watermark moves with the last batch: a run cut short redoes its whole range
                    self.kv_set(WATERMARK_KEY, {"thinned_until": hi, "step": step}, con)
                held = time.monotonic() - t0
            rep.transactions += 1
            rep.max_lock_seconds = max(rep.max_lock_seconds, held)
            if i < len(ids) and pause > 0 and self.dialect != "postgresql":
                # let the writers that queued behind this batch in: SQLite's busy handler sleeps up
                # to 100 ms between tries, so a shorter pause could starve them
                time.sleep(pause)
        if not ids and hi is not None:
            self.kv_set(WATERMARK_KEY, {"thinned_until": hi, "step": step})
        rep.seconds = time.monotonic() - t_start
        return rep

    @staticmethod
    def _insert_pg(con: Connection, sid: int, ts: np.ndarray, val: np.ndarray, n: np.ndarray,
                   lo: np.ndarray, hi: np.ndarray) -> None:
        """Rows of one series in one statement over arrays (PostgreSQL); lo/hi NULL on raw rows."""
        raw = (n == 1).tolist()
        con.execute("INSERT INTO samples (series_id, ts, value, n, lo, hi) SELECT ?::bigint, * FROM unnest("
                    "?::float8[], ?::float8[], ?::bigint[], ?::float8[], ?::float8[]) "
                    "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, n = excluded.n, "
                    "lo = excluded.lo, hi = excluded.hi",
                    (sid, ts.tolist(), val.tolist(), n.astype(np.int64).tolist(),
                     [None if r else x for r, x in zip(raw, lo.tolist())],
                     [None if r else x for r, x in zip(raw, hi.tolist())]))

    @staticmethod
    def _thin_series(con: Connection, sid: int, lo: float, hi: float, step: float,
                     rep: RetentionReport, counter: bool = False, arrays: bool = False) -> None:
        if arrays:
            # PostgreSQL at READ COMMITTED: a sample committed between a SELECT and the range DELETE
            # would be deleted unread; taking the rows with the DELETE itself thins exactly them
            got = con.execute("DELETE FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? "
                              "RETURNING ts, value, n, COALESCE(lo, value), COALESCE(hi, value)",
                              (sid, lo, hi)).fetchall()
            if not got:
                return
            arr = np.asarray(sorted(got), dtype=np.float64)
            ts, vals = arr[:, 0].copy(), arr[:, 1].copy()
            n, vlo, vhi = arr[:, 2].copy(), arr[:, 3].copy(), arr[:, 4].copy()
            rows: list[Any] = list(range(len(got)))
            if len(got) < 2:
                RetentionQueries._insert_pg(con, sid, ts, vals, n, vlo, vhi)
                return
            weighted: list[Any] = []
        else:
            rows = con.execute("SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                               (sid, lo, hi)).fetchall()
            if len(rows) < 2:
                return
            arr = np.asarray(rows, dtype=np.float64)
            ts, vals = arr[:, 0], arr[:, 1]
            n, vlo, vhi = np.ones(len(rows)), vals.copy(), vals.copy()
            # the few rows that already stand for several samples (a late run over a thinned range)
            weighted = con.execute("SELECT ts, n, lo, hi FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? "
                                   "AND n != 1 ORDER BY ts", (sid, lo, hi)).fetchall()
        if weighted:
            w = np.asarray([(t, k, vals[0] if a is None else a, vals[0] if z is None else z)
                            for t, k, a, z in weighted], dtype=np.float64)
            at = np.searchsorted(ts, w[:, 0])
            n[at] = w[:, 1]
            has_lo = np.asarray([a is not None for _, _, a, _ in weighted])
            has_hi = np.asarray([z is not None for _, _, _, z in weighted])
            vlo[at[has_lo]] = w[has_lo, 2]
            vhi[at[has_hi]] = w[has_hi, 3]
        b = np.floor(ts / step) * step
        last_in_bucket = np.r_[b[1:] != b[:-1], True]
        if counter:
            # keep each bucket's last value and the samples on either side of a reset (a drop):
            # the increase between kept samples is then the increase of the raw ones
            before = con.execute("SELECT value FROM samples WHERE series_id = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
                                 (sid, lo)).fetchone()
            prev = np.r_[vals[0] if before is None else float(before[0]), vals[:-1]]
            after_drop = vals < prev
            before_drop = np.r_[vals[1:] < vals[:-1], False]
            ends = np.flatnonzero(last_in_bucket | before_drop | after_drop)
        else:
            ends = np.flatnonzero(last_in_bucket)
        if ends.size == len(rows):  # already thinned: nothing to merge
            if arrays:  # (what the DELETE took goes back as it was)
                RetentionQueries._insert_pg(con, sid, ts, vals, n, vlo, vhi)
            return
        starts = np.r_[0, ends[:-1] + 1]
        counts = ends - starts + 1
        many = counts > 1
        new_n = np.add.reduceat(n, starts)
        new_lo = np.minimum.reduceat(vlo, starts)
        new_hi = np.maximum.reduceat(vhi, starts)
        if counter:
            new_ts, new_val = ts[ends], vals[ends]
        else:
            # a gauge or event bucket of several rows: one row at the bucket's start with their
            # weighted mean; a bucket of one row keeps it as it is
            mean = np.add.reduceat(vals * n, starts) / new_n
            new_ts = np.where(many, b[starts], ts[starts])
            new_val = np.where(many, mean, vals[starts])
        keep_raw = new_n == 1
        lo_col = [None if r else x for r, x in zip(keep_raw.tolist(), new_lo.tolist())]
        hi_col = [None if r else x for r, x in zip(keep_raw.tolist(), new_hi.tolist())]
        if arrays:
            RetentionQueries._insert_pg(con, sid, new_ts, new_val, new_n, new_lo, new_hi)
        else:
            # one range delete, one insert: a seek each
            con.execute("DELETE FROM samples WHERE series_id = ? AND ts >= ? AND ts < ?", (sid, lo, hi))
            con.executemany("INSERT INTO samples (series_id, ts, value, n, lo, hi) VALUES (?, ?, ?, ?, ?, ?) "
                            "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, n = excluded.n, "
                            "lo = excluded.lo, hi = excluded.hi",
                            zip([sid] * len(new_ts), new_ts.tolist(), new_val.tolist(), new_n.astype(np.int64).tolist(),
                                lo_col, hi_col))
        rep.downsampled += int(counts[many].sum())
        rep.buckets += int(many.sum())
