"""Start-up cost: `import perf_alerts` and `perf-alerts --help`, and proof that crewai is not imported.

    python bench/startup.py [--runs 10]

Baseline in the same run: a bare `python -c pass`, so the numbers separate the
interpreter's own start-up from ours.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    py = sys.executable
    bare = wall([py, "-c", "pass"], args.runs)
    imp = wall([py, "-c", "import perf_alerts"], args.runs)
    helps = wall([py, "-m", "perf_alerts", "--help"], args.runs)
    probe = subprocess.run(
        [py, "-c", "import sys, runpy\nsys.argv=['perf-alerts','--help']\n"
                   "try:\n    runpy.run_module('perf_alerts', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                   "import perf_alerts\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('crewai','litellm','matplotlib','fastapi')))"],
        capture_output=True, text=True, check=True)
    heavy = probe.stdout.strip().splitlines()[-1]
    print(f"python -c pass (baseline):      {bare * 1000:6.0f} ms")
    print(f"python -c 'import perf_alerts': {imp * 1000:6.0f} ms  (+{(imp - bare) * 1000:.0f} ms over baseline)")
    print(f"perf-alerts --help:             {helps * 1000:6.0f} ms  (+{(helps - bare) * 1000:.0f} ms over baseline; target <= 300 ms)")
    print(f"heavy modules imported by import + --help: {heavy}")


if __name__ == "__main__":
    main()
