"""Retention and downsampling: the daemon's hourly run on a store with a month of history.

Layout (per series, 1-minute data): days 30..7 already thinned to 5-minute buckets, the
last 7 days and one hour raw — what a week-old daemon's store looks like when the next
hourly run comes. Measured:
  - the hourly run over N series (default 1,000): seconds, transactions, the longest
    write-lock hold, and the worst wait of a writer in another process during the run;
  - the first-ever thinning of a raw store (every sample older than 7 days);
  - baseline in the same run: the previous algorithm (one transaction, a temp table, a
    correlated EXISTS per old sample) on a smaller store, since it is quadratic.

    python bench/retention.py [--series 1000] [--baseline-series 25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from perf_alerts.store import Store

DAY = 86400.0
STEP = 300.0
T0 = 1_800_000_000.0


def build(path: Path, n_series: int, thinned_days: float = 23, raw_days: float = 7) -> Store:
    store = Store(path)
    ids = list(store.series_ids([("crew_task_seconds", json.dumps({"agent": f"a{i}"})) for i in range(n_series)]).values())
    raw_start = T0 - raw_days * DAY
    thin = np.arange(raw_start - thinned_days * DAY, raw_start, STEP)
    raw = np.arange(raw_start, T0 + 3600, 60.0)
    ts = np.concatenate([thin, raw])
    rng = np.random.default_rng(1)
    batch: list[tuple[int, float, float]] = []
    for sid in ids:
        vals = rng.gamma(2.0, 2.0, len(ts))
        batch.extend(zip([sid] * len(ts), ts.tolist(), vals.tolist()))
        if len(batch) > 1_000_000:
            store.insert_rows(batch)
            batch = []
    store.insert_rows(batch)
    # the previous run thinned up to 7 days before T0
    store.kv_set("retention", {"thinned_until": raw_start, "step": STEP})
    return store


def old_algorithm(store: Store, now: float, retention: float, downsample_after: float, step: float) -> None:
    """The first version, kept here as the baseline (one transaction over the whole table)."""
    with store.transaction() as con:
        con.execute("DELETE FROM samples WHERE ts <= ?", (now - retention,))
        cutoff = now - downsample_after
        cutoff -= cutoff % step
        con.execute("DROP TABLE IF EXISTS temp.ds")
        con.execute("CREATE TEMP TABLE ds AS SELECT series_id, CAST(ts / ? AS INTEGER) * ? AS b, AVG(value) AS v, "
                    "COUNT(*) AS n FROM samples WHERE ts < ? GROUP BY series_id, b", (step, step, cutoff))
        con.execute("DELETE FROM ds WHERE n <= 1 ")
        con.execute("DELETE FROM samples WHERE ts < ? AND EXISTS (SELECT 1 FROM ds WHERE ds.series_id = "
                    "samples.series_id AND ds.b = CAST(samples.ts / ? AS INTEGER) * ?)", (cutoff, step, step))
        con.execute("INSERT OR REPLACE INTO samples (series_id, ts, value) SELECT series_id, b, v FROM ds")
        con.execute("DROP TABLE temp.ds")


def writer_during(db: Path, fn: object) -> tuple[float, int]:
    """Run `fn()` while another process inserts one sample every 10 ms; its worst wait and count."""
    code = textwrap.dedent(f"""
        import json, sys, time
        from perf_alerts.store import Store
        s = Store({str(db)!r})
        [sid] = s.series_ids([("bench_writer", "{{}}")]).values()
        print("ready", flush=True)
        worst, i = 0.0, 0
        for line in iter(lambda: None, 1):
            t = time.monotonic()
            s.insert_rows([(sid, {T0} + 10_000 + i, 1.0)])
            worst = max(worst, time.monotonic() - t)
            i += 1
            print(json.dumps([worst, i]), flush=True)
            time.sleep(0.01)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.readline()
    time.sleep(0.2)
    fn()  # type: ignore[operator]
    time.sleep(0.2)
    p.kill()
    last = [json.loads(x) for x in p.stdout.read().splitlines() if x.startswith("[")]
    p.wait()
    return (last[-1][0], last[-1][1]) if last else (float("nan"), 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--baseline-series", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pa-retention-"))
    print(f"store: {args.series} series, 23 days thinned (5 min) + 7 days and 1 h raw (1 min)")

    hourly: list[float] = []
    locks: list[float] = []
    waits: list[float] = []
    for r in range(args.repeat):
        db = tmp / f"s{r}.db"
        t = time.monotonic()
        store = build(db, args.series)
        if r == 0:
            print(f"  built {store.sample_count():,} samples in {time.monotonic() - t:.1f} s")
        reps = []
        worst, n = writer_during(db, lambda: reps.append(
            store.apply_retention(T0 + 3600, 30 * DAY, 7 * DAY, STEP)))
        rep = reps[0]
        hourly.append(rep.seconds)
        locks.append(rep.max_lock_seconds)
        waits.append(worst)
        print(f"  hourly run {r + 1}: {rep.seconds:.2f} s, {rep.downsampled:,} samples into {rep.buckets:,} buckets, "
              f"{rep.transactions} transactions, longest lock {rep.max_lock_seconds * 1000:.0f} ms; "
              f"writer in another process: {n} inserts, worst wait {worst * 1000:.0f} ms")
        store.close()
        for f in tmp.glob(f"s{r}.db*"):
            f.unlink()

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} (range {min(xs):.3f}–{max(xs):.3f})"

    print(f"hourly run, {args.series} series: median {med(hourly)} s; longest lock {med(locks)} s; "
          f"writer's worst wait {med(waits)} s")

    # first-ever thinning of raw data (a new install upgraded with a month of raw samples)
    db = tmp / "first.db"
    store = Store(db)
    n_first = max(1, args.series // 10)
    ids = list(store.series_ids([("m", json.dumps({"s": str(i)})) for i in range(n_first)]).values())
    ts = np.arange(T0 - 14 * DAY, T0, 60.0)
    store.insert_rows([(sid, float(t), 1.0) for sid in ids for t in ts])
    rep = store.apply_retention(T0, 30 * DAY, 7 * DAY, STEP)
    print(f"first thinning of 7 days of raw 1-minute data, {n_first} series: {rep.seconds:.2f} s "
          f"({rep.downsampled / max(rep.seconds, 1e-9):,.0f} samples/s), longest lock {rep.max_lock_seconds * 1000:.0f} ms")
    store.close()

    # baseline: the previous algorithm, same layout, fewer series (it is quadratic)
    db = tmp / "old.db"
    store = build(db, args.baseline_series)
    t = time.monotonic()
    old_algorithm(store, T0 + 3600, 30 * DAY, 7 * DAY, STEP)
    old_s = time.monotonic() - t
    store.close()
    db2 = tmp / "new.db"
    store = build(db2, args.baseline_series)
    new = store.apply_retention(T0 + 3600, 30 * DAY, 7 * DAY, STEP)
    store.close()
    print(f"baseline, {args.baseline_series} series: previous algorithm {old_s:.2f} s in one transaction "
          f"(the write lock held throughout); this one {new.seconds:.3f} s; ratio {old_s / max(new.seconds, 1e-9):.0f}x")
    for f in tmp.iterdir():
        f.unlink()
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
