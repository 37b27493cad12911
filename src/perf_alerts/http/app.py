"""The JSON HTTP API (`/api/v1/...`) and the dashboard page (`/`), over one `PerfAlerts`.

Every handler is a plain `def`: FastAPI runs it in its thread pool and the store gives
each thread its own SQLite connection. Every user mistake is a 4xx with a JSON body
`{"error": "...", "detail": ...}` (`ErrorOut`); nothing a client sends can produce a 500.
The OpenAPI schema (`/api/v1/openapi.json`) lists every status of every operation.

Input bounds (`http.limits`): a request body is counted as it is read, chunked or not, and
answered 413 past MAX_BODY_BYTES (16 MiB) without being held; JSON is parsed so that a
number no sample can hold (an integer of 5,000 digits, 1e999) is that record's error, not
the request's. `POST /api/v1/metrics` is partial success: 200 with
`{"accepted", "rejected", "errors": ["record <i>: <why>", ...]}` when any sample is good (the
good ones are stored), 400 with that report as `detail` when none is.

Security (SPEC §8, §12):
- bound to loopback by default; `serve()` refuses any other address without a token;
- with a token, every `/api/*` request needs `Authorization: Bearer <token>` (compared in
  constant time); the page asks for it and keeps it in sessionStorage;
- without a token the `Host` header must name a loopback host (no DNS rebinding), and a
  browser request from another origin is refused (no cross-site ack/silence);
- webhook URLs never leave the process: receivers are listed by name and kind, and every
  error text goes through `redact()`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping
from urllib.parse import urlsplit

import numpy as np
from fastapi import Body, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from perf_alerts.errors import ConflictError, DeliveryError, InputError, NotFoundError, PerfAlertsError, StoreError
from perf_alerts.http.limits import BodySizeLimit, SafeJSONRoute
from perf_alerts.http.server import (RunningServer, ServeError, check_bind, is_loopback, make_server,
                                  serve_until_signal, start_server)
from perf_alerts.model import labels_match, parse_alert_states, parse_label_filter, validate_metric_name
from perf_alerts.notify.redact import redact, register_secret
from perf_alerts.timeutil import MAX_UNIX, MIN_UNIX, SystemClock, iso, parse_duration_arg, parse_timestamp

if TYPE_CHECKING:
    import uvicorn

    from perf_alerts.core import PerfAlerts
    from perf_alerts.manage.daemon import Daemon
    from perf_alerts.notify.pipeline import Notifier

log = logging.getLogger("perf_alerts.http")

STATIC_DIR = Path(__file__).parent / "static"
API_PREFIX = "/api/v1"
MAX_SAMPLES_PER_REQUEST = 50_000
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_POINTS = 500
MAX_SERIES = 20
HEALTH_TTL = 5.0  # seconds a health analysis is reused
# Unix seconds of 1970-01-01 .. 9999-12-31: anything else is a unit mistake (milliseconds?)
# Starlette's TestClient sends this Host; it is not resolvable, so it cannot be rebound.
_TEST_HOSTS = {"testserver"}
_SILENCE_ID_RE = re.compile(r"^[0-9a-fA-F]{1,64}$")


class ApiError(PerfAlertsError):
    """A request the HTTP layer itself refuses (its shape, its size): carries its own status."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


# The status of each class of the error hierarchy (see perf_alerts.errors); an error takes the
# status of its nearest classified ancestor, so `SilenceNotFound(SilenceError, NotFoundError)`
# is a 404 and `InvalidFingerprint(InputError, AlertNotFound)` a 400.
ERROR_STATUS: dict[type[BaseException], int] = {
    InputError: 400, NotFoundError: 404, ConflictError: 409, DeliveryError: 502, StoreError: 503,
}


def error_status(exc: PerfAlertsError) -> int:
    """The HTTP status of a perf-alerts error: its own for ApiError, else its nearest classified
    ancestor's (breadth first over the bases, in their declared order); 500 for the rest
    (ConfigError, DaemonError: the server's problem, not the client's)."""
    if isinstance(exc, ApiError):
        return exc.status
    level: list[type] = [type(exc)]
    seen: set[type] = set()
    while level:
        for cls in level:
            if cls in ERROR_STATUS:
                return ERROR_STATUS[cls]
        nxt: list[type] = []
        for cls in level:
            for base in cls.__bases__:
                if base not in seen:
                    seen.add(base)
                    nxt.append(base)
        level = nxt
    return 500


# --------------------------------------------------------------------------- JSON helpers


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null, numpy scalars become Python numbers."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


class SafeJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(_clean(content), ensure_ascii=False, allow_nan=False, default=str,
                          separators=(",", ":")).encode("utf-8")


def _error(status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None) -> SafeJSONResponse:
    body: dict[str, Any] = {"error": redact(error)}
    if detail is not None:
        body["detail"] = _redact_deep(detail)
    return SafeJSONResponse(body, status_code=status, headers=dict(headers or {}))


