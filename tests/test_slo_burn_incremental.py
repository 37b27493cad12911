"""SLO burn-rate rules from kept buckets (rules/sloburn.py) give what the from-scratch computation
(`analytics.slo.burn_alert_results`) gives, cycle after cycle: latency, success and budget SLOs,
split groups (one appearing late, one without the split label), evaluation times off the bucket
grid, downsampled rows (weights n) before and during the run, a restart that reads the state back
from the store, and a replay that goes back in time. SQLite and PostgreSQL (`make_store`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from perf_alerts.analytics.slo import burn_alert_results
from perf_alerts.config import parse_config
from perf_alerts.rules.evaluate import Evaluator
from perf_alerts.rules.sloburn import BUCKET, SLOBurnState

H = 3600.0
DAY = 86400.0
T0 = 1_800_000_000.0

CFG = """
slos:
  - {name: lat, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 0.95, by: [agent]}
  - {name: ok, kind: success, metric: crew_task_failures, total_metric: crew_task_seconds, objective: 0.97,
     by: [agent]}
  - {name: whole, kind: latency, metric: crew_task_seconds, threshold: 40, objective: 0.9}
  - name: cost
    kind: budget
    metric: crew_cost_usd
    limit: 5
    period: 1d
    by: [agent]
    burn_alerts:
      - {alert: CostBurn, factor: 3, long: 1h, short: 15m}
      - {alert: CostSlow, factor: 1, long: 2d, short: 6h}
"""


def _load(store: Any, rng: np.random.Generator, start: float, end: float) -> None:
    """Irregular samples of three agents (a fourth from half-way, one series without the agent label),
    an incident (slow, failing tasks and high spend) for agent a1 in the last day."""
    keys = []
    for agent in ("a0", "a1", "a2", "late", None):
        lab = {"crew": "c"} if agent is None else {"agent": agent, "crew": "c"}
        for m in ("crew_task_seconds", "crew_task_failures", "crew_cost_usd"):
            keys.append((m, json.dumps(lab, sort_keys=True, separators=(",", ":")), agent))
    ids = store.series_ids([(m, lab) for m, lab, _ in keys])
    rows: list[tuple[int, float, float]] = []
    for m, lab, agent in keys:
        lo = start + (end - start) / 2 if agent == "late" else start
        t = lo + np.cumsum(rng.exponential(150.0, int((end - lo) / 100)))
        t = np.round(t[t <= end], 3)
        incident = (agent == "a1") & (t > end - DAY) & (t < end - DAY + 8 * H)
        if m == "crew_task_seconds":
            v = rng.gamma(2.0, 12.0, t.size) + np.where(incident, 80.0, 0.0)
        elif m == "crew_task_failures":
            v = (rng.random(t.size) < np.where(incident, 0.5, 0.01)).astype(float)
        else:
            v = rng.gamma(2.0, 0.002, t.size) * np.where(incident, 40.0, 1.0)
        sid = ids[(m, lab)]
        rows += [(sid, float(a), float(b)) for a, b in zip(t, v)]
    store.insert_rows(rows)


def _same(got: list[Any], want: list[Any]) -> None:
    assert [r.labels for r in got] == [r.labels for r in want]
    for g, w in zip(got, want):
        assert g.active == w.active and g.holding == w.active, (g.labels, g.detail, w.detail)
        assert g.value == pytest.approx(w.value, rel=1e-12, abs=1e-12)
        assert g.detail == w.detail


def _check(ev: Evaluator, cfg: Any, at: float) -> int:
    ev.new_cycle()
    fired = 0
    for rule in cfg.slo_rules:
        got = ev.evaluate(rule, at)
        want = burn_alert_results(ev.store, cfg, rule.name, at)
        _same(got, want)
        fired += sum(r.active for r in got)
    return fired


def test_kept_buckets_equal_the_computation_from_scratch(make_store: Any) -> None:
    rng = np.random.default_rng(3)
    store = make_store()
    end = T0 + 2 * DAY
    _load(store, rng, T0 - 5 * DAY, end)
    # rows older than 4 days before the end already stand for several samples (weights n)
    rep = store.apply_retention(end - 2 * DAY, retention=60 * DAY, downsample_after=2 * DAY, step=300.0)
    assert rep.downsampled > 0
    cfg = parse_config(CFG, "slo.yaml", env={})
    ev = Evaluator(store, cfg, keep_state=True)
    fired = 0
    # cycles a minute apart, off the bucket grid, through the incident; a restart half-way
    ats = [end - 30 * H + 61.37 + k * 67.0 for k in range(16)] + [end - DAY + k * 1800.0 + 13.0 for k in range(15)]
    for i, at in enumerate(ats):
        if i == 16:
            ev = Evaluator(make_store(), cfg, keep_state=True)   # another process: the state from the store
        fired += _check(ev, cfg, at)
    assert fired > 0   # the incident fired burn alerts (and the compliance facts were read)
    # retention thins into the kept buckets: the state is counted again, the results stay the same
    rep = store.apply_retention(end, retention=60 * DAY, downsample_after=DAY, step=300.0)
    assert rep.downsampled > 0
    for at in (end - 600.0, end - 10.5, end):
        _check(ev, cfg, at)
    # a replay from further back starts over; on the bucket grid exactly
    for at in (end - 2 * DAY, end - 2 * DAY + BUCKET, end - 2 * DAY + 7 * BUCKET):
        _check(ev, cfg, at)


def test_state_rows_in_the_store_follow_the_window(make_store: Any) -> None:
    rng = np.random.default_rng(4)
    store = make_store()
    _load(store, rng, T0 - 4 * DAY, T0)
    cfg = parse_config(CFG, "slo.yaml", env={})
    ev = Evaluator(store, cfg, keep_state=True)
    for at in (T0 - DAY, T0 - DAY + 3 * H):
        _check(ev, cfg, at)
        rows = store.rule_state_load("slo:lat", SLOBurnState(cfg.slos[0]).key)
        buckets = sorted(k for k in rows if k >= 0)
        assert buckets[-1] - buckets[0] + 1 == len(buckets)
        assert (at - 3 * DAY) - BUCKET <= buckets[0] * BUCKET <= at - 3 * DAY + BUCKET
    # a changed SLO (another threshold) finds no state and rebuilds; the old rows go
    cfg2 = parse_config(CFG.replace("threshold: 60", "threshold: 50"), "slo.yaml", env={})
    ev2 = Evaluator(store, cfg2, keep_state=True)
    _check(ev2, cfg2, T0 - DAY + 3 * H + 60.0)
    assert not store.rule_state_load("slo:lat", SLOBurnState(cfg.slos[0]).key)
    assert store.rule_state_load("slo:lat", SLOBurnState(cfg2.slos[0]).key)
