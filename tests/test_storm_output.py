"""`perf-alerts evaluate` in an alert storm (issue 14): a cycle with more than 20 transitions prints
the counts per rule and state, the worst 20 (critical first, then warning, info; firing before
pending, resolved) and how many more there are; `--all` prints every one, `--json` all of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from perf_alerts.cli import output as out
from perf_alerts.model import canonical_labels
from perf_alerts.store import Store

T0 = 1_800_000_000
RULES = """
rules:
  - {name: CritHigh, type: threshold, metric: lat, aggregate: max, window: 5m, op: ">", value: 90, for: 5m, severity: critical}
  - {name: WarnHigh, type: threshold, metric: lat, aggregate: max, window: 5m, op: ">", value: 50, severity: warning}
  - {name: InfoHigh, type: threshold, metric: lat, aggregate: max, window: 5m, op: ">", value: 10, severity: info}
"""
TRANSITION_RE = re.compile(r"^(firing|pending|resolved|cancelled) +(critical|warning|info) +(\w+) \{")


@pytest.fixture
def storm(tmp_path: Path) -> tuple[Path, Path]:
    """12 series over three rules: 5 critical pending (for: 5m), 12 warning and 12 info each pending
    then firing in the same cycle: 53 transitions."""
    db, cfg = tmp_path / "storm.db", tmp_path / "rules.yaml"
    cfg.write_text(RULES)
    store = Store(db)
    ids = store.series_ids([("lat", canonical_labels({"agent": f"a{i}"})) for i in range(12)])
    store.insert_rows([(sid, float(T0 - 60), 95.0 if k < 5 else 60.0) for k, sid in enumerate(ids.values())])
    store.close()
    return db, cfg


def _evaluate(db: Path, cfg: Path, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_ALERTS_", "DISCORD_"))}
    r = subprocess.run([sys.executable, "-m", "perf_alerts", "--db", str(db), "--config", str(cfg),
                        "evaluate", "--at", str(T0), "--no-notify", *extra],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def _copy(db: Path, name: str) -> Path:
    dst = db.with_name(name)
    dst.write_bytes(db.read_bytes())
    return dst


def test_a_storm_prints_counts_the_worst_20_and_how_many_more(storm: tuple[Path, Path]) -> None:
    db, cfg = storm
    text = _evaluate(_copy(db, "a.db"), cfg)
    lines = text.splitlines()
    assert "53 transitions per rule and state:" in lines
    # one row per rule, worst severity first: rule, severity, then firing / pending counts
    rows = [ln.split() for ln in lines if re.match(r"^  (CritHigh|WarnHigh|InfoHigh) ", ln)]
    header = next(ln.split() for ln in lines if ln.startswith("  rule "))
    assert header == ["rule", "severity", "firing", "pending"]
    assert rows == [["CritHigh", "critical", "0", "5"], ["WarnHigh", "warning", "12", "12"],
                    ["InfoHigh", "info", "12", "12"]]
    shown = [TRANSITION_RE.match(ln) for ln in lines]
    shown_t = [(m.group(1), m.group(2), m.group(3)) for m in shown if m]
    assert len(shown_t) == 20
    # critical first (even pending), then warning firing before warning pending; no info
    assert shown_t == [("pending", "critical", "CritHigh")] * 5 + [("firing", "warning", "WarnHigh")] * 12 \
        + [("pending", "warning", "WarnHigh")] * 3
    assert "… and 33 more transitions (--all or --json shows every one)" in lines
    assert lines[-1].startswith("evaluated 3 rules over 12 series") and lines[-1].endswith("53 transitions")


def test_all_prints_every_transition_and_json_is_unchanged(storm: tuple[Path, Path]) -> None:
    db, cfg = storm
    lines = _evaluate(_copy(db, "b.db"), cfg, "--all").splitlines()
    shown = [m for m in (TRANSITION_RE.match(ln) for ln in lines) if m]
    assert len(shown) == 53
    assert not any("more transitions" in ln or "per rule and state" in ln for ln in lines)
    doc = json.loads(_evaluate(_copy(db, "c.db"), cfg, "--json"))
    assert len(doc["transitions"]) == 53


def test_a_quiet_cycle_prints_its_transitions_as_before(tmp_path: Path) -> None:
    db, cfg = tmp_path / "quiet.db", tmp_path / "rules.yaml"
    cfg.write_text(RULES)
    store = Store(db)
    ids = store.series_ids([("lat", canonical_labels({"agent": "a0"}))])
    store.insert_rows([(sid, float(T0 - 60), 60.0) for sid in ids.values()])
    store.close()
    lines = _evaluate(db, cfg).splitlines()
    shown = [(m.group(1), m.group(2), m.group(3)) for m in (TRANSITION_RE.match(ln) for ln in lines) if m]
    assert sorted(shown) == sorted([("pending", "warning", "WarnHigh"), ("firing", "warning", "WarnHigh"),
                                    ("pending", "info", "InfoHigh"), ("firing", "info", "InfoHigh")])
    assert not any("more transition" in ln or "per rule and state" in ln for ln in lines)


def test_lines_escapes_like_line(capsys: pytest.CaptureFixture[str]) -> None:
    out.lines(["a\x1b[31mred\nforged", "tab\there"])
    out.line("a\x1b[31mred\nforged")
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["a\\x1b[31mred\\nforged", "tab\\there", "a\\x1b[31mred\\nforged"]
