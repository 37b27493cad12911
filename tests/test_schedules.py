"""Schedules with an injected clock: UTC-aligned slots, once per slot, downtime catch-up runs once,
overdue, daily/weekly times, persistence across restarts, the jobs, and config errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from perf_alerts.config import ConfigError, parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.schedules import IMPLICIT_NAME, Scheduler
import json
from perf_alerts.timeutil import ManualClock, parse_timestamp

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a Friday; a multiple of 15 min, 1 h and 4 h

RULES = """
rules:
  - {name: CritLatency, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 30,
     severity: critical, group: critical}
  - {name: SlowHourly, type: threshold, metric: lat, aggregate: last, window: 10m, op: ">", value: 10,
     severity: warning, group: hourly}
receivers:
  - {name: ops, console: {}}
  - {name: leadership, file: {path: "LEADERSHIP"}}
route:
  receiver: ops
  group_wait: 0s
  routes:
    - {matchers: {kind: executive_summary}, receiver: leadership}
"""


def make(tmp_path: Path, schedules: str, start: float = T0, rules: str = RULES) -> tuple[PerfAlerts, ManualClock]:
    text = textwrap.dedent(rules).replace("LEADERSHIP", str(tmp_path / "leadership.jsonl")) + textwrap.dedent(schedules)
    cfg = parse_config(text, "alerting.yaml", env={})
    clock = ManualClock(start)
    return PerfAlerts(cfg, db=tmp_path / "s.db", clock=clock), clock


def outbox(s: PerfAlerts) -> list[dict[str, Any]]:
    rows = s.store.con.execute("SELECT receiver, kind, body, state FROM notifications ORDER BY id").fetchall()
    return [{"receiver": r, "kind": k, "body": json.loads(b), "state": st} for r, k, b, st in rows]


def names(runs: list[Any]) -> list[str]:
    return [r.schedule for r in runs]


def status_of(sch: Scheduler, name: str) -> dict[str, Any]:
    return next(x for x in sch.status() if x["name"] == name)


HIGH = """
schedules:
  - {name: crit, every: high, job: evaluate, group: critical}
"""


def test_interval_schedule_runs_once_per_utc_aligned_slot(tmp_path: Path) -> None:
    s, clock = make(tmp_path, HIGH)
    sch = Scheduler(s)
    assert names(sch.tick()) == ["crit"]  # a new interval schedule runs at once
    clock.advance("1m")
    assert sch.tick() == []
    clock.advance("13m")  # 08:14
    assert sch.tick() == []
    clock.advance("1m")  # 08:15: the next slot
    runs = sch.tick()
    assert names(runs) == ["crit"] and runs[0].slot == T0 + 900 and runs[0].missed_slots == 0
    st = status_of(sch, "crit")
    assert st["runs"] == 2 and st["last_status"] == "ok" and st["next_run"] == "2027-01-15T08:30:00Z"
    assert st["overdue"] is False


def test_downtime_catch_up_runs_once_not_once_per_missed_slot(tmp_path: Path) -> None:
    s, clock = make(tmp_path, HIGH)
    sch = Scheduler(s)
    sch.tick()
    clock.advance("5h7m")  # the daemon was down: 20 slots passed
    st = status_of(sch, "crit")
    assert st["overdue"] is True and st["next_run"] == "2027-01-15T08:15:00Z"
    runs = sch.tick()
    assert len(runs) == 1 and runs[0].missed_slots == 19 and runs[0].slot == T0 + 5 * 3600
    assert sch.tick() == []  # not again in the same slot
    st = status_of(sch, "crit")
    assert st["overdue"] is False and st["runs"] == 2 and st["next_run"] == "2027-01-15T13:15:00Z"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    s, clock = make(tmp_path, HIGH)
    Scheduler(s).tick()
    clock.advance("5m")
    s2 = PerfAlerts(s.config, db=tmp_path / "s.db", clock=clock)  # a new process on the same store
    sch2 = Scheduler(s2)
    assert sch2.tick() == []  # the 08:00 slot already ran in the previous process
    assert status_of(sch2, "crit")["last_run"] == "2027-01-15T08:00:00Z"
    clock.advance("10m")
    assert names(sch2.tick()) == ["crit"]


def test_daily_waits_for_its_time_of_day(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: review, every: daily, at: "09:30", job: optimization_review}
    """)
    sch = Scheduler(s)
    assert sch.tick() == []  # 08:00: a new daily job waits for its slot (no report at every deployment)
    assert status_of(sch, "review")["next_run"] == "2027-01-15T09:30:00Z"
    clock.set(parse_timestamp("2027-01-15T09:29:59Z"))
    assert sch.tick() == []
    clock.set(parse_timestamp("2027-01-15T09:30:20Z"))
    runs = sch.tick()
    assert names(runs) == ["review"] and runs[0].status == "ok"
    assert status_of(sch, "review")["next_run"] == "2027-01-16T09:30:00Z"
    clock.set(parse_timestamp("2027-01-19T12:00:00Z"))  # three days down: one catch-up run
    runs = sch.tick()
    assert len(runs) == 1 and runs[0].missed_slots == 3
    assert sch.tick() == []


