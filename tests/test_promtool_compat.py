"""`perf-alerts test-rules` pinned against promtool (issue 16): each test names the promtool /
PromQL behaviour it reproduces — `stale` in `values`, the evaluation_interval grid, and escapes
in series label values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perf_alerts.config import ConfigError, parse_config
from perf_alerts.rules.testing import STALE, expand_values, parse_series, run_rule_tests

RULES = """\
rules:
  - name: Slow
    type: threshold
    metric: lat
    aggregate: last
    window: 5m
    op: ">"
    value: 30
    severity: critical
  - name: SlowAvg
    type: threshold
    metric: lat
    aggregate: avg
    window: 5m
    op: ">"
    value: 30
    severity: critical
  - name: Silent
    type: absent
    metric: lat
    matchers: {agent: a}
    window: 5m
    severity: critical
"""

FIRING = "[{exp_labels: {agent: a, severity: critical}}]"


def _run(tmp_path: Path, body: str, rules: str = RULES) -> list[str]:
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent(body))
    out = run_rule_tests(p, default=parse_config(rules, "c.yaml", env={}))
    return [f for o in out for f in o.failures]


def _checks(alertname: str, expected: dict[str, str]) -> str:
    return "".join(f"\n              - {{eval_time: {t}, alertname: {alertname}, exp_alerts: {e}}}"
                   for t, e in expected.items())


# -- `stale` ------------------------------------------------------------------------------------

def test_expand_values_keeps_stale_apart_from_a_gap() -> None:
    # promql/parser (series description lexer): `stale` is a staleness marker (value.StaleNaN),
    # `_` an omitted sample; they are different things
    v = expand_values("1 _ stale 2")
    assert v[0] == 1.0 and v[1] is None and v[2] is STALE and v[3] == 2.0


def test_stale_marker_ends_the_series_at_once(tmp_path: Path) -> None:
    # promql/testdata/staleness.test: `load 10s metric 0 1 stale 2` — the instant selector returns
    # nothing at the marker's time (not the last value for 5 m) and the new value once it comes.
    # promtool: an alert over `lat > 30` resolves at the marker; perf-alerts `aggregate: last` is
    # that instant lookup.
    assert _run(tmp_path, f"""
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series: [{{series: 'lat{{agent="a"}}', values: '45 45 stale _ 45'}}]
            alert_rule_test:{_checks("Slow", {"1m": FIRING, "2m": "[]", "3m": "[]", "4m": FIRING})}
    """) == []


def test_a_gap_keeps_the_last_value_where_stale_does_not(tmp_path: Path) -> None:
    # promql lookback: after `_` (no sample) the instant selector still returns the last sample
    # within 5 m, so promtool's alert stays firing; only a stale marker ends it
    assert _run(tmp_path, f"""
        tests:
          - interval: 1m
            input_series: [{{series: 'lat{{agent="a"}}', values: '45 45 _ _'}}]
            alert_rule_test:{_checks("Slow", {"2m": FIRING, "3m": FIRING})}
    """) == []


def test_absent_sees_a_stale_series_as_gone(tmp_path: Path) -> None:
    # promql/testdata/staleness.test: `absent(metric)` is 1 at the marker's time — the series
    # ended there, not when the last sample ages out of the window
    assert _run(tmp_path, f"""
        tests:
          - interval: 1m
            input_series: [{{series: 'lat{{agent="a"}}', values: '1 1 stale'}}]
            alert_rule_test:{_checks("Silent", {"1m": "[]", "2m": FIRING})}
    """) == []


def test_window_aggregates_ignore_stale_markers(tmp_path: Path) -> None:
    # promql/testdata/staleness.test: "Range vector ignores stale sample" — avg_over_time(lat[5m])
    # still averages the samples before the marker; perf-alerts' `aggregate: avg` over `window: 5m`
    # is that range read
    assert _run(tmp_path, f"""
        tests:
          - interval: 1m
            input_series: [{{series: 'lat{{agent="a"}}', values: '45 45 stale'}}]
            alert_rule_test:{_checks("SlowAvg", {"2m": FIRING, "4m": FIRING, "7m": "[]"})}
    """) == []


def test_stale_is_not_a_number_to_repeat_or_compute() -> None:
    # the series description grammar has no `stale` arithmetic: `stalex3` is not a value
    with pytest.raises(ValueError):
        expand_values("stalex3")


# -- the evaluation_interval grid -------------------------------------------------------------------

def test_eval_time_between_grid_points_sees_the_previous_evaluation(tmp_path: Path) -> None:
    # cmd/promtool/unittest.go: the rules run every evaluation_interval from 0 and an
    # alert_rule_test at eval_time is checked against the state after the last evaluation at or
    # before it. Samples every 30 s, 45 from 90 s: the evaluation at 60 s saw 0, so at 90 s
    # promtool reports no alert; the one at 120 s fires, and 150 s still sees that.
    assert _run(tmp_path, f"""
        evaluation_interval: 1m
        tests:
          - interval: 30s
            input_series: [{{series: 'lat{{agent="a"}}', values: '0 0 0 45 45 45 45'}}]
            alert_rule_test:{_checks("Slow", {"90s": "[]", "119s": "[]", "2m": FIRING, "150s": FIRING})}
    """) == []


def test_for_counts_grid_evaluations_not_eval_time(tmp_path: Path) -> None:
    # Prometheus' activeAt is the first grid evaluation that saw the condition; `for` elapses at a
    # grid evaluation. Breaching from 30 s with evaluation_interval 1m and `for: 1m`: pending from the
    # 60 s evaluation, firing from the 120 s one. A check at 45 s is not an evaluation (it does not
    # start the pending period early), so at 110 s the alert is still pending.
    rules = RULES.replace("    severity: critical\n  - name: SlowAvg", "    for: 1m\n    severity: critical\n"
                                                                         "  - name: SlowAvg", 1)
    assert _run(tmp_path, f"""
        evaluation_interval: 1m
        tests:
          - interval: 30s
            input_series: [{{series: 'lat{{agent="a"}}', values: '0 45x10'}}]
            alert_rule_test:{_checks("Slow", {"45s": "[]", "110s": "[]", "2m": FIRING, "170s": FIRING})}
    """, rules) == []


def test_grid_failure_is_reported_at_the_eval_time_asked_for(tmp_path: Path) -> None:
    # promtool prints the eval_time of the check ("alertname: X, time: 1m30s"), not the grid time
    fails = _run(tmp_path, f"""
        evaluation_interval: 1m
        tests:
          - interval: 30s
            input_series: [{{series: 'lat{{agent="a"}}', values: '0 0 0 45 45'}}]
            alert_rule_test:{_checks("Slow", {"90s": FIRING})}
    """)
    assert len(fails) == 1 and "time: 90s" in fails[0] and "got: none" in fails[0], fails


# -- escapes in series label values ----------------------------------------------------------------

def test_unicode_escapes_in_series_labels_are_decoded() -> None:
    # promtool parses `series` with the PromQL series parser, whose strings are Go string
    # literals (strconv.Unquote): \u00e9 is é, \U0001F600 an emoji, \\ one backslash, \" a quote
    assert parse_series(r'lat{agent="caf\u00e9", mood="\U0001F600", path="a\\b", q="say \"hi\"", t="x\ty"}') \
        == ("lat", {"agent": "café", "mood": "\U0001F600", "path": "a\\b", "q": 'say "hi"', "t": "x\ty"})


def test_an_unknown_escape_is_refused() -> None:
    # the PromQL lexer: "unknown escape sequence" — not kept as a literal backslash
    with pytest.raises(ValueError, match="escape"):
        parse_series(r'lat{agent="a\qb"}')
    with pytest.raises(ValueError, match="escape"):
        parse_series(r'lat{agent="\uD800"}')  # a surrogate is not a character


def test_decoded_label_values_are_what_exp_labels_compare(tmp_path: Path) -> None:
    # promtool compares exp_labels with the decoded label values
    assert _run(tmp_path, r"""
        tests:
          - interval: 1m
            input_series: [{series: 'lat{agent="caf\u00e9"}', values: '45 45'}]
            alert_rule_test:
              - eval_time: 1m
                alertname: Slow
                exp_alerts: [{exp_labels: {agent: "café", severity: critical}}]
    """) == []


def test_a_bad_escape_in_a_test_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="escape"):
        _run(tmp_path, r"""
            tests:
              - input_series: [{series: 'lat{agent="a\qb"}', values: '1'}]
        """)
