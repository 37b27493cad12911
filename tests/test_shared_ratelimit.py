"""Issue 12: the Discord rate-limit budget of a webhook is shared through the store.

1. The store operations (`store/ratelimits.py`) on fixed wall-clock times: a first request
   probes for the limit, slots are counted down in one statement, old answers never hand
   slots out again, 429s (per webhook and global) block every sender, keys hold no secret,
   and the SQL stays in the dialect PostgreSQL also speaks.
2. Two `DiscordClient`s (two processes' worth) on one store against a Discord simulated on
   a fake clock: no request inside a wait with the shared state; with each its own memory,
   the very same run sends inside waits.
3. Real processes: two `perf-alerts deliver` and a daemon send a stream of notifications to
   one webhook of the Discord-like server (`fake_discord.py`) with a small limit: no request
   arrives inside an announced wait, nothing is lost, nothing is posted twice. The same run
   with senders that keep the state in their own memory (the code before this change) does
   send inside waits: the scenario can fail. `bench/shared_ratelimit.py` prints the numbers.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import sqlite3
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_discord import FakeDiscord, fake_discord
from test_delivery_concurrency import PAD, PY, Procs, log_problems, wait_until

from perf_alerts.notify.discord import DiscordClient, SharedRateLimits, build_messages
from perf_alerts.notify.discord.payload import AlertGroup
from perf_alerts.notify.discord.ratelimit import webhook_key
from perf_alerts.store import Store
from perf_alerts.store import ratelimits as rl_module
from perf_alerts.store.ratelimits import GLOBAL_KEY

T0 = 1_800_000_000.0
KEY = webhook_key("5151")
OTHER = webhook_key("6262")


@pytest.fixture
def store(make_store: Any) -> Any:
    """A store on each backend (SQLite, PostgreSQL: tests/conftest.py)."""
    return make_store()


def learn(store: Store, key: str = KEY, *, at: float = T0, cap: int = 3, per: float = 1.0) -> None:
    """The first request probes and its answer tells the limit: `cap - 1` slots left, reset in `per`."""
    assert store.ratelimit_take(key, at) == 0.0
    store.ratelimit_note(key, at, remaining=cap - 1, reset_after=per, cap=cap, bucket="bkt", margin=0.0)


# ----------------------------------------------------------------------------- 1. store operations


def test_first_request_probes_and_others_wait_for_its_answer(store: Store) -> None:
    assert store.ratelimit_take(KEY, T0) == 0.0  # the probe
    wait = store.ratelimit_take(KEY, T0 + 0.01)
    assert 0 < wait <= 0.1  # look again soon: the probe's answer usually comes quickly
    store.ratelimit_note(KEY, T0 + 0.05, remaining=4, reset_after=2.0, cap=5, bucket="abc", margin=0.0)
    row = store.ratelimit_get(KEY)
    assert row is not None and (row.cap, row.remaining, row.reset_at, row.per_window, row.bucket) == \
        (5, 4, T0 + 2.05, 2.0, "abc")
    assert [store.ratelimit_take(KEY, T0 + 0.1) for _ in range(4)] == [0.0] * 4


def test_a_probe_without_answer_times_out_or_is_released(store: Store) -> None:
    assert store.ratelimit_take(KEY, T0, probe=5.0) == 0.0
    assert store.ratelimit_take(KEY, T0 + 4.9, probe=5.0) > 0
    assert store.ratelimit_take(KEY, T0 + 5.0, probe=5.0) == 0.0  # the prober died: the next one probes
    store.ratelimit_release(KEY, T0 + 5.2)  # its connection failed: the window opens at once
    assert store.ratelimit_take(KEY, T0 + 5.2, probe=5.0) == 0.0


def test_slots_are_counted_down_then_everyone_waits_for_the_reset(store: Store) -> None:
    learn(store, cap=3, per=1.0)  # window ends at T0 + 1.0, 2 slots left
    assert store.ratelimit_take(KEY, T0 + 0.1) == 0.0
    assert store.ratelimit_take(KEY, T0 + 0.2) == 0.0
    assert store.ratelimit_take(KEY, T0 + 0.3) == pytest.approx(0.7)
    assert store.ratelimit_take(KEY, T0 + 0.9) == pytest.approx(0.1)
    # the window is over: a new one, provisionally as long as the longest seen (+ margin)
    assert store.ratelimit_take(KEY, T0 + 1.0, margin=0.05) == 0.0
    row = store.ratelimit_get(KEY)
    assert row is not None and row.remaining == 2 and row.reset_at == pytest.approx(T0 + 2.05)


def test_no_slot_in_the_last_guard_seconds_of_a_window(store: Store) -> None:
    learn(store, cap=5, per=1.0)
    assert store.ratelimit_take(KEY, T0 + 0.85, guard=0.2) == pytest.approx(0.15)
    assert store.ratelimit_take(KEY, T0 + 0.85, guard=0.0) == 0.0


def test_an_old_answer_never_hands_slots_out_again(store: Store) -> None:
    learn(store, cap=5, per=2.0)  # 4 left
    for _ in range(4):
        assert store.ratelimit_take(KEY, T0 + 0.1) == 0.0
    # answers to the earlier requests arrive now: they say more was left than has been reserved since
    store.ratelimit_note(KEY, T0 + 0.2, remaining=3, reset_after=1.8, cap=5, margin=0.0)
    store.ratelimit_note(KEY, T0 + 0.3, remaining=2, reset_after=1.7, cap=5, margin=0.0)
    row = store.ratelimit_get(KEY)
    assert row is not None and row.remaining == 0 and row.reset_at == pytest.approx(T0 + 2.0)
    assert store.ratelimit_take(KEY, T0 + 0.4) == pytest.approx(1.6)


def test_the_reset_only_moves_later_within_a_window(store: Store) -> None:
    learn(store, cap=5, per=2.0)
    store.ratelimit_note(KEY, T0 + 0.5, remaining=3, reset_after=1.0, margin=0.0)  # earlier: ignored
    assert store.ratelimit_get(KEY).reset_at == pytest.approx(T0 + 2.0)  # type: ignore[union-attr]
    store.ratelimit_note(KEY, T0 + 0.5, remaining=3, reset_after=2.0, margin=0.0)  # later: kept
    assert store.ratelimit_get(KEY).reset_at == pytest.approx(T0 + 2.5)  # type: ignore[union-attr]


def test_remaining_zero_blocks_every_sender_until_the_reset(store: Store) -> None:
    learn(store, cap=5, per=2.0)
    store.ratelimit_note(KEY, T0 + 0.5, remaining=0, reset_after=1.6, margin=0.05)
    assert store.ratelimit_take(KEY, T0 + 0.6) == pytest.approx(1.55, abs=1e-6)
    assert store.ratelimit_take(KEY, T0 + 2.15) == 0.0


def test_429_blocks_the_webhook_and_a_global_429_blocks_every_webhook(store: Store) -> None:
    learn(store, KEY, cap=5)
    learn(store, OTHER, cap=5)
    store.ratelimit_note_429(KEY, T0 + 0.1, 3.0, margin=0.05)
    assert store.ratelimit_take(KEY, T0 + 0.2) == pytest.approx(2.95)
    assert store.ratelimit_take(OTHER, T0 + 0.2) == 0.0
    store.ratelimit_note_429(GLOBAL_KEY, T0 + 0.3, 1.0, margin=0.0)
    assert store.ratelimit_take(OTHER, T0 + 0.4) == pytest.approx(0.9)
    assert store.ratelimit_take(OTHER, T0 + 1.3) == 0.0
    assert store.ratelimit_take(KEY, T0 + 3.15) == 0.0  # a new window after the 429's wait


def test_answers_without_headers_end_a_probe_and_count_nothing(store: Store) -> None:
    assert store.ratelimit_take(KEY, T0) == 0.0
    store.ratelimit_note(KEY, T0 + 0.1, remaining=None, reset_after=None, bucket="b1")
    row = store.ratelimit_get(KEY)
    assert row is not None and row.cap is None and row.bucket == "b1"
    assert store.ratelimit_take(KEY, T0 + 0.1) == 0.0  # the next request probes in turn


def test_missing_limit_header_is_taken_as_remaining_plus_one(store: Store) -> None:
    assert store.ratelimit_take(KEY, T0) == 0.0
    store.ratelimit_note(KEY, T0, remaining=2, reset_after=1.0, margin=0.0)
    assert store.ratelimit_get(KEY).cap == 3  # type: ignore[union-attr]


def test_concurrent_takers_never_get_more_slots_than_the_window_has(make_store: Any) -> None:
    """Eight threads, each with a store handle of its own, race for slots at the same instant."""
    learn(make_store(), cap=5, per=10.0)  # 4 left
    granted: list[float] = []
    lock = threading.Lock()
    stores = [make_store() for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def worker(st: Store) -> None:
        barrier.wait()
        for _ in range(10):
            w = st.ratelimit_take(KEY, T0 + 1.0)
            with lock:
                granted.append(w)

    threads = [threading.Thread(target=worker, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for w in granted if w == 0.0) == 4 and len(granted) == 80


def test_keys_hold_no_secret(store: Store) -> None:
    assert re.fullmatch(r"webhook:[0-9a-f]{32}", KEY) and "5151" not in KEY
    for bad in ("https://discord.com/api/webhooks/1/tok", "webhook:tok-en", "5151", ""):
        with pytest.raises(ValueError):
            store.ratelimit_take(bad, T0)


def _sql_of(module: Any) -> str:
    """Every string of the module that is not a docstring: its SQL (and a few messages)."""
    tree = ast.parse(Path(module.__file__).read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return "\n".join(c.value for c in ast.walk(tree)
                     if isinstance(c, ast.Constant) and isinstance(c.value, str) and id(c) not in docs)


def test_sql_stays_in_the_dialect_postgresql_also_speaks() -> None:
    src = _sql_of(rl_module)
    assert "UPDATE discord_ratelimits" in src and "ON CONFLICT (bucket_key)" in src
    for banned in (r"INSERT\s+OR", r"\bPRAGMA\b", r"\blastrowid\b", r"\bMAX\s*\(", r"\bMIN\s*\(", r"\bIFNULL\b",
                   r"\bREPLACE\s+INTO\b", r"WITHOUT ROWID", r"\bAUTOINCREMENT\b", r"\bjulianday\b|\bstrftime\b"):
        assert not re.search(banned, src, re.I), banned
    cols = re.findall(r"^\s+(\w+)\s+(TEXT|REAL|INTEGER)\b", rl_module.RATELIMIT_SCHEMA, re.M)
    assert cols and {c for c, _ in cols}.isdisjoint({"window", "user", "order", "limit", "key", "group", "offset"})
    assert "CREATE TABLE IF NOT EXISTS" in rl_module.RATELIMIT_SCHEMA


# ----------------------------------------------------------------------------- 2. clients on one store


class SimDiscord:
    """Discord's fixed window on a fake clock, counting requests that arrive inside a wait."""

    def __init__(self, clock: "FakeTime", limit: int = 3, per: float = 1.0) -> None:
        self.clock, self.limit, self.per = clock, limit, per
        self.count = 0
        self.reset_at = 0.0
        self.blocked_until = 0.0
        self.inside_wait = self.rate_limited = self.created = 0

    def __call__(self, req: httpx.Request) -> httpx.Response:
        now = self.clock.now()
        if now < self.blocked_until:
            self.inside_wait += 1
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.per
        left = self.reset_at - now
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Reset-After": f"{left:.3f}",
                   "X-RateLimit-Bucket": "sim"}
        if self.count >= self.limit:
            self.blocked_until = self.reset_at
            self.rate_limited += 1
            return httpx.Response(429, json={"message": "rate limited", "retry_after": round(left, 3), "global": False},
                                  headers={**headers, "X-RateLimit-Remaining": "0"})
        self.count += 1
        if self.count >= self.limit:
            self.blocked_until = self.reset_at
        self.created += 1
        return httpx.Response(200, json={"id": str(self.created)},
                              headers={**headers, "X-RateLimit-Remaining": str(self.limit - self.count)})


