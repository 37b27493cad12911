"""Issue 9: many senders, crashes and a busy store must not duplicate, lose or freeze delivery.

Real processes against the Discord-like server in `fake_discord.py` (127.0.0.1 only):

1. two `perf-alerts deliver`, the daemon and `perf-alerts evaluate` started at once on one
   store: every notification is accepted by the server exactly once;
2. the daemon SIGKILLed five times while it delivers (three times while posting, twice while
   editing resolutions) and restarted: nothing lost, no notification posted more than twice
   (a crash may re-send the one message in flight), and every message the system could know
   about that announced a now-resolved alert shows it green;
3. another process holds the SQLite write lock for 10 s: the daemon's `/api/v1/alerts` keeps
   answering within 1 s (polled every ~100 ms);
4. the sync API (`deliver_due`, `deliver_message`, `deliver_summary`) called from inside a
   running event loop never blocks that loop for more than 50 ms (each call returns within
   50 ms, and no tick of a ticker on that loop is late by 0.25 s, half the shortest answer it
   could wait for, whatever else loads the machine), against a Discord that answers slowly or
   429s, and what it queued is still delivered exactly once.

Every notification is identified in Discord by its alert's `agent` label (`svc-NNN`, one alert
per group), and each one is padded so that it gets a message of its own: copies are counted
per notification, not per packed message. Subprocesses run Python with
`-W error::ResourceWarning`; their output must not mention a ResourceWarning or a traceback,
and the in-process scenario (4) must not leak anything that warns when collected.
The config sets `delivery: {lease: 5s}` (a killed sender's claims are free again after 5 s of
wall time) whenever the imported perf_alerts knows the key, so the bench can run the very same
scenarios on older code.

The scenario functions return plain numbers so `bench/delivery_concurrency.py` can print the
same measurements (before/after) without asserting anything.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
import pytest

from fake_discord import FakeDiscord, fake_discord

HOOK_ID = 5151
TOKEN = "concurrency-token-secret"
GREEN = 0x43A047  # the resolved colour (SPEC §7: green when resolved)
AGENT_RE = re.compile(r"svc-\d{3}(?!\d)")
PY = [sys.executable, "-W", "error::ResourceWarning"]
LEASE = "5s"
# ≈3,000 characters of description: two such embeds exceed Discord's 6,000 per message, so each
# notification is posted as a message of its own and copies can be counted per notification.
PAD = "Check the upstream queue depth, the worker pool and the model latency before scaling out. " * 34

_CONFIG = """\
global: {evaluation_interval: 0.5s}
rules:
  - name: HighLatency
    type: threshold
    metric: lat
    aggregate: last
    window: 10m
    op: ">"
    value: 30
    severity: critical
    group: critical
    annotations:
      summary: "{{ labels.agent }} latency {{ value }}s"
      description: "@PAD@"
receivers:
  - name: oncall
    discord: {webhook_url: "${TEST_HOOK}"}
route: {receiver: oncall, group_by: [agent], group_wait: 0s, group_interval: 1s}
delivery: {max_attempts: 100, backoff_base: 0.5s, backoff_cap: 1s, cli_deadline: 10s@LEASE@}
schedules:
  - {name: checks, every: continuous, job: evaluate, group: critical}
