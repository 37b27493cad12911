"""Ingestion: CSV/JSONL files and record()/record_many(), as a user relies on them.

Every bad record is reported with its file and line (or its position) and the good records
of the same batch are kept; a file that cannot be used at all is an IngestError naming it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.model import Sample, SampleError
from perf_alerts.sources.files import IngestError, ingest_file
from perf_alerts.timeutil import TimeParseError

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def _error_lines(report) -> list[int]:
    return [e.line for e in report.errors]


# --------------------------------------------------------------------------- CSV


def test_csv_label_columns_and_every_timestamp_form(tmp_path, tmp_store, stored_samples):
    # columns in any order; every column beyond timestamp,metric,value is a label
    p = _write(tmp_path, "good.csv", (
        "metric,timestamp,value,agent,tool\n"
        "crew_task_seconds,2026-01-01T00:00:00Z,1.5,researcher,search\n"       # Z
        "crew_task_seconds,2026-01-01T02:00:00+01:00,2.5,researcher,search\n"  # offset: 01:00Z
        "crew_task_seconds,2026-01-01T02:00:00,3.5,researcher,search\n"        # naive = UTC
        "crew_task_seconds,1767236400,4.5,researcher,search\n"                 # Unix seconds (03:00Z)
        "crew_task_seconds,1767240000.5,5.5,researcher,search\n"               # fractional Unix seconds
        "crew_task_seconds,2026-01-01 05:00:00Z,6.5,researcher,search\n"       # space separator
        "crew_tool_call_seconds,2026-01-01T00:00:00Z,0.25,writer,\n"           # empty cell: no label
        'crew_tool_call_seconds,2026-01-01T00:00:00Z,0.5,writer,"web,scrape"\n'  # quoted comma
    ))
    rep = ingest_file(tmp_store, p)
    assert (rep.accepted, rep.rejected, rep.errors) == (8, 0, [])
    assert rep.series == 3
    r_s = {"agent": "researcher", "tool": "search"}
    assert stored_samples(tmp_store) == [
        ("crew_task_seconds", r_s, T0, 1.5),
        ("crew_task_seconds", r_s, T0 + 3600, 2.5),
        ("crew_task_seconds", r_s, T0 + 7200, 3.5),
        ("crew_task_seconds", r_s, T0 + 10800, 4.5),
        ("crew_task_seconds", r_s, T0 + 14400.5, 5.5),
        ("crew_task_seconds", r_s, T0 + 18000, 6.5),
        ("crew_tool_call_seconds", {"agent": "writer"}, T0, 0.25),
        ("crew_tool_call_seconds", {"agent": "writer", "tool": "web,scrape"}, T0, 0.5),
    ]


def test_csv_bad_lines_are_reported_by_line_and_good_rows_kept(tmp_path, tmp_store, stored_samples):
    p = _write(tmp_path, "mixed.csv", (
        "timestamp,metric,value,agent\n"                         # 1
        "2026-01-01T00:00:00Z,crew_task_seconds,10,a\n"          # 2 good
        "2026-01-01T00:01:00Z,crew_task_seconds,NaN,a\n"         # 3 NaN
        "2026-01-01T00:02:00Z,crew_task_seconds,inf,a\n"         # 4 inf
        "2026-01-01T00:03:00Z,crew_task_seconds,-Infinity,a\n"   # 5 -inf
        "2026-01-01T00:04:00Z,9crew,1,a\n"                       # 6 bad metric name
        "2026-01-01T00:05:00Z,crew task,1,a\n"                   # 7 bad metric name
        "yesterday,crew_task_seconds,1,a\n"                      # 8 bad timestamp
        "2026-01-01T00:07:00Z,crew_task_seconds,1\n"             # 9 too few columns
        "2026-01-01T00:08:00Z,crew_task_seconds,1,a,extra\n"     # 10 too many columns
        "2026-01-01T00:09:00Z,crew_task_seconds,fast,a\n"        # 11 not a number
        "2026-01-01T00:10:00Z,crew_task_seconds,,a\n"            # 12 empty value
        "\n"                                                     # 13 blank: skipped, not an error
        "1767225600000,crew_task_seconds,1,a\n"                  # 14 milliseconds, not seconds
        "2026-01-01T00:14:00Z,crew_task_seconds,20,b\n"          # 15 good
        "2026-01-01T00:15:00Z,crew_task_seconds,1e999,b\n"       # 16 overflows to inf
        "2026-13-01T00:00:00Z,crew_task_seconds,1,b\n"           # 17 month 13
    ))
    rep = ingest_file(tmp_store, p)
    assert _error_lines(rep) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 17]
    assert (rep.accepted, rep.rejected) == (2, 13)
    by_line = {e.line: str(e) for e in rep.errors}
    for line, words in {
        3: ("value", "finite"), 4: ("value", "finite"), 5: ("value", "finite"),
        6: ("metric", "9crew"), 7: ("metric", "crew task"), 8: ("timestamp", "yesterday"),
        9: ("expected 4 columns", "got 3"), 10: ("expected 4 columns", "got 5"),
        11: ("value", "fast"), 12: ("value",), 14: ("timestamp", "1767225600000"),
        16: ("value", "finite"), 17: ("timestamp", "2026-13-01"),
    }.items():
        assert by_line[line].startswith(f"{p}:{line}: "), by_line[line]
        for w in words:
            assert w in by_line[line], (line, by_line[line])
        assert "\n" not in by_line[line]
    assert "millisecond" in by_line[14]
    assert stored_samples(tmp_store) == [
        ("crew_task_seconds", {"agent": "a"}, T0, 10.0),
        ("crew_task_seconds", {"agent": "b"}, T0 + 840, 20.0),
    ]
    d = rep.to_dict()
    assert d["accepted"] == 2 and d["rejected"] == 13 and d["errors_truncated"] is False
    assert d["errors"][0] == f"{p}:3: value: must be finite, got 'NaN'"


def test_csv_line_that_is_not_utf8_costs_only_that_line(tmp_path, tmp_store, stored_samples):
    p = _write(tmp_path, "enc.csv", (
        b"\xef\xbb\xbftimestamp,metric,value\r\n"  # UTF-8 BOM (Excel) and CRLF line endings
        b"2026-01-01T00:00:00Z,crew_task_seconds,1\r\n"
        b"2026-01-01T00:01:00Z,crew_task_seconds,\xff\xfe\r\n"
        b"2026-01-01T00:02:00Z,crew_task_seconds,3\r\n"
    ))
    rep = ingest_file(tmp_store, p)
    assert _error_lines(rep) == [3]
    assert "UTF-8" in str(rep.errors[0])
    assert [(ts, v) for _, _, ts, v in stored_samples(tmp_store)] == [(T0, 1.0), (T0 + 120, 3.0)]


def test_many_bad_lines_are_counted_but_the_report_is_capped(tmp_path, tmp_store):
    rows = "".join(f"{T0 + i},crew_task_seconds,nan\n" for i in range(120))
    p = _write(tmp_path, "nan.csv", "timestamp,metric,value\n" + rows + f"{T0},crew_task_seconds,1\n")
    rep = ingest_file(tmp_store, p)
    assert rep.rejected == 120 and rep.accepted == 1
    assert 0 < len(rep.errors) <= 50
    assert rep.to_dict()["errors_truncated"] is True
    assert rep.errors[0].line == 2


@pytest.mark.parametrize("name, content, words", [
    ("nohdr.csv", "a,b,c\n1,2,3\n", [":1:", "timestamp", "metric", "value"]),
    ("partial.csv", "timestamp,value\n1,2\n", [":1:", "metric"]),
    ("empty.csv", "", [":1:", "empty"]),
    ("badlabel.csv", "timestamp,metric,value,agent name\n", [":1:", "agent name"]),
    ("reserved.csv", "timestamp,metric,value,__name__\n", [":1:", "__name__"]),
    ("dupcol.csv", "timestamp,metric,value,agent,agent\n", [":1:", "duplicate", "agent"]),
    ("dupts.csv", "timestamp,metric,value,timestamp\n", [":1:", "duplicate", "timestamp"]),
])
def test_csv_unusable_header_is_an_ingest_error_naming_the_file(tmp_path, tmp_store, name, content, words):
    p = _write(tmp_path, name, content)
    with pytest.raises(IngestError) as ei:
        ingest_file(tmp_store, p)
    msg = str(ei.value)
    assert msg.startswith(str(p)), msg
    for w in words:
        assert w in msg, msg
    assert "\n" not in msg
    assert tmp_store.sample_count() == 0


@pytest.mark.parametrize("name", ["missing.csv", "missing.jsonl"])
def test_missing_file_is_an_ingest_error_with_the_path(tmp_path, tmp_store, name):
    p = tmp_path / "nowhere" / name
    with pytest.raises(IngestError) as ei:
        ingest_file(tmp_store, p)
    assert str(p) in str(ei.value) and "not found" in str(ei.value)


def test_unknown_extension_and_directory_are_ingest_errors(tmp_path, tmp_store):
    p = _write(tmp_path, "data.txt", "timestamp,metric,value\n")
    with pytest.raises(IngestError, match="unknown format"):
        ingest_file(tmp_store, p)
    # an explicit format overrides the extension
    p2 = _write(tmp_path, "data.log", f"timestamp,metric,value\n{T0},m,1\n")
    assert ingest_file(tmp_store, p2, fmt="csv").accepted == 1
    d = tmp_path / "dir.csv"
    d.mkdir()
    with pytest.raises(IngestError) as ei:
        ingest_file(tmp_store, d)
    assert str(d) in str(ei.value)


def test_same_series_and_timestamp_keeps_the_latest_value(tmp_path, tmp_store, stored_samples):
    p = _write(tmp_path, "dup.csv", (
        "timestamp,metric,value,agent\n"
        "2026-01-01T00:00:00Z,crew_task_seconds,1,a\n"
        "1767225600,crew_task_seconds,2,a\n"            # the same instant written as Unix seconds
        "2026-01-01T01:00:00+01:00,crew_task_seconds,3,a\n"  # and with an offset
        "2026-01-01T00:00:00Z,crew_task_seconds,9,b\n"  # another series at the same time is separate
    ))
    ingest_file(tmp_store, p)
    assert stored_samples(tmp_store) == [
        ("crew_task_seconds", {"agent": "a"}, T0, 3.0),
        ("crew_task_seconds", {"agent": "b"}, T0, 9.0),
    ]
    # a later file overrides an earlier one for the same instant
    p2 = _write(tmp_path, "later.jsonl",
                json.dumps({"timestamp": T0, "metric": "crew_task_seconds", "value": 4, "labels": {"agent": "a"}}) + "\n")
    ingest_file(tmp_store, p2)
    assert stored_samples(tmp_store)[0] == ("crew_task_seconds", {"agent": "a"}, T0, 4.0)
    assert tmp_store.sample_count() == 2


# --------------------------------------------------------------------------- JSONL


def _jl(obj: object) -> str:
    return json.dumps(obj) + "\n"


def test_jsonl_good_records_labels_and_timestamps(tmp_path, tmp_store, stored_samples):
    p = _write(tmp_path, "good.jsonl", "".join([
        _jl({"timestamp": "2026-01-01T00:00:00Z", "metric": "crew_llm_call_seconds", "value": 1.25,
             "labels": {"agent": "researcher", "model": "gpt-4o"}}),
        _jl({"timestamp": T0 + 60, "metric": "crew_llm_call_seconds", "value": 2,
             "labels": {"agent": "researcher", "model": "gpt-4o"}}),
        _jl({"timestamp": str(int(T0 + 120)), "metric": "crew_llm_call_seconds", "value": "3.5",
             "labels": {"agent": "researcher", "model": "gpt-4o"}}),
        _jl({"timestamp": "2026-01-01T00:03:00", "metric": "crew_llm_call_seconds", "value": 4,
             "labels": {"model": "gpt-4o", "agent": "researcher"}}),  # label order is irrelevant
        _jl({"timestamp": "2026-01-01T03:04:00+03:00", "metric": "host_cpu_percent", "value": 50}),  # no labels
        _jl({"timestamp": T0, "metric": "host_cpu_percent", "value": 40, "labels": None}),
    ]))
    rep = ingest_file(tmp_store, p)
    assert (rep.accepted, rep.rejected, rep.series) == (6, 0, 2)
    lab = {"agent": "researcher", "model": "gpt-4o"}
    assert stored_samples(tmp_store) == [
        ("crew_llm_call_seconds", lab, T0, 1.25),
        ("crew_llm_call_seconds", lab, T0 + 60, 2.0),
        ("crew_llm_call_seconds", lab, T0 + 120, 3.5),
        ("crew_llm_call_seconds", lab, T0 + 180, 4.0),
        ("host_cpu_percent", {}, T0, 40.0),
        ("host_cpu_percent", {}, T0 + 240, 50.0),
    ]


def test_jsonl_bad_records_are_reported_by_line_and_good_ones_kept(tmp_path, tmp_store, stored_samples):
    good = {"timestamp": T0, "metric": "crew_task_seconds", "value": 1, "labels": {"agent": "a"}}
    lines = [
        _jl(good),                                                                        # 1 good
        '{"timestamp": 1767225600, "metric": "crew_task_seconds", "value": NaN}\n',       # 2 NaN literal
        '{"timestamp": 1767225600, "metric": "crew_task_seconds", "value": Infinity}\n',  # 3 inf literal
        '{"timestamp": 1767225600, "metric": \n',                                         # 4 invalid JSON
        "[1, 2, 3]\n",                                                                    # 5 not an object
        _jl({"timestamp": T0, "metric": "m"}),                                            # 6 no value
        _jl({"value": 1}),                                                                # 7 no timestamp, metric
        _jl({**good, "value": True}),                                                     # 8 bool is not a number
        _jl({**good, "value": "lots"}),                                                   # 9 not a number
        _jl({**good, "timestamp": T0 + 60, "value": "2.5"}),                              # 10 good (numeric string)
        _jl({**good, "labels": {"1bad": "x"}}),                                           # 11 bad label name
        _jl({**good, "labels": ["agent", "a"]}),                                          # 12 labels not a mapping
        _jl({**good, "labels": {"__name__": "x"}}),                                       # 13 reserved label name
        _jl({**good, "metric": ["crew_task_seconds"]}),                                   # 14 metric not a string
        _jl({**good, "metric": {"name": "x"}}),                                           # 15 metric not a string
        _jl({**good, "timestamp": None}),                                                 # 16 null timestamp
        _jl({**good, "timestamp": True}),                                                 # 17 bool timestamp
        _jl({**good, "timestamp": 1767225600000}),                                        # 18 milliseconds
        "   \n",                                                                          # 19 blank: skipped
        '{"timestamp": 1767225600, "metric": "crew_task_seconds", "value": 1, "labels": {"agent": "\xff"}}\n',  # 20
        _jl({**good, "timestamp": "2026-01-01T00:02:00Z", "value": 3}),                   # 21 good
        '{"timestamp": 1767225600, "metric": "crew_task_seconds", "value": 1e999}\n',      # 22 overflows to inf
        _jl({**good, "metric": "bad metric"}),                                            # 23 bad name
    ]
    raw = "".join(lines).encode("utf-8").replace("\xff".encode("utf-8"), b"\xff")  # line 20: not UTF-8
    p = _write(tmp_path, "mixed.jsonl", raw)
    rep = ingest_file(tmp_store, p)
    assert _error_lines(rep) == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23]
    assert (rep.accepted, rep.rejected) == (3, 19)
    by_line = {e.line: str(e) for e in rep.errors}
    for line, word in {2: "finite", 3: "finite", 4: "invalid JSON", 5: "object", 6: "value", 7: "timestamp",
                       8: "value", 9: "lots", 11: "1bad", 12: "labels", 13: "__name__", 14: "metric", 15: "metric",
                       16: "timestamp", 17: "timestamp", 18: "timestamp", 20: "UTF-8", 22: "finite",
                       23: "bad metric"}.items():
        assert by_line[line].startswith(f"{p}:{line}: "), by_line[line]
        assert word in by_line[line], (line, by_line[line])
    assert "metric" in by_line[7]
    assert stored_samples(tmp_store) == [
        ("crew_task_seconds", {"agent": "a"}, T0, 1.0),
        ("crew_task_seconds", {"agent": "a"}, T0 + 60, 2.5),
        ("crew_task_seconds", {"agent": "a"}, T0 + 120, 3.0),
    ]


def test_jsonl_with_bom_reads_the_first_line(tmp_path, tmp_store):
    p = _write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + _jl({"timestamp": T0, "metric": "m", "value": 1}).encode())
    rep = ingest_file(tmp_store, p)
    assert (rep.accepted, rep.rejected) == (1, 0)


def test_nested_label_values_are_rejected(tmp_path, tmp_store):
    p = _write(tmp_path, "nested.jsonl", _jl({"timestamp": T0, "metric": "m", "value": 1, "labels": {"a": {"b": 1}}}))
    rep = ingest_file(tmp_store, p)
    assert rep.rejected == 1 and tmp_store.sample_count() == 0


# --------------------------------------------------------------------------- record / record_many


@pytest.fixture
def system(tmp_path, issue_rule_yaml):
    return PerfAlerts(config=parse_config(issue_rule_yaml, "rules.yaml"), db=tmp_path / "rec.db")


def test_record_many_keeps_good_records_and_reports_bad_by_position(system, stored_samples):
    rep = system.record_many([
        {"metric": "crew_task_seconds", "value": 1.0, "timestamp": "2026-01-01T00:00:00Z", "labels": {"agent": "a"}},  # 0
        {"metric": "crew_task_seconds", "value": float("nan"), "timestamp": T0},   # 1 NaN
        {"metric": "crew_task_seconds", "value": float("-inf"), "timestamp": T0},  # 2 -inf
        {"metric": "crew-task", "value": 1, "timestamp": T0},                      # 3 bad name
        {"metric": "crew_task_seconds", "value": 1, "timestamp": "soon"},          # 4 bad timestamp
        {"metric": "crew_task_seconds", "value": 1, "ts": T0, "labels": {"9x": "y"}},  # 5 bad label name
        "crew_task_seconds 1",                                                     # 6 not a record
        Sample("crew_task_seconds", {"agent": "b"}, T0 + 60, 2.0),                 # 7 good Sample
        {"metric": "crew_task_seconds", "value": "abc", "timestamp": T0},          # 8 not a number
        {"value": 1, "timestamp": T0},                                             # 9 no metric
        Sample("crew_task_seconds", {}, T0, float("inf")),                         # 10 Sample objects are checked too
        {"metric": "crew_task_seconds", "value": 1, "timestamp": float("nan")},    # 11 NaN timestamp
    ])
    assert rep.accepted == 2 and rep.rejected == 10
    positions = [int(e.split(":")[0].split()[1]) for e in rep.errors]
    assert positions == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert all(e.startswith(f"record {i}: ") for i, e in zip(positions, rep.errors))
    joined = "\n".join(rep.errors)
    for word in ("finite", "crew-task", "soon", "9x", "str", "abc"):
        assert word in joined, word
    assert stored_samples(system.store) == [
        ("crew_task_seconds", {"agent": "a"}, T0, 1.0),
        ("crew_task_seconds", {"agent": "b"}, T0 + 60, 2.0),
    ]
    assert rep.to_dict() == {"accepted": 2, "rejected": 10, "errors": rep.errors}


@pytest.mark.parametrize("metric, value, ts, labels, word", [
    ("crew_task_seconds", float("nan"), T0, None, "finite"),
    ("crew_task_seconds", math.inf, T0, None, "finite"),
    ("crew task", 1.0, T0, None, "metric name"),
    ("crew_task_seconds", 1.0, "2026-02-30T00:00:00Z", None, "timestamp"),
    ("crew_task_seconds", 1.0, T0, {"bad-label": "x"}, "label name"),
])
def test_record_rejects_a_bad_sample_and_stores_nothing(system, metric, value, ts, labels, word):
    with pytest.raises((SampleError, TimeParseError)) as ei:
        system.record(metric, value, labels, ts=ts)
    assert word in str(ei.value)
    assert system.store.sample_count() == 0


def test_samples_persist_across_a_new_process(tmp_path, issue_rule_yaml, stored_samples):
    db = tmp_path / "shared.db"
    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(issue_rule_yaml)
    p = _write(tmp_path, "one.csv", f"timestamp,metric,value,agent\n{T0},crew_task_seconds,12.5,researcher\n")
    parent = PerfAlerts(config=cfg, db=db)
    assert parent.ingest(p).accepted == 1
    parent.store.close()
    child = (
        "import json, perf_alerts\n"
        "from perf_alerts.store import Store\n"
        "before = Store().sample_count()\n"
        f"perf_alerts.record('crew_task_seconds', 7.0, {{'agent': 'writer'}}, ts={T0 + 60})\n"
        "rep = perf_alerts.record_many([{'metric': 'crew_task_seconds', 'value': float('nan'), 'timestamp': 0},\n"
        f"                              {{'metric': 'crew_task_seconds', 'value': 8, 'timestamp': {T0 + 120}}}])\n"
        "print(json.dumps({'before': before, 'report': rep.to_dict()}))\n"
    )
    env = {**os.environ, "PERF_ALERTS_DB": str(db), "PERF_ALERTS_CONFIG": str(cfg)}
    r = subprocess.run([sys.executable, "-c", child], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["before"] == 1  # the child sees what the parent stored
    assert out["report"]["accepted"] == 1 and out["report"]["rejected"] == 1
    assert out["report"]["errors"][0].startswith("record 0: ")
    from perf_alerts.store import Store

    st = Store(db)  # and a fresh handle in the parent sees what the child stored
    assert stored_samples(st) == [
        ("crew_task_seconds", {}, T0 + 120, 8.0),
        ("crew_task_seconds", {"agent": "researcher"}, T0, 12.5),
        ("crew_task_seconds", {"agent": "writer"}, T0 + 60, 7.0),
    ]
    st.close()


def test_record_rejects_a_millisecond_timestamp(system):
    with pytest.raises((SampleError, TimeParseError)):
        system.record("crew_task_seconds", 1.0, ts=1767225600000)
    assert system.store.sample_count() == 0
