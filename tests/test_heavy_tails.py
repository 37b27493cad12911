"""The default anomaly detector on heavy-tailed noise (issue 17, item 2).

LLM latencies and token counts are heavy-tailed: a detector calibrated on
Gaussian noise pages on their ordinary outliers.  These tests feed iid noise
around a level of 100 (Student-t with 3 degrees of freedom, lognormal with
sigma 0.5 and 1.0, numpy Generator seeds) and check the false-alarm rate at
the default threshold, and that a x3 level shift and a x4 spike of the
metric are still caught within 5 points.

The issue's target, at most one false alarm per 20,000 points, is met by
``detector="robust"`` at the default sensitivity, NOT by the default detector
(test_issue_target_one_per_20000 is a strict xfail): the default keeps NAB's
sensitivity, and real metrics are as heavy-tailed as this noise (see
analytics.anomaly).  For the default the bounds are the measured rates with a
margin, so a change that makes heavy tails worse fails.
Synthetic data only; the whole file runs in about 10 s on a loaded machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from perf_alerts.analytics import anomaly as an

THR = an.DEFAULT_ANOMALY_THRESHOLD
N, WARM = 50_000, 500
SEEDS = range(1000, 1004)


def noise(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "t3":
        return rng.standard_t(3, n)
    sigma = {"lognormal0.5": 0.5, "lognormal1.0": 1.0}[kind]
    return rng.lognormal(0.0, sigma, n)


def false_alarms(kind: str, detector: str = "default") -> tuple[int, int]:
    alerts = total = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = 100.0 + (rng.standard_normal(N) if kind == "gauss" else noise(kind, rng, N))
        s = an.anomaly_scores(x, detector=detector)
        alerts += int((s[WARM:] >= THR).sum())
        total += N - WARM
    return alerts, total


# measured on these seeds (4 x 49,500 points): t3 1 per 2,100 (before the
# tail calibration: 1 per 1,900), lognormal 0.5 1 per 4,200 (3,000),
# lognormal 1.0 1 per 1,130 (920).  Gaussian noise: 1 per 99,000.
MEASURED_BOUND = {"t3": 1_800, "lognormal0.5": 3_500, "lognormal1.0": 950}


@pytest.mark.parametrize("kind", sorted(MEASURED_BOUND))
def test_false_alarm_rate_on_heavy_tails(kind: str) -> None:
    alerts, total = false_alarms(kind)
    assert alerts <= total / MEASURED_BOUND[kind], (kind, alerts, total)


@pytest.mark.xfail(strict=True, reason="issue 17 item 2 not met by the default detector: ~1 false "
                                        "alarm per 1,100-4,600 points on heavy tails; detector "
                                        "'robust' meets it but scores 41 on NAB dev against 63")
def test_issue_target_one_per_20000() -> None:
    for kind in MEASURED_BOUND:
        alerts, total = false_alarms(kind)
        assert alerts <= total / 20_000, (kind, alerts, total)


@pytest.mark.parametrize("kind", [*sorted(MEASURED_BOUND), "gauss"])
def test_robust_detector_meets_one_per_20000(kind: str) -> None:
    """Measured on these seeds: Gaussian 0 alerts, t3 6, lognormal 0.5 0,
    lognormal 1.0 4 over 198,000 points (the bound allows 9)."""
    alerts, total = false_alarms(kind, "robust")
    assert alerts <= total / 20_000, (kind, alerts, total)


@pytest.mark.parametrize("detector", ["default", "robust"])
@pytest.mark.parametrize("kind", sorted(MEASURED_BOUND))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shift_and_spike_still_caught(kind: str, seed: int, detector: str) -> None:
    """A x3 level shift and a x4 spike of the metric alert within 5 points,
    on top of the same heavy-tailed noise (different places per seed)."""
    rng = np.random.default_rng(seed)
    x = 100.0 + noise(kind, rng, 6_000)
    k = 3_000 + 97 * seed
    spike = x.copy()
    spike[k] *= 4.0
    assert an.anomaly_scores(spike, detector=detector)[k:k + 5].max() >= THR, (kind, seed)
    shift = x.copy()
    shift[k:] *= 3.0
    assert an.anomaly_scores(shift, detector=detector)[k:k + 5].max() >= THR, (kind, seed)


def test_robust_streaming_bank_equals_batch() -> None:
    """Anomaly rules score through the vectorised bank: same scores as the batch form."""
    from perf_alerts.analytics.streaming import LikelihoodBank

    rng = np.random.default_rng(11)
    xs = np.array([100.0 + noise(k, rng, 2_500) for k in sorted(MEASURED_BOUND)])
    xs[:, 2_000:] *= 3.0
    ts = 1.8e9 + 60.0 * np.tile(np.arange(xs.shape[1]), (xs.shape[0], 1))
    bank = LikelihoodBank(xs.shape[0], detector="robust", max_period=3600.0)
    got = bank.run(np.arange(xs.shape[0]), xs, ts, np.ones(xs.shape, bool))
    for row, x in zip(got, xs):
        ref = an.anomaly_scores(x, detector="robust")
        assert np.abs(row - ref).max() < 1e-9
        assert ref.max() >= THR
    with pytest.raises(ValueError, match="zscore"):
        LikelihoodBank(1, detector="zscore")


def test_anomaly_rule_with_the_robust_detector(make_store: Any) -> None:
    """A user picks the detector in the rule (`detector: robust`): the rule's value is the
    robust detector's peak score in the window, and its heavy-tailed latency pages only at
    the real incident (a x4 latency level from the 1,500th minute)."""
    import textwrap

    from perf_alerts.config import parse_config
    from perf_alerts.model import Sample
    from perf_alerts.rules.evaluate import Evaluator

    t0 = 1_800_000_000.0
    t = t0 + 60.0 * np.arange(2_000)
    x = 800.0 + 40.0 * np.random.default_rng(5).standard_t(3, t.size)
    x[1_500:] *= 4.0
    store = make_store()
    store.insert_samples(Sample("lat", {"agent": "a"}, float(tt), float(v)) for tt, v in zip(t, x))
    cfg = parse_config(textwrap.dedent("""
        rules:
          - name: Heavy
            type: anomaly
            metric: lat
            detector: robust
            window: 5m
            lookback: 40h
        """))
    rule = cfg.rules[0]
    ev = Evaluator(store, cfg)
    ref = an.anomaly_scores(x, t, detector="robust", sensitivity=rule.sensitivity)
    for at in (t[1_499], t[1_502]):
        ev.new_cycle()
        (res,) = ev.evaluate(rule, float(at))
        k = int(np.searchsorted(t, at, side="right"))
        recent = t[:k] > at - rule.window
        assert res.value == pytest.approx(ref[:k][recent].max(), abs=1e-9)
    assert ref[300:1_500].max() < THR <= ref[1_500:1_505].max()
