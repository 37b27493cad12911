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

Buckets are averaged (the store keeps one value per timestamp); samples that arrive with
timestamps older than the watermark (a late backfill) are not thinned.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

WATERMARK_KEY = "retention"


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
        def con(self) -> sqlite3.Connection: ...

        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def kv_get(self, key: str) -> Any: ...

        def kv_set(self, key: str, value: Any, con: sqlite3.Connection | None = None) -> None: ...

    def apply_retention(self, now: float, retention: float, downsample_after: float, step: float, *,
                        max_lock_seconds: float = 0.1, pause: float = 0.02) -> RetentionReport:
        """Drop samples older than `retention`; average those that became older than
        `downsample_after` since the last run into `step`-second buckets."""
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

        ids = [int(r[0]) for r in self.con.execute("SELECT id FROM series ORDER BY id")]
        rep.series = len(ids)
        i = 0
        while i < len(ids):
            with self.transaction() as con:
                t0 = time.monotonic()
                while i < len(ids):
                    sid = ids[i]
                    i += 1
                    if drop_before is not None:
                        rep.deleted += con.execute("DELETE FROM samples WHERE series_id = ? AND ts <= ?",
                                                   (sid, drop_before)).rowcount
                    if lo is not None and hi is not None:
                        self._thin_series(con, sid, lo, hi, step, rep)
                    if time.monotonic() - t0 >= max_lock_seconds:
                        break
                if i >= len(ids) and hi is not None:
                    # the watermark moves with the last batch: a run cut short redoes its whole range
                    self.kv_set(WATERMARK_KEY, {"thinned_until": hi, "step": step}, con)
                held = time.monotonic() - t0
            rep.transactions += 1
            rep.max_lock_seconds = max(rep.max_lock_seconds, held)
            if i < len(ids) and pause > 0:
                time.sleep(pause)  # let the writers that queued behind this batch in
        if not ids and hi is not None:
            self.kv_set(WATERMARK_KEY, {"thinned_until": hi, "step": step})
        rep.seconds = time.monotonic() - t_start
        return rep

    @staticmethod
    def _thin_series(con: sqlite3.Connection, sid: int, lo: float, hi: float, step: float,
                     rep: RetentionReport) -> None:
        rows = con.execute("SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                           (sid, lo, hi)).fetchall()
        if len(rows) < 2:
            return
        arr = np.asarray(rows, dtype=np.float64)
        ts, vals = arr[:, 0], arr[:, 1]
        b = np.floor(ts / step) * step
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        counts = np.diff(np.r_[starts, len(b)])
        if counts.max() <= 1:
            return  # already thinned: one sample per bucket
        sums = np.add.reduceat(vals, starts)
        many = counts > 1
        # buckets with several samples become one averaged sample at the bucket's start;
        # a bucket with one sample keeps it as it is. One range delete, one insert: a seek each.
        new_ts = np.where(many, b[starts], ts[starts])
        new_val = np.where(many, sums / counts, vals[starts])
        con.execute("DELETE FROM samples WHERE series_id = ? AND ts >= ? AND ts < ?", (sid, lo, hi))
        con.executemany("INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?, ?, ?)",
                        zip([sid] * len(new_ts), new_ts.tolist(), new_val.tolist()))
        rep.downsampled += int(counts[many].sum())
        rep.buckets += int(many.sum())
