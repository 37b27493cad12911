"""Backtest: replay stored history through the rules with a scratch alert state.

Nothing is written to the live alert table: this is an alert-noise preview of what the
rules would have raised, per rule, before a rule is deployed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from perf_alerts.alerts.state import apply_results
from perf_alerts.config import Config
from perf_alerts.model import Alert, AlertState
from perf_alerts.rules.evaluate import Evaluator, SeriesIndex
from perf_alerts.store import Store
from perf_alerts.timeutil import format_duration, iso

MAX_STEPS = 20_000


def backtest(store: Store, config: Config, start: float | None = None, end: float | None = None,
             step: float | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    span = store.time_range()
    if span is None and (start is None or end is None):
        # (rules on a Prometheus source replay from the server: they need only the time range)
        return {"error": "the store holds no samples to replay (give --start and --end to replay rules "
                         "on a Prometheus source)", "rules": []}
    start = span[0] if start is None and span is not None else start
    end = span[1] if end is None and span is not None else end
    assert start is not None and end is not None
    if end <= start:
        return {"error": f"nothing to replay: the range {iso(start)} .. {iso(end)} is empty", "rules": []}
    step = step or config.global_.evaluation_interval
    n_steps = int((end - start) // step) + 1
    if n_steps > MAX_STEPS:
        step = (end - start) / (MAX_STEPS - 1)
        n_steps = MAX_STEPS
    evaluator = Evaluator(store, config, SeriesIndex(store))
    rules_all = config.alerting_rules()  # the SLOs' burn-rate alerts too: what an evaluation runs
    state: dict[str, dict[str, Alert]] = {r.name: {} for r in rules_all}
    fired: dict[str, int] = defaultdict(int)
    firing_seconds: dict[str, float] = defaultdict(float)
    series_hit: dict[str, set[str]] = defaultdict(set)
    errors: dict[str, str] = {}
    for i in range(n_steps):
        at = start + i * step
        evaluator.new_step()  # memory stays flat in the number of steps
        for rule in rules_all:
            if rule.name in errors:
                continue
            try:
                results = evaluator.evaluate(rule, at)
            except Exception as e:  # report the broken rule, keep replaying the others
                errors[rule.name] = f"{type(e).__name__}: {e}"
                continue
            save, delete, trs = apply_results(rule, results, state[rule.name], at)
            cur = state[rule.name]
            for fp in delete:
                cur.pop(fp, None)
            for a in save:
                cur[a.fingerprint] = a
            for t in trs:
                if t.event == "firing":
                    fired[rule.name] += 1
                    series_hit[rule.name].add(t.alert.fingerprint)
            firing_seconds[rule.name] += step * sum(1 for a in cur.values() if a.state == AlertState.FIRING)
        if progress is not None:
            progress(i + 1, n_steps)
    days = max((end - start) / 86400.0, 1e-9)
    rules = [
        {
            "rule": r.name, "type": r.type, "severity": r.severity.value, "alerts": fired[r.name],
            "alerts_per_day": round(fired[r.name] / days, 2), "distinct_series": len(series_hit[r.name]),
            "firing_time": format_duration(firing_seconds[r.name]), "error": errors.get(r.name),
        }
        for r in rules_all
    ]
    return {"start": iso(start), "end": iso(end), "step": format_duration(step), "evaluations": n_steps,
            "total_alerts": sum(fired.values()), "rules": rules}
