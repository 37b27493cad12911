"""The anomaly detectors as configuration sees them: their names and the score threshold.

`config` validates an anomaly rule's `detector:` and turns its `sensitivity:` into a
threshold with these; `analytics.anomaly` implements the detectors under the same names
(it checks at import that its registry matches `DETECTORS`). Kept here, below `config`,
so loading a configuration never imports the numpy detectors.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_ANOMALY_THRESHOLD", "DETECTORS", "threshold_for"]

#: Score at or above which an ``anomaly`` rule fires by default.
DEFAULT_ANOMALY_THRESHOLD: float = 0.5

#: Names accepted by ``detector=`` ("default" is the likelihood detector; "robust" is it
#: calibrated for heavy-tailed metrics such as LLM latencies, at a cost in sensitivity).
DETECTORS: tuple[str, ...] = ("default", "likelihood", "robust", "zscore")


def threshold_for(sensitivity: float | None) -> float:
    """Score threshold for a user sensitivity in (0, 1]; higher = more alerts.

    0.5 maps to DEFAULT_ANOMALY_THRESHOLD; the mapping is linear in the log
    tail probability, so each step of sensitivity changes the expected alert
    rate by a constant factor.
    """
    if sensitivity is None:
        return DEFAULT_ANOMALY_THRESHOLD
    s = float(sensitivity)
    if not (0.0 < s <= 1.0) or math.isnan(s):
        raise ValueError(f"sensitivity must be in (0, 1], got {sensitivity!r}")
    # s = 1 -> 0.05 (very chatty), s = 0.5 -> default, s -> 0 -> 1.0
    d = DEFAULT_ANOMALY_THRESHOLD
    if s >= 0.5:
        return d + (0.05 - d) * (s - 0.5) / 0.5
    return d + (1.0 - d) * (0.5 - s) / 0.5
