"""What the HTTP API reads: request bodies bounded while they are read, JSON numbers that
cannot be held as a record's problem (not the request's).

`BodySizeLimit` is a pure ASGI middleware: it counts the bytes `receive()` hands the app,
chunked or not, whatever `Content-Length` says, and once the count passes the limit the app
gets `BodyTooLarge` from `receive()` and the client a 413. The app never holds more than the
limit (plus one chunk) of a body. The rest of an over-long body is read and thrown away (at
most `DRAIN_BYTES` more, for at most `DRAIN_SECONDS`) before the 413 is sent, so the client,
still sending, sees the answer and the connection stays usable; a body longer than that gets
the 413 with `Connection: close`.

`SafeJSONRequest.json()` parses like `json.loads`, except that an integer literal too long
for Python's `int()` (over 4,300 digits, which `json.loads` refuses with a ValueError for the
whole document) becomes a `LongInteger` placeholder, so `record_many` rejects that one record
("out of range") and keeps the others; nesting too deep for the parser is a malformed-JSON
400 rather than a RecursionError.
"""

from __future__ import annotations

import asyncio
import json
import numbers
from typing import Any, Awaitable, Callable, Coroutine, MutableMapping

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from perf_alerts.errors import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_BYTES = 256 * 1024 * 1024  # read and discarded after the limit, so the client sees the 413
DRAIN_SECONDS = 15.0


class BodyTooLarge(InputError):
    """Raised by the limited `receive()` once a request body passes the limit (a client's mistake;
    whatever the app makes of it, `BodySizeLimit` answers 413)."""


class BodySizeLimit:
    """413 for a request body over `max_bytes`, counted as it is read (pure ASGI, no buffering).

    `too_large(scope)` builds the 413 response. Whatever the app answers after its `receive()`
    raised `BodyTooLarge` (an error of its own for an unreadable body, or nothing when the
    exception escapes) is replaced by that 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, too_large: Callable[[Scope], Response]) -> None:
        self.app, self.max_bytes, self.too_large = app, int(max_bytes), too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        over = False
        body_done = False
        started = False  # the app began its response before the body went over (never for this API)

        async def limited_receive() -> Message:
            nonlocal received, over, body_done
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body_done = True
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to a body it could not read: replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if not over or started:
            return
        close = False
        if not body_done:
            close = not await self._drain(receive)
        response = self.too_large(scope)
        if close:
            response.headers["Connection"] = "close"
        await response(scope, _no_receive, send)

    @staticmethod
    async def _drain(receive: Receive) -> bool:
        """Read the rest of the body and throw it away; False when it is longer than DRAIN_BYTES,
        takes longer than DRAIN_SECONDS, or the client went away."""
        drained = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                message = await asyncio.wait_for(receive(), timeout=left)
            except asyncio.TimeoutError:
                return False
            if message["type"] != "http.request":
                return False  # http.disconnect
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
            if drained > DRAIN_BYTES:
                return False


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# --------------------------------------------------------------------------- JSON


class LongInteger:
    """A JSON integer literal too long for `int()`: a number no sample can hold.

    It is a `numbers.Real` whose `float()` raises OverflowError, like an int beyond the float
    range, so `Sample.checked` reports "value is out of range" / "timestamp … is out of range"
    for its record; `str()` raises ValueError like such an int does (so it is no label value).
    """

    __slots__ = ("digits",)

    def __init__(self, literal: str) -> None:
        self.digits = len(literal.lstrip("-"))

    def __float__(self) -> float:
        raise OverflowError(f"an integer of {self.digits:,} digits is beyond the float range")

    def __repr__(self) -> str:
        return f"<an integer of {self.digits:,} digits>"

    def __str__(self) -> str:
        raise ValueError(f"an integer of {self.digits:,} digits has no text form here")


numbers.Real.register(LongInteger)


def _parse_int(literal: str) -> Any:
    try:
        return int(literal)
    except ValueError:  # over sys.get_int_max_str_digits() digits
        return LongInteger(literal)


def loads(body: bytes | str) -> Any:
    """`json.loads` of UTF-8 JSON, with over-long integer literals as `LongInteger`; anything
    that is not JSON (not UTF-8, nested too deeply for the parser) is a json.JSONDecodeError."""
    if isinstance(body, bytes):
        try:
            doc = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise json.JSONDecodeError(f"the body is not UTF-8 ({e.reason})", "", e.start) from None
    else:
        doc = body
    try:
        try:
            return json.loads(doc)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer literal of more digits than int() takes: only then the slower hook
            return json.loads(doc, parse_int=_parse_int)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


class SafeJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class SafeJSONRoute(APIRoute):
    """Routes whose JSON bodies are parsed by `loads` (FastAPI's documented custom-request hook)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(SafeJSONRequest(request.scope, request.receive))

        return route_handler


__all__ = ["BodySizeLimit", "BodyTooLarge", "LongInteger", "SafeJSONRequest", "SafeJSONRoute", "loads",
           "DRAIN_BYTES", "DRAIN_SECONDS"]
