"""SLOs (issue 11): config validation, the arithmetic against hand-computed cases (empty windows,
gaps, splits, budgets), burn-rate alerts through the real evaluation with an injected clock, the
shipped defaults on healthy and incident data, and `perf-alerts slo`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perf_alerts.analytics.slo import slo_report, slo_status, slo_statuses
from perf_alerts.config import ConfigError, load_config, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

H = 3600.0
DAY = 86400.0
T = 1_800_000_000.0 - (1_800_000_000.0 % DAY)  # a UTC midnight: budget periods start here


def _cfg(slos: str, rules: str = "") -> object:
    return parse_config(f"slos:\n{slos}\n{rules}", "slo.yaml", env={})


def _system(tmp_path: Path, cfg: object, at: float = T) -> PerfAlerts:
    return PerfAlerts(cfg, Store(tmp_path / "s.db"), ManualClock(at))  # type: ignore[arg-type]


def _rec(pa: PerfAlerts, metric: str, ts: float, value: float = 1.0, **labels: str) -> None:
    pa.record(metric, value, labels or {"agent": "a"}, ts=ts)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("body, where, message", [
    ("  - {name: x, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 99}",
     "slo.yaml:2: slos[0].objective", 'did you mean "99%"'),
    ("  - {name: x, kind: latency, metric: crew_task_seconds, objective: 0.99}",
     "slo.yaml:2: slos[0]", "needs threshold"),
    ("  - {name: x, kind: success, metric: my_failures, objective: 0.99}",
     "slo.yaml:2: slos[0]", "needs total_metric"),
    ("  - {name: x, kind: budget, metric: crew_cost_usd}", "slo.yaml:2: slos[0]", "needs limit"),
    ("  - {name: x, kind: latncy, metric: m}", "slo.yaml:2: slos[0].kind", "'latency', 'success' or 'budget'"),
    ("  - name: x\n    kind: latency\n    metric: m\n    threshold: 1\n    objective: 0.9\n    burn_alerts:\n"
     "      - {alert: A, factor: 2, long: 5m, short: 1h}", "slo.yaml:8: slos[0].burn_alerts[0]", "must be shorter"),
    ("  - {name: x, kind: budget, metric: crew_cost_usd, limit: 5, objective: 0.9}", "slo.yaml:2: slos[0]",
     "not an objective"),
])
def test_slo_config_errors_name_file_line_and_field(body: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(f"slos:\n{body}\n", "slo.yaml", env={})
    assert str(e.value).startswith(where) and message in str(e.value), str(e.value)


def test_slo_config_cross_checks() -> None:
    dup = "  - {name: x, kind: budget, metric: c, limit: 1}\n  - {name: x, kind: budget, metric: c, limit: 2}"
    with pytest.raises(ConfigError, match="duplicate SLO name"):
        parse_config(f"slos:\n{dup}\n", "f.yaml", env={})
    clash = ("slos:\n  - {name: x, kind: budget, metric: c, limit: 1}\nrules:\n"
             "  - {name: SLOBurnFast, type: threshold, metric: m, op: '>', value: 1}\n")
    with pytest.raises(ConfigError, match="also the name of a rule"):
        parse_config(clash, "f.yaml", env={})
    with pytest.raises(ConfigError, match="generated from slos"):
        parse_config("rules:\n  - {name: R, type: slo_burn, metric: m}\n", "f.yaml", env={})
    cfg = _cfg("  - {name: s, kind: success, metric: crew_task_failures, objective: 99.5%}")
    slo = cfg.slos[0]  # type: ignore[attr-defined]
    assert slo.objective == pytest.approx(0.995) and slo.total_metric == "crew_task_seconds"
    assert slo.window == 28 * DAY
    assert [(w.alert, w.severity.value, w.factor, w.long, w.short) for w in slo.windows] == [
        ("SLOBurnFast", "critical", 14.4, H, 300.0), ("SLOBurnMedium", "critical", 6.0, 6 * H, 1800.0),
        ("SLOBurnSlow", "warning", 1.0, 3 * DAY, 6 * H)]
    assert [r.name for r in cfg.slo_rules] == ["SLOBurnFast", "SLOBurnMedium", "SLOBurnSlow"]  # type: ignore[attr-defined]


def test_shipped_config_defines_slos_for_the_crew_metrics() -> None:
    from perf_alerts import catalog

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "alerting.yaml", env={})
    kinds = {s.kind for s in cfg.slos}
    assert kinds == {"latency", "success", "budget"}
    metrics = {s.metric for s in cfg.slos} | {s.total_metric for s in cfg.slos if s.total_metric}
    assert {catalog.TASK_SECONDS, catalog.TASK_FAILURES, catalog.COST_USD} <= metrics


# --------------------------------------------------------------------------- arithmetic


LAT = "  - {name: lat, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 0.9, window: 1h}"


def test_latency_hand_computed_and_empty_window(tmp_path: Path) -> None:
    pa = _system(tmp_path, _cfg(LAT))
    # nothing recorded: "no data", never a made-up 100%
    (row,) = slo_statuses(pa.store, pa.config, T)
    assert row.status == "no data" and row.achieved is None and row.budget_remaining is None and row.burn_rate is None
    for i, v in enumerate([10.0, 70.0, 30.0, 90.0]):  # 2 of 4 above 60 s
        _rec(pa, "crew_task_seconds", T - 50 * 60 + i * 60, v)
    (row,) = slo_statuses(pa.store, pa.config, T)
    assert row.events == 4 and row.bad == 2
    assert row.achieved == pytest.approx(0.5)
    assert row.budget_remaining == pytest.approx(1 - 0.5 / 0.1)  # -4: overspent four times over
    assert row.burn_rate == pytest.approx(5.0)  # 50% errors against a 10% budget
    assert row.status == "breached" and row.exhausted_at is None
    # a value at the threshold is good ("at or under")
    _rec(pa, "crew_task_seconds", T - 60, 60.0)
    (row,) = slo_statuses(pa.store, pa.config, T)
    assert row.achieved == pytest.approx(3 / 5)
    # two hours later the 1 h window is empty again: no data
    (later,) = slo_statuses(pa.store, pa.config, T + 2 * H)
    assert later.status == "no data" and later.achieved is None


def test_success_with_gaps_burn_rate_and_projected_exhaustion(tmp_path: Path) -> None:
    cfg = _cfg("  - {name: ok, kind: success, metric: crew_task_failures, objective: 0.9, window: 10h, by: [agent]}")
    pa = _system(tmp_path, cfg)
    # agent a: 100 good runs between -10h and -2h, then a gap, then 10 runs in the last hour with 1 failure
    for i in range(100):
        _rec(pa, "crew_task_seconds", T - 10 * H + 60 + i * 280, 5.0)
    for i in range(10):
        _rec(pa, "crew_task_seconds", T - H + 60 + i * 300, 5.0)
    _rec(pa, "crew_task_failures", T - 30 * 60, 1.0)
    # agent b: 20 runs, one failure, all more than an hour ago (no burn rate over the last hour)
    for i in range(20):
        _rec(pa, "crew_task_seconds", T - 5 * H + i * 60, 5.0, agent="b")
    _rec(pa, "crew_task_failures", T - 5 * H + 120, 1.0, agent="b")
    a, b = slo_statuses(pa.store, pa.config, T)
    assert (a.labels, b.labels) == ({"agent": "a"}, {"agent": "b"})
    assert a.events == 110 and a.bad == 1
    assert a.achieved == pytest.approx(1 - 1 / 110)
    assert a.budget_remaining == pytest.approx(1 - (1 / 110) / 0.1)
    assert a.burn_rate == pytest.approx((1 / 10) / 0.1)  # 1.0×
    assert a.exhausted_at == pytest.approx(T + a.budget_remaining * 10 * H / 1.0)
    assert a.status == "at risk" and "gone by" in a.why  # at this burn the budget runs out within the window
    assert b.achieved == pytest.approx(0.95) and b.budget_remaining == pytest.approx(0.5)
    assert b.burn_rate is None and b.exhausted_at is None  # no event in the last hour: no burn rate, no projection
    assert b.status == "ok"
    # a window override (a summary's period): only the last 2 hours of a
    a2, _b2 = slo_statuses(pa.store, pa.config, T, window=2 * H)
    assert a2.events == 10 and a2.achieved == pytest.approx(0.9) and a2.budget_remaining == pytest.approx(0.0)


def test_budget_projection_burn_and_exhaustion(tmp_path: Path) -> None:
    cfg = _cfg("  - {name: cost, kind: budget, metric: crew_cost_usd, limit: 10, period: 1d}")
    pa = _system(tmp_path, cfg)
    at = T + 6 * H
    _rec(pa, "crew_cost_usd", T - H, 100.0)  # yesterday: another period
    _rec(pa, "crew_cost_usd", T + H, 1.0)
    _rec(pa, "crew_cost_usd", T + 3 * H, 1.5)
    _rec(pa, "crew_cost_usd", at - 600, 0.5)  # $0.50 in the last hour
    (row,) = slo_statuses(pa.store, pa.config, at)
    assert row.achieved == pytest.approx(3.0) and row.limit == 10
    assert row.budget_remaining == pytest.approx(0.7)
    assert row.projected == pytest.approx(3.0 / (6 * H) * DAY)  # $12 at this pace
    assert row.exhausted_at == pytest.approx(T + 10 / (3.0 / (6 * H)))  # 20:00 UTC
    assert row.burn_rate == pytest.approx((0.5 / H) / (10 / DAY))  # 1.2×
    assert row.status == "at risk"
    d = row.to_dict()
    assert d["exhausted_at"].endswith("T20:00:00Z") and d["budget_remaining"] == 0.7
    # over a window (a summary): the limit scales with it, nothing projected
    (w,) = slo_statuses(pa.store, pa.config, at, window=6 * H)
    assert w.limit == pytest.approx(2.5) and w.achieved == pytest.approx(3.0) and w.projected == pytest.approx(3.0)
    assert w.status == "breached" and w.budget_remaining == pytest.approx(1 - 3.0 / 2.5)
    # a new day with no sample yet: no data
    (nd,) = slo_statuses(pa.store, pa.config, T + DAY + 60)
    assert nd.status == "no data" and nd.achieved is None


def test_report_json_shape(tmp_path: Path) -> None:
    pa = _system(tmp_path, _cfg(LAT))
    _rec(pa, "crew_task_seconds", T - 60, 10.0)
    rep = slo_report(pa.store, pa.config, T)
    (row,) = rep["slos"]
    for k in ("name", "labels", "objective", "achieved", "budget_remaining", "burn_rate", "exhausted_at"):
        assert k in row
    assert rep["counts"] == {"ok": 1, "at risk": 0, "breached": 0, "no data": 0}
    assert "." not in rep["at"]  # no microseconds


# --------------------------------------------------------------------------- burn-rate alerts


SUCCESS = "  - {name: task-success, kind: success, metric: crew_task_failures, objective: 99.5%, by: [agent]}"


def _history(pa: PerfAlerts, start: float, end: float, fail_every: int | None) -> None:
    """One task a minute; every `fail_every`-th one fails."""
    recs = []
    for i, t in enumerate(range(int(start), int(end), 60)):
        recs.append({"metric": "crew_task_seconds", "value": 5.0, "timestamp": float(t), "labels": {"agent": "a"}})
        if fail_every and i % fail_every == 0:
            recs.append({"metric": "crew_task_failures", "value": 1.0, "timestamp": float(t), "labels": {"agent": "a"}})
    assert pa.record_many(recs).rejected == 0


def test_fast_burn_fires_within_5_minutes_of_a_total_outage_and_resolves(tmp_path: Path) -> None:
    pa = _system(tmp_path, _cfg(SUCCESS))
    _history(pa, T - 2 * DAY, T, None)
    fired_at = None
    for m in range(0, 11):  # a total outage from T: every task fails
        t = T + m * 60
        pa.record_many([{"metric": "crew_task_seconds", "value": 5.0, "timestamp": t, "labels": {"agent": "a"}},
                        {"metric": "crew_task_failures", "value": 1.0, "timestamp": t, "labels": {"agent": "a"}}])
        pa.clock.set(t)  # type: ignore[attr-defined]
        res = pa.evaluate()
        if fired_at is None and any(tr.event == "firing" and tr.alert.rule == "SLOBurnFast" for tr in res.transitions):
            fired_at = t
    assert fired_at is not None and fired_at - T <= 5 * 60
    (alert,) = [a for a in pa.alerts(["firing"]) if a.rule == "SLOBurnFast"]
    assert alert.labels["slo"] == "task-success" and alert.labels["agent"] == "a"
    assert alert.labels["severity"] == "critical" and alert.threshold == 14.4
    assert alert.value is not None and alert.value >= 14.4
    assert "error budget burning" in alert.annotations["summary"] and "over 1h" in alert.annotations["summary"]
    assert "budget left" in alert.annotations["description"].lower()
    # the outage ends: the short window clears, the alert resolves (after keep_firing_for, the 5m short window)
    resolved_at = None
    for m in range(11, 60):
        t = T + m * 60
        pa.record_many([{"metric": "crew_task_seconds", "value": 5.0, "timestamp": t, "labels": {"agent": "a"}}])
        pa.clock.set(t)  # type: ignore[attr-defined]
        res = pa.evaluate()
        if any(tr.event == "resolved" and tr.alert.rule == "SLOBurnFast" for tr in res.transitions):
            resolved_at = t
            break
    assert resolved_at is not None and resolved_at - (T + 10 * 60) <= 12 * 60
    events = [e for e in pa.store.events() if e["rule"] == "SLOBurnFast"]
    assert [e["event"] for e in events] == ["pending", "firing", "resolved"]


def test_slow_burn_quiet_at_half_the_budget_rate_fires_at_twice(tmp_path: Path) -> None:
    # 99.5%: a 0.5% budget. One failure in 400 runs is 0.25%: a 0.5× burn
    pa = _system(tmp_path, _cfg(SUCCESS))
    _history(pa, T - 4 * DAY, T + DAY, 400)
    for k in range(0, 24 * 4):
        res = pa.evaluate(at=T + k * 900)
        assert not [tr for tr in res.transitions if tr.alert.rule.startswith("SLOBurn")], res.transitions
    # one in 100 (1%): a 2× burn, the slow burn fires (a ticket), the fast ones do not
    pa2 = PerfAlerts(pa.config, Store(tmp_path / "s2.db"), ManualClock(T))
    _history(pa2, T - 4 * DAY, T + H, 100)
    fired = set()
    for k in range(0, 4):
        fired |= {tr.alert.rule for tr in pa2.evaluate(at=T + k * 900).transitions if tr.event == "firing"}
    assert fired == {"SLOBurnSlow"}


def test_no_burn_judged_without_enough_history(tmp_path: Path) -> None:
    """A burn rate over 3 days from two hours of data is not one: new series do not page on noise."""
    pa = _system(tmp_path, _cfg(SUCCESS))
    _history(pa, T - 2 * H, T, 50)  # 2% errors: a 4× burn, but only two hours old
    res = pa.evaluate(at=T)
    assert not [tr for tr in res.transitions if tr.alert.rule in ("SLOBurnSlow", "SLOBurnMedium")]


def test_burn_alerts_go_through_the_notification_pipeline(tmp_path: Path) -> None:
    from perf_alerts.notify.pipeline import deliver_evaluation

    pa = _system(tmp_path, _cfg(SUCCESS))
    _history(pa, T - DAY, T, None)
    _history(pa, T, T + 600, 1)
    lines: list[str] = []
    res = pa.evaluate(at=T + 600)
    assert any(t.alert.rule == "SLOBurnFast" and t.event == "firing" for t in res.transitions)
    out = deliver_evaluation(pa, res, console_write=lines.append)
    assert out.delivered >= 1
    text = "\n".join(lines)
    assert "SLOBurnFast" in text and "task-success" in text


# --------------------------------------------------------------------------- the shipped defaults


def test_default_slos_quiet_on_healthy_data_and_fire_on_an_incident(tmp_path: Path) -> None:
    from perf_alerts.simulate import Incident, simulate_crew

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "alerting.yaml", env={})
    start = T - 2 * DAY
    healthy = simulate_crew(start, 48.0, seed=3, incidents=[])
    pa = PerfAlerts(cfg, Store(tmp_path / "h.db"), ManualClock(T))
    pa.store.insert_samples(healthy.samples)
    for k in range(0, 24 * 4):  # the second day, every 15 minutes
        res = pa.evaluate(at=start + DAY + k * 900, rules=cfg.slo_rules)
        assert not [t for t in res.transitions if t.event in ("pending", "firing")], \
            [(t.alert.rule, t.alert.labels, t.alert.value) for t in res.transitions]
    rows = [r for r in slo_statuses(pa.store, cfg, T) if r.kind != "budget"]  # T: a new UTC day, no spend yet
    assert rows and all(r.status in ("ok", "at risk") for r in rows), [(r.series(), r.status, r.why) for r in rows]

    burst = Incident("error_burst", "writer", start + 36 * H, start + 37 * H, 0.8)
    sick = simulate_crew(start, 48.0, seed=3, incidents=[burst])
    pb = PerfAlerts(cfg, Store(tmp_path / "i.db"), ManualClock(T))
    pb.store.insert_samples(sick.samples)
    fired: list[tuple[str, str, str]] = []
    for k in range(0, 16):  # every 5 minutes through the burst
        res = pb.evaluate(at=burst.start + k * 300, rules=cfg.slo_rules)
        fired += [(t.alert.rule, t.alert.labels["slo"], t.alert.labels.get("agent", "")) for t in res.transitions
                  if t.event == "firing"]
    assert ("SLOBurnFast", "tool-success", "writer") in fired
    assert {f[2] for f in fired} == {"writer"}


# --------------------------------------------------------------------------- CLI


def test_cli_slo_json_and_table(tmp_path: Path) -> None:
    from perf_alerts.cli.main import app

    cfg_path = tmp_path / "a.yaml"
    cfg_path.write_text("slos:\n" + LAT + "\n")
    pa = PerfAlerts(load_config(cfg_path, env={}), Store(tmp_path / "c.db"), ManualClock(T))
    for i, v in enumerate([10.0, 70.0, 30.0, 20.0]):
        _rec(pa, "crew_task_seconds", T - 30 * 60 + i * 60, v)
    runner = CliRunner()
    args = ["--config", str(cfg_path), "--db", str(tmp_path / "c.db"), "slo", "--at", str(T)]
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    (row,) = rep["slos"]
    assert row["name"] == "lat" and row["labels"] == {} and row["objective"] == 0.9
    assert row["achieved"] == 0.75 and math.isclose(row["budget_remaining"], 1 - 0.25 / 0.1)
    assert row["burn_rate"] == 2.5 and row["exhausted_at"] is None and row["status"] == "breached"
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "lat" in r.stdout and "75.00%" in r.stdout and "breached" in r.stdout
    r = runner.invoke(app, args + ["--fail-on-breach"])
    assert r.exit_code == 1
    r = runner.invoke(app, args + ["--name", "nope"])
    assert r.exit_code == 2 and "unknown SLO" in r.output


def test_slo_status_for_one_slo_matches_the_list(tmp_path: Path) -> None:
    pa = _system(tmp_path, _cfg(LAT))
    _rec(pa, "crew_task_seconds", T - 60, 10.0)
    assert [r.to_dict() for r in slo_status(pa.store, pa.config, pa.config.slos[0], T)] == \
        [r.to_dict() for r in slo_statuses(pa.store, pa.config, T)]


def test_slo_numbers_survive_downsampling(tmp_path: Path) -> None:
    """Downsampled rows stand for n samples: run counts, failure counts and spend are the same after."""
    cfg = _cfg(SUCCESS + "\n  - {name: cost, kind: budget, metric: crew_cost_usd, limit: 100, period: 1d}\n"
               "  - {name: lat, kind: latency, metric: crew_task_seconds, threshold: 60, objective: 0.9, window: 28d}")
    pa = _system(tmp_path, cfg)
    _history(pa, T - 10 * DAY, T - 3 * DAY, 50)
    recs = [{"metric": "crew_cost_usd", "value": 0.25, "timestamp": T - 8 * DAY + i * 60.0, "labels": {"agent": "a"}}
            for i in range(100)]
    pa.record_many(recs)
    before = {r.name: (r.events, r.bad, r.achieved) for r in slo_statuses(pa.store, pa.config, T - 2 * DAY, window=9 * DAY)}
    rep = pa.store.apply_retention(T, retention=30 * DAY, downsample_after=4 * DAY, step=300.0)
    assert rep.downsampled > 0
    after = {r.name: (r.events, r.bad, r.achieved) for r in slo_statuses(pa.store, pa.config, T - 2 * DAY, window=9 * DAY)}
    assert after["task-success"] == pytest.approx(before["task-success"])
    assert after["cost"][1] == pytest.approx(25.0) and before["cost"][1] == pytest.approx(25.0)
    assert after["lat"][0] == before["lat"][0] and after["lat"][2] == pytest.approx(1.0)


def test_split_label_missing_on_some_series(tmp_path: Path) -> None:
    pa = _system(tmp_path, _cfg(LAT.replace("window: 1h}", "window: 1h, by: [agent]}")))
    _rec(pa, "crew_task_seconds", T - 60, 10.0, agent="a")
    _rec(pa, "crew_task_seconds", T - 60, 90.0, crew="c")  # no agent label
    rows = {tuple(r.labels.items()): r.status for r in slo_statuses(pa.store, pa.config, T)}
    assert rows == {(("agent", "a"),): "ok", (): "breached"}
