"""Configuration: YAML → pydantic, with `${ENV}` substitution and file:line:field errors.

The loader keeps the YAML node marks so a validation error points at the line the user
must edit, and suggests the valid values. YAML is always loaded with the safe loader.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perf_alerts.model import LABEL_NAME_RE, METRIC_NAME_RE, Severity
from perf_alerts.timeutil import TimeParseError, parse_duration

ENV_CONFIG = "PERF_ALERTS_CONFIG"
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem; `str()` is the one-line (or few-line) message for the user."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# --------------------------------------------------------------------------- models

Duration = float  # seconds, parsed from "5m" etc.


def _duration(v: Any) -> float:
    if v is None:
        return 0.0
    try:
        return parse_duration(v)
    except TimeParseError as e:
        raise ValueError(str(e)) from None


AGGREGATES = ("last", "avg", "min", "max", "sum", "count", "rate", "p50", "p95", "p99")
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
RULE_TYPES = ("threshold", "trend", "anomaly", "forecast", "absent")
MATCH_OPS = ("=", "!=", "=~", "!~")

Aggregate = Literal["last", "avg", "min", "max", "sum", "count", "rate", "p50", "p95", "p99"]
Operator = Literal[">", ">=", "<", "<=", "==", "!="]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class Matcher(_Strict):
    label: str
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


_MATCHER_TEXT_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def parse_matchers(raw: Any) -> list[Matcher]:
    """Accept `{agent: researcher}`, `{agent: {"=~": "res.*"}}` or `['agent=~"res.*"']`."""
    if raw is None:
        return []
    out: list[Matcher] = []
    if isinstance(raw, Mapping):
        for label, spec in raw.items():
            if isinstance(spec, Mapping):
                for op, value in spec.items():
                    if op not in MATCH_OPS:
                        raise ValueError(f"unknown matcher operator {op!r} for label {label!r}; valid: {', '.join(MATCH_OPS)}")
                    out.append(Matcher(label=str(label), op=op, value=str(value)))
            else:
                out.append(Matcher(label=str(label), op="=", value="" if spec is None else str(spec)))
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                out.append(Matcher.model_validate(item))
                continue
            m = _MATCHER_TEXT_RE.match(str(item))
            if not m:
                raise ValueError(f"cannot parse matcher {item!r}; write it like agent=\"researcher\" or agent=~\"res.*\"")
            out.append(Matcher(label=m.group(1), op=m.group(2), value=m.group(3)))  # type: ignore[arg-type]
    else:
        raise ValueError("matchers must be a mapping {label: value} or a list like ['agent=~\"res.*\"']")
    for m in out:
        if m.op in ("=~", "!~"):
            try:
                re.compile(m.value)
            except re.error as e:
                raise ValueError(f"invalid regular expression {m.value!r} for label {m.label!r}: {e}") from None
    return out


class Rule(_Strict):
    """One alerting rule. Durations are seconds after validation."""

    name: str
    type: Literal["threshold", "trend", "anomaly", "forecast", "absent"]
    metric: str
    matchers: list[Matcher] = Field(default_factory=list)
    aggregate: Aggregate = "avg"
    window: Duration = 300.0
    op: Operator | None = None
    value: float | None = None
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0
    recovery: float | None = None
    cooldown: Duration = 0.0
    severity: Severity = Severity.WARNING
    group: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # trend
    trend_measure: Literal["slope_per_hour", "change_pct"] = "slope_per_hour"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    # anomaly
    detector: str = "default"
    sensitivity: float | None = Field(default=None, gt=0.0, le=1.0)
    # trend / anomaly / forecast history
    lookback: Duration = 0.0
    # forecast
    horizon: Duration = 0.0
    min_probability: float = Field(default=0.5, gt=0.0, le=1.0)
    # absent / grouping of series
    by: list[str] | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not LABEL_NAME_RE.match(v):
            raise ValueError("rule name must match [a-zA-Z_][a-zA-Z0-9_]* (it becomes the alertname label)")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not METRIC_NAME_RE.match(v):
            raise ValueError("metric must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        return v

    @field_validator("matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("window", "for_", "keep_firing_for", "cooldown", "lookback", "horizon", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)

    @field_validator("detector")
    @classmethod
    def _detector(cls, v: str) -> str:
        from perf_alerts.analytics.anomaly import DETECTORS

        if v not in DETECTORS:
            raise ValueError(f"unknown detector {v!r}; valid: {', '.join(DETECTORS)}")
        return v

    @model_validator(mode="after")
    def _per_type(self) -> "Rule":
        t = self.type
        if t in ("threshold", "trend", "forecast"):
            missing = [f for f in ("op", "value") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a {t} rule needs {' and '.join(missing)}")
        if t == "forecast" and self.horizon <= 0:
            raise ValueError("a forecast rule needs horizon (e.g. horizon: 6h)")
        if t == "threshold" and self.window <= 0 and self.aggregate != "last":
            raise ValueError("window must be > 0")
        if self.recovery is not None and self.op in ("==", "!="):
            raise ValueError("recovery (hysteresis) needs an ordering operator (>, >=, <, <=)")
        if self.recovery is not None and self.value is not None and self.op in (">", ">="):
            if self.recovery > self.value:
                raise ValueError(f"recovery {self.recovery} must be <= value {self.value} for op {self.op}")
        if self.recovery is not None and self.value is not None and self.op in ("<", "<="):
            if self.recovery < self.value:
                raise ValueError(f"recovery {self.recovery} must be >= value {self.value} for op {self.op}")
        if self.lookback <= 0:
            self.lookback = {"trend": max(self.window, 3600.0), "anomaly": 86400.0, "forecast": 86400.0}.get(
                t, self.window
            )
        return self

    @property
    def threshold(self) -> float | None:
        if self.type == "anomaly":
            from perf_alerts.analytics.anomaly import threshold_for

            return self.value if self.value is not None else threshold_for(self.sensitivity)
        return self.value


class MetricMeta(_Strict):
    """What a metric means, so direction ('worse', 'better') is never guessed from a sign."""

    unit: str = ""
    better: Literal["lower", "higher", "none"] = "none"
    kind: Literal["gauge", "counter", "event"] = "gauge"
    description: str = ""


class GlobalSettings(_Strict):
    evaluation_interval: Duration = 60.0
    retention: Duration = 30 * 86400.0
    downsample_after: Duration = 7 * 86400.0
    downsample_step: Duration = 300.0
    dashboard_url: str | None = None

    @field_validator("evaluation_interval", "retention", "downsample_after", "downsample_step", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)


class ModelPrice(_Strict):
    """USD per 1M tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class Config(_Strict):
    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    metrics: dict[str, MetricMeta] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    # Sections owned by later layers are kept as raw mappings until their models land here.
    receivers: list[dict[str, Any]] = Field(default_factory=list)
    route: dict[str, Any] | None = None
    inhibit_rules: list[dict[str, Any]] = Field(default_factory=list)
    escalations: list[dict[str, Any]] = Field(default_factory=list)
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    policies: list[dict[str, Any]] = Field(default_factory=list)

    source: str = Field(default="<defaults>", exclude=True)

    @model_validator(mode="after")
    def _unique_rule_names(self) -> "Config":
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"duplicate rule name {r.name!r}")
            seen.add(r.name)
        return self

    def metric_meta(self, metric: str) -> MetricMeta:
        """Configured metadata, else the naming conventions of the built-in metrics."""
        if metric in self.metrics:
            return self.metrics[metric]
        return default_metric_meta(metric)

    def rules_in_group(self, group: str | None) -> list[Rule]:
        return [r for r in self.rules if group is None or r.group == group]


