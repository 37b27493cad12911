"""Configuration: YAML → pydantic, with `${ENV}` substitution and file:line:field errors.

The loader keeps the YAML node marks so a validation error points at the line the user
must edit, and suggests the valid values. YAML is always loaded with the safe loader.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from perf_alerts import catalog
from perf_alerts.condition import Condition, ConditionError, parse_condition
from perf_alerts.detectors import DETECTORS, threshold_for
from perf_alerts.errors import ConfigError  # re-exported: front ends import it from here
from perf_alerts.model import LABEL_NAME_RE, METRIC_NAME_RE, Severity
from perf_alerts.timeutil import TimeParseError, parse_duration, short_repr

ENV_CONFIG = "PERF_ALERTS_CONFIG"


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


MAX_PATTERN_LENGTH = 4096  # characters of one regular expression in a matcher


def _re2_options() -> Any:
    import re2

    opts = re2.Options()
    opts.log_errors = False  # RE2 would print its own copy of the error on stderr
    opts.never_capture = True  # only "does it match" is asked
    return opts


@functools.lru_cache(maxsize=1024)
def compile_matcher_regex(pattern: str) -> tuple[Any, str | None]:
    """`pattern` compiled with RE2 (linear-time matching, as Alertmanager), or (None, why not).

    RE2 refuses what needs backtracking (backreferences, lookaround): such a pattern gets an
    error here instead of a match that can take minutes. Imported lazily: `import perf_alerts`
    stays cheap.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        return None, f"longer than {MAX_PATTERN_LENGTH:,} characters"
    try:
        import re2

        return re2.compile(pattern, _re2_options()), None
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        raise
    except UnicodeEncodeError:  # a lone surrogate
        return None, "not valid Unicode text"
    except Exception as e:  # re2.error (bytes message)
        arg = e.args[0] if e.args else e
        why = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
        why = why if len(why) <= 120 else why[:119] + "…"  # RE2 repeats the pattern, which may be long
        return None, why or type(e).__name__


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a matcher's regular expression (RE2 syntax), or None when it can."""
    return compile_matcher_regex(pattern)[1]


@functools.lru_cache(maxsize=16384)
def _regex_hit_cached(pattern: str, text: str) -> bool:
    return _regex_hit(pattern, text)


def _regex_hit(pattern: str, text: str) -> bool:
    rx, _ = compile_matcher_regex(pattern)
    if rx is None:  # refused by RE2 (stored by an older version): matches nothing
        return False
    try:
        return rx.fullmatch(text) is not None
    except UnicodeEncodeError:  # a lone surrogate: match the text as UTF-8 can carry it
        return rx.fullmatch(text.encode("utf-8", "replace").decode("utf-8")) is not None


class Matcher(_Strict):
    """`label op value` in Alertmanager's sense: `=~`/`!~` take an RE2 expression that must match
    the whole value (Alertmanager anchors it as `^(?:value)$`); an absent label is the empty string."""

    label: str
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str

    @model_validator(mode="after")
    def _regex(self) -> "Matcher":
        if self.op in ("=~", "!~"):
            why = regex_problem(self.value)
            if why is not None:
                raise ValueError(_regex_message(self.value, self.label, why))
        return self

    @property
    def valid(self) -> bool:
        """False only for a matcher built without validation whose pattern RE2 refuses."""
        return self.op not in ("=~", "!~") or regex_problem(self.value) is None

    def __str__(self) -> str:
        """`label op "value"`, escaped as Alertmanager prints a matcher (parses back to itself)."""
        return f"{self.label}{self.op}{quote_label_value(self.value)}"

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        if self.op not in ("=~", "!~") or regex_problem(self.value) is not None:
            return False  # an invalid matcher (only from old stored data) matches nothing
        hit = _regex_hit_cached(self.value, actual) if len(actual) <= 256 else _regex_hit(self.value, actual)
        return hit if self.op == "=~" else not hit


def _regex_message(pattern: str, label: str, why: str) -> str:
    shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
    # shown as typed (repr() would double every backslash: `(a)\\1` for `(a)\1`)
    return (f"invalid regular expression `{shown}` for label {label!r}: {why} (matchers use RE2 syntax, as "
            f"Alertmanager: no backreferences or lookaround)")


_MATCHER_HEAD_RE = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


def _matcher_tokens(text: str) -> list[str]:
    """`{foo="bar", dings!="bums"}` → ['foo="bar"', ' dings!="bums"'], as Alertmanager's
    `labels.ParseMatchers`: optional braces, split on commas outside double quotes (a backslash
    escapes a quote); a trailing comma is allowed, an empty matcher between commas is not."""
    s = text.strip()
    s = s.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside = escaped = False
    for ch in s:
        if ch == "," and not inside:
            tokens.append("".join(token))
            token = []
            continue
        if ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(ch)
    last = "".join(token).strip()
    if last:
        tokens.append(last)
    return tokens


def _split_matcher_text(text: str) -> tuple[str, str, str] | str:
    """`agent=~"res.*"` → ("agent", "=~", "res.*"); a str saying why when it is not a matcher.

    Alertmanager's `labels.ParseMatcher`: the value may be quoted; inside it `\\"`, `\\\\` and `\\n`
    are escapes (any other backslash is literal) and an unescaped `"` is an error. Linear in the
    length of the text (a user types it: a backtracking pattern here would be a hang).
    """
    m = _MATCHER_HEAD_RE.match(text)
    if not m:
        return "bad matcher format"
    raw = text[m.end():].strip()
    if "\n" in raw:
        return "a line break in a matcher (write it as \\n inside the quotes)"
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append("\n" if ch == "n" else ch if ch in '"\\' else "\\" + ch)
            continue
        if ch == "\\":
            if i < len(raw) - 1:
                escaped = True
                continue
            out.append(ch)  # a backslash as the last character is literal
        elif ch == '"':
            if not quoted or i < len(raw) - 1:
                return "the value contains an unescaped double quote (write \\\" inside the quotes)"
            quoted = False
        else:
            out.append(ch)
    if quoted:
        return "the value's opening double quote is not closed"
    return m.group(1), m.group(2), "".join(out)


def quote_label_value(value: str) -> str:
    """`value` in double quotes as Alertmanager prints a matcher (`labels.Matcher.String`, its
    openMetricsEscape): `\\`, `"` and a line break escaped, nothing else.

    The matcher parser decodes exactly these three escapes (any other backslash is literal), so
    the printed text always parses back to the same matcher. Other control characters stay as
    they are: what prints them to a terminal escapes them there (`textsafe.terminal_safe`).
    """
    return '"' + value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


def _matcher(label: Any, op: Any, value: Any) -> Matcher:
    """A Matcher, or ValueError with its one-line message (never a multi-line ValidationError)."""
    if op in ("=~", "!~"):
        why = regex_problem(str(value))
        if why is not None:
            raise ValueError(_regex_message(str(value), str(label), why))
    try:
        return Matcher(label=label, op=op, value=value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        msg = str(first.get("msg", "invalid matcher")).removeprefix("Value error, ")
        raise ValueError(f"{where}: {msg}" if where else msg) from None


def parse_matchers(raw: Any) -> list[Matcher]:
    """Accept `{agent: researcher}`, `{agent: {"=~": "res.*"}}` or `['agent=~"res.*"']`.

    Regular expressions are checked with RE2 here, so a pattern that needs backtracking is a
    ValueError (a config error with file:line, an InputError through the silence API).
    """
    if raw is None:
        return []
    if isinstance(raw, str):  # 'foo="bar", dings!="bums"' or '{foo="bar"}': Alertmanager's matcher text
        raw = [raw]
    out: list[Matcher] = []
    if isinstance(raw, Mapping):
        for label, spec in raw.items():
            if isinstance(spec, Mapping):
                for op, value in spec.items():
                    if op not in MATCH_OPS:
                        raise ValueError(f"unknown matcher operator {op!r} for label {label!r}; valid: {', '.join(MATCH_OPS)}")
                    out.append(_matcher(str(label), op, "" if value is None else str(value)))
            else:
                out.append(_matcher(str(label), "=", "" if spec is None else str(spec)))
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, Mapping):
                unknown = set(item) - {"label", "op", "value"}
                if unknown:
                    raise ValueError(f"unknown matcher field(s) {', '.join(sorted(map(str, unknown)))}; "
                                     "valid: label, op, value")
                value = item.get("value")
                out.append(_matcher(item.get("label"), item.get("op", "="), "" if value is None else value))
                continue
            for token in _matcher_tokens(str(item)):
                parts = _split_matcher_text(token)
                if isinstance(parts, str):
                    shown = token if len(token) <= 80 else token[:77] + "..."
                    raise ValueError(f"cannot parse matcher {shown!r}: {parts}; write it like agent=\"researcher\" "
                                     "or agent=~\"res.*\" (several: {a=\"x\", b!=\"y\"})")
                out.append(_matcher(*parts))
    else:
        raise ValueError("matchers must be a mapping {label: value} or a list like ['agent=~\"res.*\"']")
    return out


