"""`perf-alerts evaluate` through the CLI in an alert storm: 10,000 series × 5 rules.

    python bench/evaluate_cli.py [--series 10000] [--runs 3]

Builds the storm store of `bench/evaluate.py` (every series with values uniform 0–100 in
the 5-minute window, so about half of them breach each rule: ~20,000 transitions in one
cycle) and times, as a subprocess, each on a fresh copy of the store:

    perf-alerts --db <store> --config <rules> evaluate --at <t>         (summary + worst 20)
    perf-alerts --db <store> --config <rules> evaluate --at <t> --all   (baseline: every line)

printing the median and range of `--runs` runs of each (target: the summary ≤ 2 s wall), and,
in this process, the time to print the storm's transition lines alone the previous way (rich,
a new Console per line) beside one write (`output.lines`, what both commands above now use).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "bench"))

from evaluate import RULES, T0  # noqa: E402

from perf_alerts.model import canonical_labels  # noqa: E402
from perf_alerts.store import Store  # noqa: E402


def build_storm(path: Path, series: int, samples: int) -> None:
    rng = np.random.default_rng(0)
    store = Store(path)
    keys = [("lat", canonical_labels({"agent": f"a{i}", "region": ["eu-west", "us-east"][i % 2]}))
            for i in range(series)]
    ids = store.series_ids(keys)
    rows = []
    for sid in ids.values():
        ts = T0 - np.sort(rng.uniform(0, 290, samples))
        vals = rng.uniform(0, 100, samples)
        rows += [(sid, float(t), float(v)) for t, v in zip(ts, vals)]
    store.insert_rows(rows)
    store.close()


def run(exe: str, pristine: Path, work: Path, config: Path, extra: list[str]) -> tuple[float, int, str]:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(work) + suffix)
        if p.exists():
            p.unlink()
    shutil.copyfile(pristine, work)
    cmd = [exe, "--db", str(work), "--config", str(config), "evaluate", "--at", str(int(T0)), *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed, proc.stdout.count(b"\n"), proc.stderr.decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=10, help="samples per series inside the 5m window")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    exe = shutil.which("perf-alerts", path=str(Path(sys.executable).parent)) or shutil.which("perf-alerts")
    if exe is None:
        raise SystemExit("perf-alerts is not installed in this environment")
    with tempfile.TemporaryDirectory() as tmp:
        pristine, work, config = Path(tmp, "storm.db"), Path(tmp, "run.db"), Path(tmp, "rules.yaml")
        config.write_text(RULES)
        t = time.perf_counter()
        build_storm(pristine, args.series, args.samples)
        print(f"storm store: {args.series:,} series × 5 rules, built in {time.perf_counter() - t:.1f} s")
        results: dict[str, list[tuple[float, int]]] = {"summary": [], "--all": []}
        for _ in range(args.runs):  # interleaved, so a change in load hits both alike
            results["summary"].append(run(exe, pristine, work, config, []))
            results["--all"].append(run(exe, pristine, work, config, ["--all"]))
        printing = print_only(pristine, work)
    for name, rs in results.items():
        times = [r[0] for r in rs]
        label = "perf-alerts --db <store> evaluate --at <t>" + (" --all" if name == "--all" else "")
        print(f"{label:52} median {statistics.median(times):.2f} s wall, range {min(times):.2f}–{max(times):.2f} s "
              f"over {len(times)} runs; {rs[0][1]:,} lines printed"
              + (" (target <= 2 s)" if name == "summary" else " (baseline: every transition)"))
        for ln in sorted({ln for r in rs for ln in r[2].splitlines()})[:3]:
            print(f"    stderr: {ln}")
    n, old, new = printing
    print(f"printing alone, the {n:,} lines of --all to /dev/null: {old:.2f} s through rich with a Console per line "
          f"(the previous `evaluate`), {new:.3f} s in one write (now)")


def print_only(pristine: Path, work: Path) -> tuple[int, float, float]:
    """The storm's transition lines printed the previous way (rich, a new Console per line) and the
    current way (`output.lines`, one write), both to /dev/null, in this process."""
    from rich.console import Console

    from perf_alerts.cli import output as out
    from perf_alerts.cli.main import _transition_lines
    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.textsafe import terminal_safe
    from perf_alerts.timeutil import ManualClock

    shutil.copyfile(pristine, work)
    res = PerfAlerts(parse_config(RULES), Store(work), ManualClock(T0)).evaluate(at=T0)
    texts = _transition_lines(res.transitions, True)
    saved = sys.stdout
    with open(os.devnull, "w") as null:
        sys.stdout = null
        try:
            t = time.perf_counter()
            for text in texts:
                Console(highlight=False, soft_wrap=True, emoji=False, width=160).print(
                    terminal_safe(text, newlines=False), markup=False, highlight=False, emoji=False)
            old = time.perf_counter() - t
            t = time.perf_counter()
            out.lines(texts)
            new = time.perf_counter() - t
        finally:
            sys.stdout = saved
    return len(texts), old, new


if __name__ == "__main__":
    main()
