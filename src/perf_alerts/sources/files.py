"""CSV and JSONL ingestion: validate every record, keep the good ones, report the bad by line.

CSV: a header with `timestamp,metric,value` (any order); every further column is a label.
JSONL: one `{"timestamp", "metric", "value", "labels"}` object per line.
Timestamps are ISO 8601 (naive = UTC) or Unix seconds.

A record is one physical line in both formats: a bad line (a stray quote, JSON nested
10,000 deep, a number beyond the float range) is reported with its line number and the
lines after it are read as usual. The size limits of `perf_alerts.model` apply.

The hot loop avoids per-row allocations it can cache (metric-name checks, series ids)
and writes in batches, so a file streams in at a few hundred thousand rows per second.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

from perf_alerts.errors import InputError
from perf_alerts.model import (duration_problem, LABEL_NAME_RE, MAX_LABEL_NAME, MAX_LABEL_VALUE, MAX_LABELS, MAX_METRIC_NAME,
                               METRIC_NAME_RE, SampleError, canonical_labels, validate_labels, validate_value)
from perf_alerts.store import Store
from perf_alerts.timeutil import TimeParseError, parse_timestamp, short_repr

BATCH = 50_000
MAX_REPORTED_ERRORS = 50


@dataclass
class RecordError:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class IngestReport:
    source: str
    accepted: int = 0
    rejected: int = 0
    errors: list[RecordError] = field(default_factory=list)
    series: int = 0
    replaced: int = 0  # of `accepted`: samples that replaced a stored one (same series and time)

    def add_error(self, line: int, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RecordError(self.source, line, message))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "series": self.series,
            "replaced": self.replaced,
            "errors": [str(e) for e in self.errors],
            "errors_truncated": self.rejected > len(self.errors),
        }


class IngestError(InputError):
    """The whole file is unusable (missing, unreadable, no header): nothing was read."""


def _csv_fields(line: str) -> list[str]:
    """The fields of one physical CSV line (its line ending removed); [] for an empty line.

    A quoted field cannot continue on the next line: an unclosed quote is an error for this
    line only (csv.Error), so a stray `"` on a garbage line cannot swallow the good lines after it.
    Lines without quotes (nearly all) are split directly, which is also the fast path.
    """
    body = line.rstrip("\r\n")
    if '"' in body or "\r" in body or "\x00" in body:
        return next(csv.reader([body], strict=True), [])
    return body.split(",") if body else []


def _metric_problem(metric: object) -> str | None:
    if not isinstance(metric, str) or not METRIC_NAME_RE.match(metric):
        return f"metric: invalid metric name {short_repr(metric)}"
    if len(metric) > MAX_METRIC_NAME:
        return f"metric: name of {len(metric):,} characters is too long (limit {MAX_METRIC_NAME})"
    return None


def _number(raw: object) -> tuple[float | None, str | None]:
    """A sample value from a file: (value, None) or (None, the error)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None, f"value: not a number: {short_repr(raw)}"
    try:
        return validate_value(raw), None  # the same rules and words as every other way in
    except SampleError as e:
        return None, "value: " + str(e).removeprefix("value ")


class _Writer:
    """Resolves series ids with a cache and flushes rows in batches."""

    def __init__(self, store: Store, report: IngestReport) -> None:
        self.store = store
        self.report = report
        self.rows: list[tuple[int, float, float]] = []
        self.ids: dict[tuple[str, str], int] = {}
        self.pending: list[tuple[tuple[str, str], float, float]] = []

    def add(self, key: tuple[str, str], ts: float, value: float) -> None:
        sid = self.ids.get(key)
        if sid is None:
            self.pending.append((key, ts, value))
        else:
            self.rows.append((sid, ts, value))
        if len(self.rows) + len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            new = self.store.series_ids({k for k, _, _ in self.pending})
            self.ids.update(new)
            self.rows.extend((self.ids[k], t, v) for k, t, v in self.pending)
            self.pending.clear()
        if self.rows:
            fresh, replaced = self.store.insert_rows_counted(self.rows)
            self.report.accepted += fresh + replaced
            self.report.replaced += replaced
            self.rows = []
        self.report.series = len(self.ids)


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise IngestError(f"{path}: file not found") from None
    except OSError as e:
        raise IngestError(f"{path}: cannot open: {e.strerror}") from None


