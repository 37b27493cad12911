"""The shipped default rules against the length of history (issue 14, item 6).

    python bench/default_rules.py [--series 1000] [--days 1 30] [--cycles 5] [--dir DIR]

For each history length: a SQLite store with N series (default 1,000) of 1-minute samples,
a quarter on each of crew_llm_call_seconds, crew_task_seconds, crew_cost_usd and
crew_tool_call_seconds (the metrics config/alerting.yaml's rules and SLOs read). Every rule of
config/alerting.yaml (and the SLOs' burn-rate alerts) is evaluated at once, as a full cycle
through `PerfAlerts.evaluate` (alert state written too):

* the first cycle, on a store with no kept rule state: every history-based rule computed from
  its whole lookback (the anomaly detector over 3 days, every forecast fitted). This is what
  every cycle cost before rules kept state, so it is the baseline;
* then --cycles cycles one minute apart, each after one new sample per series: median, range,
  and each rule's share of the slowest one.

The target: a cycle <= 1 s, and 30 days within 20 % of 1 day.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from perf_alerts.config import load_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.rules.evaluate import Evaluator  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock  # noqa: E402

DAY = 86400.0
T0 = 1_800_000_000.0
METRICS = ("crew_llm_call_seconds", "crew_task_seconds", "crew_cost_usd", "crew_tool_call_seconds")
CONFIG = Path(__file__).resolve().parents[1] / "config" / "alerting.yaml"


def _value(metric: str, t: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    day = np.sin(2 * np.pi * t / DAY + k)
    if metric == "crew_cost_usd":
        return 0.02 + 0.005 * day + rng.gamma(2.0, 0.002, t.size)
    if metric == "crew_task_seconds":
        return 20 + 5 * day + rng.gamma(2.0, 2.0, t.size)
    return 2 + 0.5 * day + rng.gamma(2.0, 0.3, t.size)


def build(path: Path, n_series: int, days: float, rng: np.random.Generator) -> tuple[Store, list[tuple[str, int]], float]:
    t0 = time.perf_counter()
    store = Store(path)
    keys = [(METRICS[i % len(METRICS)], json.dumps({"agent": f"a{i}", "crew": "c"}, sort_keys=True, separators=(",", ":")))
            for i in range(n_series)]
    ids = store.series_ids(keys)
    ts = np.arange(T0 - days * DAY, T0 + 1, 60.0)
    series = [(m, ids[(m, lab)]) for m, lab in keys]
    batch: list[tuple[int, float, float]] = []
    for k, (metric, sid) in enumerate(series):
        batch.extend(zip([sid] * ts.size, ts.tolist(), _value(metric, ts, k, rng).tolist()))
        if len(batch) >= 2_000_000:
            store.insert_rows(batch)
            batch = []
    store.insert_rows(batch)
    return store, series, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=float, nargs="+", default=[1.0, 30.0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_config(CONFIG)
    rules = cfg.alerting_rules()
    rng = np.random.default_rng(0)
    medians = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for days in args.days:
            store, series, built = build(Path(tmp) / f"defaults_{days:g}d.db", args.series, days, rng)
            pa = PerfAlerts(cfg, store, ManualClock(T0))
            per_rule: dict[str, float] = defaultdict(float)
            real = Evaluator.evaluate

            def timed(self: Evaluator, rule, at):  # type: ignore[no-untyped-def]
                t = time.perf_counter()
                try:
                    return real(self, rule, at)
                finally:
                    per_rule[rule.name] += time.perf_counter() - t

            Evaluator.evaluate = timed  # type: ignore[method-assign]
            try:
                t = time.perf_counter()
                res = pa.evaluate(at=T0, rules=rules)
                first = time.perf_counter() - t
                first_rules = dict(per_rule)
                times = []
                worst: dict[str, float] = {}
                for c in range(1, args.cycles + 1):
                    at = T0 + 60.0 * c
                    store.insert_rows([(sid, at, float(_value(m, np.array([at]), k, rng)[0]))
                                       for k, (m, sid) in enumerate(series)])
                    per_rule.clear()
                    t = time.perf_counter()
                    res = pa.evaluate(at=at, rules=rules)
                    times.append(time.perf_counter() - t)
                    if times[-1] == max(times):
                        worst = dict(per_rule)
            finally:
                Evaluator.evaluate = real  # type: ignore[method-assign]
            assert not res.errors, res.errors
            medians[days] = statistics.median(times)
            print(f"{args.series:,} series × {days:g} d of 1-minute history ({store.sample_count():,} samples, "
                  f"built in {built:.0f} s), {len(rules)} rules (config/alerting.yaml + SLO burn alerts):")
            print(f"  cycle with kept state: median {statistics.median(times):.3f} s "
                  f"(range {min(times):.3f}–{max(times):.3f}, {len(times)} cycles; target <= 1 s)")
            print(f"  baseline, the first cycle (history-based rules from their whole lookback): {first:.2f} s")
            top = sorted(worst.items(), key=lambda kv: -kv[1])[:5]
            print("  slowest cycle by rule: " + ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in top))
            top = sorted(first_rules.items(), key=lambda kv: -kv[1])[:5]
            print("  first cycle by rule:   " + ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in top))
            store.close()
    if len(medians) >= 2:
        lo, hi = min(medians), max(medians)
        print(f"{hi:g} d against {lo:g} d: {medians[hi] / medians[lo]:.2f}× (target <= 1.2×)")


if __name__ == "__main__":
    main()
