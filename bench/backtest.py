"""Backtest speed and memory (issue 14, item 3).

    python bench/backtest.py [--db demo-output/demo.db] [--runs 5] [--series 40] [--no-baseline]
                             [--old-src DIR]

1. `perf-alerts --db <copy of the demo's database> backtest --json`, --runs times, each in a fresh
   process (wall time and peak RSS of the process, start-up included), alternated with the
   baseline in the same run: the same command on the step-by-step path
   (`rules.backtest.backtest(..., fast=False)`: every rule at every step, no replay shortcuts),
   which is what the command ran before the replay. The two JSON reports must be equal.
   --old-src DIR adds a third: the same command from another checkout's `src` (e.g.
   `git archive <commit> src config | tar -x -C DIR`, then --old-src DIR/src), with that
   checkout's config/alerting.yaml when there is one (its rules may differ: then so may the report).
2. Peak RSS of a replay of 200 and of 2,000 one-minute steps (each in a fresh process) over a
   synthetic store: --series series of 1-minute samples over three days on the metrics the
   shipped rules and SLOs read (config/alerting.yaml). Target: 2,000 within 20 % of 200.

Prints medians and ranges, and the load average before and after (the machine is shared).
The target: the demo database's backtest in <= 5 s wall.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from perf_alerts.store import Store  # noqa: E402

DAY = 86400.0
T0 = 1_800_000_000.0
METRICS = ("crew_llm_call_seconds", "crew_task_seconds", "crew_cost_usd", "crew_tool_call_seconds",
           "crew_task_failures", "crew_tool_errors")

#: the step-by-step path through the same CLI command
_BASELINE = """
import functools, sys
import perf_alerts.rules.backtest as bt
bt.backtest = functools.partial(bt.backtest, fast=False)
from perf_alerts.cli.main import app
sys.argv = ["perf-alerts", *sys.argv[1:]]
app()
"""

#: the same command from another checkout's src (its first argument)
_OLD = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from perf_alerts.cli.main import app
sys.argv = ["perf-alerts", *sys.argv[1:]]
app()
"""

_PEAK = """
import sys
from perf_alerts.config import load_config
from perf_alerts.rules.backtest import backtest
from perf_alerts.store import Store
store = Store(sys.argv[1])
start, steps = float(sys.argv[2]), int(sys.argv[3])
rep = backtest(store, load_config(sys.argv[4]), start=start, end=start + (steps - 1) * 60.0, step=60.0)
assert rep.evaluations == steps and rep.error is None, rep
"""


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one process, reaped with wait4 for its own rusage."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    with p.stdout:
        out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}… failed (exit {p.returncode})")
    return wall, ru.ru_maxrss / 1024.0, out


