"""The claiming outbox: senders never share a row, a lost claim changes nothing, a dead
sender's rows are taken over when its lease runs out, each accepted message is recorded
before the next request, and a resolution edits every message that announced the alert.
On SQLite and on PostgreSQL (conftest's `make_store`/`store_url`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_discord import fake_discord
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.discord import DiscordClient
from perf_alerts.notify.discord.payload import RESOLVED_COLOR
from perf_alerts.notify.outbox import Outbox
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock
from test_notify import config_text, cycle, setup

T0 = 1_800_000_000.0


def _enqueue(store: Store, n: int, receiver: str = "oncall") -> list[int]:
    ob = Outbox(store)
    with store.transaction() as con:
        return [ob.enqueue(con, receiver, "message", f"g{i}", {"title": f"m{i}", "alerts": []}, T0) for i in range(n)]


def test_two_senders_claim_disjoint_rows_and_lose_nothing(make_store: Any) -> None:
    store = make_store()
    ids = _enqueue(store, 40)
    a, b = Outbox(make_store(), owner="a"), Outbox(make_store(), owner="b")
    got: dict[str, list[int]] = {}

    def take(ob: Outbox) -> None:
        got[ob.owner] = [n.id for n in ob.claim(T0, limit=25)]

    threads = [threading.Thread(target=take, args=(ob,)) for ob in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == ids[: len(got["a"]) + len(got["b"])]
    assert len(got["a"]) + len(got["b"]) == 40
    # claimed rows are nobody else's: a third sender finds nothing due
    assert Outbox(store, owner="c").claim(T0) == []


def test_a_sender_without_the_claim_changes_nothing(make_store: Any) -> None:
    store = make_store()
    [nid] = _enqueue(store, 1)
    a, b = Outbox(store, owner="a", lease=0.2), Outbox(store, owner="b", lease=30)
    [n] = a.claim(T0)
    assert b.retry(n, T0, "HTTP 503", 5) == "lost"  # b never claimed it
    assert not b.dead(n, T0, "no")
    assert not b.delivered(n, T0, ["1"])
    assert store.outbox_get(nid).state == "sending"  # type: ignore[union-attr]
    time.sleep(0.3)  # a's lease runs out (a died mid-delivery) …
    [n2] = b.claim(T0)  # … and b takes the row over
    assert n2.id == nid
    assert not a.delivered(n, T0, ["1"])  # a's late answer must not flip b's row
    assert a.retry(n, T0, "HTTP 429", 5) == "lost"
    assert b.delivered(n2, T0, ["2"])
    row = store.outbox_get(nid)
    assert row is not None and row.state == "delivered" and row.message_ids == ["2"] and row.claimed_by is None


def test_each_message_is_recorded_before_the_next_request(make_store: Any, store_url: str) -> None:
    """Three notifications of five alerts each fill two messages; when the second request
    leaves, the first message's notifications are already delivered in the store."""
    seen_states: list[dict[int, str]] = []
    posted = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posted
        con = Store(store_url)
        seen_states.append({r.id: r.state for r in con.outbox_recent()})
        con.close()
        posted += 1
        return httpx.Response(200, json={"id": str(1000 + posted), "channel_id": "1"})

    hook = "https://discord.com/api/webhooks/1/tok-secret"
    cfg = parse_config(config_text(hook, "https://discord.com/api/webhooks/2/tok2-secret"))
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, make_store(), clock)
    client = DiscordClient(transport=httpx.MockTransport(handler))
    try:
        n = Notifier(pa, discord_client=client)
        for i in range(15):
            pa.record("lat", 50 + i, {"agent": f"a{i}"})
        pa.evaluate()
        # one group of 15 firing alerts would be a digest; split them into three notifications by hand
        with pa.store.transaction() as con:
            alerts = pa.store.load_alerts(con=con)
            from perf_alerts.model import alert_snapshot

            for k in range(3):
                body = {"group_labels": {"part": str(k)}, "alerts": [alert_snapshot(a) for a in alerts[k * 5:(k + 1) * 5]]}
                n.outbox.enqueue(con, "oncall", "alerts", f"k{k}", body, T0)
        rep = n.deliver(T0)
        assert rep.delivered == 3 and posted == 2
        first, second = seen_states
        assert set(first.values()) == {"sending"}
        # when the second message left, the notifications the first one carried were recorded delivered
        assert sorted(first) == sorted(second) and list(second.values()).count("delivered") == 2
        assert all(r.state == "delivered" for r in pa.store.outbox_recent())
    finally:
        n.engine.run(client.aclose())


