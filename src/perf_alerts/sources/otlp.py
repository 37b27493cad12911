"""OTLP in: OpenTelemetry metrics and spans become perf-alerts samples (`POST /v1/metrics`, `/v1/traces`).

The HTTP layer (`http.otlp`) reads the body; this module decodes it (protobuf or OTLP JSON, gzip)
and maps what it carries onto the `crew_*` metrics the in-process listener records, with the
same label sets, so a crew on another machine is watched by setting `OTEL_EXPORTER_OTLP_ENDPOINT`.

Metrics (OpenTelemetry GenAI semantic conventions):
- `gen_ai.client.operation.duration` → `crew_llm_call_seconds` (chat, text_completion,
  generate_content, embeddings, or no operation name); `execute_tool` → `crew_tool_call_seconds`,
  `invoke_agent` → `crew_task_seconds`, `invoke_workflow` → `crew_kickoff_seconds`; a point
  with `error.type` also counts its observations as `crew_llm_errors` / `crew_tool_errors` /
  `crew_task_failures`.
- `gen_ai.client.token.usage` → `crew_llm_prompt_tokens` (`gen_ai.token.type=input`) and
  `crew_llm_completion_tokens` (`output`); the cost of the points of one export (from
  `pricing`) → `crew_cost_usd`.
- `gen_ai.workflow.duration` → `crew_kickoff_seconds`, `gen_ai.invoke_agent.duration` →
  `crew_task_seconds`, `gen_ai.execute_tool.duration` → `crew_tool_call_seconds`.
- Any other metric is stored under its name sanitized (`http.client.duration` →
  `http_client_duration`) with its point attributes as labels: gauges and non-monotonic sums as
  their value, monotonic cumulative sums as `<name>_total` (a counter), monotonic delta sums as
  the increase of each point, histograms as below. Summaries are refused (rejected points).

Histograms (explicit and exponential buckets) become samples, one per observation: a point of
n observations is n samples spread evenly over the point's interval, each bucket's share
spread evenly between its bounds (narrowed by the point's min and max when given) and shifted
within the bounds so they add up to the point's sum. A point of one observation is that
observation exactly (its sum); count and sum are exact; p50/p95/p99 over the samples are a
linear interpolation within buckets, as Prometheus' histogram_quantile. Cumulative points are
turned into deltas per stream (resource, scope, metric, attributes) with the last point kept
in memory; a lower count or a new start time is a reset (the point counts whole). The first
point of a stream is counted whole when the stream started after this receiver did, else it
is only the baseline (after a restart, at most one export interval per stream is not counted).

Spans (CrewAI through OpenInference, Traceloop/OpenLLMetry, the GenAI span conventions, and
CrewAI's own telemetry spans) become the same metrics: kickoff, task, LLM call and tool call
durations (end − start), tokens, cost, and errors from the span status. Labels come from the
span and its ancestors (the crew from the kickoff span, the agent and task from the task span
above an LLM call). Because a kickoff span ends (and is exported) after the spans inside it, a
span waits in memory until its trace reaches a kickoff or root span, at most PENDING_TTL
seconds (then it is stored with what is known, `unknown` for the rest).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from perf_alerts import catalog
from perf_alerts.errors import InputError
from perf_alerts.model import Sample, SampleError, validate_labels, validate_metric_name
from perf_alerts.timeutil import MAX_UNIX, MIN_UNIX

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_DECODED_BYTES = 64 * 1024 * 1024  # a gzip body may not inflate past this
MAX_OBSERVATIONS_PER_POINT = 100_000  # samples one histogram point may become
MAX_OBSERVATIONS_PER_REQUEST = 250_000  # samples one request may become (memory: ~40 MB of Samples)
MAX_STREAMS = 200_000  # cumulative streams remembered (least recently seen forgotten first)
MAX_PENDING_SPANS = 200_000
PENDING_TTL = 3600.0  # seconds a span waits for its kickoff / root span
TRACE_KEEP = 900.0  # seconds a finished trace's spans stay known for late children
MAX_ERRORS = 100
UNKNOWN = "unknown"

CostFn = Callable[[str, float, float], "float | None"]


class OtlpError(InputError):
    """A request the receiver refuses whole: `status` is the HTTP status (400, 413, 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- decoding


def media_type(content_type: str | None) -> str:
    """'application/json; charset=utf-8' → 'application/json'; OtlpError 415 for anything else."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt not in (PROTOBUF, JSON):
        raise OtlpError(415, f"unsupported content type {mt or '(none)'!r}: send {PROTOBUF} or {JSON}")
    return mt


def inflate(body: bytes, content_encoding: str | None) -> bytes:
    """The body without its Content-Encoding (identity or gzip), at most MAX_DECODED_BYTES."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc != "gzip":
        raise OtlpError(415, f"unsupported content encoding {enc!r}: send gzip or none")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_DECODED_BYTES + 1)
    except zlib.error as e:
        raise OtlpError(400, f"the body is not valid gzip: {e}") from None
    if len(out) > MAX_DECODED_BYTES or d.unconsumed_tail:
        raise OtlpError(413, f"the body inflates past {MAX_DECODED_BYTES // (1024 * 1024)} MiB")
    if not d.eof:
        raise OtlpError(400, "the body is not valid gzip: truncated")
    return out