class FakeTime:
    """One clock for both 'processes' and Discord; sleeping advances it."""

    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s
        await asyncio.sleep(0)


def _two_clients_send(store: Store | None, per_client: int = 9) -> SimDiscord:
    ft = FakeTime()
    sim = SimDiscord(ft)
    url = "https://discord.com/api/webhooks/5151/client-test-token"
    msg = build_messages([AlertGroup("g", [], {}, title="hello", description="world")])[0]

    async def go() -> None:
        clients = [DiscordClient(transport=httpx.MockTransport(sim), clock=ft, sleep=ft.sleep) for _ in range(2)]
        if store is not None:
            # each client stands for a process: its own SharedRateLimits, one store
            clients = [c.with_limits(SharedRateLimits(store, wall=ft, margin=0.0, guard=0.0)) for c in clients]

        async def send(c: DiscordClient) -> None:
            for _ in range(per_client):
                r = await c.execute(url, msg)
                assert r.outcome == "delivered", r

        await asyncio.gather(*(send(c) for c in clients))
        for c in clients:
            await c._http.aclose()  # views do not own the HTTP client

    asyncio.run(go())
    return sim


def test_two_clients_sharing_the_store_never_send_inside_a_wait(store: Store) -> None:
    sim = _two_clients_send(store)
    assert sim.created == 18 and sim.inside_wait == 0 and sim.rate_limited == 0
    row = store.ratelimit_get(KEY)
    assert row is not None and row.cap == 3 and row.bucket == "sim"


