"""OTLP ingest throughput: `POST /v1/metrics` (protobuf) beside `POST /api/v1/metrics` (JSON), one server, one run.

    python bench/otlp_ingest.py [--seconds 8] [--points 500] [--observations 4]

`perf-alerts --db FRESH dashboard --port 0` (the daemon's HTTP app: same routes, same guard) serves a
fresh SQLite store on 127.0.0.1 in a process of its own; this process is the client, one connection
at a time (a new connection per request, as an exporter's short-lived connections), for `--seconds`
each:

- OTLP: ExportMetricsServiceRequests of `--points` delta `gen_ai.client.operation.duration`
  histogram points (semantic-convention buckets), `--observations` observations each, over 4 agents
  × 2 models × 3 tasks; points/s accepted and the samples/s they became (each observation is a sample);
- OTLP cumulative: the same points with cumulative temporality (each request's points are the next
  state of the same streams: the receiver subtracts the previous state);
- OTLP spans: ExportTraceServiceRequests of `--points` OpenInference LLM spans with their task and
  kickoff spans (one trace per 10 LLM spans); spans/s (each LLM span stores its duration, its two
  token counts and, the default config pricing the model, its cost);
- JSON API: `POST /api/v1/metrics` of `--points × --observations` samples per request; samples/s.

Prints one line per case: requests, points (or samples) per second, samples stored per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _dashboard import start_dashboard  # noqa: E402

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
AGENTS, MODELS, TASKS = ["researcher", "writer", "reviewer", "editor"], ["gpt-4o", "gpt-4o-mini"], ["a", "b", "c"]


def _kv(target: Any, key: str, value: str) -> None:
    a = target.add()
    a.key, a.value.string_value = key, value


class MetricsBody:
    """Successive export requests; cumulative ones carry each stream's running totals."""

    def __init__(self, points: int, observations: int, cumulative: bool) -> None:
        self.points, self.obs, self.cumulative = points, observations, cumulative
        self.start = int(time.time() * 1e9)
        self.state: dict[int, list[int]] = {}
        self.sums: dict[int, float] = {}
        self.rng = random.Random(1)

    def next(self) -> bytes:
        req = ExportMetricsServiceRequest()
        m = req.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name, m.unit = "gen_ai.client.operation.duration", "s"
        m.histogram.aggregation_temporality = 2 if self.cumulative else 1
        now = int(time.time() * 1e9)
        for i in range(self.points):
            p = m.histogram.data_points.add()
            counts = [0] * (len(BOUNDS) + 1)
            total = 0.0
            for _ in range(self.obs):
                v = self.rng.lognormvariate(0.0, 0.8)
                counts[sum(1 for b in BOUNDS if b < v)] += 1
                total += v
            if self.cumulative:
                prev = self.state.get(i, [0] * len(counts))
                counts = [a + b for a, b in zip(prev, counts)]
                self.state[i] = counts
                total += self.sums.get(i, 0.0)
                self.sums[i] = total
                p.start_time_unix_nano = self.start
            else:
                p.start_time_unix_nano = now - 10**9
            p.time_unix_nano = now
            p.count, p.sum = sum(counts), total
            p.explicit_bounds.extend(BOUNDS)
            p.bucket_counts.extend(counts)
            _kv(p.attributes, "gen_ai.operation.name", "chat")
            _kv(p.attributes, "gen_ai.request.model", MODELS[i % 2])
            _kv(p.attributes, "gen_ai.agent.name", AGENTS[(i // 2) % 4])
            _kv(p.attributes, "gen_ai.task.name", TASKS[(i // 8) % 3])
            _kv(p.attributes, "stream", str(i))  # distinct streams (one per point of a request)
        return bytes(req.SerializeToString())


class TracesBody:
    def __init__(self, spans: int) -> None:
        self.spans, self.n = spans, 0

    def next(self) -> bytes:
        req = ExportTraceServiceRequest()
        sc = req.resource_spans.add().scope_spans.add()
        now = time.time() - 5
        for i in range(self.spans):
            if i % 10 == 0:  # a new trace: kickoff > task > 10 LLM calls
                self.n += 1
                trace = self.n.to_bytes(16, "big")
                kid, tid = (self.n * 1000 + 1).to_bytes(8, "big"), (self.n * 1000 + 2).to_bytes(8, "big")
                for sid, parent, name, kind in ((kid, b"", "bench_crew.kickoff", "CHAIN"),
                                                (tid, kid, "writer.a.execute", "AGENT")):
                    s = sc.spans.add()
                    s.trace_id, s.span_id, s.parent_span_id, s.name = trace, sid, parent, name
                    s.start_time_unix_nano, s.end_time_unix_nano = int(now * 1e9), int((now + 4) * 1e9)
                    _kv(s.attributes, "openinference.span.kind", kind)
                    _kv(s.attributes, "crew_key" if kind == "CHAIN" else "task_name", "a")
                    if kind == "AGENT":
                        _kv(s.attributes, "graph.node.id", AGENTS[self.n % 4])
            s = sc.spans.add()
            s.trace_id, s.span_id, s.parent_span_id = trace, (self.n * 1000 + 10 + i % 10).to_bytes(8, "big"), tid
            s.name = "gpt-4o-mini.llm_call"
            s.start_time_unix_nano, s.end_time_unix_nano = int(now * 1e9), int((now + 0.5 + (i % 7) / 10) * 1e9)
            _kv(s.attributes, "openinference.span.kind", "LLM")
            _kv(s.attributes, "llm.model_name", MODELS[i % 2])
            for k, v in (("llm.token_count.prompt", 1200), ("llm.token_count.completion", 300)):
                a = s.attributes.add()
                a.key, a.value.int_value = k, v
        return bytes(req.SerializeToString())


def json_body(samples: int, rng: random.Random) -> bytes:
    now = time.time()
    return json.dumps([{"metric": "crew_llm_call_seconds", "value": rng.lognormvariate(0.0, 0.8),
                        "timestamp": now - (i % 1000) * 1e-3,
                        "labels": {"crew": "bench", "agent": AGENTS[i % 4], "model": MODELS[i % 2],
                                   "task": TASKS[i % 3], "stream": str(i % 977)}}
                       for i in range(samples)]).encode()


def post(host: str, port: int, path: str, body: bytes, ctype: str) -> bytes:
    con = http.client.HTTPConnection(host, port, timeout=120)
    con.request("POST", path, body=body, headers={"Content-Type": ctype})
    r = con.getresponse()
    data = r.read()
    con.close()
    if r.status != 200:
        raise SystemExit(f"POST {path}: {r.status} {data[:300]!r}")
    return data


def run(seconds: float, make: Callable[[], bytes], send: Callable[[bytes], bytes]) -> tuple[int, float]:
    """Requests sent for about `seconds` (bodies built outside the timing); (requests, seconds spent sending)."""
    n, spent = 0, 0.0
    while spent < seconds:
        body = make()
        t = time.perf_counter()
        send(body)
        spent += time.perf_counter() - t
        n += 1
    return n, spent


def count_samples(db: Path) -> int:
    import sqlite3

    con = sqlite3.connect(str(db))
    try:
        return int(con.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--points", type=int, default=500, help="data points (spans) per OTLP request")
    ap.add_argument("--observations", type=int, default=4, help="observations per histogram point")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        proc, url = start_dashboard(db, tmp)
        try:
            host, port_s = url.rsplit("/", 1)[-1].split(":")
            port = int(port_s)
            pb = "application/x-protobuf"
            print(f"server: {url} (perf-alerts dashboard, fresh SQLite store); {args.points} points x "
                  f"{args.observations} observations per OTLP request; {args.seconds:g} s per case")
            rng = random.Random(2)
            cases: list[tuple[str, Callable[[], bytes], str, str, int, str]] = [
                ("OTLP metrics, delta (protobuf)", MetricsBody(args.points, args.observations, False).next,
                 "/v1/metrics", pb, args.points, "points"),
                ("OTLP metrics, cumulative (protobuf)", MetricsBody(args.points, args.observations, True).next,
                 "/v1/metrics", pb, args.points, "points"),
                ("OTLP spans, OpenInference (protobuf)", TracesBody(args.points).next, "/v1/traces", pb,
                 args.points + 2 * (args.points // 10), "spans"),
                ("POST /api/v1/metrics (JSON)", lambda: json_body(args.points * args.observations, rng),
                 "/api/v1/metrics", "application/json", args.points * args.observations, "samples"),
            ]
            # warm-up: the first OTLP request loads opentelemetry-proto in the server
            post(host, port, "/v1/metrics", ExportMetricsServiceRequest().SerializeToString(), pb)
            for name, make, path, ctype, per_request, unit in cases:
                before = count_samples(db)
                n, spent = run(args.seconds, make, lambda b, p=path, c=ctype: post(host, port, p, b, c))
                stored = count_samples(db) - before
                print(f"{name:40s} {n:4d} requests  {n * per_request / spent:9,.0f} {unit}/s  "
                      f"{stored / spent:9,.0f} samples stored/s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