_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _hex_ids_to_base64(doc: Any) -> None:
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64 for bytes."""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if k in _ID_KEYS and isinstance(v, str):
                    try:
                        raw = bytes.fromhex(v)
                    except ValueError:
                        raise OtlpError(400, f"{k} {v[:40]!r} is not hex") from None
                    x[k] = base64.b64encode(raw).decode("ascii")
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(x, list):
            stack.extend(v for v in x if isinstance(v, (dict, list)))


def decode(kind: str, body: bytes, content_type: str | None, content_encoding: str | None = None) -> tuple[Any, str]:
    """The Export{Metrics,Trace}ServiceRequest in `body` and its media type; OtlpError otherwise."""
    mt = media_type(content_type)
    raw = inflate(body, content_encoding)
    if kind == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        msg: Any = ExportMetricsServiceRequest()
    else:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        msg = ExportTraceServiceRequest()
    if mt == PROTOBUF:
        from google.protobuf.message import DecodeError

        try:
            msg.ParseFromString(raw)
        except (DecodeError, RecursionError, ValueError) as e:
            raise OtlpError(400, f"malformed protobuf body: {e}") from None
        return msg, mt
    from google.protobuf import json_format

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise OtlpError(400, f"malformed JSON body: {e}") from None
    if not isinstance(doc, dict):
        raise OtlpError(400, "malformed OTLP JSON body: expected an object")
    _hex_ids_to_base64(doc)
    try:
        json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as e:
        raise OtlpError(400, f"malformed OTLP JSON body: {str(e)[:300]}") from None
    return msg, mt


def response_body(kind: str, mt: str, rejected: int, message: str) -> bytes:
    """The Export{Metrics,Trace}ServiceResponse: empty on full success, `partial_success` otherwise."""
    if kind == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

        resp: Any = ExportMetricsServiceResponse()
        if rejected or message:
            resp.partial_success.rejected_data_points = rejected
            resp.partial_success.error_message = message
    else:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        resp = ExportTraceServiceResponse()
        if rejected or message:
            resp.partial_success.rejected_spans = rejected
            resp.partial_success.error_message = message
    if mt == PROTOBUF:
        return bytes(resp.SerializeToString())
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(resp), separators=(",", ":")).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def status_body(mt: str, message: str, code: int = 3) -> bytes:
    """A google.rpc.Status (code 3 INVALID_ARGUMENT by default): the body of an OTLP 4xx answer."""
    if mt == PROTOBUF:
        text = message.encode("utf-8")
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- attributes and labels


def _any_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return bytes(v.bytes_value).hex()
    return getattr(v, which)


def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


_WS = re.compile(r"\s+")
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def label(value: Any, limit: int = 80) -> str:
    """A label value as the in-process listener writes it (`crew.instrument._label`)."""
    if value is None:
        return UNKNOWN
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"))
    s = _WS.sub(" ", str(value)).strip()
    if not s:
        return UNKNOWN
    return s if len(s) <= limit else s[: limit - 1] + "…"


def metric_name(otel_name: str) -> str:
    """An OTel metric name as a perf-alerts one: invalid characters become `_`."""
    s = _BAD_NAME.sub("_", otel_name.strip()) or "otel_metric"
    return s if not s[0].isdigit() else "_" + s


def label_name(key: str) -> str:
    s = _BAD_LABEL.sub("_", key) or "_"
    s = s if not s[0].isdigit() else "_" + s
    return (s.lstrip("_") or "attr") if s.startswith("__") else s


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            return v
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _count(v: Any) -> float | None:
    """A token count: a finite number >= 0, else None."""
    f = _number(v)
    return f if f is not None and f >= 0 else None


def _tool_label(v: Any) -> str:
    return label(str(v).strip().lower() if v is not None and str(v).strip() else None)


# The label keys of each crew metric (the in-process listener's).
_KEYS: dict[str, tuple[str, ...]] = {
    catalog.KICKOFF_SECONDS: ("crew",),
    catalog.TASK_SECONDS: ("crew", "agent", "task"), catalog.TASK_FAILURES: ("crew", "agent", "task"),
    catalog.LLM_SECONDS: ("crew", "agent", "task", "model"), catalog.LLM_ERRORS: ("crew", "agent", "task", "model"),
    catalog.LLM_PROMPT_TOKENS: ("crew", "agent", "task", "model"),
    catalog.LLM_COMPLETION_TOKENS: ("crew", "agent", "task", "model"),
    catalog.COST_USD: ("crew", "agent", "task", "model"),
    catalog.TOOL_SECONDS: ("crew", "agent", "task", "tool"), catalog.TOOL_ERRORS: ("crew", "agent", "task", "tool"),
}
_ERROR_OF = {catalog.LLM_SECONDS: catalog.LLM_ERRORS, catalog.TOOL_SECONDS: catalog.TOOL_ERRORS,
             catalog.TASK_SECONDS: catalog.TASK_FAILURES}
LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings", "completion"}


def _crew_labels(metric: str, attrs: Mapping[str, Any]) -> dict[str, str]:
    """The labels of a crew metric from GenAI metric attributes; `unknown` where none says."""
    found = {
        "crew": label(_first(attrs, "gen_ai.workflow.name", "crewai.crew.name", "crew")),
        "agent": label(_first(attrs, "gen_ai.agent.name", "agent")),
        "task": label(_first(attrs, "gen_ai.task.name", "task")),
        "model": label(_first(attrs, "gen_ai.response.model", "gen_ai.request.model", "model"), 120),
        "tool": _tool_label(_first(attrs, "gen_ai.tool.name", "tool")),
    }
    return {k: found[k] for k in _KEYS[metric]}


def genai_target(name: str, attrs: Mapping[str, Any]) -> str | None:
    """The crew metric a GenAI semantic-convention metric point goes to (None: not a GenAI one)."""
    if name == "gen_ai.client.operation.duration":
        op = str(attrs.get("gen_ai.operation.name") or "").lower()
        if not op or op in LLM_OPERATIONS:
            return catalog.LLM_SECONDS
        return {"execute_tool": catalog.TOOL_SECONDS, "invoke_agent": catalog.TASK_SECONDS,
                "invoke_workflow": catalog.KICKOFF_SECONDS}.get(op)
    if name == "gen_ai.client.token.usage":
        t = str(attrs.get("gen_ai.token.type") or "").lower()
        return {"input": catalog.LLM_PROMPT_TOKENS, "output": catalog.LLM_COMPLETION_TOKENS}.get(t)
    return {"gen_ai.workflow.duration": catalog.KICKOFF_SECONDS, "gen_ai.invoke_agent.duration": catalog.TASK_SECONDS,
            "gen_ai.execute_tool.duration": catalog.TOOL_SECONDS}.get(name)


# --------------------------------------------------------------------------- histograms


@dataclass
class Buckets:
    """A histogram's observations by bucket: bucket i is (lo[i], hi[i]] with count[i]."""

    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray  # int64

    def minus(self, other: "Buckets") -> "Buckets | None":
        """self − other, or None when the buckets differ or a count went down (a reset)."""
        if self.lo.shape != other.lo.shape or not (np.array_equal(self.lo, other.lo)
                                                    and np.array_equal(self.hi, other.hi)):
            return None
        d = self.count - other.count
        if (d < 0).any():
            return None
        return Buckets(self.lo, self.hi, d)