def test_two_clients_each_with_its_own_memory_do_send_inside_waits() -> None:
    sim = _two_clients_send(None)
    assert sim.created == 18 and sim.inside_wait > 0 and sim.rate_limited > 0


def test_a_store_failure_makes_a_retry_never_a_blind_request() -> None:
    calls: list[int] = []

    class Broken:
        def ratelimit_take(self, *a: Any, **k: Any) -> float:
            raise sqlite3.OperationalError("database is locked")

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"id": "1"})

    async def go() -> Any:
        async with DiscordClient(transport=httpx.MockTransport(handler)) as c:
            view = c.with_limits(SharedRateLimits(Broken()))  # type: ignore[arg-type]
            msg = build_messages([AlertGroup("g", [], {}, title="t", description="d")])[0]
            return await view.execute("https://discord.com/api/webhooks/77/tok-secret", msg)

    res = asyncio.run(go())
    assert res.outcome == "retry" and res.retry_after and not calls and "tok-secret" not in (res.error or "")


# ----------------------------------------------------------------------------- 3. real processes

HOOK_ID = 5151
TOKEN = "shared-ratelimit-token-secret"
MARK_RE = re.compile(r"notice-(\d{3})")
# what each sender reports: `deliver` "notifications: 0 queued, 12 delivered, …", the daemon's log
# "notifications: 1 delivered, …", the sender script "12 delivered"
DELIVERED_RE = re.compile(r"(?:^|notifications: |, )(\d+) delivered", re.M)

