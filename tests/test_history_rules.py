"""History-based rules with kept state (issue 14 item 7): the incremental results equal the batch
computation, the state survives a restart (in the store, both backends) and a changed rule
rebuilds it."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pytest

from perf_alerts.analytics.anomaly import StreamingDetector, anomaly_scores
from perf_alerts.analytics.streaming import LikelihoodBank, lag_values
from perf_alerts.config import parse_config
from perf_alerts.model import Sample
from perf_alerts.rules.evaluate import Evaluator
from perf_alerts.rules.history import AnomalyHistory

T0 = 1_800_000_000.0


def _series(rng: np.random.Generator, t: np.ndarray, k: int) -> np.ndarray:
    """A daily wave with noise, a level shift and a spike (what the detector must handle)."""
    x = 10 + 3 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0, 0.3 + 0.1 * k, t.size)
    x[t.size // 2:] += 0.7 * k
    x[(3 * t.size) // 4 + 7 * k] += 6 + k
    return x


@pytest.mark.parametrize("max_period", [None, 3 * 86400.0, 3600.0])
def test_bank_scores_equal_the_batch_form(max_period: float | None) -> None:
    """The vectorised streaming detector, fed in uneven chunks, gives `anomaly_scores`' scores
    (daily and weekly views included: 10 days of 5-minute points, irregular timestamps)."""
    rng = np.random.default_rng(7)
    S, n = 4, 2900
    ts = [T0 + np.cumsum(rng.uniform(240, 360, n)) for _ in range(S)]
    xs = [_series(rng, t, k) for k, t in enumerate(ts)]
    bank = LikelihoodBank(S, max_period=max_period)
    assert bank.families == (["plain", "daily", "weekly"] if max_period is None else
                             ["plain", "daily"] if max_period > 86400 else ["plain"])
    got = np.zeros((S, n))
    cols = np.arange(S)
    a = 0
    for size in [1, 5, 300, 1, 2000, 10_000]:
        b = min(n, a + size)
        if a >= b:
            break
        X = np.array([x[a:b] for x in xs])
        T = np.array([t[a:b] for t in ts])
        lags = {f: np.array([lag_values(t, x, t[a:b], bank.periods[f], bank.p["lag_tol"])
                             for t, x in zip(ts, xs)]) for f in bank.families[1:]}
        got[:, a:b] = bank.run(cols, X, T, np.ones(X.shape, bool), lags)
        a = b
    for k in range(S):
        if max_period is None:
            ref = anomaly_scores(xs[k], ts[k])
        else:  # the batch form over a lookback of max_period: the views that fit in it
            from perf_alerts.analytics.anomaly import Likelihood

            det = Likelihood()
            det.families = {f: p for f, p in Likelihood.families.items() if f in bank.families}  # type: ignore[misc]
            ref = np.clip(det.batch(xs[k], ts[k]), 0, 1)
        assert np.abs(got[k] - ref).max() < 1e-9
    assert got.max() > 0.5  # the data does make the detector fire


def test_bank_equals_the_one_point_streaming_detector() -> None:
    rng = np.random.default_rng(3)
    t = T0 + np.arange(1500) * 60.0
    x = _series(rng, t, 2)
    sd = StreamingDetector()
    ref = np.array([sd.update(v, tt) for v, tt in zip(x, t)])
    bank = LikelihoodBank(1)
    got = bank.run(np.arange(1), x[None, :], t[None, :], np.ones((1, t.size), bool))
    assert np.abs(got[0] - ref).max() < 1e-9


RULE = """
rules:
  - name: Odd
    type: anomaly
    metric: lat
    window: 5m
    lookback: 26h
