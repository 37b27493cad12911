"""An Alertmanager configuration (alertmanager.yml) converted into perf-alerts configuration.

Why a converter and not "read alertmanager.yml directly": perf-alerts keeps secrets in the
environment and holds one integration per receiver, and an Alertmanager file has secrets
written in it and receivers with several integrations. The converter writes a perf-alerts
config that routes every label set to the same receivers with the same grouping, timers and
time intervals as Alertmanager's route tree (dispatch/route.go), and reports, one line each,
what it could not carry over. Nothing is dropped silently and no secret is copied.

What it does, and why:

- **route tree**: copied node by node (receiver, matchers, legacy match/match_re, group_by,
  group_wait/group_interval/repeat_interval, continue, mute/active_time_intervals, routes).
  The root gets Alertmanager's defaults written out (group_by: [] — Alertmanager groups by
  nothing unless told, perf-alerts' own default is [alertname] — 30s, 5m, 4h), and a child's
  `group_by: []` is left out because Alertmanager reads it as "inherit".
- **receivers**: `discord_configs` → `discord:`, `webhook_configs` → `webhook:`, with
  `send_resolved` per receiver. Every URL, token and password becomes an environment
  variable reference (`${DISCORD_WEBHOOK_TEAM}`) and a note names the variable to set.
  Other integrations are reported and dropped; a receiver left without any is a blackhole
  (as Alertmanager's `- name: devnull`).
- **several integrations in one receiver**: a perf-alerts receiver holds one target, so the
  receiver is split (`team-discord`, `team-webhook`) and every route node whose receiver is
  split gets, as its last children, one catch-all child per part (`continue: true` but the
  last). They are reached exactly when Alertmanager would notify that node itself: after no
  non-continue child matched. When the node has `continue: true` children, the catch-alls sit
  under guard routes that match only when none of those children matched (the negation of
  each child's matchers, one guard per combination), so the receivers notified stay exactly
  Alertmanager's. A split node's own `receiver:` names the first part; it is never a target.
- **inhibit rules and time intervals**: the same shapes; legacy keys become matchers, the
  deprecated top-level `mute_time_intervals` joins `time_intervals`.

The input is read as Alertmanager's YAML library reads it: values are text where Alertmanager
expects text (`match: {code: 500}` is the text "500", `start_time: 20:00` is not the base-60
number PyYAML would make of it), duplicate keys are refused, and every error names file:line.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from perf_alerts.config import (
    ConfigError,
    InhibitRule,
    Matcher,
    Receiver,
    Route,
    TimeIntervalSet,
    check_yaml_nodes,
    load_yaml,
    parse_config,
    parse_matchers,
    read_config_text,
    yaml_error_text,
)
from perf_alerts.timeutil import TimeParseError, parse_duration

__all__ = ["ImportNote", "ImportResult", "convert_alertmanager", "convert_alertmanager_file"]

# Alertmanager's own defaults for the root route (dispatch/route.go DefaultRouteOpts)
AM_ROOT_DEFAULTS = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
# Prometheus' duration syntax (common/model.ParseDuration), which Alertmanager's routes use
_AM_DURATION_RE = re.compile(r"^(?:(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?|0)$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TOP_LEVEL_KEYS = ("global", "route", "receivers", "inhibit_rules", "templates", "time_intervals",
                  "mute_time_intervals")
ROUTE_KEYS = ("receiver", "group_by", "match", "match_re", "matchers", "mute_time_intervals",
              "active_time_intervals", "continue", "routes", "group_wait", "group_interval", "repeat_interval")
INHIBIT_KEYS = ("name", "source_match", "source_match_re", "source_matchers", "target_match", "target_match_re",
                "target_matchers", "equal")
DISCORD_KEYS = ("send_resolved", "http_config", "webhook_url", "webhook_url_file", "content", "title", "message",
                "username", "avatar_url")
WEBHOOK_KEYS = ("send_resolved", "http_config", "url", "url_file", "max_alerts", "timeout")
# http_config keys that do not change what is sent (Alertmanager's defaults) when left at these values;
# follow_redirects is judged per webhook receiver instead (Alertmanager follows by default,
# perf-alerts never does: reported unless the config says false)
_HTTP_HARMLESS = {"enable_http2": True}
_HTTP_PER_RECEIVER = {"follow_redirects"}
_AUTH_KEYS = ("authorization", "bearer_token", "bearer_token_file", "basic_auth")
MAX_GUARDS = 256  # guard routes one split node may need (the product of its continue children's matcher counts)

_NEGATION = {"=": "!=", "!=": "=", "=~": "!~", "!~": "=~"}


@dataclass(frozen=True)
class ImportNote:
    """One line for the user: something not carried over (`unsupported`), an environment
    variable to set (`secret`), or how a feature was mapped (`note`)."""

    kind: Literal["unsupported", "secret", "note"]
    text: str


@dataclass
class ImportResult:
    """The perf-alerts config as YAML text (header comment included) and as data, with the notes."""

    text: str
    data: dict[str, Any]
    notes: list[ImportNote] = field(default_factory=list)
    # receiver name in Alertmanager → the perf-alerts receivers it became (one, or one per integration)
    receiver_parts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def env_vars(self) -> list[str]:
        return [n.text.split(" ", 2)[1] for n in self.notes if n.kind == "secret"]


# --------------------------------------------------------------------------- reading the YAML


class _Doc:
    """The input's data with, by path, the line of every key/item and the raw text of every scalar."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}
        self.raw: dict[tuple[Any, ...], str] = {}
        try:
            _, data = load_yaml(text, self._check_and_inspect)
        except yaml.YAMLError as e:
            raise ConfigError(yaml_error_text(e, source)) from None
        self.data = data

    def _check_and_inspect(self, node: yaml.Node) -> None:
        check_yaml_nodes(node, self.source, duplicates=False)  # a recursive alias: one line, before the walk
        self._inspect(node, ())

    def _inspect(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            self.raw[path] = node.value  # (`20:00` and `1:5` are text: load_yaml reads base-60 as text)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                if k.value in seen and k.value != "<<":  # Alertmanager's strict YAML: "key already set in map"
                    raise ConfigError(f"{self.source}:{k.start_mark.line + 1}: duplicate key {k.value!r} (first at "
                                      f"line {seen[k.value]})")
                seen[k.value] = k.start_mark.line + 1
                self.lines[path + (k.value,)] = k.start_mark.line + 1
                self._inspect(v, path + (k.value,))
                self.lines[path + (k.value,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._inspect(item, path + (i,))

    def where(self, path: tuple[Any, ...]) -> str:
        p = path
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p)
        return f"{self.source}:{line}" if line else self.source

    def text(self, path: tuple[Any, ...], value: Any) -> str:
        """A scalar as the text Alertmanager reads where it expects a string (`500`, not 500; `yes`, not True)."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            return self.raw.get(path, str(value))
        raise ConfigError(f"{self.where(path)}: {_dotted(path)}: expected a string, got a {_kind(value)}")


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top>"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    return "list" if isinstance(value, list) else type(value).__name__


# --------------------------------------------------------------------------- the Alertmanager route tree


@dataclass
class AmRoute:
    """One node of the Alertmanager route tree, as read (legacy keys folded into `matchers`)."""

    path: tuple[Any, ...]
    receiver: str | None
    matchers: list[Matcher]
    group_by: list[str] | None  # None: inherited (absent, or `[]`, which Alertmanager reads as absent)
    group_wait: str | None
    group_interval: str | None
    repeat_interval: str | None
    mute_time_intervals: list[str]
    active_time_intervals: list[str]
    continue_: bool
    routes: list["AmRoute"]


def _negate(m: Matcher) -> Matcher:
    return Matcher(label=m.label, op=_NEGATION[m.op], value=m.value)  # type: ignore[arg-type]


def matcher_yaml(m: Matcher) -> Any:
    """A matcher as perf-alerts reads it back: Alertmanager's text (`severity="critical"`) when that
    text parses back to the same matcher, else the explicit {label, op, value} form."""
    text = str(m)
    try:
        back = parse_matchers([text])
    except ValueError:
        back = []
    if len(back) == 1 and (back[0].label, back[0].op, back[0].value) == (m.label, m.op, m.value):
        return text
    return {"label": m.label, "op": m.op, "value": m.value}


class _Converter:
    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.notes: list[ImportNote] = []
        self.parts: dict[str, list[str]] = {}  # AM receiver → perf-alerts receiver names
        self.env_used: set[str] = set()
        self.interval_names: set[str] = set()
        self.guards = 0
        self.global_http: Any = None  # global.http_config: the default of webhook configs without their own

    # ----------------------------------------------------------------- helpers

    def fail(self, path: tuple[Any, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.doc.where(path)}: {_dotted(path)}: {message}")

    def note(self, kind: Literal["unsupported", "secret", "note"], text: str) -> None:
        self.notes.append(ImportNote(kind, text))

    def mapping(self, value: Any, path: tuple[Any, ...], what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"{what} must be a mapping, got a {_kind(value)}")
        return value

    def seq(self, value: Any, path: tuple[Any, ...], what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"{what} must be a list, got a {_kind(value)}")
        return value

    def unknown_keys(self, data: Mapping[str, Any], path: tuple[Any, ...], known: tuple[str, ...], what: str) -> None:
        for k in data:
            if k not in known:
                close = difflib.get_close_matches(str(k), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(known)}"
                raise self.fail(path + (k,), f"unknown field {k!r} in {what} (Alertmanager refuses it too){hint}")

    def boolean(self, value: Any, path: tuple[Any, ...], default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {self.doc.text(path, value)!r}")
        return value

    def duration(self, value: Any, path: tuple[Any, ...]) -> str | None:
        if value is None:
            return None
        text = self.doc.text(path, value).strip()
        if not _AM_DURATION_RE.match(text) or not text:
            raise self.fail(path, f"invalid duration {text!r} (Alertmanager's syntax: 30s, 5m, 1h30m, 7d, 1w)")
        try:
            parse_duration(text)
        except TimeParseError as e:
            raise self.fail(path, str(e)) from None
        return text

    def env_var(self, prefix: str, receiver: str, suffix: str = "") -> str:
        base = re.sub(r"[^A-Za-z0-9]+", "_", receiver).strip("_").upper() or "RECEIVER"
        name = f"{prefix}_{base}{('_' + suffix) if suffix else ''}"
        if name[0].isdigit():
            name = "_" + name
        candidate, n = name, 2
        while candidate in self.env_used:
            candidate, n = f"{name}_{n}", n + 1
        self.env_used.add(candidate)
        return candidate

    def validate(self, model: type[BaseModel], data: dict[str, Any], path: tuple[Any, ...]) -> None:
        """The converted piece checked by the perf-alerts model itself, the error at the input's line."""
        try:
            model.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first.get("loc", ()))
            msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            raise self.fail(path, f"{loc + ': ' if loc else ''}{msg}") from None

    # ----------------------------------------------------------------- matchers

    def matchers(self, node: Mapping[str, Any], path: tuple[Any, ...], key: str, match: str,
                 match_re: str) -> list[Matcher]:
        """`key` (a list of matcher strings), `match` (equality) and `match_re` (anchored regex),
        ANDed as Alertmanager does (dispatch/route.go NewRoute)."""
        out: list[Matcher] = []
        for legacy, op in ((match, "="), (match_re, "=~")):
            raw = self.mapping(node.get(legacy), path + (legacy,), legacy)
            for label, value in raw.items():
                p = path + (legacy, label)
                if not _LABEL_NAME_RE.match(str(label)):
                    raise self.fail(p, f"invalid label name {str(label)!r}")
                if op == "=~" and value is None:  # Alertmanager: "invalid regexp value for ..."
                    raise self.fail(p, f"invalid regexp value for {label!r} (empty)")
                try:
                    out += parse_matchers([{"label": str(label), "op": op, "value": self.doc.text(p, value)}])
                except ValueError as e:
                    raise self.fail(p, str(e)) from None
        for i, item in enumerate(self.seq(node.get(key), path + (key,), key)):
            p = path + (key, i)
            if not isinstance(item, str):
                raise self.fail(p, f"a matcher is a string like 'severity=\"critical\"', got a {_kind(item)}")
            try:
                out += parse_matchers([item])
            except ValueError as e:
                raise self.fail(p, str(e)) from None
        return out

    # ----------------------------------------------------------------- route tree

    def read_route(self, node: Any, path: tuple[Any, ...]) -> AmRoute:
        node = self.mapping(node, path, "a route")
        self.unknown_keys(node, path, ROUTE_KEYS, "a route")
        receiver = node.get("receiver")
        receiver = None if receiver in (None, "") else self.doc.text(path + ("receiver",), receiver)
        if receiver is not None and receiver not in self.parts:  # Alertmanager: "undefined receiver %q used in route"
            close = difflib.get_close_matches(receiver, list(self.parts), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(path + ("receiver",), f"undefined receiver {receiver!r} used in route{hint}; defined: "
                                                  f"{', '.join(self.parts) or 'none'}")
        group_by_raw = self.seq(node.get("group_by"), path + ("group_by",), "group_by")
        group_by = [self.doc.text(path + ("group_by", i), g) for i, g in enumerate(group_by_raw)] or None
        intervals: dict[str, list[str]] = {}
        for key in ("mute_time_intervals", "active_time_intervals"):
            names = [self.doc.text(path + (key, i), x) for i, x in
                     enumerate(self.seq(node.get(key), path + (key,), key))]
            for i, n in enumerate(names):
                if n not in self.interval_names:  # Alertmanager: "undefined time interval %q used in route"
                    raise self.fail(path + (key, i), f"undefined time interval {n!r} used in route; defined: "
                                                     f"{', '.join(sorted(self.interval_names)) or 'none'}")
            intervals[key] = names
        children = [self.read_route(c, path + ("routes", i))
                    for i, c in enumerate(self.seq(node.get("routes"), path + ("routes",), "routes"))]
        r = AmRoute(
            path=path, receiver=receiver,
            matchers=self.matchers(node, path, "matchers", "match", "match_re"),
            group_by=group_by,
            group_wait=self.duration(node.get("group_wait"), path + ("group_wait",)),
            group_interval=self.duration(node.get("group_interval"), path + ("group_interval",)),
            repeat_interval=self.duration(node.get("repeat_interval"), path + ("repeat_interval",)),
            mute_time_intervals=intervals["mute_time_intervals"],
            active_time_intervals=intervals["active_time_intervals"],
            continue_=self.boolean(node.get("continue"), path + ("continue",), False),
            routes=children,
        )
        own = self.route_fields(r, receiver_name=None)
        self.validate(Route, {k: v for k, v in own.items() if k in ("matchers", "group_by", "group_wait",
                                                                      "group_interval", "repeat_interval")}, path)
        return r

    def route_fields(self, r: AmRoute, receiver_name: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if receiver_name is not None:
            out["receiver"] = receiver_name
        if r.matchers:
            out["matchers"] = [matcher_yaml(m) for m in r.matchers]
        if r.group_by is not None:
            out["group_by"] = list(r.group_by)
        for k in ("group_wait", "group_interval", "repeat_interval"):
            v = getattr(r, k)
            if v is not None:
                out[k] = v
        out.update(self.interval_fields(r))
        if r.continue_:
            out["continue"] = True
        return out

    @staticmethod
    def interval_fields(r: AmRoute) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if r.mute_time_intervals:
            out["mute_time_intervals"] = list(r.mute_time_intervals)
        if r.active_time_intervals:
            out["active_time_intervals"] = list(r.active_time_intervals)
        return out

    def emit_route(self, r: AmRoute, inherited: str) -> dict[str, Any]:
        effective = r.receiver or inherited
        out = self.route_fields(r, None if r.receiver is None else self.parts[r.receiver][0])
        children = [self.emit_route(c, effective) for c in r.routes]
        parts = self.parts[effective]
        if len(parts) > 1:
            children += self.catch_alls(r, parts)
        if children:
            out["routes"] = children
        return out

    def catch_alls(self, r: AmRoute, parts: list[str]) -> list[dict[str, Any]]:
        """The children that stand for `r` itself as a target when its receiver is split in parts:
        one per part, reached exactly when Alertmanager would notify `r` (no child matched)."""
        if any(not c.continue_ and not c.matchers for c in r.routes):
            return []  # a catch-all child already takes everything `r` would have kept
        continuing = [c for c in r.routes if c.continue_]
        if any(not c.matchers for c in continuing):
            return []  # a continue child matching everything: `r` is never a target itself
        leaves: list[dict[str, Any]] = []
        for i, p in enumerate(parts):
            leaf: dict[str, Any] = {"receiver": p, **self.interval_fields(r)}
            if i < len(parts) - 1:
                leaf["continue"] = True
            leaves.append(leaf)
        if not continuing:
            return leaves
        count = 1
        for c in continuing:
            count *= len(c.matchers)
        if count > MAX_GUARDS:
            raise self.fail(r.path, f"cannot convert exactly: the receiver of this route has several integrations "
                                    f"and this route's continue children need {count:,} guard routes (at most "
                                    f"{MAX_GUARDS}); give the receiver one integration or route its integrations by hand")
        self.guards += count
        return [{"matchers": [matcher_yaml(_negate(m)) for m in combo], "routes": copy.deepcopy(leaves)}
                for combo in itertools.product(*[c.matchers for c in continuing])]

    # ----------------------------------------------------------------- receivers

    def read_receivers(self, raw: Any) -> list[tuple[tuple[Any, ...], str, list[dict[str, Any]]]]:
        """(path, name, [perf-alerts receiver dicts]) per Alertmanager receiver; the part names are
        registered in `self.parts` (filled in `name_parts` once every name is known)."""
        out = []
        names: dict[str, int] = {}
        for i, rc in enumerate(self.seq(raw, ("receivers",), "receivers")):
            path: tuple[Any, ...] = ("receivers", i)
            rc = self.mapping(rc, path, "a receiver")
            name = self.doc.text(path + ("name",), rc.get("name")) if rc.get("name") is not None else ""
            if not name:  # Alertmanager: "missing name in receiver"
                raise self.fail(path, "missing name in receiver")
            if name in names:  # Alertmanager: "notification config name %q is not unique"
                raise self.fail(path + ("name",), f"notification config name {name!r} is not unique (first at "
                                                  f"receivers[{names[name]}])")
            names[name] = i
            out.append((path, name, rc))
        taken = set(names)
        converted = []
        for path, name, rc in out:
            targets: list[tuple[str, dict[str, Any]]] = []
            for key, value in rc.items():
                if key == "name":
                    continue
                kp = path + (key,)
                if key == "discord_configs":
                    for j, c in enumerate(self.seq(value, kp, key)):
                        targets.append(("discord", self.discord(name, c, kp + (j,))))
                elif key == "webhook_configs":
                    for j, c in enumerate(self.seq(value, kp, key)):
                        targets.append(("webhook", self.webhook(name, c, kp + (j,))))
                elif str(key).endswith("_configs"):
                    n = len(value) if isinstance(value, list) else 1
                    if n:
                        self.note("unsupported", f"receiver {name!r}: {key} not supported; dropped"
                                                 + (f" ({n} configs)" if n > 1 else ""))
                else:
                    raise self.fail(kp, f"unknown field {key!r} in a receiver (Alertmanager refuses it too)")
            parts = self.name_parts(name, [k for k, _ in targets], taken)
            self.parts[name] = parts
            if not targets:
                had = any(str(k).endswith("_configs") and v for k, v in rc.items())
                if had:
                    self.note("note", f"receiver {name!r} has no supported integration left: it is a blackhole "
                                      "(what is routed to it is dropped)")
                converted.append((path, name, [{"name": name}]))
                continue
            dicts = []
            for part, (kind, target) in zip(parts, targets):
                send_resolved = target.pop("send_resolved")
                d: dict[str, Any] = {"name": part, kind: target}
                if not send_resolved:
                    d["send_resolved"] = False
                # checked without the `${VAR}` references, which perf-alerts expands when it loads the file
                self.validate(Receiver, {**d, kind: {k: ("" if k in ("webhook_url", "url") else v)
                                                     for k, v in target.items()}}, path)
                dicts.append(d)
            if len(parts) > 1:
                self.note("note", f"receiver {name!r} has {len(parts)} integrations; perf-alerts receivers hold one "
                                  f"each: split into {', '.join(parts)} (routes to {name!r} notify all of them)")
            converted.append((path, name, dicts))
        return converted

    @staticmethod
    def name_parts(name: str, kinds: list[str], taken: set[str]) -> list[str]:
        if len(kinds) <= 1:
            return [name]
        out = []
        for i, kind in enumerate(kinds):
            n_kind = kinds.count(kind)
            base = f"{name}-{kind}" + (f"-{kinds[:i + 1].count(kind)}" if n_kind > 1 else "")
            candidate, k = base, 2
            while candidate in taken:
                candidate, k = f"{base}-{k}", k + 1
            taken.add(candidate)
            out.append(candidate)
        return out

    def secret(self, receiver: str, var: str, what: str, path: tuple[Any, ...], file: str | None) -> None:
        if file:
            origin = f"Alertmanager reads it from the file {file} ({_dotted(path)}): export {var}=\"$(cat {file})\""
        else:
            origin = f"Alertmanager had it written in the file at {_dotted(path)}; secrets are not copied"
        self.note("secret", f"set {var} to {what} of receiver {receiver!r} ({origin})")

    def discord(self, receiver: str, raw: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        c = self.mapping(raw, path, "a discord config")
        self.unknown_keys(c, path, DISCORD_KEYS, "a discord config")
        url, url_file = c.get("webhook_url"), c.get("webhook_url_file")
        if url is None and not url_file:  # Alertmanager's own check
            raise self.fail(path, "one of webhook_url or webhook_url_file must be configured")
        if url is not None and url_file:
            raise self.fail(path, "at most one of webhook_url & webhook_url_file must be configured")
        var = self.env_var("DISCORD_WEBHOOK", receiver)
        self.secret(receiver, var, "the Discord webhook URL", path + ("webhook_url" if url is not None else "webhook_url_file",),
                    None if url is not None else self.doc.text(path + ("webhook_url_file",), url_file))
        target: dict[str, Any] = {"webhook_url": "${" + var + "}"}
        for key in ("username", "avatar_url"):
            if c.get(key):
                target[key] = self.doc.text(path + (key,), c[key])
        for key in ("title", "message", "content"):
            if c.get(key):
                self.note("unsupported", f"receiver {receiver!r}: {_dotted(path)}.{key} not supported (perf-alerts "
                                         "formats its own Discord messages); dropped")
        self.http_config(receiver, c.get("http_config"), path + ("http_config",), headers=None)
        target["send_resolved"] = self.boolean(c.get("send_resolved"), path + ("send_resolved",), True)
        return target

    def webhook(self, receiver: str, raw: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        c = self.mapping(raw, path, "a webhook config")
        self.unknown_keys(c, path, WEBHOOK_KEYS, "a webhook config")
        url, url_file = c.get("url"), c.get("url_file")
        if url is None and not url_file:
            raise self.fail(path, "one of url or url_file must be configured")
        if url is not None and url_file:
            raise self.fail(path, "at most one of url & url_file must be configured")
        var = self.env_var("WEBHOOK_URL", receiver)
        self.secret(receiver, var, "the webhook URL", path + ("url" if url is not None else "url_file",),
                    None if url is not None else self.doc.text(path + ("url_file",), url_file))
        target: dict[str, Any] = {"url": "${" + var + "}"}
        max_alerts = c.get("max_alerts")
        if max_alerts not in (None, 0, "0"):
            self.note("unsupported", f"receiver {receiver!r}: {_dotted(path)}.max_alerts: {max_alerts} not supported "
                                     "(perf-alerts sends every alert of the group); dropped")
        timeout = self.duration(c.get("timeout"), path + ("timeout",))
        if timeout is not None and parse_duration(timeout) > 0:
            target["timeout"] = timeout
        headers: dict[str, str] = {}
        http = c.get("http_config")
        if http is None and self.global_http is not None:  # Alertmanager: webhooks without one use global's
            http, hpath = self.global_http, ("global", "http_config")
        else:
            hpath = path + ("http_config",)
        self.http_config(receiver, http, hpath, headers=headers)
        if not (isinstance(http, Mapping) and http.get("follow_redirects") is False):
            self.note("note", f"receiver {receiver!r}: Alertmanager follows the webhook's HTTP redirects "
                              "(follow_redirects, default true); perf-alerts never does: a URL that redirects fails")
        if headers:
            target["headers"] = headers
        target["send_resolved"] = self.boolean(c.get("send_resolved"), path + ("send_resolved",), True)
        return target

    def http_config(self, receiver: str, raw: Any, path: tuple[Any, ...], headers: dict[str, str] | None) -> None:
        """Authorization and custom headers become webhook headers (secrets through the environment);
        what perf-alerts' receivers cannot do (TLS client settings, proxies, OAuth2) is reported
        (for global.http_config, once by `read_global`)."""
        c = self.mapping(raw, path, "http_config")
        shared = path[:1] == ("global",)
        for key, value in c.items():
            kp = path + (key,)
            if (key in _HTTP_HARMLESS and value == _HTTP_HARMLESS[key]) or key in _HTTP_PER_RECEIVER:
                continue
            if headers is not None and key in _AUTH_KEYS:
                self.auth_header(receiver, key, value, kp, headers)
            elif headers is not None and key == "http_headers":
                for h, spec in self.mapping(value, kp, "http_headers").items():
                    self.custom_header(receiver, str(h), spec, kp + (h,), headers)
            elif not shared:
                self.note("unsupported", f"receiver {receiver!r}: {_dotted(kp)} not supported; dropped")

    def auth_header(self, receiver: str, key: str, value: Any, path: tuple[Any, ...], headers: dict[str, str]) -> None:
        if key == "basic_auth":
            b = self.mapping(value, path, "basic_auth")
            var = self.env_var("WEBHOOK_BASIC_AUTH", receiver)
            headers["Authorization"] = "Basic ${" + var + "}"
            self.note("secret", f"set {var} to the base64 of 'username:password' for receiver {receiver!r} "
                                f"(Alertmanager's {_dotted(path)}; e.g. printf '%s' 'user:password' | base64)")
            if b.get("username_file") or b.get("password_file"):
                self.note("note", f"receiver {receiver!r}: {_dotted(path)} reads a file; its content goes into {var}")
            return
        if key == "authorization":
            a = self.mapping(value, path, "authorization")
            scheme = self.doc.text(path + ("type",), a.get("type")) or "Bearer"
            file = a.get("credentials_file")
            sub = path + ("credentials_file" if file else "credentials",)
        else:  # bearer_token(_file), the older spelling
            scheme, file = "Bearer", (value if key == "bearer_token_file" else None)
            sub = path
        var = self.env_var("WEBHOOK_TOKEN", receiver)
        headers["Authorization"] = f"{scheme} ${{{var}}}"
        self.secret(receiver, var, f"the {scheme} credentials", sub,
                    None if not file else self.doc.text(sub, file))

    def custom_header(self, receiver: str, name: str, spec: Any, path: tuple[Any, ...], headers: dict[str, str]) -> None:
        s = self.mapping(spec, path, "a header")
        values = [self.doc.text(path + ("values", i), v) for i, v in enumerate(self.seq(s.get("values"), path, "values"))]
        secrets = self.seq(s.get("secrets"), path, "secrets")
        files = self.seq(s.get("files"), path, "files")
        if len(values) + len(secrets) + len(files) != 1:
            self.note("unsupported", f"receiver {receiver!r}: {_dotted(path)}: a header with several values not "
                                     "supported; dropped")
            return
        if values:
            headers[name] = values[0]
            return
        var = self.env_var("WEBHOOK_HEADER", receiver, re.sub(r"[^A-Za-z0-9]+", "_", name).upper())
        headers[name] = "${" + var + "}"
        sub = path + (("secrets", 0) if secrets else ("files", 0))
        self.secret(receiver, var, f"the {name} header", sub, self.doc.text(sub, files[0]) if files else None)

    # ----------------------------------------------------------------- the rest

    def read_global(self, raw: Any) -> None:
        g = self.mapping(raw, ("global",), "global")
        for key, value in g.items():
            if key == "resolve_timeout":
                self.note("note", "global.resolve_timeout: not applicable (perf-alerts evaluates its own rules and "
                                  "resolves alerts itself); dropped")
            elif key == "http_config":
                self.global_http = value
                # reported once here; authorization and headers go into each webhook that uses it
                for k, v in self.mapping(value, ("global", key), "http_config").items():
                    harmless = (k in _HTTP_HARMLESS and v == _HTTP_HARMLESS[k]) or k in _HTTP_PER_RECEIVER
                    if k not in _AUTH_KEYS and k != "http_headers" and not harmless:
                        self.note("unsupported", f"global.http_config.{k} not supported; dropped")
            else:
                self.note("unsupported", f"global.{key}: ignored (it configures an integration perf-alerts does not "
                                         "support)")

    def read_intervals(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for key in ("mute_time_intervals", "time_intervals"):
            items = self.seq(data.get(key), (key,), key)
            if key == "mute_time_intervals" and items:
                self.note("note", "mute_time_intervals (top level, deprecated in Alertmanager) written as time_intervals")
            for i, item in enumerate(items):
                path: tuple[Any, ...] = (key, i)
                ti = self.mapping(item, path, "a time interval")
                self.unknown_keys(ti, path, ("name", "time_intervals"), "a time interval")
                name = self.doc.text(path + ("name",), ti.get("name"))
                if not name:
                    raise self.fail(path, "missing name in time interval")
                if name in seen:  # Alertmanager: "time interval %q is not unique"
                    raise self.fail(path + ("name",), f"time interval {name!r} is not unique (also {seen[name]})")
                seen[name] = _dotted(path)
                body = self.seq(ti.get("time_intervals"), path + ("time_intervals",), "time_intervals")
                entry = {"name": name, "time_intervals": [self.as_text(x, path + ("time_intervals", j))
                                                           for j, x in enumerate(body)]}
                self.validate(TimeIntervalSet, entry, path)
                out.append(entry)
        self.interval_names = set(seen)
        return out

    def as_text(self, value: Any, path: tuple[Any, ...]) -> Any:
        """A time interval's body with every scalar as the text Alertmanager reads (`1:5`, `20:00`, `-1`)."""
        if isinstance(value, dict):
            return {str(k): self.as_text(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.as_text(v, path + (i,)) for i, v in enumerate(value)]
        return self.doc.text(path, value)

    def read_inhibit(self, raw: Any) -> list[dict[str, Any]]:
        out = []
        for i, item in enumerate(self.seq(raw, ("inhibit_rules",), "inhibit_rules")):
            path: tuple[Any, ...] = ("inhibit_rules", i)
            r = self.mapping(item, path, "an inhibit rule")
            self.unknown_keys(r, path, INHIBIT_KEYS, "an inhibit rule")
            rule: dict[str, Any] = {}
            for side in ("source", "target"):
                ms = self.matchers(r, path, f"{side}_matchers", f"{side}_match", f"{side}_match_re")
                if ms:
                    rule[f"{side}_matchers"] = [matcher_yaml(m) for m in ms]
            equal = [self.doc.text(path + ("equal", j), x) for j, x in
                     enumerate(self.seq(r.get("equal"), path + ("equal",), "equal"))]
            if equal:
                rule["equal"] = equal
            if r.get("name"):
                self.note("note", f"inhibit_rules[{i}]: name {self.doc.text(path + ('name',), r['name'])!r} not kept "
                                  "(perf-alerts inhibit rules have no name)")
            self.validate(InhibitRule, rule, path)
            out.append(rule)
        return out


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return []


_ENV_REF_RE = re.compile(r"^(?:[A-Za-z]+ )?\$\{[A-Z_][A-Z0-9_]*\}$")


def convert_alertmanager(text: str, source: str = "<string>") -> ImportResult:
    """The perf-alerts config for an Alertmanager configuration text.

    Raises ConfigError (one line, `file:line: what`) for YAML that does not load, for a file
    that is not an Alertmanager configuration and for what Alertmanager itself would refuse.
    """
    doc = _Doc(text, source)
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: not an Alertmanager configuration: the top level must be a mapping "
                          "with route: and receivers:")
    if "route" not in data:
        perf = [k for k in ("rules", "slos", "escalations", "metrics") if k in data]
        hint = f" (it has {', '.join(perf)}: a perf-alerts config?)" if perf else ""
        raise ConfigError(f"{source}:1: not an Alertmanager configuration: no route: section{hint}")
    conv = _Converter(doc)
    conv.unknown_keys(data, (), TOP_LEVEL_KEYS, "an Alertmanager configuration")
    conv.read_global(data.get("global"))
    templates = conv.seq(data.get("templates"), ("templates",), "templates")
    if templates:
        conv.note("unsupported", f"templates: not supported (perf-alerts formats its own messages); "
                                 f"{len(templates)} template file pattern(s) not used")
    intervals = conv.read_intervals(data)
    receivers = conv.read_receivers(data.get("receivers"))
    root_raw = data.get("route")
    root = conv.read_route(root_raw, ("route",))
    if root.receiver is None:  # Alertmanager: "root route must specify a default receiver"
        raise conv.fail(("route",), "root route must specify a default receiver")
    if root.matchers:
        raise conv.fail(("route",), "root route must not have any matchers")
    if root.continue_:
        raise conv.fail(("route", "continue"), "cannot have continue in root route")
    for key in ("mute_time_intervals", "active_time_intervals"):
        if getattr(root, key):
            raise conv.fail(("route", key), f"root route must not have any {key.replace('_', ' ')}")
    route = conv.emit_route(root, root.receiver)
    # the root written out with Alertmanager's defaults: perf-alerts' own default group_by is [alertname]
    ordered: dict[str, Any] = {"receiver": route.pop("receiver")}
    ordered["group_by"] = route.pop("group_by", [])
    for k, v in AM_ROOT_DEFAULTS.items():
        ordered[k] = route.pop(k, v)
    ordered.update(route)
    out: dict[str, Any] = {"receivers": [d for _, _, ds in receivers for d in ds], "route": ordered}
    inhibit = conv.read_inhibit(data.get("inhibit_rules"))
    if inhibit:
        out["inhibit_rules"] = inhibit
    if intervals:
        out["time_intervals"] = intervals
    # notify/receivers.py posts Alertmanager's version-4 webhook payload; only a split receiver's
    # name differs from what Alertmanager would put in its `receiver` field
    renamed = [(d["name"], am) for _, am, ds in receivers for d in ds if "webhook" in d and d["name"] != am]
    if renamed:
        conv.note("note", "webhook receiver(s) " + ", ".join(f"{n!r} (from {am!r})" for n, am in renamed)
                  + ": the webhook payload's `receiver` field carries the new name")
    if conv.guards:
        conv.note("note", f"{conv.guards} guard route(s) added so that split receivers are notified exactly when "
                          "Alertmanager would notify the route itself")
    for s in _strings(out):
        if "${" in s and not _ENV_REF_RE.match(s):
            conv.note("unsupported", f"the value {s!r} holds '${{', which perf-alerts expands from the environment "
                                     "when it loads the config; check it")
    body = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    result_text = _header(source, conv.notes) + body
    _check_loads(result_text, source)
    return ImportResult(result_text, out, conv.notes, dict(conv.parts))


def _header(source: str, notes: list[ImportNote]) -> str:
    name = Path(source).name if source and not source.startswith("<") else source
    lines = [
        f"# perf-alerts configuration converted from the Alertmanager configuration {name}",
        "# by `perf-alerts import-alertmanager` (routing, receivers, inhibit rules and time intervals).",
        "# It has no rules: perf-alerts reads one config file, so copy these sections into your",
        "# config/alerting.yaml, or your rules:, slos: and metrics: into this file.",
    ]
    secrets = [n.text for n in notes if n.kind == "secret"]
    if secrets:
        lines.append("# Secrets were not copied; set these environment variables before perf-alerts starts:")
        lines += [f"#   {s}" for s in secrets]
    other = [n.text for n in notes if n.kind == "unsupported"]
    if other:
        lines.append("# Not carried over:")
        lines += [f"#   {s}" for s in other]
    return "\n".join(ln.replace("\n", " ") for ln in lines) + "\n"


def _check_loads(text: str, source: str) -> None:
    """The converted text must load as a perf-alerts config (a converter bug otherwise, or a part
    of the input that perf-alerts cannot take): said here rather than by check-config later."""
    try:
        parse_config(text, f"{source} (converted)", env={})
    except ConfigError as e:
        raise ConfigError(f"{source}: the converted configuration does not load in perf-alerts: "
                          f"{e.problems[0]}") from None


def convert_alertmanager_file(path: str | Path) -> ImportResult:
    return convert_alertmanager(read_config_text(path, "file"), str(Path(path)))

