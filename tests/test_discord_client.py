"""Delivery client: rate limits honoured (zero requests inside a wait), failures classified,
webhook URL never leaked. Unit tests use httpx.MockTransport with a fake clock; integration
tests run against the real HTTP fake in tests/fake_discord.py."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_discord import fake_discord

from perf_alerts.model import Alert, AlertState, Severity, fingerprint
from perf_alerts.notify.discord import DiscordClient, backoff_delay, build_messages, build_resolved_edit
from perf_alerts.notify.discord.payload import RESOLVED_COLOR, AlertGroup, DiscordMessage

TOKEN = "SeCrEtToKeN-abc_123"
URL = f"https://discord.com/api/webhooks/1111/{TOKEN}"
URL_B = "https://discord.com/api/webhooks/2222/OtherSecretToken_99"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def mk(i: int = 0, state: AlertState = AlertState.FIRING) -> Alert:
    lb = {"alertname": "HighLatency", "agent": f"a{i}"}
    return Alert(fingerprint("HighLatency", lb), "HighLatency", state, Severity.CRITICAL, lb,
                 {"summary": "latency high"}, value=600.0, threshold=500.0, window="5m", started_at=1.767e9,
                 resolved_at=1.767e9 + 60 if state == AlertState.RESOLVED else None)


def msg(i: int = 0) -> DiscordMessage:
    return build_messages([AlertGroup(f"g{i}", [mk(i)], {})])[0]


class FakeTime:
    """Clock + sleep for the client: sleeping advances the clock instantly."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        await asyncio.sleep(0)


def client_with(handler: Callable[[httpx.Request], httpx.Response], ft: FakeTime | None = None, **kw: Any) -> tuple[DiscordClient, FakeTime]:
    ft = ft or FakeTime()
    return DiscordClient(transport=httpx.MockTransport(handler), clock=ft, sleep=ft.sleep, **kw), ft


def ok(mid: str = "42", remaining: int = 4, reset_after: float = 2.0) -> httpx.Response:
    return httpx.Response(200, json={"id": mid}, headers={
        "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset-After": str(reset_after), "X-RateLimit-Bucket": "abc"})


# ------------------------------------------------------------------ unit: rate limits


def test_remaining_zero_makes_next_request_wait_reset_after() -> None:
    sent_at: list[float] = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent_at.append(ft.t)
        return ok(remaining=0, reset_after=1.5)

    c, ft = client_with(handler)
    r1 = run(c.execute(URL, msg()))
    r2 = run(c.execute(URL, msg()))
    assert r1.outcome == r2.outcome == "delivered" and r1.message_id == "42"
    assert sent_at[1] - sent_at[0] >= 1.5
    assert c.stats()["requests_sent_inside_wait"] == 0


def test_429_waits_retry_after_then_resends_same_request() -> None:
    bodies: list[bytes] = []
    times: list[float] = []

    def handler(req: httpx.Request) -> httpx.Response:
        bodies.append(req.content)
        times.append(ft.t)
        if len(bodies) == 1:
            return httpx.Response(429, json={"message": "rl", "retry_after": 0.75, "global": False},
                                  headers={"Retry-After": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.75"})
        return ok()

    c, ft = client_with(handler)
    r = run(c.execute(URL, msg()))
    assert (r.outcome, r.requests, r.rate_limited) == ("delivered", 2, 1)
    assert bodies[0] == bodies[1] and times[1] - times[0] >= 0.75
    assert c.stats()["rate_limited"] == 1


def test_429_retries_are_bounded_then_retry_outcome() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"message": "rl", "retry_after": 2.0, "global": False})

    c, _ = client_with(handler, max_429_retries=2)
    r = run(c.execute(URL, msg()))
    assert r.outcome == "retry" and r.requests == 3 and r.rate_limited == 3 and r.retry_after is not None and r.retry_after >= 2.0


def test_long_wait_is_returned_to_caller_not_slept() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"message": "rl", "retry_after": 3600, "global": False})

    c, ft = client_with(handler, max_wait=60)
    r = run(c.execute(URL, msg()))
    assert r.outcome == "retry" and r.requests == 1 and r.retry_after is not None and r.retry_after >= 3600
    assert sum(ft.sleeps) == 0