"""


def _load(store: Any, t: np.ndarray, xs: list[np.ndarray]) -> None:
    store.insert_samples(Sample("lat", {"agent": f"a{k}"}, float(tt), float(v))
                         for k, x in enumerate(xs) for tt, v in zip(t, x))


def _batch_peak(store: Any, sid: int, origin: float, at: float, window: float,
                detector: str = "default") -> tuple[float, float]:
    """What the batch form says at `at` for a state begun at `origin`: the peak score in the window."""
    blk = store.query([sid], origin, at)
    t, v = blk.of(sid)
    s = anomaly_scores(v, t, detector=detector)
    recent = t > at - window
    i = int(np.argmax(np.where(recent, s, -1.0)))
    return float(s[i]), float(t[i])


@pytest.mark.parametrize("detector", ["default", "robust"])  # both keep their state between cycles
def test_anomaly_rule_cycles_equal_the_batch_form_and_survive_a_restart(make_store: Any, detector: str) -> None:
    rng = np.random.default_rng(11)
    t = T0 + np.arange(0, 2 * 86400, 60.0)
    xs = [_series(rng, t, k) for k in range(3)]
    store = make_store()
    _load(store, t, xs)
    cfg = parse_config(textwrap.dedent(RULE) + f"    detector: {detector}\n")
    rule = cfg.rules[0]
    assert AnomalyHistory.supports(rule)
    first = T0 + 30 * 3600.0
    origin = first - rule.lookback
    ev = Evaluator(store, cfg, keep_state=True)
    ats = [first + k * 600.0 for k in range(12)] + [first + 6 * 3600.0 + 31.0, first + 17 * 3600.0]
    seen_high = False
    for i, at in enumerate(ats):
        if i == 6:  # a restart: another process, another store handle, the state read back from the store
            ev = Evaluator(make_store(), cfg, keep_state=True)
        ev.new_cycle()
        res = ev.evaluate(rule, at)
        assert len(res) == 3
        sids = {s.labels["agent"]: s.id for s in store.list_series("lat")}
        for r in res:
            score, when = _batch_peak(store, sids[r.labels["agent"]], origin, at, rule.window, detector)
            assert r.value == pytest.approx(score, abs=1e-9)
            assert r.detail["observed_at"] == when
            seen_high |= score >= 0.5
    # the spikes were inside the replayed cycles (the robust form, scaled for heavy tails, scores
    # this Gaussian-noise spike under the alert level: equality above is what is tested for it)
    assert seen_high or detector == "robust"


def test_changed_rule_rebuilds_from_history(make_store: Any) -> None:
    rng = np.random.default_rng(5)
    t = T0 + np.arange(0, 20 * 3600, 60.0)
    xs = [_series(rng, t, k) for k in range(2)]
    store = make_store()
    _load(store, t, xs)
    cfg = parse_config(textwrap.dedent(RULE))
    at1, at2 = T0 + 10 * 3600.0, T0 + 15 * 3600.0
    Evaluator(store, cfg, keep_state=True).evaluate(cfg.rules[0], at1)
    assert store.rule_state_load("Odd", "nope") == {}
    changed = parse_config(textwrap.dedent(RULE).replace("lookback: 26h", "lookback: 8h"))
    res = Evaluator(store, changed, keep_state=True).evaluate(changed.rules[0], at2)
    sid = {s.labels["agent"]: s.id for s in store.list_series("lat")}
    for r in res:  # as if new: the state begins at at2 - 8h, not at at1 - 26h
        assert r.value == pytest.approx(_batch_peak(store, sid[r.labels["agent"]], at2 - 8 * 3600, at2, 300)[0],
                                        abs=1e-9)
    (only,) = [k for k in [store.rule_state_load("Odd", h) for h in _keys(store)] if k]
    assert -1 in only  # the old parameters' state is gone, one state kept


def _keys(store: Any) -> list[str]:
    from perf_alerts.rules.history import state_key

    return [state_key(parse_config(textwrap.dedent(RULE).replace("26h", lb)).rules[0], "detector", "sensitivity",
                      "lookback", "window") for lb in ("26h", "8h")]


def test_rule_state_store_roundtrip(make_store: Any) -> None:
    store = make_store()
    store.rule_state_save("R", "h1", [(-1, 5.0, "abc"), (7, 6.0, "x")])
    store.rule_state_save("R", "h1", [(7, 8.0, "y")], drop=[-1])
    assert store.rule_state_load("R", "h1") == {7: (8.0, "y")}
    store.rule_state_save("R", "h2", [(1, 1.0, "z")], fresh=True)
    assert store.rule_state_load("R", "h1") == {}
    store.rule_state_clear("R")
    assert store.rule_state_load("R", "h2") == {}


FORECAST = """
rules:
  - name: Filling
    type: forecast
    metric: disk
    op: ">"
    value: 90
    horizon: 6h
    lookback: 12h
