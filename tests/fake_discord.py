"""A real HTTP server on 127.0.0.1 that behaves like Discord's Execute/Edit Webhook endpoints.

It validates Discord's limits independently of our `limits.py` (so a bug there cannot hide
behind a matching bug here), enforces per-webhook (and optionally global) rate limits in real
time with X-RateLimit-* headers, answers 429 like Discord, and counts every request that
arrives while the client had been told to wait. Start it with `with fake_discord() as srv:`.

For delivery tests it can also answer slowly (`set_delay`), keeps every message as it was
first posted (`posted`, before any edit) and knows which requests are still being answered
(`in_flight`). A message created for a client that hung up before its answer (killed while
the request was held) is marked `orphaned`: that sender can never learn the message's id.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import itertools
import json
import re
import select
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

_ROUTE = re.compile(r"^/api(?:/v\d+)?/webhooks/(?P<id>\d+)/(?P<token>[^/]+)(?:/messages/(?P<mid>\d+))?/?$")
_MIB = 1024 * 1024


@dataclass
class FakeStats:
    requests: int = 0
    rate_limited: int = 0  # 429s answered
    inside_wait: int = 0  # requests received before the last announced reset / retry_after
    rejected: int = 0  # 4xx other than 429 answered (400, 401, 404, 413)
    failures_injected: int = 0
    dropped_connections: int = 0
    messages_created: int = 0
    edits: int = 0
    orphaned: int = 0  # messages created for a client that had hung up (see `set_delay`)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Window:
    limit: int
    per: float
    count: int = 0
    reset_at: float = 0.0  # monotonic
    blocked_until: float = 0.0  # what we told the client: do not come back before this


class _Webhook:
    def __init__(self, webhook_id: str, token: str, limit: int, per: float) -> None:
        self.id = webhook_id
        self.token = token
        self.gone = False
        self.window = _Window(limit, per)
        self.messages: dict[str, dict[str, Any]] = {}
        self.posted: list[dict[str, Any]] = []  # every created message as first posted (before edits)


# ----------------------------------------------------------------------------- validation


def _len(s: Any) -> int:
    return len(s.strip()) if isinstance(s, str) else 0


def _put(errors: dict[str, Any], path: list[str], code: str, message: str) -> None:
    node = errors
    for p in path:
        node = node.setdefault(p, {})
    node.setdefault("_errors", []).append({"code": code, "message": message})


def discord_errors(body: Any, n_files: int, edit: bool) -> dict[str, Any]:
    """Discord's nested `errors` object for a webhook body (empty dict: valid)."""
    errs: dict[str, Any] = {}
    if not isinstance(body, dict):
        _put(errs, [], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return errs

    def maxlen(path: list[str], v: Any, n: int, required: bool = False) -> None:
        if v is None:
            if required:
                _put(errs, path, "BASE_TYPE_REQUIRED", "This field is required")
            return
        if not isinstance(v, str):
            _put(errs, path, "BASE_TYPE_STRING", "Could not interpret value as string.")
        elif required and _len(v) == 0:
            _put(errs, path, "BASE_TYPE_REQUIRED", "This field is required")
        elif _len(v) > n:
            _put(errs, path, "BASE_TYPE_MAX_LENGTH", f"Must be {n} or fewer in length.")

    def url(path: list[str], v: Any) -> None:
        if v is None:
            return
        if not isinstance(v, str) or not re.match(r"^(https?|attachment)://\S+$", v.strip()):
            _put(errs, path, "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        elif _len(v) > 2048:
            _put(errs, path, "BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length.")

    maxlen(["content"], body.get("content"), 2000)
    u = body.get("username")
    if u is not None:
        if not isinstance(u, str) or not 1 <= _len(u) <= 80:
            _put(errs, ["username"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.")
        elif "discord" in u.lower() or "clyde" in u.lower():
            _put(errs, ["username"], "USERNAME_INVALID_CONTAINS", 'Username cannot contain "discord" or "clyde"')
    url(["avatar_url"], body.get("avatar_url"))
    embeds = body.get("embeds")
    total = 0
    if embeds is not None:
        if not isinstance(embeds, list):
            _put(errs, ["embeds"], "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
            embeds = []
        if len(embeds) > 10:
            _put(errs, ["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        for i, e in enumerate(embeds):
            p = ["embeds", str(i)]
            if not isinstance(e, dict):
                _put(errs, p, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                continue
            maxlen(p + ["title"], e.get("title"), 256)
            maxlen(p + ["description"], e.get("description"), 4096)
            url(p + ["url"], e.get("url"))
            c = e.get("color")
            if c is not None and (isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 0xFFFFFF):
                _put(errs, p + ["color"], "NUMBER_TYPE_MAX", "int value should be <= 16777215 and >= 0.")
            total += _len(e.get("title")) + _len(e.get("description"))
            fields = e.get("fields") or []
            if len(fields) > 25:
                _put(errs, p + ["fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for j, f in enumerate(fields):
                maxlen(p + ["fields", str(j), "name"], f.get("name"), 256, required=True)
                maxlen(p + ["fields", str(j), "value"], f.get("value"), 1024, required=True)
                total += _len(f.get("name")) + _len(f.get("value"))
            footer = e.get("footer")
            if isinstance(footer, dict):
                maxlen(p + ["footer", "text"], footer.get("text"), 2048, required=True)
                url(p + ["footer", "icon_url"], footer.get("icon_url"))
                total += _len(footer.get("text"))
            author = e.get("author")
            if isinstance(author, dict):
                maxlen(p + ["author", "name"], author.get("name"), 256, required=True)
                url(p + ["author", "url"], author.get("url"))
                total += _len(author.get("name"))
            for k in ("image", "thumbnail"):
                if isinstance(e.get(k), dict):
                    url(p + [k, "url"], e[k].get("url"))
        if total > 6000:
            _put(errs, ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    am = body.get("allowed_mentions")
    if isinstance(am, dict):
        parse = am.get("parse") or []
        for k, v in enumerate(parse):
            if v not in ("roles", "users", "everyone"):
                _put(errs, ["allowed_mentions", "parse", str(k)], "BASE_TYPE_CHOICES", "Value must be one of roles, users, everyone.")
        for kind in ("roles", "users"):
            ids = am.get(kind) or []
            if len(ids) > 100:
                _put(errs, ["allowed_mentions", kind], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
            if ids and kind in parse:
                _put(errs, ["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                     f"parse:[\"{kind}\"] and {kind}: [ids] are mutually exclusive.")
    att = body.get("attachments")
    if isinstance(att, list) and len(att) > 10:
        _put(errs, ["attachments"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if n_files > 10:
        _put(errs, ["files"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    return errs


def _is_empty(body: dict[str, Any], n_files: int) -> bool:
    return not (_len(body.get("content")) or body.get("embeds") or n_files or body.get("components") or body.get("poll"))


# ----------------------------------------------------------------------------- server


class FakeDiscord:
    """The server state; the HTTP handler below calls into it under one lock."""

    def __init__(self, limit: int = 5, per_seconds: float = 2.0) -> None:
        self._lock = threading.RLock()
        self._limit = limit
        self._per = per_seconds
        self._global: _Window | None = None
        self._global_forced_until = 0.0
        self._global_announced_until = 0.0  # set only once a global 429 was actually answered
        self._hooks: dict[str, _Webhook] = {}
        self._fail: list[int] = []
        self._down = False
        self._ids = itertools.count(int(time.time() * 1000 - 1420070400000) << 22)
        self._stats = FakeStats()
        self._delay = 0.0
        self._in_flight = 0
        self._held = 0
        self.request_log: list[dict[str, Any]] = []  # method, path (token masked), status, t
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control API
    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def url_for(self, webhook_id: str | int, token: str) -> str:
        """Register the webhook (if new) and return its execute URL."""
        wid = str(webhook_id)
        with self._lock:
            if wid not in self._hooks:
                self._hooks[wid] = _Webhook(wid, token, self._limit, self._per)
            else:
                self._hooks[wid].token = token
        return f"http://127.0.0.1:{self.port}/api/webhooks/{wid}/{token}"

    def messages(self, webhook_id: str | int) -> list[dict[str, Any]]:
        with self._lock:
            hook = self._hooks.get(str(webhook_id))
            return copy.deepcopy(list(hook.messages.values())) if hook else []

    def posted(self, webhook_id: str | int) -> list[dict[str, Any]]:
        """Every message this webhook created, in order, as it was posted (edits do not change it):
        {"id", "content", "embeds", "orphaned", "t"} (t: monotonic time it was created)."""
        with self._lock:
            hook = self._hooks.get(str(webhook_id))
            return copy.deepcopy(hook.posted) if hook else []

    def set_delay(self, seconds: float) -> None:
        """Hold every request `seconds` before handling it (a slow Discord; 0 = answer at once).

        A held request is handled even if its client hangs up meanwhile (Discord has the whole
        request by then); a message it creates is marked `orphaned` (its sender never learns its id)."""
        with self._lock:
            self._delay = max(0.0, float(seconds))

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered."""
        with self._lock:
            return self._in_flight

    @property
    def held(self) -> int:
        """Requests being held by `set_delay` and not yet handled: a client killed now never gets
        the answer (unlike `in_flight`, which also counts a request whose answer is being written)."""
        with self._lock:
            return self._held

    @property
    def stats(self) -> FakeStats:
        with self._lock:
            return copy.copy(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = FakeStats()

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def disappear(self, webhook_id: str | int) -> None:
        with self._lock:
            if str(webhook_id) in self._hooks:
                self._hooks[str(webhook_id)].gone = True

    def go_down(self, down: bool = True) -> None:
        """While down, every connection is closed without an answer."""
        with self._lock:
            self._down = down

    def set_rate_limit(self, limit: int, per_seconds: float) -> None:
        with self._lock:
            self._limit, self._per = limit, per_seconds
            for h in self._hooks.values():
                h.window = _Window(limit, per_seconds)

    def set_global_limit(self, limit: int | None, per_seconds: float = 1.0) -> None:
        with self._lock:
            self._global = _Window(limit, per_seconds) if limit else None

    def force_global_429(self, seconds: float) -> None:
        """Answer every request with a global 429 for `seconds` (as after a global ban)."""
        with self._lock:
            self._global_forced_until = time.monotonic() + seconds

    # ---------------------------------------------------------------- request handling
    def _take(self, w: _Window, now: float) -> tuple[bool, float]:
        """Consume one request from the fixed window; (allowed, seconds until reset)."""
        if now >= w.reset_at:
            w.count = 0
            w.reset_at = now + w.per
        if w.count >= w.limit:
            return False, w.reset_at - now
        w.count += 1
        return True, w.reset_at - now

    def handle(self, method: str, path: str, query: dict[str, list[str]], ctype: str, raw: bytes,
               orphan: bool = False) -> tuple[int, dict[str, str], Any] | None:
        """Returns (status, headers, json body or None) or None to drop the connection."""
        with self._lock:
            now = time.monotonic()
            self._stats.requests += 1
            if self._down:
                self._stats.dropped_connections += 1
                return None
            m = _ROUTE.match(path)
            if not m:
                self._stats.rejected += 1
                return 404, {}, {"message": "404: Not Found", "code": 0}
            hook = self._hooks.get(m["id"])
            # Arrived while we had told the client to wait (bucket or global)?
            blocked = max(hook.window.blocked_until if hook else 0.0, self._global.blocked_until if self._global else 0.0,
                          self._global_announced_until)
            if now < blocked:
                self._stats.inside_wait += 1
            if now < self._global_forced_until:
                ra = self._global_forced_until - now
                self._global_announced_until = self._global_forced_until
                self._stats.rate_limited += 1
                return 429, {"Retry-After": str(int(ra + 0.999)), "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}, {
                    "message": "You are being rate limited.", "retry_after": round(ra, 3), "global": True}
            if self._global is not None:
                ok, ra = self._take(self._global, now)
                if not ok:
                    self._global.blocked_until = now + ra
                    self._stats.rate_limited += 1
                    return 429, {"Retry-After": str(int(ra + 0.999)), "X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}, {
                        "message": "You are being rate limited.", "retry_after": round(ra, 3), "global": True}
            if hook is None or hook.gone:
                self._stats.rejected += 1
                return 404, {}, {"message": "Unknown Webhook", "code": 10015}
            if hook.token != m["token"]:
                self._stats.rejected += 1
                return 401, {}, {"message": "Invalid Webhook Token", "code": 50027}
            ok, reset_after = self._take(hook.window, now)
            w = hook.window
            headers = {
                "X-RateLimit-Limit": str(w.limit),
                "X-RateLimit-Remaining": str(max(0, w.limit - w.count)),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": f"bucket-{hook.id[-6:]}",
            }
            if not ok:
                w.blocked_until = now + reset_after
                self._stats.rate_limited += 1
                headers["Retry-After"] = str(int(reset_after + 0.999))
                headers["X-RateLimit-Scope"] = "user"
                return 429, headers, {"message": "You are being rate limited.", "retry_after": round(reset_after, 3), "global": False}
            if w.count >= w.limit:
                w.blocked_until = now + reset_after
            if self._fail:
                status = self._fail.pop(0)
                self._stats.failures_injected += 1
                return status, headers, {"message": f"{status}: injected failure", "code": 0}
            return self._apply(hook, method, m["mid"], query, ctype, raw, headers, orphan)

    def _apply(self, hook: _Webhook, method: str, mid: str | None, query: dict[str, list[str]], ctype: str,
               raw: bytes, headers: dict[str, str], orphan: bool = False) -> tuple[int, dict[str, str], Any]:
        try:
            body, files = _parse_body(ctype, raw)
        except ValueError as e:
            self._stats.rejected += 1
            return 400, headers, {"message": f"Cannot parse body: {e}", "code": 50109}
        if any(len(data) > 10 * _MIB for _, data, _ in files):
            self._stats.rejected += 1
            return 413, headers, {"message": "Request entity too large", "code": 40005}
        edit = method == "PATCH"
        if (method == "POST" and mid) or (edit and not mid) or method not in ("POST", "PATCH", "GET"):
            self._stats.rejected += 1
            return 405, headers, {"message": "405: Method Not Allowed", "code": 0}
        if method == "GET":
            msg = hook.messages.get(mid or "")
            if msg is None:
                self._stats.rejected += 1
                return 404, headers, {"message": "Unknown Message", "code": 10008}
            return 200, headers, _public(msg)
        errors = discord_errors(body, len(files), edit)
        if errors:
            self._stats.rejected += 1
            return 400, headers, {"code": 50035, "message": "Invalid Form Body", "errors": errors}
        if not edit and _is_empty(body, len(files)):
            self._stats.rejected += 1
            return 400, headers, {"code": 50006, "message": "Cannot send an empty message"}
        atts = [{"id": str(next(self._ids)), "filename": name, "size": len(data), "content_type": ct, "data": data}
                for name, data, ct in files]
        if edit:
            msg = hook.messages.get(mid or "")
            if msg is None:
                self._stats.rejected += 1
                return 404, headers, {"message": "Unknown Message", "code": 10008}
            for k in ("content", "embeds", "allowed_mentions"):
                if k in body:
                    msg[k] = body[k]
            if "attachments" in body:
                keep = {str(a.get("id")) for a in body["attachments"] if isinstance(a, dict)}
                msg["attachments"] = [a for a in msg["attachments"] if a["id"] in keep]
            msg["attachments"].extend(atts)
            msg["edited"] = True
            msg["edits"] += 1
            self._stats.edits += 1
            return 200, headers, _public(msg)
        msg = {
            "id": str(next(self._ids)),
            "webhook_id": hook.id,
            "channel_id": "1000" + hook.id[-4:],
            "content": body.get("content", ""),
            "embeds": body.get("embeds", []),
            "username": body.get("username"),
            "allowed_mentions": body.get("allowed_mentions"),
            "attachments": atts,
            "thread_id": (query.get("thread_id") or [None])[0],
            "edited": False,
            "edits": 0,
        }
        hook.messages[msg["id"]] = msg
        hook.posted.append({"id": msg["id"], "content": msg["content"], "embeds": copy.deepcopy(msg["embeds"]),
                            "orphaned": orphan, "t": time.monotonic()})
        self._stats.messages_created += 1
        if orphan:
            self._stats.orphaned += 1
        if (query.get("wait") or ["false"])[0].lower() == "true":
            return 200, headers, _public(msg)
        return 204, headers, None


def _public(msg: dict[str, Any]) -> dict[str, Any]:
    """The message object as Discord returns it (attachments without their bytes)."""
    out = {k: v for k, v in msg.items() if k not in ("attachments", "edits")}
    out["type"] = 0
    out["attachments"] = [
        {"id": a["id"], "filename": a["filename"], "size": a["size"], "content_type": a["content_type"],
         "url": f"https://cdn.example.invalid/attachments/{a['id']}/{a['filename']}"}
        for a in msg["attachments"]
    ]
    return out


def _parse_body(ctype: str, raw: bytes) -> tuple[dict[str, Any], list[tuple[str, bytes, str]]]:
    if ctype.startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + raw
        )
        if not msg.is_multipart():
            raise ValueError("bad multipart body")
        body: dict[str, Any] = {}
        files: list[tuple[int, str, bytes, str]] = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if name == "payload_json":
                body = json.loads(data.decode("utf-8"))
            elif isinstance(name, str) and (fm := re.fullmatch(r"files\[(\d+)\]", name)):
                files.append((int(fm.group(1)), part.get_filename() or "file", data,
                              part.get_content_type()))
        files.sort(key=lambda f: f[0])
        return body, [(n, d, c) for _, n, d, c in files]
    if not raw:
        return {}, []
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(str(e)) from None
    if not isinstance(parsed, dict):
        raise ValueError("body is not a JSON object")
    return parsed, []


def _client_gone(sock: socket.socket) -> bool:
    """True if the peer closed (or reset) the connection; never blocks, never consumes data."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _make_handler(state: FakeDiscord) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet, and never logs URLs
            pass

        def _serve(self) -> None:
            with state._lock:
                state._in_flight += 1
                delay = state._delay
            try:
                self._answer(delay)
            except (BrokenPipeError, ConnectionResetError):  # the client is gone (killed while we held its request)
                self.close_connection = True
            finally:
                with state._lock:
                    state._in_flight -= 1

        def _answer(self, delay: float) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            orphan = False
            if delay > 0:
                with state._lock:
                    state._held += 1
                try:
                    time.sleep(delay)
                finally:
                    with state._lock:
                        state._held -= 1
                orphan = _client_gone(self.connection)
            res = state.handle(self.command, parts.path, parse_qs(parts.query), self.headers.get("Content-Type", ""), raw,
                               orphan)
            status_log = res[0] if res else 0
            with state._lock:
                state.request_log.append({"method": self.command, "status": status_log, "t": time.monotonic()})
            if res is None:
                self.close_connection = True
                return
            status, headers, body = res
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_POST = do_PATCH = do_GET = _serve

        def handle(self) -> None:
            try:
                super().handle()
            except (ConnectionResetError, BrokenPipeError):  # a client killed mid-connection: not our error
                self.close_connection = True

    return Handler


@contextmanager
def fake_discord(limit: int = 5, per_seconds: float = 2.0) -> Iterator[FakeDiscord]:
    """Start the fake on 127.0.0.1 (port 0) in a background thread; stop it on exit."""
    state = FakeDiscord(limit, per_seconds)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    state._httpd = httpd
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    state._thread = t
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


try:
    import pytest

    @pytest.fixture
    def fake_discord_server() -> Iterator[FakeDiscord]:
        with fake_discord() as srv:
            yield srv

except ImportError:  # pragma: no cover - the bench runs without pytest
    pass
