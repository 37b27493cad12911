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