"""


def _forecast_agreement(store: Any, n_series: int, cycles: int, step: float) -> tuple[int, int, list[float], int]:
    """Evaluate a forecast rule every `step` over fresh data, kept fits against the batch outlook.
    Returns (cycles × series compared, status agreements, |breach time differences| in s, refit cycles)."""
    from perf_alerts.analytics.forecast import breach_outlook
    from perf_alerts.rules.history import ForecastHistory

    rng = np.random.default_rng(2)
    slopes = np.linspace(0.0, 10.0, n_series)         # % per hour; the fast ones breach within 6 h
    end = T0 + cycles * step
    t = np.arange(T0 - 12 * 3600.0, end + 1, 60.0)
    base = 50 + np.outer(slopes, (t - T0) / 3600.0) + rng.normal(0, 0.8, (n_series, t.size))
    cfg = parse_config(textwrap.dedent(FORECAST))
    rule = cfg.rules[0]
    ev = Evaluator(store, cfg, keep_state=True)
    upto = -np.inf
    compared = agree = refits = 0
    diffs: list[float] = []
    for c in range(cycles + 1):
        at = T0 + c * step
        sel = (t > upto) & (t <= at)
        store.insert_samples(Sample("disk", {"host": f"h{k}"}, float(tt), float(v))
                             for k in range(n_series) for tt, v in zip(t[sel], base[k, sel]))
        upto = at
        ev.new_cycle()
        got = {r.labels["host"]: r for r in ev.evaluate(rule, at)}
        hist = ev._history["Filling"]
        assert isinstance(hist, ForecastHistory)
        for s in store.list_series("disk"):
            ts, v = store.query([s.id], at - rule.lookback, at).of(s.id)
            ref = breach_outlook(ts, v, at, rule.horizon, 90.0, ">", 0.5)
            r = got[s.labels["host"]]
            assert ref is not None
            compared += 1
            agree += r.detail["status"] == ref.status
            if hist.fits[s.id].fit_at == at:   # refitted this cycle: exactly the batch outlook
                refits += 1
                assert r.detail["status"] == ref.status and r.value == ref.value and r.detail["breach_at"] == ref.breach_at
            if r.detail["status"] == ref.status == "predicted":
                diffs.append(abs(r.detail["breach_at"] - ref.breach_at))
    return compared, agree, diffs, refits


def test_forecast_rule_kept_fits_agree_with_the_batch_outlook(make_store: Any) -> None:
    """Refitted series equal the batch outlook exactly; between refits (a fit at most an hour old,
    judged from the newest sample) the status agrees in >= 95 % of (series, cycle) pairs and a
    predicted breach time is within 10 minutes of the batch's (the approximation's stated tolerance;
    measured: all statuses agree, breach times within 45 s)."""
    compared, agree, diffs, refits = _forecast_agreement(make_store(), 12, 14, 300.0)
    assert refits >= 12 + 6   # every series fitted at first, some refitted during the run
    assert agree / compared >= 0.95, (agree, compared)
    assert len(diffs) >= 20 and max(diffs) <= 600.0, sorted(diffs)[-5:]


TREND = """
rules:
  - name: CostDrift
    type: trend
    metric: cost
    trend_measure: change_pct
    lookback: 2h
    op: ">"
    value: 25