class Rule(_Strict):
    """One alerting rule. Durations are seconds after validation."""

    name: str
    type: Literal["threshold", "trend", "anomaly", "forecast", "absent", "slo_burn"]  # slo_burn: generated from slos:
    metric: str
    matchers: list[Matcher] = Field(default_factory=list)
    aggregate: Aggregate = "avg"
    window: Duration = 300.0
    op: Operator | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0
    recovery: float | None = Field(default=None, allow_inf_nan=False)
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
    # where the series come from: the store (default), or a PromQL query on the `prometheus:` server
    source: Literal["store", "prometheus"] = "store"
    query: str | None = Field(default=None, min_length=1, max_length=10_000)
    step: Duration | None = None  # resolution of the range query (prometheus rules that read history)

    @model_validator(mode="before")
    @classmethod
    def _prometheus_defaults(cls, data: Any) -> Any:
        """A `source: prometheus` rule's `metric` only names the result for metadata (unit, direction);
        without one it is the rule's name. Its value is whatever the PromQL computes (aggregate `last`)."""
        if isinstance(data, dict) and data.get("source") == "prometheus":
            data = dict(data)
            if "metric" not in data and isinstance(data.get("name"), str):
                data["metric"] = data["name"]
            data.setdefault("aggregate", "last")
        return data

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

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # Prometheus keeps a rule's `labels:` as written; here the `severity` field sets the severity
        # label, so a different `labels.severity` would be silently overwritten: refuse the conflict.
        sev = info.data.get("severity")
        if "severity" in v and sev is not None and v["severity"] != Severity(sev).value:
            raise ValueError(f"labels.severity {v['severity']!r} conflicts with severity: {Severity(sev).value} "
                             f"(the severity field sets the alert's severity label; Prometheus would keep the label, "
                             f"so rather than overwrite it silently: drop labels.severity or set severity: to one of "
                             f"{', '.join(x.value for x in Severity)})")
        return v

    @field_validator("matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("window", "for_", "keep_firing_for", "cooldown", "lookback", "horizon", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)

    @field_validator("step", mode="before")
    @classmethod
    def _step(cls, v: Any) -> float | None:
        if v is None:
            return None
        d = _duration(v)
        if d <= 0:
            raise ValueError("step must be > 0 (e.g. step: 1m)")
        return d

    @field_validator("op")
    @classmethod
    def _op(cls, v: Operator | None, info: ValidationInfo) -> Operator | None:
        if info.data.get("type") == "forecast" and v in ("==", "!="):
            raise ValueError(f"a forecast rule predicts crossing a threshold, which needs an ordering operator; "
                             f"{v!r} cannot be forecast: use one of '>', '>=', '<', '<='")
        return v

    @field_validator("detector")
    @classmethod
    def _detector(cls, v: str) -> str:
        if v not in DETECTORS:
            raise ValueError(f"unknown detector {v!r}; valid: {', '.join(DETECTORS)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _query_needs_source(cls, data: Any) -> Any:
        """Said first: without it, a PromQL rule missing `source` was told only that `metric` is required."""
        if isinstance(data, dict) and data.get("query") is not None and data.get("source", "store") == "store":
            raise ValueError("query (PromQL) needs source: prometheus; a rule on the store's samples names "
                             "metric and matchers instead")
        return data

    @model_validator(mode="after")
    def _per_type(self) -> "Rule":
        t = self.type
        if self.query is not None and self.source != "prometheus":
            raise ValueError("query (PromQL) needs source: prometheus; a rule on the store's samples names "
                             "metric and matchers instead")
        if self.source == "prometheus":
            if self.query is None:
                raise ValueError("a source: prometheus rule needs query (PromQL), e.g. "
                                 "query: 'histogram_quantile(0.95, sum by (le, agent) (rate(llm_seconds_bucket[5m])))'")
            if self.aggregate != "last":
                raise ValueError(f"aggregate: {self.aggregate} on a source: prometheus rule; the PromQL query computes "
                                 "the value (e.g. avg_over_time(x[5m]), quantile_over_time(0.95, x[5m])): drop aggregate")
        elif self.step is not None:
            raise ValueError("step is the resolution of a Prometheus range query: it needs source: prometheus")
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
            self.lookback = {"trend": max(self.window, 3600.0), "anomaly": 3 * 86400.0, "forecast": 86400.0}.get(
                t, self.window
            )
        return self

    @property
    def threshold(self) -> float | None:
        if self.type == "anomaly":
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
    # where `perf-alerts run` serves the dashboard and API (anything but loopback needs PERF_ALERTS_TOKEN)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    @field_validator("evaluation_interval", "retention", "downsample_after", "downsample_step", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)


class ModelPrice(_Strict):
    """USD per 1M tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


# --------------------------------------------------------------------------- notifications


def check_url(url: str, *, discord: bool = False) -> str:
    """A usable http(s) URL, checked at load time so a typo is not found during an incident.

    The messages never repeat the URL: it holds the secret token.
    """
    from urllib.parse import urlsplit

    if not url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of range
    except ValueError as e:
        raise ValueError(f"not a valid URL ({e.__class__.__name__}: {str(e).split(':')[0]})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if port is not None and not 0 < port < 65536:
        raise ValueError("port must be 1-65535")
    if discord and not re.search(r"/webhooks/\d+/[^/]+", parts.path):
        raise ValueError("not a Discord webhook URL (expected …/api/webhooks/<id>/<token>)")
    return url


class DiscordTarget(_Strict):
    webhook_url: str = ""  # a secret: from the environment, never printed
    mention_roles: list[str] = Field(default_factory=list)
    username: str = "perf-alerts"
    avatar_url: str | None = None
    thread_id: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v.strip(), discord=True)

    @field_validator("mention_roles", mode="before")
    @classmethod
    def _roles(cls, v: Any) -> list[str]:
        roles = [str(x).strip() for x in (v or []) if str(x).strip()]
        for r in roles:
            if not r.isdigit():
                raise ValueError(f"role id {r!r} must be the numeric Discord role id")
        return roles


class WebhookTarget(_Strict):
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v.strip())

    @field_validator("timeout", mode="before")
    @classmethod
    def _t(cls, v: Any) -> float:
        return _duration(v)


class FileTarget(_Strict):
    path: str


class ConsoleTarget(_Strict):
    stream: Literal["stdout", "stderr"] = "stdout"


class Receiver(_Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():  # Alertmanager: "missing name in receiver"
            raise ValueError("missing name in receiver")
        return v

    discord: DiscordTarget | None = None
    webhook: WebhookTarget | None = None
    file: FileTarget | None = None
    console: ConsoleTarget | None = None
    # Alertmanager's discord/webhook configs default to send_resolved: true; false keeps the
    # group's resolved notifications from this receiver
    send_resolved: bool = True

    @model_validator(mode="after")
    def _one(self) -> "Receiver":
        kinds = [k for k in ("discord", "webhook", "file", "console") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"receiver {self.name!r} has {' and '.join(kinds)}; give at most one of discord, "
                             f"webhook, file, console (console: {{}} prints to the terminal; none: a blackhole "
                             f"that drops what is routed to it)")
        return self

    @property
    def blackhole(self) -> bool:
        """No integration (Alertmanager's `- name: devnull`): notifications routed here are dropped."""
        return all(getattr(self, k) is None for k in ("discord", "webhook", "file", "console"))

    @property
    def kind(self) -> str:
        """The receiver that will really be used: a Discord or webhook receiver without a URL is the console;
        one with no integration is a blackhole."""
        if self.blackhole:
            return "blackhole"
        if self.discord is not None:
            return "discord" if self.discord.webhook_url else "console"
        if self.webhook is not None:
            return "webhook" if self.webhook.url else "console"
        if self.file is not None:
            return "file"
        return "console"


_LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # Prometheus' label name syntax


def _legacy_matchers(data: Any, key: str, match: str = "match", match_re: str = "match_re") -> Any:
    """Alertmanager's deprecated `match` (label: value, equality) and `match_re` (label: regex,
    anchored) converted to matchers and appended to `key` (Alertmanager ANDs them with `matchers`)."""
    if not isinstance(data, Mapping) or (match not in data and match_re not in data):
        return data
    data = dict(data)
    out: list[Matcher] = parse_matchers(data.pop(key, None))
    for legacy, op in ((match, "="), (match_re, "=~")):
        raw = data.pop(legacy, None)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            raise ValueError(f"{legacy} must be a mapping {{label: value}}")
        for label, value in raw.items():
            if not _LABEL_NAME_RE.match(str(label)):
                raise ValueError(f"invalid label name {str(label)!r} in {legacy}")
            out.append(_matcher(str(label), op, "" if value is None else str(value)))
    data[key] = out
    return data


class Route(_Strict):
    """A node of the route tree; unset fields inherit from the parent (as in Alertmanager)."""

    receiver: str | None = None
    matchers: list[Matcher] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list["Route"] = Field(default_factory=list)
    # names of `time_intervals:` entries; NOT inherited by child routes (Alertmanager's dispatch/route.go
    # sets them from the node's own configuration, unlike the timings above)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _legacy_matchers(data, "matchers")

    @field_validator("matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("group_wait", "group_interval", "repeat_interval", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float | None:
        return None if v is None else _duration(v)

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _not_zero(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and v <= 0:  # Alertmanager: "group_interval cannot be zero"
            raise ValueError(f"{info.field_name} cannot be zero")
        return v

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        seen: set[str] = set()
        for name in v:
            if name == "..." and len(v) > 1:  # Alertmanager rejects the wildcard beside other labels
                raise ValueError("cannot have wildcard group_by ('...') and other labels at the same time")
            if name != "..." and not _LABEL_NAME_RE.match(name):
                raise ValueError(f"invalid label name {name!r} in group_by (letters, digits and _, not starting "
                                 "with a digit)")
            if name in seen:
                raise ValueError(f"duplicated label {name!r} in group_by")
            seen.add(name)
        return v


# --------------------------------------------------------------------------- time intervals
# Alertmanager's `time_intervals:` (timeinterval/timeinterval.go): the YAML shape is kept key for
# key, so an Alertmanager configuration's intervals load unchanged; the parsed forms (minutes,
# inclusive integer ranges) are what notify/timeintervals.py evaluates.

TI_WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
TI_MONTHS = {m: i + 1 for i, m in enumerate(("january", "february", "march", "april", "may", "june", "july",
                                             "august", "september", "october", "november", "december"))}
_TI_TIME_RE = re.compile(r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")  # as Alertmanager: two-digit hours


def _ti_time(text: str) -> int:
    """"HH:MM" → minutes into the day; 24:00 (the end of the day) is allowed, 9:00 is not (Alertmanager's format)."""
    if not _TI_TIME_RE.match(text):
        raise ValueError(f"couldn't parse timestamp {text!r}: use HH:MM, 00:00 to 24:00")
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _ti_range(text: str, member: Callable[[str], int]) -> tuple[int, int]:
    """"a:b" or "a" → (begin, end), members parsed by `member` (lower-cased first, as Alertmanager)."""
    text = text.strip().lower()
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"couldn't parse range {text!r}, invalid format")
    begin = member(parts[0])
    return begin, member(parts[-1])


def _ti_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _ti_weekday(text: str) -> int:
    if text not in TI_WEEKDAYS:
        close = difflib.get_close_matches(text, list(TI_WEEKDAYS), n=1)
        raise ValueError(f"{text!r} is not a valid weekday" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return TI_WEEKDAYS[text]


def _ti_month(text: str) -> int:
    if text in TI_MONTHS:
        return TI_MONTHS[text]
    try:
        return int(text)
    except ValueError:
        close = difflib.get_close_matches(text, list(TI_MONTHS), n=1)
        raise ValueError(f"{text!r} is not a valid month" + (f" (did you mean {close[0]!r}?)" if close else "")) from None


def weekday_range(text: str) -> tuple[int, int]:
    """0 = Sunday … 6 = Saturday; "saturday:sunday" is refused, as Alertmanager does (write two entries)."""
    b, e = _ti_range(text, _ti_weekday)
    if b > e:
        raise ValueError(f"{text!r}: start day cannot be after end day (Sunday is the first day of the week; "
                         "write 'saturday' and 'sunday' as two entries)")
    return b, e


def day_of_month_range(text: str) -> tuple[int, int]:
    """1…31 or -1…-31 (from the end of the month); the checks are Alertmanager's (a 28-day month decides
    whether a range is always empty)."""
    b, e = _ti_range(text, _ti_int)
    for d in (b, e):
        if d == 0 or not -31 <= d <= 31:
            raise ValueError(f"{d} is not a valid day of the month: out of range (1 to 31, or -1 to -31 from the end)")
    if b < 0 < e:
        raise ValueError(f"{text!r}: end day must be negative if start day is negative")
    if (28 + b if b < 0 else b) > (28 + e if e < 0 else e):
        raise ValueError(f"{text!r}: end day {e} is always before start day {b}")
    return b, e


def month_range(text: str) -> tuple[int, int]:
    b, e = _ti_range(text, _ti_month)
    if b > e:
        raise ValueError(f"{text!r}: end month is before start month")
    return b, e


def year_range(text: str) -> tuple[int, int]:
    b, e = _ti_range(text, _ti_int)
    if b > e:
        raise ValueError(f"{text!r}: end year {e} is before start year {b}")
    return b, e


def _ti_strings(v: Any) -> Any:
    """A list of ranges; numbers are read as their text (`days_of_month: [1, -1]` as Alertmanager reads it)."""
    if v is None or not isinstance(v, list):
        return v
    return [str(x) if isinstance(x, (int, str)) and not isinstance(x, bool) else x for x in v]


class TimeRange(_Strict):
    """Minutes of the day from `start_time` (inclusive) to `end_time` (exclusive), in the interval's location."""

    start_time: str
    end_time: str

    @model_validator(mode="before")
    @classmethod
    def _both(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and (not data.get("start_time") or not data.get("end_time")):
            raise ValueError("both start_time and end_time must be provided")
        return data

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return v if not isinstance(v, int) or isinstance(v, bool) else str(v)

    @model_validator(mode="after")
    def _order(self) -> "TimeRange":
        if _ti_time(self.start_time) >= _ti_time(self.end_time):
            raise ValueError(f"start_time {self.start_time} cannot be equal to or after end_time {self.end_time}")
        return self

    @property
    def minutes(self) -> tuple[int, int]:
        return _ti_time(self.start_time), _ti_time(self.end_time)


class TimeIntervalSpec(_Strict):
    """One entry of a time interval (Alertmanager's `TimeInterval`): every field given must match;
    within a field, any range may. An empty entry matches all the time."""

    times: list[TimeRange] | None = None
    weekdays: list[str] | None = None
    days_of_month: list[str] | None = None
    months: list[str] | None = None
    years: list[str] | None = None
    location: str | None = None

    @field_validator("weekdays", "days_of_month", "months", "years", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        return _ti_strings(v)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, v: list[str] | None) -> list[str] | None:
        for x in v or []:
            weekday_range(x)
        return v

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        for x in v or []:
            day_of_month_range(x)
        return v

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[str] | None) -> list[str] | None:
        for x in v or []:
            month_range(x)
        return v

    @field_validator("years")
    @classmethod
    def _years(cls, v: list[str] | None) -> list[str] | None:
        for x in v or []:
            year_range(x)
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str | None) -> str | None:
        if v is None or v in ("", "UTC", "Local"):  # Go's time.LoadLocation names these itself
            return v
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'Europe/Berlin' or "
                             "'America/New_York')") from None
        return v


class TimeIntervalSet(_Strict):
    """A named time interval (Alertmanager's `time_intervals:` entry) that routes refer to by name."""

    name: str
    time_intervals: list[TimeIntervalSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v:
            raise ValueError("missing name in time interval")
        return v


def route_nodes(root: Route, path: str = "route", node_id: str = "0") -> Iterator[tuple[str, str, Route]]:
    """The route tree depth first, the root included: (its place in the config, e.g.
    `route.routes[0].routes[1]`; its id as the notification pipeline numbers it, e.g. `0.0.1`; the node)."""
    yield path, node_id, root
    for i, child in enumerate(root.routes):
        yield from route_nodes(child, f"{path}.routes[{i}]", f"{node_id}.{i}")


class InhibitRule(_Strict):
    source_matchers: list[Matcher] = Field(default_factory=list)
    target_matchers: list[Matcher] = Field(default_factory=list)
    equal: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        data = _legacy_matchers(data, "source_matchers", "source_match", "source_match_re")
        return _legacy_matchers(data, "target_matchers", "target_match", "target_match_re")

    @field_validator("source_matchers", "target_matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("equal")
    @classmethod
    def _equal(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _LABEL_NAME_RE.match(name):  # Alertmanager: "invalid label name %q in equal list"
                raise ValueError(f"invalid label name {name!r} in equal list (letters, digits and _, not "
                                 "starting with a digit)")
        return v


class EscalationLevel(_Strict):
    after: Duration
    receivers: list[str]
    mention_roles: list[str] = Field(default_factory=list)

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, v: Any) -> float:
        return _duration(v)

    @field_validator("mention_roles", mode="before")
    @classmethod
    def _roles(cls, v: Any) -> list[str]:
        return DiscordTarget._roles(v)  # type: ignore[no-any-return]


class EscalationPolicy(_Strict):
    name: str
    matchers: list[Matcher] = Field(default_factory=list)
    levels: list[EscalationLevel]
    repeat_interval: Duration | None = None  # repeat the last level while unacknowledged

    @field_validator("matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("repeat_interval", mode="before")
    @classmethod
    def _rep(cls, v: Any) -> float | None:
        return None if v is None else _duration(v)

    @model_validator(mode="after")
    def _ordered(self) -> "EscalationPolicy":
        if not self.levels:
            raise ValueError("an escalation policy needs at least one level")
        afters = [lv.after for lv in self.levels]
        if afters != sorted(afters):
            raise ValueError("escalation levels must be in increasing order of `after`")
        return self


class DeliverySettings(_Strict):
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base: Duration = 2.0
    backoff_cap: Duration = 600.0
    # how long `perf-alerts evaluate` keeps retrying before it exits (the daemon retries forever)
    cli_deadline: Duration = 60.0
    # how long a sender holds the notifications it claimed before another process may take
    # them over (wall-clock seconds; renewed while it is still sending)
    lease: Duration = 60.0

    @field_validator("backoff_base", "backoff_cap", "cli_deadline", "lease", mode="before")
    @classmethod
    def _d(cls, v: Any) -> float:
        return _duration(v)


@dataclass(frozen=True)
class RouteDefaults:
    """What an empty route tree means (Alertmanager's defaults)."""

    receiver: str = "console"
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    send_resolved: bool = True


DEFAULT_ROUTE = RouteDefaults()


# --------------------------------------------------------------------------- management

SCHEDULE_CADENCES: dict[str, float | None] = {
    "continuous": None,  # every global.evaluation_interval
    "high": 15 * 60.0,
    "medium": 3600.0,
    "low": 4 * 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
}
SCHEDULE_JOBS = ("evaluate", "summary", "optimization_review", "predictive_analysis")
ACTION_TYPES = ("notify", "escalate", "optimization_review", "webhook", "python")
REMEDIATION_ACTIONS = ("webhook", "python")  # dry-run unless `enabled: true`
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _choice(v: Any, choices: tuple[str, ...], what: str) -> str:
    s = str(v).strip()
    if s not in choices:
        close = difflib.get_close_matches(s, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {what} {short_repr(v)}{hint}; valid: {', '.join(choices)}")
    return s


class Schedule(_Strict):
    """A job on a cadence. Slots are aligned to UTC (multiples of the interval; `at` for daily/weekly)."""

    name: str
    every: str = "continuous"
    job: str = "evaluate"
    group: str | None = None  # evaluate: the rule group (None = every rule)
    at: str | None = None  # daily/weekly: "HH:MM" UTC
    weekday: str | None = None  # weekly: monday..sunday (default monday)
    period: Duration | None = None  # summary (default 7d); optimization_review/predictive lookback (default 1d)
    horizon: Duration = 6 * 3600.0  # predictive_analysis
    send: bool = False  # send the job's report through the notification pipeline
    enabled: bool = True

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> str:
        s = str(v).strip()
        if s in SCHEDULE_CADENCES:
            return s
        try:
            secs = parse_duration(s)
        except TimeParseError:
            close = difflib.get_close_matches(s, list(SCHEDULE_CADENCES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if not close and s.lower() in ("hourly", "hour"):
                hint = " (did you mean 'medium' (1h)?)"
            raise ValueError(f"unknown schedule {short_repr(v)}{hint}; valid: continuous (every evaluation_interval), "
                             f"high (15m), medium (1h), low (4h), daily, weekly or a duration like 30m") from None
        if secs <= 0:
            raise ValueError("a schedule interval must be > 0")
        return s

    @field_validator("job", mode="before")
    @classmethod
    def _job(cls, v: Any) -> str:
        return _choice(v, SCHEDULE_JOBS, "job")

    @field_validator("weekday", mode="before")
    @classmethod
    def _weekday(cls, v: Any) -> str | None:
        if v is None:
            return None
        s = str(v).strip().lower()
        full = next((d for d in WEEKDAYS if d == s or d[:3] == s), None)
        if full is None:
            raise ValueError(f"unknown weekday {v!r}; valid: {', '.join(WEEKDAYS)}")
        return full

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):  # minutes of the day given as a number (570 → 09:30)
            v = f"{v // 60:02d}:{v % 60:02d}"
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(v).strip())
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError(f"invalid time of day {v!r}; write it like \"09:00\" (UTC)")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @field_validator("period", "horizon", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float | None:
        return None if v is None else _duration(v)

    @model_validator(mode="after")
    def _consistent(self) -> "Schedule":
        if self.at is not None and self.every not in ("daily", "weekly"):
            raise ValueError(f"`at` applies to daily and weekly schedules, not {self.every!r}")
        if self.weekday is not None and self.every != "weekly":
            raise ValueError("`weekday` applies to weekly schedules only")
        if self.group is not None and self.job != "evaluate":
            raise ValueError(f"`group` applies to the evaluate job, not {self.job!r}")
        return self

    def interval(self, evaluation_interval: float) -> float:
        if self.every == "continuous":
            return evaluation_interval
        fixed = SCHEDULE_CADENCES.get(self.every)
        return float(fixed) if fixed else parse_duration(self.every)

    @property
    def offset(self) -> float:
        """Seconds after the epoch-aligned slot boundary at which a daily/weekly slot falls (UTC)."""
        if self.every not in ("daily", "weekly"):
            return 0.0
        hh, mm = (self.at or "00:00").split(":")
        off = int(hh) * 3600.0 + int(mm) * 60.0
        if self.every == "weekly":  # the Unix epoch, 1970-01-01, was a Thursday
            off += ((WEEKDAYS.index(self.weekday or "monday") - 3) % 7) * 86400.0
        return off


def _dotted_path_ok(path: str) -> bool:
    """`package.module:function.attr` with every part a Python identifier (checked, never imported)."""
    import keyword

    mod, sep, attr = path.partition(":")
    return bool(sep) and all(p.isidentifier() and not keyword.iskeyword(p) for p in mod.split(".") + attr.split("."))


class PolicyAction(_Strict):
    """One action of a policy. Remediation (webhook, python) is dry-run unless `enabled: true`."""

    type: str
    enabled: bool | None = None  # default: true for notify/escalate/optimization_review, false for remediation
    # notify / escalate
    title: str | None = None
    message: str | None = None
    severity: Severity = Severity.WARNING
    labels: dict[str, str] = Field(default_factory=dict)
    receivers: list[str] = Field(default_factory=list)  # escalate
    mention_roles: list[str] = Field(default_factory=list)  # escalate
    send: bool = True  # optimization_review: send the recommendations as a message
    lookback: Duration = 86400.0  # optimization_review
    # webhook
    url: str | None = None  # a secret: from the environment
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0
    # python
    callable: str | None = None  # "package.module:function"
    entry_point: str | None = None  # a name in the `perf_alerts.actions` entry point group
    params: dict[str, Any] = Field(default_factory=dict)
    # verification of the effect
    target_metric: str | None = None
    target_matchers: list[Matcher] = Field(default_factory=list)
    verify_after: Duration = 15 * 60.0
    tolerance: float = Field(default=0.05, ge=0.0, le=10.0)  # relative change still counted as "no change"

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> str:
        return _choice(v, ACTION_TYPES, "action type")

    @field_validator("target_matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher]:
        return parse_matchers(v)

    @field_validator("mention_roles", mode="before")
    @classmethod
    def _roles(cls, v: Any) -> list[str]:
        return DiscordTarget._roles(v)  # type: ignore[no-any-return]

    @field_validator("lookback", "timeout", "verify_after", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)

    @field_validator("target_metric")
    @classmethod
    def _metric(cls, v: str | None) -> str | None:
        if v is not None and not METRIC_NAME_RE.match(v):
            raise ValueError("target_metric must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        return v

    @model_validator(mode="after")
    def _per_type(self) -> "PolicyAction":
        if self.type == "escalate" and not self.receivers:
            raise ValueError("an escalate action needs receivers (e.g. receivers: [oncall])")
        if self.type == "python":
            if bool(self.callable) == bool(self.entry_point):
                raise ValueError("a python action needs exactly one of callable (\"package.module:function\") "
                                 "or entry_point (a name in the perf_alerts.actions group)")
            if self.callable and not _dotted_path_ok(self.callable):
                raise ValueError(f"callable {self.callable!r} must look like package.module:function")
        if self.type == "webhook" and self.url is None:
            raise ValueError("a webhook action needs url (from the environment, e.g. url: ${REMEDIATION_URL})")
        if self.enabled is None:
            self.enabled = self.type not in REMEDIATION_ACTIONS
        return self

    @property
    def is_remediation(self) -> bool:
        return self.type in REMEDIATION_ACTIONS


class Policy(_Strict):
    """When `when` holds, run `actions` in order, at most once per `cooldown`. Priority 1 runs first."""

    name: str
    when: str
    actions: list[PolicyAction]
    priority: int = 10
    cooldown: Duration = 3600.0
    enabled: bool = True

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, v: Any) -> str:
        try:
            return parse_condition(v).text
        except ConditionError as e:
            raise ValueError(f"invalid condition: {e}") from None

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> float:
        return _duration(v)

    @model_validator(mode="after")
    def _some(self) -> "Policy":
        if not self.actions:
            raise ValueError("a policy needs at least one action")
        return self

    @property
    def condition(self) -> Condition:
        return parse_condition(self.when)


SLO_KINDS = ("latency", "success", "budget")
SLO_NAME_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,99}$")
SLO_BURN_METRIC = "slo:error_budget_burn"  # the metric name SLO burn alerts show (not stored)


class BurnWindow(_Strict):
    """One multi-window, multi-burn-rate alert of an SLO: it fires when the error budget burns at
    `factor`× (or faster) over both `long` and `short` (the SRE workbook's construction)."""

    alert: str
    severity: Severity = Severity.CRITICAL
    factor: float = Field(gt=0.0, allow_inf_nan=False)
    long: Duration
    short: Duration

    @field_validator("alert")
    @classmethod
    def _alert(cls, v: str) -> str:
        if not LABEL_NAME_RE.match(v):
            raise ValueError("alert name must match [a-zA-Z_][a-zA-Z0-9_]* (it becomes the alertname label)")
        return v

    @field_validator("long", "short", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)

    @model_validator(mode="after")
    def _order(self) -> "BurnWindow":
        if self.short <= 0 or self.long <= 0:
            raise ValueError("long and short must be durations > 0 (e.g. long: 1h, short: 5m)")
        if self.short >= self.long:
            raise ValueError(f"short ({self.short:g}s) must be shorter than long ({self.long:g}s)")
        return self


# The SRE workbook's defaults (chapter 5, "Alerting on SLOs"): 2% of a 30-day budget in an hour or 5% in six
# hours pages; 10% in three days opens a ticket.
DEFAULT_BURN_WINDOWS: tuple[dict[str, Any], ...] = (
    {"alert": "SLOBurnFast", "severity": "critical", "factor": 14.4, "long": "1h", "short": "5m"},
    {"alert": "SLOBurnMedium", "severity": "critical", "factor": 6.0, "long": "6h", "short": "30m"},
    {"alert": "SLOBurnSlow", "severity": "warning", "factor": 1.0, "long": "3d", "short": "6h"},
)


def _objective(v: Any) -> float:
    """0.995 or "99.5%" → 0.995."""
    if isinstance(v, bool):
        raise ValueError("objective must be a fraction like 0.995 or a percentage like \"99.5%\"")
    if isinstance(v, str):
        text = v.strip()
        try:
            x = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"objective {v!r} is not a number; write 0.995 or \"99.5%\"") from None
    elif isinstance(v, (int, float)):
        x = float(v)
    else:
        raise ValueError("objective must be a fraction like 0.995 or a percentage like \"99.5%\"")
    if not (0.0 < x < 1.0):
        hint = f' (did you mean "{x:g}%"?)' if 1.0 < x < 100.0 else ""
        raise ValueError(f"objective must be between 0 and 1 (exclusive), got {v!r}{hint}")
    return x


class SLO(_Strict):
    """A service-level objective (`slos:`), evaluated by `perf_alerts.analytics.slo`.

    - latency: the fraction of `metric` samples at or under `threshold` is at least `objective`;
    - success: 1 - (sum of `metric`, the bad events) / (sample count of `total_metric`) is at least `objective`;
    - budget: the sum of `metric` over each `period` stays at or under `limit`.
    """

    name: str
    kind: Literal["latency", "success", "budget"]
    metric: str
    matchers: list[Matcher] = Field(default_factory=list)
    by: list[str] = Field(default_factory=list)
    objective: float | None = None
    window: Duration = 28 * 86400.0
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    total_metric: str | None = None
    total_matchers: list[Matcher] | None = None
    limit: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    period: Duration = 86400.0
    burn_alerts: list[BurnWindow] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SLO_NAME_RE.match(v):
            raise ValueError("SLO name must match [a-zA-Z0-9_][a-zA-Z0-9_.-]* (at most 100 characters; "
                             "it becomes the slo label)")
        return v

    @field_validator("metric", "total_metric")
    @classmethod
    def _metric(cls, v: str | None) -> str | None:
        if v is not None and not METRIC_NAME_RE.match(v):
            raise ValueError("metric must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        return v

    @field_validator("matchers", "total_matchers", mode="before")
    @classmethod
    def _matchers(cls, v: Any) -> list[Matcher] | None:
        return None if v is None else parse_matchers(v)

    @field_validator("by")
    @classmethod
    def _by(cls, v: list[str]) -> list[str]:
        for label in v:
            if not LABEL_NAME_RE.match(label):
                raise ValueError(f"by: {label!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if len(set(v)) != len(v):
            raise ValueError("by: a label is listed twice")
        return v

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, v: Any) -> float | None:
        return None if v is None else _objective(v)

    @field_validator("window", "period", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return _duration(v)

    @model_validator(mode="after")
    def _per_kind(self) -> "SLO":
        from perf_alerts.catalog import ERROR_METRICS

        k = self.kind
        if self.window <= 0:
            raise ValueError("window must be > 0 (the compliance window, e.g. 28d)")
        if k == "latency":
            if self.threshold is None:
                raise ValueError("a latency SLO needs threshold (good when a sample is at or under it, e.g. 60)")
            if self.objective is None:
                raise ValueError("a latency SLO needs objective (e.g. 0.99 or \"99%\")")
        elif k == "success":
            if self.objective is None:
                raise ValueError("a success SLO needs objective (e.g. 0.995 or \"99.5%\")")
            if self.total_metric is None:
                self.total_metric = ERROR_METRICS.get(self.metric)
            if self.total_metric is None:
                raise ValueError(f"a success SLO needs total_metric (the metric whose sample count is the number of "
                                 f"events; known pairs: "
                                 + ", ".join(f"{e} → {t}" for e, t in ERROR_METRICS.items()) + ")")
        else:
            if self.limit is None:
                raise ValueError("a budget SLO needs limit (the most the sum of the metric may reach per period, "
                                 "e.g. limit: 50, period: 1d)")
            if self.period <= 0:
                raise ValueError("period must be > 0 (e.g. 1d)")
            if self.objective is not None:
                raise ValueError("a budget SLO has a limit per period, not an objective; remove objective")
        if k != "latency" and self.threshold is not None:
            raise ValueError(f"threshold belongs to latency SLOs; a {k} SLO does not use it")
        if k != "success" and (self.total_metric is not None or self.total_matchers is not None):
            raise ValueError(f"total_metric/total_matchers belong to success SLOs; a {k} SLO does not use them")
        if k != "budget" and self.limit is not None:
            raise ValueError(f"limit belongs to budget SLOs; a {k} SLO has an objective")
        if self.burn_alerts is None:
            self.burn_alerts = [BurnWindow.model_validate(w) for w in DEFAULT_BURN_WINDOWS]
        alerts = [w.alert for w in self.burn_alerts]
        dup = sorted({a for a in alerts if alerts.count(a) > 1})
        if dup:
            raise ValueError(f"burn_alerts: alert name(s) {', '.join(dup)} used twice in one SLO; each window needs its own")
        return self

    @property
    def windows(self) -> list[BurnWindow]:
        return list(self.burn_alerts or [])

    @property
    def budget_fraction(self) -> float:
        """The error budget as a fraction of events (1 - objective); 1 for budget SLOs (the limit itself)."""
        return 1.0 if self.objective is None else 1.0 - self.objective

    def objective_text(self, unit: str = "") -> str:
        u = f" {unit}" if unit and unit not in ("USD", "%") else ("%" if unit == "%" else "")
        if self.kind == "latency":
            return f"{_pct(self.objective)} of {self.metric} ≤ {self.threshold:g}{u}"
        if self.kind == "success":
            return f"{_pct(self.objective)} of {self.total_metric} without {self.metric}"
        money = "$" if unit == "USD" else ""
        return f"sum of {self.metric} ≤ {money}{self.limit:g}{'' if money else u} per {_short_duration(self.period)}"


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 100:.3f}".rstrip("0").rstrip(".") + "%"


def _short_duration(seconds: float) -> str:
    from perf_alerts.timeutil import format_duration

    return format_duration(seconds)


def slo_burn_rule(w: BurnWindow) -> "Rule":
    """The rule SLO burn alerts of `w.alert` go through: the same state machine, routing and Discord
    pipeline as any rule. Its results come from `perf_alerts.analytics.slo` (`type: slo_burn`)."""
    return Rule.model_validate({
        "name": w.alert, "type": "slo_burn", "metric": SLO_BURN_METRIC, "op": ">=", "value": w.factor,
        "window": w.long, "severity": w.severity.value, "group": "default",
        # a short window holds few events in a quiet crew: one good event would end the alert and the next
        # bad one re-raise it; it stays firing for the short window (at most 30m) once the burn is below
        "keep_firing_for": min(w.short, 1800.0),
        "annotations": {
            "summary": "SLO {{ labels.slo }}{{ detail.split }}: error budget burning {{ detail.burn_long }}× over "
                       "{{ detail.long_window }} and {{ detail.burn_short }}× over {{ detail.short_window }} "
                       "(alert at {{ detail.factor }}×)",
            "description": "Objective: {{ detail.objective }}. Error budget left over {{ detail.window }}: "
                           "{{ detail.budget_left }}; at this rate it is gone {{ detail.exhausted }}.",
        },
    })


ENV_PROMETHEUS_URL = "PERF_ALERTS_PROMETHEUS_URL"


class PrometheusSettings(_Strict):
    """The Prometheus server `source: prometheus` rules query (its HTTP API: /api/v1/query, query_range).

    `url` (PERF_ALERTS_PROMETHEUS_URL overrides it); `bearer_token_env`: the name of the environment
    variable holding a bearer token (never the token itself); `timeout` per request; `step`: the
    default resolution of range queries (a rule's `step` overrides it)."""

    url: str | None = None
    bearer_token_env: str | None = None
    timeout: Duration = 10.0
    step: Duration = 60.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_url(v) or None if v is not None else None

    @field_validator("bearer_token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("bearer_token_env is the NAME of an environment variable (e.g. PROMETHEUS_TOKEN), "
                             "not the token")
        return v

    @field_validator("timeout", "step", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        d = _duration(v)
        if d <= 0:
            raise ValueError("must be > 0 (e.g. 10s)")
        return d


class Config(_Strict):
    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    metrics: dict[str, MetricMeta] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    # Sections owned by later layers are kept as raw mappings until their models land here.
    receivers: list[Receiver] = Field(default_factory=list)
    route: Route = Field(default_factory=Route)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    time_intervals: list[TimeIntervalSet] = Field(default_factory=list)
    # Alertmanager's deprecated top-level name for the same list (both are read; names are shared)
    mute_time_intervals: list[TimeIntervalSet] = Field(default_factory=list)
    escalations: list[EscalationPolicy] = Field(default_factory=list)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    schedules: list[Schedule] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    slos: list[SLO] = Field(default_factory=list)
    # the rules of the SLOs' burn-rate alerts (one per alert name), generated from `slos:`
    slo_rules: list[Rule] = Field(default_factory=list, exclude=True)

    source: str = Field(default="<defaults>", exclude=True)
    # how `source` was found: given, env, working-directory (./config/alerting.yaml), packaged
    source_origin: str = Field(default="given", exclude=True)
    warnings: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="after")
    def _unique_rule_names(self) -> "Config":
        seen: set[str] = set()
        for r in self.rules:
            if r.name in seen:
                raise ValueError(f"duplicate rule name {r.name!r}")
            seen.add(r.name)
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate receiver name(s): {', '.join(sorted(dup))}")
        if "console" not in names:
            self.receivers.append(Receiver(name="console", console=ConsoleTarget()))
            names.append("console")
        for ref, where in self._receiver_refs():
            if ref not in names:
                close = difflib.get_close_matches(ref, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{where}: unknown receiver {ref!r}{hint}; defined: {', '.join(names)}")
        for what, items in (("schedule", self.schedules), ("policy", self.policies)):
            seen_names = [x.name for x in items]
            dup_names = sorted({n for n in seen_names if seen_names.count(n) > 1})
            if dup_names:
                raise ValueError(f"duplicate {what} name(s): {', '.join(dup_names)}")
        if self.route.matchers:  # Alertmanager: "root route must not have any matchers"
            raise ValueError("route.matchers: the root route must not have any matchers (it receives every alert); "
                             "put them on a child route")
        if self.route.continue_:  # Alertmanager: "cannot have continue in root route"
            raise ValueError("route.continue: cannot have continue in the root route")
        self._time_interval_refs()
        self._slo_rules()
        groups = sorted({r.group for r in self.rules})
        for sch in self.schedules:
            if sch.job == "evaluate" and sch.group not in (None, "default") and sch.group not in groups and self.rules:
                self.warnings.append(f"schedule {sch.name!r}: no rule is in group {sch.group!r} "
                                     f"(groups: {', '.join(groups)})")
        return self

    def _time_interval_refs(self) -> None:
        """Alertmanager's checks (config.go): names present and unique across `time_intervals` and
        `mute_time_intervals`, no interval on the root route, every name a route uses defined.
        An interval no route uses is a warning (Alertmanager says nothing; it is usually a typo)."""
        names: list[str] = []
        for key, items in (("mute_time_intervals", self.mute_time_intervals), ("time_intervals", self.time_intervals)):
            for i, ti in enumerate(items):
                if ti.name in names:
                    raise ValueError(f"{key}[{i}].name: time interval {ti.name!r} is not unique")
                names.append(ti.name)
        for field in ("mute_time_intervals", "active_time_intervals"):
            if getattr(self.route, field):
                raise ValueError(f"route.{field}: the root route must not have any {field.replace('_', ' ')} "
                                 "(it would mute every alert); put them on a child route")
        used: set[str] = set()
        for path, _, r in route_nodes(self.route):
            for field in ("mute_time_intervals", "active_time_intervals"):
                for j, name in enumerate(getattr(r, field)):
                    if name not in names:
                        close = difflib.get_close_matches(name, names, n=1)
                        hint = f" (did you mean {close[0]!r}?)" if close else ""
                        defined = f"; defined: {', '.join(names)}" if names else "; none is defined (time_intervals:)"
                        raise ValueError(f"{path}.{field}[{j}]: undefined time interval {name!r} used in route{hint}"
                                         f"{defined}")
                    used.add(name)
        for name in names:
            if name not in used:
                self.warnings.append(f"time interval {name!r} is not used by any route "
                                     "(mute_time_intervals / active_time_intervals)")

    def time_interval_map(self) -> dict[str, list[TimeIntervalSpec]]:
        """Every named time interval (both top-level lists) by name."""
        return {ti.name: ti.time_intervals for ti in [*self.mute_time_intervals, *self.time_intervals]}

    def time_interval_uses(self) -> dict[str, list[str]]:
        """Per time interval, what it does to which route ("mutes route 0.1 (oncall)"), for
        `check-config`; route ids as the notification pipeline numbers them."""
        uses: dict[str, list[str]] = {name: [] for name in self.time_interval_map()}
        for _, node_id, r in route_nodes(self.route):
            who = f"route {node_id} ({r.receiver or 'inherited receiver'})"
            for verb, field in (("mutes", "mute_time_intervals"), ("activates", "active_time_intervals")):
                for name in getattr(r, field):
                    uses.setdefault(name, []).append(f"{verb} {who}")
        return uses

    def _slo_rules(self) -> None:
        for i, r in enumerate(self.rules):
            if r.type == "slo_burn":
                raise ValueError(f"rules[{i}].type: slo_burn rules are generated from slos:, not written")
        names = [s.name for s in self.slos]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate SLO name(s): {', '.join(dup)}")
        rule_names = {r.name for r in self.rules}
        first: dict[str, tuple[BurnWindow, str]] = {}
        for si, slo in enumerate(self.slos):
            for wi, w in enumerate(slo.windows):
                where = f"slos[{si}].burn_alerts[{wi}].alert"
                if w.alert in rule_names:
                    raise ValueError(f"{where}: {w.alert!r} is also the name of a rule; give the burn alert its own name")
                seen = first.get(w.alert)
                if seen is None:
                    first[w.alert] = (w, slo.name)
                elif (seen[0].severity, seen[0].factor, seen[0].long, seen[0].short) != (w.severity, w.factor, w.long, w.short):
                    raise ValueError(f"{where}: alert {w.alert!r} is defined differently by SLO {seen[1]!r} (severity, "
                                     f"factor, long, short must agree); give this burn window its own alert name")
        self.slo_rules = [slo_burn_rule(w) for w, _ in first.values()]

    def slo(self, name: str) -> SLO:
        for s in self.slos:
            if s.name == name:
                return s
        raise KeyError(name)

    def alerting_rules(self) -> list[Rule]:
        """Every rule an evaluation runs: the configured rules and the SLOs' burn-rate alert rules."""
        return [*self.rules, *self.slo_rules]

    def _receiver_refs(self) -> list[tuple[str, str]]:
        refs: list[tuple[str, str]] = []

        def walk(r: Route, path: str) -> None:
            if r.receiver is not None:
                refs.append((r.receiver, path + ".receiver"))
            for i, c in enumerate(r.routes):
                walk(c, f"{path}.routes[{i}]")

        walk(self.route, "route")
        for pi, p in enumerate(self.escalations):
            for i, lv in enumerate(p.levels):
                refs += [(x, f"escalations[{pi}].levels[{i}].receivers") for x in lv.receivers]
        for pol in self.policies:
            for i, act in enumerate(pol.actions):
                refs += [(x, f"policies[{pol.name}].actions[{i}].receivers") for x in act.receivers]
        return refs

    def receiver(self, name: str) -> Receiver:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)

    def metric_meta(self, metric: str) -> MetricMeta:
        """Configured metadata, else the naming conventions of the built-in metrics."""
        if metric in self.metrics:
            return self.metrics[metric]
        return default_metric_meta(metric)

    def rules_in_group(self, group: str | None) -> list[Rule]:
        return [r for r in self.alerting_rules() if group is None or r.group == group]


_LOWER_BETTER = ("_seconds", "_latency", "_errors", "_errors_total", "_failures", "_failures_total", "_cost",
                 "_cost_usd", "_usd", "_percent", "_bytes", "_tokens", "_retries", "_timeouts")
_HIGHER_BETTER = ("_quality", "_success", "_success_ratio", "_score", "_accuracy", "_throughput", "_availability")


def default_metric_kind(metric: str) -> Literal["gauge", "counter", "event"]:
    """The kind of a metric the config does not describe: the crew listener's metrics are events
    (one sample per occurrence), the host's gauges; otherwise `*_total` is a counter, else a gauge."""
    if metric in catalog.EVENT_METRICS:
        return "event"
    if metric in catalog.GAUGE_METRICS:
        return "gauge"
    return "counter" if metric.endswith("_total") else "gauge"


def default_metric_meta(metric: str) -> MetricMeta:
    kind = default_metric_kind(metric)
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


MAX_YAML_DEPTH = 100  # nesting of mappings and sequences in one YAML document
MAX_YAML_ALIAS_NODES = 100_000  # nodes reached through aliases (what expanding them would copy)


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader with bounds checked while the document is composed, before anything is built
    from it: nesting depth (a file 10,000 levels deep) and the number of nodes aliases expand to (a
    "billion laughs" bomb of 9 aliases × 9 levels is 387 million). Either is refused at once with
    the line of the offending node, instead of a RecursionError or minutes of expanding."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) → nodes it expands to (itself included)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an unknown anchor is the composer's error
                self._alias_nodes += self._sizes.get(id(target), 1)
                if self._alias_nodes > MAX_YAML_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"aliases expand to more than {MAX_YAML_ALIAS_NODES:,} nodes "
                        f"(an alias bomb?); write the repeated parts out or use fewer aliases", event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, yaml.MappingNode):
            size += sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size += sum(self._sizes.get(id(x), 1) for x in node.value)
        self._sizes[id(node)] = size
        return node

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # also refused while scanning: the scanner looks ahead up to 1,024 characters of `[[[[…`
        # with a cost quadratic in the open brackets, before the composer sees the depth
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def construct_yaml_int(self, node: Any) -> Any:
        if ":" in str(node.value):
            # `20:00`, `1:5`: YAML 1.1's base-60 integers (1200, 65) are text here, as in YAML 1.2 and
            # Go's YAML, which Alertmanager reads its time intervals with: a copied `start_time: 20:00`
            # or `months: [1:3]` means what it says, not 1200 or 63
            return str(node.value)
        try:
            return super().construct_yaml_int(node)
        except (ValueError, OverflowError):  # Python refuses ints of more than 4,300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"number too large ({len(str(node.value)):,} characters)", node.start_mark) from None


    def construct_yaml_float(self, node: Any) -> Any:
        if ":" in str(node.value):  # `1:30.5`: a YAML 1.1 base-60 float is text too
            return str(node.value)
        return super().construct_yaml_float(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def load_yaml(text: str, inspect: Callable[[yaml.Node], None] | None = None) -> tuple[yaml.Node | None, Any]:
    """(root node, data) of one YAML document, loaded safely and within the bounds above.

    `inspect` sees the composed node before anything is constructed from it (construction
    rewrites merge keys `<<` in place). Raises yaml.YAMLError (with `problem_mark`) for bad or
    too complex YAML, and whatever `inspect` raises.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and inspect is not None:
            inspect(node)
        data = loader.construct_document(node) if node is not None else None
        return node, data
    finally:
        loader.dispose()


def yaml_error_text(e: yaml.YAMLError, source: str) -> str:
    """One line `file:line:col: invalid YAML: problem` for a YAMLError."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = getattr(e, "problem", None) or str(e)
    return f"{where}: invalid YAML: {problem}"


def _collect_marks(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):  # a mapping or list as a key: construction refuses it
                continue
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _collect_marks(v, path + (key,), out)
            out[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _collect_marks(item, path + (i,), out)


def _expand(text: str, env: Mapping[str, str], missing: list[str]) -> str:
    """`${VAR}`, `${VAR:-default}`; the default may itself hold `${OTHER}` (nesting)."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find("${", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        depth, k = 1, j + 2
        while k < n and depth:
            if text.startswith("${", k):
                depth += 1
                k += 2
                continue
            if text[k] == "}":
                depth -= 1
            k += 1
        if depth:  # unbalanced: leave it as written
            out.append(text[j:])
            break
        body = text[j + 2 : k - 1]
        name, sep, default = body.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            out.append(text[j:k])
        elif env.get(name):
            out.append(env[name])
        elif sep:
            out.append(_expand(default, env, missing))
        else:
            missing.append(name)
        i = k
    return "".join(out)


def check_yaml_nodes(node: yaml.Node, source: str, active: set[int] | None = None, *, duplicates: bool = True) -> None:
    """Reject what PyYAML accepts silently: a key given twice (the last one wins; unless
    `duplicates=False`, for a caller with its own message), recursive aliases, and nesting past
    MAX_YAML_DEPTH reached through aliases (anchors chained in lists: each written node is within
    the loader's depth bound, but the document they make is not)."""
    active = set() if active is None else active
    if id(node) in active:
        m = node.start_mark
        raise ConfigError(f"{source}:{m.line + 1}:{m.column + 1}: invalid YAML: recursive alias")
    if len(active) > MAX_YAML_DEPTH:
        m = node.start_mark
        raise ConfigError(f"{source}:{m.line + 1}:{m.column + 1}: invalid YAML: nested more than "
                          f"{MAX_YAML_DEPTH} levels deep (through aliases)")
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: dict[Any, int] = {}
        for k, v in node.value:
            if duplicates and isinstance(k, yaml.ScalarNode) and k.value != "<<":
                if k.value in seen:
                    m = k.start_mark
                    raise ConfigError(f"{source}:{m.line + 1}:{m.column + 1}: duplicate key {k.value!r} "
                                      f"(first at line {seen[k.value]}); each key may appear once")
                seen[k.value] = k.start_mark.line + 1
            check_yaml_nodes(v, source, active, duplicates=duplicates)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for item in node.value:
            check_yaml_nodes(item, source, active, duplicates=duplicates)
        active.discard(id(node))


def _duplicate_rule_names(data: Mapping[str, Any], marks: Mapping[tuple[Any, ...], int], source: str) -> list[str]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for i, r in enumerate(rules):
        name = r.get("name") if isinstance(r, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            j = first[name]
            problems.append(f"{source}:{marks.get(('rules', i, 'name'), '?')}: rules[{i}].name: duplicate rule name "
                            f"{name!r} (first defined in rules[{j}] at line {marks.get(('rules', j, 'name'), '?')})")
        else:
            first[name] = i
    return problems


def _literal_secrets(data: Any) -> list[str]:
    """Receiver URLs and headers written literally in the file instead of taken from the environment."""
    out: list[str] = []
    for i, r in enumerate(data.get("receivers") or [] if isinstance(data, dict) else []):
        if not isinstance(r, dict):
            continue
        for kind, key in (("discord", "webhook_url"), ("webhook", "url")):
            target = r.get(kind)
            if isinstance(target, dict) and isinstance(target.get(key), str) and target[key].strip() \
                    and "${" not in target[key]:
                out.append(f"receivers[{i}].{kind}.{key}")
            if kind == "webhook" and isinstance(target, dict) and isinstance(target.get("headers"), dict):
                out += [f"receivers[{i}].webhook.headers.{h}" for h, v in target["headers"].items()
                        if isinstance(v, str) and v.strip() and "${" not in v and h.lower() in ("authorization", "x-api-key")]
    return out


def _substitute_env(data: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(data, str):
        return _expand(data, env, missing) if "${" in data else data
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


_MSG_PATH_RE = re.compile(r"^(?:Value error, )?([A-Za-z_]+(?:\[[^\]]+\]|\.[A-Za-z_]+)*):")


def _path_in_message(msg: str) -> tuple[Any, ...]:
    m = _MSG_PATH_RE.match(msg)
    if not m:
        return ()
    return tuple(int(x) if x.isdigit() else x for x in re.findall(r"[A-Za-z_]+|\d+", m.group(1)))


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
    return [fi.alias or n for n, fi in model.model_fields.items() if not fi.exclude]  # internal: source, warnings


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
        flipped = str(got)[::-1]  # '=>' and '=<' are '>=' and '<=' written backwards
        close = [flipped] if flipped in choices else difflib.get_close_matches(str(got), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"invalid value {got!r}{hint}; valid: {', '.join(choices)}"
    return msg


def parse_config(text: str, source: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    marks: dict[tuple[Any, ...], int] = {}

    def inspect(node: yaml.Node) -> None:  # on the nodes as written, before merge keys are expanded
        check_yaml_nodes(node, source)
        _collect_marks(node, (), marks)

    try:
        _, data = load_yaml(text, inspect)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_text(e, source)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping (rules:, receivers:, ...)")
    missing: list[str] = []
    literal_secrets = _literal_secrets(data)
    data = _substitute_env(data, env, missing)
    duplicates = _duplicate_rule_names(data, marks, source)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        m = _Marks(marks)
        problems = []
        errors = e.errors()
        # a misspelled key is one mistake: "unknown field 'metrc'; did you mean 'metric'?" says it all,
        # pydantic's "metric: Field required" beside it is left out
        misspelled = set()
        for err in errors:
            if err.get("type") == "extra_forbidden" and err.get("loc"):
                loc = tuple(err["loc"])
                for close in difflib.get_close_matches(str(loc[-1]), _model_fields_for(loc), n=1):
                    misspelled.add(loc[:-1] + (close,))
        for err in errors:
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "missing" and loc in misspelled:
                continue
            if not loc and duplicates and "duplicate rule name" in str(err.get("msg")):
                continue  # reported below with the line of the second definition
            path = loc or _path_in_message(str(err.get("msg", "")))  # a cross-section check names its path
            if path and not loc:
                err = {**err, "msg": _MSG_PATH_RE.sub("", str(err.get("msg", ""))).strip()}
                loc = path
            line = m.line_for(tuple(_ALIASES.get(p, p) if isinstance(p, str) else p for p in loc))
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {_format_loc(loc)}: {_explain(err, data)}")
        problems += duplicates
        raise ConfigError(problems[0] if len(problems) == 1 else f"{len(problems)} problems in {source}:\n  " + "\n  ".join(problems), problems) from None
    cfg.source = source
    _prometheus_from_env(cfg, env, source, marks)
    for where in literal_secrets:
        cfg.warnings.append(f"{source}: {where} is written in the file; secrets belong in the environment "
                            f"(e.g. webhook_url: ${{DISCORD_WEBHOOK_URL}})")
    for name in sorted(set(missing)):
        cfg.warnings.append(f"{source}: environment variable {name} is not set (used without a default)")
    for r in cfg.receivers:
        if r.discord is not None and not r.discord.webhook_url:
            cfg.warnings.append(f"receiver {r.name!r}: no Discord webhook URL (environment variable not set); "
                                f"its notifications go to the console instead")
        if r.webhook is not None and not r.webhook.url:
            cfg.warnings.append(f"receiver {r.name!r}: no webhook URL; its notifications go to the console instead")
    return cfg


def _prometheus_from_env(cfg: Config, env: Mapping[str, str], source: str,
                         marks: Mapping[tuple[Any, ...], int]) -> None:
    """PERF_ALERTS_PROMETHEUS_URL overrides `prometheus.url`; a `source: prometheus` rule without a
    server is a config error (naming the rule's line); an unset `bearer_token_env` a warning."""
    p = cfg.prometheus
    if env.get(ENV_PROMETHEUS_URL):
        try:
            p.url = check_url(env[ENV_PROMETHEUS_URL])
        except ValueError as e:
            raise ConfigError(f"{source}: environment variable {ENV_PROMETHEUS_URL}: {e}") from None
    prom_rules = [i for i, r in enumerate(cfg.rules) if r.source == "prometheus"]
    if prom_rules and not p.url:
        i = prom_rules[0]
        line = marks.get(("rules", i, "source")) or marks.get(("rules", i))
        raise ConfigError(f"{source}{f':{line}' if line else ''}: rules[{i}] ({cfg.rules[i].name}): source: prometheus "
                          f"needs a server: set prometheus: {{url: http://host:9090}} or {ENV_PROMETHEUS_URL}")
    if prom_rules and p.bearer_token_env and not env.get(p.bearer_token_env):
        cfg.warnings.append(f"{source}: prometheus.bearer_token_env: environment variable {p.bearer_token_env} is not "
                            "set; queries go without a token")


def yaml_lines(text: str) -> tuple[dict[tuple[Any, ...], int], Any]:
    """The line of every key and item of a YAML text by path (`('rules', 0, 'annotations', 'summary')`
    → 12), and the data: for problems found after loading (check-config's template checks)."""
    marks: dict[tuple[Any, ...], int] = {}
    _, data = load_yaml(text, lambda node: _collect_marks(node, (), marks))
    return marks, data


def packaged_config_dir() -> Path:
    """`config/` from an installed wheel, else the checkout's top-level `config/`."""
    here = Path(__file__).resolve().parent
    bundled = here / "_bundled_config"
    if bundled.is_dir():
        return bundled
    return here.parents[1] / "config"


def resolve_config(explicit: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The config file to use and why: ("given", "env", "working-directory" or "packaged").

    Order: the path given (`--config`), `$PERF_ALERTS_CONFIG`, `./config/alerting.yaml` in the
    working directory, the packaged default.
    """
    if explicit:
        return Path(explicit), "given"
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env), "env"
    local = Path("config") / "alerting.yaml"
    if local.is_file():
        return local, "working-directory"
    return packaged_config_dir() / "alerting.yaml", "packaged"


def config_source_note(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """A sentence saying where the config came from when nobody named it, else None.

    A `./config/alerting.yaml` in the working directory is picked up silently otherwise, so
    `check-config` run from the wrong directory would check a file the user did not mean.
    """
    path, why = resolve_config(explicit)
    if why == "working-directory":
        return (f"using {path} from the working directory ({Path.cwd()}); no --config or "
                f"${ENV_CONFIG} was given")
    if why == "env":
        return f"using {path} from ${ENV_CONFIG}"
    if why == "packaged":
        return f"using the packaged default config {path} (no --config, ${ENV_CONFIG} or ./config/alerting.yaml)"
    return None


def resolve_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return resolve_config(explicit)[0]


def read_config_text(path: str | os.PathLike[str], what: str = "config file") -> str:
    """A YAML file's text, or one-line ConfigError naming the file (missing, unreadable, not UTF-8):
    the config, a rule test file and an Alertmanager file to import are read the same way."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the {what}: {e}") from None


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    p, why = resolve_config(path)
    text = read_config_text(p)
    cfg = parse_config(text, str(p), env)
    cfg.source_origin = why
    return cfg
