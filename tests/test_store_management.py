"""The management queries of the store (schedules, policy state, action audit, silences, alert acks).

These statements used to live in manage/ and notify/; they are tested here on the store
itself, with the typed rows they return, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from perf_alerts.model import Alert, AlertState, Severity
from perf_alerts.store.management import AuditRecord, PolicyState, ScheduleState, SilenceRecord

T0 = 1_800_000_000.0


@pytest.fixture
def store(make_store: Any) -> Any:
    """A fresh store on each backend (conftest's store_url: sqlite, postgresql)."""
    return make_store()


def _alert(fp: str, rule: str, state: AlertState) -> Alert:
    return Alert(fingerprint=fp, rule=rule, state=state, severity=Severity.WARNING, labels={"alertname": rule},
                 annotations={}, value=1.0, threshold=0.5, window="5m", active_since=T0, last_eval_at=T0)


def test_schedules_are_remembered_once_and_runs_counted(store: Any) -> None:
    assert store.schedule_states() == {}
    store.ensure_schedules(["a", "b"], T0)
    store.ensure_schedules(["a", "c"], T0 + 60)  # a known schedule keeps its first_seen
    st = store.schedule_states()
    assert st["a"] == ScheduleState("a", T0)
    assert st["c"].first_seen == T0 + 60
    store.record_schedule_run("a", at=T0 + 61, slot=T0 + 60, status="ok", result={"n": 1},
                              seconds=0.25)
    store.record_schedule_run("a", at=T0 + 121, slot=T0 + 120, status="error", result={"error": "boom"},
                              seconds=0.5)
    a = store.schedule_states()["a"]
    assert (a.last_run, a.last_slot, a.last_status, a.last_seconds, a.runs) == (T0 + 121, T0 + 120, "error", 0.5, 2)
    assert a.last_result == {"error": "boom"}
    assert store.schedule_states()["b"].runs == 0


def test_schedule_result_that_is_not_json_is_stored_as_text(store: Any) -> None:
    store.ensure_schedules(["a"], T0)
    store.record_schedule_run("a", at=T0, slot=T0, status="ok", result={"when": object()}, seconds=0.0)
    assert store.schedule_states()["a"].last_result["when"].startswith("<object object")


def test_policy_state_matches_and_fires(store: Any) -> None:
    store.save_policy_state("p", T0, None, {"health": 40.0})
    assert store.policy_states() == {"p": PolicyState("p", T0, None, 0, {"health": 40.0})}
    store.save_policy_state("p", T0 + 60, T0 + 60, {"health": 30.0})
    store.save_policy_state("p", T0 + 120, T0 + 120, {"health": None})
    assert store.policy_states()["p"] == PolicyState("p", T0 + 120, T0 + 120, 2, {"health": None})


def test_action_audit_rows_and_verification(store: Any) -> None:
    kw: dict[str, Any] = dict(policy="p", action="python", target="mod:fn", who="policy:p", result="ok")
    a = store.add_action_audit(at=T0, dry_run=False, detail_json='{"x": 1}', metric="m", before_value=2.0,
                               verify_due_at=T0 + 600, verification="pending", **kw)
    b = store.add_action_audit(at=T0 + 1, dry_run=True, detail_json="{}", **{**kw, "policy": "q"})
    assert b > a > 0
    rows = store.action_audit()
    assert [r.id for r in rows] == [b, a]  # newest first
    assert rows[1] == AuditRecord(a, "p", "python", "mod:fn", "policy:p", T0, False, "ok", {"x": 1}, "m", 2.0, None,
                                  T0 + 600, "pending")
    assert rows[0].dry_run is True and rows[0].verification is None
    assert [r.id for r in store.action_audit(policy="q")] == [b]
    assert [r.id for r in store.action_audit(limit=1)] == [b]

    assert store.due_verifications(T0 + 599) == []
    [due] = store.due_verifications(T0 + 600)
    assert due.id == a
    assert store.set_verification(a, 1.0, "improved") is True
    assert store.set_verification(a, 3.0, "worse") is False  # settled once: a second process changes nothing
    [row] = store.action_audit(policy="p")
    assert (row.after_value, row.verification) == (1.0, "improved")
    assert store.due_verifications(T0 + 9999) == []


def test_silences_round_trip_and_end(store: Any) -> None:
    m = [{"label": "agent", "op": "=", "value": "researcher"}]
    store.insert_silence(SilenceRecord("bb", m, T0 + 10, T0 + 100, "bob", "later", T0 + 1))
    store.insert_silence(SilenceRecord("aa", m, T0, T0 + 100, "alice", "now", T0))
    assert [s.id for s in store.silences()] == ["aa", "bb"]  # oldest first
    assert store.silences()[0] == SilenceRecord("aa", m, T0, T0 + 100, "alice", "now", T0)
    assert store.end_silence("aa", T0 + 50) is True
    assert store.end_silence("aa", T0 + 60) is False  # already over by then: its end stays
    assert store.silences()[0].ends_at == T0 + 50


def test_live_alert_rules_and_acknowledge(store: Any) -> None:
    with store.transaction() as con:
        store.save_alerts([_alert("f1", "R1", AlertState.FIRING), _alert("f2", "R2", AlertState.PENDING),
                           _alert("f3", "R3", AlertState.RESOLVED)], con)
    assert store.live_alert_rules() == {"R1", "R2"}
    with store.transaction() as con:
        assert store.live_alert_rules(con) == {"R1", "R2"}
        assert store.acknowledge_alert("f1", T0 + 5, "alice", con) is True
    with store.transaction() as con:
        assert store.acknowledge_alert("f1", T0 + 9, "bob", con) is False  # the first acknowledgement wins
        assert store.acknowledge_alert("nope", T0 + 9, "bob", con) is False
    a = store.get_alert("f1")
    assert (a.acknowledged_at, a.acknowledged_by) == (T0 + 5, "alice")


def test_expiring_a_silence_that_has_not_started_ends_it_at_once(make_store: Any) -> None:
    # silence add --start makes pending silences: expiring one starts and ends it now (Alertmanager
    # sets StartsAt = EndsAt = now), never ending before it starts and still showing as pending
    from perf_alerts.notify.silence import add_silence, expire_silence, list_silences

    store = make_store()
    now = 1_000_000.0
    s = add_silence(store, ["agent=researcher"], now + 3600, now + 7200, "me", "maintenance", now)
    back = expire_silence(store, s.id, now)
    got = next(x for x in list_silences(store) if x.id == s.id)
    assert got.starts_at == got.ends_at == now == back.ends_at == back.starts_at
    assert got.state(now + 1) == "expired"