"""


def test_change_pct_trend_kept_sums_equal_the_batch_trend(make_store: Any) -> None:
    """Cycles at uneven steps (and one longer than the lookback: a fresh state) give the batch
    `trend(...).change_pct` of both windows; the rule's holding series carry the full trend."""
    from perf_alerts.analytics.trend import trend

    rng = np.random.default_rng(4)
    t = T0 + np.cumsum(rng.uniform(30, 200, 3000))
    store = make_store()
    xs = [1.0 + 0.2 * k * (t > T0 + 4 * 3600) + rng.normal(0, 0.05, t.size) for k in range(3)]
    store.insert_samples(Sample("cost", {"agent": f"a{k}"}, float(tt), float(v))
                         for k, x in enumerate(xs) for tt, v in zip(t, x))
    cfg = parse_config(textwrap.dedent(TREND))
    rule = cfg.rules[0]
    ev = Evaluator(store, cfg, keep_state=True)
    sids = {s.labels["agent"]: s.id for s in store.list_series("cost")}
    fired = 0
    ats = [T0 + 3 * 3600.0 + k * 437.0 for k in range(30)] + [T0 + 12 * 3600.0, T0 + 12 * 3600.0 + 60]
    for i, at in enumerate(ats):
        if i == 15:
            ev = Evaluator(make_store(), cfg, keep_state=True)   # a restart: the sums read back
        ev.new_cycle()
        got = {r.labels["agent"]: r for r in ev.evaluate(rule, at)}
        for agent, sid in sids.items():
            ts, v = store.query([sid], at - 2 * rule.lookback, at).of(sid)
            cur = ts > at - rule.lookback
            ref = trend(ts[cur], v[cur], previous=v[~cur]).change_pct
            if ref is None:
                assert agent not in got
                continue
            r = got[agent]
            assert r.value == pytest.approx(ref, rel=1e-9, abs=1e-9)
            assert r.active == (ref > 25)
            if r.active:
                fired += 1
                assert r.detail["trend"]["verdict"] in ("worsening", "improving", "changing", "stable")
    assert fired > 0


def test_forecast_fits_survive_a_restart(make_store: Any) -> None:
    """A second process continues from the stored fits: no refit before they are due, and the
    same outlooks as the process that made them."""
    from perf_alerts.rules.history import ForecastHistory

    rng = np.random.default_rng(8)
    t = np.arange(T0 - 12 * 3600.0, T0 + 1800.0 + 1, 60.0)
    store = make_store()
    store.insert_samples(Sample("disk", {"host": f"h{k}"}, float(tt), float(50 + k * (tt - T0) / 3600.0 + rng.normal(0, 0.5)))
                         for k in range(6) for tt in t)
    cfg = parse_config(textwrap.dedent(FORECAST))
    rule = cfg.rules[0]
    a = Evaluator(store, cfg, keep_state=True)
    a.evaluate(rule, T0)
    b = Evaluator(make_store(), cfg, keep_state=True)
    for at in (T0 + 600.0, T0 + 1200.0):
        ra, rb = a.evaluate(rule, at), b.evaluate(rule, at)
        assert [(r.labels, r.value, r.active, r.detail) for r in ra] == [(r.labels, r.value, r.active, r.detail) for r in rb]
    ha, hb = a._history["Filling"], b._history["Filling"]
    assert isinstance(ha, ForecastHistory) and isinstance(hb, ForecastHistory)
    assert {s: f.fit_at for s, f in ha.fits.items()} == {s: f.fit_at for s, f in hb.fits.items()}


def test_a_small_step_back_keeps_the_state_a_replay_rebuilds_it(make_store: Any) -> None:
    from perf_alerts.rules.history import AnomalyHistory

    rng = np.random.default_rng(9)
    t = T0 + np.arange(0, 10 * 3600, 60.0)
    store = make_store()
    _load(store, t, [_series(rng, t, 1)])
    cfg = parse_config(textwrap.dedent(RULE))
    rule = cfg.rules[0]
    ev = Evaluator(store, cfg)
    ev.evaluate(rule, T0 + 8 * 3600.0)
    h = ev._history["Odd"]
    assert isinstance(h, AnomalyHistory)
    origin = h.origin.copy()
    (r,) = ev.evaluate(rule, T0 + 8 * 3600.0 - 120.0)          # another replica's clock, 2 minutes behind
    assert (h.origin == origin).all() and r.detail["observed_at"] <= T0 + 8 * 3600.0 - 120.0
    (r,) = ev.evaluate(rule, T0 + 4 * 3600.0)                   # a replay from earlier: rebuilt
    assert (h.origin == T0 + 4 * 3600.0 - rule.lookback).all()
    sid = store.list_series("lat")[0].id
    assert r.value == pytest.approx(_batch_peak(store, sid, T0 + 4 * 3600.0 - rule.lookback, T0 + 4 * 3600.0, 300)[0],
                                    abs=1e-9)