_CONFIG = """\
global: {evaluation_interval: 0.5s}
receivers:
  - name: oncall
    discord: {webhook_url: "${TEST_HOOK}"}
route: {receiver: oncall, group_wait: 0s, group_interval: 1s}
delivery: {max_attempts: 100, backoff_base: 0.5s, backoff_cap: 1s, cli_deadline: 60s, lease: 10s}
"""

# A sender that delivers like `perf-alerts deliver` (`deliver_due`), or like it did before the
# state was shared: with a Discord client of its own, whose rate-limit state is its memory.
_SENDER = """\
import sys
from perf_alerts.config import load_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.discord import DiscordClient
from perf_alerts.notify.pipeline import Notifier, deliver_due
from perf_alerts.store import Store

cfg, db, mode = sys.argv[1:4]
store = Store(db)
try:
    pa = PerfAlerts(load_config(cfg), store)
    if mode == "shared":
        print(deliver_due(pa).to_dict()["delivered"], "delivered")
    else:
        client = DiscordClient()
        n = Notifier(pa, discord_client=client)
        try:
            _, rep = n.flush(pa.clock.now(), pa.config.delivery.cli_deadline, flush_new_groups=False)
            print(rep.delivered, "delivered")
        finally:
            n.engine.run(client.aclose())
finally:
    store.close()
"""


def seed_stream(cfg: Path, db: str, url: str, n: int, start: float, every: float) -> None:
    """`n` messages in the outbox, the i-th due at wall time `start + i * every`: a stream
    arriving faster than the webhook's limit, so every sender keeps finding work."""
    from perf_alerts.config import load_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier

    store = Store(db)
    try:
        notifier = Notifier(PerfAlerts(load_config(cfg, env={"TEST_HOOK": url}), store))
        for i in range(n):
            # ≈3,000 characters each: one Discord message per notification, so copies are countable
            ids = notifier.enqueue_message(f"notice-{i:03d}", f"notice-{i:03d} {PAD.strip()}", "warning",
                                           at=start + i * every)
            assert len(ids) == 1
    finally:
        store.close()


def _outbox(db: str) -> dict[str, int]:
    store = Store(db)
    try:
        return dict(Counter(r[0] for r in store.con.execute("SELECT state FROM notifications").fetchall()))
    finally:
        store.close()


def _open_rows(db: str) -> int:
    return sum(n for st, n in _outbox(db).items() if st not in ("delivered", "dead"))


def _keys(db: str) -> list[str]:
    store = Store(db)
    try:
        return [r.key for r in store.ratelimit_rows()]
    finally:
        store.close()


def _copies(srv: FakeDiscord) -> Counter[int]:
    c: Counter[int] = Counter()
    for p in srv.posted(HOOK_ID):
        c.update({int(m) for e in p["embeds"] for m in MARK_RE.findall(json.dumps(e))})
    return c