_BOUNDS_CACHE: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}


def explicit_buckets(bounds: Iterable[float], counts: Iterable[int]) -> Buckets:
    key = tuple(bounds)
    c = np.asarray(list(counts), dtype=np.int64)
    if c.size == 0:
        return Buckets(np.empty(0), np.empty(0), c)
    if c.size != len(key) + 1:
        raise SampleError(f"{c.size} bucket counts for {len(key)} bounds (expected {len(key) + 1})")
    hit = _BOUNDS_CACHE.get(key)
    if hit is None:
        b = np.asarray(key, dtype=np.float64)
        if b.size and (not np.isfinite(b).all() or (np.diff(b) <= 0).any()):
            raise SampleError("explicit bounds are not finite and strictly increasing")
        hit = (np.concatenate(([-np.inf], b)), np.concatenate((b, [np.inf])))
        if len(_BOUNDS_CACHE) < 1000:  # a handful of bucket layouts in practice
            _BOUNDS_CACHE[key] = hit
    return Buckets(hit[0], hit[1], c)


def exponential_buckets(scale: int, zero_count: int, zero_threshold: float, positive: Any, negative: Any) -> Buckets:
    if not -10 <= scale <= 20:
        raise SampleError(f"exponential histogram scale {scale} is out of range (-10..20)")
    base = 2.0 ** (2.0 ** -scale)
    los: list[float] = []
    his: list[float] = []
    cs: list[int] = []
    for i, c in enumerate(negative.bucket_counts):
        idx = negative.offset + i
        los.append(-base ** (idx + 1))
        his.append(-base ** idx)
        cs.append(int(c))
    if zero_count:
        los.append(-zero_threshold)
        his.append(zero_threshold)
        cs.append(int(zero_count))
    for i, c in enumerate(positive.bucket_counts):
        idx = positive.offset + i
        los.append(base ** idx)
        his.append(base ** (idx + 1))
        cs.append(int(c))
    order = np.argsort(np.asarray(los), kind="stable")
    return Buckets(np.asarray(los)[order], np.asarray(his)[order], np.asarray(cs, dtype=np.int64)[order])


