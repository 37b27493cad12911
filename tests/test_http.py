"""The HTTP API against a real uvicorn server on 127.0.0.1 (SPEC §8, issue 5).

Status codes, validation (every bad request is a 4xx JSON error, never a 500), the token
when a token is set or the address is not loopback, and no secret in any response.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import require  # noqa: E402

require("fastapi")  # with CI=true a missing web extra fails, locally it skips
require("uvicorn")
import httpx  # noqa: E402

from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.store import Store  # noqa: E402
from perf_alerts.timeutil import ManualClock, parse_timestamp  # noqa: E402

NOW = parse_timestamp("2026-03-02T12:00:00Z")
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/sEcReT-t0ken-value_abcdefghijklmnop"

SEED_CONFIG = """\
rules:
  - name: HighLatency
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 10m
    op: ">"
    value: 30
    severity: critical
    annotations: {summary: "{{ labels.agent }} task time {{ value }}s"}
  - name: LLMErrors
    type: threshold
    metric: crew_llm_errors
    aggregate: sum
    window: 10m
    op: ">"
    value: 2
    severity: warning
receivers:
  - name: oncall
    discord: {webhook_url: "%s"}
  - name: console
    console: {}
route:
  receiver: oncall
""" % WEBHOOK


def seeded_system(tmp_path: Path) -> PerfAlerts:
    """A store with 3 h of two agents: the researcher's task time breaks 30 s in the last 20 min,
    the writer's LLM errors burst; one evaluation makes both alerts fire."""
    system = PerfAlerts(parse_config(SEED_CONFIG, "seed.yaml", env={}), Store(tmp_path / "web.db"), ManualClock(NOW))
    recs: list[dict[str, Any]] = []
    for i in range(180):
        t = NOW - (180 - i) * 60 + 60
        spike = i >= 160
        recs.append({"metric": "crew_task_seconds", "value": (45.0 + (i % 3)) if spike else 12.0 + (i % 5),
                     "timestamp": t, "labels": {"agent": "researcher", "crew": "demo"}})
        recs.append({"metric": "crew_task_seconds", "value": 9.0 + (i % 4), "timestamp": t,
                     "labels": {"agent": "writer", "crew": "demo"}})
        recs.append({"metric": "crew_llm_calls", "value": 1.0, "timestamp": t, "labels": {"agent": "writer", "crew": "demo"}})
        recs.append({"metric": "crew_llm_errors", "value": 1.0 if i >= 172 else 0.0, "timestamp": t,
                     "labels": {"agent": "writer", "crew": "demo"}})
    rep = system.record_many(recs)
    assert rep.rejected == 0, rep.errors
    res = system.evaluate()
    assert res.errors == []
    assert {a.rule for a in system.alerts(["firing"])} == {"HighLatency", "LLMErrors"}
    return system


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving `create_app(system)` on a background thread."""

    def __init__(self, system: PerfAlerts, host: str = "127.0.0.1", token: str | None = None, **kw: Any) -> None:
        from perf_alerts.http.app import build_server

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = build_server(system, host, self.port, token, **kw)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, PerfAlerts]]:
    system = seeded_system(tmp_path_factory.mktemp("http"))
    with LiveServer(system) as srv:
        yield srv, system


@pytest.fixture
def client(live: tuple[LiveServer, PerfAlerts]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live[0].url, timeout=20) as c:
        yield c


def assert_json_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body


def fp_of(system: PerfAlerts, rule: str) -> str:
    return next(a.fingerprint for a in system.alerts() if a.rule == rule)


# --------------------------------------------------------------------------- reading


def test_alerts_list_worst_first_with_chart_info(client: httpx.Client) -> None:
    r = client.get("/api/v1/alerts", params={"state": "firing"})
    assert r.status_code == 200
    body = r.json()
    rules = [a["rule"] for a in body["alerts"]]
    assert rules[0] == "HighLatency" and "LLMErrors" in rules  # critical before warning
    hl = body["alerts"][0]
    assert hl["state"] == "firing" and hl["severity"] == "critical"
    assert hl["labels"]["agent"] == "researcher" and hl["metric"] == "crew_task_seconds" and hl["op"] == ">"
    assert hl["value"] > 30 and hl["threshold"] == 30
    assert body["now"] == "2026-03-02T12:00:00Z"
    assert_json_error(client.get("/api/v1/alerts", params={"state": "burning"}), 400)
    assert client.get("/api/v1/alerts", params={"state": "active"}).json()["count"] == 2
    assert_json_error(client.get("/api/v1/alerts", params={"limit": "lots"}), 422)


def test_health_per_agent(client: httpx.Client) -> None:
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    h = r.json()
    assert set(h["agents"]) == {"researcher", "writer"}
    assert h["overall"]["score"] is not None and h["overall"]["components"]
    assert h["agents"]["researcher"]["score"] < h["agents"]["writer"]["score"]
    assert_json_error(client.get("/api/v1/health", params={"lookback": "forever"}), 400)


def test_series_downsampled_and_validated(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    r = client.get("/api/v1/series", params={"metric": "crew_task_seconds", "labels": "agent=researcher", "lookback": "3h"})
    assert r.status_code == 200
    body = r.json()
    assert len(body["series"]) == 1 and body["series"][0]["labels"]["agent"] == "researcher"
    pts = body["series"][0]["points"]
    assert 170 <= len(pts) <= 180 and max(v for _, v in pts) >= 45
    # a denser series comes back as at most 500 points that keep the spike
    _, system = live
    system.record_many([{"metric": "dense_metric", "value": 100.0 if i == 777 else 1.0, "timestamp": NOW - 3000 + i * 0.5}
                        for i in range(6000)])
    d = client.get("/api/v1/series", params={"metric": "dense_metric", "lookback": "1h"}).json()
    assert d["series"][0]["count"] == 6000
    assert len(d["series"][0]["points"]) <= 500 and max(v for _, v in d["series"][0]["points"]) == 100.0
    assert client.get("/api/v1/series", params={"metric": "never_recorded"}).json()["series"] == []
    assert_json_error(client.get("/api/v1/series", params={"metric": "bad metric!"}), 400)
    assert_json_error(client.get("/api/v1/series", params={"metric": "x", "labels": "agent"}), 400)
    assert_json_error(client.get("/api/v1/series"), 422)


def test_alert_series_has_threshold(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    fp = fp_of(live[1], "HighLatency")
    body = client.get(f"/api/v1/alerts/{fp}/series").json()
    assert body["threshold"] == 30 and body["op"] == ">" and body["metric"] == "crew_task_seconds"
    assert [s["labels"]["agent"] for s in body["series"]] == ["researcher"]  # only the alert's own series
    assert_json_error(client.get("/api/v1/alerts/ffffffffffff/series"), 404)


def test_schedules_and_policies_without_a_daemon(client: httpx.Client) -> None:
    # `perf-alerts dashboard` (no daemon in the process) shows the persisted schedules, as `perf-alerts schedules` does
    s = client.get("/api/v1/schedules").json()
    assert s["schedules"] and all(x["next_run"] for x in s["schedules"]) and "note" not in s
    assert {x["job"] for x in s["schedules"]} >= {"evaluate"}
    p = client.get("/api/v1/policies").json()
    assert p == {"policies": []}  # the seed config has none


def test_schedules_and_policies_from_status_objects(tmp_path: Path) -> None:
    class Sched:
        def status(self) -> list[dict[str, Any]]:
            return [{"name": "continuous", "job": "evaluate", "every": "1m", "last_run": "2026-03-02T11:59:00Z",
                     "next_run": "2026-03-02T12:00:00Z", "overdue": False, "nan": float("nan")}]

    class Broken:
        def status(self) -> list[dict[str, Any]]:
            raise RuntimeError(f"boom {WEBHOOK}")

    system = PerfAlerts(parse_config(SEED_CONFIG, "seed.yaml", env={}), Store(tmp_path / "s.db"), ManualClock(NOW))
    with LiveServer(system, scheduler=Sched(), policies=Broken()) as srv, httpx.Client(base_url=srv.url) as c:
        s = c.get("/api/v1/schedules").json()["schedules"]
        assert s[0]["name"] == "continuous" and s[0]["nan"] is None
        body = assert_json_error(c.get("/api/v1/policies"), 503)
        assert "sEcReT" not in str(body)


def test_summary(client: httpx.Client) -> None:
    r = client.get("/api/v1/summary", params={"period": "1d"})
    assert r.status_code in (200, 503), r.text
    if r.status_code == 200:
        assert "health" in r.json()
    assert_json_error(client.get("/api/v1/summary", params={"period": "1s"}), 400)


# --------------------------------------------------------------------------- writing


def test_ingest_metrics(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    _, system = live
    r = client.post("/api/v1/metrics", json=[
        {"metric": "api_metric", "value": 1.5, "labels": {"agent": "api"}},
        {"metric": "api_metric", "value": 2.5, "timestamp": "2026-03-02T11:59:00Z"},
        {"metric": "bad name", "value": 1},
        {"metric": "api_metric", "value": "fast"},
        {"metric": "api_metric", "value": 1, "timestamp": 1.7e12},  # milliseconds
    ])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 3
    assert any("record 2" in e and "metric name" in e for e in body["errors"])
    assert any("record 4" in e and "range" in e for e in body["errors"])
    assert len(system.store.list_series("api_metric")) == 2
    r = client.post("/api/v1/metrics", json={"samples": [{"metric": "api_metric", "value": 3}]})
    assert r.json()["accepted"] == 1


@pytest.mark.parametrize("payload,status", [
    (b"[{\"metric\": \"x\", \"value\": ", 400),  # malformed JSON
    (b"[{\"metric\": \"x\", \"value\": NaN}]", 400),  # NaN is not a value
    (b"[{\"metric\": \"x\", \"value\": Infinity}]", 400),
    (b"[{\"metric\": \"x\", \"value\": 1e999}]", 400),
    (b"[{\"metric\": \"9bad\", \"value\": 1}]", 400),  # bad metric name
    (b"[{\"metric\": \"x\", \"value\": true}]", 400),
    (b"[{\"metric\": \"x\", \"value\": 1, \"labels\": {\"bad-label\": \"v\"}}]", 400),
    (b"[{\"metric\": \"x\", \"value\": 1, \"labels\": [1, 2]}]", 400),
    (b"[{\"metric\": \"x\", \"value\": 1, \"timestamp\": \"yesterday\"}]", 400),
    (b"[{\"metric\": \"x\", \"value\": 1, \"colour\": \"red\"}]", 400),
    (b"[1, 2, 3]", 400),
    (b"[]", 400),
    (b"{\"metric\": 5}", 400),
    (b"\"hello\"", 400),
    (b"", 422),
])
def test_ingest_rejects_bad_input_with_json_4xx(client: httpx.Client, payload: bytes, status: int) -> None:
    r = client.post("/api/v1/metrics", content=payload, headers={"content-type": "application/json"})
    assert_json_error(r, status)


def test_ack_via_api(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    _, system = live
    fp = fp_of(system, "LLMErrors")
    r = client.post(f"/api/v1/alerts/{fp[:8]}/ack", json={"by": "alice"})
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged"] is True and r.json()["acknowledged_by"] == "alice"
    stored = system.store.get_alert(fp)
    assert stored is not None and stored.acknowledged_by == "alice"
    # twice keeps the first; no body is fine
    assert client.post(f"/api/v1/alerts/{fp}/ack").json()["acknowledged_by"] == "alice"
    assert_json_error(client.post("/api/v1/alerts/0123456789abcdef/ack"), 404)
    assert_json_error(client.post("/api/v1/alerts/%25/ack"), 400)  # a LIKE wildcard is not a prefix
    assert_json_error(client.post("/api/v1/alerts/nothex!/ack"), 400)
    assert_json_error(client.post(f"/api/v1/alerts/{fp}/ack", json={"by": 5}), 422)
    assert_json_error(client.post(f"/api/v1/alerts/{fp}/ack", json={"who": "x"}), 422)
    assert_json_error(client.post(f"/api/v1/alerts/{fp}/ack", content=b"{by:", headers={"content-type": "application/json"}), 400)
    ev = client.get(f"/api/v1/alerts/{fp}").json()["events"]
    assert [e["event"] for e in ev].count("acknowledged") == 1


def test_silences_create_list_expire(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    _, system = live
    fp = fp_of(system, "HighLatency")
    r = client.post("/api/v1/silences", json={"fingerprint": fp, "duration": "1h", "comment": "deploying"})
    assert r.status_code == 201, r.text
    sil = r.json()
    assert sil["state"] == "active" and 'alertname="HighLatency"' in sil["matchers"]
    assert 'agent="researcher"' in sil["matchers"] and not any(m.startswith("severity") for m in sil["matchers"])
    listed = client.get("/api/v1/alerts", params={"state": "firing"}).json()["alerts"]
    assert next(a for a in listed if a["rule"] == "HighLatency")["silenced"] is True
    assert any(s["id"] == sil["id"] for s in client.get("/api/v1/silences").json()["silences"])
    r2 = client.post("/api/v1/silences", json={"matchers": ["agent=writer"], "ends_at": "2026-03-02T13:00:00Z"})
    assert r2.status_code == 201
    assert client.delete(f"/api/v1/silences/{sil['id']}").json()["state"] == "expired"
    assert not any(s["id"] == sil["id"] for s in client.get("/api/v1/silences").json()["silences"])
    assert any(s["id"] == sil["id"] for s in client.get("/api/v1/silences", params={"all": "true"}).json()["silences"])
    client.delete(f"/api/v1/silences/{r2.json()['id']}")
    assert_json_error(client.delete("/api/v1/silences/abcdef12"), 404)
    assert_json_error(client.delete("/api/v1/silences/zz*"), 400)
    assert_json_error(client.post("/api/v1/silences", json={}), 400)  # neither matchers nor fingerprint
    assert_json_error(client.post("/api/v1/silences", json={"matchers": []}), 400)  # would silence everything
    assert_json_error(client.post("/api/v1/silences", json={"matchers": ['agent=~"("']}), 400)
    assert_json_error(client.post("/api/v1/silences", json={"matchers": ["agent=x"], "duration": "soon"}), 400)
    assert_json_error(client.post("/api/v1/silences", json={"matchers": ["agent=x"], "duration": 5, "ends_at": 1}), 400)
    assert_json_error(client.post("/api/v1/silences", json={"matchers": 42}), 422)
    assert_json_error(client.post("/api/v1/silences", json={"fingerprint": "0000ffff"}), 404)


def test_notifications_and_receivers_never_leak_the_webhook(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    from perf_alerts.notify.outbox import Outbox

    _, system = live
    with system.store.transaction() as con:
        nid = Outbox(system.store).enqueue(con, "oncall", "alerts", "g", {"alerts": [], "title": "t"}, NOW)
    sender = Outbox(system.store)
    [n] = [x for x in sender.claim(NOW) if x.id == nid]  # a sender changes only rows it claimed
    assert sender.retry(n, NOW, f"HTTP 503 from {WEBHOOK}", 30) == "failed"
    r = client.get("/api/v1/notifications")
    assert r.status_code == 200
    body = r.json()
    got = next(x for x in body["notifications"] if x["id"] == nid)
    assert got["state"] == "failed" and got["attempts"] == 1
    assert {"name": "oncall", "kind": "discord", "disabled": False, "reason": None} in body["receivers"]
    assert_json_error(client.get("/api/v1/notifications", params={"state": "lost"}), 400)
    assert_json_error(client.get("/api/v1/notifications", params={"limit": 0}), 422)
    token_part = WEBHOOK.rsplit("/", 1)[1]
    for path in ("/", "/api/v1/notifications", "/api/v1/receivers", "/api/v1/alerts", "/api/v1/status",
                 "/api/v1/health", "/api/v1/openapi.json", "/static/app.js"):
        text = client.get(path).text
        assert WEBHOOK not in text and token_part not in text, path


def test_unknown_routes_and_methods_are_json(client: httpx.Client) -> None:
    assert_json_error(client.get("/api/v1/nope"), 404)
    assert_json_error(client.put("/api/v1/alerts"), 405)
    assert_json_error(client.delete("/api/v1/silences/"), 404)


def test_page_and_assets_are_served(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'content="false"' in r.text and "/static/app.js" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/favicon.ico").status_code == 200


def test_browser_guards_dns_rebinding_and_cross_origin(client: httpx.Client, live: tuple[LiveServer, PerfAlerts]) -> None:
    # a page on evil.example that resolves to 127.0.0.1 cannot read the API
    assert_json_error(client.get("/api/v1/alerts", headers={"host": "evil.example"}), 403)
    # and a cross-site form cannot acknowledge
    fp = fp_of(live[1], "HighLatency")
    assert_json_error(client.post(f"/api/v1/alerts/{fp}/ack", headers={"origin": "http://evil.example"}), 403)
    assert client.get("/api/v1/alerts", headers={"host": f"localhost:{live[0].port}"}).status_code == 200


# --------------------------------------------------------------------------- token and binding


def test_token_required_when_set(tmp_path: Path) -> None:
    system = seeded_system(tmp_path)
    secret = "s3cret-token-for-tests"
    with LiveServer(system, token=secret) as srv, httpx.Client(base_url=srv.url) as c:
        body = assert_json_error(c.get("/api/v1/alerts"), 401)
        assert secret not in str(body)
        assert c.get("/api/v1/alerts").headers["www-authenticate"].startswith("Bearer")
        assert_json_error(c.get("/api/v1/alerts", headers={"Authorization": "Bearer wrong"}), 401)
        assert_json_error(c.get("/api/v1/alerts", headers={"Authorization": secret}), 401)
        assert_json_error(c.post("/api/v1/metrics", json=[{"metric": "x", "value": 1}]), 401)
        ok = c.get("/api/v1/alerts", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and ok.json()["count"] == 2
        page = c.get("/")  # the page itself loads and then asks for the token
        assert page.status_code == 200 and 'content="true"' in page.text and secret not in page.text


def test_non_loopback_bind_requires_a_token(tmp_path: Path) -> None:
    from perf_alerts.http.app import ServeError, build_server, check_bind

    system = seeded_system(tmp_path)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ServeError, match="token"):
            build_server(system, host, free_port(), None)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        check_bind(host, None)
    # with a token it binds every interface, and still wants the token
    with LiveServer(system, host="0.0.0.0", token="another-long-token") as srv, httpx.Client(base_url=srv.url) as c:
        assert_json_error(c.get("/api/v1/health"), 401)
        r = c.get("/api/v1/alerts", headers={"Authorization": "Bearer another-long-token", "host": "dash.example:80"})
        assert r.status_code == 200


def test_cli_dashboard_refuses_public_bind_without_token(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app

    r = CliRunner().invoke(app, ["--db", str(tmp_path / "c.db"), "dashboard", "--host", "0.0.0.0", "--port", "0"],
                           env={"PERF_ALERTS_TOKEN": ""})
    assert r.exit_code == 2, r.output
    assert "token" in r.output


def test_cli_dashboard_serves_the_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    seeded_system(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perf_alerts", "--db", str(tmp_path / "web.db"), "dashboard",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts?state=firing", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {proc.communicate(timeout=5)}") from None
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["count"] == 2
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err
