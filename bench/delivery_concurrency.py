"""Delivery under concurrency, crashes and a busy store (issue 9): lost / duplicated / stale / latency.

Runs the scenarios of tests/test_delivery_concurrency.py with real processes against the
Discord-like server of tests/fake_discord.py (127.0.0.1 only) and prints plain numbers:

  concurrent  two `perf-alerts deliver`, the daemon and `perf-alerts evaluate` at once
              (30 notifications already due + 30 new alerts)
  kill x5     the daemon SIGKILLed 5 times mid-delivery (3 while posting 12 notifications,
              2 while editing their resolutions), restarted each time
  lock 10s    another process holds the SQLite write lock for 10 s; GET /api/v1/alerts
              every 100 ms: p50 / p99 / max latency (s)
  loop slow / loop 429
              deliver_due + deliver_message + deliver_summary called synchronously inside
              a running event loop: the loop's worst lateness (ms) and each call's time

Columns: notifications the scenario should deliver; lost (never announced, or a resolution
never shown); duplicated (notifications received more than once); max copies; orphaned
(messages created for a sender killed before it got the answer); stale (messages still
showing a resolved alert as firing; in brackets those a sender could have known of);
leaks (ResourceWarnings: lines in the processes' output, run with -W error::ResourceWarning,
or objects leaked in this process by the loop scenarios).

  .venv/bin/python bench/delivery_concurrency.py            # the code installed in the venv
  PYTHONPATH=/tmp/pa-before/src .venv/bin/python bench/delivery_concurrency.py   # other code

Bounded: about 2 minutes. `delivery.lease: 5s` is configured only if the code knows the key.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_delivery_concurrency as sc  # noqa: E402  (tests/ on sys.path: the scenarios live with the tests)


def _code_paths() -> tuple[str, str]:
    import perf_alerts

    child = subprocess.run([sys.executable, "-c", "import perf_alerts; print(perf_alerts.__file__)"],
                           capture_output=True, text=True, env=os.environ.copy(), timeout=60).stdout.strip()
    return perf_alerts.__file__ or "?", child


def _fmt(v: Any, width: int, digits: int = 3) -> str:
    if v is None or v == "":
        s = "-"
    elif isinstance(v, float):
        s = f"{v:.{digits}f}"
    else:
        s = str(v)
    return s.rjust(width)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-lease", action="store_true", help="never put delivery.lease in the config")
    ap.add_argument("--only", choices=["concurrent", "kill", "lock", "loop"], action="append",
                    help="run only these scenarios (repeatable)")
    args = ap.parse_args()
    only = set(args.only or ["concurrent", "kill", "lock", "loop"])

    here, child = _code_paths()
    lease = sc.lease_supported() and not args.no_lease
    print(f"perf_alerts (this process): {here}")
    print(f"perf_alerts (subprocesses): {child}")
    print(f"delivery.lease in the config: {sc.LEASE if lease else 'no (this code does not know the key)'}")
    print()

    rows: list[dict[str, Any]] = []
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pa-bench-conc-") as d:
        base = Path(d)

        def sub(name: str) -> Path:
            p = base / name
            p.mkdir()
            return p

        if "concurrent" in only:
            r = sc.run_concurrent(sub("concurrent"), lease=lease)
            rows.append({"scenario": "concurrent", **r, "note": f"exit codes {r['codes']}"})
        if "kill" in only:
            r = sc.run_kills(sub("kill"), lease=lease)
            rows.append({"scenario": f"kill x{r['kills']}", **r, "note": f"outbox {r['outbox']}"})
        if "lock" in only:
            r = sc.run_lock(sub("lock"), lease=lease)
            note = (f"{r['samples']} polls, {r['over_1s']} over 1 s, {len(r['errors'])} errors; delivered "
                    + (f"{r['delivered_after_release']} s after release" if r["delivered_after_release"] is not None
                       else "NOT within 20 s of release"))
            rows.append({"scenario": "lock 10s", **r, "note": note})
        if "loop" in only:
            for mode in ("slow", "429"):
                r = sc.run_sync_in_loop(sub(f"loop-{mode}"), mode, lease=lease)
                calls = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["call_seconds"].items())
                rows.append({"scenario": f"loop {mode}", **r, "loop_ms": r["max_lateness"] * 1000, "note": calls})

    cols = [("scenario", 12), ("notifications", 13), ("lost", 5), ("duplicated", 10), ("max_copies", 10),
            ("orphaned", 8), ("stale", 9), ("p50", 7), ("p99", 7), ("max", 7), ("loop_ms", 8), ("leaks", 5), ("seconds", 7)]
    print(" ".join(name.rjust(w) if i else name.ljust(w) for i, (name, w) in enumerate(cols)))
    for r in rows:
        r["leaks"] = len(r["resource_warnings"]) if "resource_warnings" in r else \
            sum(1 for ln in r.get("logs", "").splitlines() if ln.startswith("ResourceWarning"))
        cells = []
        for i, (name, w) in enumerate(cols):
            v = r.get(name)
            if name == "stale" and "stale_known" in r:
                v = f"{r['stale']}({r['stale_known']})"
            cells.append(str(v).ljust(w) if i == 0 else _fmt(v, w, 1 if name in ("seconds", "loop_ms") else 3))
        print(" ".join(cells))
    print()
    for r in rows:
        extra = []
        if r.get("lost_list"):
            extra.append(f"lost: {', '.join(r['lost_list'])}")
        if r.get("copies"):
            top = sorted(r["copies"].items(), key=lambda kv: -kv[1])[:6]
            extra.append("copies: " + ", ".join(f"{k} x{n}" for k, n in top))
        problems = sc.log_problems(r.get("logs", ""))
        if problems:
            extra.append(f"{len(problems)} ResourceWarning/traceback line(s) in the processes' output, "
                         f"first: {problems[0][:160]}")
        print(f"{r['scenario']}: {r['note']}" + "".join(f"\n    {x}" for x in extra))
    print(f"\ntotal {time.monotonic() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
