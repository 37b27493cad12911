"""Time: the injected clock, timestamp parsing and Prometheus-style durations.

Every component that waits or measures age takes a `Clock`, so `for`, cooldowns,
escalations and schedules are tested (and demoed) without sleeping.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from datetime import datetime, timezone
from typing import Protocol

from perf_alerts.errors import InputError

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def short_repr(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to about `limit` characters, for error messages about hostile input
    (a 1 MB string, or an integer of 4,000 digits, must not become a 1 MB error line)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits>"
    try:
        text = repr(value)
    except Exception:  # a repr that raises (or an int too long to print)
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Clock(Protocol):
    def now(self) -> float:
        """Current UTC time as Unix seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to: for tests, backtests and the accelerated demo."""

    def __init__(self, start: float | str = 0.0) -> None:
        self._t = parse_timestamp(start) if isinstance(start, str) else float(start)

    def now(self) -> float:
        return self._t

    def set(self, t: float) -> None:
        self._t = float(t)

    def advance(self, seconds: float | str) -> float:
        self._t += parse_duration(seconds) if isinstance(seconds, str) else float(seconds)
        return self._t


class TimeParseError(InputError, ValueError):
    """A timestamp or a duration that cannot be parsed or is out of range."""


# performance samples live between 1970 and the year 9999 (what a datetime can show); outside is a
# mistake, usually milliseconds given as seconds
MIN_UNIX = 0.0
MAX_UNIX = 253402300799.0


def check_unix(v: float, raw: object) -> float:
    """Unix seconds that a datetime can show; milliseconds are the usual mistake."""
    if not math.isfinite(v):
        raise TimeParseError(f"invalid timestamp {short_repr(raw)} (must be finite)")
    if not MIN_UNIX <= v <= MAX_UNIX:
        hint = " (milliseconds? use Unix seconds)" if v > MAX_UNIX else " (before 1970)"
        raise TimeParseError(f"timestamp {short_repr(raw)} is out of range{hint}")
    return v


def _as_float(value: int | float, what: str) -> float:
    """float(value), with an integer beyond the float range (1 followed by 400 zeros) an error."""
    try:
        return float(value)
    except OverflowError:
        raise TimeParseError(f"{what} {short_repr(value)} is out of range") from None


def parse_duration(text: str | int | float) -> float:
    """'1h30m' → 5400.0. Bare numbers are seconds."""
    if isinstance(text, bool):
        raise TimeParseError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        v = _as_float(text, "duration")
        if not math.isfinite(v) or v < 0:
            raise TimeParseError(f"invalid duration {short_repr(text)}: must be a finite number >= 0")
        return v
    s = str(text).strip()
    if not s:
        raise TimeParseError("empty duration")
    try:
        v = float(s)
        if math.isfinite(v) and v >= 0:
            return v
    except ValueError:
        pass
    pos = 0
    total = 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise TimeParseError(f"invalid duration {short_repr(text)} (examples: 30s, 5m, 1h30m, 7d)")
    if not math.isfinite(total):
        raise TimeParseError(f"duration {short_repr(text)} is out of range")
    return total


# long unit names people (and LLMs) type in arguments: "2 days", "36 hours"
_UNIT_WORDS = (("milliseconds", "ms"), ("millisecond", "ms"), ("seconds", "s"), ("second", "s"), ("secs", "s"),
               ("sec", "s"), ("minutes", "m"), ("minute", "m"), ("mins", "m"), ("min", "m"), ("hours", "h"),
               ("hour", "h"), ("hrs", "h"), ("hr", "h"), ("days", "d"), ("day", "d"), ("weeks", "w"), ("week", "w"))


def parse_duration_arg(value: object, name: str, *, default: float | None = None, lo: float = 0.0,
                       hi: float = math.inf, bare_unit: float = 1.0) -> float:
    """A duration argument of a front end (CLI option, query parameter, tool argument) → seconds.

    The one bounded wrapper around `parse_duration`, so every front end accepts the same texts
    and its errors name the argument (`--lookback: ...`, `lookback_hours must be ...`). Bare
    numbers are in `bare_unit` seconds (3600 for an `*_hours` argument); empty or None gives
    `default` (required when `default` is None); the result must lie in [lo, hi].
    Raises TimeParseError (a ValueError) with a message fit to show the user as is.
    """
    unit_name = {1.0: "seconds", 60.0: "minutes", 3600.0: "hours", 86400.0: "days"}.get(bare_unit, "units")
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise TimeParseError(f"{name} is required (a duration like 30m, 6h or 7d)")
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TimeParseError(f"{name} must be a number of {unit_name} or a duration like 36h or 2d, got {short_repr(value)}")
    seconds: float
    if isinstance(value, (int, float)):
        seconds = _as_float(value, name) * bare_unit  # an int beyond the float range is an error, not OverflowError
    else:
        text = value.strip().lower()
        try:
            seconds = float(text) * bare_unit
        except ValueError:
            compact = text.replace(" ", "")
            for word, unit in _UNIT_WORDS:
                compact = re.sub(rf"(?<=\d){word}(?![a-z])", unit, compact)
            try:
                seconds = parse_duration(compact)
            except TimeParseError:
                raise TimeParseError(f"{name} must be a number of {unit_name} or a duration like 36h or 2d, "
                                     f"got {short_repr(value)}") from None
    if not math.isfinite(seconds) or not lo <= seconds <= hi:
        upper = "" if math.isinf(hi) else f" and {format_duration(hi)}"
        raise TimeParseError(f"{name} must be between {format_duration(lo)}{upper}, got {short_repr(value)}"
                             if upper else f"{name} must be at least {format_duration(lo)}, got {short_repr(value)}")
    return seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts[:2])


def parse_timestamp(value: object) -> float:
    """ISO 8601 (naive means UTC) or Unix seconds (number or numeric string) → Unix seconds."""
    if isinstance(value, bool) or value is None:
        raise TimeParseError(f"invalid timestamp {value!r}")
    if isinstance(value, (int, float, numbers.Real)):  # also numpy's numbers
        return check_unix(_as_float(value, "timestamp"), value)  # type: ignore[arg-type]
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return check_unix(dt.timestamp(), value)
    try:
        s = str(value).strip()
    except Exception:  # an object whose str() fails
        raise TimeParseError(f"invalid timestamp {short_repr(value)} (use ISO 8601 or Unix seconds)") from None
    if not s:
        raise TimeParseError("empty timestamp")
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        return check_unix(v, value)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        v = dt.timestamp()
    except (ValueError, OverflowError):  # also a UTC offset that moves year 1 or 9999 out of range
        raise TimeParseError(
            f"invalid timestamp {short_repr(value)} (use ISO 8601 like 2026-01-31T12:00:00Z or Unix seconds)"
        ) from None
    return check_unix(v, value)


def parse_time_arg(text: str, clock: Clock) -> float:
    """CLI times: 'now', 'now-1h', ISO 8601 or Unix seconds."""
    s = text.strip()
    if s == "now":
        return clock.now()
    if s.startswith("now-"):
        return clock.now() - parse_duration(s[4:])
    if s.startswith("now+"):
        return clock.now() + parse_duration(s[4:])
    return parse_timestamp(s)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")