def test_global_429_pauses_all_webhooks() -> None:
    log: list[tuple[str, float]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        log.append((req.url.path.split("/")[3], ft.t))
        if len(log) == 1:
            return httpx.Response(429, json={"message": "global", "retry_after": 5.0, "global": True})
        return ok()

    c, ft = client_with(handler)

    async def both() -> None:
        ra = asyncio.create_task(c.execute(URL, msg(1)))
        await asyncio.sleep(0.01)  # A has its 429 before B starts
        rb = asyncio.create_task(c.execute(URL_B, msg(2)))
        assert (await ra).outcome == "delivered" and (await rb).outcome == "delivered"

    run(both())
    first_b = min(t for hook, t in log if hook == "2222")
    assert first_b >= 1005.0, "webhook B must not be hit during a global pause"
    assert c.stats()["global_rate_limited"] == 1


def test_concurrent_calls_on_one_webhook_respect_the_bucket() -> None:
    state = {"count": 0, "reset": 0.0}
    inside: list[float] = []

    def handler(req: httpx.Request) -> httpx.Response:  # a 3-per-2s bucket
        if ft.t >= state["reset"]:
            state["count"], state["reset"] = 0, ft.t + 2.0
        if state["count"] >= 3:
            inside.append(ft.t)
            return httpx.Response(429, json={"retry_after": state["reset"] - ft.t, "global": False})
        state["count"] += 1
        return ok(remaining=3 - state["count"], reset_after=state["reset"] - ft.t)

    c, ft = client_with(handler)

    async def many() -> list[Any]:
        return await asyncio.gather(*(c.execute(URL, msg(i)) for i in range(8)))

    results = run(many())
    assert all(r.outcome == "delivered" for r in results)
    assert inside == [] and c.stats()["rate_limited"] == 0 and c.stats()["requests"] == 8


# ------------------------------------------------------------------ unit: failures


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (500, {"message": "oops"}, "retry"), (502, None, "retry"), (503, {"message": "x"}, "retry"),
    (404, {"message": "Unknown Webhook", "code": 10015}, "disabled"),
    (401, {"message": "Invalid Webhook Token", "code": 50027}, "disabled"),
    (403, {"message": "Missing Access", "code": 50001}, "disabled"),
    (413, {"message": "Request entity too large", "code": 40005}, "dead"),
])
def test_status_classification(status: int, body: Any, outcome: str) -> None:
    c, _ = client_with(lambda req: httpx.Response(status, json=body) if body else httpx.Response(status))
    r = run(c.execute(URL, msg()))
    assert r.outcome == outcome and r.status_code == status and r.requests == 1
    assert r.error and TOKEN not in r.error and "/webhooks/1111" not in r.error.replace("webhook 1111", "")