def expand(b: Buckets, total: float | None, vmin: float | None, vmax: float | None,
           nonnegative: bool = True) -> np.ndarray:
    """Representative observations of a histogram (see the module doc): n values, in bucket order."""
    n = int(b.count.sum())
    if n <= 0:
        return np.empty(0)
    if n == 1 and total is not None and math.isfinite(total):
        return np.asarray([total], dtype=np.float64)
    lo = b.lo.copy()
    hi = b.hi.copy()
    nz = b.count > 0
    # open ends: the first bucket starts at 0 (durations and tokens) or its min; the last ends at its max
    if vmin is not None and math.isfinite(vmin):
        lo = np.maximum(lo, vmin)
        hi = np.maximum(hi, vmin)
    elif nonnegative:
        lo = np.where((lo == -np.inf), np.minimum(0.0, hi), lo)
    if vmax is not None and math.isfinite(vmax):
        hi = np.minimum(hi, vmax)
        lo = np.minimum(lo, vmax)
    open_lo = (lo == -np.inf)[nz]  # no lower end known: the value sits at the upper one
    open_hi = (hi == np.inf)[nz]
    lo = np.where((lo == -np.inf), hi, lo)
    hi = np.where((hi == np.inf), lo, hi)
    counts = b.count[nz]
    blo, bhi = lo[nz], hi[nz]
    rep_lo = np.repeat(blo, counts)
    rep_hi = np.repeat(bhi, counts)
    # k-th of c observations of a bucket sits at (k + 0.5) / c of its width
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(n) - starts
    c = np.repeat(counts, counts)
    vals = rep_lo + (rep_hi - rep_lo) * (k + 0.5) / c
    if total is not None and math.isfinite(total):
        diff = total - float(vals.sum())
        room = (rep_hi - vals) if diff > 0 else (vals - rep_lo)
        r = float(room.sum())
        if r > 0 and diff != 0:
            f = min(1.0, abs(diff) / r)
            vals = vals + math.copysign(1.0, diff) * f * room
            diff = total - float(vals.sum())
        # what the bounded buckets cannot hold goes to an open-ended bucket, if the point has one
        open_side = np.repeat(open_hi if diff > 0 else open_lo, counts)
        if diff != 0 and open_side.any() and abs(diff) > 1e-12 * max(1.0, abs(total)):
            vals[open_side] += diff / int(open_side.sum())
    return vals


SMALL_POINT = 64  # points of at most this many observations are expanded without numpy (per-call overhead)


def expand_small(b: Buckets, total: float | None, vmin: float | None, vmax: float | None,
                 nonnegative: bool = True) -> list[float]:
    """`expand` in plain Python, for the small points that are most of an export (same results)."""
    counts = b.count.tolist()
    n = sum(counts)
    if n <= 0:
        return []
    if n == 1 and total is not None and math.isfinite(total):
        return [float(total)]
    has_min = vmin is not None and math.isfinite(vmin)
    has_max = vmax is not None and math.isfinite(vmax)
    inf = math.inf
    vals: list[float] = []
    rlo: list[float] = []
    rhi: list[float] = []
    olo: list[bool] = []
    ohi: list[bool] = []
    for lo, hi, c in zip(b.lo.tolist(), b.hi.tolist(), counts):
        if c <= 0:
            continue
        if has_min:
            lo, hi = max(lo, vmin), max(hi, vmin)  # type: ignore[type-var]
        elif nonnegative and lo == -inf:
            lo = min(0.0, hi)
        if has_max:
            hi, lo = min(hi, vmax), min(lo, vmax)  # type: ignore[type-var]
        open_lo, open_hi = lo == -inf, hi == inf
        if open_lo:
            lo = hi
        if open_hi:
            hi = lo
        for k in range(c):
            vals.append(lo + (hi - lo) * (k + 0.5) / c)
        rlo.extend([lo] * c)
        rhi.extend([hi] * c)
        olo.extend([open_lo] * c)
        ohi.extend([open_hi] * c)
    if total is not None and math.isfinite(total):
        diff = total - math.fsum(vals)
        room = [h - v for h, v in zip(rhi, vals)] if diff > 0 else [v - lo_ for lo_, v in zip(rlo, vals)]
        r = math.fsum(room)
        if r > 0 and diff != 0:
            f = min(1.0, abs(diff) / r)
            sign = math.copysign(1.0, diff)
            vals = [v + sign * f * x for v, x in zip(vals, room)]
            diff = total - math.fsum(vals)
        side = ohi if diff > 0 else olo
        k_open = sum(side)
        if diff != 0 and k_open and abs(diff) > 1e-12 * max(1.0, abs(total)):
            share = diff / k_open
            vals = [v + share if o else v for v, o in zip(vals, side)]
    return vals


# --------------------------------------------------------------------------- the receiver state


@dataclass
class _Cumulative:
    start: int
    time: int
    count: int
    total: float
    buckets: Buckets | None = None
    value: float = 0.0


@dataclass
class IngestResult:
    samples: list[Sample] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, text: str, n: int = 1) -> None:
        self.rejected += n
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    @property
    def message(self) -> str:
        if not self.errors:
            return ""
        more = self.rejected - len(self.errors)
        return "; ".join(self.errors[:20]) + (f"; and {more} more" if more > 0 else "")