"""


def agent(i: int) -> str:
    return f"svc-{i:03d}"


def lease_supported() -> bool:
    """Whether the perf_alerts being imported knows `delivery.lease` (the bench runs old code too)."""
    from perf_alerts.config import DeliverySettings

    return "lease" in DeliverySettings.model_fields


def write_config(directory: Path, *, lease: bool = True) -> Path:
    p = directory / "alerting.yaml"
    p.write_text(_CONFIG.replace("@PAD@", PAD.strip()).replace("@LEASE@", f", lease: {LEASE}" if lease else ""))
    return p


def seed(cfg: Path, db: Path, url: str, agents: Iterable[int], value: float = 50.0, *, evaluate: bool = True,
         plan: bool = True) -> None:
    """Record one `lat` sample per agent now; optionally evaluate and write the outbox (due at once)."""
    from perf_alerts.config import load_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier
    from perf_alerts.store import Store

    store = Store(db)
    try:
        pa = PerfAlerts(load_config(cfg, env={"TEST_HOOK": url}), store)
        for i in agents:
            pa.record("lat", value, {"agent": agent(i)})
        if evaluate:
            pa.evaluate()
        if plan:
            Notifier(pa).plan()
    finally:
        store.close()


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


class Procs:
    """Processes started by one scenario: logs in files, always reaped (no ResourceWarning)."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.dir = directory
        self.env = {**os.environ, **env}
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.dir / f"{name}.log").open("ab") as fh:
            p = subprocess.Popen(args, env=self.env, cwd=self.dir, stdout=fh, stderr=subprocess.STDOUT)
        self.started.append((name, p))
        return p

    def cli(self, name: str, cfg: Path, db: Path, *args: str) -> subprocess.Popen[bytes]:
        return self.start(name, [*PY, "-m", "perf_alerts", "--config", str(cfg), "--db", str(db), *args])

    def daemon(self, name: str, cfg: Path, db: Path, port: int | None = None) -> subprocess.Popen[bytes]:
        http = ["--port", str(port)] if port is not None else ["--no-http"]
        return self.cli(name, cfg, db, "run", "--no-host-metrics", *http)

    @staticmethod
    def wait(p: subprocess.Popen[bytes], timeout: float) -> int | None:
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None

    def terminate(self, p: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
        """SIGTERM and wait; None if it had to be killed."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        return self.wait(p, timeout)

    def cleanup(self) -> None:
        for _, p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait()

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "".join(f"===== {name} (exit {p.returncode})\n{self.log(name)}\n" for name, p in self.started)


def log_problems(logs: str) -> list[str]:
    """Lines of the processes' output that name a ResourceWarning or start a traceback."""
    return [ln for ln in logs.splitlines() if "ResourceWarning" in ln or ln.startswith("Traceback")]


def outbox_states(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db, timeout=20)
    try:
        return dict(Counter(r[0] for r in con.execute("SELECT state FROM notifications")))
    finally:
        con.close()


def open_rows(db: Path) -> int:
    return sum(n for st, n in outbox_states(db).items() if st not in ("delivered", "dead"))


# ----------------------------------------------------------------------------- what Discord got


def _agents(embed: dict[str, Any]) -> set[str]:
    return set(AGENT_RE.findall(json.dumps(embed)))


def _kind(embed: dict[str, Any]) -> str:
    return "resolved" if embed.get("color") == GREEN else "firing"


def copies(srv: FakeDiscord) -> Counter[tuple[str, str]]:
    """(agent, 'firing'|'resolved') → number of accepted POSTs (messages created) announcing it."""
    c: Counter[tuple[str, str]] = Counter()
    for p in srv.posted(HOOK_ID):
        c.update({(a, _kind(e)) for e in p["embeds"] for a in _agents(e)})
    return c


def all_posted(srv: FakeDiscord, agents: set[str]) -> bool:
    c = copies(srv)
    return all(c[(a, "firing")] for a in agents)


def tally(srv: FakeDiscord, firing: set[str], resolved: set[str]) -> dict[str, Any]:
    """Lost / duplicated / max copies per notification, and stale firing embeds after resolution.

    A firing notification is lost if no message announced it; a resolution is lost if no message
    shows the alert green. `stale` counts (message, alert) pairs still showing a resolved alert as
    firing; `stale_known` leaves out orphaned messages (created for a sender killed before it got
    the answer: no sender can know their ids, so nobody can edit them)."""
    c = copies(srv)
    orphans = {p["id"] for p in srv.posted(HOOK_ID) if p["orphaned"]}
    green: set[str] = set()
    stale = stale_known = 0
    for m in srv.messages(HOOK_ID):
        for e in m["embeds"]:
            for a in _agents(e):
                if _kind(e) == "resolved":
                    green.add(a)
                elif a in resolved:
                    stale += 1
                    stale_known += m["id"] not in orphans
    lost = sorted([f"{a} firing" for a in firing if not c[(a, "firing")]] +
                  [f"{a} resolved" for a in resolved if a not in green])
    return {
        "notifications": len(firing) + len(resolved),
        "lost": len(lost), "lost_list": lost[:20],
        "duplicated": sum(1 for n in c.values() if n > 1),
        "max_copies": max(c.values(), default=0),
        "copies": {f"{a} {k}": n for (a, k), n in sorted(c.items()) if n > 1},
        "orphaned": len(orphans),
        "stale": stale, "stale_known": stale_known,
        "posts": srv.stats.messages_created, "edits": srv.stats.edits,
    }


# ----------------------------------------------------------------------------- scenarios


def run_concurrent(tmp: Path, *, lease: bool = True, seeded: int = 30, fresh: int = 30) -> dict[str, Any]:
    """`seeded` notifications already due in the outbox and `fresh` agents' samples not yet
    evaluated; then two `deliver`, the daemon and `evaluate` start at once on the store."""
    cfg, db = write_config(tmp, lease=lease), tmp / "store.db"
    expected = {agent(i) for i in range(seeded + fresh)}
    with fake_discord(limit=10, per_seconds=1.0) as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        seed(cfg, db, url, range(seeded))
        seed(cfg, db, url, range(seeded, seeded + fresh), evaluate=False, plan=False)
        procs = Procs(tmp, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        t0 = time.monotonic()
        try:
            daemon = procs.daemon("daemon", cfg, db)
            clis = {name: procs.cli(name, cfg, db, *args) for name, args in
                    [("deliver1", ["deliver"]), ("deliver2", ["deliver"]), ("evaluate", ["evaluate"])]}
            codes = {name: procs.wait(p, 60) for name, p in clis.items()}
            done = wait_until(lambda: all_posted(srv, expected) and open_rows(db) == 0, 30, 0.2)
            time.sleep(1.5)  # a second copy, if any, arrives now
            codes["daemon"] = procs.terminate(daemon)
        finally:
            procs.cleanup()
        res = tally(srv, expected, set())
        res.update(codes=codes, completed=done, seconds=round(time.monotonic() - t0, 1), outbox=outbox_states(db),
                   logs=procs.logs())
    return res


def run_kills(tmp: Path, *, lease: bool = True, n: int = 12, kills_posting: int = 3, kills_editing: int = 2,
              delay: float = 0.25) -> dict[str, Any]:
    """The daemon delivers `n` notifications (each answer held `delay` s) and is SIGKILLed while a
    request is in flight after it made progress, `kills_posting` times; then the alerts resolve
    and it is killed `kills_editing` times while editing; a last daemon finishes the work."""
    cfg, db = write_config(tmp, lease=lease), tmp / "store.db"
    agents = {agent(i) for i in range(n)}
    kills = 0
    with fake_discord(limit=50, per_seconds=1.0) as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        seed(cfg, db, url, range(n))
        srv.set_delay(delay)
        procs = Procs(tmp, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        lives = 0
        t0 = time.monotonic()

        def start() -> subprocess.Popen[bytes]:
            nonlocal lives
            lives += 1
            return procs.daemon(f"daemon{lives}", cfg, db)

        def kill_mid(p: subprocess.Popen[bytes], counter: str, base: int) -> bool:
            """SIGKILL once the daemon got something accepted (`counter` grew) and has a request held.

            `held`, not `in_flight`: the request that just made `counter` grow is still in flight
            while its answer is written, and a kill then lands after Discord answered but before the
            sender recorded it (the at-least-once window no sender can close), not mid-request."""
            nonlocal kills
            hit = wait_until(lambda: (getattr(srv.stats, counter) > base and srv.held > 0) or p.poll() is not None,
                             25, 0.005)
            if not hit or p.poll() is not None:
                return False
            p.kill()
            p.wait()
            kills += 1
            wait_until(lambda: srv.in_flight == 0, 5)  # the request it left behind is answered (or orphaned)
            return True

        try:
            p = start()
            for _ in range(kills_posting):
                if not kill_mid(p, "messages_created", srv.stats.messages_created):
                    break
                p = start()
            if p.poll() is not None:  # it stopped by itself (see its log): a fresh one finishes the work
                p = start()
            firing_done = wait_until(lambda: all_posted(srv, agents) and open_rows(db) == 0, 30, 0.1)
            # every alert resolves; the running daemon evaluates, then edits the messages
            base = srv.stats.edits
            seed(cfg, db, url, range(n), value=5.0, evaluate=False, plan=False)
            for _ in range(kills_editing):
                if not kill_mid(p, "edits", base):
                    break
                p = start()
                base = srv.stats.edits
            if p.poll() is not None:
                p = start()

            def resolved_done() -> bool:
                t = tally(srv, agents, agents)
                return t["lost"] == 0 and t["stale_known"] == 0 and open_rows(db) == 0

            done = wait_until(resolved_done, 30, 0.2)
            time.sleep(1.0)
            last_rc = procs.terminate(p)
        finally:
            procs.cleanup()
        res = tally(srv, agents, agents)
        res.update(kills=kills, firing_completed=firing_done, completed=done, last_exit=last_rc,
                   seconds=round(time.monotonic() - t0, 1), outbox=outbox_states(db), logs=procs.logs())
    return res


_LOCKER = """\
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("ROLLBACK")
con.close()
print("released", flush=True)
"""


def run_lock(tmp: Path, *, lease: bool = True, hold: float = 10.0, every: float = 0.1) -> dict[str, Any]:
    """The daemon serves its API and retries deliveries to a Discord that is down; another process
    takes the write lock (BEGIN IMMEDIATE) for `hold` s; GET /api/v1/alerts every `every` s."""
    cfg, db = write_config(tmp, lease=lease), tmp / "store.db"
    agents = {agent(i) for i in range(5)}
    t0 = time.monotonic()
    latencies: list[float] = []
    errors: list[str] = []
    with fake_discord() as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        seed(cfg, db, url, range(5))
        srv.go_down(True)
        procs = Procs(tmp, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        port = free_port()
        api = f"http://127.0.0.1:{port}/api/v1/alerts"
        delivered_after = None
        try:
            daemon = procs.daemon("daemon", cfg, db, port)
            with httpx.Client(timeout=hold + 5) as client:

                def up() -> bool:
                    try:
                        return client.get(api, timeout=0.5).status_code == 200
                    except httpx.HTTPError:
                        return daemon.poll() is not None

                wait_until(up, 30, 0.1)
                # the daemon is busy retrying the notifications when the lock is taken
                wait_until(lambda: srv.stats.dropped_connections >= 2 or daemon.poll() is not None, 15)
                locker = procs.start("locker", [*PY, "-c", _LOCKER, str(db), str(hold)])
                wait_until(lambda: "locked" in procs.log("locker") or locker.poll() is not None, 15, 0.01)
                while locker.poll() is None:
                    t = time.monotonic()
                    try:
                        r = client.get(api)
                        if r.status_code != 200 or "alerts" not in r.json():
                            errors.append(f"HTTP {r.status_code}")
                    except httpx.HTTPError as e:
                        errors.append(type(e).__name__)
                    dt = time.monotonic() - t
                    latencies.append(dt)
                    time.sleep(max(0.0, every - dt))
            procs.wait(locker, 10)
            srv.go_down(False)
            t_release = time.monotonic()
            if wait_until(lambda: all_posted(srv, agents), 20, 0.1):
                delivered_after = round(time.monotonic() - t_release, 2)
            daemon_rc = procs.terminate(daemon)
        finally:
            procs.cleanup()
        res = tally(srv, agents, set())
    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    res.update(samples=len(lat), p50=pct(0.50), p99=pct(0.99), max=lat[-1] if lat else float("nan"),
               over_1s=sum(1 for x in lat if x > 1.0), errors=errors, daemon_exit=daemon_rc,
               delivered_after_release=delivered_after, seconds=round(time.monotonic() - t0, 1), locker_log=procs.log("locker"), logs=procs.logs())
    return res


class LeakWatch:
    """ResourceWarnings raised while the block runs (made errors, reported from `__del__` through
    sys.unraisablehook): what the code under test leaked. Earlier garbage is collected first."""

    def __enter__(self) -> "LeakWatch":
        gc.collect()
        self.found: list[str] = []
        self._prev = sys.unraisablehook
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("error", ResourceWarning)
        sys.unraisablehook = self._hook
        return self

    def _hook(self, u: Any) -> None:
        if u.exc_type is not None and issubclass(u.exc_type, ResourceWarning):
            self.found.append(str(u.exc_value)[:300])
        else:
            self._prev(u)

    def __exit__(self, *exc: Any) -> None:
        try:
            gc.collect()
        finally:
            sys.unraisablehook = self._prev
            self._warnings.__exit__(*exc)


def run_sync_in_loop(tmp: Path, mode: str, *, lease: bool = True) -> dict[str, Any]:
    """Inside `asyncio.run(main())` a ticker measures its own lateness while `main` calls
    `deliver_due(...)` (three firing alerts), `deliver_message(...)` and `deliver_summary(...)` synchronously;
    Discord is slow (`mode="slow"`: every answer held 0.5 s) or answers 429 for 2 s (`mode="429"`)."""
    from perf_alerts.config import load_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import deliver_due, deliver_message, deliver_summary
    from perf_alerts.store import Store

    cfg, db = write_config(tmp, lease=lease), tmp / "store.db"
    agents = {agent(i) for i in range(3)}
    title, summary_title = "Deploy finished", "Weekly performance summary"
    t0 = time.monotonic()
    with LeakWatch() as leaks, fake_discord() as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        store = Store(db)
        try:
            pa = PerfAlerts(load_config(cfg, env={"TEST_HOOK": url}), store)
            # warm-up outside the loop (first imports, byte-compiling, the HTTP client): the loop is
            # judged on waiting for Discord, not on a module's first import in another thread
            deliver_message(pa, "warm-up", "info", "first call, outside the loop")
            seed(cfg, db, url, range(3), plan=False)  # firing, not yet planned: the calls below plan and send them
            if mode == "slow":
                srv.set_delay(0.5)
            else:
                srv.force_global_429(2.0)

            def titled(want: str = title) -> int:
                return sum(1 for p in srv.posted(HOOK_ID) for e in p["embeds"] if e.get("title") == want)

            async def main() -> dict[str, Any]:
                loop = asyncio.get_running_loop()
                late: list[float] = []
                stop = asyncio.Event()

                async def ticker() -> None:
                    while not stop.is_set():
                        t = loop.time()
                        await asyncio.sleep(0.01)
                        late.append(loop.time() - t - 0.01)

                task = asyncio.create_task(ticker())
                await asyncio.sleep(0.1)
                calls: dict[str, float] = {}
                t = time.monotonic()
                deliver_due(pa)  # plans the three alerts and sends them
                calls["deliver_due"] = time.monotonic() - t
                await asyncio.sleep(0.05)
                t = time.monotonic()
                deliver_message(pa, title, "info", "release 42 is live")
                calls["deliver_message"] = time.monotonic() - t
                t = time.monotonic()
                deliver_summary(pa, summary_title, "p95 latency down 12% week on week")
                calls["deliver_summary"] = time.monotonic() - t
                deadline = loop.time() + 30
                while loop.time() < deadline and not (titled() and titled(summary_title) and all_posted(srv, agents)):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # a second copy, if any, arrives now
                stop.set()
                await task
                return {"max_lateness": max(late, default=0.0), "ticks": len(late), "call_seconds": calls}

            res = asyncio.run(main())
        finally:
            store.close()
        c = copies(srv)
        counts = [c[(a, "firing")] for a in sorted(agents)] + [titled(), titled(summary_title)]
        res.update(notifications=len(counts), lost=sum(1 for x in counts if x == 0),
                   duplicated=sum(1 for x in counts if x > 1), max_copies=max(counts),
                   seconds=round(time.monotonic() - t0, 1))
    res["resource_warnings"] = leaks.found
    return res


# ----------------------------------------------------------------------------- tests


def _detail(res: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in res.items() if k != "logs"}, indent=1, default=str) + "\n" + str(res.get("logs", ""))[-6000:]


@pytest.mark.slow
@pytest.mark.filterwarnings("error::ResourceWarning")
def test_concurrent_senders_deliver_every_notification_exactly_once(tmp_path: Path) -> None:
    res = run_concurrent(tmp_path, lease=lease_supported())
    info = _detail(res)
    assert res["codes"] == {"deliver1": 0, "deliver2": 0, "evaluate": 0, "daemon": 0}, info
    assert res["completed"], info
    assert res["lost"] == 0, info
    assert res["duplicated"] == 0 and res["max_copies"] == 1, info
    assert res["outbox"] == {"delivered": 60}, info  # each alert planned once, every row delivered
    assert not log_problems(res["logs"]), info
    assert TOKEN not in res["logs"]


@pytest.mark.slow
@pytest.mark.filterwarnings("error::ResourceWarning")
def test_daemon_killed_mid_delivery_loses_nothing_and_edits_every_message(tmp_path: Path) -> None:
    res = run_kills(tmp_path, lease=lease_supported())
    info = _detail(res)
    assert res["kills"] == 5, info
    assert res["lost"] == 0, info
    assert res["max_copies"] <= 2, info  # a crash re-sends at most the message in flight
    assert res["duplicated"] <= res["orphaned"] <= 5, info  # and only a message it never got an answer for
    assert res["stale_known"] == 0, info  # every message a sender learned of turned green
    assert set(res["outbox"]) == {"delivered"}, info
    assert res["completed"] and res["last_exit"] == 0, info
    assert not log_problems(res["logs"]), info


@pytest.mark.slow
@pytest.mark.filterwarnings("error::ResourceWarning")
def test_api_answers_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    res = run_lock(tmp_path, lease=lease_supported())
    info = _detail(res)
    assert "released" in res["locker_log"], info
    assert res["samples"] >= 50, info  # polled throughout the 10 s
    assert res["errors"] == [], info
    assert res["max"] < 1.0, info
    assert res["delivered_after_release"] is not None and res["duplicated"] == 0, info  # and delivery resumes
    assert res["daemon_exit"] == 0, info
    assert not log_problems(res["logs"]), info


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.parametrize("mode", ["slow", "429"])
def test_sync_api_inside_a_running_loop_never_blocks_it(tmp_path: Path, mode: str) -> None:
    res = run_sync_in_loop(tmp_path, mode, lease=lease_supported())
    assert res["ticks"] > 10, res
    # blocking would hold the loop for a whole answer (0.5 s slow, 2 s of 429s); under 0.25 s it was not
    # blocked, whatever else runs on the machine (the 4 ms measured unloaded is bench/delivery_concurrency.py's)
    assert res["max_lateness"] < 0.25, res
    # the bound: a sync call holds the loop only while it runs, so each must return within 50 ms
    # (they queue work on the notification engine and return; measured 0-7 ms on a loaded machine)
    assert set(res["call_seconds"]) == {"deliver_due", "deliver_message", "deliver_summary"}, res
    assert max(res["call_seconds"].values()) <= 0.05, res
    assert res["lost"] == 0 and res["max_copies"] == 1, res
    assert res["resource_warnings"] == [], res
