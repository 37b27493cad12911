"""The OTLP/HTTP receiver: `POST /v1/metrics` and `POST /v1/traces` on the API's port.

What an OpenTelemetry SDK exporter (`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:port`) sends:
`application/x-protobuf` or `application/json` (OTLP JSON: hex ids, int64 as strings, enum
numbers), optionally gzip. The answers are the OTLP/HTTP specification's:
- 200 with an `Export{Metrics,Trace}ServiceResponse` in the request's encoding; when some
  points or spans were refused, its `partial_success` says how many and why (the good ones
  are stored);
- 400 for a body that cannot be decoded, 415 for another content type or encoding, 413 for a
  body over the API's limit (16 MiB as sent, 64 MiB inflated) — the body of a 400/413/415 from
  this module is a `google.rpc.Status` (protobuf for a protobuf request, JSON otherwise);
- the API's own guard answers first, as for `/api/*`: 401 without the token when the server
  has one, 403 for a foreign Host, 413 for a declared length over the limit (JSON `ErrorOut`).

These operations are not in the OpenAPI schema of the JSON API: their contract is the OTLP one.
The decoding and the mapping onto the `crew_*` metrics live in `sources.otlp`; the receivers'
state (cumulative streams, spans waiting for their kickoff) lives as long as the app.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from perf_alerts import selfmetrics
from perf_alerts.notify.redact import redact

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts

log = logging.getLogger("perf_alerts.http")

METRICS_PATH = "/v1/metrics"
TRACES_PATH = "/v1/traces"


class OtlpReceivers:
    """The metrics and traces receivers of one app, made on first use (opentelemetry-proto loads then)."""

    def __init__(self, system: "PerfAlerts") -> None:
        self.system = system
        self.started = time.time()  # a cumulative stream that began after this counts from its first point
        self._lock = threading.Lock()
        self._metrics: Any = None
        self._traces: Any = None
        self.stored = 0  # samples written

    def _cost(self, model: str, prompt: float, completion: float) -> float | None:
        from perf_alerts.analytics.recommend import call_cost

        return call_cost(model, prompt, completion, self.system.config.pricing)

    def receiver(self, kind: str) -> Any:
        from perf_alerts.sources.otlp import MetricsReceiver, TracesReceiver

        with self._lock:
            if kind == "metrics":
                if self._metrics is None:
                    self._metrics = MetricsReceiver(cost=self._cost, started=self.started)
                return self._metrics
            if self._traces is None:
                self._traces = TracesReceiver(cost=self._cost)
            return self._traces

    def handle(self, kind: str, body: bytes, content_type: str | None, encoding: str | None) -> Response:
        """Decode, map, store; the OTLP answer (sync: runs on the thread pool)."""
        try:
            import google.protobuf  # noqa: F401
            import opentelemetry.proto  # noqa: F401

            from perf_alerts.sources.otlp import OtlpError, decode, response_body, status_body
        except ImportError:
            return Response(b'{"code":12,"message":"OTLP ingest needs the otlp extra: pip install '
                            b'\'perf-alerts[otlp]\'"}', status_code=501, media_type="application/json")
        mt = "application/json"
        try:
            msg, mt = decode(kind, body, content_type, encoding)
        except OtlpError as e:
            if e.status != 415:
                try:
                    from perf_alerts.sources.otlp import media_type

                    mt = media_type(content_type)
                except OtlpError:
                    pass
            return Response(status_body(mt, redact(str(e))), status_code=e.status, media_type=mt)
        res = self.receiver(kind).ingest(msg)
        if kind == "metrics":  # GET /metrics: refused data points count as rejected samples
            selfmetrics.inc("samples_rejected", res.rejected)
        if res.samples:
            self.stored += self.system.store.insert_samples(res.samples)
        return Response(response_body(kind, mt, res.rejected, redact(res.message)), status_code=200, media_type=mt)


def add_otlp_routes(app: FastAPI, system: "PerfAlerts") -> OtlpReceivers:
    """Mount POST /v1/metrics and /v1/traces on `app` (the guard of `create_app` covers them)."""
    receivers = OtlpReceivers(system)
    app.state.otlp = receivers

    async def _handle(kind: str, request: Request) -> Response:
        body = await request.body()  # over the limit: BodyTooLarge, answered 413 by BodySizeLimit
        return await run_in_threadpool(receivers.handle, kind, body, request.headers.get("content-type"),
                                       request.headers.get("content-encoding"))

    @app.post(METRICS_PATH, include_in_schema=False)
    async def otlp_metrics(request: Request) -> Response:
        return await _handle("metrics", request)

    @app.post(TRACES_PATH, include_in_schema=False)
    async def otlp_traces(request: Request) -> Response:
        return await _handle("traces", request)

    return receivers


__all__ = ["add_otlp_routes", "OtlpReceivers", "METRICS_PATH", "TRACES_PATH"]
