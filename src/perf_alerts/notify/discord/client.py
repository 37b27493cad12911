"""Async Discord webhook delivery that honours Discord's rate limits and classifies failures.

Why: Discord bans IPs that keep sending after 429s or to deleted webhooks, and a notifier
that drops a 429'd message loses the alert. So this client (1) never sends while a bucket
or the global limit says wait, (2) waits out a 429 and resends the same request, (3) tells
the caller's outbox exactly what to do next: delivered / retry (with when) / dead / disabled.
It never retries on its own beyond a few 429s: backoff for 5xx belongs to the outbox.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Protocol

import httpx

from perf_alerts.notify.discord.limits import validate_payload
from perf_alerts.notify.discord.payload import DiscordMessage
from perf_alerts.notify.discord.ratelimit import Limits, MemoryRateLimits, RateLimitState
from perf_alerts.notify.redact import redact, register_secret

__all__ = ["DeliveryResult", "DiscordClient", "backoff_delay"]

log = logging.getLogger("perf_alerts.notify.discord")

Outcome = Literal["delivered", "retry", "dead", "disabled"]
_WEBHOOK_ID_RE = re.compile(r"/webhooks/(\d+)/[^/?#\s]+")
_SNOWFLAKE_RE = re.compile(r"^[0-9]{1,20}$")


class _RedactFilter(logging.Filter):
    """httpx logs every request URL at INFO; the URL holds the webhook token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken record is not ours to fix, but must not leak either
            msg = str(record.msg)
        record.msg = redact(msg)
        record.args = None
        return True


_redact_filter = _RedactFilter()
for _name in ("httpx", "httpcore"):
    _lg = logging.getLogger(_name)
    if _redact_filter not in _lg.filters:
        _lg.addFilter(_redact_filter)


class _ClockLike(Protocol):
    def now(self) -> float: ...


class _MonotonicClock:
    def now(self) -> float:
        return time.monotonic()


@dataclass
class DeliveryResult:
    """What happened to one request, and what the caller's outbox should do next."""

    outcome: Outcome
    message_id: str | None = None
    status_code: int | None = None
    error: str | None = None  # always redacted
    retry_after: float | None = None  # for "retry": seconds until it may be tried again
    requests: int = 0
    rate_limited: int = 0

    def __post_init__(self) -> None:
        if self.error is not None:
            self.error = redact(self.error)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt)), attempt ≥ 0.

    Full jitter spreads retries of many failed notifications so they do not hit Discord in
    lockstep after an outage.
    """
    r = rng if rng is not None else random
    ceiling = min(cap, base * (2.0 ** min(max(attempt, 0), 62)))
    return r.uniform(0.0, ceiling)


def _float_header(headers: httpx.Headers, name: str) -> float | None:
    v = headers.get(name)
    if v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f >= 0 and f == f and f != float("inf") else None


def _summarise_error(body: Any, status: int) -> str:
    """Discord's error JSON in one line: code, message, and the offending field paths."""
    if not isinstance(body, dict):
        return f"HTTP {status}"
    parts = [f"HTTP {status}"]
    if "code" in body:
        parts.append(f"code {body.get('code')}")
    if body.get("message"):
        parts.append(str(body["message"]))
    errs: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "_errors" and isinstance(v, list):
                    msgs = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in v)
                    errs.append(f"{path or '(body)'}: {msgs}")
                else:
                    walk(v, f"{path}.{k}" if path else str(k))

    walk(body.get("errors"), "")
    if errs:
        parts.append("[" + " | ".join(errs[:10]) + (f" | +{len(errs) - 10} more" if len(errs) > 10 else "") + "]")
    return " — ".join(parts)