def test_weekly_on_a_weekday(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: weekly, every: weekly, weekday: mon, at: "09:00", job: summary}
    """)
    sch = Scheduler(s)
    assert sch.tick() == []
    assert status_of(sch, "weekly")["next_run"] == "2027-01-18T09:00:00Z"  # the Monday after Friday the 15th
    clock.set(parse_timestamp("2027-01-18T09:00:00Z"))
    assert names(sch.tick()) == ["weekly"]
    assert status_of(sch, "weekly")["next_run"] == "2027-01-25T09:00:00Z"


def test_evaluate_job_runs_only_its_rule_group(tmp_path: Path) -> None:
    s, clock = make(tmp_path, HIGH)
    s.record("lat", 50.0, {"agent": "a"}, ts=T0 - 10)
    runs = Scheduler(s).tick()
    assert runs[0].result["rules"] == 1 and runs[0].result["firing"] == 1
    assert [a.rule for a in s.alerts()] == ["CritLatency"]  # SlowHourly (group hourly) was not evaluated


def test_summary_job_enqueues_for_leadership_when_send(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: weekly, every: 7d, job: summary, period: 7d, send: true}
      - {name: quiet, every: 7d, job: summary}
    """)
    runs = {r.schedule: r for r in Scheduler(s).tick()}
    assert runs["weekly"].status == "ok" and runs["weekly"].result["notifications"]
    assert "notifications" not in runs["quiet"].result
    ns = outbox(s)
    assert [(n["receiver"], n["kind"]) for n in ns] == [("leadership", "executive_summary")]
    assert ns[0]["body"]["title"].startswith("Executive performance summary")


