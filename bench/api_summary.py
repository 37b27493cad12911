"""`GET /api/v1/summary` latency on the demo store: cold, after a change, and warm (the cache), beside
the uncached computation (`executive_summary`) in the same run.

    python bench/api_summary.py [--db PATH] [--period 7d] [--runs 10]

Without --db the demo store is built first (`perf-alerts demo`, about 15-60 s). The store is copied
to a temporary directory (the bench writes a marker to the copy's kv to invalidate the cache), and
`perf-alerts --db COPY dashboard --port 0` serves it on 127.0.0.1 in a process of its own.

- uncached: `executive_summary(system, period)` in this process, `--runs` times (median, range);
- cold: the first request to the fresh server (imports included);
- after a change: a request after something was committed to the store (a new evaluation, new
  samples): the cache misses and the summary is computed (median, range of `--runs`);
- warm: `--runs` repeated requests with nothing committed in between (median, range). The warm
  requests are made in one minute (the cache's time bucket): the bench waits for a fresh minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import http.client
import json
from urllib.parse import urlencode

from _dashboard import EXE, start_dashboard



def fmt(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    if len(ms) == 1:
        return f"{ms[0]:8.1f} ms"
    return f"{statistics.median(ms):8.1f} ms median  (range {min(ms):.1f}–{max(ms):.1f} ms, n={len(ms)})"


def copy_store(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", help="an existing store (default: build the demo's)")
    ap.add_argument("--period", default="7d")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()

    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.summary import executive_summary
    from perf_alerts.store import Store
    from perf_alerts.timeutil import parse_duration

    period = parse_duration(args.period)
    tmp = Path(tempfile.mkdtemp(prefix="bench-summary-"))
    try:
        if args.db:
            src = Path(args.db)
        else:
            src = tmp / "demo.db"
            t = time.perf_counter()
            subprocess.run([str(EXE), "--db", str(src), "demo", "--out", str(tmp / "out")], cwd=tmp, check=True,
                           capture_output=True)
            print(f"built the demo store in {time.perf_counter() - t:.1f} s")
        db = tmp / "copy.db"
        copy_store(src, db)

        system = PerfAlerts(db=str(db))
        uncached = []
        for _ in range(args.runs):
            t = time.perf_counter()
            executive_summary(system, period_seconds=period)
            uncached.append(time.perf_counter() - t)

        proc, url = start_dashboard(db, tmp)
        try:
            host, port = url.rsplit("/", 1)[-1].split(":")
            path = "/api/v1/summary?" + urlencode({"period": args.period})

            def get(kept: http.client.HTTPConnection | None = None) -> float:
                # a new connection per request, as curl, unless `kept` (one connection reused, as a
                # dashboard tab or an exporter: no slower since the server sets TCP_NODELAY)
                t = time.perf_counter()
                con = kept or http.client.HTTPConnection(host, int(port), timeout=60)
                con.request("GET", path)
                r = con.getresponse()
                body = r.read()
                dt = time.perf_counter() - t
                if kept is None:
                    con.close()
                if r.status != 200:
                    raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
                json.loads(body)
                return dt

            cold = get()
            store = Store(db)
            changed = []
            for i in range(args.runs):
                store.kv_set("bench.api_summary", i)  # a commit: what an evaluation or new samples do
                changed.append(get())
            store.close()
            left = 60 - time.time() % 60
            if left < 15:  # the warm requests in one minute, the cache's time bucket
                time.sleep(left + 0.5)
            get()  # the first request of this minute computes
            warm = [get() for _ in range(args.runs)]
            kept_con = http.client.HTTPConnection(host, int(port), timeout=60)
            get(kept_con)  # opens the connection
            warm_kept = [get(kept_con) for _ in range(args.runs)]
            kept_con.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        print(f"store: {args.db or 'the demo store built in this run'} (served from a copy); period {args.period}; "
              f"{os.cpu_count()} CPUs")
        print(f"uncached executive_summary() in-process (baseline): {fmt(uncached)}")
        print(f"GET /api/v1/summary cold (first request, fresh server): {fmt([cold])}")
        print(f"GET /api/v1/summary after a commit (cache miss):       {fmt(changed)}")
        print(f"GET /api/v1/summary warm (cache hit, same minute):     {fmt(warm)}  target <= 200 ms")
        print(f"  the same, {args.runs} requests on one kept-alive connection:  {fmt(warm_kept)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
