"""The README's configuration examples are valid and its rule unit test passes, as written."""

from __future__ import annotations

import re
from pathlib import Path

from perf_alerts.config import parse_config
from perf_alerts.rules.testing import run_rule_tests

README = Path(__file__).resolve().parents[1] / "README.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_config_examples_are_valid() -> None:
    blocks = [b for b in yaml_blocks() if not b.lstrip().startswith("rule_files")]
    assert len(blocks) >= 3  # a rule, the notification config, the policies
    for b in blocks:
        cfg = parse_config(b, "README.md", env={})
        assert cfg.rules or cfg.receivers or cfg.policies


def test_rule_unit_test_example_passes(tmp_path: Path) -> None:
    rule = next(b for b in yaml_blocks() if "name: HighLatency" in b)
    test = next(b for b in yaml_blocks() if b.lstrip().startswith("rule_files"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "alerting.yaml").write_text(rule)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "rules.yaml").write_text(test)
    outcomes = run_rule_tests(tmp_path / "tests" / "rules.yaml")
    assert outcomes and all(o.passed for o in outcomes), [o.failures for o in outcomes]
