"""Backtest (issue 14 item 3): the replay's shortcuts give what the step-by-step path gives, its
report keeps its JSON form, a progress bar shows on a terminal only, and its memory does not grow
with the number of steps (measured on real processes).

The replay (`backtest(..., fast=True)`, the default) answers SLO burn sums from one read and
running sums and scores an anomaly rule's points many steps ahead; `fast=False` is the plain
path, every rule evaluated at every step exactly as a live cycle. Both must give the same
transitions, alert by alert, on stores that exercise every rule type and every alert-state rule
(for, keep_firing_for, recovery, cooldown), split SLO groups with one appearing late, a silent
series, downsampled rows, and a range and step off the sample grid.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import yaml

from perf_alerts.alerts.state import Transition
from perf_alerts.config import Rule, parse_config
from perf_alerts.rules.backtest import BacktestReport, backtest

H = 3600.0
DAY = 86400.0
T0 = 1_800_000_000.0          # the data's start
END = T0 + 2 * DAY            # its end

CFG = textwrap.dedent("""
    global: {evaluation_interval: 5m, retention: 30d, downsample_after: 7d, downsample_step: 5m}
    metrics:
      crew_task_seconds:     {unit: s, better: lower, kind: gauge}
      crew_llm_call_seconds: {unit: s, better: lower, kind: gauge}
      crew_task_failures:    {better: lower, kind: event}
      crew_cost_usd:         {unit: USD, better: lower, kind: event}
    rules:
      - {name: SlowTasks, type: threshold, metric: crew_task_seconds, aggregate: p95, window: 15m, op: ">",
         value: 60, recovery: 45, for: 10m, keep_firing_for: 10m, cooldown: 1h}
      - {name: SlowTasksAvg, type: threshold, metric: crew_task_seconds, aggregate: avg, window: 10m, op: ">",
         value: 50}
      - {name: Failing, type: threshold, metric: crew_task_failures, aggregate: sum, window: 30m, op: ">=",
         value: 3, keep_firing_for: 15m}
      - {name: Silent, type: absent, metric: crew_task_seconds, window: 40m, for: 10m}
      - {name: CostUp, type: trend, metric: crew_cost_usd, trend_measure: change_pct, lookback: 3h, op: ">",
         value: 50, for: 15m}
      - {name: LatencySlope, type: trend, metric: crew_task_seconds, lookback: 2h, op: ">", value: 5}
      - {name: LlmAnomaly, type: anomaly, metric: crew_llm_call_seconds, window: 10m, lookback: 1d,
         keep_firing_for: 10m, cooldown: 30m}
      - {name: Breach, type: forecast, metric: crew_task_seconds, op: ">", value: 60, horizon: 2h,
         lookback: 6h, min_probability: 0.5, for: 10m}
    slos:
      - {name: lat, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 0.95, by: [agent]}
      - {name: ok, kind: success, metric: crew_task_failures, total_metric: crew_task_seconds,
         objective: 0.97, by: [agent]}
      - name: cost
        kind: budget
        metric: crew_cost_usd
        limit: 5
        period: 1d
        by: [agent]
        burn_alerts:
          - {alert: CostBurn, factor: 3, long: 1h, short: 15m}
          - {alert: CostSlow, factor: 1, long: 1d, short: 2h}
