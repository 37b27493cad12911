"""The nouns every layer shares: samples, labels, severities, alert states, alerts.

Plain dataclasses (not pydantic) because they are created in hot loops; configuration
and results that cross a front end are pydantic models elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Mapping

from perf_alerts.errors import InputError
from perf_alerts.timeutil import short_repr

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# Size limits of one sample (README "Limits"): a series key stays small enough to index, show and
# send, and a hostile record cannot make one series the size of a file.
MAX_METRIC_NAME = 200  # characters
MAX_LABEL_NAME = 100  # characters
MAX_LABEL_VALUE = 1024  # characters
MAX_LABELS = 32  # labels per sample

Labels = Mapping[str, str]


class Severity(str, Enum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used to sort alerts worst first."""
        return {"critical": 3, "warning": 2, "info": 1}[self.value]


class AlertState(str, Enum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


ALERT_STATE_CHOICES = ("pending", "firing", "resolved", "active", "all")


def parse_alert_states(text: str | None, name: str = "state") -> list[AlertState] | None:
    """A state filter of an alert list (CLI `--state`, API `?state=`) → the states, None for all.

    `active` is pending and firing; empty or `all` means every state. Raises InputError naming `name`.
    """
    t = (text or "").strip().lower()
    if t in ("", "all"):
        return None
    if t == "active":
        return [AlertState.FIRING, AlertState.PENDING]
    try:
        return [AlertState(t)]
    except ValueError:
        raise InputError(f"{name}: unknown state {text!r}; valid: {', '.join(ALERT_STATE_CHOICES)}") from None


class SampleError(InputError, ValueError):
    """A sample that cannot be stored; the message names the offending field."""


def canonical_labels(labels: Labels | None) -> str:
    """One stable text form per label set, used as the series key in the store."""
    if not labels:
        return "{}"
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


def validate_metric_name(name: object) -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.match(name):
        raise SampleError(f"invalid metric name {short_repr(name)} (must match [a-zA-Z_:][a-zA-Z0-9_:]*)")
    if len(name) > MAX_METRIC_NAME:
        raise SampleError(f"metric name of {len(name):,} characters is too long (limit {MAX_METRIC_NAME}): "
                          f"{short_repr(name)}")
    return name


def validate_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise SampleError(f"labels must be a mapping of str to str, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise SampleError(f"{len(labels):,} labels is too many (limit {MAX_LABELS} per sample)")
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not LABEL_NAME_RE.match(k) or k.startswith("__"):
            raise SampleError(f"invalid label name {short_repr(k)} (must match [a-zA-Z_][a-zA-Z0-9_]*)")
        if len(k) > MAX_LABEL_NAME:
            raise SampleError(f"label name of {len(k):,} characters is too long (limit {MAX_LABEL_NAME}): "
                              f"{short_repr(k)}")
        if v is None:
            continue
        if isinstance(v, (Mapping, list, tuple, set)):
            raise SampleError(f"label {k!r} must be a string, got {type(v).__name__}")
        if not isinstance(v, str):
            try:
                v = str(v)
            except Exception:  # an int of more than 4,300 digits, an object whose str() fails
                raise SampleError(f"label {k!r}: value {short_repr(v)} cannot be shown as text") from None
        if len(v) > MAX_LABEL_VALUE:
            raise SampleError(f"label {k!r}: value of {len(v):,} characters is too long "
                              f"(limit {MAX_LABEL_VALUE:,})")
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): cannot be stored or sent
                raise SampleError(f"label {k!r}: value {short_repr(v)} is not valid Unicode text") from None
        out[k] = v
    return out


class LabelFilterError(InputError, ValueError):
    """A label filter a user typed (CLI option, query parameter, tool argument) that cannot be read."""


def parse_label_filter(raw: object, name: str = "labels") -> dict[str, str]:
    """A label filter → {label: value}: the one parser every front end uses.

    Accepts `agent=researcher,task=report` (values may be quoted), a JSON object text, or a
    mapping (what a tool or a JSON body passes). None or empty means no filter. Label names
    are checked as for samples, so a filter can only name labels a series can have. Raises
    LabelFilterError, whose message starts with `name`.
    """
    if raw is None:
        return {}
    pairs: list[tuple[object, object]]
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                raise LabelFilterError(f"{name}: not a valid JSON object") from None
            if not isinstance(obj, dict):
                raise LabelFilterError(f"{name}: expected a JSON object of label to value")
            pairs = list(obj.items())
        else:
            pairs = []
            for part in text.split(","):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise LabelFilterError(f"{name}: {part.strip()!r} is not label=value "
                                           "(e.g. agent=researcher,task=report)")
                k, v = part.split("=", 1)
                pairs.append((k.strip(), v.strip().strip('"')))
    else:
        raise LabelFilterError(f"{name}: expected label=value pairs or a mapping of label to value, "
                               f"got {type(raw).__name__}")
    try:
        return validate_labels(dict(pairs))
    except SampleError as e:
        raise LabelFilterError(f"{name}: {e}") from None


def labels_match(labels: Labels, wanted: Labels | None) -> bool:
    """Whether a series' (or an alert's) labels have every label=value of a filter."""
    return not wanted or all(labels.get(k) == v for k, v in wanted.items())


def validate_value(value: object) -> float:
    if isinstance(value, bool):
        raise SampleError(f"value must be a number, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer beyond the float range (1 followed by 400 zeros)
        raise SampleError(f"value must be finite (within ±1.8e308), got {short_repr(value)}") from None
    except (TypeError, ValueError):
        raise SampleError(f"value must be a number, got {short_repr(value)}") from None
    if not math.isfinite(v):
        # one message for NaN, inf and numbers too large for a float ("1e400", 400 digits): every
        # way in (CSV, JSONL, the API, Python) says the same thing
        limit = "" if math.isnan(v) else " (within ±1.8e308)"
        raise SampleError(f"value must be finite{limit}, got {short_repr(value)}")
    return v


def duration_problem(metric: str, value: float) -> str | None:
    """A duration (a metric named `*_seconds`) is never negative: the reason to reject one, else None."""
    if value < 0 and metric.endswith("_seconds"):
        return f"value: {metric} is a duration (*_seconds) and cannot be negative, got {value:g}"
    return None


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement. `ts` is UTC Unix seconds."""

    metric: str
    labels: dict[str, str]
    ts: float
    value: float

    @classmethod
    def checked(cls, metric: object, value: object, ts: object, labels: object = None) -> "Sample":
        """A validated sample, or SampleError / TimeParseError (both InputError) naming the bad field.

        Besides the name rules: a finite value and timestamp in range (an integer too large for a
        float is an error, not an OverflowError), and the size limits MAX_METRIC_NAME,
        MAX_LABEL_NAME, MAX_LABEL_VALUE and MAX_LABELS.
        """
        from perf_alerts.timeutil import parse_timestamp

        sample = cls(
            validate_metric_name(metric),
            validate_labels(labels),
            parse_timestamp(ts),
            validate_value(value),
        )
        problem = duration_problem(sample.metric, sample.value)
        if problem:
            raise SampleError(problem)
        return sample


def fingerprint(rule: str, labels: Labels) -> str:
    """Alert identity: the rule plus the series labels. Stable across processes and versions."""
    h = hashlib.sha256()
    h.update(rule.encode())
    h.update(b"\x00")
    h.update(canonical_labels(labels).encode())
    return h.hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """One alert instance (rule × series) with its lifecycle timestamps (Unix seconds)."""

    fingerprint: str
    rule: str
    state: AlertState
    severity: Severity
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    threshold: float | None = None
    window: str | None = None
    active_since: float | None = None  # condition first true (start of pending)
    started_at: float | None = None  # became firing
    resolved_at: float | None = None
    last_eval_at: float | None = None
    last_true_at: float | None = None  # last evaluation where the condition held
    cleared_at: float | None = None  # first evaluation where a firing alert's condition no longer held
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    escalation_level: int = 0
    escalated_at: float | None = None
    fire_count: int = 0
    # the facts of the state changes, kept as they were (never re-evaluated at send time):
    # the value that made the alert fire (at `started_at`) and the one that resolved it
    # (None: resolved because its series had no data); `operator` is the rule's (`>=`, ...)
    operator: str | None = None
    fired_value: float | None = None
    resolved_value: float | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def fired_at(self) -> float | None:
        """When the alert went firing (this episode)."""
        return self.started_at

    @property
    def shown_value(self) -> float | None:
        """The value a notification states: the firing value while firing, the resolving value once
        resolved, the current value while pending (or for alerts stored before these facts existed)."""
        if self.state == AlertState.RESOLVED:
            return self.resolved_value if self.started_at is not None and self.fired_value is not None \
                else self.value
        if self.state == AlertState.FIRING and self.fired_value is not None:
            return self.fired_value
        return self.value

    def to_dict(self) -> dict[str, Any]:
        from perf_alerts.timeutil import iso

        return {
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "state": self.state.value,
            "severity": self.severity.value,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": None if self.value is None else round(self.value, 6),
            "threshold": self.threshold,
            "operator": self.operator,
            "fired_value": None if self.fired_value is None else round(self.fired_value, 6),
            "fired_at": iso(self.started_at),
            "resolved_value": None if self.resolved_value is None else round(self.resolved_value, 6),
            "window": self.window,
            "active_since": iso(self.active_since),
            "started_at": iso(self.started_at),
            "resolved_at": iso(self.resolved_at),
            "acknowledged": self.acknowledged,
            "acknowledged_at": iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "escalation_level": self.escalation_level,
        }


def sort_worst_first(alerts: list[Alert]) -> list[Alert]:
    state_rank = {AlertState.FIRING: 2, AlertState.PENDING: 1, AlertState.RESOLVED: 0}
    return sorted(
        alerts,
        key=lambda a: (-state_rank[a.state], -a.severity.rank,
                       next((t for t in (a.started_at, a.active_since) if t is not None), 0.0)),
    )


_ALERT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Alert))


def alert_snapshot(a: Alert) -> dict[str, Any]:
    """Every field, raw (Unix seconds, enum values): what a notification stores in the outbox.

    What `dataclasses.asdict` gives, built directly: every field is a scalar but the two label
    dicts, which are copied (asdict deep-copies each field, 10x slower: a storm of 20,000 alerts
    spent most of its planning time there)."""
    d = {name: getattr(a, name) for name in _ALERT_FIELDS}
    d["labels"] = dict(a.labels)
    d["annotations"] = dict(a.annotations)
    d["state"] = a.state.value
    d["severity"] = a.severity.value
    return d


def alert_from_snapshot(d: Mapping[str, Any]) -> Alert:
    fields = dict(d)
    fields["state"] = AlertState(fields["state"])
    fields["severity"] = Severity(fields["severity"])
    known = Alert.__dataclass_fields__
    return Alert(**{k: v for k, v in fields.items() if k in known})