def test_resolution_edits_every_message_that_announced_the_alert(tmp_path: Path, make_store: Any) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, store=make_store())
        cycle(pa, clock, n, 0, {("lat", "researcher"): 50})
        n.plan(), n.deliver()
        # still firing past repeat_interval (1h): a reminder is posted as a second message
        cycle(pa, clock, n, 61, {("lat", "researcher"): 55})
        n.plan(), n.deliver()
        assert len(srv.messages(1)) == 2
        # it recovers: both messages turn green, nothing new is posted
        cycle(pa, clock, n, 62, {("lat", "researcher"): 10})
        cycle(pa, clock, n, 68, {("lat", "researcher"): 10})
        n.plan(), n.deliver()
        msgs = srv.messages(1)
        assert len(msgs) == 2 and srv.stats.edits == 2
        assert all(m["edited"] and m["embeds"][0]["color"] == RESOLVED_COLOR for m in msgs)


def test_store_work_of_a_delivery_does_not_run_on_the_event_loop(tmp_path: Path, make_store: Any) -> None:
    """Another connection holds the write lock for 1.5 s while a delivery records its outcome:
    the engine's loop keeps answering (the store calls wait in worker threads)."""
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, store=make_store())
        pa.record("lat", 50, {"agent": "researcher"})
        pa.evaluate()
        n.plan()
        locker = make_store()  # its transaction: SQLite's write lock, PostgreSQL's write advisory lock
        lags: list[float] = []

        async def ticker() -> None:
            import asyncio

            for _ in range(30):
                t = time.monotonic()
                await asyncio.sleep(0.05)
                lags.append(time.monotonic() - t - 0.05)

        with locker.transaction():
            fut = n.engine.submit(n._deliver(T0))
            lag = n.engine.submit(ticker())
            time.sleep(1.5)
        rep = fut.result(30)
        lag.result(30)
        assert rep.delivered == 1
        assert max(lags) < 0.25, max(lags)


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_many_sync_deliveries_reuse_one_client(tmp_path: Path) -> None:
    from perf_alerts.notify.engine import engine
    from perf_alerts.notify.pipeline import deliver_message

    with fake_discord() as srv:
        pa, clock, _ = setup(tmp_path, srv)
        before = engine().discord()
        for i in range(5):
            rep = deliver_message(pa, f"note {i}", "critical", "text")
            assert rep.state == "delivered"
        assert engine().discord() is before  # rate-limit state and connections survive between calls
        assert len(srv.messages(1)) == 5


def test_a_sender_that_lost_its_claim_stops_sending(make_store: Any) -> None:
    """Sender A stalls past its lease while Discord holds its first request; B takes the
    rest over. A must not post what is now B's (the review found both posting)."""
    hook = "https://discord.com/api/webhooks/1/tok-secret"
    cfg = parse_config(config_text(hook, "https://discord.com/api/webhooks/2/tok2-secret"))
    cfg = cfg.model_copy(update={"delivery": cfg.delivery.model_copy(update={"lease": 0.6})})
    pa = PerfAlerts(cfg, make_store(), ManualClock(T0))
    b_store = make_store()
    taken: list[int] = []
    posted = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posted
        posted += 1
        if posted == 1:  # A stalls (its loop is blocked: no heartbeat) and B takes over meanwhile
            time.sleep(0.8)
            taken.extend(n.id for n in Outbox(b_store, owner="B", lease=60).claim(T0))
        return httpx.Response(200, json={"id": str(1000 + posted), "channel_id": "1"})

    client = DiscordClient(transport=httpx.MockTransport(handler))
    n = Notifier(pa, discord_client=client)
    try:
        with pa.store.transaction() as con:
            for k in range(3):  # three messages' worth: each embed description near the limit
                n.outbox.enqueue(con, "oncall", "message", f"m{k}",
                                 {"title": f"m{k}", "description": "x" * 3900, "alerts": [],
                                  "group_labels": {"alertname": f"m{k}"}}, T0)
        rep = n.deliver(T0)
        assert posted == 1  # after the stall A noticed the takeover and sent nothing more
        # B took all three, the one in flight too (A's answer came after its lease): A records nothing
        assert len(taken) == 3 and rep.delivered == 0
        rows = {r.id: r for r in pa.store.outbox_recent()}
        assert all(rows[i].state == "sending" and rows[i].claimed_by == "B" for i in taken)
    finally:
        n.engine.run(client.aclose())