class _Placer:
    """Sample times of one request, nudged apart so two points never land on one (series, instant)."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, tuple[tuple[str, str], ...]], set[float]] = {}

    def place(self, metric: str, labels: Mapping[str, str], times: Iterable[float]) -> list[float]:
        key = (metric, tuple(sorted(labels.items())))
        used = self.used.setdefault(key, set())
        out: list[float] = []
        for t in times:
            while t in used:
                t -= 1e-5
            used.add(t)
            out.append(t)
        return out


_STEPS = (7, 11, 13, 17, 19, 23, 29, 31)


def _interleave(n: int, seed: int) -> list[int]:
    """A fixed permutation of range(n) that scatters the bucket order (so the samples of one point
    do not climb through the interval): i → (i·step + offset) mod n, step coprime with n."""
    if n <= 2:
        return list(range(n))
    step = next((k for k in _STEPS if n % k), 1)
    off = seed % n
    return [(i * step + off) % n for i in range(n)]


def _spread(n: int, t0: float, t1: float) -> list[float]:
    """n instants evenly over (t0, t1], at least 1 ms apart."""
    if t1 - t0 < n * 1e-3:
        t0 = t1 - n * 1e-3
    w = t1 - t0
    return [t0 + w * (i / n) for i in range(1, n + 1)]


class MetricsReceiver:
    """OTLP metrics → samples, keeping each cumulative stream's last point (thread-safe)."""

    def __init__(self, cost: CostFn | None = None, started: float | None = None) -> None:
        self.cost = cost
        self.started_ns = int((time.time() if started is None else started) * 1e9)
        self._streams: OrderedDict[tuple[Any, ...], _Cumulative] = OrderedDict()
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------
    def _previous(self, key: tuple[Any, ...], cur: _Cumulative) -> _Cumulative | None:
        """The stream's last point (None: new stream), remembering `cur` as the last."""
        with self._lock:
            prev = self._streams.pop(key, None)
            self._streams[key] = cur
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
        return prev

    def streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def _first_counts(self, start_ns: int) -> bool:
        """The first point of a cumulative stream counts whole only when the stream began after us."""
        return start_ns > 0 and start_ns >= self.started_ns

    # -- one request ------------------------------------------------------------------
    def ingest(self, req: Any) -> IngestResult:
        res = IngestResult()
        placer = _Placer()
        costs: dict[tuple[Any, ...], dict[str, Any]] = {}
        budget = [MAX_OBSERVATIONS_PER_REQUEST]
        for rm in req.resource_metrics:
            rkey = _canon(attributes(rm.resource.attributes))
            for sm in rm.scope_metrics:
                skey = (sm.scope.name, sm.scope.version)
                for m in sm.metrics:
                    self._metric(m, (rkey, skey), res, placer, costs, budget)
        self._costs(costs, res, placer)
        return res

    def _metric(self, m: Any, stream: tuple[Any, ...], res: IngestResult, placer: _Placer,
                costs: dict[tuple[Any, ...], dict[str, Any]], budget: list[int]) -> None:
        which = m.WhichOneof("data")
        name = m.name
        if which is None:
            return
        if which == "summary":
            res.error(f"metric {name[:100]}: summary points are not stored (send a histogram)",
                      len(m.summary.data_points))
            return
        if which in ("gauge", "sum"):
            self._numbers(m, which, stream, res, placer)
            return
        data = getattr(m, which)
        temporality = int(data.aggregation_temporality)
        scale = 1e-3 if m.unit == "ms" else 1.0
        for i, p in enumerate(data.data_points):
            where = f"metric {name[:100]} point {i}"
            try:
                attrs = attributes(p.attributes)
                if which == "histogram":
                    b = explicit_buckets(p.explicit_bounds, p.bucket_counts)
                else:
                    b = exponential_buckets(int(p.scale), int(p.zero_count), float(p.zero_threshold), p.positive,
                                            p.negative)
                if temporality not in (1, 2):
                    raise SampleError("aggregation temporality is unspecified")
                t1 = _seconds(p.time_unix_nano, "time_unix_nano")
                has_sum = p.HasField("sum")
                cur = _Cumulative(int(p.start_time_unix_nano), int(p.time_unix_nano), int(p.count),
                                  float(p.sum) if has_sum else math.nan, b)
                vmin = float(p.min) if p.HasField("min") else None
                vmax = float(p.max) if p.HasField("max") else None
                t0 = _seconds(p.start_time_unix_nano, "start_time_unix_nano", allow_zero=True)
                if temporality == 2:
                    key = (*stream, name, _canon(attrs))
                    prev = self._previous(key, cur)
                    delta = _histogram_delta(cur, prev, self._first_counts(cur.start))
                    if delta is None:
                        res.accepted += 1  # a baseline: nothing new to store
                        continue
                    b, total, whole = delta
                    if not whole:
                        # the delta's own min and max are unknown, but the cumulative point's bound
                        # every observation since the stream started, the delta's among them: keep
                        # them as bounds (without them 20 calls of 1.0 s in a [0, 5) bucket were
                        # spread over 0.05-1.95 s, and a p95 rule fired on 1.85 s)
                        t0 = prev.time / 1e9 if prev is not None else t0
                else:
                    total = cur.total if has_sum else None
                n = int(b.count.sum())
                if n == 0:
                    res.accepted += 1
                    continue
                if n > MAX_OBSERVATIONS_PER_POINT or n > budget[0]:
                    raise SampleError(f"{n:,} observations in one point is more than this receiver expands "
                                      f"(limit {min(MAX_OBSERVATIONS_PER_POINT, budget[0]):,})")
                budget[0] -= n
                nonneg = bool(b.hi.size == 0 or b.hi[-2 if b.hi.size > 1 else -1] >= 0)
                got = (expand_small(b, total, vmin, vmax, nonneg) if n <= SMALL_POINT
                       else expand(b, total, vmin, vmax, nonnegative=nonneg).tolist())
                t0 = max(t0 if t0 > 0 else t1, t1 - 3600.0)
                times = _spread(n, t0, t1)
                vals = [got[i] * scale for i in _interleave(n, int(p.time_unix_nano))]
                self._emit_histogram(name, attrs, vals, times, res, placer, costs)
                res.accepted += 1
            except (SampleError, ValueError, OverflowError) as e:
                res.error(f"{where}: {e}")

    def _emit_histogram(self, name: str, attrs: Mapping[str, Any], vals: list[float], times: list[float],
                        res: IngestResult, placer: _Placer, costs: dict[tuple[Any, ...], dict[str, Any]]) -> None:
        target = genai_target(name, attrs)
        if target is None:
            metric = validate_metric_name(metric_name(name))
            labels = validate_labels({label_name(k): label(v, 1 << 30) for k, v in attrs.items()})
        else:
            metric = target
            labels = _crew_labels(target, attrs)
        if metric.endswith("_seconds") and min(vals) < 0:
            raise SampleError(f"{metric} is a duration and cannot be negative")
        ts = placer.place(metric, labels, times)
        res.samples.extend(Sample(metric, labels, t, v) for t, v in zip(ts, vals))
        if target in _ERROR_OF and attrs.get("error.type") not in (None, ""):
            err = _ERROR_OF[target]
            res.samples.extend(Sample(err, labels, t, 1.0) for t in ts)
        if target in (catalog.LLM_PROMPT_TOKENS, catalog.LLM_COMPLETION_TOKENS) and self.cost is not None:
            key = (tuple(sorted(labels.items())), float(times[-1]))
            slot = costs.setdefault(key, {"labels": labels, "model": labels.get("model")})
            slot["in" if target == catalog.LLM_PROMPT_TOKENS else "out"] = (float(sum(vals)), ts)

    def _costs(self, costs: dict[tuple[Any, ...], dict[str, Any]], res: IngestResult, placer: _Placer) -> None:
        """One export's token points → the cost of its calls (spread over the calls of the larger side)."""
        assert self.cost is not None or not costs
        for slot in costs.values():
            p_in, t_in = slot.get("in", (0.0, []))
            p_out, t_out = slot.get("out", (0.0, []))
            model = slot["model"]
            if model in (None, UNKNOWN) or self.cost is None:
                continue
            c = self.cost(model, p_in, p_out)
            if c is None or not math.isfinite(c):
                continue
            ts = t_in if len(t_in) >= len(t_out) else t_out
            if not ts:
                continue
            times = placer.place(catalog.COST_USD, slot["labels"], ts)
            res.samples.extend(Sample(catalog.COST_USD, slot["labels"], t, c / len(times)) for t in times)

    def _numbers(self, m: Any, which: str, stream: tuple[Any, ...], res: IngestResult, placer: _Placer) -> None:
        data = getattr(m, which)
        monotonic = which == "sum" and bool(data.is_monotonic)
        temporality = int(data.aggregation_temporality) if which == "sum" else 0
        base = metric_name(m.name)
        for i, p in enumerate(data.data_points):
            try:
                v = float(p.as_double) if p.WhichOneof("value") == "as_double" else float(p.as_int)
                if not math.isfinite(v):
                    raise SampleError(f"value must be finite, got {v}")
                t = _seconds(p.time_unix_nano, "time_unix_nano")
                attrs = attributes(p.attributes)
                labels = validate_labels({label_name(k): label(val, 1 << 30) for k, val in attrs.items()})
                if monotonic and temporality == 2:
                    metric = base if base.endswith("_total") else base + "_total"
                elif monotonic and temporality == 1:
                    metric = base
                elif which == "sum" and temporality not in (1, 2):
                    raise SampleError("aggregation temporality is unspecified")
                else:
                    metric = base
                validate_metric_name(metric)
                if metric.endswith("_seconds") and v < 0:
                    raise SampleError(f"{metric} is a duration and cannot be negative")
                (t,) = placer.place(metric, labels, [t])
                res.samples.append(Sample(metric, labels, t, v))
                res.accepted += 1
            except (SampleError, ValueError, OverflowError) as e:
                res.error(f"metric {m.name[:100]} point {i}: {e}")


