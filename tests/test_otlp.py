"""OTLP/HTTP in (issue 15): POST /v1/metrics and /v1/traces.

The histogram expansion on its own; the receiver over HTTP with protobuf and OTLP JSON bodies
(hex ids), gzip, partial success, the specification's error codes and the token; spans of the
three CrewAI instrumentations' shapes becoming crew_* series; and the real opentelemetry-sdk
meter exporting GenAI histograms with delta and cumulative temporality through the real OTLP
HTTP exporter to a server on 127.0.0.1, a p95 rule firing on them.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from conftest import require  # noqa: E402

require("fastapi")
require("google.protobuf")
require("opentelemetry.proto")
import httpx  # noqa: E402
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest, ExportTraceServiceResponse,
)

from perf_alerts import catalog  # noqa: E402
from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.sources.otlp import MetricsReceiver, expand, explicit_buckets  # noqa: E402
from perf_alerts.store import Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_http import LiveServer  # noqa: E402

PB = {"content-type": "application/x-protobuf"}
CONFIG = """
pricing:
  gpt-4o-mini: {input: 0.15, output: 0.60}
rules:
  - name: SlowLLM
    type: threshold
    metric: crew_llm_call_seconds
    aggregate: p95
    window: 10m
    op: ">"
    value: 2
    severity: warning
