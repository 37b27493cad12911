import json
import math

import numpy as np
import pytest

from perf_alerts.analytics.forecast import Breach, Forecast, forecast, time_to_breach

T0 = 1.7e9


def _line(n=600, step=60.0, a=5.0, b=0.02, sd=0.5, seed=0):
    r = np.random.default_rng(seed)
    x = np.arange(n)
    return T0 + x * step, a + b * x + r.normal(0, sd, n)


# ------------------------------------------------------------------ forecast

def test_linear_trend_recovered():
    t, y = _line()
    fc = forecast(t, y, 3600)
    assert fc.step == 60.0
    assert len(fc.timestamps) == 60
    np.testing.assert_allclose(fc.timestamps, t[-1] + 60.0 * np.arange(1, 61))
    truth = 5.0 + 0.02 * np.arange(600, 660)
    assert np.max(np.abs(fc.mean - truth)) < 0.35          # noise sd is 0.5
    assert fc.mean[-1] > fc.mean[0] + 0.8                  # trend extrapolated (truth: +1.18)
    assert fc.method in ("holt", "damped_holt")
    assert np.all(fc.lower < fc.mean) and np.all(fc.mean < fc.upper)
    # interval widens with the horizon
    w = fc.upper - fc.lower
    assert w[-1] > w[0]


def test_interval_coverage_on_synthetic_noise():
    inside, total = 0, 0
    for seed in range(25):
        r = np.random.default_rng(100 + seed)
        n, H = 400, 30
        x = np.arange(n + H)
        y = 20 + r.uniform(-0.02, 0.02) * x + r.normal(0, 1.0, n + H)
        t = T0 + x * 300.0
        fc = forecast(t[:n], y[:n], H * 300.0)
        assert len(fc.mean) == H
        inside += int(np.sum((y[n:] >= fc.lower) & (y[n:] <= fc.upper)))
        total += H
    cov = inside / total
    assert 0.90 <= cov <= 0.99, cov


def test_level_changes_interval_width():
    t, y = _line(seed=3)
    w95 = forecast(t, y, 3600, level=0.95)
    w80 = forecast(t, y, 3600, level=0.80)
    assert np.all((w80.upper - w80.lower) < (w95.upper - w95.lower))
    with pytest.raises(ValueError, match="level"):
        forecast(t, y, 3600, level=95)


def test_damped_trend_flattens():
    r = np.random.default_rng(7)
    x = np.arange(800)
    y = 50 + 20 * (1 - np.exp(-x / 250.0)) + r.normal(0, 0.2, x.size)
    t = T0 + x * 60.0
    fc = forecast(t, y, 600 * 60.0)
    assert fc.method == "damped_holt"
    assert fc.params["phi"] < 1.0
    d = np.diff(fc.mean)
    # increments shrink: the far end is much flatter than the near end
    assert abs(d[-50:].mean()) < 0.3 * abs(d[:10].mean())
    # and far below a linear extrapolation of the current slope
    slope_now = (y[-50:].mean() - y[-100:-50].mean()) / 50
    assert fc.mean[-1] < y[-20:].mean() + 0.5 * slope_now * 600


def test_seasonal_series_follows_the_season():
    r = np.random.default_rng(11)
    x = np.arange(24 * 14)                           # 14 days hourly
    season = lambda i: 10 * np.sin(2 * np.pi * i / 24)  # noqa: E731
    y = 50 + season(x) + r.normal(0, 1.0, x.size)
    t = T0 + x * 3600.0
    fc = forecast(t, y, 86400)
    assert fc.season_period == 24
    assert fc.method == "holt_winters(period=24)"
    truth = 50 + season(np.arange(x.size, x.size + 24))
    assert np.corrcoef(fc.mean, truth)[0, 1] > 0.97
    assert np.mean(np.abs(fc.mean - truth)) < 1.5
    # without the season the forecast can't follow it
    fc0 = forecast(t, y, 86400, season=None)
    assert fc0.season_period is None
    assert np.mean(np.abs(fc0.mean - truth)) > 4.0


def test_no_season_detected_in_pure_noise():
    r = np.random.default_rng(5)
    x = np.arange(24 * 10)
    t = T0 + x * 3600.0
    fc = forecast(t, 5 + r.normal(0, 1, x.size), 86400)
    assert fc.season_period is None
    assert not fc.method.startswith("holt_winters")


def test_nan_and_inf_ignored():
    t, y = _line(n=300, seed=2)
    ref = forecast(t, y, 1800)
    t2 = np.insert(t, [10, 50, 200], [np.nan, t[50] + 1, t[200] + 1])
    y2 = np.insert(y, [10, 50, 200], [3.0, np.nan, np.inf])
    fc = forecast(t2, y2, 1800)
    np.testing.assert_allclose(fc.mean, ref.mean)
    np.testing.assert_allclose(fc.upper, ref.upper)
    assert np.all(np.isfinite(fc.mean)) and np.all(np.isfinite(fc.lower))


@pytest.mark.parametrize("ts,vs", [
    ([], []),
    ([1.0, 2.0], [1.0, 2.0]),
    ([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, np.inf, 2.0]),
])
def test_too_little_data_raises_clear_error(ts, vs):
    with pytest.raises(ValueError, match="at least 3 finite"):
        forecast(ts, vs, 3600)


def test_few_points_falls_back_to_naive():
    fc = forecast([0.0, 60.0, 120.0, 180.0], [1.0, 2.0, 1.5, 1.7], 600)
    assert fc.method == "naive"
    assert np.allclose(fc.mean, 1.7)
    assert np.all(fc.upper > fc.mean) and np.all(np.diff(fc.upper - fc.lower) > 0)


