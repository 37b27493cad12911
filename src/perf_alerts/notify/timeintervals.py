"""Time intervals: is a route muted (or inactive) at an instant? Alertmanager's semantics.

The rules are Alertmanager's `TimeInterval.ContainsTime` (timeinterval/timeinterval.go): the
instant is read as wall-clock time in the entry's `location` (UTC when none), and every field
the entry gives must contain it — `times` as [start, end) minutes of the day, `weekdays`,
`days_of_month` (negative days count from the month's end, clamped to the month),
`months` and `years` as inclusive ranges. A named interval contains the instant when any of
its entries does. A route is muted when any of its `mute_time_intervals` contains the instant,
and inactive when none of its `active_time_intervals` does (`TimeMuteStage`,
`TimeActiveStage` in notify/notify.go). Pure functions of the clock's time: the caller passes
`at` from the injected clock, so tests move through DST changes without waiting.
"""

from __future__ import annotations

import calendar
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from typing import Mapping, Sequence

from perf_alerts.config import (
    TimeIntervalSpec,
    day_of_month_range,
    month_range,
    weekday_range,
    year_range,
)


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    """None: the machine's local zone (Go's "Local")."""
    if name in ("", "UTC"):
        return timezone.utc
    if name == "Local":
        return None
    return zoneinfo.ZoneInfo(name)


def _wall(at: float, location: str | None) -> datetime:
    if location is None:
        return datetime.fromtimestamp(at, timezone.utc)
    zone = _zone(location)
    return datetime.fromtimestamp(at) if zone is None else datetime.fromtimestamp(at, zone)


def contains(spec: TimeIntervalSpec, at: float) -> bool:
    """Whether one interval entry contains the instant `at` (Alertmanager's ContainsTime)."""
    t = _wall(at, spec.location)
    if spec.times is not None:
        minute = t.hour * 60 + t.minute
        if not any(a <= minute < b for a, b in (r.minutes for r in spec.times)):
            return False
    if spec.days_of_month is not None:
        days = calendar.monthrange(t.year, t.month)[1]
        hit = False
        for text in spec.days_of_month:
            b, e = day_of_month_range(text)
            begin = days + b + 1 if b < 0 else b
            end = days + e + 1 if e < 0 else e
            if begin > days:  # e.g. 31 in a 30-day month: this range is empty
                continue
            end = min(end, days)
            if begin <= t.day <= end:
                hit = True
                break
        if not hit:
            return False
    if spec.months is not None:
        if not any(b <= t.month <= e for b, e in map(month_range, spec.months)):
            return False
    if spec.weekdays is not None:
        weekday = (t.weekday() + 1) % 7  # Python: Monday = 0; Alertmanager: Sunday = 0
        if not any(b <= weekday <= e for b, e in map(weekday_range, spec.weekdays)):
            return False
    if spec.years is not None:
        if not any(b <= t.year <= e for b, e in map(year_range, spec.years)):
            return False
    return True


def in_interval(entries: Sequence[TimeIntervalSpec], at: float) -> bool:
    return any(contains(s, at) for s in entries)


@dataclass(frozen=True)
class TimeGate:
    """Why a route may not notify at an instant: the mute intervals that contain it, or the
    active intervals of which none does. Empty: the route may notify."""

    muted_by: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()  # the route's active_time_intervals, none of which contains the instant

    @property
    def closed(self) -> bool:
        return bool(self.muted_by or self.inactive)

    def reason(self) -> str:
        if self.muted_by:
            return f"muted by time interval {', '.join(self.muted_by)}"
        if self.inactive:
            return f"outside its active time interval(s) {', '.join(self.inactive)}"
        return ""


def gate(intervals: Mapping[str, Sequence[TimeIntervalSpec]], mute: Sequence[str], active: Sequence[str],
         at: float) -> TimeGate:
    """A route's state at `at` given its `mute_time_intervals` and `active_time_intervals` (names the
    configuration has checked exist)."""
    muted_by = tuple(n for n in mute if in_interval(intervals.get(n, ()), at))
    inactive = tuple(active) if active and not any(in_interval(intervals.get(n, ()), at) for n in active) else ()
    return TimeGate(muted_by, inactive)