def _stats(xs: list[float], unit: str = "s", fmt: str = ".2f") -> str:
    return f"{statistics.median(xs):{fmt}} {unit} ({min(xs):{fmt}}–{max(xs):{fmt}})"


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def _synthetic(path: Path, n_series: int) -> float:
    """Three days of 1-minute samples of n_series series; returns the last timestamp."""
    rng = np.random.default_rng(7)
    store = Store(str(path))
    keys = [(METRICS[i % len(METRICS)],
             json.dumps({"agent": f"a{i // len(METRICS)}", "crew": "c"}, sort_keys=True, separators=(",", ":")))
            for i in range(n_series)]
    ids = store.series_ids(keys)
    t = T0 + np.arange(0, 3 * DAY, 60.0)
    rows: list[tuple[int, float, float]] = []
    for k, (m, lab) in enumerate(keys):
        day = np.sin(2 * np.pi * t / DAY + k)
        if m in ("crew_task_failures", "crew_tool_errors"):
            v = (rng.random(t.size) < 0.02).astype(float)
        elif m == "crew_cost_usd":
            v = 0.02 + 0.005 * day + rng.gamma(2.0, 0.002, t.size)
        elif m == "crew_task_seconds":
            v = 20 + 5 * day + rng.gamma(2.0, 2.0, t.size)
        else:
            v = 2 + 0.5 * day + rng.gamma(2.0, 0.3, t.size)
        rows += [(ids[(m, lab)], float(a), float(b)) for a, b in zip(t, v)]
    store.insert_rows(rows)
    store.close()
    return float(t[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=str(ROOT / "demo-output" / "demo.db"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--series", type=int, default=40)
    ap.add_argument("--no-baseline", action="store_true", help="skip the step-by-step runs")
    ap.add_argument("--old-src", help="also run the command from this directory's perf_alerts (another commit's src)")
    args = ap.parse_args()
    src = Path(args.db)
    if not src.exists():
        raise SystemExit(f"{src}: no such database (make it with: perf-alerts demo)")
    exe = str(Path(sys.executable).parent / "perf-alerts")
    print(f"load average before: {_load()}  (2 cores shared)")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.db"
        shutil.copy(src, db)   # the demo may be rewritten by someone else meanwhile
        fast_w, fast_m, base_w, base_m, old_w, old_m = [], [], [], [], [], []
        fast_out = base_out = old_out = ""
        old_cfg = Path(args.old_src or ".").resolve().parent / "config" / "alerting.yaml"  # that checkout's rules
        old_cmd = ([sys.executable, "-c", _OLD, str(Path(args.old_src).resolve()), "--config",
                    str(old_cfg if old_cfg.exists() else ROOT / "config" / "alerting.yaml"), "--db", str(db),
                    "backtest", "--json"]
                   if args.old_src else [])
        for _ in range(args.runs):
            w, m, fast_out = _run([exe, "--db", str(db), "backtest", "--json"])
            fast_w.append(w)
            fast_m.append(m)
            if not args.no_baseline:
                w, m, base_out = _run([sys.executable, "-c", _BASELINE, "--db", str(db), "backtest", "--json"])
                base_w.append(w)
                base_m.append(m)
            if old_cmd:
                w, m, old_out = _run(old_cmd)
                old_w.append(w)
                old_m.append(m)
        rep = json.loads(fast_out)
        print(f"\n1. demo database backtest ({rep['evaluations']} steps of {rep['step']}, {len(rep['rules'])} rules), "
              f"{args.runs} runs each, wall incl. start-up:")
        print(f"   perf-alerts backtest (replay)      {_stats(fast_w)}   peak RSS {_stats(fast_m, 'MB', '.0f')}")
        if base_w:
            same = "same report" if json.loads(base_out) == rep else "REPORTS DIFFER"
            print(f"   baseline: step-by-step path        {_stats(base_w)}   peak RSS {_stats(base_m, 'MB', '.0f')}"
                  f"   ({statistics.median(base_w) / statistics.median(fast_w):.2f}x; {same})")
        if old_w:
            same = "same report" if json.loads(old_out) == rep else "REPORTS DIFFER"
            print(f"   baseline: {args.old_src:<24} {_stats(old_w)}   peak RSS {_stats(old_m, 'MB', '.0f')}"
                  f"   ({statistics.median(old_w) / statistics.median(fast_w):.2f}x; {same})")
        print(f"   target <= 5 s: {'met' if statistics.median(fast_w) <= 5.0 else 'NOT met'} (median)")

        syn = Path(tmp) / "syn.db"
        last = _synthetic(syn, args.series)
        cfg = str(ROOT / "config" / "alerting.yaml")
        print(f"\n2. peak RSS of a replay over {args.series} series of 1-minute samples (config/alerting.yaml), "
              "fresh process each:")
        peaks: dict[int, list[float]] = {}
        for steps in (200, 2000):
            start = last - (steps - 1) * 60.0
            ws, ms = [], []
            for _ in range(2 if steps == 2000 else 3):
                w, m, _out = _run([sys.executable, "-c", _PEAK, str(syn), str(start), str(steps), cfg])
                ws.append(w)
                ms.append(m)
            peaks[steps] = ms
            print(f"   {steps:>5} steps: peak RSS {_stats(ms, 'MB', '.1f')}   wall {_stats(ws)}")
        ratio = statistics.median(peaks[2000]) / statistics.median(peaks[200])
        print(f"   2,000 / 200 steps: {ratio:.3f} (target <= 1.20: {'met' if ratio <= 1.2 else 'NOT met'})")
    print(f"\nload average after: {_load()}")


if __name__ == "__main__":
    main()