def test_irregular_timestamps():
    r = np.random.default_rng(3)
    t = T0 + np.cumsum(r.exponential(45.0, 1500))       # Poisson arrivals
    truth = lambda tt: 10 + 0.001 * (tt - T0)            # noqa: E731
    y = truth(t) + r.normal(0, 0.5, t.size)
    order = r.permutation(t.size)                        # unsorted input is fine
    fc = forecast(t[order], y[order], 3600)
    assert fc.last_timestamp == pytest.approx(t[-1])
    assert np.allclose(np.diff(fc.timestamps), fc.step)
    assert fc.timestamps[0] == pytest.approx(t[-1] + fc.step)
    assert fc.timestamps[-1] >= t[-1] + 3600 - 1e-6
    assert np.max(np.abs(fc.mean - truth(fc.timestamps))) < 0.4
    # single observations (not bucket means) should mostly fall in the interval
    y_future = truth(fc.timestamps) + r.normal(0, 0.5, fc.timestamps.size)
    assert np.mean((y_future >= fc.lower) & (y_future <= fc.upper)) >= 0.8


def test_long_history_is_bounded():
    r = np.random.default_rng(9)
    x = np.arange(50_000)
    t = T0 + x * 60.0
    fc = forecast(t, 0.001 * x + r.normal(0, 1, x.size), 6 * 3600)
    assert fc.params["n_fit"] <= 2000
    assert fc.step >= 60.0
    assert len(fc.timestamps) >= 6


def test_to_dict_compact_and_json():
    t, y = _line()
    fc = forecast(t, y, 6 * 3600)
    assert len(fc.timestamps) == 360
    d = fc.to_dict()
    s = json.dumps(d)
    assert len(d["points"]["t"]) <= 24 and len(d["points"]["mean"]) <= 24
    assert d["points"]["t"][-1] == int(round(fc.timestamps[-1]))
    assert d["method"] == fc.method and d["level"] == 0.95
    assert len(s) < 2500
    assert json.loads(s)["n_points"] == 360
    assert len(fc.to_dict(max_points=5)["points"]["mean"]) == 5


# ------------------------------------------------------------------ time_to_breach

def _fc(mean, lower=None, upper=None, last_value=0.0, last_observed=None, step=10.0):
    mean = np.asarray(mean, float)
    ts = 1000.0 + step * np.arange(1, mean.size + 1)
    lower = mean - 1 if lower is None else np.asarray(lower, float)
    upper = mean + 1 if upper is None else np.asarray(upper, float)
    return Forecast(ts, mean, lower, upper, 0.95, step, "holt", None, 1000.0, last_value,
                    last_observed)


def test_time_to_breach_interpolates_upward():
    fc = _fc([1.0, 2.0, 3.0, 4.0], last_value=0.0)
    b = time_to_breach(fc, 2.5, ">")
    assert isinstance(b, Breach)
    assert b.at == pytest.approx(1025.0) and b.seconds == pytest.approx(25.0)
    # the upper bound (mean + 1) crosses 2.5 between 1.0+1 and 2.0+1 -> at 1015
    assert b.bound_at == pytest.approx(1015.0)
    assert b.probability > 0.9


def test_time_to_breach_downward():
    fc = _fc([8.0, 6.0, 4.0, 2.0], last_value=10.0)
    b = time_to_breach(fc, 5.0, "<")
    assert b.at == pytest.approx(1025.0) and b.seconds == pytest.approx(25.0)
    assert b.bound_at == pytest.approx(1020.0)       # lower = mean - 1 hits 5 at 1020
    assert time_to_breach(fc, 12.0, ">").at is None


def test_time_to_breach_already_breached():
    fc = _fc([95.0, 96.0], last_value=94.0, last_observed=95.0)
    b = time_to_breach(fc, 90.0, ">=")
    assert b.seconds == 0.0 and b.at == 1000.0 and b.probability == 1.0


def test_time_to_breach_never():
    fc = _fc([1.0, 1.1, 1.2, 1.3], last_value=1.0)
    b = time_to_breach(fc, 10.0, ">")
    assert b.at is None and b.seconds is None and b.bound_at is None
    assert b.probability < 0.01
    # interval reaches the threshold but the mean doesn't: plausible, not expected
    fc2 = _fc([1.0, 1.1, 1.2, 1.3], upper=[2, 4, 8, 12], last_value=1.0)
    b2 = time_to_breach(fc2, 10.0, ">")
    assert b2.at is None and b2.bound_at is not None
    assert 0.01 < b2.probability < 0.5
    with pytest.raises(ValueError, match="op"):
        time_to_breach(fc, 10.0, "==")


def test_time_to_breach_on_forecast_of_known_line():
    x = np.arange(200)
    t = T0 + x * 60.0
    y = 10.0 + 0.5 * x                     # exact line, 0.5 per minute
    fc = forecast(t, y, 4 * 3600)
    # 10 + 0.5 * i = 200 -> i = 380 -> 181 minutes after the last point (i=199)
    b = time_to_breach(fc, 200.0, ">")
    assert b.seconds == pytest.approx(181 * 60.0, rel=0.01)
    assert b.probability > 0.99
    fc_down = forecast(t, -y, 4 * 3600)
    bd = time_to_breach(fc_down, -200.0, "<")
    assert bd.seconds == pytest.approx(181 * 60.0, rel=0.01)
    assert time_to_breach(fc, 100.0, ">").seconds == 0.0     # already above
    assert time_to_breach(fc, 1e6, ">").at is None
