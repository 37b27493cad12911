"""manage.summary.executive_summary returns an ExecutiveSummary whose to_dict() is, key for key and in
order, the JSON the dict-returning version produced: tests/data/executive_summary_golden.json, captured
from that version on the stores of tests/test_summary.py (2 h, one warning incident, no SLO) and
tests/test_slo_summary.py (a day with a 30-minute outage, five SLO rows)."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from perf_alerts.manage.summary import ExecutiveSummary, executive_summary

sys.path.insert(0, str(Path(__file__).parent))
from test_slo_summary import DAY, T, _scenario  # noqa: E402
from test_summary import _system  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "data" / "executive_summary_golden.json"


def _current(tmp_path: Path) -> dict[str, ExecutiveSummary]:
    s, end = _system()
    return {"summary_2h": executive_summary(s, 2 * 3600, at=end),
            "slo_outage_day": executive_summary(_scenario(tmp_path, 30), DAY, at=T)}


def test_to_dict_is_the_json_of_before(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    current = _current(tmp_path)
    assert list(current) == list(golden)
    for name, summ in current.items():
        assert isinstance(summ, ExecutiveSummary)
        assert json.dumps(summ.to_dict(), indent=1) == json.dumps(golden[name], indent=1), name
        # the top-level fields are the dict's top-level keys, in order
        assert [f.name for f in dataclasses.fields(summ) if f.name != "title"] == list(golden[name])


def test_frozen_title_and_copies(tmp_path: Path) -> None:
    s, end = _system()
    summ = executive_summary(s, 2 * 3600, at=end)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summ.headline = []  # type: ignore[misc]
    assert "title" not in summ.to_dict()
    titled = dataclasses.replace(summ, title="T")
    assert list(titled.to_dict())[-1] == "title" and titled.to_dict()["title"] == "T"
    d = summ.to_dict()
    d["headline"].append("changed")
    d["period"]["length"] = "x"
    assert summ.to_dict() == executive_summary(s, 2 * 3600, at=end).to_dict()  # to_dict() hands out copies
