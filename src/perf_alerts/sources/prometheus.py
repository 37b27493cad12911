"""Prometheus as a metric source: a small client of its HTTP API (`/api/v1/query`, `/api/v1/query_range`).

A `source: prometheus` rule's PromQL runs here; the result (a vector, a matrix or a scalar)
becomes `PromSeries`: the metric name, the labels (without `__name__`) and the points, which the
rules layer (`rules/prometheus.py`) feeds to the same evaluation as the store's samples.

Every failure is a `PrometheusError` whose message says what went wrong and where, without the
token or any credentials in the URL: the server is not reachable, it timed out, it refused the
query (`bad_data`: a PromQL syntax error, with Prometheus' own message), or it answered
something that is not the API's JSON. The rule that ran the query reports it; the other rules
go on.

One `httpx.Client` per call (closed at once): queries run once per rule and cycle, so a pooled
connection would buy little and a leaked one costs a warning.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import httpx
import numpy as np

from perf_alerts import selfmetrics
from perf_alerts.errors import PerfAlertsError

__all__ = ["MAX_POINTS_PER_SERIES", "PromSeries", "PrometheusClient", "PrometheusError", "safe_url"]

MAX_POINTS_PER_SERIES = 10_000  # Prometheus refuses a range query over 11,000 points per series
MAX_ERROR_CHARS = 500


class PrometheusError(PerfAlertsError):
    """A query to the Prometheus source failed (unreachable, timeout, refused, unreadable answer).

    `unavailable`: the server did not answer at all (unreachable, timed out), so asking it again
    at once is no use."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass
class PromSeries:
    metric: str | None  # `__name__`, when the result keeps it
    labels: dict[str, str]
    ts: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)


def safe_url(url: str) -> str:
    """scheme://host[:port]/path: no user, password, query or fragment (for messages and logs)."""
    try:
        p = urlsplit(url)
        host = p.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{p.port}" if p.port else ""
        return f"{p.scheme}://{host}{port}{p.path.rstrip('/')}"
    except ValueError:
        return "<invalid URL>"


