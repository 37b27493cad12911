"""Configuration: every mistake is a ConfigError that names the file, the line and the field.

The messages are what a user reads in `perf-alerts check-config`; they must point at the
line to edit and suggest the valid values.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perf_alerts.config import (
    AGGREGATES,
    OPERATORS,
    RULE_TYPES,
    ConfigError,
    load_config,
    packaged_config_dir,
    parse_config,
    resolve_config_path,
)
from perf_alerts.rules.template import template_problems

ROOT = Path(__file__).resolve().parents[1]

RULE = """\
rules:
  - name: A
    type: threshold
    metric: crew_task_seconds
    op: ">"
    value: 30
"""  # lines 2..6; extra fields are appended as line 7+


def _rule(*extra: str) -> str:
    return RULE + "".join(f"    {x}\n" for x in extra)


def _err(text: str, source: str = "alerting.yaml", env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, source, env={} if env is None else env)
    return str(ei.value)


def _one_line(msg: str) -> str:
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- accepted shapes


def test_the_issue_sample_rule_is_accepted_exactly(issue_rule_yaml):
    cfg = parse_config(issue_rule_yaml, "alerting.yaml", env={})
    (r,) = cfg.rules
    assert (r.name, r.type, r.metric, r.aggregate) == ("HighLatency", "threshold", "crew_task_seconds", "p95")
    assert [(m.label, m.op, m.value) for m in r.matchers] == [("agent", "=", "researcher")]
    assert (r.window, r.op, r.value, r.for_) == (300.0, ">", 30.0, 120.0)
    assert r.severity.value == "critical"
    assert r.annotations == {"summary": "{{ labels.agent }} p95 task time {{ value }}s"}
    assert template_problems(r.annotations["summary"]) == []


def test_the_shipped_config_validates():
    path = ROOT / "config" / "alerting.yaml"
    cfg = load_config(path, env={})
    names = [r.name for r in cfg.rules]
    assert len(names) == len(set(names)) >= 5
    # the five seed rule kinds of the product are all there
    assert {"threshold", "trend", "anomaly", "forecast", "absent"} <= {r.type for r in cfg.rules}
    assert {"CriticalPerformanceDegradation", "ResourceExhaustion", "PerformanceAnomaly"} <= set(names)
    for r in cfg.rules:
        for key, tmpl in r.annotations.items():
            assert template_problems(tmpl) == [], (r.name, key)
    assert cfg.source == str(path)
    # the packaged default (used when there is no ./config) is the same file in a checkout
    assert (packaged_config_dir() / "alerting.yaml").is_file()


def test_matcher_forms():
    cfg = parse_config(textwrap.dedent("""\
        rules:
          - name: A
            type: threshold
            metric: m
            op: ">"
            value: 1
            matchers: {agent: researcher, model: {"=~": "gpt-.*"}, tool: {"!=": search}}
          - name: B
            type: threshold
            metric: m
            op: ">"
            value: 1
            matchers: ['agent!~"res.*"', 'crew="c1"']
        """), "x.yaml", env={})
    a, b = cfg.rules
    assert [(m.label, m.op, m.value) for m in a.matchers] == [
        ("agent", "=", "researcher"), ("model", "=~", "gpt-.*"), ("tool", "!=", "search")]
    assert [(m.label, m.op, m.value) for m in b.matchers] == [("agent", "!~", "res.*"), ("crew", "=", "c1")]
    assert a.matchers[1].matches({"model": "gpt-4o"}) and not a.matchers[1].matches({"model": "claude"})
    assert b.matchers[0].matches({"agent": "writer"}) and not b.matchers[0].matches({"agent": "researcher"})


def test_env_substitution_and_defaults():
    text = textwrap.dedent("""\
        global:
          dashboard_url: "https://${HOST}/dash"
        rules:
          - name: A
            type: threshold
            metric: ${METRIC}
            op: ">"
            value: ${LIMIT:-30}
            for: ${FOR:-2m}
            severity: ${SEV:-warning}
            annotations: {summary: "${PREFIX:-[perf]} {{ value }}"}
        """)
    cfg = parse_config(text, "x.yaml", env={"HOST": "ops.example", "METRIC": "crew_task_seconds", "SEV": "critical",
                                             "FOR": ""})
    (r,) = cfg.rules
    assert cfg.global_.dashboard_url == "https://ops.example/dash"
    assert r.metric == "crew_task_seconds"
    assert r.value == 30.0           # default used when unset
    assert r.for_ == 120.0           # an empty variable also takes the default
    assert r.severity.value == "critical"  # a set variable wins over the default
    assert r.annotations["summary"] == "[perf] {{ value }}"
    cfg2 = parse_config(text, "x.yaml", env={"HOST": "h", "METRIC": "m2", "LIMIT": "45.5", "FOR": "10m"})
    assert (cfg2.rules[0].metric, cfg2.rules[0].value, cfg2.rules[0].for_) == ("m2", 45.5, 600.0)


def test_env_substitution_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("PA_TEST_LIMIT", "12")
    cfg = parse_config(RULE.replace("value: 30", "value: ${PA_TEST_LIMIT}"), "x.yaml")
    assert cfg.rules[0].value == 12.0


def test_env_value_that_is_not_valid_is_reported_at_its_line():
    msg = _one_line(_err(RULE.replace("value: 30", "value: ${LIMIT}"), env={"LIMIT": "lots"}))
    assert msg.startswith("alerting.yaml:6: rules[0].value:"), msg


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text, where", [
    ("rules:\n  - name: A\n    type: threshold\n   metric: m\n", "alerting.yaml:4:4"),   # bad indentation
    ("rules: [\n  {name: A\n", "alerting.yaml:3:1"),                                 # unclosed flow
    ("rules:\n\t- name: A\n", "alerting.yaml:2:1"),                                  # a tab
    ("rules:\n  - name: 'A\n", "alerting.yaml:"),                                    # unclosed quote
])
def test_broken_yaml_gives_file_line_column(text, where):
    msg = _one_line(_err(text))
    assert msg.startswith(where), msg
    assert "invalid YAML" in msg


def test_broken_yaml_in_a_file_names_the_path(tmp_path):
    p = tmp_path / "alerting.yaml"
    p.write_text("rules:\n  - name: A\n   type: x\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert str(ei.value).startswith(f"{p}:3:4: invalid YAML"), str(ei.value)


def test_unknown_rule_type_names_line_field_and_valid_values():
    msg = _one_line(_err(RULE.replace("type: threshold", "type: thresold")))
    assert msg.startswith("alerting.yaml:3: rules[0].type: "), msg
    assert "'thresold'" in msg and "did you mean 'threshold'" in msg
    for t in RULE_TYPES:
        assert t in msg


@pytest.mark.parametrize("field, bad, line_field, valid", [
    ("severity", "crit", "rules[0].severity", ("critical", "warning", "info")),
    ("aggregate", "p90", "rules[0].aggregate", AGGREGATES),
    ("op", "'=>'", "rules[0].op", OPERATORS),
])
def test_bad_choice_lists_the_valid_values(field, bad, line_field, valid):
    text = RULE.replace('op: ">"', f"op: {bad}") if field == "op" else _rule(f"{field}: {bad}")
    msg = _one_line(_err(text))
    line = 5 if field == "op" else 7
    assert msg.startswith(f"alerting.yaml:{line}: {line_field}: invalid value"), msg
    for v in valid:
        assert v in msg, (v, msg)


def test_unknown_field_suggests_the_close_one():
    msg = _one_line(_err(_rule("severty: critical")))
    assert msg.startswith("alerting.yaml:7: rules[0].severty: unknown field 'severty'"), msg
    assert "did you mean 'severity'" in msg
    msg = _one_line(_err("rulez: []\n"))
    assert msg.startswith("alerting.yaml:1: rulez:") and "did you mean 'rules'" in msg, msg
    msg = _one_line(_err(RULE + "global:\n  evaluation_intervall: 1m\n"))
    assert msg.startswith("alerting.yaml:8: global.evaluation_intervall:") and "'evaluation_interval'" in msg, msg


def test_unknown_field_without_a_close_match_lists_the_valid_fields():
    msg = _one_line(_err("zzzzzz: 1\n"))
    assert "rules" in msg and "global" in msg and "receivers" in msg
    # internal attributes are not offered as configuration fields
    assert "source" not in msg.split("valid fields:")[-1]
    assert "warnings" not in msg.split("valid fields:")[-1]


@pytest.mark.parametrize("drop, missing", [
    (['    op: ">"\n'], "op"),
    (["    value: 30\n"], "value"),
    (['    op: ">"\n', "    value: 30\n"], "op and value"),
])
def test_threshold_rule_needs_op_and_value(drop, missing):
    text = RULE
    for d in drop:
        text = text.replace(d, "")
    msg = _one_line(_err(text))
    assert msg.startswith("alerting.yaml:2: rules[0]: "), msg
    assert msg.endswith(f"a threshold rule needs {missing}"), msg


@pytest.mark.parametrize("field, value", [
    ("for", "5 minutes"), ("for", "-2m"), ("window", "5mins"), ("keep_firing_for", "soon"), ("cooldown", ".inf"),
])
def test_bad_duration_names_the_field(field, value):
    msg = _one_line(_err(_rule(f"{field}: {value}")))
    assert msg.startswith(f"alerting.yaml:7: rules[0].{field}: invalid duration"), msg
    assert "5m" in msg or "finite number >= 0" in msg  # shows examples, or the limits for a number


def test_bad_global_duration():
    msg = _one_line(_err("global:\n  evaluation_interval: fast\n"))
    assert msg.startswith("alerting.yaml:2: global.evaluation_interval: invalid duration 'fast'"), msg


@pytest.mark.parametrize("matchers", [
    "{agent: {'=~': 'res(['}}",
    """['agent=~"(unclosed"']""",
])
def test_bad_regex_matcher(matchers):
    msg = _one_line(_err(_rule(f"matchers: {matchers}")))
    assert msg.startswith("alerting.yaml:7: rules[0].matchers: invalid regular expression"), msg
    assert "agent" in msg


def test_unknown_matcher_operator_lists_the_valid_ones():
    msg = _one_line(_err(_rule("matchers: {agent: {'~=': x}}")))
    assert msg.startswith("alerting.yaml:7: rules[0].matchers:"), msg
    for op in ("=", "!=", "=~", "!~"):
        assert op in msg


def test_duplicate_rule_names_point_at_the_second_one():
    text = RULE + RULE.replace("rules:\n", "").replace("value: 30", "value: 40")
    msg = _one_line(_err(text))
    assert msg.startswith("alerting.yaml:7: rules[1].name: duplicate rule name 'A'"), msg
    assert "line 2" in msg


def test_duplicate_key_in_a_mapping_is_an_error_not_a_silent_override():
    msg = _one_line(_err(RULE + "    value: 40\n"))
    assert msg.startswith("alerting.yaml:7:5: duplicate key 'value'"), msg
    assert "line 6" in msg


@pytest.mark.parametrize("field, text", [
    ("value", RULE.replace("value: 30", "value: .nan")),
    ("value", RULE.replace("value: 30", "value: .inf")),
    ("recovery", _rule("recovery: .nan")),
])
def test_nan_and_inf_thresholds_are_rejected(field, text):
    msg = _one_line(_err(text))
    assert f"rules[0].{field}" in msg and "finite" in msg, msg


@pytest.mark.parametrize("text, words", [
    ("- a\n- b\n", ["alerting.yaml:1:", "mapping"]),
    ("rules: {name: A}\n", ["alerting.yaml:1: rules:", "list"]),
    ("rules:\n  - A\n", ["alerting.yaml:2: rules[0]:"]),
    (RULE.replace("metric: crew_task_seconds", "metric: 'crew task'"), ["alerting.yaml:4: rules[0].metric:"]),
    (RULE.replace("name: A", "name: High-Latency"), ["alerting.yaml:2: rules[0].name:"]),
    ("x: &a [*a]\n", ["alerting.yaml:1:", "recursive"]),
    (_rule("recovery: 40"), ["alerting.yaml:2: rules[0]:", "recovery"]),  # hysteresis on the wrong side
])
def test_other_structural_mistakes(text, words):
    msg = _one_line(_err(text))
    for w in words:
        assert w in msg, (w, msg)


def test_several_problems_are_all_listed_each_with_its_line():
    text = RULE + "  - name: B\n    type: tresholt\n    metric: m\n    op: '>'\n    value: 1\n    severity: crit\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "alerting.yaml", env={})
    probs = ei.value.problems
    assert any(p.startswith("alerting.yaml:8: rules[1].type:") for p in probs), probs
    assert any(p.startswith("alerting.yaml:12: rules[1].severity:") for p in probs), probs
    assert str(ei.value).startswith(f"{len(probs)} problems in alerting.yaml")


def test_missing_config_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == f"{p}: config file not found"


def test_config_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERF_ALERTS_CONFIG", raising=False)
    assert resolve_config_path() == packaged_config_dir() / "alerting.yaml"  # nothing local: packaged default
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "alerting.yaml").write_text("rules: []\n")
    assert resolve_config_path() == Path("config") / "alerting.yaml"          # ./config/alerting.yaml
    monkeypatch.setenv("PERF_ALERTS_CONFIG", str(tmp_path / "env.yaml"))
    assert resolve_config_path() == tmp_path / "env.yaml"                      # the environment
    assert resolve_config_path("explicit.yaml") == Path("explicit.yaml")       # --config wins