def run_shared(tmp: Path, mode: str = "cli", *, n: int = 24, limit: int = 3, per: float = 1.0,
               senders: int = 3, every: float = 0.08, db: str | None = None) -> dict[str, Any]:
    """`senders` processes start at once and deliver a stream of `n` notifications to one webhook
    allowing `limit` requests per `per` seconds. mode "cli": two `perf-alerts deliver` and a
    daemon (rate limits shared through the store); "shared": `senders` processes doing what
    `deliver` does; "memory": the same with each sender's state in its own memory.
    `db`: the store (a SQLite path or a PostgreSQL URL; default a SQLite file in `tmp`)."""
    cfg = tmp / "alerting.yaml"
    db = db or str(tmp / "store.db")
    cfg.write_text(_CONFIG)
    script = tmp / "sender.py"
    script.write_text(_SENDER)
    with fake_discord(limit=limit, per_seconds=per) as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        start = time.time() + 3.0  # the processes are up (imports done) before the first is due
        seed_stream(cfg, db, url, n, start, every)
        procs = Procs(tmp, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        t0 = time.monotonic()
        daemon = None
        try:
            if mode == "cli":
                clis = {f"deliver{i + 1}": procs.cli(f"deliver{i + 1}", cfg, db, "deliver") for i in range(senders - 1)}
                daemon = procs.daemon("daemon", cfg, db)
            else:
                clis = {f"sender{i + 1}": procs.start(f"sender{i + 1}", [*PY, str(script), str(cfg), str(db), mode])
                        for i in range(senders)}
            codes: dict[str, int | None] = {name: procs.wait(p, 120) for name, p in clis.items()}
            done = wait_until(lambda: len(_copies(srv)) == n and _open_rows(db) == 0, 60, 0.2)
            time.sleep(1.0)  # a second copy, if any, arrives now
            if daemon is not None:
                codes["daemon"] = procs.terminate(daemon)
        finally:
            procs.cleanup()
        seconds = time.monotonic() - t0
        st = srv.stats
        copies = _copies(srv)
        delivered_by = {name: sum(int(x) for x in DELIVERED_RE.findall(procs.log(name))) for name, _ in procs.started}
        return {
            "delivered_by": delivered_by,
            "mode": mode, "notifications": n, "limit": f"{limit}/{per:g}s", "senders": senders,
            "codes": codes, "completed": done, "seconds": round(seconds, 1),
            "requests": st.requests, "inside_wait": st.inside_wait, "rate_limited": st.rate_limited,
            "posted": st.messages_created,
            "lost": sorted(set(range(n)) - set(copies)),
            "duplicated": sorted(i for i, c in copies.items() if c > 1),
            "outbox": _outbox(db), "keys": _keys(db),
            "logs": procs.logs(),
        }


def _detail(res: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in res.items() if k != "logs"}, indent=1, default=str) + "\n" + \
        str(res.get("logs", ""))[-6000:]


@pytest.mark.slow
@pytest.mark.filterwarnings("error::ResourceWarning")
def test_deliver_processes_and_a_daemon_share_one_budget(tmp_path: Path, store_url: str) -> None:
    res = run_shared(tmp_path, "cli", db=store_url)
    info = _detail(res)
    assert res["codes"] == {"deliver1": 0, "deliver2": 0, "daemon": 0}, info
    assert res["completed"], info
    assert res["inside_wait"] == 0 and res["rate_limited"] == 0, info
    assert res["lost"] == [] and res["duplicated"] == [], info
    assert res["outbox"] == {"delivered": res["notifications"]}, info
    # the senders really competed: more than one of them sent (the budget was shared, not one process's)
    assert sum(res["delivered_by"].values()) == res["notifications"], info
    assert sum(1 for v in res["delivered_by"].values() if v) >= 2, info
    assert not log_problems(res["logs"]), info
    assert TOKEN not in res["logs"] and str(HOOK_ID) not in "".join(res["keys"]), info
    assert res["keys"] == [webhook_key(str(HOOK_ID))], info


@pytest.mark.slow
@pytest.mark.filterwarnings("error::ResourceWarning")
def test_without_sharing_the_same_stream_is_sent_inside_waits(tmp_path: Path) -> None:
    """The control: what the scenario above catches. Senders with their own rate-limit memory
    (the code before this change) each believe the whole budget is theirs."""
    res = run_shared(tmp_path, "memory")
    info = _detail(res)
    assert res["completed"] and res["lost"] == [], info  # 429s are waited out and resent, nothing lost
    assert res["inside_wait"] > 0 and res["rate_limited"] > 0, info
    assert res["keys"] == [], info  # nothing of theirs went through the store