def _histogram_delta(cur: _Cumulative, prev: _Cumulative | None,
                     first_counts: bool) -> tuple[Buckets, float | None, bool] | None:
    """What a cumulative point adds: (buckets, sum, whole) — whole when it counts from its start
    (a new stream that began after the receiver, or a reset); None for a baseline."""
    assert cur.buckets is not None
    total = None if math.isnan(cur.total) else cur.total
    if prev is None:
        return (cur.buckets, total, True) if first_counts else None
    reset = cur.start != prev.start or cur.count < prev.count or prev.buckets is None
    d = None if reset else cur.buckets.minus(prev.buckets)  # type: ignore[arg-type]
    if d is None:  # a reset: the point counts from its (new) start
        return cur.buckets, total, True
    dt = None if total is None or math.isnan(prev.total) else total - prev.total
    return d, dt, False


def _seconds(ns: int, what: str, allow_zero: bool = False) -> float:
    if allow_zero and ns == 0:
        return 0.0
    t = int(ns) / 1e9
    if not MIN_UNIX < t <= MAX_UNIX:
        raise SampleError(f"{what} {ns} is out of range (Unix nanoseconds)")
    return t


def _canon(attrs: Mapping[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=str)


# --------------------------------------------------------------------------- spans


@dataclass
class _Span:
    span_id: bytes
    parent: bytes
    role: str  # kickoff, task, llm, tool, tool_error, agent, other
    start: float
    end: float
    error: bool
    crew: str | None = None
    agent: str | None = None
    task: str | None = None
    model: str | None = None
    tool: str | None = None
    prompt: float | None = None
    completion: float | None = None
    received: float = 0.0


def classify(name: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a span is (`role`) and the label values it carries itself."""
    oi = str(attrs.get("openinference.span.kind") or "").upper()
    tl = str(attrs.get("traceloop.span.kind") or "").lower()
    op = str(attrs.get("gen_ai.operation.name") or "").lower()
    out: dict[str, Any] = {"role": "other"}
    if (oi == "CHAIN" and name.endswith(".kickoff") and ("crew_key" in attrs or "crew_id" in attrs)) \
            or name in ("crewai.workflow", "Crew Execution") or tl == "workflow" or op == "invoke_workflow":
        crew = _first(attrs, "gen_ai.workflow.name", "crewai.crew.name", "crew_name")
        if crew is None and oi == "CHAIN":
            crew = name[: -len(".kickoff")]
        if crew is None:
            crew = attrs.get("crew_key")
        out.update(role="kickoff", crew=label(crew) if crew is not None else None)
    elif oi == "LLM" or (op in LLM_OPERATIONS and tl not in ("agent", "task")):
        out.update(role="llm", model=label(_first(attrs, "llm.model_name", "gen_ai.response.model",
                                                  "gen_ai.request.model"), 120),
                   agent=_opt(_first(attrs, "gen_ai.agent.name")),
                   prompt=_count(_first(attrs, "llm.token_count.prompt", "gen_ai.usage.input_tokens",
                                         "gen_ai.usage.prompt_tokens")),
                   completion=_count(_first(attrs, "llm.token_count.completion", "gen_ai.usage.output_tokens",
                                             "gen_ai.usage.completion_tokens")))
    elif oi == "TOOL" or op == "execute_tool" or name == "Tool Usage Error":
        out.update(role="tool_error" if name == "Tool Usage Error" else "tool",
                   tool=_tool_label(_first(attrs, "tool.name", "gen_ai.tool.name", "tool_name")),
                   agent=_opt(_first(attrs, "tool.agent_role", "gen_ai.agent.name", "agent_role")),
                   task=_opt(_first(attrs, "tool.task_name", "gen_ai.task.name")))
    elif (oi == "AGENT" and ("task_name" in attrs or "task_id" in attrs)) or tl == "task" \
            or name == "Task Execution":
        out.update(role="task",
                   agent=_opt(_first(attrs, "graph.node.id", "gen_ai.agent.name", "crewai.task.agent", "agent_role")),
                   task=_opt(_first(attrs, "task_name", "crewai.task.name", "crewai.task.description", "task_key")),
                   crew=_opt(_first(attrs, "crew_name")))
    elif oi == "AGENT" or tl == "agent" or op == "invoke_agent":
        agent = _opt(_first(attrs, "gen_ai.agent.name", "graph.node.id", "crewai.agent.role"))
        if op == "invoke_agent" and not oi and not tl:  # a GenAI invoke_agent span: an agent's run, our task
            out.update(role="task", agent=agent, task=_opt(_first(attrs, "gen_ai.task.name")))
        else:
            out.update(role="agent", agent=agent)
    return out


def _opt(v: Any) -> str | None:
    return None if v is None or (isinstance(v, str) and not v.strip()) else label(v)


class _Trace:
    __slots__ = ("spans", "pending", "touched", "done")

    def __init__(self) -> None:
        self.spans: dict[bytes, _Span] = {}
        self.pending: list[_Span] = []
        self.touched = 0.0
        self.done = False


class TracesReceiver:
    """OTLP spans → samples. Spans wait, per trace, until their ancestors up to a kickoff or root span are known."""

    def __init__(self, cost: CostFn | None = None, now: Callable[[], float] = time.time) -> None:
        self.cost = cost
        self.now = now
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        self._pending = 0
        self._lock = threading.Lock()

    def pending_spans(self) -> int:
        with self._lock:
            return self._pending

    def ingest(self, req: Any) -> IngestResult:
        res = IngestResult()
        now = self.now()
        parsed: list[tuple[bytes, _Span]] = []
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for i, sp in enumerate(ss.spans):
                    try:
                        parsed.append((bytes(sp.trace_id), self._span(sp, now)))
                        res.accepted += 1
                    except (SampleError, ValueError, OverflowError) as e:
                        res.error(f"span {i} ({sp.name[:80]!r}): {e}")
        chains: list[tuple[_Span, list[_Span]]] = []
        with self._lock:
            touched: set[bytes] = set()
            for trace_id, s in parsed:
                tr = self._traces.get(trace_id)
                if tr is None:
                    tr = self._traces[trace_id] = _Trace()
                else:
                    self._traces.move_to_end(trace_id)
                tr.touched = now
                if s.span_id in tr.spans:  # a retried export: counted once
                    continue
                tr.spans[s.span_id] = s
                if s.role != "other" and s.role != "agent":
                    tr.pending.append(s)
                    self._pending += 1
                touched.add(trace_id)
            for trace_id in touched:
                tr = self._traces[trace_id]
                still: list[_Span] = []
                for s in tr.pending:
                    chain = _ancestors(tr, s)
                    if chain is None:
                        still.append(s)
                    else:
                        chains.append((s, chain))
                self._pending -= len(tr.pending) - len(still)
                tr.pending = still
            chains.extend(self._expire(now))
        placer = _Placer()
        for s, chain in chains:
            res.samples.extend(self._samples(s, chain, placer))
        return res

    def _expire(self, now: float) -> list[tuple[_Span, list[_Span]]]:
        """Spans that waited past PENDING_TTL (or beyond MAX_PENDING_SPANS), with what is known; old traces dropped."""
        out: list[tuple[_Span, list[_Span]]] = []
        for trace_id in list(self._traces):
            tr = self._traces[trace_id]
            over = self._pending > MAX_PENDING_SPANS
            if not over and now - tr.touched < min(PENDING_TTL, TRACE_KEEP) and len(self._traces) <= 100_000:
                break  # the rest were touched more recently
            if tr.pending and (over or now - tr.touched >= PENDING_TTL):
                for s in tr.pending:
                    out.append((s, _ancestors(tr, s, partial=True) or []))
                self._pending -= len(tr.pending)
                tr.pending = []
            if not tr.pending and (over or now - tr.touched >= TRACE_KEEP or len(self._traces) > 100_000):
                del self._traces[trace_id]
        return out

    def _span(self, sp: Any, now: float) -> _Span:
        if len(sp.span_id) != 8:
            raise SampleError("span_id must be 8 bytes")
        if len(sp.trace_id) != 16:
            raise SampleError("trace_id must be 16 bytes")
        start = _seconds(sp.start_time_unix_nano, "start_time_unix_nano")
        end = _seconds(sp.end_time_unix_nano, "end_time_unix_nano")
        if end < start:
            raise SampleError("end_time_unix_nano is before start_time_unix_nano")
        c = classify(sp.name, attributes(sp.attributes))
        return _Span(bytes(sp.span_id), bytes(sp.parent_span_id), c.pop("role"), start, end,
                     int(sp.status.code) == 2, received=now, **c)

    def _samples(self, s: _Span, chain: list[_Span], placer: _Placer) -> list[Sample]:
        def up(attr: str) -> str | None:
            for a in chain:
                v = getattr(a, attr)
                if v is not None:
                    return str(v)
            return None

        crew = s.crew if s.role == "kickoff" else next((a.crew for a in chain if a.role == "kickoff" and a.crew),
                                                       None) or up("crew")
        agent = s.agent or up("agent")
        task = s.task or next((a.task for a in chain if a.role == "task" and a.task), None)
        values = {"crew": crew or UNKNOWN, "agent": agent or UNKNOWN, "task": task or UNKNOWN,
                  "model": s.model or UNKNOWN, "tool": s.tool or UNKNOWN}
        dur = max(0.0, s.end - s.start)
        out: list[Sample] = []

        def add(metric: str, value: float) -> None:
            labels = {k: values[k] for k in _KEYS[metric]}
            (t,) = placer.place(metric, labels, [s.end])  # two spans ending at one instant: both kept
            out.append(Sample(metric, labels, t, float(value)))

        if s.role == "kickoff":
            add(catalog.KICKOFF_SECONDS, dur)
        elif s.role == "task":
            add(catalog.TASK_SECONDS, dur)
            if s.error:
                add(catalog.TASK_FAILURES, 1.0)
        elif s.role == "tool":
            add(catalog.TOOL_SECONDS, dur)
            if s.error:
                add(catalog.TOOL_ERRORS, 1.0)
        elif s.role == "tool_error":
            add(catalog.TOOL_ERRORS, 1.0)
        elif s.role == "llm":
            add(catalog.LLM_SECONDS, dur)
            if s.error:
                add(catalog.LLM_ERRORS, 1.0)
            else:
                if s.prompt is not None:
                    add(catalog.LLM_PROMPT_TOKENS, s.prompt)
                if s.completion is not None:
                    add(catalog.LLM_COMPLETION_TOKENS, s.completion)
                if (s.prompt is not None or s.completion is not None) and self.cost is not None \
                        and values["model"] != UNKNOWN:
                    c = self.cost(values["model"], s.prompt or 0.0, s.completion or 0.0)
                    if c is not None and math.isfinite(c):
                        add(catalog.COST_USD, c)
        return out


def _ancestors(tr: _Trace, s: _Span, partial: bool = False) -> list[_Span] | None:
    """The spans above `s` up to the nearest kickoff (or the root); None when one is not here yet."""
    if s.role == "kickoff":
        return []
    chain: list[_Span] = []
    seen = {s.span_id}
    cur = s
    while True:
        if not cur.parent or cur.parent == b"\x00" * 8:
            return chain
        p = tr.spans.get(cur.parent)
        if p is None or p.span_id in seen:
            return chain if partial else None
        chain.append(p)
        seen.add(p.span_id)
        if p.role == "kickoff":
            return chain
        cur = p


def gzip_bytes(data: bytes) -> bytes:
    """For tests and the benchmark: a gzip body as the OTLP exporters send."""
    return gzip.compress(data)


__all__ = ["MetricsReceiver", "TracesReceiver", "IngestResult", "OtlpError", "decode", "response_body",
           "status_body", "media_type", "inflate", "expand", "explicit_buckets", "exponential_buckets",
           "genai_target", "classify", "metric_name", "label", "PROTOBUF", "JSON"]
