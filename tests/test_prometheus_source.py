"""Prometheus as a metric source (issue 15 item 4): `source: prometheus` rules run PromQL on a real
Prometheus started by the test on 127.0.0.1, its TSDB backfilled with `promtool tsdb
create-blocks-from openmetrics`; the results go through the same rules, alert state, routing
and outbox as stored samples; a down server, a timeout and a bad query are that rule's error.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from perf_alerts.config import ConfigError, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.notify.pipeline import Notifier
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

# the backfilled data ends at NOW (a whole minute, a little in the past: Prometheus' "now" is real time)
NOW = float(int(time.time()) // 60 * 60 - 120)
HOURS = 8


def openmetrics() -> str:
    """8 h, one point a minute: the researcher's LLM latency jumps to 9 s in the last 30 min (the
    writer's stays at 2 s); the task queue grows steadily by 30 an hour."""
    lines = ["# TYPE crew_llm_latency_seconds gauge"]
    n = HOURS * 60
    for agent in ("researcher", "writer"):
        for i in range(n + 1):
            t = NOW - (n - i) * 60
            v = 9.0 + (i % 3) * 0.1 if agent == "researcher" and i > n - 30 else 2.0 + (i % 5) * 0.05
            lines.append(f'crew_llm_latency_seconds{{agent="{agent}",crew="demo"}} {v} {t:.0f}')
    lines.append("# TYPE crew_task_queue gauge")
    for i in range(n + 1):
        t = NOW - (n - i) * 60
        lines.append(f'crew_task_queue{{crew="demo"}} {10 + 0.5 * i + (i % 4) * 0.2} {t:.0f}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from prom_server import PromServer, backfill, require_prometheus

    require_prometheus()
    work = tmp_path_factory.mktemp("prom")
    backfill(openmetrics(), work / "tsdb", work)
    with PromServer(work, data_dir=work / "tsdb") as prom:
        # the backfilled blocks are loaded at start: the data is queryable at once
        res = prom.api("query", query="crew_llm_latency_seconds", time=NOW)["result"]
        assert len(res) == 2, res
        yield prom


def config(url: str, out: Path, extra_rules: str = "") -> str:
    return f"""\
prometheus: {{url: "{url}", timeout: 3s, step: 1m}}
metrics:
  crew_llm_latency_seconds: {{unit: s, better: lower}}
  crew_task_queue: {{unit: tasks, better: lower}}
rules:
  - name: SlowLLM
    type: threshold
    source: prometheus
    query: avg_over_time(crew_llm_latency_seconds[10m])
    metric: crew_llm_latency_seconds
    op: ">"
    value: 5
    severity: critical
    annotations: {{summary: "{{{{ $labels.agent }}}}: LLM latency {{{{ $value }}}} s"}}
  - name: QueueGrowing
    type: trend
    source: prometheus
    query: sum by (crew) (crew_task_queue)
    metric: crew_task_queue
    lookback: 1h
    op: ">"
    value: 10
    severity: warning
  - name: QueueBreach
    type: forecast
    source: prometheus
    query: crew_task_queue
    lookback: 2h
    horizon: 2h
    op: ">"
    value: 150
    severity: warning
{extra_rules}receivers:
  - {{name: ops-file, file: {{path: "{out}"}}}}
route: {{receiver: ops-file, group_wait: 0s, group_interval: 1s, group_by: [alertname]}}
"""


def system_for(text: str, tmp_path: Path) -> PerfAlerts:
    return PerfAlerts(parse_config(text, "prom.yaml", env={}), Store(tmp_path / "p.db"), ManualClock(NOW))


def test_threshold_and_history_rules_fire_from_promql_and_reach_the_outbox(prometheus: Any, tmp_path: Path) -> None:
    out = tmp_path / "notifications.jsonl"
    s = system_for(config(prometheus.url, out), tmp_path)
    res = s.evaluate()
    assert res.errors == []
    firing = {(a.rule, a.labels.get("agent") or a.labels.get("crew")): a for a in s.alerts(["firing"])}
    # threshold: an instant query at the evaluation time; only the researcher is slow
    assert ("SlowLLM", "researcher") in firing and ("SlowLLM", "writer") not in firing, firing
    slow = firing[("SlowLLM", "researcher")]
    assert slow.labels["crew"] == "demo" and slow.severity.value == "critical"
    assert 8.9 <= (slow.value or 0) <= 9.3
    assert slow.annotations["summary"].startswith("researcher: LLM latency 9")
    # trend over a range query: +30 tasks an hour
    grow = firing[("QueueGrowing", "demo")]
    assert 25 <= (grow.value or 0) <= 35, grow.value
    # forecast over a range query: at 100 now, +30/h → 150 in about 1.7 h, within the 2 h horizon
    assert ("QueueBreach", "demo") in firing
    # the same pipeline: routed, written to the outbox, delivered to the file receiver
    n = Notifier(s)
    plan, delivery = n.flush(NOW, 10.0)
    assert delivery.delivered >= 1, delivery.to_dict()
    sent = [json.loads(line) for line in out.read_text().splitlines()]
    rules = {a["labels"]["alertname"] for m in sent for a in m.get("alerts", [])}
    assert {"SlowLLM", "QueueGrowing", "QueueBreach"} <= rules, sent
    rows = s.store.outbox_recent("delivered")
    assert rows and all(r.receiver == "ops-file" for r in rows)
    # a second cycle keeps the same alerts (same fingerprints from the same labels)
    s.clock.advance(60)  # type: ignore[attr-defined]
    again = s.evaluate()
    assert again.errors == []
    assert {a.fingerprint for a in s.alerts(["firing"])} == {a.fingerprint for a in firing.values()}


def test_anomaly_and_absent_rules_read_prometheus_history(prometheus: Any, tmp_path: Path) -> None:
    extra = """\
  - name: LatencyAnomaly
    type: anomaly
    source: prometheus
    query: crew_llm_latency_seconds
    lookback: 8h
    window: 45m
  - name: QueueGone
    type: absent
    source: prometheus
    query: crew_task_queue{crew="ops"}
    matchers: {crew: ops}
    window: 5m
"""
    s = system_for(config(prometheus.url, tmp_path / "o.jsonl", extra), tmp_path)
    rules = [r for r in s.config.rules if r.name in ("LatencyAnomaly", "QueueGone")]
    res = s.evaluate(rules=rules)
    assert res.errors == []
    s.clock.advance(60)  # type: ignore[attr-defined]
    res = s.evaluate(rules=rules)
    assert res.errors == []
    active = {(a.rule, a.labels.get("agent", a.labels.get("crew"))) for a in s.alerts(["firing", "pending"])}
    assert ("LatencyAnomaly", "researcher") in active and ("LatencyAnomaly", "writer") not in active, active
    assert ("QueueGone", "ops") in active


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_down_server_a_timeout_and_a_bad_query_are_per_rule_errors(prometheus: Any, tmp_path: Path) -> None:
    """Each failing rule is reported by name with what went wrong; the other rules are evaluated."""
    from perf_alerts import selfmetrics

    selfmetrics.reset()
    extra = """\
  - {name: BadQuery, type: threshold, source: prometheus, query: "rate(crew_llm_latency_seconds[5m]", op: ">", value: 1}
  - {name: StoreRule, type: threshold, metric: crew_local, op: ">", value: 1, aggregate: last}
"""
    s = system_for(config(prometheus.url, tmp_path / "o.jsonl", extra), tmp_path)
    s.record("crew_local", 5.0, ts=NOW - 10)
    res = s.evaluate()
    assert len(res.errors) == 1, res.errors
    assert res.errors[0].startswith("rule BadQuery: PrometheusError: Prometheus at http://127.0.0.1:")
    assert "refused the query (bad_data)" in res.errors[0] and "parse error" in res.errors[0]
    assert {a.rule for a in s.alerts(["firing"])} >= {"SlowLLM", "StoreRule", "QueueGrowing"}
    assert s.store.kv_get("last_evaluation")["errors"] == res.errors  # shown by /api/v1/status and the CLI

    # the server is down: every Prometheus rule is an error, the store's rule still runs
    down = tmp_path / "down"
    down.mkdir()
    s2 = system_for(config(f"http://127.0.0.1:{free_port()}", tmp_path / "o2.jsonl",
                           "  - {name: StoreRule, type: threshold, metric: crew_local, op: '>', value: 1, aggregate: last}\n"),
                    down)
    s2.record("crew_local", 5.0, ts=NOW - 10)
    res2 = s2.evaluate()
    assert sorted(e.split(":")[0] for e in res2.errors) == ["rule QueueBreach", "rule QueueGrowing", "rule SlowLLM"]
    assert all("is not reachable: ConnectError" in e for e in res2.errors), res2.errors
    # asked once per cycle: the other rules say so instead of waiting out their own attempt
    assert sum("not asked again in this cycle" in e for e in res2.errors) == 2, res2.errors
    assert [a.rule for a in s2.alerts(["firing"])] == ["StoreRule"]

    # a server that accepts the connection and never answers: the rule's timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        slow_dir = tmp_path / "slow"
        slow_dir.mkdir()
        text = config(f"http://127.0.0.1:{port}", tmp_path / "o3.jsonl").replace("timeout: 3s", "timeout: 0.3s")
        s3 = system_for(text, slow_dir)
        res3 = s3.evaluate(rules=[r for r in s3.config.rules if r.name == "SlowLLM"])
    assert res3.errors == ["rule SlowLLM: PrometheusError: Prometheus at http://127.0.0.1:%d did not answer within "
                           "0.3s (prometheus.timeout)" % port]
    snap = selfmetrics.snapshot().counters
    assert snap["prometheus_queries"][(("outcome", "error"),)] >= 3
    assert snap["rule_evaluation_errors"][(("rule", "BadQuery"),)] == 1


def test_the_bearer_token_is_sent_and_never_shown(tmp_path: Path) -> None:
    """The token comes from the environment variable `bearer_token_env` names; errors show the
    server without credentials."""
    import httpx

    from perf_alerts.sources.prometheus import PrometheusClient, PrometheusError

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer t0ken-xyz":
            return httpx.Response(401, json={"status": "error", "errorType": "unauthorized", "error": "no"})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "x"}, "value": [NOW, "1"]},
            {"metric": {"job": "y"}, "value": [NOW, "NaN"]}]}})

    cfg = parse_config('prometheus: {url: "http://user:pw@prom.internal:9090", bearer_token_env: PROM_TOKEN}\n',
                       "t.yaml", env={})
    client = PrometheusClient.from_settings(cfg.prometheus, env={"PROM_TOKEN": "t0ken-xyz"})
    client._transport = httpx.MockTransport(handler)
    series = client.query("up", NOW)
    assert [(x.metric, x.labels, x.values.tolist()) for x in series] == [("up", {"job": "x"}, [1.0]),
                                                                       (None, {"job": "y"}, [])]
    assert seen[0].method == "POST" and seen[0].url.path == "/api/v1/query"
    assert "t0ken" not in repr(client) and "pw" not in repr(client)
    bad = PrometheusClient.from_settings(cfg.prometheus, env={"PROM_TOKEN": "wrong"})
    bad._transport = httpx.MockTransport(handler)
    with pytest.raises(PrometheusError) as e:
        bad.query("up", NOW)
    assert "HTTP 401" in str(e.value) and "pw" not in str(e.value) and "wrong" not in str(e.value)
    assert "http://prom.internal:9090" in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("rules:\n  - {name: X, type: threshold, metric: m, query: up, op: '>', value: 1}\n",
     "rules[0]: query (PromQL) needs source: prometheus"),
    ("rules:\n  - {name: X, type: threshold, query: up, op: '>', value: 1}\n",  # no metric either: still this
     "rules[0]: query (PromQL) needs source: prometheus"),
    ("prometheus: {url: 'http://127.0.0.1:9090'}\nrules:\n  - {name: X, type: threshold, source: prometheus, op: '>', value: 1}\n",
     "a source: prometheus rule needs query"),
    ("prometheus: {url: 'http://127.0.0.1:9090', tokn: x}\n", "prometheus.tokn: unknown field 'tokn'"),
    ("prometheus: {url: 'http://127.0.0.1:9090'}\nrules:\n  - {name: X, type: threshold, source: prometheus, query: up, "
     "op: '>', value: 1, promql: x}\n", "rules[0].promql: unknown field 'promql'"),
    ("prometheus: {url: 'http://127.0.0.1:9090'}\nrules:\n  - {name: X, type: threshold, source: prometheus, query: up, "
     "aggregate: p95, op: '>', value: 1}\n", "the PromQL query computes the value"),
    ("rules:\n  - {name: X, type: anomaly, source: prometheus, query: up}\n",
     "source: prometheus needs a server: set prometheus: {url: http://host:9090} or PERF_ALERTS_PROMETHEUS_URL"),
    ("prometheus: {url: 'ftp://x'}\n", "prometheus.url"),
    ("prometheus: {url: 'http://x:9090', bearer_token_env: 'abc def'}\n", "NAME of an environment variable"),
    ("rules:\n  - {name: X, type: threshold, metric: m, step: 1m, op: '>', value: 1}\n", "step is the resolution"),
])
def test_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml", env={})
    assert message in str(e.value), str(e.value)
    assert str(e.value).startswith("c.yaml:")


