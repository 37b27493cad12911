"""Property tests of the parsers that read user files (issue 10), with bounded examples.

Whatever the bytes, the CSV and JSONL readers report bad lines by number and keep every
good line around them; the config parser gives a Config or a ConfigError, never another
exception; a matcher is accepted or refused, never a crash or a hang.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import require

hypothesis = require("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from perf_alerts.config import Config, ConfigError, parse_config, parse_matchers  # noqa: E402
from perf_alerts.sources.files import ingest_file  # noqa: E402
from perf_alerts.store import Store  # noqa: E402

T0 = 1_800_000_000
# bounded: a few seconds in the normal run; PROPERTY_EXAMPLES=5000 for a deeper search
SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# garbage lines: any text without a line break, with quotes, commas, braces and huge numbers likely
_GARBAGE_ALPHABET = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")
garbage = st.one_of(
    st.text(_GARBAGE_ALPHABET, max_size=60),
    st.text(alphabet='",{}[]:1e0\\ \r\t-', max_size=40),
    st.sampled_from(['"', '","', 'x,"', '{"metric": "m"', "[" * 2000, "1" + "0" * 400,
                     '{"metric": "good", "value": 1' + "0" * 400 + ', "timestamp": 1}', "\ufeff", "\x00"]),
)


def _ingest(tmp: Path, name: str, text: str) -> tuple[Any, list[tuple[str, float, float]]]:
    p = tmp / name
    p.write_bytes(text.encode("utf-8", "surrogatepass"))
    store = Store(tmp / f"{name}.db")
    try:
        rep = ingest_file(store, p)
        rows = store.con.execute(
            "SELECT s.labels, x.ts, x.value FROM samples x JOIN series s ON s.id = x.series_id "
            "WHERE s.metric = 'good_metric'").fetchall()
        return rep, sorted(((lab, ts, v) for lab, ts, v in rows), key=lambda r: (r[1], r[2], r[0]))
    finally:
        store.close()


def _layout(goods: int, bad: list[str], positions: list[int]) -> tuple[list[str | None], int]:
    """Good lines (None placeholders) with the bad lines inserted at the given positions."""
    lines: list[str | None] = [None] * goods
    for b, pos in zip(bad, positions):
        lines.insert(pos % (len(lines) + 1), b)
    return lines, goods


@SETTINGS
@given(bad=st.lists(garbage, max_size=6), positions=st.lists(st.integers(0, 50), min_size=6, max_size=6),
       goods=st.integers(1, 12))
def test_csv_bad_lines_never_cost_good_ones(bad: list[str], positions: list[int], goods: int) -> None:
    lines, _ = _layout(goods, bad, positions)
    out, k = ["timestamp,metric,value,agent"], 0
    for line in lines:
        if line is None:
            out.append(f"{T0 + k},good_metric,{k}.5,a{k}")
            k += 1
        else:
            out.append(line)
    with tempfile.TemporaryDirectory() as tmp:
        rep, rows = _ingest(Path(tmp), "x.csv", "\n".join(out) + "\n")
    assert [(ts, v) for _, ts, v in rows if json.loads(_)["agent"].startswith("a")] == \
        [(float(T0 + i), i + 0.5) for i in range(goods)]
    non_empty = sum(1 for line in out[1:] if line.rstrip("\r\n"))
    assert rep.accepted + rep.rejected <= non_empty
    assert all(2 <= e.line <= len(out) for e in rep.errors)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=10)
records = st.fixed_dictionaries({}, optional={
    "metric": st.one_of(st.just("good_metric"), st.text(max_size=10), json_values),
    "value": st.one_of(json_values, st.integers(min_value=10**300, max_value=10**400)),
    "timestamp": st.one_of(json_values, st.integers(min_value=-10**400, max_value=10**400)),
    "labels": st.one_of(json_values, st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
})


def _json_line(obj: Any) -> str:
    # json.dumps writes inf/nan as Infinity/NaN, which json.loads accepts: hostile too
    return json.dumps(obj)


@SETTINGS
@given(bad=st.lists(st.one_of(garbage, records.map(_json_line)), max_size=6),
       positions=st.lists(st.integers(0, 50), min_size=6, max_size=6), goods=st.integers(1, 12))
def test_jsonl_bad_lines_never_cost_good_ones(bad: list[str], positions: list[int], goods: int) -> None:
    lines, _ = _layout(goods, bad, positions)
    out, k = [], 0
    for line in lines:
        if line is None:
            out.append(json.dumps({"metric": "good_metric", "value": k + 0.5, "timestamp": T0 + k,
                                   "labels": {"agent": f"good{k}"}}))
            k += 1
        else:
            out.append(line)
    with tempfile.TemporaryDirectory() as tmp:
        rep, rows = _ingest(Path(tmp), "x.jsonl", "\n".join(out) + "\n")
    mine = [(ts, v) for lab, ts, v in rows if json.loads(lab).get("agent", "").startswith("good")]
    assert mine == [(float(T0 + i), i + 0.5) for i in range(goods)]
    assert all(1 <= e.line <= len(out) for e in rep.errors)
    assert all(len(str(e)) < 400 for e in rep.errors)


VALID = """\
global: {evaluation_interval: 1m}
rules:
  - name: Slow
    type: threshold
    metric: lat
    matchers: ['agent=~"res.*"']
    aggregate: p95
    window: 5m
    op: ">"
    value: 30
receivers:
  - {name: ops, console: {}}
route:
  receiver: ops
  routes: [{receiver: ops, matchers: {severity: critical}}]
"""


def _parse(text: str) -> None:
    try:
        cfg = parse_config(text, "prop.yaml", env={})
    except ConfigError as e:
        assert str(e) and all(p.startswith("prop.yaml") for p in e.problems), e.problems
    else:
        assert isinstance(cfg, Config)


@SETTINGS
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_config_parser_on_any_text(text: str) -> None:
    _parse(text)


@SETTINGS
@given(start=st.integers(0, len(VALID)), length=st.integers(0, 40),
       insert=st.one_of(garbage, st.sampled_from(["&a", "*a", "<<: *a", "!!python/object:os.system", "{", "[",
                                                  "1" + "0" * 5000, ".inf", "'(a)\\1'", "? [a]\n: 1"])))
def test_config_parser_on_a_mutated_valid_file(start: int, length: int, insert: str) -> None:
    _parse(VALID[:start] + insert + VALID[start + length:])


@SETTINGS
@given(data=json_values)
def test_config_parser_on_any_structure(data: Any) -> None:
    _parse(json.dumps({"rules": [data], "route": data} if not isinstance(data, float) or math.isfinite(data) else {}))


@SETTINGS
@given(pattern=st.text(alphabet="ab.*+?()|[]{}\\^$0123,=~!\"-", max_size=30))
def test_a_matcher_is_accepted_or_refused_never_crashes(pattern: str) -> None:
    try:
        ms = parse_matchers([f'x=~"{pattern}"'])
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        for m in ms:
            m.matches({"x": "ab" * 50 + "!"})  # linear time: never hangs
