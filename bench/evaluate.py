"""Evaluation cycle time: 10,000 series × 5 rules, on a real SQLite store.

    python bench/evaluate.py [--series 10000] [--samples 10]

The five rules are the cheap, vectorised kinds that run every cycle (threshold with
avg / p95 / rate / max+matchers, and absent). The per-series kinds (trend, anomaly,
forecast) are timed separately, per series, because their cost grows with history
length, not with the number of rules; the line "baseline" is the same five rules
computed with one numpy call per series (what a naive loop would do).
"""

from __future__ import annotations

import argparse
from typing import Any
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.model import canonical_labels  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock  # noqa: E402

RULES = """
rules:
  - {name: AvgHigh, type: threshold, metric: lat, aggregate: avg, window: 5m, op: ">", value: 50}
  - {name: P95High, type: threshold, metric: lat, aggregate: p95, window: 5m, op: ">", value: 90, for: 2m}
  - {name: RateHigh, type: threshold, metric: lat, aggregate: rate, window: 5m, op: ">", value: 2}
  - {name: MaxHighEu, type: threshold, metric: lat, matchers: ['region=~"eu-.*"'], aggregate: max, window: 5m, op: ">", value: 99}
  - {name: Silent, type: absent, metric: lat, window: 10m}
"""
T0 = 1_800_000_000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=10, help="samples per series inside the 5m window")
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    def scenario(tmp: str, name: str, breaching: float) -> tuple[list[float], Any, float]:
        """A store where `breaching` of the series are in trouble (the rest well inside every limit)."""
        store = Store(Path(tmp) / f"{name}.db")
        keys = [("lat", canonical_labels({"agent": f"a{i}", "region": ["eu-west", "us-east"][i % 2]}))
                for i in range(args.series)]
        ids = store.series_ids(keys)
        rows = []
        for k, sid in enumerate(ids.values()):
            ts = T0 - np.sort(rng.uniform(0, 290, args.samples))
            hot = k < breaching * args.series
            vals = rng.uniform(0, 100, args.samples) if hot and breaching >= 0.5 else \
                rng.uniform(95, 100, args.samples) if hot else rng.uniform(0, 30, args.samples)
            rows += [(sid, float(t), float(v)) for t, v in zip(ts, vals)]
        store.insert_rows(rows)
        pa = PerfAlerts(parse_config(RULES), store, ManualClock(T0))
        times = []
        for k in range(5):
            t = time.perf_counter()
            res = pa.evaluate(at=T0 + k)
            times.append(time.perf_counter() - t)
        # baseline: the same aggregates with one numpy call per series
        blk = store.query(list(ids.values()), T0 - 300, T0 + 1)
        t = time.perf_counter()
        for sid in ids.values():
            _, v = blk.of(sid)
            v.mean(), np.quantile(v, 0.95), v.sum() / 300, v.max(), len(v)
        return times, res, time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        results = {name: scenario(tmp, name, frac) for name, frac in (("quiet", 0.02), ("storm", 1.0))}

        # per-series rule kinds
        from perf_alerts.analytics.anomaly import anomaly_scores
        from perf_alerts.analytics.forecast import forecast
        from perf_alerts.analytics.trend import trend

        t1 = np.arange(1440) * 60.0
        y = 10 + rng.normal(0, 1, t1.size)
        per = {}
        for name, fn in [("trend (1,440 points)", lambda: trend(t1, y)),
                         ("anomaly (1,440 points)", lambda: anomaly_scores(y, t1)),
                         ("forecast (1,440 points, 6h)", lambda: forecast(t1, y, 6 * 3600))]:
            fn()
            s = time.perf_counter()
            n = 20
            for _ in range(n):
                fn()
            per[name] = (time.perf_counter() - s) / n

    print(f"series: {args.series:,}, samples in window per series: {args.samples}, rules: 5 (target <= 1 s per cycle)")
    for name, (times, res, loop) in results.items():
        what = "2% of the series breaching" if name == "quiet" else "values uniform 0–100: about half the series breach"
        print(f"{name:5}: evaluation cycle median {statistics.median(times):.3f} s, best {min(times):.3f} s over "
              f"{len(times)} cycles; {res.series:,} rule×series results, {len(res.active):,} alerts active ({what})")
        print(f"       baseline: the same aggregates as one numpy call per series, no I/O, no state: {loop:.3f} s")
    for name, sec in per.items():
        print(f"per-series {name}: {sec * 1000:.2f} ms")


if __name__ == "__main__":
    main()
