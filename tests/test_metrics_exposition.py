"""GET /metrics (issue 15 item 3): perf-alerts' own health in the Prometheus text format.

Parsed with prometheus-client's own parser, checked against the store's state and this
process's counters, guarded like the API (token, Host), and scraped by a real Prometheus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import require
from perf_alerts import selfmetrics
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

NOW = 1_780_000_000.0

CONFIG = """\
global: {evaluation_interval: 1s}
rules:
  - {name: HighLatency, type: threshold, metric: crew_task_seconds, aggregate: avg, window: 5m, op: ">", value: 30,
     severity: critical}
  - {name: SlowWriter, type: threshold, metric: crew_task_seconds, matchers: {agent: writer}, aggregate: avg, window: 5m,
     op: ">", value: 1, severity: warning}
receivers:
  - {name: ops-file, file: {path: "%s"}}
route: {receiver: ops-file, group_wait: 0s, group_interval: 1s}
"""


def parse(text: str) -> dict[str, Any]:
    """{family name: {(sample name, sorted labels): value}} via prometheus-client's parser."""
    parser = require("prometheus_client.parser")
    out: dict[str, Any] = {}
    for fam in parser.text_string_to_metric_families(text):
        out[fam.name] = {"type": fam.type, "samples": {(s.name, tuple(sorted(s.labels.items()))): s.value
                                                       for s in fam.samples}}
    return out


def value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    samples = fams[family]["samples"]
    return float(samples[(sample or family, tuple(sorted(labels.items())))])


@pytest.fixture
def system(tmp_path: Path, make_store: Any) -> PerfAlerts:
    """On SQLite and on PostgreSQL (the store's counts are read by GROUP BY queries on both)."""
    selfmetrics.reset()
    cfg = parse_config(CONFIG % (tmp_path / "out.jsonl"), "m.yaml", env={})
    s = PerfAlerts(cfg, make_store(), ManualClock(NOW))
    recs = [{"metric": "crew_task_seconds", "value": 45.0 if a == "researcher" else 5.0, "timestamp": NOW - i * 10,
             "labels": {"agent": a}} for i in range(10) for a in ("researcher", "writer")]
    recs.append({"metric": "bad metric", "value": 1})
    recs.append({"metric": "crew_task_seconds", "value": float("nan")})
    rep = s.record_many(recs)
    assert (rep.accepted, rep.rejected) == (20, 2)
    res = s.evaluate()
    assert res.errors == [] and len(s.alerts(["firing"])) == 2
    return s


def test_metrics_text_parses_and_reports_the_store_and_this_process(system: PerfAlerts) -> None:
    require("prometheus_client")
    from fastapi.testclient import TestClient

    from perf_alerts.http.app import create_app

    n = Notifier(system)
    n.flush(NOW, 5.0)
    with TestClient(create_app(system, notifier=n, replica="replica-a")) as c:
        r = c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert r.headers["cache-control"] == "no-store"
    fams = parse(r.text)
    # alerts by state and severity (from the store)
    assert value(fams, "perf_alerts_alerts", state="firing", severity="critical") == 1
    assert value(fams, "perf_alerts_alerts", state="firing", severity="warning") == 1
    assert value(fams, "perf_alerts_alerts", state="pending", severity="info") == 0
    assert fams["perf_alerts_alerts"]["type"] == "gauge"
    # outbox by receiver and state: the notification was delivered to the file receiver
    assert value(fams, "perf_alerts_outbox_notifications", receiver="ops-file", state="delivered") >= 1
    assert value(fams, "perf_alerts_outbox_notifications", receiver="ops-file", state="pending") == 0
    assert value(fams, "perf_alerts_outbox_open") == 0
    # this process: deliveries by receiver, ingest, evaluation
    assert fams["perf_alerts_notifications_delivered"]["type"] == "counter"
    assert value(fams, "perf_alerts_notifications_delivered", "perf_alerts_notifications_delivered_total",
                 receiver="ops-file") >= 1
    assert not fams["perf_alerts_discord_rate_limited"]["samples"]  # no Discord receiver: no 429 series
    assert value(fams, "perf_alerts_samples_ingested", "perf_alerts_samples_ingested_total") == 20
    assert value(fams, "perf_alerts_samples_rejected", "perf_alerts_samples_rejected_total") == 2
    assert value(fams, "perf_alerts_evaluations", "perf_alerts_evaluations_total") == 1
    h = fams["perf_alerts_evaluation_duration_seconds"]
    assert h["type"] == "histogram"
    assert value(fams, "perf_alerts_evaluation_duration_seconds", "perf_alerts_evaluation_duration_seconds_count") == 1
    assert value(fams, "perf_alerts_evaluation_duration_seconds", "perf_alerts_evaluation_duration_seconds_bucket",
                 le="+Inf") == 1
    assert value(fams, "perf_alerts_last_evaluation_duration_seconds") > 0
    assert value(fams, "perf_alerts_last_evaluation_timestamp_seconds") == NOW
    assert value(fams, "perf_alerts_last_evaluation_errors") == 0
    assert value(fams, "perf_alerts_rules") == 2
    assert value(fams, "perf_alerts_store_up") == 1
    # replicas: no daemon registered on this store; this app names its replica, which does not lead
    assert value(fams, "perf_alerts_leader_present") == 0
    assert value(fams, "perf_alerts_leader", replica="replica-a") == 0
    assert value(fams, "perf_alerts_replicas", state="alive") == 0


