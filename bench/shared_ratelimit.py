"""Several senders, one webhook: is Discord's rate-limit budget shared (issue 12)?

Runs the scenario of tests/test_shared_ratelimit.py with real processes against the
Discord-like server of tests/fake_discord.py (127.0.0.1 only): a stream of notifications
(one Discord message each), due faster than the webhook allows, delivered by several
processes started at once on one store (SQLite, and PostgreSQL with `--backends
sqlite,postgresql`: a throwaway server from tests/pg_server.py, or `--pg URL`). Modes:

  cli      two `perf-alerts deliver` and a daemon (`perf-alerts run`): the state is the store's
  shared   N processes delivering as `perf-alerts deliver` does (state in the store)
  memory   the same N processes, each with a Discord client of its own whose rate-limit state
           is its memory: what every sender did before the state was shared

Columns: requests the server received; inside wait (requests that arrived while the server
had told some sender to wait: must be 0); 429s; lost / duplicated notifications; seconds
(wall time of the run, ≈3 s of start-up and 1 s of settling included); delivered by each
sender.

  .venv/bin/python bench/shared_ratelimit.py [--n 24] [--limit 3] [--per 1] [--senders 3] [--runs 1]
      [--modes cli,shared,memory] [--backends sqlite,postgresql] [--pg postgresql://…]

Bounded: about 15 s per run, mode and backend.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_shared_ratelimit as sc  # noqa: E402  (tests/ on sys.path: the scenario lives with the tests)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24, help="notifications (default 24)")
    ap.add_argument("--limit", type=int, default=3, help="requests per window (default 3)")
    ap.add_argument("--per", type=float, default=1.0, help="window in seconds (default 1)")
    ap.add_argument("--senders", type=int, default=3, help="processes (default 3)")
    ap.add_argument("--runs", type=int, default=1, help="runs per mode (default 1)")
    ap.add_argument("--modes", default="cli,shared,memory")
    ap.add_argument("--backends", default="sqlite", help="sqlite, postgresql or both (comma-separated)")
    ap.add_argument("--pg", help="an existing PostgreSQL server (postgresql://…) instead of a throwaway one")
    a = ap.parse_args()
    backends = a.backends.split(",")
    server: Any = None
    if "postgresql" in backends:
        import pg_server

        server = pg_server.ExternalPgServer(a.pg) if a.pg else pg_server.LocalPgServer()
    try:
        return _run(a, backends, server)
    finally:
        if server is not None:
            server.cleanup()


def _run(a: argparse.Namespace, backends: list[str], server: Any) -> int:
    print(f"{a.n} notifications to one webhook allowing {a.limit} requests per {a.per:g} s; "
          f"{a.senders} senders started at once\n")
    head = (f"{'backend':<10} {'mode':<8} {'requests':>8} {'inside wait':>11} {'429s':>5} {'lost':>5} {'dup':>4} "
            f"{'seconds':>8}  delivered by")
    print(head)
    print("-" * len(head))
    worst = 0
    for backend, mode, _ in itertools.product(backends, a.modes.split(","), range(a.runs)):
        with tempfile.TemporaryDirectory() as d:
            db = server.create_database("bench_shared_rl") if backend == "postgresql" else None
            try:
                r = sc.run_shared(Path(d), mode, n=a.n, limit=a.limit, per=a.per, senders=a.senders, db=db)
            finally:
                if db is not None:
                    server.drop_database(db)
        by = ", ".join(f"{k} {v}" for k, v in r["delivered_by"].items())
        print(f"{backend:<10} {mode:<8} {r['requests']:>8} {r['inside_wait']:>11} {r['rate_limited']:>5} "
              f"{len(r['lost']):>5} {len(r['duplicated']):>4} {r['seconds']:>8.1f}  {by}")
        if mode != "memory":
            worst = max(worst, r["inside_wait"], len(r["lost"]), len(r["duplicated"]))
    return 1 if worst else 0


if __name__ == "__main__":
    raise SystemExit(main())
