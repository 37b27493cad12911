"""Ingest throughput: `perf-alerts ingest` on a CSV vs a bare sqlite3.executemany of the same rows.

    python bench/ingest.py [--rows 1000000]

Both write into a fresh SQLite file with the store's schema (WAL, same indexes), in the
same run, so the ratio says what parsing + validation + series resolution cost on top
of SQLite itself.
"""

from __future__ import annotations

import argparse
import csv
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from perf_alerts.sources.files import ingest_file  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.store.schema import SCHEMA as _SCHEMA  # noqa: E402


def make_csv(path: Path, rows: int) -> list[tuple[int, float, float]]:
    agents = ["researcher", "writer", "reviewer", "editor"]
    metrics = ["crew_task_seconds", "crew_llm_call_seconds", "crew_tool_call_seconds", "crew_cost_usd", "host_cpu_percent"]
    t0 = 1_800_000_000
    plain = []
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "metric", "value", "agent", "crew"])
        for i in range(rows):
            m = i % len(metrics)
            a = (i // len(metrics)) % len(agents)
            ts = t0 + i // 20
            val = (i * 7919) % 1000 / 10.0
            w.writerow([ts, metrics[m], val, agents[a], "bench"])
            plain.append((m * len(agents) + a + 1, float(ts) + (i % 20) * 1e-3, val))
    return plain


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        csv_path = d / "samples.csv"
        plain = make_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6

        # baseline: bare executemany of pre-parsed tuples, same schema and pragmas
        con = sqlite3.connect(str(d / "bare.db"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(_SCHEMA)
        t = time.perf_counter()
        for i in range(0, len(plain), 50_000):
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT OR REPLACE INTO samples (series_id, ts, value) VALUES (?, ?, ?)", plain[i:i + 50_000])
            con.execute("COMMIT")
        bare = time.perf_counter() - t
        con.close()

        store = Store(d / "store.db")
        t = time.perf_counter()
        rep = ingest_file(store, csv_path)
        ours = time.perf_counter() - t
        assert rep.accepted == args.rows and rep.rejected == 0, rep.to_dict()

    print(f"rows: {args.rows:,} ({size_mb:.1f} MB CSV, {rep.series} series)")
    print(f"perf-alerts ingest (CSV parse + validate + store): {ours:.2f} s = {args.rows / ours:,.0f} samples/s")
    print(f"baseline sqlite3.executemany of pre-parsed rows:   {bare:.2f} s = {args.rows / bare:,.0f} samples/s")
    print(f"ratio ingest/baseline throughput: {bare / ours:.2f} (target: >= 200,000 samples/s)")


if __name__ == "__main__":
    main()