""")


def _load(store: Any, seed: int) -> None:
    """Irregular samples of three agents over two days and a fourth from half-way (a series without
    the agent label too); agent a1 has an incident on the second day (slow and failing tasks, rising
    task times, expensive and slow LLM calls), agent a2 goes silent for two hours."""
    rng = np.random.default_rng(seed)
    metrics = ("crew_task_seconds", "crew_task_failures", "crew_cost_usd", "crew_llm_call_seconds")
    keys = []
    for agent in ("a0", "a1", "a2", "late", None):
        labels = {"crew": "c"} if agent is None else {"agent": agent, "crew": "c"}
        for m in metrics:
            keys.append((m, json.dumps(labels, sort_keys=True, separators=(",", ":")), agent))
    ids = store.series_ids([(m, lab) for m, lab, _ in keys])
    rows: list[tuple[int, float, float]] = []
    inc_lo, inc_hi = T0 + DAY + 6 * H, T0 + DAY + 10 * H
    for m, lab, agent in keys:
        lo = T0 + DAY if agent == "late" else T0
        t = lo + np.cumsum(rng.exponential(240.0, int((END - lo) / 150)))
        t = np.round(t[t <= END], 3)
        if agent == "a2":
            t = t[(t < T0 + DAY + 3 * H) | (t > T0 + DAY + 5 * H)]
        bad = (agent == "a1") & (t > inc_lo) & (t < inc_hi)
        ramp = np.clip((t - (inc_lo - 2 * H)) / (2 * H), 0.0, 1.0) * (agent == "a1") * (t < inc_hi)
        if m == "crew_task_seconds":
            v = rng.gamma(2.0, 10.0, t.size) + 45.0 * ramp + np.where(bad, 40.0, 0.0)
        elif m == "crew_task_failures":
            v = (rng.random(t.size) < np.where(bad, 0.5, 0.01)).astype(float)
        elif m == "crew_cost_usd":
            v = rng.gamma(2.0, 0.002, t.size) * np.where(bad, 40.0, 1.0)
        else:
            v = 2.0 + 0.5 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, 0.1, t.size)
            v = v + np.where(bad & (t < inc_lo + 20 * 60), 6.0, 0.0)
        sid = ids[(m, lab)]
        rows += [(sid, float(a), float(b)) for a, b in zip(t, v)]
    store.insert_rows(rows)


def _replay(store: Any, cfg: Any, fast: bool, **kw: Any) -> tuple[BacktestReport, list[tuple[Any, ...]]]:
    seen: list[tuple[Any, ...]] = []

    def record(rule: Rule, trs: list[Transition]) -> None:
        for t in trs:
            a = t.alert
            seen.append((rule.name, t.event, a.fingerprint, t.at, a.value, a.annotations, a.fired_value,
                         a.resolved_value))

    rep = backtest(store, cfg, fast=fast, on_transitions=record, **kw)
    return rep, seen


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert [g[:4] for g in got] == [w[:4] for w in want]
    for g, w in zip(got, want):
        for a, b in zip(g[4:], w[4:]):
            # an SLO's sums of values (a budget's spend) are summed in another order: to 1e-12
            assert a == b or a == pytest.approx(b, rel=1e-12), (g, w)


@pytest.mark.parametrize("variant", ["plain", "downsampled", "off-grid"])
def test_the_replay_gives_the_transitions_of_the_step_by_step_path(make_store: Any, store_url: str,
                                                                   variant: str) -> None:
    cfg = parse_config(CFG)
    store = make_store()
    _load(store, seed={"plain": 1, "downsampled": 2, "off-grid": 3}[variant])
    kw: dict[str, Any] = {"start": T0 + DAY + H, "end": T0 + DAY + 13 * H}
    if variant == "downsampled":
        # rows older than 30 hours stand for several samples (weights n, lo/hi): the SLOs' long windows
        # and the anomaly rule's history reach into them
        store.apply_retention(END, 30 * DAY, 30 * H, 300.0, kind_of=lambda m: cfg.metric_meta(m).kind)
        assert store.downsampled_until() is not None
    if variant == "off-grid":
        kw = {"start": T0 + DAY + H + 1234.567, "end": T0 + DAY + 13 * H - 321.0, "step": 420.0}
    fast_rep, fast = _replay(store, cfg, True, **kw)
    slow_rep, slow = _replay(store, cfg, False, **kw)
    _same(fast, slow)
    assert fast_rep == slow_rep
    # the stores exercise every rule type and the alert-state rules
    fired = {r.rule: r.alerts for r in slow_rep.rows}
    types = {r.type for r in slow_rep.rows if r.alerts > 0}
    assert types == {"threshold", "absent", "trend", "anomaly", "forecast", "slo_burn"}, fired
    assert {"resolved", "cancelled"} <= {t[1] for t in slow}, fired


def test_a_replay_window_moved_forward_holds_the_rows_a_query_reads(make_store: Any) -> None:
    """A replay reads the store once (`_ReplayStore`) and keeps each window's samples from one step
    to the next, reading only the new ones (`Evaluator(replay=True)`); the block must be what
    `store.query` reads, rows and weights, also while the window's start crosses from the
    downsampled past into the raw samples."""
    from perf_alerts.rules.backtest import _ReplayStore
    from perf_alerts.rules.evaluate import Evaluator
    from perf_alerts.store import Store

    cfg = parse_config(CFG)
    store = make_store()
    _load(store, seed=7)
    store.apply_retention(END, 30 * DAY, 30 * H, 300.0, kind_of=lambda m: cfg.metric_meta(m).kind)
    thinned = store.downsampled_until()
    assert thinned is not None
    replay = cast(Store, _ReplayStore(store))   # the store read once, answering from memory
    ev = Evaluator(replay, cfg, replay=True)
    series = store.list_series("crew_task_seconds")
    ids = [s.id for s in series]
    weighted = raw = 0
    for span in (2 * H, 7 * H):
        for at in np.arange(thinned - 3 * H, thinned + 9 * H, 420.0).tolist():
            ev.new_step()
            got = ev._block(series, at - span, at)
            want = store.query(ids, at - span, at)
            assert replay.last_timestamps(ids[:3], at) == store.last_timestamps(ids[:3], at)
            direct = replay.query(ids[1:4], at - span, at)
            np.testing.assert_array_equal(direct.ts, store.query(ids[1:4], at - span, at).ts)
            for a, b in ((got.series_id, want.series_id), (got.ts, want.ts), (got.value, want.value),
                         (got.n, want.n), (got.lo, want.lo), (got.hi, want.hi)):
                assert (a is None) == (b is None)
                if a is not None and b is not None:
                    np.testing.assert_array_equal(a, b)
            weighted += got.n is not None
            raw += got.n is None
    assert weighted and raw


def test_report_json_form_is_unchanged(tmp_path: Path) -> None:
    """`backtest --json`: the keys the command printed before the report became typed, in order."""
    from perf_alerts.store import Store

    cfg_path = tmp_path / "alerting.yaml"
    cfg_path.write_text(CFG)
    db = tmp_path / "b.db"
    store = Store(str(db))
    _load(store, seed=4)
    store.close()
    env = {**os.environ, "PERF_ALERTS_CONFIG": str(cfg_path), "PERF_ALERTS_DB": str(db)}
    # six hours around agent a1's incident
    cmd = [sys.executable, "-m", "perf_alerts", "backtest", "--json", "--start", "2027-01-16T13:00:00Z",
           "--end", "2027-01-16T19:00:00Z"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""    # no progress bar off a terminal
    doc = json.loads(p.stdout)
    assert list(doc) == ["start", "end", "step", "evaluations", "total_alerts", "rules"]
    assert (doc["start"], doc["end"], doc["step"], doc["evaluations"]) == (
        "2027-01-16T13:00:00Z", "2027-01-16T19:00:00Z", "5m", 73)
    assert [list(r) for r in doc["rules"]][0] == ["rule", "type", "severity", "alerts", "alerts_per_day",
                                                  "distinct_series", "firing_time", "error"]
    assert doc["total_alerts"] == sum(r["alerts"] for r in doc["rules"]) > 0
    bad = subprocess.run([*cmd[:-4], "--start", "2027-01-20T00:00:00Z", "--end", "2027-01-19T00:00:00Z"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert list(json.loads(bad.stdout)) == ["error", "rules"]


def _run_on_pty(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout piped): (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    got = b""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env) as p:
        os.close(slave)
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:   # the terminal's other end closed (Linux)
                    break
                if not chunk:
                    break
                got += chunk
            elif p.poll() is not None:
                break
        assert p.stdout is not None
        out = p.stdout.read().decode()
        p.wait(timeout=60)
    os.close(master)
    return p.returncode, out, got.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    from perf_alerts.store import Store

    cfg_path = tmp_path / "alerting.yaml"
    cfg_path.write_text(CFG)
    db = tmp_path / "b.db"
    store = Store(str(db))
    _load(store, seed=5)
    store.close()
    env = {**os.environ, "PERF_ALERTS_CONFIG": str(cfg_path), "PERF_ALERTS_DB": str(db), "COLUMNS": "100"}
    cmd = [sys.executable, "-m", "perf_alerts", "backtest", "--start", "2027-01-16T13:00:00Z",
           "--end", "2027-01-16T19:00:00Z"]
    code, out, term = _run_on_pty(cmd, env)
    assert code == 0, term
    assert "replaying" in term and "100%" in term      # the bar, on the terminal (stderr)
    assert out.startswith("replayed ") and "\x1b" not in out and "replaying" not in out
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == out


def _mem_cfg() -> str:
    """The memory test's rules: one of each kind of kept state (alert state, change_pct sums, anomaly
    detector, forecast fits, SLO sums) and fewer of the rest, so 2,200 steps take a few seconds."""
    doc = yaml.safe_load(CFG)
    doc["rules"] = [r for r in doc["rules"] if r["name"] not in ("SlowTasksAvg", "Failing", "LatencySlope")]
    doc["slos"] = [s for s in doc["slos"] if s["name"] != "ok"]
    return str(yaml.safe_dump(doc))


_PEAK = """
import resource, sys
from perf_alerts.config import parse_config
from perf_alerts.rules.backtest import backtest
from perf_alerts.store import Store
cfg = parse_config(open(sys.argv[1]).read())
store = Store(sys.argv[2])
start = float(sys.argv[3])
rep = backtest(store, cfg, start=start, end=start + (int(sys.argv[4]) - 1) * 60.0, step=60.0)
assert rep.evaluations == int(sys.argv[4]), rep
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_is_flat_in_the_number_of_steps(tmp_path: Path) -> None:
    """Peak RSS of a replay of 2,000 one-minute steps is within 20 % of one of 200 steps over the same
    store (each in a fresh process). The replay used to keep every step's samples."""
    from perf_alerts.store import Store

    cfg_path = tmp_path / "alerting.yaml"
    cfg_path.write_text(_mem_cfg())
    db = tmp_path / "m.db"
    store = Store(str(db))
    _load(store, seed=6)
    store.close()
    start = T0 + 2 * H
    peaks = {}
    for steps in (200, 2000):
        p = subprocess.run([sys.executable, "-c", _PEAK, str(cfg_path), str(db), str(start), str(steps)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        peaks[steps] = int(p.stdout.split()[-1])
    assert peaks[2000] <= 1.2 * peaks[200], peaks