def test_metrics_shows_the_leader_and_no_secrets(tmp_path: Path) -> None:
    require("prometheus_client")
    from fastapi.testclient import TestClient

    from perf_alerts.http.app import create_app
    from perf_alerts.manage.cluster import Leadership, Replica

    selfmetrics.reset()
    hook = "https://discord.com/api/webhooks/123456/s3cr3t-webhook-token"
    cfg = parse_config("receivers:\n  - {name: oncall, discord: {webhook_url: \"%s\"}}\nroute: {receiver: oncall}\n" % hook,
                       "s.yaml", env={})
    s = PerfAlerts(cfg, Store(tmp_path / "l.db"))
    rep = Replica.current()
    lead = Leadership(s.store, rep, 60.0)
    assert lead.cycle().leader
    token = "a-scrape-token-0123456789"
    with TestClient(create_app(s, replica=rep.id, token=token)) as c:
        assert c.get("/metrics").status_code == 401  # the API's token rule
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    fams = parse(r.text)
    assert value(fams, "perf_alerts_leader", replica=rep.id) == 1
    assert value(fams, "perf_alerts_leader_present") == 1
    assert value(fams, "perf_alerts_replicas", state="alive") == 1
    assert value(fams, "perf_alerts_receiver_disabled", receiver="oncall") == 0
    assert value(fams, "perf_alerts_discord_rate_limited", "perf_alerts_discord_rate_limited_total",
                 receiver="oncall") == 0
    assert "s3cr3t" not in r.text and "discord.com" not in r.text and token not in r.text
    lead.leave()