class DiscordClient:
    """Sends webhook messages; one instance per process so rate-limit state is shared.

    `transport`, `clock` and `sleep` are injectable so tests run without a network or sleeping.
    `max_429_retries` bounds how often one call resends after a 429; `max_wait` is the longest
    the client will wait in-process (longer waits come back as outcome "retry").

    Rate-limit state lives in `limits` (`notify/discord/ratelimit.py`): by default this
    process's memory, on `clock`. `with_limits(SharedRateLimits(store))` gives a view of the
    same client (HTTP connections, counters, per-webhook locks) whose state is the store's,
    shared with every other process that delivers from it.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        clock: _ClockLike | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_429_retries: int = 3,
        max_wait: float = 60.0,
        safety_margin: float = 0.05,
        user_agent: str = "perf-alerts (https://github.com/perf-alerts, 0.1)",
        limits: RateLimitState | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            transport=transport, timeout=timeout, headers={"User-Agent": user_agent}, follow_redirects=False
        )
        self._clock = clock or _MonotonicClock()
        self._sleep = sleep
        self._max_429_retries = max(0, max_429_retries)
        self._max_wait = max_wait
        self._margin = max(0.0, safety_margin)
        self._limits: RateLimitState = limits if limits is not None else MemoryRateLimits(self._clock, self._margin)
        self._locks: dict[str, asyncio.Lock] = {}  # one request at a time per webhook in this process
        self._owns_http = True
        self._secrets_seen: set[str] = set()
        self._stats = {
            "requests": 0,
            "rate_limited": 0,
            "global_rate_limited": 0,
            "requests_sent_inside_wait": 0,
            "rejected": 0,
            "refused": 0,
            "server_errors": 0,
            "network_errors": 0,
            "delivered": 0,
            "waits": 0,
            "waited_seconds": 0.0,
        }

    def __repr__(self) -> str:
        return f"DiscordClient(webhooks={len(self._locks)}, requests={self._stats['requests']})"

    @property
    def limits(self) -> RateLimitState:
        return self._limits

    def with_limits(self, limits: RateLimitState) -> "DiscordClient":
        """This client with its rate-limit state in `limits`: the same HTTP client, counters and
        per-webhook locks (closing the view closes nothing; the original owns them)."""
        view = copy.copy(self)
        view._limits = limits
        view._owns_http = False
        return view

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "DiscordClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, Any]:
        """Counters: requests, rate_limited (429s), requests_sent_inside_wait (must stay 0),
        rejected (4xx other than 429), refused (invalid payloads never sent), and more."""
        out = dict(self._stats)
        out["429s"] = out["rate_limited"]
        return out

    # ------------------------------------------------------------------ public API

    async def execute(
        self, webhook_url: str, message: DiscordMessage, *, wait: bool = True, thread_id: str | None = None
    ) -> DeliveryResult:
        """POST the message (multipart when it has files). With `wait`, Discord returns the
        message object and its id is in the result (needed for the resolved edit)."""
        hook = self._webhook(webhook_url)
        if hook is None:
            return DeliveryResult("disabled", error=f"not a Discord webhook URL: {webhook_url}")
        problems = validate_payload(message.payload, files=message.files)
        if problems:
            self._stats["refused"] += 1
            return DeliveryResult("dead", error="payload refused before sending: " + "; ".join(problems[:10]))
        params: dict[str, str] = {}
        if wait:
            params["wait"] = "true"
        if thread_id is not None:
            if not _SNOWFLAKE_RE.match(str(thread_id)):
                return DeliveryResult("dead", error=f"invalid thread_id {thread_id!r}")
            params["thread_id"] = str(thread_id)
        url = _base_url(webhook_url)
        if message.files:
            payload = dict(message.payload)
            if "attachments" not in payload:
                payload["attachments"] = [{"id": i, "filename": f[0]} for i, f in enumerate(message.files)]
            kwargs: dict[str, Any] = {
                "data": {"payload_json": json.dumps(payload, ensure_ascii=False)},
                "files": [(f"files[{i}]", (name, data, ctype)) for i, (name, data, ctype) in enumerate(message.files)],
            }
        else:
            kwargs = {"json": message.payload}
        return await self._send(hook, "POST", url, params, kwargs, expect_body=wait)

    async def edit(self, webhook_url: str, message_id: str, payload: dict[str, Any]) -> DeliveryResult:
        """PATCH an earlier message (e.g. firing -> resolved) in place."""
        hook = self._webhook(webhook_url)
        if hook is None:
            return DeliveryResult("disabled", error=f"not a Discord webhook URL: {webhook_url}")
        if not _SNOWFLAKE_RE.match(str(message_id)):
            return DeliveryResult("dead", error=f"invalid message id {message_id!r}")
        problems = validate_payload(payload, edit=True)
        if problems:
            self._stats["refused"] += 1
            return DeliveryResult("dead", error="edit refused before sending: " + "; ".join(problems[:10]))
        url = f"{_base_url(webhook_url)}/messages/{message_id}"
        return await self._send(hook, "PATCH", url, {}, {"json": payload}, expect_body=True)

    # ------------------------------------------------------------------ internals

    def _webhook(self, webhook_url: str) -> str | None:
        if webhook_url not in self._secrets_seen:
            register_secret(webhook_url)
            self._secrets_seen.add(webhook_url)
        m = _WEBHOOK_ID_RE.search(webhook_url or "")
        if not m or not webhook_url.lower().startswith(("http://", "https://")):
            return None
        return m.group(1)

    def _lock(self, hook: str) -> asyncio.Lock:
        lock = self._locks.get(hook)
        if lock is None:
            lock = self._locks[hook] = asyncio.Lock()
        return lock

    async def _wait_turn(self, hook: str) -> float | None:
        """Sleep until neither this webhook's bucket nor the global limit forbids sending, and
        take the turn. Returns None when the request may go, or the remaining wait if it
        exceeds `max_wait` (nothing taken)."""
        while True:
            delay = await self._limits.take(hook)
            if delay <= 0:
                return None
            if delay > self._max_wait:
                return delay
            self._stats["waits"] += 1
            self._stats["waited_seconds"] += delay
            await self._sleep(delay)

    async def _note_limits(self, hook: str, resp: httpx.Response) -> None:
        h = resp.headers
        await self._limits.note(hook, Limits(
            remaining=_float_header(h, "X-RateLimit-Remaining"),
            reset_after=_float_header(h, "X-RateLimit-Reset-After"),
            limit=_float_header(h, "X-RateLimit-Limit"),
            bucket=h.get("X-RateLimit-Bucket") or None,
        ))

    async def _send(
        self, hook: str, method: str, url: str, params: dict[str, str], kwargs: dict[str, Any], *, expect_body: bool
    ) -> DeliveryResult:
        requests = 0
        limited = 0
        async with self._lock(hook):
            for attempt in range(self._max_429_retries + 1):
                try:
                    too_long = await self._wait_turn(hook)
                except Exception as e:  # the shared state is out of reach: sending blind could break a wait
                    log.warning("discord webhook %s: rate-limit state unavailable: %s", hook,
                                redact(f"{type(e).__name__}: {e}"))
                    # counted as rate limited: not the message's fault, so its retry budget is not spent
                    return DeliveryResult("retry", error=f"webhook {hook}: rate-limit state unavailable "
                                          f"({type(e).__name__})", retry_after=1.0,
                                          requests=requests, rate_limited=max(limited, 1))
                if too_long is not None:
                    return DeliveryResult("retry", error=f"webhook {hook} rate limited; would wait {too_long:.1f}s",
                                          retry_after=too_long, requests=requests, rate_limited=limited)
                if self._limits.blocked(hook):
                    self._stats["requests_sent_inside_wait"] += 1  # self-check; _wait_turn prevents this
                requests += 1
                self._stats["requests"] += 1
                try:
                    resp = await self._http.request(method, url, params=params, **kwargs)
                except httpx.TimeoutException as e:
                    self._stats["network_errors"] += 1
                    return DeliveryResult("retry", error=f"webhook {hook}: timeout ({type(e).__name__}: {e})",
                                          requests=requests, rate_limited=limited)
                except httpx.HTTPError as e:
                    self._stats["network_errors"] += 1
                    await self._safely(self._limits.failed(hook), hook)  # no answer: a probe may reopen the window
                    return DeliveryResult("retry", error=f"webhook {hook}: network error ({type(e).__name__}: {e})",
                                          requests=requests, rate_limited=limited)
                # the answer is what counts from here: failing to record the limits must not lose it
                await self._safely(self._note_limits(hook, resp), hook)
                status = resp.status_code
                body = _json_or_none(resp)

                if status == 429:
                    limited += 1
                    self._stats["rate_limited"] += 1
                    retry_after = _retry_after(resp, body)
                    is_global = bool(isinstance(body, dict) and body.get("global")) or resp.headers.get(
                        "X-RateLimit-Global", ""
                    ).lower() == "true"
                    if is_global:
                        self._stats["global_rate_limited"] += 1
                    await self._safely(self._limits.note_429(hook, retry_after, is_global), hook)
                    bucket = resp.headers.get("X-RateLimit-Bucket")
                    log.warning("discord webhook %s: 429 %s, retry_after=%.3fs", hook,
                                "global" if is_global else f"bucket {bucket or '?'}", retry_after)
                    if attempt < self._max_429_retries:
                        continue
                    return DeliveryResult("retry", status_code=429, retry_after=retry_after + self._margin,
                                          error=f"webhook {hook}: still rate limited after {limited} 429s",
                                          requests=requests, rate_limited=limited)

                if 200 <= status < 300:
                    self._stats["delivered"] += 1
                    mid = str(body["id"]) if expect_body and isinstance(body, dict) and "id" in body else None
                    return DeliveryResult("delivered", message_id=mid, status_code=status,
                                          requests=requests, rate_limited=limited)

                summary = _summarise_error(body, status)
                if status >= 500:
                    self._stats["server_errors"] += 1
                    log.warning("discord webhook %s: server error %s", hook, redact(summary))
                    return DeliveryResult("retry", status_code=status, error=f"webhook {hook}: {summary}",
                                          retry_after=_float_header(resp.headers, "Retry-After"),
                                          requests=requests, rate_limited=limited)
                self._stats["rejected"] += 1
                if status in (401, 403, 404):
                    log.error("discord webhook %s is unusable (%s): disable this receiver", hook, redact(summary))
                    return DeliveryResult("disabled", status_code=status,
                                          error=f"webhook {hook} unusable: {summary}",
                                          requests=requests, rate_limited=limited)
                log.error("discord webhook %s rejected the message: %s", hook, redact(summary))
                return DeliveryResult("dead", status_code=status, error=f"webhook {hook} rejected: {summary}",
                                      requests=requests, rate_limited=limited)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _safely(coro: Awaitable[None], hook: str) -> None:
        """Record rate-limit facts; a store that fails here is logged, never fails the request."""
        try:
            await coro
        except Exception as e:
            log.warning("discord webhook %s: recording rate limits failed: %s", hook, redact(f"{type(e).__name__}: {e}"))


def _base_url(webhook_url: str) -> str:
    """The webhook URL without query or fragment (we add our own wait/thread_id)."""
    return re.split(r"[?#]", webhook_url.strip(), maxsplit=1)[0].rstrip("/")


def _json_or_none(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(resp: httpx.Response, body: Any) -> float:
    """Seconds to wait after a 429: the JSON `retry_after` (precise), else the headers."""
    if isinstance(body, dict):
        try:
            v = float(body.get("retry_after"))  # type: ignore[arg-type]
            if v >= 0 and v == v and v != float("inf"):
                return v
        except (TypeError, ValueError):
            pass
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        v2 = _float_header(resp.headers, name)
        if v2 is not None:
            return v2
    return 1.0