def test_400_is_dead_with_discord_error_summarised() -> None:
    err = {"code": 50035, "message": "Invalid Form Body",
           "errors": {"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}}}
    c, _ = client_with(lambda req: httpx.Response(400, json=err))
    r = run(c.execute(URL, msg()))
    assert r.outcome == "dead" and r.error is not None
    assert "50035" in r.error and "embeds.0.title: Must be 256 or fewer" in r.error
    assert c.stats()["rejected"] == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed")])
def test_network_errors_are_retry(exc: Exception) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise exc

    c, _ = client_with(handler)
    r = run(c.execute(URL, msg()))
    assert r.outcome == "retry" and r.error and TOKEN not in r.error


def test_invalid_payload_refused_without_request() -> None:
    calls: list[int] = []
    c, _ = client_with(lambda req: calls.append(1) or ok())  # type: ignore[func-returns-value]
    bad = DiscordMessage(payload={"embeds": [{"title": "x" * 300}]})
    r = run(c.execute(URL, bad))
    assert r.outcome == "dead" and "embeds.0.title" in (r.error or "") and calls == []
    assert c.stats()["refused"] == 1


def test_multipart_with_payload_json_and_files() -> None:
    seen: dict[str, Any] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen["ctype"] = req.headers["content-type"]
        seen["body"] = req.content
        seen["query"] = dict(req.url.params)
        return ok()

    c, _ = client_with(handler)
    m = DiscordMessage(payload={"content": "see file", "attachments": [{"id": 0, "filename": "a.md"}]},
                       files=[("a.md", b"# hello", "text/markdown")])
    r = run(c.execute(URL, m, thread_id="123"))
    assert r.outcome == "delivered"
    assert seen["ctype"].startswith("multipart/form-data")
    assert b'name="payload_json"' in seen["body"] and b'name="files[0]"; filename="a.md"' in seen["body"]
    assert seen["query"] == {"wait": "true", "thread_id": "123"}


def test_backoff_delay_full_jitter() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        d = [backoff_delay(attempt, base=1.0, cap=300.0, rng=rng) for _ in range(200)]
        assert 0 <= min(d) and max(d) <= min(300.0, 2 ** attempt)
        assert max(d) > 0.5 * min(300.0, 2 ** attempt)  # actually spreads up to the ceiling
    assert backoff_delay(10_000, rng=rng) <= 300.0


def test_url_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c, _ = client_with(lambda req: httpx.Response(404, json={"message": "Unknown Webhook", "code": 10015}))
    r = run(c.execute(URL, msg()))
    assert r.outcome == "disabled"
    assert "HTTP Request" in caplog.text  # httpx did log the request...
    for text in (caplog.text, repr(c), repr(r), str(r.error), json.dumps(c.stats())):
        assert TOKEN not in text  # ...but redacted
    assert "/webhooks/1111/***" in caplog.text


# ------------------------------------------------------------------ integration: the real fake server


def test_integration_storm_batched_and_nothing_lost() -> None:
    rng = random.Random(3)
    groups = [AlertGroup(f"crew=c{g}", [Alert(fingerprint("Err", {"crew": f"c{g}", "i": str(i)}), "Err", AlertState.FIRING,
                                              rng.choice(list(Severity)), {"alertname": "Err", "crew": f"c{g}", "i": str(i)},
                                              {"summary": "errors"}, value=1.0, started_at=1.767e9) for i in range(20)],
                         {"crew": f"c{g}"}) for g in range(50)]
    msgs = build_messages(groups)
    with fake_discord(limit=5, per_seconds=2.0) as srv:
        url = srv.url_for(777, "tok-integration-secret")

        async def deliver() -> list[Any]:
            async with DiscordClient() as c:
                return [await c.execute(url, m) for m in msgs]

        results = run(deliver())
        assert all(r.outcome == "delivered" and r.message_id for r in results)
        st = srv.stats
        assert st.requests == len(msgs) <= 10 and st.rate_limited == 0 and st.inside_wait == 0 and st.rejected == 0
        stored = srv.messages(777)
        text = json.dumps([s["embeds"] for s in stored]) + "".join(a["data"].decode() for s in stored for a in s["attachments"])
        found = set(re.findall(r"\b[0-9a-f]{16}\b", text))
        assert {a.fingerprint for g in groups for a in g.alerts} <= found


def test_integration_429_honoured_with_zero_requests_inside_wait() -> None:
    with fake_discord(limit=5, per_seconds=2.0) as srv:
        url = srv.url_for(778, "tok-rl-secret")

        async def go() -> tuple[list[Any], dict[str, Any]]:
            async with DiscordClient() as warm:  # uses the 5-request window
                out = [await warm.execute(url, msg(i)) for i in range(5)]
            async with DiscordClient() as cold:  # knows nothing: gets a 429, must wait it out
                out += [await cold.execute(url, msg(i)) for i in range(5, 11)]
                return out, cold.stats()

        t0 = time.monotonic()
        results, stats = run(go())
        assert all(r.outcome == "delivered" for r in results)
        st = srv.stats
        assert st.rate_limited == 1 and stats["rate_limited"] == 1
        # Exactly one early arrival: the cold client's first request, which could not know the
        # warm client had been told to wait. After its own 429, it sent nothing early.
        assert st.inside_wait == 1 and stats["requests_sent_inside_wait"] == 0
        assert st.requests == 12 and len(srv.messages(778)) == 11
        log = srv.request_log
        i429 = next(i for i, e in enumerate(log) if e["status"] == 429)
        assert log[i429 + 1]["t"] - log[i429]["t"] >= 1.0  # waited out retry_after (~1.7 s)
        assert time.monotonic() - t0 >= 2.0


def test_integration_global_429_pauses_every_webhook() -> None:
    with fake_discord() as srv:
        ua, ub = srv.url_for(801, "tok-a-secret"), srv.url_for(802, "tok-b-secret")
        srv.force_global_429(0.6)

        async def go() -> None:
            async with DiscordClient() as c:
                ta = asyncio.create_task(c.execute(ua, msg(1)))
                await asyncio.sleep(0.15)
                tb = asyncio.create_task(c.execute(ub, msg(2)))
                assert (await ta).outcome == "delivered" and (await tb).outcome == "delivered"

        run(go())
        st = srv.stats
        assert st.rate_limited == 1 and st.inside_wait == 0 and st.requests == 3


def test_integration_failures_and_resolved_edit() -> None:
    with fake_discord() as srv:
        url = srv.url_for(900, "tok-fail-secret")

        async def go() -> None:
            async with DiscordClient() as c:
                srv.fail_next(1, 503)
                r = await c.execute(url, msg(1))
                assert r.outcome == "retry" and r.status_code == 503
                r = await c.execute(url, msg(1))  # the outbox's retry
                assert r.outcome == "delivered" and r.message_id
                # resolved: edit the original message in place
                resolved = mk(1, AlertState.RESOLVED)
                e = await c.edit(url, r.message_id, build_resolved_edit(resolved))
                assert e.outcome == "delivered" and e.message_id == r.message_id
                stored = srv.messages(900)
                assert len(stored) == 1 and stored[0]["edited"]
                assert stored[0]["embeds"][0]["color"] == RESOLVED_COLOR
                assert stored[0]["embeds"][0]["title"].startswith("[RESOLVED]")
                # server goes down -> retry
                srv.go_down()
                r = await c.execute(url, msg(2))
                assert r.outcome == "retry" and "tok-fail-secret" not in (r.error or "")
                srv.go_down(False)
                # webhook deleted -> disabled, loudly, without the token
                srv.disappear(900)
                r = await c.execute(url, msg(3))
                assert r.outcome == "disabled" and r.status_code == 404 and "10015" in (r.error or "")
                assert "tok-fail-secret" not in repr(r)

        run(go())
        assert srv.stats.inside_wait == 0


def test_integration_multipart_attachment_stored_and_mentions() -> None:
    big_group = AlertGroup("crew=x", [mk(i) for i in range(30)], {"crew": "x"}, mention_roles=["555"])
    [m] = build_messages([big_group])
    with fake_discord() as srv:
        url = srv.url_for(901, "tok-mp-secret")

        async def go() -> Any:
            async with DiscordClient() as c:
                return await c.execute(url, m)

        r = run(go())
        assert r.outcome == "delivered"
        [stored] = srv.messages(901)
        assert stored["allowed_mentions"] == {"parse": [], "roles": ["555"]} and stored["content"] == "<@&555>"
        [att] = stored["attachments"]
        assert att["filename"].startswith("alerts-") and all(a.fingerprint.encode() in att["data"] for a in big_group.alerts)


def test_fake_rejects_what_discord_rejects() -> None:
    """The fake answers 400 50035 with nested errors exactly where Discord would."""
    with fake_discord() as srv:
        url = srv.url_for(902, "tok-400-secret")
        bad = {"username": "Clyde", "embeds": [{"title": "t" * 257, "fields": [{"name": "n", "value": "v" * 1025}]}]}
        resp = httpx.post(url, json=bad)
        assert resp.status_code == 400 and resp.json()["code"] == 50035
        errs = resp.json()["errors"]
        assert "_errors" in errs["embeds"]["0"]["title"] and "_errors" in errs["embeds"]["0"]["fields"]["0"]["value"]
        assert "_errors" in errs["username"]
        assert httpx.post(url, json={}).json()["code"] == 50006
        assert httpx.post(url.replace("tok-400-secret", "wrong"), json={"content": "x"}).status_code == 401
        assert httpx.post(url, json={"content": "x"}).status_code == 204
        assert "X-RateLimit-Reset-After" in httpx.post(url + "?wait=true", json={"content": "x"}).headers
        assert srv.stats.rejected == 3