def ingest_csv(store: Store, path: Path, progress: Callable[[int], None] | None = None) -> IngestReport:
    src = str(path)
    report = IngestReport(src)
    fh = _open(path)
    with fh:
        first = fh.readline()
        if first.startswith(codecs.BOM_UTF8):
            first = first[len(codecs.BOM_UTF8):]
        try:
            header = _csv_fields(first.decode("utf-8"))
        except (csv.Error, UnicodeDecodeError) as e:
            raise IngestError(f"{src}:1: unreadable header: {e}") from None
        if not header:
            raise IngestError(f"{src}:1: empty file (expected a header with timestamp,metric,value)")
        cols = [h.strip() for h in header]
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise IngestError(f"{src}:1: duplicate column {', '.join(map(short_repr, dup[:5]))} in the header")
        missing = [c for c in ("timestamp", "metric", "value") if c not in cols]
        if missing:
            shown = ",".join(cols) if len(",".join(cols)) <= 200 else ",".join(cols)[:199] + "…"
            raise IngestError(
                f"{src}:1: header lacks {', '.join(missing)} (expected timestamp,metric,value plus label columns; got {shown})"
            )
        i_ts, i_metric, i_value = cols.index("timestamp"), cols.index("metric"), cols.index("value")
        label_cols = [(i, c) for i, c in enumerate(cols) if c not in ("timestamp", "metric", "value")]
        for _, c in label_cols:
            if not LABEL_NAME_RE.match(c) or c.startswith("__"):
                raise IngestError(f"{src}:1: column {short_repr(c)} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
            if len(c) > MAX_LABEL_NAME:
                raise IngestError(f"{src}:1: column name of {len(c):,} characters is too long for a label "
                                  f"(limit {MAX_LABEL_NAME})")
        if len(label_cols) > MAX_LABELS:
            raise IngestError(f"{src}:1: {len(label_cols)} label columns is too many (limit {MAX_LABELS} labels per sample)")
        ncols = len(cols)
        writer = _Writer(store, report)
        good_metrics: set[str] = set()
        key_cache: dict[tuple[str, ...], tuple[str, str]] = {}
        lineno = 1
        for raw in fh:
            lineno += 1
            try:
                row = _csv_fields(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                report.add_error(lineno, f"not UTF-8 text: {e.reason} at byte {e.start}")
                continue
            except csv.Error as e:
                report.add_error(lineno, f"unreadable line: {e} (a record is one line; quotes must close on it)")
                continue
            if not row:
                continue
            if len(row) != ncols:
                report.add_error(lineno, f"expected {ncols} columns, got {len(row)}")
                continue
            metric = row[i_metric]
            if metric not in good_metrics:
                problem = _metric_problem(metric)
                if problem:
                    report.add_error(lineno, problem)
                    continue
                good_metrics.add(metric)
            value, problem = _number(row[i_value])
            if value is None or (problem := duration_problem(metric, value)):
                report.add_error(lineno, problem or "value: not a number")
                continue
            try:
                ts = parse_timestamp(row[i_ts])
            except TimeParseError as e:
                report.add_error(lineno, f"timestamp: {e}")
                continue
            if label_cols:
                lk = (metric, *[row[i] for i, _ in label_cols])
                key = key_cache.get(lk)
                if key is None:
                    long = next((c for i, c in label_cols if len(row[i]) > MAX_LABEL_VALUE), None)
                    if long is not None:
                        report.add_error(lineno, f"labels: label {long!r}: value is too long (limit {MAX_LABEL_VALUE:,} characters)")
                        continue
                    key = (metric, canonical_labels({c: row[i] for i, c in label_cols if row[i] != ""}))
                    key_cache[lk] = key
            else:
                key = key_cache.get((metric,)) or key_cache.setdefault((metric,), (metric, "{}"))
            writer.add(key, ts, value)
            if progress is not None and lineno % BATCH == 0:
                progress(lineno)
        writer.flush()
    return report


def ingest_jsonl(store: Store, path: Path, progress: Callable[[int], None] | None = None) -> IngestReport:
    src = str(path)
    report = IngestReport(src)
    fh = _open(path)
    writer = _Writer(store, report)
    good_metrics: set[str] = set()
    with fh:
        lineno = 0
        for raw in fh:
            lineno += 1
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                report.add_error(lineno, f"not UTF-8 text: {e.reason} at byte {e.start}")
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                report.add_error(lineno, f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            except RecursionError:
                report.add_error(lineno, "invalid JSON: nested too deeply")
                continue
            except ValueError as e:  # an integer of more than 4,300 digits
                report.add_error(lineno, f"invalid JSON: {str(e).split(';')[0][:120]}")
                continue
            if not isinstance(obj, dict):
                report.add_error(lineno, "expected a JSON object with timestamp, metric, value, labels")
                continue
            missing = [k for k in ("timestamp", "metric", "value") if k not in obj]
            if missing:
                report.add_error(lineno, f"missing {', '.join(missing)}")
                continue
            metric = obj["metric"]
            if not isinstance(metric, str) or metric not in good_metrics:  # lists/dicts are unhashable
                problem = _metric_problem(metric)
                if problem:
                    report.add_error(lineno, problem)
                    continue
                good_metrics.add(metric)
            value, problem = _number(obj["value"])
            if value is None or (problem := duration_problem(metric, value)):
                report.add_error(lineno, problem or "value: not a number")
                continue
            try:
                ts = parse_timestamp(obj["timestamp"])
            except TimeParseError as e:
                report.add_error(lineno, f"timestamp: {e}")
                continue
            try:
                labels = validate_labels(obj.get("labels"))
            except SampleError as e:
                report.add_error(lineno, f"labels: {e}")
                continue
            writer.add((metric, canonical_labels(labels)), ts, value)
            if progress is not None and lineno % BATCH == 0:
                progress(lineno)
    writer.flush()
    return report


def ingest_file(store: Store, path: str | Path, fmt: str | None = None,
                progress: Callable[[int], None] | None = None) -> IngestReport:
    """Ingest one file; the format comes from `fmt` or the file extension."""
    p = Path(path)
    kind = (fmt or p.suffix.lstrip(".")).lower()
    if kind in ("csv", "tsv"):
        return ingest_csv(store, p, progress)
    if kind in ("jsonl", "ndjson", "json"):
        return ingest_jsonl(store, p, progress)
    raise IngestError(f"{p}: unknown format {kind!r}; use a .csv or .jsonl file or --format csv|jsonl")

