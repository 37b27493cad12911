"""The executive summary, computed once per state of the store and minute (what `GET /api/v1/summary` serves).

`executive_summary` costs a few hundred milliseconds on the demo store (forecasts of every series,
an analysis, SLOs over the period), and the dashboard asks for it on every load. Its inputs only
change when something is written to the store (samples, an evaluation, an acknowledgement, ...)
and, as the window slides, with time. So the computed summary is kept under a key of:

- the period asked for;
- the store's change marker (`store.changes.ChangeMarker`: SQLite's `data_version`, which moves on
  every commit by any connection or process; it subsumes the next item);
- the last evaluation marker (`kv['last_evaluation']`), named explicitly;
- the configuration object;
- the minute (`bucket_seconds`) of the system clock's now.

A request in the same state and minute gets the summary computed at the first request of that
minute (its period ends then: at most `bucket_seconds` ago); anything committed in between, or a new
minute, recomputes. The first request of each state stays as slow as the computation.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from typing import TYPE_CHECKING, Any

from perf_alerts.store.changes import ChangeMarker

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.summary import ExecutiveSummary

BUCKET_SECONDS = 60.0
MAX_ENTRIES = 16


class SummaryCache:
    def __init__(self, system: "PerfAlerts", bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.system = system
        self.bucket_seconds = float(bucket_seconds)
        self._changes = ChangeMarker(system.store)
        self._entries: dict[tuple[Any, ...], "ExecutiveSummary"] = {}
        # one computation at a time: dashboards opened together wait for the first instead of each computing
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _state(self, now: float) -> tuple[Any, ...]:
        last = self.system.store.kv_get("last_evaluation")
        return (self._changes.marker(), json.dumps(last, sort_keys=True), id(self.system.config),
                math.floor(now / self.bucket_seconds))

    def get(self, period_seconds: float) -> "ExecutiveSummary":
        """The summary of the `period_seconds` ending now, or at the first request in this state and minute."""
        from perf_alerts.manage.summary import executive_summary

        with self._lock:
            now = self.system.clock.now()
            # read before computing: a commit while the summary is computed makes the next request recompute
            state = self._state(now)
            key = (float(period_seconds), *state)
            hit = self._entries.get(key)
            if hit is not None:
                self.hits += 1
                return copy.deepcopy(hit)
            self.misses += 1
            summary = executive_summary(self.system, period_seconds=period_seconds, at=now)
            # entries of an older state can never be hit again (the marker and the minute only move forward)
            self._entries = {k: v for k, v in self._entries.items() if k[1:] == state}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = summary
            return copy.deepcopy(summary)

    def close(self) -> None:
        self._changes.close()


__all__ = ["BUCKET_SECONDS", "SummaryCache"]