_LOWER_BETTER = ("_seconds", "_latency", "_errors", "_errors_total", "_failures", "_failures_total", "_cost",
                 "_cost_usd", "_usd", "_percent", "_bytes", "_tokens", "_retries", "_timeouts")
_HIGHER_BETTER = ("_quality", "_success", "_success_ratio", "_score", "_accuracy", "_throughput", "_availability")


def default_metric_meta(metric: str) -> MetricMeta:
    kind: Literal["gauge", "counter", "event"] = "counter" if metric.endswith("_total") else "gauge"
    base = metric[: -len("_total")] if metric.endswith("_total") else metric
    if base.endswith(_HIGHER_BETTER):
        return MetricMeta(better="higher", kind=kind)
    if base.endswith(_LOWER_BETTER) or metric.endswith(_LOWER_BETTER):
        unit = "s" if base.endswith("_seconds") else ("%" if base.endswith("_percent") else "")
        return MetricMeta(better="lower", kind=kind, unit=unit)
    return MetricMeta(kind=kind)


# --------------------------------------------------------------------------- loading


@dataclass
class _Marks:
    """Line numbers of every mapping key / sequence item, by path."""

    lines: dict[tuple[Any, ...], int]

    def line_for(self, loc: tuple[Any, ...]) -> int | None:
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _collect_marks(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _collect_marks(v, path + (key,), out)
            out[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _collect_marks(item, path + (i,), out)


def _substitute_env(data: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(data, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        return _ENV_RE.sub(repl, data)
    if isinstance(data, list):
        return [_substitute_env(x, env, missing) for x in data]
    if isinstance(data, dict):
        return {k: _substitute_env(v, env, missing) for k, v in data.items()}
    return data


_ALIASES = {"for_": "for", "global_": "global"}
_FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "type": RULE_TYPES,
    "aggregate": AGGREGATES,
    "op": OPERATORS,
    "severity": tuple(s.value for s in Severity),
}


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            p = _ALIASES.get(str(p), str(p))
            parts.append(("." if parts else "") + p)
    return "".join(parts) or "<top>"


def _model_fields_for(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for p in loc[:-1]:
        if isinstance(p, int):
            continue
        f = model.model_fields.get(p) or next(
            (fi for n, fi in model.model_fields.items() if fi.alias == p), None
        )
        if f is None:
            return []
        ann = f.annotation
        inner = getattr(ann, "__args__", (ann,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return [fi.alias or n for n, fi in model.model_fields.items() if n != "source"]


def _explain(err: Mapping[str, Any], data: Any) -> str:
    loc = tuple(err.get("loc", ()))
    # pydantic reports literal/enum errors on the field; union members add a suffix we drop
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    etype = err.get("type", "")
    field = str(loc[-1]) if loc else ""
    if etype == "extra_forbidden":
        valid = _model_fields_for(loc)
        close = difflib.get_close_matches(field, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; valid fields: {', '.join(valid)}" if valid else "")
        return f"unknown field {field!r}{hint}"
    if etype in ("literal_error", "enum") and field in _FIELD_CHOICES:
        got = err.get("input")
        choices = _FIELD_CHOICES[field]
        close = difflib.get_close_matches(str(got), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"invalid value {got!r}{hint}; valid: {', '.join(choices)}"
    return msg


def parse_config(text: str, source: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping (rules:, receivers:, ...)")
    marks: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _collect_marks(node, (), marks)
    missing: list[str] = []
    data = _substitute_env(data, env, missing)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        m = _Marks(marks)
        problems = []
        for err in e.errors():
            loc = tuple(err.get("loc", ()))
            line = m.line_for(tuple(_ALIASES.get(p, p) if isinstance(p, str) else p for p in loc))
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {_format_loc(loc)}: {_explain(err, data)}")
        raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} problems in {source}:\n  " + "\n  ".join(problems), problems) from None
    cfg.source = source
    return cfg


def packaged_config_dir() -> Path:
    """`config/` from an installed wheel, else the checkout's top-level `config/`."""
    here = Path(__file__).resolve().parent
    bundled = here / "_bundled_config"
    if bundled.is_dir():
        return bundled
    return here.parents[1] / "config"


def resolve_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    local = Path("config") / "alerting.yaml"
    if local.is_file():
        return local
    return packaged_config_dir() / "alerting.yaml"


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    p = resolve_config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config: {e}") from None
    return parse_config(text, str(p), env)