"""
DURATION_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]


def make_system(tmp_path: Path, config: str = CONFIG) -> PerfAlerts:
    return PerfAlerts(parse_config(config), Store(tmp_path / "otlp.db"))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, PerfAlerts]]:
    system = make_system(tmp_path)
    with LiveServer(system) as srv:
        yield srv, system


def series(system: PerfAlerts) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    out = {}
    for s in system.store.list_series():
        out[(s.metric, tuple(sorted(s.labels.items())))] = system.store.query([s.id], 0, 1e11).value.tolist()
    return out


def _attr(target: Any, **kv: Any) -> None:
    for k, v in kv.items():
        a = target.add()
        a.key = k.replace("__", ".")
        if isinstance(v, bool):
            a.value.bool_value = v
        elif isinstance(v, int):
            a.value.int_value = v
        elif isinstance(v, float):
            a.value.double_value = v
        else:
            a.value.string_value = v


def histogram_request(name: str, bounds: list[float], counts: list[int], total: float, *, temporality: int = 1,
                      start: float | None = None, end: float | None = None, unit: str = "s",
                      **attrs: Any) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name, m.unit = name, unit
    m.histogram.aggregation_temporality = temporality
    end = time.time() if end is None else end
    p = m.histogram.data_points.add()
    p.start_time_unix_nano = int(((end - 60) if start is None else start) * 1e9)
    p.time_unix_nano = int(end * 1e9)
    p.count, p.sum = sum(counts), total
    p.explicit_bounds.extend(bounds)
    p.bucket_counts.extend(counts)
    _attr(p.attributes, **attrs)
    return req


# --------------------------------------------------------------------------- the expansion


def test_expand_keeps_count_and_sum_and_puts_each_value_in_its_bucket() -> None:
    b = explicit_buckets([0.5, 1, 2, 4], [0, 1, 2, 1, 0])
    vals = expand(b, 6.0, None, None)
    assert vals.size == 4 and vals.sum() == pytest.approx(6.0)
    assert 0.5 < vals[0] <= 1 and all(1 < v <= 2 for v in vals[1:3]) and 2 < vals[3] <= 4
    # one observation is exactly its sum; min/max narrow the open buckets
    assert expand(explicit_buckets([1, 2], [0, 0, 1]), 7.5, None, None).tolist() == [7.5]
    v = expand(explicit_buckets([1, 2], [3, 0, 2]), None, 0.2, 9.0)
    assert v.size == 5 and v.min() >= 0.2 and v.max() <= 9.0 and (v[:3] <= 1).all() and (v[3:] > 2).all()
    # a sum the buckets cannot reach: every value pushed to its bucket's edge, never beyond it
    v = expand(explicit_buckets([1, 2], [0, 4, 0]), 100.0, None, None)
    assert v.tolist() == [2.0] * 4


def test_percentile_from_buckets_is_an_interpolation_within_the_true_bucket() -> None:
    rng = np.random.default_rng(7)
    raw = rng.lognormal(0.0, 0.8, 500)
    bounds = DURATION_BOUNDS
    counts = np.bincount(np.searchsorted(bounds, raw, side="left"), minlength=len(bounds) + 1)
    vals = expand(explicit_buckets(bounds, counts.tolist()), float(raw.sum()), float(raw.min()), float(raw.max()))
    assert vals.size == raw.size and vals.sum() == pytest.approx(raw.sum())
    for q in (50, 95, 99):
        true_q, est = float(np.percentile(raw, q)), float(np.percentile(vals, q))
        i = int(np.searchsorted(bounds, true_q))
        lo, hi = (bounds[i - 1] if i else 0.0), (bounds[i] if i < len(bounds) else raw.max())
        assert lo <= est <= hi, (q, true_q, est, lo, hi)


# --------------------------------------------------------------------------- over HTTP


def test_protobuf_histogram_becomes_crew_samples_with_the_listener_labels(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    req = histogram_request("gen_ai.client.operation.duration", [0.5, 1, 2, 4], [0, 1, 2, 1, 0], 6.0,
                            gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o-mini",
                            gen_ai__agent__name="writer", gen_ai__provider__name="openai")
    r = httpx.post(srv.url + "/v1/metrics", content=req.SerializeToString(), headers=PB, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    resp = ExportMetricsServiceResponse.FromString(r.content)
    assert not resp.HasField("partial_success")
    got = series(system)
    key = (catalog.LLM_SECONDS, (("agent", "writer"), ("crew", "unknown"), ("model", "gpt-4o-mini"), ("task", "unknown")))
    assert sorted(got) == [key] and len(got[key]) == 4 and sum(got[key]) == pytest.approx(6.0)


def test_token_usage_in_json_with_gzip_gives_tokens_and_cost(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    end = int(time.time() * 1e9)
    point = {"startTimeUnixNano": str(end - 60 * 10**9), "timeUnixNano": str(end), "count": "2",
             "explicitBounds": [1, 4, 16, 64, 256, 1024, 4096], "min": 1000, "max": 1400}

    def pt(kind: str, counts: list[int], total: float, lo: float, hi: float) -> dict[str, Any]:
        return {**point, "sum": total, "bucketCounts": [str(c) for c in counts], "min": lo, "max": hi,
                "attributes": [{"key": "gen_ai.token.type", "value": {"stringValue": kind}},
                               {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o-mini"}},
                               {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}

    body = {"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "crew"}}]},
                                 "scopeMetrics": [{"scope": {"name": "x"}, "metrics": [{
                                     "name": "gen_ai.client.token.usage", "unit": "{token}",
                                     "histogram": {"aggregationTemporality": 1, "dataPoints": [
                                         pt("input", [0, 0, 0, 0, 0, 0, 2, 0], 2400, 1100, 1300),
                                         pt("output", [0, 0, 0, 0, 1, 1, 0, 0], 600, 200, 400)]}}]}]}]}
    r = httpx.post(srv.url + "/v1/metrics", content=gzip.compress(json.dumps(body).encode()), timeout=20,
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    assert r.json() == {}
    got = series(system)
    lab = (("agent", "unknown"), ("crew", "unknown"), ("model", "gpt-4o-mini"), ("task", "unknown"))
    assert sum(got[(catalog.LLM_PROMPT_TOKENS, lab)]) == pytest.approx(2400)
    assert sum(got[(catalog.LLM_COMPLETION_TOKENS, lab)]) == pytest.approx(600)
    cost = got[(catalog.COST_USD, lab)]
    assert len(cost) == 2 and sum(cost) == pytest.approx((2400 * 0.15 + 600 * 0.60) / 1e6)


def test_partial_success_keeps_the_good_points_and_reports_the_bad(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    req = histogram_request("gen_ai.execute_tool.duration", [1, 2], [1, 1, 0], 2.5, gen_ai__tool__name="Search",
                            gen_ai__agent__name="researcher")
    sm = req.resource_metrics[0].scope_metrics[0]
    bad = sm.metrics.add()
    bad.name = "gen_ai.client.operation.duration"
    bad.histogram.aggregation_temporality = 1
    p = bad.histogram.data_points.add()
    p.time_unix_nano, p.count = int(time.time() * 1e9), 3
    p.explicit_bounds.extend([1, 2])
    p.bucket_counts.extend([1, 2])  # two counts for two bounds: one is missing
    summ = sm.metrics.add()
    summ.name = "legacy.summary"
    summ.summary.data_points.add().count = 1
    g = sm.metrics.add()
    g.name = "queue.depth"
    gp = g.gauge.data_points.add()
    gp.time_unix_nano, gp.as_int = int(time.time() * 1e9), 7
    _attr(gp.attributes, **{"queue__name": "jobs"})
    r = httpx.post(srv.url + "/v1/metrics", content=req.SerializeToString(), headers=PB, timeout=20)
    assert r.status_code == 200
    ps = ExportMetricsServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_data_points == 2
    assert "gen_ai.client.operation.duration point 0: 2 bucket counts for 2 bounds" in ps.error_message
    assert "summary points are not stored" in ps.error_message
    got = series(system)
    tool = (catalog.TOOL_SECONDS, (("agent", "researcher"), ("crew", "unknown"), ("task", "unknown"), ("tool", "search")))
    assert sum(got[tool]) == pytest.approx(2.5) and got[("queue_depth", (("queue_name", "jobs"),))] == [7.0]
    assert not [k for k in got if k[0] == catalog.LLM_SECONDS]
    # JSON: the same answer in JSON (int64 as a string)
    r = httpx.post(srv.url + "/v1/metrics", timeout=20, json={"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "legacy.summary", "summary": {"dataPoints": [{"count": "1"}]}}]}]}]})
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedDataPoints"] == "1"


def test_malformed_wrong_type_oversized_and_token(tmp_path: Path) -> None:
    system = make_system(tmp_path)
    with LiveServer(system) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        for path in ("/v1/metrics", "/v1/traces"):
            r = c.post(path, content=b"\xff\xff\xff\x00 not protobuf", headers=PB)
            assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
            assert r.content[:2] == b"\x08\x03" and b"malformed protobuf" in r.content  # google.rpc.Status
            r = c.post(path, content=b'{"resourceMetrics": [', headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == 3 and "malformed" in r.json()["message"]
            r = c.post(path, content=b"{}", headers={"content-type": "text/plain"})
            assert r.status_code == 415 and "unsupported content type" in r.json()["message"]
            r = c.post(path, content=b"x", headers={**PB, "content-encoding": "br"})
            assert r.status_code == 415
            r = c.post(path, content=b"not gzip", headers={**PB, "content-encoding": "gzip"})
            assert r.status_code == 400
            big = b"\x00" * (16 * 1024 * 1024 + 10)
            r = c.post(path, content=big, headers=PB)
            assert r.status_code == 413
            bomb = gzip.compress(b"\x00" * (65 * 1024 * 1024))  # 64 KiB that inflate past the limit
            r = c.post(path, content=bomb, headers={**PB, "content-encoding": "gzip"})
            assert r.status_code == 413
            r = c.post(path, content=b"", headers=PB)  # an empty request: nothing to store, a success
            assert r.status_code == 200
        r = c.post("/v1/traces", headers={"content-type": "application/json"}, content=json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00"}]}]}]}))
        assert r.status_code == 400 and "not hex" in r.json()["message"]
        assert c.get("/v1/metrics").status_code == 405
    with LiveServer(system, token="s3cret-token") as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        body = ExportMetricsServiceRequest().SerializeToString()
        assert c.post("/v1/metrics", content=body, headers=PB).status_code == 401
        assert c.post("/v1/traces", content=body, headers={**PB, "authorization": "Bearer nope"}).status_code == 401
        ok = c.post("/v1/metrics", content=body, headers={**PB, "authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200


# --------------------------------------------------------------------------- spans


def _span(scope: Any, trace: bytes, sid: int, parent: int | None, name: str, start: float, end: float,
          error: bool = False, **attrs: Any) -> None:
    s = scope.spans.add()
    s.trace_id, s.span_id = trace, sid.to_bytes(8, "big")
    if parent is not None:
        s.parent_span_id = parent.to_bytes(8, "big")
    s.name = name
    s.start_time_unix_nano, s.end_time_unix_nano = int(start * 1e9), int(end * 1e9)
    if error:
        s.status.code = 2
    _attr(s.attributes, **attrs)


def test_openinference_spans_wait_for_their_kickoff_then_become_crew_series(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    t = time.time() - 30
    trace = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    first = ExportTraceServiceRequest()
    sc = first.resource_spans.add().scope_spans.add()
    _span(sc, trace, 3, 2, "gpt-4o-mini.llm_call", t + 1, t + 3.5, openinference__span__kind="LLM",
          llm__model_name="gpt-4o-mini", llm__token_count__prompt=1200, llm__token_count__completion=300)
    _span(sc, trace, 4, 2, "file_writer.run", t + 4, t + 4.25, openinference__span__kind="TOOL",
          tool__name="file_writer", tool__agent_role="writer", tool__task_name="write_report")
    _span(sc, trace, 5, 2, "gpt-4o-mini.llm_call", t + 5, t + 6, error=True, openinference__span__kind="LLM",
          llm__model_name="gpt-4o-mini")
    _span(sc, trace, 2, 1, "writer.write_report.execute", t + 0.5, t + 7, openinference__span__kind="AGENT",
          graph__node__id="writer", task_name="write_report", task_id="abc")
    r = httpx.post(srv.url + "/v1/traces", content=first.SerializeToString(), headers=PB, timeout=20)
    assert r.status_code == 200 and not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    assert series(system) == {}  # the crew is named by the kickoff span, not here yet
    # the kickoff arrives in the next export, as OTLP JSON with hex ids
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": trace.hex(), "spanId": (1).to_bytes(8, "big").hex(), "name": "docs_crew.kickoff",
        "startTimeUnixNano": str(int(t * 1e9)), "endTimeUnixNano": str(int((t + 8) * 1e9)), "kind": 1,
        "status": {"code": 1},
        "attributes": [{"key": "openinference.span.kind", "value": {"stringValue": "CHAIN"}},
                       {"key": "crew_key", "value": {"stringValue": "1b67"}}]}]}]}]}
    r = httpx.post(srv.url + "/v1/traces", json=body, timeout=20)
    assert r.status_code == 200 and r.json() == {}
    got = series(system)
    llm = (("agent", "writer"), ("crew", "docs_crew"), ("model", "gpt-4o-mini"), ("task", "write_report"))
    tool = (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report"), ("tool", "file_writer"))
    task = (("agent", "writer"), ("crew", "docs_crew"), ("task", "write_report"))
    assert got[(catalog.LLM_SECONDS, llm)] == pytest.approx([2.5, 1.0])
    assert got[(catalog.LLM_ERRORS, llm)] == [1.0]
    assert got[(catalog.LLM_PROMPT_TOKENS, llm)] == [1200.0] and got[(catalog.LLM_COMPLETION_TOKENS, llm)] == [300.0]
    assert got[(catalog.COST_USD, llm)] == pytest.approx([(1200 * 0.15 + 300 * 0.60) / 1e6])
    assert got[(catalog.TOOL_SECONDS, tool)] == pytest.approx([0.25])
    assert got[(catalog.TASK_SECONDS, task)] == pytest.approx([6.5])
    assert got[(catalog.KICKOFF_SECONDS, (("crew", "docs_crew"),))] == pytest.approx([8.0])
    assert len(got) == 8
    # an exporter's retry of the same spans is not counted twice
    httpx.post(srv.url + "/v1/traces", content=first.SerializeToString(), headers=PB, timeout=20)
    assert series(system) == got


def test_traceloop_genai_and_crewai_telemetry_spans(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    t = time.time() - 30
    req = ExportTraceServiceRequest()
    sc = req.resource_spans.add().scope_spans.add()
    tl = bytes(range(16))
    # Traceloop (opentelemetry-instrumentation-crewai): workflow > task > agent > llm
    _span(sc, tl, 1, None, "crewai.workflow", t, t + 10, gen_ai__operation__name="invoke_agent",
          gen_ai__provider__name="crewai", crewai__crew__name="content_crew")
    _span(sc, tl, 2, 1, "Write a report.task", t + 1, t + 9, traceloop__span__kind="task",
          crewai__task__description="Write a report.", crewai__task__agent="writer")
    _span(sc, tl, 3, 2, "writer.agent", t + 1, t + 9, traceloop__span__kind="agent", gen_ai__agent__name="writer")
    _span(sc, tl, 4, 3, "gpt-4o.llm", t + 2, t + 4, gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o",
          gen_ai__response__model="gpt-4o", gen_ai__usage__input_tokens=100, gen_ai__usage__output_tokens=20)
    # GenAI span conventions: invoke_workflow > invoke_agent > execute_tool (failed)
    g = bytes(range(1, 17))
    _span(sc, g, 1, None, "invoke_workflow support", t, t + 5, gen_ai__operation__name="invoke_workflow",
          gen_ai__workflow__name="support")
    _span(sc, g, 2, 1, "invoke_agent triage", t, t + 4, gen_ai__operation__name="invoke_agent",
          gen_ai__agent__name="triage")
    _span(sc, g, 3, 2, "execute_tool lookup", t + 1, t + 1.5, error=True, gen_ai__operation__name="execute_tool",
          gen_ai__tool__name="Lookup")
    bad = sc.spans.add()  # no ids: refused, the others kept
    bad.name = "broken"
    r = httpx.post(srv.url + "/v1/traces", content=req.SerializeToString(), headers=PB, timeout=20)
    ps = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert r.status_code == 200 and ps.rejected_spans == 1 and "span_id must be 8 bytes" in ps.error_message
    got = series(system)
    assert got[(catalog.KICKOFF_SECONDS, (("crew", "content_crew"),))] == pytest.approx([10.0])
    assert got[(catalog.TASK_SECONDS, (("agent", "writer"), ("crew", "content_crew"), ("task", "Write a report.")))] \
        == pytest.approx([8.0])
    llm = (("agent", "writer"), ("crew", "content_crew"), ("model", "gpt-4o"), ("task", "Write a report."))
    assert got[(catalog.LLM_SECONDS, llm)] == pytest.approx([2.0]) and got[(catalog.LLM_PROMPT_TOKENS, llm)] == [100.0]
    assert got[(catalog.KICKOFF_SECONDS, (("crew", "support"),))] == pytest.approx([5.0])
    assert got[(catalog.TASK_SECONDS, (("agent", "triage"), ("crew", "support"), ("task", "unknown")))] == [4.0]
    tool = (("agent", "triage"), ("crew", "support"), ("task", "unknown"), ("tool", "lookup"))
    assert got[(catalog.TOOL_SECONDS, tool)] == pytest.approx([0.5]) and got[(catalog.TOOL_ERRORS, tool)] == [1.0]


# --------------------------------------------------------------------------- the real SDK meter and exporter


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_sdk_meter_exports_genai_histograms_and_a_p95_rule_fires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 temporality: str) -> None:
    require("opentelemetry.sdk")
    require("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # the tests' default; this one exports to 127.0.0.1
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader

    system = make_system(tmp_path)
    with LiveServer(system) as srv:
        pref = {Histogram: AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE}
        exporter = OTLPMetricExporter(endpoint=srv.url + "/v1/metrics", preferred_temporality=pref)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        try:
            meter = provider.get_meter("crew-app")
            dur = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                         explicit_bucket_boundaries_advisory=DURATION_BOUNDS)
            tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                            explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096])
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                     "gen_ai.provider.name": "openai"}
            first = [0.3, 0.5, 0.7, 1.1, 1.9]
            second = [2.2, 3.0, 4.4, 0.9, 0.4, 0.6, 5.5, 6.5, 0.2, 7.0]
            for v in first:
                dur.record(v, attrs)
                tokens.record(1000, {**attrs, "gen_ai.token.type": "input"})
                tokens.record(250, {**attrs, "gen_ai.token.type": "output"})
            assert provider.force_flush(10_000)
            for v in second:
                dur.record(v, attrs)
            dur.record(1.5, {**attrs, "error.type": "timeout"})
            assert provider.force_flush(10_000)
        finally:
            provider.shutdown()
    got = series(system)
    lab = (("agent", "unknown"), ("crew", "unknown"), ("model", "gpt-4o-mini"), ("task", "unknown"))
    llm = got[(catalog.LLM_SECONDS, lab)]
    assert len(llm) == 16 and sum(llm) == pytest.approx(sum(first) + sum(second) + 1.5)
    assert got[(catalog.LLM_ERRORS, lab)] == [1.0]
    assert sum(got[(catalog.LLM_PROMPT_TOKENS, lab)]) == 5000 and len(got[(catalog.LLM_PROMPT_TOKENS, lab)]) == 5
    assert sum(got[(catalog.COST_USD, lab)]) == pytest.approx((5000 * 0.15 + 1250 * 0.60) / 1e6)
    res = system.evaluate()
    fired = [a for a in res.active if a.rule == "SlowLLM" and a.state.value == "firing"]
    assert len(fired) == 1 and fired[0].labels["model"] == "gpt-4o-mini"
    true_p95 = float(np.percentile(first + second + [1.5], 95))
    assert 5.12 < fired[0].value <= 10.24 and 5.12 < true_p95 <= 10.24  # same bucket: an interpolation within it


def test_cumulative_streams_baseline_reset_and_delta(tmp_path: Path) -> None:
    """The receiver alone: a stream older than the receiver is a baseline; then deltas; a reset counts whole."""
    rec = MetricsReceiver(started=time.time())
    t0 = time.time() - 600
    name = "gen_ai.execute_tool.duration"

    def point(counts: list[int], total: float, start: float, end: float) -> list[Any]:
        req = histogram_request(name, [1, 2], counts, total, temporality=2, start=start, end=end,
                                gen_ai__tool__name="search")
        return rec.ingest(req).samples

    assert point([1, 1, 0], 2.0, t0, t0 + 60) == []  # began before the receiver: baseline only
    s = point([2, 3, 0], 6.5, t0, t0 + 120)  # + one in (-inf,1], two in (1,2]
    assert len(s) == 3 and sum(x.value for x in s) == pytest.approx(4.5)
    assert all(t0 + 60 < x.ts <= t0 + 120 for x in s)
    s = point([0, 1, 0], 1.5, t0 + 130, t0 + 180)  # a new start time: a reset, counted whole
    assert [x.value for x in s] == [1.5]
    s = point([0, 0, 0], 0.0, t0 + 130, t0 + 240)
    assert s == []  # fewer than before with the same start: also a reset, but nothing in it
    assert rec.streams() == 1
    fresh = time.time()
    s = MetricsReceiver(started=fresh - 1).ingest(histogram_request(name, [1, 2], [0, 0, 2], 9.0, temporality=2,
                                                                    start=fresh, end=fresh + 1))
    assert len(s.samples) == 2 and sum(x.value for x in s.samples) == pytest.approx(9.0)


def test_one_environment_variable_and_the_token_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's set-up: OTEL_EXPORTER_OTLP_ENDPOINT (and the token in OTEL_EXPORTER_OTLP_HEADERS) is all
    the SDK exporters need; the signal paths /v1/traces and /v1/metrics are appended by them."""
    require("opentelemetry.sdk")
    require("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    system = make_system(tmp_path)
    with LiveServer(system, token="tok-123") as srv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20tok-123")
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
        mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(),
                                                                         export_interval_millis=3_600_000)])
        try:
            with tp.get_tracer("t").start_as_current_span("ops_crew.kickoff", attributes={
                    "openinference.span.kind": "CHAIN", "crew_key": "k"}):
                time.sleep(0.01)
            mp.get_meter("m").create_histogram("gen_ai.execute_tool.duration", unit="s").record(
                0.25, {"gen_ai.tool.name": "search", "gen_ai.agent.name": "ops"})
            assert mp.force_flush(10_000)
        finally:
            tp.shutdown()
            mp.shutdown()
    got = series(system)
    (kick,) = got[(catalog.KICKOFF_SECONDS, (("crew", "ops_crew"),))]
    assert 0.01 <= kick < 5
    tool = (catalog.TOOL_SECONDS, (("agent", "ops"), ("crew", "unknown"), ("task", "unknown"), ("tool", "search")))
    assert got[tool] == [0.25]


