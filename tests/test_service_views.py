"""One service layer behind the front ends (issue 9): the alert view, the fingerprint lookup,
the argument parsers, the error mapping and the HTTP server exist once, and the CLI, the
HTTP API, the crew tool and the daemon all go through them."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from typer.testing import CliRunner

from perf_alerts.config import parse_config
from perf_alerts.core import AckRefused, AlertNotFound, AmbiguousFingerprint, InvalidFingerprint, PerfAlerts
from perf_alerts.errors import ConflictError, InputError, NotFoundError, PerfAlertsError
from perf_alerts.model import AlertState, LabelFilterError, labels_match, parse_alert_states, parse_label_filter
from perf_alerts.notify.mute import muting
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock, TimeParseError, parse_duration_arg, parse_timestamp

NOW = parse_timestamp("2026-03-02T12:00:00Z")

CONFIG = """\
rules:
  - name: SlowTasks
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 10m
    op: ">"
    value: 30
    severity: critical
    annotations: {summary: "{{ labels.agent }} is slow"}
  - name: ToolErrors
    type: threshold
    metric: crew_tool_errors
    aggregate: sum
    window: 10m
    op: ">"
    value: 2
    severity: warning
  - name: Warmup
    type: threshold
    metric: crew_task_seconds
    aggregate: avg
    window: 10m
    op: ">"
    value: 30
    for: 1h
    severity: info
inhibit_rules:
  - source_matchers: {severity: critical}
    target_matchers: {severity: warning}
    equal: [agent]
receivers:
  - name: console
    console: {}
route:
  receiver: console