class PrometheusClient:
    """Runs PromQL on one Prometheus server. `token`: sent as `Authorization: Bearer`."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.shown = safe_url(url)
        self._token = token or None
        if self._token and "@" in urlsplit(self.url).netloc:  # a bearer token wins over user:password@
            p = urlsplit(self.url)
            self.url = p._replace(netloc=p.netloc.rpartition("@")[2]).geturl()
        self.timeout = float(timeout)
        self._transport = transport

    @classmethod
    def from_settings(cls, settings: Any, env: Mapping[str, str] | None = None) -> "PrometheusClient":
        """From the config's `prometheus:` section (`PrometheusSettings`); the token from the
        environment variable it names."""
        env = os.environ if env is None else env
        if not getattr(settings, "url", None):
            raise PrometheusError("no Prometheus server configured: set prometheus: {url: ...} or "
                                  "PERF_ALERTS_PROMETHEUS_URL")
        name = getattr(settings, "bearer_token_env", None)
        token = env.get(name) if name else None
        return cls(settings.url, token=token, timeout=float(settings.timeout))

    def __repr__(self) -> str:  # never the token
        return f"PrometheusClient({self.shown!r}, token={'set' if self._token else 'none'}, timeout={self.timeout})"

    # ------------------------------------------------------------------ the two endpoints
    def query(self, promql: str, at: float) -> list[PromSeries]:
        """An instant query at `at` (Unix seconds): every series' value at that time."""
        return self._call("query", {"query": promql, "time": _num(at)})

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[PromSeries]:
        """A range query over [start, end] every `step` seconds (widened so that no series has more
        than MAX_POINTS_PER_SERIES points)."""
        if end <= start:
            raise PrometheusError(f"empty range: start {start} is not before end {end}")
        step = max(float(step), (end - start) / MAX_POINTS_PER_SERIES, 0.001)
        return self._call("query_range", {"query": promql, "start": _num(start), "end": _num(end),
                                          "step": _num(step)})

    # ------------------------------------------------------------------ HTTP and parsing
    def _call(self, endpoint: str, params: dict[str, str]) -> list[PromSeries]:
        try:
            out = self._request(endpoint, params)
        except PrometheusError:
            selfmetrics.inc("prometheus_queries", outcome="error")
            raise
        selfmetrics.inc("prometheus_queries", outcome="ok")
        return out

    def _request(self, endpoint: str, params: dict[str, str]) -> list[PromSeries]:
        headers = {"Accept": "application/json", "User-Agent": "perf-alerts"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        where = f"Prometheus at {self.shown}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport, follow_redirects=False) as c:
                # POST form: a long query does not hit URL length limits (the API accepts both)
                resp = c.post(f"{self.url}/api/v1/{endpoint}", data=params, headers=headers)
        except httpx.TimeoutException:
            raise PrometheusError(f"{where} did not answer within {self.timeout:g}s (prometheus.timeout)",
                                  unavailable=True) from None
        except httpx.HTTPError as e:
            text = _short(str(e).replace(self.url, self.shown))
            raise PrometheusError(f"{where} is not reachable: {type(e).__name__}: {text}", unavailable=True) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            hint = " (is the url the Prometheus server's, e.g. http://host:9090?)" if resp.status_code in (404, 405) else ""
            raise PrometheusError(f"{where} answered HTTP {resp.status_code} without the API's JSON{hint}")
        if resp.status_code in (401, 403):
            raise PrometheusError(f"{where} refused the request: HTTP {resp.status_code} (check the bearer token: "
                                  "prometheus.bearer_token_env)")
        if body.get("status") != "success":
            kind = str(body.get("errorType") or f"HTTP {resp.status_code}")
            msg = _short(str(body.get("error") or "no error message"))
            what = "refused the query" if kind == "bad_data" else "failed the query"
            raise PrometheusError(f"{where} {what} ({kind}): {msg}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{where} answered without data")
        return _series_of(data, where)


def _series_of(data: dict[str, Any], where: str) -> list[PromSeries]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        t, v = _points([result])
        return [PromSeries(None, {}, t, v)]
    if kind == "string":
        raise PrometheusError(f"{where}: the query gives a string, not series")
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise PrometheusError(f"{where}: unknown result type {str(kind)[:40]!r}")
    out: list[PromSeries] = []
    for item in result:
        if not isinstance(item, dict):
            continue
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        name = labels.pop("__name__", None)
        raw = [item.get("value")] if kind == "vector" else (item.get("values") or [])
        t, v = _points(raw)
        out.append(PromSeries(name, labels, t, v))
    # series that differ only by their name (a query over several metrics) keep it as a label
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for s in out:
        key = tuple(sorted(s.labels.items()))
        seen[key] = seen.get(key, 0) + 1
    for s in out:
        if seen[tuple(sorted(s.labels.items()))] > 1 and s.metric is not None:
            s.labels["__name__"] = s.metric
    return out


def _points(raw: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """[[ts, "value"], ...] → finite points (NaN and ±Inf from PromQL arithmetic are dropped)."""
    ts: list[float] = []
    vals: list[float] = []
    for p in raw:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            continue
        try:
            t, v = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(t) and math.isfinite(v):
            ts.append(t)
            vals.append(v)
    return np.asarray(ts, dtype=np.float64), np.asarray(vals, dtype=np.float64)


def _num(x: float) -> str:
    """Unix seconds to the millisecond, rounded down: a time rounded up (…717.4996 sent as 717.500)
    made Prometheus answer with a point after the evaluation time, which the rule then left out,
    so an instant-query alert flapped between firing and resolved on every other cycle."""
    return f"{math.floor(float(x) * 1000) / 1000:.3f}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
