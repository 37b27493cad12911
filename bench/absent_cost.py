"""The `absent` rule's cost against the length of history (issue 14, item 6).

Two stores of N series (default 1,000) with 1-minute samples: 1 day and 30 days of history
(one series in ten stopped reporting an hour before the evaluation time, so the rule fires
for some). On each, one evaluation of an `absent` rule over all the series is timed
(median and range of --repeat runs, alternating), with the store's current last-sample
lookup (one index seek per series) and, as the baseline in the same run, the previous query
(`SELECT series_id, MAX(ts) … WHERE series_id IN (…) AND ts <= ? GROUP BY series_id`,
which reads every sample up to the evaluation time). Both must give the same results.

    python bench/absent_cost.py [--series 1000] [--days 1 30] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from perf_alerts.config import parse_config
from perf_alerts.rules.evaluate import Evaluator
from perf_alerts.store import Store

DAY = 86400.0
T0 = 1_800_000_000.0
RULE = """
rules:
  - name: HeartbeatMissing
    type: absent
    metric: heartbeat
    window: 10m
"""


def build(path: Path, n_series: int, days: float) -> tuple[Store, float]:
    t = time.perf_counter()
    store = Store(path)
    ids = list(store.series_ids([("heartbeat", json.dumps({"agent": f"a{i}"})) for i in range(n_series)]).values())
    ts = np.arange(T0 - days * DAY, T0, 60.0)
    stale = ts[ts <= T0 - 3600.0]
    batch: list[tuple[int, float, float]] = []
    for k, sid in enumerate(ids):
        tk = stale if k % 10 == 0 else ts
        batch.extend(zip([sid] * len(tk), tk.tolist(), [1.0] * len(tk)))
        if len(batch) >= 2_000_000:
            store.insert_rows(batch)
            batch = []
    store.insert_rows(batch)
    return store, time.perf_counter() - t


def old_last_timestamps(store: Store, series_ids: Sequence[int], before: float) -> dict[int, float]:
    """The previous `Store.last_timestamps`, kept as the baseline."""
    out: dict[int, float] = {}
    ids = [int(i) for i in series_ids]
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        q = ("SELECT series_id, MAX(ts) FROM samples WHERE series_id IN (%s) AND ts <= ? GROUP BY series_id"
             % ",".join("?" * len(chunk)))
        for sid, ts in store.con.execute(q, (*chunk, before)):
            if ts is not None:
                out[int(sid)] = float(ts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=float, nargs="+", default=[1.0, 30.0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where to build the stores (default: a temporary directory)")
    args = ap.parse_args()
    cfg = parse_config(RULE)
    rule = cfg.rules[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for days in args.days:
            store, built = build(Path(tmp) / f"absent_{days:g}d.db", args.series, days)
            n = store.sample_count()
            ev = Evaluator(store, cfg)
            new_fn = store.last_timestamps
            times: dict[str, list[float]] = {"index seek per series": [], "baseline MAX … GROUP BY": []}
            results = {}
            for _ in range(args.repeat):
                for name in times:
                    if name.startswith("baseline"):
                        store.last_timestamps = lambda ids, before: old_last_timestamps(store, ids, before)  # type: ignore[method-assign]
                    else:
                        store.last_timestamps = new_fn  # type: ignore[method-assign]
                    t = time.perf_counter()
                    res = ev.evaluate(rule, T0)
                    times[name].append(time.perf_counter() - t)
                    results[name] = [(r.labels, r.value, r.active) for r in res]
            store.last_timestamps = new_fn  # type: ignore[method-assign]
            a, b = results.values()
            assert a == b, "the two lookups disagree"
            firing = sum(1 for _, _, act in a if act)
            print(f"{args.series} series × {days:g} d of 1-minute history ({n:,} samples, built in {built:.0f} s); "
                  f"one `absent` evaluation, {firing} firing, {args.repeat} runs:")
            for name, ts in times.items():
                print(f"  {name:26s} median {statistics.median(ts) * 1000:8.1f} ms  "
                      f"range {min(ts) * 1000:.1f}–{max(ts) * 1000:.1f} ms")
            store.close()


if __name__ == "__main__":
    main()