def test_the_daemon_receives_spans_and_a_rule_on_them_reaches_discord(tmp_path: Path) -> None:
    """`perf-alerts run` with a token: OTLP spans of a slow LLM call (protobuf, gzip, the token header) become
    crew_llm_call_seconds, the daemon's own evaluation fires the rule, and the alert is delivered to Discord."""
    import textwrap

    from fake_discord import fake_discord
    from test_daemon import HOOK_ID, api_up, free_port, start, stop, wait_for

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(textwrap.dedent("""
    global: {evaluation_interval: 0.5s}
    rules:
      - name: SlowLLM
        type: threshold
        metric: crew_llm_call_seconds
        aggregate: max
        window: 10m
        op: ">"
        value: 20
        severity: critical
        annotations: {summary: "{{ labels.agent }} LLM call took {{ value }}s"}
    receivers:
      - name: oncall
        discord: {webhook_url: "${TEST_HOOK}"}
    route: {receiver: oncall, group_by: [agent], group_wait: 0s, group_interval: 1s}
    """))
    db, log = tmp_path / "store.db", tmp_path / "daemon.log"
    t = time.time() - 40
    trace = bytes(range(16))
    req = ExportTraceServiceRequest()
    sc = req.resource_spans.add().scope_spans.add()
    _span(sc, trace, 1, None, "support_crew.kickoff", t, t + 35, openinference__span__kind="CHAIN", crew_key="k")
    _span(sc, trace, 2, 1, "triage.classify.execute", t + 1, t + 34, openinference__span__kind="AGENT",
          graph__node__id="triage", task_name="classify")
    _span(sc, trace, 3, 2, "gpt-4o.llm_call", t + 2, t + 32, openinference__span__kind="LLM", llm__model_name="gpt-4o")
    body = gzip.compress(req.SerializeToString())
    with fake_discord() as discord:
        port = free_port()
        p = start(cfg, db, port, {"TEST_HOOK": discord.url_for(HOOK_ID, "otlp-hook-secret"),
                                  "PERF_ALERTS_TOKEN": "daemon-otlp-token"}, log)
        try:
            wait_for(lambda: p.poll() is not None or _port_open(port), 20, "the daemon's HTTP server")
            assert p.poll() is None, log.read_text()
            headers = {**PB, "content-encoding": "gzip", "authorization": "Bearer daemon-otlp-token"}
            assert httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body, headers={**PB}, timeout=10
                              ).status_code == 401
            r = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body, headers=headers, timeout=10)
            assert r.status_code == 200 and r.content == b""
            msgs = wait_for(lambda: discord.messages(HOOK_ID), 20, "the Discord message")
            text = json.dumps(msgs[0])
            assert "SlowLLM" in text and "triage" in text
        finally:
            stop(p, log)
    assert not api_up(port)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_point_of_too_many_observations_is_refused_not_expanded() -> None:
    rec = MetricsReceiver()
    res = rec.ingest(histogram_request("gen_ai.client.operation.duration", [1, 2], [0, 150_000, 0], 200_000.0))
    assert (res.accepted, res.rejected, res.samples) == (0, 1, [])
    assert "150,000 observations in one point" in res.errors[0] and "limit 100,000" in res.errors[0]


def test_cumulative_deltas_stay_inside_the_streams_min_and_max() -> None:
    """The SDK's default temporality: every call took 1.0 s, in a [0, 5) bucket. The deltas' own min
    and max are unknown, but the cumulative point's bound them: a p95 of the stored values is 1.0,
    not 1.85 (found by a new user: a p95 rule fired on calls that all took 1.0 s)."""
    rec = MetricsReceiver(started=time.time() - 3600)
    t0 = time.time() - 600
    stored: list[float] = []
    for k in range(1, 4):
        req = histogram_request("gen_ai.client.operation.duration", [0, 5, 10], [0, 20 * k, 0, 0], 20.0 * k,
                                temporality=2, start=t0, end=t0 + 60 * k, gen_ai__request__model="m")
        p = req.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
        p.min, p.max = 1.0, 1.0
        stored += [s.value for s in rec.ingest(req).samples if s.metric == "crew_llm_call_seconds"]
    assert len(stored) == 60 and all(v == pytest.approx(1.0) for v in stored), sorted(stored)[:5]
