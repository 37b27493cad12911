"""SQLite and PostgreSQL side by side, in one run: ingest and one evaluation cycle.

    python bench/backends.py [--series 10000] [--samples 10] [--ingest 200000] [--runs 3] [--pg URL]

- ingest: `Store.insert_samples` in batches of 1,000 samples (what one HTTP push or one JSONL
  chunk hands the store), 20 series per batch, new instants; samples/s, median and range over
  `--runs` fresh stores;
- evaluation: 10,000 series × 5 rules (the rules of bench/evaluate.py: threshold avg / p95 with
  `for` / rate / max with a regex matcher, and absent), 2% of the series breaching; the time of
  one `evaluate()` cycle, median and range over 5 cycles on each backend.

PostgreSQL is a throwaway server started for the run (tests/pg_server.py: the machine's
binaries, durability settings off as for the tests: fsync, synchronous_commit and
full_page_writes off), or `--pg postgresql://…` (a database is created on it and dropped).
SQLite is a file in a temp dir (WAL, synchronous=NORMAL, the store's defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # pg_server
sys.path.insert(0, str(ROOT / "bench"))

from evaluate import RULES, T0  # noqa: E402

from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.model import Sample, canonical_labels  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock  # noqa: E402


def fmt(xs: list[float], unit: str, scale: float = 1.0, digits: int = 3) -> str:
    return (f"median {statistics.median(xs) * scale:,.{digits}f} {unit} "
            f"(range {min(xs) * scale:,.{digits}f}–{max(xs) * scale:,.{digits}f})")


def ingest_rate(open_store: Callable[[], Store], total: int) -> float:
    store = open_store()
    try:
        batch = 1000
        t = time.perf_counter()
        for b in range(total // batch):
            samples = [Sample("bench_ingest", {"agent": f"a{(b * 20 + i % 20) % 500}"}, T0 + b + i * 1e-3, float(i))
                       for i in range(batch)]
            store.insert_samples(samples)
        return (total // batch * batch) / (time.perf_counter() - t)
    finally:
        store.close()


def evaluation_times(store: Store, series: int, samples: int, cycles: int = 5) -> tuple[list[float], Any]:
    rng = np.random.default_rng(0)
    keys = [("lat", canonical_labels({"agent": f"a{i}", "region": ["eu-west", "us-east"][i % 2]}))
            for i in range(series)]
    ids = store.series_ids(keys)
    rows = []
    for k, sid in enumerate(ids.values()):
        ts = T0 - np.sort(rng.uniform(0, 290, samples))
        vals = rng.uniform(95, 100, samples) if k < 0.02 * series else rng.uniform(0, 30, samples)
        rows += [(sid, float(t), float(v)) for t, v in zip(ts, vals)]
    store.insert_rows(rows)
    pa = PerfAlerts(parse_config(RULES), store, ManualClock(T0))
    times = []
    res = None
    for k in range(cycles):
        t = time.perf_counter()
        res = pa.evaluate(at=T0 + k)
        times.append(time.perf_counter() - t)
    return times, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=10, help="samples per series inside the 5m window")
    ap.add_argument("--ingest", type=int, default=200_000, help="samples per ingest run")
    ap.add_argument("--runs", type=int, default=3, help="fresh stores per backend for the ingest figure")
    ap.add_argument("--pg", help="an existing PostgreSQL server (postgresql://…) instead of a throwaway one")
    args = ap.parse_args()

    import pg_server

    server = pg_server.ExternalPgServer(args.pg) if args.pg else pg_server.LocalPgServer()
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            counter = iter(range(10**6))

            def sqlite_loc() -> str:
                return str(Path(tmp) / f"s{next(counter)}.db")

            def pg_loc() -> str:
                return str(server.create_database(f"bench_{next(counter)}"))

            for name, loc in (("sqlite", sqlite_loc), ("postgresql", pg_loc)):
                rates = []
                for _ in range(args.runs):
                    where = loc()
                    rates.append(ingest_rate(lambda: Store(where), args.ingest))
                store = Store(loc())
                try:
                    times, res = evaluation_times(store, args.series, args.samples)
                finally:
                    store.close()
                results[name] = {"rates": rates, "times": times, "res": res}
    finally:
        server.cleanup()

    print(f"ingest: {args.ingest:,} samples per run in batches of 1,000, {args.runs} runs per backend")
    for name, r in results.items():
        print(f"  {name:10}: {fmt(r['rates'], 'samples/s', digits=0)}")
    ratio = statistics.median(results["postgresql"]["rates"]) / statistics.median(results["sqlite"]["rates"])
    print(f"  PostgreSQL / SQLite ingest rate: {ratio:.2f}")
    print(f"evaluation: {args.series:,} series × 5 rules, {args.samples} samples per series in the window, "
          f"2% breaching; one cycle, 5 cycles per backend")
    for name, r in results.items():
        res = r["res"]
        print(f"  {name:10}: {fmt(r['times'], 's')}; {res.series:,} rule×series results, {len(res.active):,} active")
    ratio = statistics.median(results["postgresql"]["times"]) / statistics.median(results["sqlite"]["times"])
    print(f"  PostgreSQL / SQLite cycle time: {ratio:.2f}")
    print(f"machine: {Path('/proc/cpuinfo').read_text().count('processor')} cores; PostgreSQL "
          f"{'given by --pg' if args.pg else 'throwaway, fsync/synchronous_commit/full_page_writes off'}")


if __name__ == "__main__":
    main()