def test_summary_job_queues_the_summary_with_its_chart(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: weekly, every: 7d, job: summary, send: true}
    """)
    runs = Scheduler(s).tick()
    assert runs[0].status == "ok", runs[0].result
    [n] = outbox(s)
    assert n["kind"] == "executive_summary" and n["body"]["title"].startswith("Executive performance summary")
    assert [f["name"] for f in n["body"]["files"]] == ["executive-summary.png"]
    assert bytes.fromhex(n["body"]["files"][0]["hex"])[:4] == b"\x89PNG"


def test_review_and_prediction_jobs_on_an_empty_store(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: review, every: 1h, job: optimization_review, send: true}
      - {name: predict, every: 1h, job: predictive_analysis, send: true}
    """)
    runs = {r.schedule: r for r in Scheduler(s).tick()}
    assert runs["review"].status == "ok" and runs["review"].result["recommendations"] == 0
    assert runs["predict"].status == "ok" and runs["predict"].result["breaches"] == 0
    assert outbox(s) == []  # nothing worth a message


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: crit, every: high, job: evaluate, group: critical}
      - {name: predict, every: high, job: predictive_analysis}
    """)

    def boom(**_: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(s, "evaluate", boom)
    sch = Scheduler(s)
    runs = {r.schedule: r for r in sch.tick()}
    assert runs["crit"].status == "error" and "disk on fire" in runs["crit"].result["error"]
    assert runs["predict"].status == "ok"
    assert sch.tick() == []  # a failed slot is not retried in a hot loop
    assert status_of(sch, "crit")["last_status"] == "error"


def test_no_schedules_means_every_rule_continuously(tmp_path: Path) -> None:
    s, clock = make(tmp_path, "")
    sch = Scheduler(s)
    assert [x["name"] for x in sch.status()] == [IMPLICIT_NAME]
    runs = sch.tick()
    assert runs[0].result["rules"] == 2
    clock.advance(s.config.global_.evaluation_interval)
    assert len(sch.tick()) == 1
    assert sch.uncovered_groups() == []


def test_uncovered_rule_groups_are_reported(tmp_path: Path) -> None:
    s, _ = make(tmp_path, HIGH)
    assert Scheduler(s).uncovered_groups() == ["hourly"]


def test_disabled_schedule_never_runs(tmp_path: Path) -> None:
    s, clock = make(tmp_path, """
    schedules:
      - {name: crit, every: high, job: evaluate, group: critical, enabled: false}
    """)
    sch = Scheduler(s)
    assert sch.tick() == []
    assert status_of(sch, "crit")["next_run"] is None and status_of(sch, "crit")["overdue"] is False


@pytest.mark.parametrize("entry, needle", [
    ("{name: x, every: hourly, job: evaluate}", "unknown schedule 'hourly'"),
    ("{name: x, every: high, job: evaluation}", "unknown job 'evaluation' (did you mean 'evaluate'?); valid: evaluate, summary, optimization_review, predictive_analysis"),
    ("{name: x, every: high, job: summary, at: '09:00'}", "`at` applies to daily and weekly"),
    ("{name: x, every: daily, at: '25:00', job: summary}", "invalid time of day"),
    ("{name: x, every: weekly, weekday: funday, job: summary}", "unknown weekday 'funday'"),
    ("{name: x, every: high, job: summary, group: critical}", "`group` applies to the evaluate job"),
    ("{name: x, every: high, jobb: summary}", "unknown field 'jobb'"),
])
def test_schedule_config_errors_name_the_line_and_the_valid_values(entry: str, needle: str) -> None:
    text = "global: {evaluation_interval: 1m}\nschedules:\n  - {name: ok, every: low}\n  - " + entry + "\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "alerting.yaml", env={})
    msg = str(e.value)
    assert msg.startswith("alerting.yaml:4: schedules[1]"), msg
    assert needle in msg
    if "unknown schedule" in needle:
        assert "valid: continuous (every evaluation_interval), high (15m), medium (1h), low (4h), daily, weekly or a duration" in msg


def test_duplicate_schedule_names_are_an_error() -> None:
    with pytest.raises(ConfigError, match="duplicate schedule name"):
        parse_config("schedules:\n  - {name: a, every: low}\n  - {name: a, every: high}\n", "c.yaml", env={})


def test_the_default_config_ships_the_useful_schedules() -> None:
    from perf_alerts.config import load_config, packaged_config_dir

    cfg = load_config(packaged_config_dir() / "alerting.yaml", env={})
    by = {(s.every, s.job, s.group) for s in cfg.schedules}
    assert ("continuous", "evaluate", "critical") in by  # frequent critical checks
    assert ("medium", "evaluate", "hourly") in by
    assert ("continuous", "evaluate", "default") in by
    assert ("daily", "optimization_review", None) in by
    weekly = [s for s in cfg.schedules if s.every == "weekly"]
    assert weekly and weekly[0].job == "summary" and weekly[0].send
    assert cfg.policies and any("firing.critical" in p.when for p in cfg.policies)


def test_a_slot_runs_once_across_processes_and_a_dead_runners_slot_is_not_lost(tmp_path: Path, monkeypatch: Any) -> None:
    """Two replicas (other owners) tick the same slot: one runs it; the other skips it while the
    first holds its claim, and runs it only when the first died mid-run and its claim ran out."""
    import perf_alerts.manage.schedules as schedules_mod

    s, _ = make(tmp_path, HIGH)
    a, b = Scheduler(s), Scheduler(s)
    monkeypatch.setattr(schedules_mod, "_owner", lambda: "host-a:1")
    assert names(a.tick(T0)) == ["crit"]
    monkeypatch.setattr(schedules_mod, "_owner", lambda: "host-b:2")
    assert names(b.tick(T0)) == []  # the slot ran already
    # the next slot: a claims it and dies before recording the run
    st = s.store.schedule_states()["crit"]
    slot = float(st.last_slot) + 900
    assert s.store.claim_schedule_slot("crit", slot, "host-a:1", 1000.0, 900.0)
    assert not s.store.claim_schedule_slot("crit", slot, "host-b:2", 1500.0, 900.0)  # a's claim is live
    assert s.store.claim_schedule_slot("crit", slot, "host-b:2", 2000.0, 900.0)  # a's claim ran out
    s.store.record_schedule_run("crit", at=slot, slot=slot, status="ok", result={}, seconds=0.1)
    assert not s.store.claim_schedule_slot("crit", slot, "host-a:1", 2100.0, 900.0)  # done: never again


def test_a_failing_rule_is_logged_when_it_starts_failing_not_every_cycle(tmp_path: Path, caplog: Any) -> None:
    import logging

    broken = RULES.replace("receivers:", "  - {name: FromProm, type: threshold, source: prometheus, query: up, op: '<', "
                                         "value: 1, group: critical}\nreceivers:", 1)
    s, clock = make(tmp_path, HIGH, rules="prometheus: {url: 'http://127.0.0.1:1', timeout: 1s}\n" + broken)
    sch = Scheduler(s)
    with caplog.at_level(logging.WARNING, logger="perf_alerts.schedules"):
        sch.tick()
        clock.advance("15m")
        sch.tick()
    lines = [r.getMessage() for r in caplog.records if "FromProm" in r.getMessage()]
    assert len(lines) == 1 and "not reachable" in lines[0], lines
