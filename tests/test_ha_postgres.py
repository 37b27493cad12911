"""Three daemons on one PostgreSQL (issue 12 item 4), with real processes.

Metrics are pushed over HTTP to all three replicas; an alert storm starts; the leader is
SIGKILLed in its middle; another replica takes over leadership and evaluates a second wave of
alerts that only it can raise. Every notification reaches the Discord-like server, none more
than twice, and no request is sent inside a rate-limit wait, although three processes share
one webhook limited to 5 requests per 2 s.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_discord import fake_discord
import test_delivery_concurrency as tdc
from test_delivery_concurrency import (HOOK_ID, PAD, TOKEN, Procs, agent, free_port, log_problems, tally,
                                       wait_until)

INTERVAL = 3.0  # evaluation interval (s): takeover must happen within two of them (the lease: 4.5 s)

# the delivery tests' scenario (one HighLatency rule, each notification a message of its own, one
# Discord receiver) at a slower interval and a 5 s delivery lease
_CONFIG = (tdc._CONFIG.replace("evaluation_interval: 0.5s", f"evaluation_interval: {INTERVAL:g}s")
           .replace("@PAD@", PAD.strip()).replace("@LEASE@", ", lease: 5s"))


def _status(store: Any) -> Any:
    from perf_alerts.manage.cluster import cluster_status

    return cluster_status(store, time.time(), INTERVAL)


def _outbox(store: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in store.con.execute("SELECT state, COUNT(*) FROM notifications GROUP BY state")}


@pytest.mark.slow
def test_three_daemons_leader_killed_mid_storm(pg_url: str, tmp_path: Path) -> None:
    from perf_alerts.store import Store

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text(_CONFIG)
    wave1 = [agent(i) for i in range(24)]
    wave2 = [agent(i) for i in range(100, 110)]
    res: dict[str, Any] = {}
    watch = Store(pg_url)  # one handle for every look at the store (not a new pool per poll)
    try:
        _run(watch, pg_url, cfg, wave1, wave2, res)
    finally:
        watch.close()
    _check(res)


def _run(watch: Any, pg_url: str, cfg: Path, wave1: list[str], wave2: list[str], res: dict[str, Any]) -> None:
    tmp_path = cfg.parent
    with fake_discord(limit=5, per_seconds=2.0) as srv:
        url = srv.url_for(HOOK_ID, TOKEN)
        procs = Procs(tmp_path, {"TEST_HOOK": url, "PERF_ALERTS_TOKEN": ""})
        ports = [free_port() for _ in range(3)]
        try:
            daemons = {port: procs.daemon(f"daemon{k + 1}", cfg, pg_url, port)  # type: ignore[arg-type]
                       for k, port in enumerate(ports)}
            with httpx.Client(timeout=30) as client:

                def up(port: int) -> bool:
                    try:
                        return client.get(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=1).status_code == 200
                    except httpx.HTTPError:
                        return daemons[port].poll() is not None

                assert all(wait_until(lambda p=p: up(p), 40, 0.1) for p in ports), procs.logs()
                assert wait_until(lambda: _status(watch).leader is not None and _status(watch).alive == 3,
                                  20, 0.2), procs.logs()

                def push(agents: list[str], to: list[int]) -> None:
                    for k, a in enumerate(agents):  # round robin over the replicas given
                        r = client.post(f"http://127.0.0.1:{to[k % len(to)]}/api/v1/metrics",
                                        json={"samples": [{"metric": "lat", "value": 50.0, "labels": {"agent": a}}]})
                        assert r.status_code == 200, r.text

                push(wave1, ports)
                # the storm is being delivered (5 messages per 2 s): kill the leader in its middle
                assert wait_until(lambda: srv.stats.messages_created >= 6, 60, 0.05), procs.logs()
                st = _status(watch)
                leader = next(r for r in st.replicas if r.leader)
                victim = next(p for p, d in daemons.items() if d.pid == leader.pid)
                daemons[victim].send_signal(signal.SIGKILL)
                daemons[victim].wait()
                t_kill = time.monotonic()
                posted_at_kill = srv.stats.messages_created
                survivors = [p for p in ports if p != victim]

                def new_leader() -> bool:
                    s = _status(watch)
                    return s.leader is not None and s.leader != leader.id

                took_over = wait_until(new_leader, 30, 0.05)
                takeover_s = time.monotonic() - t_kill
                # a second wave only the new leader can raise
                push(wave2, survivors)
                everyone = set(wave1) | set(wave2)
                done = wait_until(lambda: tally(srv, everyone, set())["lost"] == 0 and
                                  set(_outbox(watch)) <= {"delivered"}, 90, 0.25)
                time.sleep(1.0)  # a second copy, if any, arrives now
                st2 = _status(watch)
                codes = {p: procs.terminate(d) for p, d in daemons.items() if p != victim}
        finally:
            procs.cleanup()
        res.update(tally(srv, set(wave1) | set(wave2), set()))
        res.update(took_over=took_over, takeover_s=round(takeover_s, 2), posted_at_kill=posted_at_kill,
                   inside_wait=srv.stats.inside_wait, rate_limited=srv.stats.rate_limited, requests=srv.stats.requests,
                   completed=done, codes=codes, outbox=_outbox(watch),
                   leader_after=st2.leader, alive_after=st2.alive)
    res["logs"] = procs.logs()


def _check(res: dict[str, Any]) -> None:
    logs = res.pop("logs")
    codes = res["codes"]
    info = json.dumps(res, indent=1, default=str) + "\n" + logs[-8000:]
    print(json.dumps({k: v for k, v in res.items() if k != "copies"}, default=str))  # pytest -s shows the figures
    assert res["took_over"] and res["takeover_s"] <= 2 * INTERVAL, info
    assert res["lost"] == 0 and res["completed"], info
    assert res["max_copies"] <= 2, info  # only a message in flight when the leader died can be posted again
    assert res["inside_wait"] == 0, info  # three senders, one budget
    assert set(res["outbox"]) == {"delivered"}, info
    assert all(c == 0 for c in codes.values()), info
    assert 0 < res["posted_at_kill"] < 24, info  # it really died mid-storm
    assert not log_problems(logs), info