"""


def _system(tmp_path: Path) -> PerfAlerts:
    """researcher: slow (critical) and failing tools (warning, inhibited by the critical one);
    writer: failing tools (warning, not inhibited); Warmup is pending for the researcher."""
    pa = PerfAlerts(parse_config(CONFIG, "views.yaml", env={}), Store(tmp_path / "views.db"), ManualClock(NOW))
    recs: list[dict[str, Any]] = []
    for i in range(10):
        t = NOW - 600 + i * 60 + 30
        recs.append({"metric": "crew_task_seconds", "value": 50.0, "timestamp": t, "labels": {"agent": "researcher"}})
        recs.append({"metric": "crew_task_seconds", "value": 5.0, "timestamp": t, "labels": {"agent": "writer"}})
        for agent in ("researcher", "writer"):
            recs.append({"metric": "crew_tool_errors", "value": 1.0, "timestamp": t, "labels": {"agent": agent}})
    assert pa.record_many(recs).rejected == 0
    res = pa.evaluate()
    assert res.errors == []
    return pa


def _fp(pa: PerfAlerts, rule: str, agent: str) -> str:
    return next(a.fingerprint for a in pa.alerts() if a.rule == rule and a.labels.get("agent") == agent)


# --------------------------------------------------------------------------- parsers


def test_one_label_filter_parser_for_every_shape() -> None:
    assert parse_label_filter(None) == {} and parse_label_filter("  ") == {}
    assert parse_label_filter('agent=researcher, task="report"') == {"agent": "researcher", "task": "report"}
    assert parse_label_filter('{"crew": "c1"}') == {"crew": "c1"}
    assert parse_label_filter({"crew": "c1", "n": 3, "gone": None}) == {"crew": "c1", "n": "3"}
    for bad, words in (("agent", ["--labels", "label=value"]), ("{nope", ["not a valid JSON"]),
                       ('["a"]', ["label=value"]), ("__x=1", ["invalid label name"]), (5, ["got int"])):
        with pytest.raises(LabelFilterError) as e:
            parse_label_filter(bad, "--labels" if bad == "agent" else "labels")
        assert isinstance(e.value, InputError)
        assert all(w in str(e.value) for w in words), str(e.value)
    assert labels_match({"agent": "a", "crew": "c"}, {"crew": "c"}) and labels_match({"agent": "a"}, None)
    assert not labels_match({"agent": "a"}, {"crew": "c"})


def test_one_bounded_duration_helper_names_the_argument() -> None:
    assert parse_duration_arg("1h30m", "--lookback") == 5400.0
    assert parse_duration_arg("2 days", "--lookback") == 172800.0
    assert parse_duration_arg(24, "lookback_hours", bare_unit=3600.0) == 86400.0
    assert parse_duration_arg("36", "lookback_hours", bare_unit=3600.0) == 36 * 3600.0
    assert parse_duration_arg("90 minutes", "lookback_hours", bare_unit=3600.0) == 5400.0
    assert parse_duration_arg(None, "lookback", default=60.0) == 60.0
    assert parse_duration_arg("", "lookback", default=60.0) == 60.0
    cases: list[tuple[Any, dict[str, Any], str]] = [
        ("forever", {}, "--lookback must be a number of seconds or a duration"),
        ("soon", {"bare_unit": 3600.0}, "--lookback must be a number of hours"),
        (-3, {"bare_unit": 3600.0, "lo": 1.0, "hi": 86400.0}, "--lookback must be between 1s and 1d, got -3"),
        ("1m", {"lo": 3600.0}, "--lookback must be at least 1h"),
        (None, {}, "--lookback is required"),
        (True, {}, "--lookback must be a number"),
        ("nan", {}, "--lookback must be"),
    ]
    for value, kw, message in cases:
        with pytest.raises(TimeParseError, match="^" + message.replace("(", r"\(")):
            parse_duration_arg(value, "--lookback", **kw)


def test_alert_state_filter() -> None:
    assert parse_alert_states("active") == [AlertState.FIRING, AlertState.PENDING]
    assert parse_alert_states(None) is None and parse_alert_states("all") is None
    assert parse_alert_states("Resolved") == [AlertState.RESOLVED]
    with pytest.raises(InputError, match="--state: unknown state 'open'; valid: pending, firing"):
        parse_alert_states("open", "--state")


# --------------------------------------------------------------------------- the alert view


def test_alert_views_carry_rule_and_muting(tmp_path: Path) -> None:
    pa = _system(tmp_path)
    views = {(v.alert.rule, v.alert.labels.get("agent")): v for v in pa.alert_views(None, muting)}
    slow, inhibited, plain = (views[("SlowTasks", "researcher")], views[("ToolErrors", "researcher")],
                              views[("ToolErrors", "writer")])
    pending = views[("Warmup", "researcher")]
    assert (slow.metric, slow.op, slow.rule_type, slow.summary) == ("crew_task_seconds", ">", "threshold", "researcher is slow")
    assert inhibited.inhibited and not plain.inhibited and not slow.inhibited
    assert pending.alert.state == AlertState.PENDING and pending.since == pending.alert.active_since
    assert slow.since == slow.alert.started_at and slow.series_labels == {"agent": "researcher"}
    # worst first, like alerts()
    assert [v.fingerprint for v in pa.alert_views(None, muting)] == [a.fingerprint for a in pa.alerts()]

    from perf_alerts.notify.silence import add_silence

    sil = add_silence(pa.store, ["agent=writer"], NOW, NOW + 3600, "t", "", NOW)
    pa.ack(slow.fingerprint, by="alice")
    views = {(v.alert.rule, v.alert.labels.get("agent")): v for v in pa.alert_views(["firing"], muting)}
    assert views[("ToolErrors", "writer")].silenced_by == (sil.id,)
    assert views[("ToolErrors", "writer")].flags == ("silenced",)
    assert views[("SlowTasks", "researcher")].flags == ("acknowledged",)
    d = views[("ToolErrors", "writer")].to_dict()
    assert d["silenced"] is True and d["silenced_by"] == [sil.id] and d["inhibited"] is False
    assert d["metric"] == "crew_tool_errors" and d["since"] == d["started_at"]
    assert json.loads(json.dumps(d)) == d  # plain JSON


def test_cli_http_and_tool_show_the_same_view(tmp_path: Path) -> None:
    require("fastapi")
    from fastapi.testclient import TestClient

    from perf_alerts.cli.main import app
    from perf_alerts.crew.tool import AdvancedPerformanceAnalyticsTool
    from perf_alerts.http.app import create_app

    pa = _system(tmp_path)
    expected = [v.to_dict() for v in pa.alert_views(["firing"], muting)]
    with TestClient(create_app(pa)) as client:
        body = client.get("/api/v1/alerts", params={"state": "firing"}).json()
    assert body["alerts"] == expected

    cfg = tmp_path / "views.yaml"
    cfg.write_text(CONFIG)
    r = CliRunner().invoke(app, ["--config", str(cfg), "--db", str(tmp_path / "views.db"), "alerts", "--state",
                                 "firing", "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.stdout)
    # the CLI's clock is the system clock: only the times computed from "now" may differ (none here)
    assert cli == expected

    tool = AdvancedPerformanceAnalyticsTool(system=pa)
    shown = {(a["rule"], a["labels"]["agent"]): a for a in tool.run(action="dashboard").data["firing"]}
    assert shown[("ToolErrors", "researcher")].get("inhibited") is True
    assert "inhibited" not in shown[("ToolErrors", "writer")]


# --------------------------------------------------------------------------- fingerprints and errors


def test_fingerprint_lookup_errors_are_typed(tmp_path: Path) -> None:
    pa = _system(tmp_path)
    fp = _fp(pa, "SlowTasks", "researcher")
    assert pa.resolve_fingerprint(fp[:6].upper()).fingerprint == fp
    for bad in ("", " ", "%", "_", "xyz", "a" * 65):
        with pytest.raises(InvalidFingerprint) as e:
            pa.resolve_fingerprint(bad)
        assert isinstance(e.value, InputError) and isinstance(e.value, AlertNotFound)
    with pytest.raises(AlertNotFound, match="no alert") as nf:
        pa.resolve_fingerprint("0" * 16 if not fp.startswith("0" * 16) else "f" * 16)
    assert isinstance(nf.value, NotFoundError) and not isinstance(nf.value, InputError)
    from dataclasses import replace

    a = pa.alerts()[0]
    with pa.store.transaction() as con:  # two alerts whose fingerprints share a prefix
        pa.store.save_alerts([replace(a, fingerprint="abc1000000000000"), replace(a, fingerprint="abc2000000000000")], con)
    with pytest.raises(AmbiguousFingerprint, match="ambiguous") as amb:
        pa.resolve_fingerprint("ABC")
    assert isinstance(amb.value, ConflictError) and amb.value.matches == ["abc1000000000000", "abc2000000000000"]
    pending = _fp(pa, "Warmup", "researcher")
    with pytest.raises(AckRefused, match="pending") as refused:
        pa.ack(pending)
    assert isinstance(refused.value, ConflictError) and not isinstance(refused.value, AlertNotFound)


def test_http_maps_the_hierarchy_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    require("fastapi")
    from fastapi.testclient import TestClient

    from perf_alerts.core import AmbiguousFingerprint
    from perf_alerts.errors import ConfigError, DeliveryError, StoreError
    from perf_alerts.http.app import ApiError, create_app, error_status
    from perf_alerts.notify.silence import SilenceError, SilenceNotFound

    assert error_status(InvalidFingerprint("x")) == 400
    assert error_status(AlertNotFound("x")) == 404
    assert error_status(AmbiguousFingerprint("x", ["a", "b"])) == 409
    assert error_status(AckRefused("x")) == 409
    assert error_status(SilenceNotFound("x")) == 404
    assert error_status(SilenceError("x")) == 400
    assert error_status(TimeParseError("x")) == 400
    assert error_status(StoreError("x")) == 503 and error_status(DeliveryError("x")) == 502
    assert error_status(ConfigError("x")) == 500 and error_status(ApiError(413, "big")) == 413

    pa = _system(tmp_path)
    app = create_app(pa)

    @app.get("/api/v1/boom")
    def boom() -> Any:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        pending = _fp(pa, "Warmup", "researcher")
        r = client.post(f"/api/v1/alerts/{pending}/ack")
        assert r.status_code == 409 and "pending" in r.json()["error"]
        r = client.get("/api/v1/series", params={"metric": "crew_task_seconds", "labels": "agent"})
        assert r.status_code == 400 and r.json()["error"].startswith("labels: 'agent' is not label=value")
        r = client.get("/api/v1/health", params={"lookback": "1s"})
        assert r.status_code == 400 and r.json()["error"].startswith("lookback must be between 1m and 90d")
        r = client.get("/api/v1/alerts/abc/series", params={"lookback": "2 hours"})
        assert r.status_code in (404, 409)  # a short prefix is looked up like the CLI's, not refused
        with caplog.at_level(logging.ERROR, logger="perf_alerts.http"):
            r = client.get("/api/v1/boom")
        assert r.status_code == 500 and "a bug" not in r.text
    rec = next(x for x in caplog.records if x.name == "perf_alerts.http")
    assert rec.exc_info is not None and "RuntimeError: a bug" in caplog.text  # the traceback is in the log


def test_cli_maps_every_perf_alerts_error_to_one_line_and_exit_2(tmp_path: Path) -> None:
    from perf_alerts.cli.main import app

    pa = _system(tmp_path)
    pending = _fp(pa, "Warmup", "researcher")
    cfg = tmp_path / "views.yaml"
    cfg.write_text(CONFIG)
    base = ["--config", str(cfg), "--db", str(tmp_path / "views.db")]
    cases = [
        (["ack", "zz"], "fingerprint 'zz' is not valid"),
        (["ack", pending], "is pending, not firing yet"),
        (["alerts", "--state", "open"], "--state: unknown state 'open'"),
        (["analyze", "--labels", "agent"], "--labels: 'agent' is not label=value"),
        (["predict", "--horizon", "soon"], "--horizon must be a number of seconds or a duration"),
        (["silence", "add", "agent=x", "--duration", "0s"], "--duration must be at least 1s"),
        (["silence", "expire", "ffffffff"], "no silence with id"),
        (["evaluate", "--group", "nope", "--no-notify"], "--group: no rule is in group 'nope'"),
    ]
    for args, message in cases:
        r = CliRunner().invoke(app, base + args)
        assert r.exit_code == 2, (args, r.output)
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("perf-alerts: error: ") and message in lines[0], (args, lines)
    ok = CliRunner().invoke(app, base + ["analyze", "--labels", "agent=writer", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["scope"]["labels"] == {"agent": "writer"}


def test_crew_tool_failures_are_fail_results_and_bugs_are_logged(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from perf_alerts.crew.tool import AdvancedPerformanceAnalyticsTool, failure

    pa = _system(tmp_path)
    tool = AdvancedPerformanceAnalyticsTool(system=pa)
    res = tool.run(action="analyze", labels="crew")
    assert res.status == "fail" and "labels: 'crew' is not label=value" in res.error
    res = tool.run(action="analyze", labels="agent=researcher")
    assert res.status == "fail" and "`agent` parameter" in res.error
    ok = tool.run(action="analyze", labels="agent2=x", lookback_hours="2 days")
    assert ok.status in ("ok", "uncertain") and ok.data["scope"]["labels"] == {"agent2": "x"}
    assert failure("ack", AckRefused("alert x is resolved")).error == "ack: alert x is resolved"
    with caplog.at_level(logging.ERROR, logger="perf_alerts.crew"):
        try:
            raise KeyError("oops")
        except KeyError as e:
            bug = failure("analyze", e)
    assert bug.status == "fail" and "KeyError" in (bug.error or "")
    assert caplog.records and caplog.records[-1].exc_info is not None


# --------------------------------------------------------------------------- serving


def _busy_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, int(s.getsockname()[1])


def test_start_server_binds_reports_and_stops(tmp_path: Path) -> None:
    require("fastapi")
    import httpx

    from perf_alerts.http.app import create_app
    from perf_alerts.http.server import ServeError, start_server

    pa = _system(tmp_path)

    async def scenario() -> None:
        running = await start_server(create_app(pa), "127.0.0.1", 0)
        assert running.port > 0 and running.url == f"http://127.0.0.1:{running.port}/"
        async with httpx.AsyncClient(base_url=running.url) as c:
            assert (await c.get("/api/v1/alerts")).json()["count"] == len(pa.alerts())
        await running.stop()
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient(base_url=running.url) as c:
                await c.get("/api/v1/alerts")
        busy, port = _busy_port()
        try:
            with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start_server(create_app(pa), "127.0.0.1", port)
        finally:
            busy.close()
        with pytest.raises(ServeError, match="token"):
            await start_server(create_app(pa), "0.0.0.0", 0)
        public = await start_server(create_app(pa, token="a-long-enough-token"), "0.0.0.0", 0)
        await public.stop()

    asyncio.run(scenario())


def test_daemon_serves_http_through_the_injected_server(tmp_path: Path) -> None:
    from perf_alerts.errors import DaemonError
    from perf_alerts.manage.daemon import Daemon

    pa = _system(tmp_path)
    calls: list[str] = []

    class FakeServer:
        url = "http://127.0.0.1:1/"
        should_exit = False

        async def stop(self) -> None:
            calls.append("stop")

    async def serve_http(system: PerfAlerts, daemon: Daemon) -> FakeServer:
        assert system is pa and daemon.port == 1234
        calls.append("start")
        return FakeServer()

    async def scenario() -> None:
        d = Daemon(pa, port=1234, collect_host=False, serve_http=serve_http)
        await d._start_http()
        assert d.url == FakeServer.url
        d.stop()  # a signal: the server is told at once to stop accepting
        assert d._server is not None and d._server.should_exit is True
        await d._stop_http()

        async def refuse(system: PerfAlerts, daemon: Daemon) -> FakeServer:
            raise DaemonError("cannot listen on 127.0.0.1:1234: Address already in use")

        with pytest.raises(DaemonError, match="in use"):
            await Daemon(pa, port=1234, collect_host=False, serve_http=refuse)._start_http()
        no_http = Daemon(pa, collect_host=False)
        await no_http._start_http()  # nothing given: a warning, no server
        assert no_http.url is None

    asyncio.run(scenario())
    assert calls == ["start", "stop"]


def test_layers_and_the_cli_import_graph() -> None:
    """The daemon never imports the HTTP front end; the CLI command modules import without cli.main."""
    script = (
        "import sys\n"
        "import perf_alerts.manage.daemon\n"
        "assert not [m for m in sys.modules if m.startswith('perf_alerts.http')], 'daemon imported http'\n"
        "import perf_alerts.cli.manage_cmd, perf_alerts.cli.web_cmd, perf_alerts.cli.crew_cmd\n"
        "assert 'perf_alerts.cli.main' not in sys.modules, 'a command module imported cli.main'\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'crewai')]\n"
        "from perf_alerts.cli.main import app\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_typed_errors_are_perf_alerts_errors() -> None:
    for cls in (AlertNotFound, InvalidFingerprint, AmbiguousFingerprint, AckRefused, LabelFilterError, TimeParseError):
        assert issubclass(cls, PerfAlertsError), cls
    assert issubclass(InvalidFingerprint, ValueError) and issubclass(AlertNotFound, LookupError)


def test_the_cli_log_redacts_tracebacks_too(capsys: pytest.CaptureFixture[str]) -> None:
    from perf_alerts.cli._common import setup_logging

    root = logging.getLogger("perf_alerts")
    saved = (root.handlers[:], root.level, root.propagate)
    hook = "https://discord.com/api/webhooks/123456789012345678/sEcReT-t0ken-value_abcdefghijklmnop"
    try:
        setup_logging()
        try:
            raise RuntimeError(f"POST {hook} failed")
        except RuntimeError:
            logging.getLogger("perf_alerts.http").exception("internal error in the HTTP API")
    finally:
        root.handlers[:], root.level, root.propagate = saved
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError" in err and "internal error in the HTTP API" in err
    assert "sEcReT-t0ken" not in err


def test_evaluate_json_lists_the_alert_views(tmp_path: Path) -> None:
    from perf_alerts.cli.main import app

    pa = _system(tmp_path)
    cfg = tmp_path / "views.yaml"
    cfg.write_text(CONFIG)
    at = "2026-03-02T12:00:00Z"
    r = CliRunner().invoke(app, ["--config", str(cfg), "--db", str(tmp_path / "views.db"), "evaluate", "--at", at,
                                 "--no-notify", "--json"])
    assert r.exit_code == 0, r.output
    shown = {(a["rule"], a["labels"]["agent"]): a for a in json.loads(r.stdout)["alerts"]}
    assert shown[("ToolErrors", "researcher")]["inhibited"] is True
    assert shown[("SlowTasks", "researcher")]["metric"] == "crew_task_seconds"
    assert len(shown) == len([a for a in pa.alerts() if a.state != AlertState.RESOLVED])


def test_perf_alerts_closes_the_store_it_opened(tmp_path: Path) -> None:
    # a program that opens and drops many PerfAlerts (a notebook, a job runner) keeps no connections
    import os

    from perf_alerts.core import PerfAlerts

    db = tmp_path / "s.db"
    with PerfAlerts(None, db) as pa:
        pa.record("m", 1.0)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        with PerfAlerts(None, db) as pa:
            pa.record("m", 1.0)
            pa.store.change_marker()  # the marker connection too
    assert len(os.listdir("/proc/self/fd")) <= before + 2
    shared = Store(db)
    PerfAlerts(None, shared).close()  # a Store passed in belongs to the caller: still usable
    assert shared.time_range() is not None


def test_close_closes_the_connections_every_thread_opened(tmp_path: Path) -> None:
    # PerfAlerts is thread-safe (a connection per thread): close() closes them all, not only its own
    import os
    from concurrent.futures import ThreadPoolExecutor

    from perf_alerts.core import PerfAlerts

    db = tmp_path / "s.db"

    def open_fds() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(db))
            except OSError:
                pass
        return n

    pa = PerfAlerts(None, db)
    pa.record("m", 1.0)
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda _: pa.store.time_range(), range(16)))
        pa.close()
        assert open_fds() == 0
        assert list(ex.map(lambda _: pa.store.time_range() is not None, range(4))) == [True] * 4  # reopens
    pa.close()
