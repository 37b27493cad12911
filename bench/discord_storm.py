"""Alert storm benchmark: 1,000 firing alerts in 50 groups through ONE webhook limited to
5 requests / 2 s (the real fake Discord server on 127.0.0.1), batched+digest delivery vs the
naive one-message-per-group approach (what Alertmanager does), measured in the same run.

Run:  PYTHONPATH=src python bench/discord_storm.py
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fake_discord import FakeDiscord, fake_discord  # noqa: E402

from perf_alerts.model import Alert, AlertState, Severity, fingerprint  # noqa: E402
from perf_alerts.notify.discord import AlertGroup, DiscordClient, DiscordMessage, build_messages  # noqa: E402

N_ALERTS, N_GROUPS = 1000, 50


def storm(seed: int = 42) -> list[AlertGroup]:
    """1,000 firing alerts grouped by one label (crew)."""
    rng = random.Random(seed)
    groups: dict[str, list[Alert]] = {}
    for i in range(N_ALERTS):
        crew = f"crew-{i % N_GROUPS:02d}"
        labels = {"alertname": "HighLatency", "crew": crew, "agent": f"agent-{i}"}
        groups.setdefault(crew, []).append(Alert(
            fingerprint("HighLatency", labels), "HighLatency", AlertState.FIRING,
            rng.choice([Severity.CRITICAL, Severity.WARNING, Severity.WARNING, Severity.INFO]), labels,
            {"summary": f"p95 latency {rng.uniform(500, 5000):.0f} ms on agent-{i}",
             "runbook_url": "https://runbooks.example/latency"},
            value=rng.uniform(500, 5000), threshold=500.0, window="5m", started_at=time.time() - 60))
    return [AlertGroup(f"crew={c}", a, {"crew": c}) for c, a in sorted(groups.items())]


async def deliver(url: str, msgs: list[DiscordMessage]) -> tuple[int, dict[str, object]]:
    async with DiscordClient() as c:
        delivered = 0
        for m in msgs:
            delivered += (await c.execute(url, m)).outcome == "delivered"
        return delivered, c.stats()


def invisible(srv: FakeDiscord, webhook_id: int, groups: list[AlertGroup]) -> int:
    """Alerts whose fingerprint appears in no stored embed and no stored attachment."""
    stored = srv.messages(webhook_id)
    text = json.dumps([m["embeds"] for m in stored]) + "".join(
        a["data"].decode("utf-8", "replace") for m in stored for a in m["attachments"])
    seen = set(re.findall(r"\b[0-9a-f]{16}\b", text))
    return sum(1 for g in groups for a in g.alerts if a.fingerprint not in seen)


def run_case(name: str, srv: FakeDiscord, webhook_id: int, groups: list[AlertGroup], msgs: list[DiscordMessage]) -> float:
    srv.reset_stats()
    url = srv.url_for(webhook_id, f"bench-token-{webhook_id}")
    t0 = time.monotonic()
    delivered, cstats = asyncio.run(deliver(url, msgs))
    elapsed = time.monotonic() - t0
    st = srv.stats
    print(f"\n== {name}")
    print(f"  requests made                         {st.requests}")
    print(f"  messages stored                       {len(srv.messages(webhook_id))} ({delivered} delivered)")
    print(f"  429s received                         {st.rate_limited}")
    print(f"  requests sent inside a wait (server)  {st.inside_wait}   (client self-check: {cstats['requests_sent_inside_wait']})")
    print(f"  rejected requests                     {st.rejected}")
    print(f"  time to deliver everything            {elapsed:.2f} s")
    print(f"  alerts not visible anywhere           {invisible(srv, webhook_id, groups)}")
    return elapsed


def main() -> None:
    groups = storm()
    print(f"storm: {sum(len(g.alerts) for g in groups)} firing alerts in {len(groups)} groups, one webhook, 5 requests / 2 s")
    with fake_discord(limit=5, per_seconds=2.0) as srv:
        t_build = time.perf_counter()
        batched = build_messages(groups, dashboard_url="https://grafana.example/d/crews")
        t_build = time.perf_counter() - t_build
        run_case(f"perf-alerts: batched embeds + digests ({len(batched)} messages, built in {t_build * 1000:.0f} ms)",
                 srv, 1001, groups, batched)
        # Baseline: one message per group (Alertmanager's shape), same renderer and same polite client.
        naive = [m for g in groups for m in build_messages([g], dashboard_url="https://grafana.example/d/crews")]
        run_case(f"baseline: one message per group ({len(naive)} messages)", srv, 1002, groups, naive)
        print("\n(baseline uses our renderer and our 429-honouring client; Alertmanager itself would also"
              " drop 429'd messages and show only the first alerts of each group)")
        pipeline_case(srv, 1003)


def pipeline_case(srv: FakeDiscord, webhook_id: int) -> None:
    """The same storm end to end: samples → rule → 1,000 alerts → route/group → outbox → Discord."""
    import tempfile

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts
    from perf_alerts.notify.pipeline import Notifier
    from perf_alerts.store import Store
    from perf_alerts.timeutil import ManualClock

    srv.reset_stats()
    url = srv.url_for(webhook_id, f"bench-token-{webhook_id}")
    cfg = parse_config(f"""
rules:
  - {{name: HighLatency, type: threshold, metric: lat, aggregate: last, window: 5m, op: ">", value: 500,
     severity: warning, annotations: {{summary: "p95 latency {{{{ value | round(0) }}}} ms on {{{{ labels.agent }}}}"}}}}
receivers:
  - name: ops
    discord: {{webhook_url: "{url}"}}
route: {{receiver: ops, group_by: [crew], group_wait: 0s}}
""")
    t0 = 1_800_000_000.0
    with tempfile.TemporaryDirectory() as tmp:
        pa = PerfAlerts(cfg, Store(Path(tmp) / "storm.db"), ManualClock(t0))
        pa.record_many({"metric": "lat", "value": 600 + i, "timestamp": t0,
                        "labels": {"crew": f"crew-{i % N_GROUPS:02d}", "agent": f"agent-{i}"}} for i in range(N_ALERTS))
        start = time.monotonic()
        res = pa.evaluate()
        n = Notifier(pa)
        plan = n.plan()
        rep = n.deliver()
        elapsed = time.monotonic() - start
        stored = srv.messages(webhook_id)
        text = json.dumps([m["embeds"] for m in stored]) + "".join(
            a["data"].decode("utf-8", "replace") for m in stored for a in m["attachments"])
        hidden = sum(1 for a in res.active if a.fingerprint not in text)
        st = srv.stats
        print(f"\n== full pipeline: {len(res.active)} alerts from a rule → {len(plan.created)} notifications "
              f"(one per group) → outbox → one webhook")
        print(f"  requests made                         {st.requests}")
        print(f"  messages stored                       {len(stored)}")
        print(f"  429s received                         {st.rate_limited}")
        print(f"  requests sent inside a wait (server)  {st.inside_wait}")
        print(f"  rejected requests                     {st.rejected}")
        print(f"  notifications delivered / dead        {rep.delivered} / {rep.dead}")
        print(f"  time (evaluate + plan + deliver)      {elapsed:.2f} s")
        print(f"  alerts not visible anywhere           {hidden}")


if __name__ == "__main__":
    main()