def _redact_deep(x: Any) -> Any:
    if isinstance(x, str):
        return redact(x)
    if isinstance(x, dict):
        return {k: _redact_deep(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_redact_deep(v) for v in x]
    return x


def downsample(ts: np.ndarray, vals: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points that keep each bucket's min and max (spikes stay visible)."""
    n = int(ts.shape[0])
    if n <= max_points:
        return ts, vals
    buckets = max(1, max_points // 2)
    keep: list[int] = []
    for idx in np.array_split(np.arange(n), buckets):
        if idx.size == 0:
            continue
        seg = vals[idx]
        a, b = int(idx[int(np.argmin(seg))]), int(idx[int(np.argmax(seg))])
        keep.extend(sorted({a, b}))
    k = np.asarray(keep[:max_points], dtype=np.int64)
    return ts[k], vals[k]


def rolling_aggregate(ts: np.ndarray, vals: np.ndarray, how: str, window: float, kind: str, start: float, end: float,
                      steps: int = 150) -> list[list[float]]:
    """The rule's window aggregate evaluated at `steps` instants over [start, end]: the line the
    threshold is compared with (a p95 over 5m is not the raw samples)."""
    from perf_alerts.analytics.stats import group_aggregate

    if ts.size == 0 or end <= start:
        return []
    out: list[list[float]] = []
    for at in np.linspace(start, end, steps):
        lo = int(np.searchsorted(ts, at - window, "right"))
        hi = int(np.searchsorted(ts, at, "right"))
        if hi <= lo:
            continue
        _, agg = group_aggregate(np.zeros(hi - lo, dtype=np.int64), ts[lo:hi], vals[lo:hi], how, window, kind)
        if agg.size and math.isfinite(float(agg[0])):
            out.append([round(float(at), 3), float(agg[0])])
    return out


# --------------------------------------------------------------------------- request and error bodies


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: str = Field(description="what went wrong, one line")
    detail: Any = Field(default=None, description=(
        "more, when there is more: for 422 a list of {loc, msg, type}; for a 400 of POST /metrics the "
        "per-record report {accepted, rejected, errors}; for an ambiguous fingerprint (409) {matches}"))


class MetricsOut(BaseModel):
    """What POST /api/v1/metrics did: good samples are stored, bad ones named by their index."""

    accepted: int = Field(description="samples stored")
    rejected: int = Field(description="samples refused")
    errors: list[str] = Field(description='"record <index>: <why>" for the first 100 refused samples')


class SLOOut(BaseModel):
    """One SLO (one split value of it): `SLOStatus.to_dict()`, the row `perf-alerts slo --json` prints."""

    name: str = Field(description="the SLO's name")
    kind: Literal["latency", "success", "budget"]
    labels: dict[str, str] = Field(description="the split (`by:`) label values of this row; {} when not split")
    objective: float | None = Field(description="fraction of good events (latency, success); null for budget SLOs")
    objective_text: str = Field(description='the objective in words, e.g. "99% of crew_task_seconds <= 60 s"')
    objective_display: str = Field(description='"99.00%", or "≤ $5.00" for a budget SLO')
    window: str = Field(description="the compliance window (budget SLOs: the period), e.g. 28d")
    start: str | None = Field(description="start of the window, ISO 8601 UTC")
    at: str | None = Field(description="when the SLO was judged, ISO 8601 UTC")
    events: int = Field(description="events (latency, success) or samples (budget) in the window")
    bad: float | None = Field(description="bad events, or the spend; null without data")
    achieved: float | None = Field(description="fraction good over the window (budget SLOs: the spend); null without data")
    achieved_text: str = Field(description='"99.51%", "$3.20" or "no data"')
    budget_remaining: float | None = Field(
        description="fraction of the error budget left (1 = untouched); negative when overspent; null without data")
    burn_rate: float | None = Field(
        description="burn rate over the last hour (1 = spends the budget exactly over the window); null without events")
    exhausted_at: str | None = Field(
        description="projected exhaustion of the budget within the window (ISO 8601 UTC); null if not projected")
    status: Literal["ok", "at risk", "breached", "no data"]
    held: bool | None = Field(description="false when breached, null without data")
    limit: float | None = Field(description="budget SLOs: the limit for the window")
    projected: float | None = Field(description="budget SLOs: the projected spend for the whole period")
    projected_text: str | None = Field(description='budget SLOs: the projected spend, e.g. "$4.10"')
    unit: str = Field(description="the metric's unit")
    why: str = Field(description="the status in one line")


class SLOReportOut(BaseModel):
    """Every configured SLO per split value: `slo_report()`, what `perf-alerts slo --json` prints."""

    at: str | None = Field(description="when the SLOs were judged (now), ISO 8601 UTC")
    window: str | None = Field(description="the window asked for; null: each SLO's own window (budget: current period)")
    slos: list[SLOOut]
    counts: dict[str, int] = Field(description='rows per status: {"ok", "at risk", "breached", "no data"}')


_ERROR_DESCRIPTIONS = {
    400: "Bad request: a parameter or body that cannot be used (the message names it), or malformed JSON",
    401: "Missing or wrong token (only when the server runs with a token): send Authorization: Bearer <token>",
    403: "Refused: the Host header is not a loopback name (DNS rebinding guard) or a cross-origin write",
    404: "Not found",
    409: "Conflict: an ambiguous fingerprint prefix, or a state that forbids the action",
    413: f"Request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB (counted as it is read, chunked too), "
         f"or more than {MAX_SAMPLES_PER_REQUEST:,} samples",
    422: "Invalid request: a parameter or body field of the wrong type, range or shape (detail lists each)",
    503: "A part of the system is not available (the store, the scheduler's status, the summary)",
}
_COMMON = (401, 403, 413, 503)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an operation can answer (plus the ones every
    /api operation can: no token, a foreign Host, an oversized body, an unavailable store)."""
    return {s: {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[s]} for s in sorted({*statuses, *_COMMON})}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AckIn(_Body):
    by: str = Field(default="dashboard", min_length=1, max_length=100)


class SilenceIn(_Body):
    matchers: list[str] | dict[str, Any] | None = Field(
        default=None, description='["agent=researcher", "alertname=~\\"High.*\\""] or {"agent": "researcher"}')
    fingerprint: str | None = Field(default=None, description="silence exactly this alert's series instead of matchers")
    # strict: `true` is no duration and no time (lax parsing would read it as 1)
    duration: StrictStr | StrictFloat | StrictInt | None = Field(
        default=None, description="e.g. 1h, or seconds (default 1h unless ends_at is given)")
    starts_at: StrictStr | StrictFloat | StrictInt | None = Field(
        default=None, description="ISO 8601 or Unix seconds (default now)")
    ends_at: StrictStr | StrictFloat | StrictInt | None = Field(default=None, description="ISO 8601 or Unix seconds")
    comment: str = Field(default="", max_length=1000)
    created_by: str = Field(default="dashboard", min_length=1, max_length=100)


# The documented shape of POST /api/v1/metrics. The handler takes any JSON and checks each sample
# itself (record_many: a bad sample is that record's error, the good ones are stored), so this is
# documentation of what a good sample is, not a gate.
_SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Sample", "required": ["metric", "value"], "additionalProperties": False,
    "properties": {
        "metric": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$", "maxLength": 200},
        "value": {"type": "number", "description": "a finite number"},
        "timestamp": {"description": "Unix seconds (1970 .. 9999) or ISO 8601 (naive is UTC); default now",
                      "anyOf": [{"type": "number", "minimum": 0, "maximum": 253402300799}, {"type": "string"}]},
        "labels": {"type": "object", "maxProperties": 32, "description": "name → value, at most 32",
                   "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$", "maxLength": 100},
                   "additionalProperties": {"type": "string", "maxLength": 1024}},
    },
}
_METRICS_BODY: dict[str, Any] = {
    "required": True,
    "description": "Samples: a list, `{\"samples\": [...]}`, or one sample. At most "
                   f"{MAX_SAMPLES_PER_REQUEST:,} samples and {MAX_BODY_BYTES // (1024 * 1024)} MiB per request.",
    "content": {"application/json": {
        "schema": {"anyOf": [
            {"type": "array", "items": _SAMPLE_SCHEMA, "minItems": 1, "maxItems": MAX_SAMPLES_PER_REQUEST},
            {"type": "object", "required": ["samples"], "additionalProperties": False,
             "properties": {"samples": {"type": "array", "items": _SAMPLE_SCHEMA, "minItems": 1,
                                        "maxItems": MAX_SAMPLES_PER_REQUEST}}},
            _SAMPLE_SCHEMA,
        ]},
        "examples": {
            "list": {"summary": "two samples", "value": [
                {"metric": "crew_task_seconds", "value": 12.5, "labels": {"agent": "researcher"}},
                {"metric": "crew_llm_errors", "value": 1, "timestamp": "2026-03-02T11:59:00Z",
                 "labels": {"agent": "writer"}}]},
            "wrapped": {"summary": "as {samples: [...]}", "value": {"samples": [
                {"metric": "crew_task_seconds", "value": 9, "timestamp": 1772452740}]}},
        },
    }},
}


# Documented, not enforced by FastAPI (the handlers answer a bad one with a 400 that says why)
_FINGERPRINT = PathParam(description="an alert's fingerprint, or a unique prefix of it (hex)",
                         json_schema_extra={"pattern": "^[0-9a-fA-F]{1,64}$"})
_SILENCE_EXAMPLES: dict[str, Any] = {
    "matchers": {"summary": "matchers, for an hour", "value": {
        "matchers": ["agent=researcher", 'alertname=~"High.*"'], "duration": "1h", "comment": "deploying"}},
    "labels": {"summary": "label values, for ten minutes", "value": {
        "matchers": {"agent": "writer"}, "duration": 600, "created_by": "api"}},
}


# --------------------------------------------------------------------------- the app


def _host_of(header: str) -> str:
    """'127.0.0.1:8080' → '127.0.0.1'; '[::1]:80' → '::1'."""
    try:
        return (urlsplit("//" + header).hostname or "").lower()
    except ValueError:
        return ""


def create_app(system: "PerfAlerts", *, token: str | None = None, notifier: "Notifier | None" = None,
               scheduler: object | None = None, policies: object | None = None,
               trusted_hosts: Iterable[str] | None = None, replica: str | None = None) -> FastAPI:
    """The API and the dashboard over `system`.

    `token`: when set, `/api/*` requires `Authorization: Bearer <token>`. `notifier`: the
    daemon's notifier (for receiver state); one is made when needed. `scheduler` and
    `policies`: objects with `.status() -> list[dict]` (None: their endpoints say so).
    `trusted_hosts`: Host names accepted without a token (default: loopback names).
    `replica`: the id of the daemon serving the app, shown in `/api/v1/status` (None: not a daemon).
    """
    if token is not None:
        if not token.strip():
            raise ServeError("the API token is empty")
        register_secret(token)
    token_bytes = token.encode() if token else None
    hosts = {h.lower() for h in (trusted_hosts if trusted_hosts is not None else ())}

    app = FastAPI(title="perf-alerts", version=_version(), docs_url=None, redoc_url=None,
                  openapi_url=f"{API_PREFIX}/openapi.json", redirect_slashes=False,
                  default_response_class=SafeJSONResponse)
    app.router.route_class = SafeJSONRoute  # JSON bodies parsed by http.limits.loads
    app.state.system = system
    app.state.token_required = token_bytes is not None  # start_server refuses a public address without one
    _notifier: list[Any] = [notifier]

    def get_notifier() -> Any:
        if _notifier[0] is None:
            from perf_alerts.notify.pipeline import Notifier

            _notifier[0] = Notifier(system)
        return _notifier[0]

    # ---------------------------------------------------------------- errors → JSON
    @app.exception_handler(PerfAlertsError)
    async def _known_error(_: Request, exc: PerfAlertsError) -> Response:
        """Every error of the hierarchy, mapped in this one place: the message as is, its class's status."""
        status = error_status(exc)
        if isinstance(exc, ApiError):
            return _error(status, exc.error, exc.detail)
        matches = getattr(exc, "matches", None)  # an ambiguous prefix: which alerts it could mean
        if status >= 500:
            log.error("HTTP API: %s", redact(f"{type(exc).__name__}: {exc}"))
        return _error(status, str(exc), {"matches": list(matches)[:20]} if isinstance(matches, list) else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            first = next(e for e in errs if e.get("type") == "json_invalid")
            return _error(400, "malformed JSON body", {"msg": str((first.get("ctx") or {}).get("error", first.get("msg")))})
        detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in errs]
        return _error(422, "invalid request: " + "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail[:5]), detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        msg = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path (Starlette names only the first route's)
            allowed = {m for r in app.router.routes if isinstance(r, APIRoute)
                       and r.matches(request.scope)[0] != Match.NONE for m in (r.methods or ())}
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return _error(exc.status_code, msg, None, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:  # a bug, never a user mistake
        log.exception("internal error in the HTTP API (%s %s)", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error (see the server log)")

    # ---------------------------------------------------------------- guard: host, origin, token, size
    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        host = _host_of(request.headers.get("host", ""))
        if token_bytes is None and not (is_loopback(host) or host in hosts or host in _TEST_HOSTS):
            return _error(403, "this server only answers requests addressed to a loopback host "
                               "(start it with a token to serve other hosts)")
        origin = request.headers.get("origin")
        if origin and request.method not in ("GET", "HEAD", "OPTIONS"):
            o = urlsplit(origin)
            if o.netloc.lower() != request.headers.get("host", "").lower():
                return _error(403, "cross-origin request refused")
        if (path.startswith(("/api/", "/v1/")) or path == "/metrics") and token_bytes is not None:  # /metrics: a scrape sends the token too
            auth = request.headers.get("authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token_bytes):
                return _error(401, "missing or wrong token: send Authorization: Bearer <token>",
                              headers={"WWW-Authenticate": 'Bearer realm="perf-alerts"'})
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                too_big = int(cl) > MAX_BODY_BYTES
            except ValueError:
                return _error(400, "bad Content-Length header")
            if too_big:
                return _error(413, f"request body too large (limit {MAX_BODY_BYTES // (1024 * 1024)} MiB)")
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if path.startswith("/api/") or path == "/metrics":
            response.headers.setdefault("Cache-Control", "no-store")
        else:
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
        return response

    # outermost: counts every request body as it is read (the guard's Content-Length check answers
    # sooner when the length is declared; this holds for chunked bodies and lying lengths too)
    def too_large(_scope: Any) -> Response:
        r = _error(413, f"request body too large (limit {MAX_BODY_BYTES // (1024 * 1024)} MiB)")
        r.headers["X-Content-Type-Options"] = "nosniff"
        r.headers["Cache-Control"] = "no-store"
        return r

    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, too_large=too_large)

    # ---------------------------------------------------------------- the page
    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        html = index_html.replace("{{TOKEN_REQUIRED}}", "true" if token_bytes else "false")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response((STATIC_DIR / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    # ---------------------------------------------------------------- metrics in
    @app.post(f"{API_PREFIX}/metrics", responses={200: {"model": MetricsOut, "description": (
                  "At least one sample stored; the refused ones are named in `errors` (partial success)")},
                  **_responses(400, 413, 422)}, openapi_extra={"requestBody": _METRICS_BODY})
    def post_metrics(body: Any = Body(..., description='[{"metric", "value", "timestamp"?, "labels"?}] or {"samples": [...]}')) -> Any:
        if isinstance(body, dict) and "samples" in body:
            extra = sorted(str(k)[:40] for k in body if k != "samples")
            if extra:
                raise ApiError(400, f"unknown field(s) next to \"samples\": {', '.join(extra[:10])}")
            records = body["samples"]
        else:
            records = body
        if isinstance(records, dict) and "metric" in records:
            records = [records]
        if not isinstance(records, list):
            raise ApiError(400, 'expected a JSON list of samples or {"samples": [...]}; '
                                'each sample is {"metric": name, "value": number, "timestamp"?: ISO 8601 or Unix seconds, '
                                '"labels"?: {name: value}}')
        if not records:
            raise ApiError(400, "no samples in the request")
        if len(records) > MAX_SAMPLES_PER_REQUEST:
            raise ApiError(413, f"too many samples in one request ({len(records)}; limit {MAX_SAMPLES_PER_REQUEST})")
        rep = system.record_many(records)  # the same validation as record_many() and the CLI
        accepted = rep.accepted
        result = {"accepted": accepted, "rejected": rep.rejected, "errors": rep.errors[:100]}
        if not accepted:
            raise ApiError(400, "no valid samples in the request", result)
        return result

    # ---------------------------------------------------------------- OTLP in: POST /v1/metrics, /v1/traces (http/otlp.py)
    from perf_alerts.http.otlp import add_otlp_routes

    add_otlp_routes(app, system)

    # ---------------------------------------------------------------- health and analysis
    health_cache: dict[tuple[float, str | None], tuple[float, dict[str, Any]]] = {}
    health_lock = threading.Lock()

    @app.get(f"{API_PREFIX}/health", responses=_responses(400, 422))
    def health(lookback: str | None = Query(None, description="e.g. 24h"),
               agent: str | None = Query(None, max_length=200)) -> Any:
        lb = parse_duration_arg(lookback, "lookback", default=86400.0, lo=60.0, hi=90 * 86400.0)
        key = (lb, agent)
        # every open dashboard asks every 10 s: one analysis per HEALTH_TTL serves them all
        with health_lock:
            hit = health_cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < HEALTH_TTL:
                return hit[1]
            rep = system.analyze(lookback=lb, agent=agent)
            # the scores judge the last `recent` (insights.recent_window) against the rest of the lookback:
            # the page must say "now vs the day", not "over the day" (a morning's incident is not in them)
            from perf_alerts.insights import recent_window
            from perf_alerts.timeutil import format_duration

            out = {"at": iso(system.clock.now()), "window": rep.window.to_dict(),
                   "recent": format_duration(recent_window(lb)), "overall": rep.health.to_dict(),
                   "agents": {name: h.to_dict() for name, h in rep.agents.items()}, "findings": rep.findings,
                   "series_analyzed": rep.series_analyzed}
            if len(health_cache) > 32:
                health_cache.clear()
            health_cache[key] = (time.monotonic(), out)
            return out

    from perf_alerts.manage.summary_cache import SummaryCache

    summary_cache = SummaryCache(system)  # opens nothing until the first request
    app.state.summary_cache = summary_cache

    @app.get(f"{API_PREFIX}/summary", responses=_responses(400, 422))
    def summary(period: str | None = Query(None, description="e.g. 7d")) -> Any:
        """The executive summary of the period ending now; computed once per state of the store and minute
        (a repeated request with nothing committed to the store in between is served from the cache)."""
        p = parse_duration_arg(period, "period", default=7 * 86400.0, lo=3600.0, hi=366 * 86400.0)
        try:
            return summary_cache.get(p).to_dict()
        except ImportError:
            raise ApiError(503, "the executive summary is not available in this build") from None

    @app.get(f"{API_PREFIX}/slos", responses={200: {"model": SLOReportOut, "description": (
                 "Each SLO per split value: objective, achieved, error budget left, burn rate (last hour), "
                 "projected exhaustion; the numbers `perf-alerts slo --json` prints")}, **_responses(400, 422)})
    def slos(window: str | None = Query(None, description="e.g. 7d: over this window instead of each SLO's own "
                                                          "(budget SLOs: instead of the current period, limit scaled)"),
             name: list[str] | None = Query(None, description="only this SLO (repeatable)")) -> Any:
        """Every configured SLO per split value at the server's now (`slo_report`, as `perf-alerts slo --json`)."""
        from perf_alerts.analytics.slo import slo_report

        w = None if window is None else parse_duration_arg(window, "window", lo=60.0, hi=366 * 86400.0)
        if name:
            unknown = sorted(set(name) - {x.name for x in system.config.slos})
            if unknown:
                raise ApiError(400, f"name: unknown SLO(s) {', '.join(u[:100] for u in unknown[:10])}; defined: "
                                    + (", ".join(x.name for x in system.config.slos) or "none"))
        return slo_report(system.store, system.config, system.clock.now(), w, name or None)

    # ---------------------------------------------------------------- alerts
    def _views(alerts: list[Any]) -> list[dict[str, Any]]:
        from perf_alerts.notify.mute import muting

        return [v.to_dict() for v in system.views_of(alerts, muting)]

    @app.get(f"{API_PREFIX}/alerts", responses=_responses(400, 422))
    def list_alerts(state: str | None = Query(None, description="pending, firing, resolved, active or all"),
                    limit: int = Query(200, ge=1, le=5000)) -> Any:
        alerts = system.alerts(parse_alert_states(state, "state"))
        return {"now": iso(system.clock.now()), "count": len(alerts), "alerts": _views(alerts[:limit])}

    @app.get(f"{API_PREFIX}/alerts/{{fingerprint}}", responses=_responses(400, 404, 409, 422))
    def get_alert(fingerprint: str = _FINGERPRINT) -> Any:
        a = system.resolve_fingerprint(fingerprint)
        d = _views([a])[0]
        d["events"] = [{**e, "at": iso(e["ts"])} for e in system.store.events(fingerprint=a.fingerprint)[-50:]]
        return d

    @app.post(f"{API_PREFIX}/alerts/{{fingerprint}}/ack", responses=_responses(400, 404, 409, 422))
    def ack_alert(fingerprint: str = _FINGERPRINT, body: AckIn | None = Body(None)) -> Any:
        return _views([system.ack(fingerprint, by=(body.by if body else "dashboard"))])[0]

    @app.get(f"{API_PREFIX}/alerts/{{fingerprint}}/series", responses=_responses(400, 404, 409, 422))
    def alert_series(fingerprint: str = _FINGERPRINT, lookback: str | None = Query(None, description="e.g. 6h")) -> Any:
        """The samples behind an alert: its rule's metric for the alert's series, with the threshold."""
        a = system.resolve_fingerprint(fingerprint)
        lb = parse_duration_arg(lookback, "lookback", default=6 * 3600.0, lo=60.0, hi=90 * 86400.0)
        rule = next((r for r in system.config.rules if r.name == a.rule), None)
        if rule is None:
            return {"fingerprint": a.fingerprint, "rule": a.rule, "metric": None, "series": [],
                    "threshold": a.threshold, "op": None, "note": f"rule {a.rule} is no longer configured"}
        if rule.source == "prometheus":  # its samples are in Prometheus, not in the store
            return _prometheus_points(a, rule, lb)
        skip = set(rule.labels) | {"alertname", "severity"}
        series = [s for s in system.store.list_series(rule.metric)
                  if all(m.matches(s.labels) for m in rule.matchers)
                  and all(a.labels.get(k) == v for k, v in s.labels.items() if k not in skip)]
        end = system.clock.now()
        # an alert whose last sample is older than the lookback still shows its data
        if a.last_true_at and a.last_true_at < end - lb:
            end = a.last_true_at
        # the threshold is a level of the metric only for threshold and forecast rules; for
        # trend (% change), anomaly (score) and absent (seconds) rules it is not drawn
        on_values = rule.type in ("threshold", "forecast")
        out = {"fingerprint": a.fingerprint, "rule": a.rule, "rule_type": rule.type, "metric": rule.metric,
               "op": rule.op, "threshold": (a.threshold if a.threshold is not None else rule.threshold) if on_values else None,
               "rule_threshold": rule.threshold, "value": a.value, "aggregate": rule.aggregate, "window": rule.window,
               "unit": system.config.metric_meta(rule.metric).unit if rule.metric else "",  # the y axis' unit
               **_series_points(series, end - lb, end)}
        if rule.type == "threshold":
            kind = system.config.metric_meta(rule.metric).kind
            blk = system.store.query([s.id for s in series[:MAX_SERIES]], end - lb - rule.window, end)
            for s, d in zip(series[:MAX_SERIES], out["series"]):
                t, v = blk.of(s.id)
                d["aggregated"] = rolling_aggregate(t, v, rule.aggregate, rule.window, kind, end - lb, end)
        return out

    def _prometheus_points(a: Any, rule: Any, lb: float) -> dict[str, Any]:
        """The chart of a `source: prometheus` rule's alert: its PromQL over the lookback (query_range),
        the alert's series only; a failed query is a note, not an error of the page."""
        from perf_alerts.sources.prometheus import PrometheusClient, PrometheusError

        end = system.clock.now()
        on_values = rule.type in ("threshold", "forecast")
        out: dict[str, Any] = {
            "fingerprint": a.fingerprint, "rule": a.rule, "rule_type": rule.type, "metric": rule.metric, "op": rule.op,
            "threshold": (a.threshold if a.threshold is not None else rule.threshold) if on_values else None,
            "rule_threshold": rule.threshold, "value": a.value, "aggregate": rule.aggregate, "window": rule.window,
            "unit": system.config.metric_meta(rule.metric).unit, "source": "prometheus", "query": rule.query,
            "start": end - lb, "end": end, "series": []}
        try:
            client = PrometheusClient.from_settings(system.config.prometheus)
            result = client.query_range(rule.query, end - lb, end, max(lb / MAX_POINTS, 1.0))
        except PrometheusError as e:
            out["note"] = redact(str(e))
            return out
        skip = set(rule.labels) | {"alertname", "severity"}
        for ps in result:
            if all(m.matches(ps.labels) for m in rule.matchers) and \
                    all(a.labels.get(k) == v for k, v in ps.labels.items() if k not in skip):
                dt, dv = downsample(ps.ts, ps.values)
                out["series"].append({"labels": ps.labels, "count": int(ps.ts.size),
                                      "points": [[round(float(x), 3), float(y)] for x, y in zip(dt, dv)]})
                if len(out["series"]) >= MAX_SERIES:
                    break
        return out

    def _series_points(series: list[Any], start: float, end: float) -> dict[str, Any]:
        series = series[:MAX_SERIES]
        blk = system.store.query([s.id for s in series], start, end)
        out = []
        for s in series:
            t, v = blk.of(s.id)
            dt, dv = downsample(t, v)
            out.append({"labels": s.labels, "count": int(t.size),
                        "points": [[round(float(x), 3), float(y)] for x, y in zip(dt, dv)]})
        return {"start": start, "end": end, "series": out}

    @app.get(f"{API_PREFIX}/series", responses=_responses(400, 422))
    def series_endpoint(metric: str = Query(..., description="metric name", json_schema_extra={
                            "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$", "maxLength": 200}),
                        labels: str | None = Query(None, description="agent=researcher,task=x or a JSON object"),
                        lookback: str | None = Query(None, description="e.g. 6h")) -> Any:
        validate_metric_name(metric)
        want = parse_label_filter(labels, "labels")
        lb = parse_duration_arg(lookback, "lookback", default=6 * 3600.0, lo=60.0, hi=90 * 86400.0)
        series = [s for s in system.store.list_series(metric) if labels_match(s.labels, want)]
        end = system.clock.now()
        res = _series_points(series, end - lb, end)
        return {"metric": metric, "labels": want, "series_total": len(series), **res}

    # ---------------------------------------------------------------- silences
    @app.get(f"{API_PREFIX}/silences", responses=_responses(422))
    def list_silences_ep(all: bool = Query(False, description="include expired silences")) -> Any:  # noqa: A002
        from perf_alerts.notify.silence import list_silences

        now = system.clock.now()
        items = [s for s in list_silences(system.store) if all or s.state(now) != "expired"]
        return {"silences": [s.to_dict(now) for s in reversed(items)]}

    @app.post(f"{API_PREFIX}/silences", status_code=201, responses=_responses(400, 404, 409, 422))
    def add_silence_ep(body: SilenceIn = Body(openapi_examples=_SILENCE_EXAMPLES)) -> Any:
        from perf_alerts.notify.silence import add_silence

        now = system.clock.now()
        if (body.matchers is None) == (body.fingerprint is None):
            raise ApiError(400, 'give either "matchers" or "fingerprint" (the alert to silence)')
        matchers: Any = body.matchers
        if body.fingerprint is not None:
            a = system.resolve_fingerprint(body.fingerprint)
            # this alert's series exactly: its rule plus every label except the severity
            matchers = {k: v for k, v in sorted(a.labels.items()) if k != "severity"}
            matchers["alertname"] = a.labels.get("alertname", a.rule)
        starts = now if body.starts_at is None else parse_timestamp(body.starts_at)
        if body.ends_at is not None:
            if body.duration is not None:
                raise ApiError(400, 'give "duration" or "ends_at", not both')
            ends = parse_timestamp(body.ends_at)
        else:
            ends = starts + parse_duration_arg(body.duration, "duration", default=3600.0, lo=1.0, hi=366 * 86400.0)
        if not (MIN_UNIX <= starts <= MAX_UNIX and MIN_UNIX <= ends <= MAX_UNIX):
            raise ApiError(400, "starts_at/ends_at out of range (Unix seconds or ISO 8601)")
        sil = add_silence(system.store, matchers, starts, ends, body.created_by, body.comment, now)
        return sil.to_dict(now)

    @app.delete(f"{API_PREFIX}/silences/{{silence_id}}", responses=_responses(400, 404, 422))
    def expire_silence_ep(silence_id: str = PathParam(description="the silence's id (hex)", json_schema_extra={
                              "pattern": _SILENCE_ID_RE.pattern})) -> Any:
        from perf_alerts.notify.silence import expire_silence

        if not _SILENCE_ID_RE.match(silence_id):
            raise ApiError(400, f"silence id {silence_id[:80]!r} is not valid (hex characters)")
        now = system.clock.now()
        return expire_silence(system.store, silence_id.lower(), now).to_dict(now)

    # ---------------------------------------------------------------- notifications
    @app.get(f"{API_PREFIX}/notifications", responses=_responses(400, 422))
    def notifications(state: str | None = Query(None, description="pending, failed, delivered or dead"),
                      limit: int = Query(50, ge=1, le=500)) -> Any:
        from perf_alerts.notify.pipeline import list_notifications

        out = []
        rule_of: dict[str, str | None] = {}
        for n in list_notifications(system, state or None, limit).items:
            d = n.to_dict()
            for k in ("last_error", "title", "group_key"):
                if isinstance(d.get(k), str):
                    d[k] = redact(d[k])
            # which alerts it announced, by rule name: "HighLatency firing", not "1 firing"
            rules = [str(a["rule"]) for a in n.body.get("alerts", []) if isinstance(a, dict) and a.get("rule")]
            if not rules:
                for fp in d.get("alerts") or []:
                    if fp not in rule_of:
                        stored = system.store.get_alert(fp)
                        rule_of[fp] = stored.rule if stored is not None else None
                    if rule_of[fp]:
                        rules.append(str(rule_of[fp]))
            d["rules"] = sorted(set(rules))
            out.append(d)
        return {"notifications": out, "receivers": _receivers()}

    def _receivers() -> list[dict[str, Any]]:
        try:
            disabled = get_notifier().disabled_receivers()
        except Exception:  # the receivers list must not take the page down
            log.exception("receiver state unavailable")
            disabled = {}
        return [{"name": r.name, "kind": r.kind, "disabled": r.name in disabled,
                 "reason": redact(disabled[r.name]) if r.name in disabled else None} for r in system.config.receivers]

    @app.get(f"{API_PREFIX}/receivers", responses=_responses())
    def receivers() -> Any:
        return {"receivers": _receivers()}

    # ---------------------------------------------------------------- schedules and policies
    def _status_of(obj: object | None, what: str) -> dict[str, Any]:
        if obj is None:  # `perf-alerts dashboard`: the persisted state, as `perf-alerts schedules` shows it
            if what == "schedules":
                from perf_alerts.manage.schedules import Scheduler

                obj = Scheduler(system)
            else:
                from perf_alerts.manage.policies import PolicyEngine

                obj = PolicyEngine(system)
        status = getattr(obj, "status", None)
        if not callable(status):
            return {what: [], "note": f"{what} status is not available"}
        try:
            items = status()
        except Exception as e:
            log.exception("%s status is not available", what)
            raise ApiError(503, f"{what} status is not available: {type(e).__name__}: {e}") from None
        if isinstance(items, dict):
            items = items.get(what, list(items.values()))
        return {what: [_jsonable_item(x) for x in (items or [])]}

    @app.get(f"{API_PREFIX}/schedules", responses=_responses())
    def schedules() -> Any:
        return _status_of(scheduler, "schedules")

    @app.get(f"{API_PREFIX}/policies", responses=_responses())
    def policies_ep() -> Any:
        return _status_of(policies, "policies")

    # ---------------------------------------------------------------- Prometheus exposition (http/exposition.py)
    collector: list[Any] = []

    @app.get("/metrics", response_class=Response, responses={200: {
                 "description": "perf-alerts' own health in the Prometheus text format (version 0.0.4)",
                 "content": {"text/plain": {"schema": {"type": "string"}}}}, **_responses()})
    def prometheus_metrics() -> Response:
        """Alerts, outbox, deliveries, evaluation and ingest counters, replicas: read at scrape time."""
        try:
            from perf_alerts.http.exposition import CONTENT_TYPE, PerfAlertsCollector, exposition
            if not collector:
                collector.append(PerfAlertsCollector(system, replica=replica,
                                                     disabled_receivers=lambda: get_notifier().disabled_receivers()))
            body = exposition(collector[0])
        except ImportError:
            raise ApiError(503, "GET /metrics needs prometheus-client: pip install 'perf-alerts[prometheus]'") from None
        return Response(body, media_type=CONTENT_TYPE)

    # ---------------------------------------------------------------- overview for the page
    @app.get(f"{API_PREFIX}/status", responses=_responses())
    def status() -> Any:
        from perf_alerts.manage.cluster import cluster_status

        last = system.store.kv_get("last_evaluation")
        # the daemons sharing the store (wall clock: heartbeats and leases are real time, whatever system.clock says)
        cluster = cluster_status(system.store, SystemClock().now(), float(system.config.global_.evaluation_interval))
        return {"now": iso(system.clock.now()), "version": _version(), "token_required": token_bytes is not None,
                "rules": len(system.config.rules), "last_evaluation": None if not last else {
                    "at": iso(last.get("at")), "rules": last.get("rules"), "errors": [redact(e) for e in last.get("errors", [])]},
                "cluster": {**_jsonable_item(cluster.to_dict()), "replica": replica}}

    return app


def _jsonable_item(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): (redact(v) if isinstance(v, str) else _jsonable_item(v)) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable_item(v) for v in x]
    if hasattr(x, "to_dict") and callable(x.to_dict):
        return _jsonable_item(x.to_dict())
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return redact(str(x))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("perf-alerts")
    except Exception:
        return "0"


# --------------------------------------------------------------------------- serving (http.server does the work)


def serve(system: "PerfAlerts", host: str = "127.0.0.1", port: int = 8080, token: str | None = None, *,
          on_started: Callable[[RunningServer], None] | None = None, **app_kwargs: Any) -> None:
    """Serve the API and dashboard over `system` until SIGINT/SIGTERM (blocking; `perf-alerts dashboard`)."""
    check_bind(host, token)  # before building the app: the refusal is the whole answer
    asyncio.run(serve_until_signal(create_app(system, token=token, **app_kwargs), host, port, on_started))


async def serve_for_daemon(system: "PerfAlerts", daemon: "Daemon") -> RunningServer:
    """The daemon's dashboard and API (`Daemon(serve_http=serve_for_daemon)`, passed by `perf-alerts run`):
    the app shows the daemon's own notifier, scheduler and policies, on its host, port and token."""
    app = create_app(system, token=daemon.token, notifier=daemon.notifier, scheduler=daemon.scheduler,
                     policies=daemon.policies, replica=daemon.replica.id)
    return await start_server(app, daemon.host, daemon.port)


def build_server(system: "PerfAlerts", host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 **app_kwargs: Any) -> "uvicorn.Server":
    """An unstarted server over `system` for a caller that runs it on its own thread (the tests' live server)."""
    check_bind(host, token)
    return make_server(create_app(system, token=token, **app_kwargs), host, port)


__all__ = ["create_app", "ApiError", "error_status", "ServeError", "check_bind", "is_loopback", "serve",
           "serve_for_daemon", "build_server", "downsample", "rolling_aggregate"]
