"""Behaviour pinned against Alertmanager and promtool (issue 16): each test names the peer
behaviour it reproduces, so a divergence is a failing test rather than a surprise for a user
who brings their routing or rule tests along."""

from __future__ import annotations

import textwrap
from pathlib import Path

from perf_alerts.config import parse_config
from perf_alerts.rules.testing import run_rule_tests

RULES = """\
rules:
  - name: Slow
    type: threshold
    metric: lat
    aggregate: last
    window: 5m
    op: ">"
    value: 30
    for: 2m
    severity: critical
"""


def _rule_test(tmp_path: Path, body: str, rules: str = RULES) -> list:  # type: ignore[type-arg]
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent(body))
    return run_rule_tests(p, default=parse_config(rules, "c.yaml", env={}))


def test_for_elapses_when_the_condition_holds_from_time_zero(tmp_path: Path) -> None:
    # promtool: a series breaching from t=0 with `for: 2m` is pending at 1m and firing from 2m
    # (Prometheus' activeAt is the first evaluation, 0 included; 0 is not "unset").
    out = _rule_test(tmp_path, """
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series: [{series: 'lat{agent="a"}', values: '45x10'}]
            alert_rule_test:
              - {eval_time: 1m, alertname: Slow, exp_alerts: []}
              - eval_time: 2m
                alertname: Slow
                exp_alerts: [{exp_labels: {agent: a, severity: critical}}]
              - eval_time: 10m
                alertname: Slow
                exp_alerts: [{exp_labels: {agent: a, severity: critical}}]
    """)
    assert [o.passed for o in out] == [True], out[0].failures


def test_a_rule_label_severity_is_not_silently_overwritten(tmp_path: Path) -> None:
    # Prometheus keeps a rule's `labels: {severity: page}` on its alerts. Here the `severity` field
    # sets that label, so check-config refuses a different labels.severity (file:line:field) rather
    # than overwrite it; the same value in both places is fine.
    import pytest

    from perf_alerts.config import ConfigError

    text = RULES + "    labels:\n      team: a\n      severity: page\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml", env={})
    msg = str(ei.value)
    assert msg.startswith("c.yaml:11: rules[0].labels:"), msg
    assert "labels.severity 'page' conflicts with severity: critical" in msg and "Prometheus" in msg
    cfg = parse_config(RULES + "    labels: {severity: critical}\n", "c.yaml", env={})
    assert cfg.rules[0].labels == {"severity": "critical"}


def test_matcher_text_is_parsed_and_printed_as_alertmanager_does() -> None:
    # Alertmanager's labels.ParseMatchers (pkg/labels/parse_test.go): optional braces, a
    # comma-separated list outside quotes, \" \\ \n escapes inside a quoted value, an unescaped
    # quote refused; Matcher.String() quotes the value with strconv.Quote.
    import pytest

    from perf_alerts.config import parse_matchers

    def parsed(raw: object) -> list[tuple[str, str, str]]:
        return [(m.label, m.op, m.value) for m in parse_matchers(raw)]

    assert parsed(["foo=bar,dings!=bums"]) == [("foo", "=", "bar"), ("dings", "!=", "bums")]
    assert parsed('{owner="team-A"}') == [("owner", "=", "team-A")]
    assert parsed(['{foo="bar", dings!="bums",}']) == [("foo", "=", "bar"), ("dings", "!=", "bums")]
    assert parsed(['foo=~"a|b",bar!~"c,d"']) == [("foo", "=~", "a|b"), ("bar", "!~", "c,d")]
    assert parsed([r'foo="quoted \"x\", y"']) == [("foo", "=", 'quoted "x", y')]
    assert parsed([r'foo="back\\slash\nline"']) == [("foo", "=", "back\\slash\nline")]
    assert parsed([r'foo="\w+"']) == [("foo", "=", r"\w+")]  # a spurious escape stays literal
    for bad in ['foo="unclosed', 'foo=a"b', 'a=b,,c=d']:
        with pytest.raises(ValueError, match="cannot parse matcher"):
            parse_matchers([bad])
    # a YAML null value is the empty string (as `agent:` alone), never the text "None"
    assert parsed({"agent": {"=~": None}}) == [("agent", "=~", "")]
    assert parsed([{"label": "agent", "op": "!~", "value": None}]) == [("agent", "!~", "")]
    # printing escapes and parses back to the same matcher
    ms = parse_matchers([{"label": "a", "op": "=~", "value": 'x"y\\z\nw'}])
    assert [str(m) for m in ms] == [r'a=~"x\"y\\z\nw"']
    assert parse_matchers([str(m) for m in ms]) == ms
    # Alertmanager's Matcher.String escapes only \\, " and a line break (openMetricsEscape): a tab,
    # another control character or a literal backslash-t must print so that it parses back
    for value in ["a\tb\x01c\u00e9", "\\t", "\\x41", "end\\", '\\"', "", "\U0001F600\r\n"]:
        ms = parse_matchers([{"label": "a", "op": "=", "value": value}])
        assert parse_matchers([str(m) for m in ms]) == ms, (value, str(ms[0]))


