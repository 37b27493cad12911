"""What this process did: perf-alerts' own counters, read by `GET /metrics` at scrape time.

Process-local and in memory: each daemon (replica), `perf-alerts dashboard` or script counts
its own deliveries, evaluations and ingested samples, from zero at start (Prometheus' counter
semantics: a restart is a reset, `rate()` handles it). State shared by every process on a
store (alerts, the outbox, the leader) is not counted here: the exposition reads it from the
store at scrape time (`perf_alerts.http.exposition`).

Names are without the `perf_alerts_` prefix and without `_total`; label values are receiver
and rule names from the configuration, never URLs or tokens. The functions are cheap and
thread-safe (one lock), so the hot paths (store inserts, deliveries) can call them freely.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

__all__ = ["EVALUATION_BUCKETS", "Histogram", "Snapshot", "inc", "observe", "set_value", "snapshot", "reset"]

LabelKey = tuple[tuple[str, str], ...]

# seconds: an evaluation cycle of a few rules takes milliseconds, 10k series × 5 rules about a second
EVALUATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int]  # per bucket, not cumulative; one more for +Inf
    sum: float = 0.0
    count: int = 0

    def cumulative(self) -> list[tuple[float, int]]:
        out, acc = [], 0
        for le, n in zip((*self.buckets, float("inf")), self.counts):
            acc += n
            out.append((le, acc))
        return out


@dataclass
class Snapshot:
    counters: dict[str, dict[LabelKey, float]] = field(default_factory=dict)
    values: dict[str, dict[LabelKey, float]] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)


_lock = threading.Lock()
_counters: dict[str, dict[LabelKey, float]] = {}
_values: dict[str, dict[LabelKey, float]] = {}
_histograms: dict[str, Histogram] = {}


def _key(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def inc(name: str, by: float = 1.0, **labels: str) -> None:
    """Add `by` (≥ 0) to the counter `name` of these labels."""
    if by <= 0:
        return
    k = _key(labels)
    with _lock:
        series = _counters.setdefault(name, {})
        series[k] = series.get(k, 0.0) + float(by)


def set_value(name: str, value: float, **labels: str) -> None:
    """Set the gauge `name` of these labels (e.g. the duration of the last evaluation)."""
    k = _key(labels)
    with _lock:
        _values.setdefault(name, {})[k] = float(value)


def observe(name: str, value: float, buckets: tuple[float, ...] = EVALUATION_BUCKETS) -> None:
    """Count `value` in the histogram `name` (created with `buckets` on first use)."""
    with _lock:
        h = _histograms.get(name)
        if h is None:
            h = _histograms[name] = Histogram(tuple(buckets), [0] * (len(buckets) + 1))
        h.counts[bisect.bisect_left(h.buckets, value)] += 1
        h.sum += float(value)
        h.count += 1


def snapshot() -> Snapshot:
    """A consistent copy of everything counted so far."""
    with _lock:
        return Snapshot(
            {n: dict(s) for n, s in _counters.items()},
            {n: dict(s) for n, s in _values.items()},
            {n: Histogram(h.buckets, list(h.counts), h.sum, h.count) for n, h in _histograms.items()},
        )


def reset() -> None:
    """Forget everything (tests)."""
    with _lock:
        _counters.clear()
        _values.clear()
        _histograms.clear()
