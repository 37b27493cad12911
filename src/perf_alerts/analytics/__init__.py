"""Analytics over samples (numpy): stats, trend, anomaly, forecast, health.

`anomaly_scores` and `DEFAULT_ANOMALY_THRESHOLD` are the detector behind `anomaly` rules.
"""

from perf_alerts.analytics.anomaly import DEFAULT_ANOMALY_THRESHOLD, anomaly_scores

__all__ = ["DEFAULT_ANOMALY_THRESHOLD", "anomaly_scores"]