def test_alerts_matching_both_sides_of_an_inhibit_rule_do_not_mute_each_other() -> None:
    # Alertmanager's InhibitRule.hasEqual(lset, excludeTwoSidedMatch): when a target also matches
    # the source matchers, sources that match the target matchers too are not counted
    # (inhibit_test.go: "alerts that match both source and target are not inhibited by each other").
    from perf_alerts.config import InhibitRule
    from perf_alerts.model import Alert, AlertState, Severity
    from perf_alerts.notify.inhibit import inhibited

    rule = InhibitRule.model_validate({"source_matchers": {"s": "1"}, "target_matchers": {"t": "1"}, "equal": ["e"]})

    def alert(fp: str, **labels: str) -> Alert:
        return Alert(fingerprint=fp, rule="R", state=AlertState.FIRING, severity=Severity.WARNING, labels=labels)

    both_a, both_b = alert("A", s="1", t="1", e="x"), alert("B", s="1", t="1", e="x")
    assert inhibited([both_a, both_b], [rule]) == set()
    # a source-only alert still mutes them both; a two-sided alert still mutes a target-only one
    assert inhibited([both_a, both_b, alert("C", s="1", e="x")], [rule]) == {"A", "B"}
    assert inhibited([both_a, alert("D", t="1", e="x")], [rule]) == {"D"}
    assert inhibited([both_a, alert("D", t="1", e="y")], [rule]) == set()  # `equal` differs


def test_promtool_test_file_keys_annotations_and_values_text(tmp_path: Path) -> None:
    import pytest

    from perf_alerts.config import ConfigError

    rules = RULES + "    annotations: {summary: 'slow {{ labels.agent }}', runbook: 'r'}\n"
    firing = """
        tests:
          - input_series: [{series: 'lat{agent="a"}', values: '45x10'}]
            alert_rule_test:
              - eval_time: 5m
                alertname: Slow
                exp_alerts:
                  - exp_labels: {agent: a, severity: critical}
                    exp_annotations: %s
    """
    # promtool compares exp_annotations exactly: a subset (or none) fails, the full set passes
    for ann, ok in (("{summary: slow a, runbook: r}", True), ("{summary: slow a}", False), ("{}", False)):
        out = _rule_test(tmp_path, firing % ann, rules)
        assert out[0].passed is ok, (ann, out[0].failures)

    # promtool refuses unknown keys (strict YAML): a typo is reported, at every level
    for typo in ("tests: []\nevalution_interval: 1m\n",
                 "tests: [{input_series: [], alert_rule_tests: []}]\n",
                 "tests: [{input_series: [{series: 'lat', values: '1', valeus: '2'}]}]\n",
                 "tests: [{alert_rule_test: [{eval_time: 1m, alertname: Slow, exp_alert: []}]}]\n",
                 "tests: [{alert_rule_test: [{alertname: Slow, exp_alerts: [{exp_label: {}}]}]}]\n"):
        with pytest.raises(ConfigError, match="unknown key"):
            _rule_test(tmp_path, typo, rules)

    # a test holding only a promql_expr_test cannot be run here: it must not report PASS
    out = _rule_test(tmp_path, """
        tests:
          - input_series: [{series: 'lat{agent="a"}', values: '1x5'}]
            promql_expr_test: [{expr: 'lat > 0', eval_time: 1m, exp_samples: [{labels: 'lat{agent="a"}', value: 1}]}]
    """, rules)
    assert not out[0].passed and "promql_expr_test" in out[0].failures[0] and "cannot be run" in out[0].failures[0]

    # unquoted `values: 0x10` is promtool's text "0 repeated": eleven zeros, 0m..10m (YAML alone
    # reads the hex number 16, one sample at 0m, and this rule would see no data at 10m)
    low = RULES.replace('op: ">"', 'op: "<"').replace("value: 30", "value: 5")
    out = _rule_test(tmp_path, """
        tests:
          - input_series: [{series: 'lat{agent="a"}', values: 0x10}]
            alert_rule_test:
              - eval_time: 10m
                alertname: Slow
                exp_alerts: [{exp_labels: {agent: a, severity: critical}}]
    """, low)
    assert [o.passed for o in out] == [True], [o.failures for o in out]
