"""Wall time of `perf-alerts demo` (the README's number comes from here, not from a test).

    python bench/demo_time.py [--runs 3] [--fast]

Runs the demo in a fresh temporary directory each time (no Discord webhook: the console
receiver) and prints every run and the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fast", action="store_true", help="time `demo --fast` (the test suite's mode)")
    args = ap.parse_args()
    env = {**os.environ, "PERF_ALERTS_CONFIG": "", "DISCORD_WEBHOOK_URL": ""}
    times = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "perf_alerts", "demo", "--out", os.path.join(tmp, "out")]
            if args.fast:
                cmd.append("--fast")
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, env=env)
            times.append(time.perf_counter() - t)
        print(f"run {i + 1}: {times[-1]:.1f} s", flush=True)
    print(f"perf-alerts demo{' --fast' if args.fast else ''}: median {statistics.median(times):.1f} s "
          f"over {args.runs} runs on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