def test_a_takeover_counts_as_an_attempt(make_store: Any) -> None:
    store = make_store()
    [nid] = _enqueue(store, 1)
    for k in range(3):  # three senders die holding it
        [n] = Outbox(store, owner=f"dead{k}", lease=0.01).claim(T0)
        time.sleep(0.03)
    [n] = Outbox(store, owner="alive").claim(T0)
    assert n.attempts == 3  # a notification that kills every sender ends up dead, not retried forever


def test_an_edit_that_may_work_later_is_retried_not_replaced(tmp_path: Path, make_store: Any) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, store=make_store())
        cycle(pa, clock, n, 0, {("lat", "researcher"): 50})
        n.plan(), n.deliver()
        cycle(pa, clock, n, 1, {("lat", "researcher"): 10})
        clock.set(T0 + 6 * 60)
        pa.evaluate()
        n.plan()
        srv.fail_next(1, 503)  # the PATCH fails once
        rep = n.deliver()
        assert rep.failed == 1 and len(srv.messages(1)) == 1
        clock.set(T0 + 10 * 60)
        n.deliver()
        [msg] = srv.messages(1)  # still one message, now green: no red original beside a green copy
        assert msg["edited"] and msg["embeds"][0]["color"] == RESOLVED_COLOR


def test_a_recurring_alert_edits_only_its_own_incidents_messages(tmp_path: Path, make_store: Any) -> None:
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv, store=make_store())
        minute = 0
        for incident in range(3):
            cycle(pa, clock, n, minute, {("lat", "researcher"): 50})
            n.plan(), n.deliver()
            cycle(pa, clock, n, minute + 1, {("lat", "researcher"): 10})
            cycle(pa, clock, n, minute + 7, {("lat", "researcher"): 10})
            n.plan(), n.deliver()
            minute += 20
        assert len(srv.messages(1)) == 3 and srv.stats.edits == 3  # one edit per incident, not 1 + 2 + 3
        # each message keeps its own incident (the first one was not re-edited with the third's data)
        starts = [m["embeds"][0].get("timestamp") for m in srv.messages(1)]
        assert len(set(starts)) == 3


def test_sync_api_inside_a_loop_does_no_store_work_on_it(tmp_path: Path, make_store: Any) -> None:
    """Another connection holds the write lock; `deliver_message` called inside a running loop
    returns at once (the queueing and sending happen on the engine once the lock is free)."""
    import asyncio

    from perf_alerts.notify.pipeline import deliver_message

    with fake_discord() as srv:
        pa, clock, _ = setup(tmp_path, srv, store=make_store())
        locker = make_store()
        took: list[float] = []

        async def main() -> None:
            t = time.monotonic()
            rep = deliver_message(pa, "in a loop", "critical", "x")
            took.append(time.monotonic() - t)
            assert rep.state == "queued; delivering in the background" and rep.still_pending is None

        with locker.transaction():
            asyncio.run(main())
            time.sleep(0.5)
        assert took[0] < 0.2, took
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not srv.messages(1):
            time.sleep(0.05)
        assert len(srv.messages(1)) == 1


def test_a_groups_notifications_go_out_in_order_across_senders(make_store: Any) -> None:
    """Review of issue 12: with several replicas, B claimed a group's "resolved" while A was still
    sending its "firing". A newer notification of a group waits while an older one is held by
    another sender or waits for its retry; other groups are not held up."""
    import time as _t

    store = make_store()
    now = _t.time()
    with store.transaction() as con:
        first = store.outbox_insert(con, "ops", "alerts", "g1", {"alerts": []}, now - 5)
        second = store.outbox_insert(con, "ops", "alerts", "g1", {"alerts": []}, now - 4)
        other = store.outbox_insert(con, "ops", "alerts", "g2", {"alerts": []}, now - 3)
    assert [n.id for n in store.outbox_claim("A", now, 60, limit=1)] == [first]
    assert [n.id for n in store.outbox_claim("B", now, 60)] == [other]  # not g1's second: A holds its first
    assert store.outbox_progress("A", [], [first], now) == []
    assert [n.id for n in store.outbox_claim("B", now, 60)] == [second]
    # an older one waiting for its retry holds the newer ones of its group back too
    with store.transaction() as con:
        third = store.outbox_insert(con, "ops", "alerts", "g3", {"alerts": []}, now - 2)
        fourth = store.outbox_insert(con, "ops", "alerts", "g3", {"alerts": []}, now - 1)
    assert [n.id for n in store.outbox_claim("A", now, 60, limit=1)] == [third]
    assert store.outbox_retry("A", third, 1, now + 30, "HTTP 503")
    assert store.outbox_claim("B", now, 60) == []
    assert [n.id for n in store.outbox_claim("B", now + 31, 60)] == [third, fourth]  # both, in order
