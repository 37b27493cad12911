"""`perf-alerts test-rules FILE`: rule unit tests in the vocabulary of `promtool test rules`.

```yaml
rule_files: [alerting.yaml]        # optional, relative to this file; default: the active config
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'crew_task_seconds{agent="researcher"}'
        values: '10+5x10 _ 100'    # expanding notation; _ is a missing sample, stale ends the series
    alert_rule_test:
      - eval_time: 10m
        alertname: HighLatency
        exp_alerts:
          - exp_labels: {agent: researcher, severity: critical}
            exp_annotations: {summary: "..."}
```
Each test runs in its own scratch store; the rules are evaluated every
`evaluation_interval` from time 0, so `for` and `keep_firing_for` behave as in production,
and, as in promtool, a check at `eval_time` sees the state left by the last of those
evaluations at or before it (an `eval_time` between two is not an evaluation of its own).
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np

import yaml

from perf_alerts.alerts.state import apply_results
from perf_alerts.config import Config, ConfigError, load_config, load_yaml, read_config_text, yaml_error_text
from perf_alerts.errors import InputError
from perf_alerts.model import Alert, AlertState, Sample, validate_labels, validate_metric_name
from perf_alerts.rules.evaluate import Evaluator, SeriesIndex
from perf_alerts.store import SampleBlock, Store
from perf_alerts.timeutil import TimeParseError, parse_duration, short_repr

_SERIES_RE = re.compile(r'^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_EXPAND_RE = re.compile(r"^(-?[0-9.eE+]+?)([+-])([0-9.eE]+)x(\d+)$")
_REPEAT_RE = re.compile(r"^(-?[0-9.eE+]+|_)x(\d+)$")


class RuleTestError(InputError, ValueError):
    """A rule test file that cannot be read as written (series, values, times)."""


def parse_series(text: str) -> tuple[str, dict[str, str]]:
    m = _SERIES_RE.match(text)
    if not m:
        raise RuleTestError(f"cannot parse series {text!r}; write it like metric{{label=\"value\"}}")
    name, body = m.group(1), m.group(2) or ""
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body.strip()):
        lm = _LABEL_RE.match(body, pos)
        if not lm:
            raise RuleTestError(f"cannot parse labels in {text!r} near {body[pos:]!r}")
        labels[lm.group(1)] = _unescape(lm.group(2), text)
        pos = lm.end()
    return validate_metric_name(name), validate_labels(labels)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"'}
_ESCAPE_RE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|x([0-9a-fA-F]{2})|([0-7]{3})|(.))', re.S)


def _unescape(value: str, text: str) -> str:
    """A label value's escapes decoded as promtool's series selector does (a Go string literal):
    \\uXXXX, \\UXXXXXXXX, \\xNN, octal \\NNN, \\n, \\t, \\\\, \\" ... ; an unknown escape is an error."""
    def dec(m: re.Match[str]) -> str:
        u4, u8, x2, octal, ch = m.groups()
        if u4 or u8:
            cp = int(u4 or u8, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise RuleTestError(f"invalid escape {m.group(0)!r} in {text!r}")
            return chr(cp)
        if x2 or octal:
            b = int(x2, 16) if x2 else int(octal, 8)
            if b > 0xFF:
                raise RuleTestError(f"invalid escape {m.group(0)!r} in {text!r}")
            return chr(b)
        if ch in _ESCAPES:
            return _ESCAPES[ch]
        raise RuleTestError(f"unknown escape {m.group(0)!r} in {text!r}")

    return _ESCAPE_RE.sub(dec, value)


MAX_VALUES = 100_000  # per series: a rule test is a unit test, not a load test
MAX_TEST_SAMPLES = 1_000_000  # in all the input series of one test
MAX_EVALUATIONS = 100_000  # evaluation steps of one test (eval_time / evaluation_interval)


STALE: float = float("nan")  # promtool's `stale`: a staleness marker (compare with `is`)


def expand_values(text: str) -> list[float | None]:
    """'1+2x3 _ 5' → [1, 3, 5, 7, None, 5]; 'axn' repeats a (n+1 times), '_xn' is n gaps;
    `stale` is the marker STALE (as in promtool: it ends the series there, see StaleAwareStore)."""
    out: list[float | None] = []
    for tok in str(text).split():
        m = _EXPAND_RE.match(tok) or _REPEAT_RE.match(tok)
        if m and len(out) + int(m.group(m.lastindex or 0)) > MAX_VALUES:
            raise RuleTestError(f"values {tok!r}: more than {MAX_VALUES:,} samples in one series")
        if tok == "_":
            out.append(None)
            continue
        if tok == "stale":
            out.append(STALE)
            continue
        m = _EXPAND_RE.match(tok)
        if m:
            a, sign, b, n = float(m.group(1)), m.group(2), float(m.group(3)), int(m.group(4))
            d = b if sign == "+" else -b
            out += [a + d * i for i in range(n + 1)]
            continue
        m = _REPEAT_RE.match(tok)
        if m:
            if m.group(1) == "_":
                out += [None] * int(m.group(2))
            else:
                out += [float(m.group(1))] * (int(m.group(2)) + 1)
            continue
        try:
            out.append(float(tok))
        except ValueError:
            raise RuleTestError(f"cannot parse value {tok!r} (use numbers, _ and a+bxn)") from None
    if not all(v is None or v is STALE or math.isfinite(v) for v in out):
        raise RuleTestError(f"values {short_repr(text)}: every value must be a finite number (use _ for a missing sample)")
    return out


def _mapping(x: Any, what: str) -> dict[str, Any]:
    if x is None:
        return {}
    if not isinstance(x, dict):
        raise RuleTestError(f"{what}: expected a mapping, got {type(x).__name__}")
    return x


def _mappings(x: Any, what: str) -> list[dict[str, Any]]:
    if x is None:
        return []
    if not isinstance(x, list):
        raise RuleTestError(f"{what}: expected a list, got {type(x).__name__}")
    return [_mapping(item, f"{what}[{i}]") for i, item in enumerate(x)]


def _interval(x: Any, what: str) -> float:
    try:
        v = parse_duration(x)
    except TimeParseError as e:
        raise RuleTestError(f"{what}: {e}") from None
    if v <= 0:
        raise RuleTestError(f"{what}: must be > 0, got {x!r}")
    return v


class StaleAwareStore(Store):
    """The scratch store of one rule test, with promtool's staleness markers. For a rule that reads
    the series as an instant lookup (`aggregate: last`, `type: absent`; `instant` set), a series has
    ended once its `stale` marker is reached: a read at or after the marker sees none of its earlier
    samples (PromQL's instant selector returns nothing after a stale marker, where after `_` it
    returns the last value for 5 m), and a later sample starts it again. Window aggregates (avg,
    percentiles, trend, ...) read every sample, as PromQL's range selectors ignore stale markers."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.stale: dict[int, np.ndarray] = {}  # series id → its markers' times, sorted
        self.instant = False  # the rule being evaluated reads the series as an instant lookup

    def _ended_before(self, sid: int, at: float) -> float | None:
        marks = self.stale.get(sid)
        if marks is None or not self.instant:
            return None
        i = int(np.searchsorted(marks, at, "right"))
        return float(marks[i - 1]) if i else None

    def query(self, series_ids: Sequence[int], start: float, end: float) -> SampleBlock:
        block = super().query(series_ids, start, end)
        if not self.stale or not self.instant or len(block) == 0:
            return block
        keep = np.ones(len(block), dtype=bool)
        for sid in self.stale:
            cut = self._ended_before(sid, end)
            if cut is not None:
                keep &= ~((block.series_id == sid) & (block.ts < cut))
        return block if keep.all() else block.slice(keep)

    def last_timestamps(self, series_ids: Sequence[int], before: float) -> dict[int, float]:
        out = super().last_timestamps(series_ids, before)
        for sid in list(out):
            cut = self._ended_before(sid, before)
            if cut is not None and out[sid] < cut:
                del out[sid]
        return out


@dataclass
class RuleTestOutcome:
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)


def _load_rules(spec: dict[str, Any], base: Path, default: "DefaultConfig") -> Config:
    files = spec.get("rule_files")
    if isinstance(files, str):
        files = [files]
    if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        raise ConfigError(f"rule_files must be a list of file names (relative to {base})")
    if not files:
        if default is None:
            return load_config(None)
        return default() if callable(default) else default
    rules: list[Any] = []
    merged: dict[str, Any] = {"rules": rules}
    for f in files:
        p = (base / f) if not Path(f).is_absolute() else Path(f)
        cfg = load_config(p)
        rules.extend(r.model_dump(by_alias=True) for r in cfg.rules)
        merged["metrics"] = {k: v.model_dump() for k, v in cfg.metrics.items()}
    return Config.model_validate(merged)


DefaultConfig = Union[Config, Callable[[], Config], None]


def run_rule_tests(path: str | Path, default: DefaultConfig = None) -> list[RuleTestOutcome]:
    p = Path(path)
    text = read_config_text(p, "test file")
    try:
        # the config's bounded safe loader: no alias bombs, no deep nesting
        spec = load_yaml(text, inspect=_values_as_text)[1] or {}
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_text(e, str(p))) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("tests"), list):
        raise ConfigError(f"{p}: expected a mapping with a 'tests:' list")
    try:
        _check_keys(spec, _FILE_KEYS, "the test file")
    except RuleTestError as e:
        raise ConfigError(f"{p}: {e}") from None
    config = _load_rules(spec, p.parent, default)
    try:
        default_interval = _interval(spec.get("evaluation_interval", "1m"), "evaluation_interval")
    except RuleTestError as e:
        raise ConfigError(f"{p}: {e}") from None
    outcomes = []
    for i, test in enumerate(spec["tests"]):
        if not isinstance(test, dict):
            outcomes.append(RuleTestOutcome(f"test {i + 1}", False, [f"{p}: tests[{i}]: expected a mapping"]))
            continue
        name = str(test.get("name", f"test {i + 1}"))
        try:
            outcomes.append(_run_one(name, test, config, default_interval))
        except (RuleTestError, TimeParseError, ValueError) as e:
            # a test file that cannot be read is a usage error (exit 2), not a failing test
            raise ConfigError(f"{p}: tests[{i}] ({name}): {e}") from None
    return outcomes


def _run_one(name: str, test: dict[str, Any], config: Config, eval_interval: float) -> RuleTestOutcome:
    _check_keys(test, _TEST_KEYS, "test")
    for k, s in enumerate(_mappings(test.get("input_series"), "input_series")):
        _check_keys(s, _SERIES_KEYS, f"input_series[{k}]")
    for k, c in enumerate(_mappings(test.get("alert_rule_test"), "alert_rule_test")):
        _check_keys(c, _ALERT_TEST_KEYS, f"alert_rule_test[{k}]")
        for j, exp in enumerate(_mappings(c.get("exp_alerts"), f"alert_rule_test[{k}].exp_alerts")):
            _check_keys(exp, _EXP_ALERT_KEYS, f"alert_rule_test[{k}].exp_alerts[{j}]")
    interval = _interval(test.get("interval", eval_interval), "interval")
    with tempfile.TemporaryDirectory(prefix="perf-alerts-test-") as tmp:
        store = StaleAwareStore(Path(tmp) / "t.db")
        samples = []
        stale_marks: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
        for s in _mappings(test.get("input_series"), "input_series"):
            metric, labels = parse_series(str(s.get("series", "")))
            for k, v in enumerate(expand_values(s.get("values", ""))):
                if v is STALE:
                    stale_marks.setdefault((metric, tuple(sorted(labels.items()))), []).append(k * interval)
                elif v is not None:
                    samples.append(Sample(metric, labels, k * interval, v))
            if len(samples) > MAX_TEST_SAMPLES:
                raise RuleTestError(f"input_series: more than {MAX_TEST_SAMPLES:,} samples in one test")
        store.insert_samples(samples)
        for metric in {m for m, _ in stale_marks}:
            for info in store.list_series(metric):
                marks = stale_marks.get((metric, tuple(sorted(info.labels.items()))))
                if marks:
                    store.stale[info.id] = np.array(sorted(marks))
        checks = _mappings(test.get("alert_rule_test"), "alert_rule_test")
        eval_times = sorted({parse_duration(c.get("eval_time", 0)) for c in checks})
        if eval_times and eval_times[-1] / eval_interval > MAX_EVALUATIONS:
            raise RuleTestError(f"eval_time {eval_times[-1]:g}s needs more than {MAX_EVALUATIONS:,} evaluations every "
                                f"{eval_interval:g}s; use an earlier eval_time or a longer evaluation_interval")
        snapshots: dict[float, dict[str, list[Alert]]] = {}
        evaluator = Evaluator(store, config, SeriesIndex(store))
        state: dict[str, dict[str, Alert]] = {r.name: {} for r in config.rules}
        t = 0.0
        end = eval_times[-1] if eval_times else 0.0
        # as promtool: the rules run on the evaluation_interval grid only, and a check at eval_time
        # sees the state left by the last grid evaluation at or before it
        def grid_step(x: float) -> int:
            return int(math.floor(x / eval_interval + 1e-9))

        checked_at: dict[int, list[float]] = {}
        for et in eval_times:
            checked_at.setdefault(grid_step(et), []).append(et)
        for k in range(grid_step(end) + 1):
            t = k * eval_interval
            for rule in config.rules:
                if rule.source == "prometheus":  # its PromQL runs on the server, which holds no input_series
                    continue
                if store.stale:  # an instant lookup and a window read the same samples differently
                    store.instant = rule.type == "absent" or (rule.type == "threshold" and rule.aggregate == "last")
                    evaluator.new_step()
                save, delete, _ = apply_results(rule, evaluator.evaluate(rule, t), state[rule.name], t)
                for fp in delete:
                    state[rule.name].pop(fp, None)
                for a in save:
                    state[rule.name][a.fingerprint] = a
            for et in checked_at.get(k, ()):
                snapshots[et] = {r: [a for a in st.values() if a.state == AlertState.FIRING] for r, st in state.items()}
        store.close()
    failures: list[str] = []
    promql = _mappings(test.get("promql_expr_test"), "promql_expr_test")
    if promql:  # promtool evaluates these; perf-alerts has no PromQL engine: never a silent PASS
        failures.append(f"promql_expr_test: {len(promql)} PromQL expression check(s) cannot be run by perf-alerts "
                        f"(it evaluates its own rules, not PromQL); remove them or run them with promtool")
    known = {r.name for r in config.rules}
    for c in checks:
        at = parse_duration(c.get("eval_time", 0))
        alertname = str(c.get("alertname", ""))
        if alertname not in known:
            failures.append(f"eval_time {c.get('eval_time')}: unknown alertname {alertname!r}")
            continue
        if any(r.name == alertname and r.source == "prometheus" for r in config.rules):
            failures.append(f"eval_time {c.get('eval_time')}: {alertname} is a source: prometheus rule: its PromQL "
                            "runs on the Prometheus server, not on input_series; test the expression with promtool")
            continue
        got = snapshots.get(at, {}).get(alertname, [])
        expected = _mappings(c.get("exp_alerts"), "exp_alerts")
        unmatched = list(got)
        exp_sets: list[tuple[dict[str, str], dict[str, str]]] = []
        ok = True
        for exp in expected:
            exp_labels = {str(k): str(v) for k, v in _mapping(exp.get("exp_labels"), "exp_labels").items()}
            exp_ann = {str(k): str(v) for k, v in _mapping(exp.get("exp_annotations"), "exp_annotations").items()}
            exp_sets.append((exp_labels, exp_ann))
            # annotations compared exactly, as promtool does (none expected: the alert must have none)
            hit = next((a for a in unmatched if _labels_match(a.labels, exp_labels) and a.annotations == exp_ann), None)
            if hit is None:
                ok = False
            else:
                unmatched.remove(hit)
        if unmatched:
            ok = False
        if not ok:  # as promtool prints it: what was expected, what was got, label sets as {a="b"}
            exp_txt = "".join(f"\n        {i}: labels: {fmt_label_set({**{'alertname': alertname}, **lab})}"
                              + (f" annotations: {fmt_label_set(ann)}" if ann else "")
                              for i, (lab, ann) in enumerate(exp_sets)) or " none"
            got_txt = "".join(f"\n        {i}: {_describe(g)}" for i, g in enumerate(got)) or " none"
            failures.append(f"alertname: {alertname}, time: {c.get('eval_time')}\n    exp:{exp_txt}\n    got:{got_txt}")
    return RuleTestOutcome(name, not failures, failures)


# promtool's vocabulary (cmd/promtool/unittest.go); a key outside it is a typo to report, and a
# promtool key perf-alerts cannot honour is said so rather than ignored
_FILE_KEYS = {"rule_files", "evaluation_interval", "tests"}
_TEST_KEYS = {"name", "interval", "input_series", "alert_rule_test", "promql_expr_test"}
_SERIES_KEYS = {"series", "values"}
_ALERT_TEST_KEYS = {"eval_time", "alertname", "exp_alerts"}
_EXP_ALERT_KEYS = {"exp_labels", "exp_annotations"}
_UNSUPPORTED_KEYS = {"group_eval_order", "fuzzy_compare", "external_labels", "external_url"}


def _check_keys(d: dict[str, Any], valid: set[str], where: str) -> None:
    unknown = [str(k) for k in d if k not in valid]
    if not unknown:
        return
    k = unknown[0]
    if k in _UNSUPPORTED_KEYS:
        raise RuleTestError(f"{where}: promtool's {k!r} is not supported by perf-alerts test-rules")
    raise RuleTestError(f"{where}: unknown key {short_repr(k)} (promtool would refuse it too); "
                        f"valid: {', '.join(sorted(valid))}")


def _values_as_text(root: yaml.Node) -> None:
    """Every `values:` scalar is read as its text, as promtool reads it (a Go string field):
    unquoted `0x10` is eleven zeros, not YAML's hex 16 (nor `010` octal 8, `1_000` 1000)."""
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == "values" and isinstance(v, yaml.ScalarNode) \
                        and v.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                    v.tag = "tag:yaml.org,2002:str"
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _labels_match(actual: dict[str, str], expected: dict[str, str]) -> bool:
    a = {k: v for k, v in actual.items() if k != "alertname"}
    if "severity" not in expected:
        a.pop("severity", None)
    return a == expected


def fmt_label_set(labels: dict[str, str]) -> str:
    """A label set as Prometheus and promtool print it: {alertname="X", severity="critical"}."""
    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return "{" + ", ".join(f"{k}={q(str(v))}" for k, v in sorted(labels.items())) + "}"


def _describe(a: Alert) -> str:
    text = f"labels: {fmt_label_set(a.labels)}"
    return text + (f" annotations: {fmt_label_set(a.annotations)}" if a.annotations else "")