def test_metrics_refuses_a_foreign_host_without_a_token(system: PerfAlerts) -> None:
    require("prometheus_client")
    from fastapi.testclient import TestClient

    from perf_alerts.http.app import create_app

    with TestClient(create_app(system)) as c:
        assert c.get("/metrics", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/metrics", headers={"Host": "127.0.0.1:8080"}).status_code == 200


def test_a_store_that_cannot_be_read_does_not_fail_the_scrape(system: PerfAlerts) -> None:
    require("prometheus_client")
    from perf_alerts.http.exposition import PerfAlertsCollector, exposition

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("store away")

    col = PerfAlertsCollector(system)
    col.system = type("S", (), {"config": system.config, "store": Broken()})()  # type: ignore[assignment]
    fams = parse(exposition(col).decode())
    assert value(fams, "perf_alerts_store_up") == 0
    assert value(fams, "perf_alerts_samples_ingested", "perf_alerts_samples_ingested_total") == 20


def test_a_real_prometheus_scrapes_metrics(system: PerfAlerts, tmp_path: Path) -> None:
    """Debian's prometheus scrapes the live server's /metrics with a bearer token: the target is up
    and perf-alerts' metrics are queryable through its HTTP API."""
    require("prometheus_client")
    from prom_server import PromServer, require_prometheus
    from test_http import LiveServer

    require_prometheus()
    token = "scrape-token-abcdefghijklmnop"
    (tmp_path / "token").write_text(token)
    with LiveServer(system, token=token) as live:
        scrape = {"job_name": "perf-alerts", "metrics_path": "/metrics", "scrape_interval": "1s",
                  "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")},
                  "static_configs": [{"targets": [f"127.0.0.1:{live.port}"]}]}
        with PromServer(tmp_path, scrape_configs=[scrape]) as prom:
            up = prom.wait_for('up{job="perf-alerts"} == 1')
            assert up[0]["value"][1] == "1"
            firing = prom.wait_for('perf_alerts_alerts{state="firing", severity="critical"}')
            assert firing[0]["value"][1] == "1"
            ingested = prom.wait_for("perf_alerts_samples_ingested_total")
            assert float(ingested[0]["value"][1]) >= 20
            targets = prom.api("targets")["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], targets
            # without the token the same scrape is refused
            r = httpx.get(f"{live.url}/metrics", timeout=5)
            assert r.status_code == 401


def test_each_replica_serves_metrics_one_says_it_leads(tmp_path: Path) -> None:
    """Two daemons on one store, each serving the app on its own port (`serve_for_daemon`): the
    shared state is the same on both, `perf_alerts_leader` is 1 on the leader only."""
    require("prometheus_client")
    import asyncio

    from perf_alerts.http.app import serve_for_daemon
    from perf_alerts.manage.daemon import Daemon

    selfmetrics.reset()
    cfg = parse_config(CONFIG % (tmp_path / "out.jsonl"), "m.yaml", env={})
    systems = [PerfAlerts(cfg, tmp_path / "shared.db", ManualClock(NOW)) for _ in range(2)]
    systems[0].record("crew_task_seconds", 45.0, {"agent": "researcher"}, ts=NOW - 5)

    async def scenario() -> list[dict[str, Any]]:
        ds = [Daemon(s, port=0, collect_host=False, serve_http=serve_for_daemon) for s in systems]
        out = []
        try:
            for d in ds:
                await d._start_http()
                await d.tick()
            await asyncio.to_thread(systems[0].evaluate)
            async with httpx.AsyncClient(timeout=10) as c:
                for d in ds:
                    r = await c.get(f"{d.url}metrics")
                    assert r.status_code == 200, r.text
                    out.append({"id": d.replica.id, "fams": parse(r.text)})
        finally:
            for d in ds:
                await d._stop_http()
                await asyncio.to_thread(d.leadership.leave)
            from perf_alerts.notify.engine import close_engine

            await asyncio.to_thread(close_engine)
        return out

    a, b = asyncio.run(scenario())
    assert value(a["fams"], "perf_alerts_leader", replica=a["id"]) == 1
    assert value(b["fams"], "perf_alerts_leader", replica=b["id"]) == 0
    for x in (a, b):
        assert value(x["fams"], "perf_alerts_replicas", state="alive") == 2
        assert value(x["fams"], "perf_alerts_leader_present") == 1
        assert value(x["fams"], "perf_alerts_alerts", state="firing", severity="critical") == 1


def test_otlp_points_count_as_ingested_and_rejected(system: PerfAlerts) -> None:
    """POST /v1/metrics (OTLP): stored points are ingested samples, refused ones (a summary) rejected."""
    require("prometheus_client")
    require("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")
    from fastapi.testclient import TestClient

    from perf_alerts.http.app import create_app

    before = selfmetrics.snapshot().counters
    ns = str(int(NOW * 1e9))
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "queue_depth", "gauge": {"dataPoints": [{"timeUnixNano": ns, "asDouble": 3.0}]}},
        {"name": "latency", "summary": {"dataPoints": [{"timeUnixNano": ns, "count": "1", "sum": 1.0}]}},
    ]}]}]}
    with TestClient(create_app(system)) as c:
        r = c.post("/v1/metrics", json=body)
        assert r.status_code == 200, r.text
        fams = parse(c.get("/metrics").text)
    assert value(fams, "perf_alerts_samples_rejected", "perf_alerts_samples_rejected_total") == \
        before["samples_rejected"][()] + 1
    assert value(fams, "perf_alerts_samples_ingested", "perf_alerts_samples_ingested_total") >= \
        before["samples_ingested"][()] + 1


def test_discord_deliveries_and_429s_are_counted_by_receiver(tmp_path: Path) -> None:
    """A real delivery to the fake Discord that answers 429 first: /metrics counts the request, the
    429 and the delivery under the receiver's name, and never shows the webhook's token."""
    require("prometheus_client")
    from fastapi.testclient import TestClient

    from fake_discord import fake_discord
    from perf_alerts.http.app import create_app
    from test_notify import cycle, setup

    selfmetrics.reset()
    with fake_discord() as srv:
        pa, clock, n = setup(tmp_path, srv)
        srv.force_global_429(0.3)
        _, rep = cycle(pa, clock, n, 0, {("lat", "researcher"): 50})
        assert rep.delivered == 1 and srv.stats.rate_limited >= 1, rep.to_dict()
        with TestClient(create_app(pa, notifier=n)) as c:
            text = c.get("/metrics").text
    fams = parse(text)
    assert value(fams, "perf_alerts_notifications_delivered", "perf_alerts_notifications_delivered_total",
                 receiver="oncall") == 1
    assert value(fams, "perf_alerts_discord_rate_limited", "perf_alerts_discord_rate_limited_total",
                 receiver="oncall") == srv.stats.rate_limited
    assert value(fams, "perf_alerts_discord_requests", "perf_alerts_discord_requests_total",
                 receiver="oncall") == srv.stats.requests
    assert value(fams, "perf_alerts_discord_rate_limited", "perf_alerts_discord_rate_limited_total",
                 receiver="ops") == 0
    assert "tok-oncall-secret" not in text and "/api/webhooks" not in text