def test_the_url_comes_from_the_environment_too() -> None:
    text = "rules:\n  - {name: X, type: anomaly, source: prometheus, query: up}\n"
    cfg = parse_config(text, "c.yaml", env={"PERF_ALERTS_PROMETHEUS_URL": "http://127.0.0.1:9091"})
    assert cfg.prometheus.url == "http://127.0.0.1:9091" and cfg.rules[0].metric == "X"
    over = parse_config("prometheus: {url: 'http://a:1'}\n" + text, "c.yaml",
                        env={"PERF_ALERTS_PROMETHEUS_URL": "http://127.0.0.1:9092"})
    assert over.prometheus.url == "http://127.0.0.1:9092"


def test_the_dashboard_charts_a_prometheus_alert_from_promql(prometheus: Any, tmp_path: Path) -> None:
    """GET /api/v1/alerts/{fp}/series of a `source: prometheus` alert: the query over the lookback,
    the alert's own series, with the threshold; a server that is down is a note, not an error."""
    from fastapi.testclient import TestClient

    from perf_alerts.http.app import create_app

    s = system_for(config(prometheus.url, tmp_path / "o.jsonl"), tmp_path)
    assert s.evaluate().errors == []
    slow = next(a for a in s.alerts(["firing"]) if a.rule == "SlowLLM")
    with TestClient(create_app(s)) as c:
        r = c.get(f"/api/v1/alerts/{slow.fingerprint}/series", params={"lookback": "2h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "prometheus" and body["threshold"] == 5 and body["unit"] == "s"
    assert [x["labels"]["agent"] for x in body["series"]] == ["researcher"]
    points = body["series"][0]["points"]
    assert len(points) > 50 and points[-1][1] > 8.5 and points[0][1] < 3

    down = system_for(config(f"http://127.0.0.1:{free_port()}", tmp_path / "o2.jsonl"), tmp_path)
    with TestClient(create_app(down)) as c:
        r = c.get(f"/api/v1/alerts/{slow.fingerprint}/series")
    assert r.status_code == 200 and r.json()["series"] == []
    assert "is not reachable" in r.json()["note"]


def test_test_rules_says_a_prometheus_rule_is_for_promtool(tmp_path: Path) -> None:
    """`perf-alerts test-rules` feeds input_series to a scratch store; a `source: prometheus` rule's
    PromQL runs on the server, so a test of it fails saying so (never a silent pass, never a query)
    and the store's rules in the same file are tested as usual."""
    from perf_alerts.rules.testing import run_rule_tests

    (tmp_path / "alerting.yaml").write_text("""\
prometheus: {url: "http://127.0.0.1:9"}
rules:
  - {name: FromProm, type: threshold, source: prometheus, query: up, op: "<", value: 1}
  - {name: Local, type: threshold, metric: lat, aggregate: last, window: 5m, op: ">", value: 1}
""")
    (tmp_path / "t.yaml").write_text("""\
rule_files: [alerting.yaml]
tests:
  - interval: 1m
    input_series:
      - {series: 'lat{agent="a"}', values: '5x5'}
    alert_rule_test:
      - {eval_time: 3m, alertname: Local, exp_alerts: [{exp_labels: {agent: a, severity: warning}}]}
      - {eval_time: 3m, alertname: FromProm, exp_alerts: []}
""")
    (outcome,) = run_rule_tests(tmp_path / "t.yaml")
    assert not outcome.passed
    assert len(outcome.failures) == 1 and "FromProm is a source: prometheus rule" in outcome.failures[0]


@pytest.mark.parametrize("frac", [0.0004, 0.4996, 0.5004, 0.9996])
def test_an_instant_query_at_a_fractional_time_keeps_its_point(prometheus: Any, tmp_path: Path, frac: float) -> None:
    """Evaluated at …x.4996 the time used to go out rounded up (…x.500); Prometheus stamped its point
    with that later time and the rule left it out: the alert resolved on every other cycle (found by a
    new user). Whatever the fraction, the researcher's SlowLLM alert is there."""
    s = system_for(config(prometheus.url, tmp_path / "n.jsonl"), tmp_path)
    res = s.evaluate(at=NOW - 120 + frac)
    assert res.errors == []
    assert ("SlowLLM", "researcher") in {(a.rule, a.labels.get("agent")) for a in s.alerts(["firing", "pending"])}


def test_backtest_replays_prometheus_rules_on_an_empty_store(prometheus: Any, tmp_path: Path) -> None:
    from perf_alerts.rules.backtest import backtest

    s = system_for(config(prometheus.url, tmp_path / "b.jsonl"), tmp_path)
    assert "give --start and --end" in (backtest(s.store, s.config).error or "")
    rep = backtest(s.store, s.config, start=NOW - 1800, end=NOW - 120, step=300)
    assert rep.error is None and rep.evaluations == 6
    slow = next(r for r in rep.rows if r.rule == "SlowLLM")
    assert slow.alerts >= 1 and slow.error is None, rep
    assert "empty" in (backtest(s.store, s.config, start=NOW, end=NOW).error or "")
