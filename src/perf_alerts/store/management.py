"""SQL for management state: schedules, policy state, the action audit log, silences, alert acks.

A mixin of `Store` (see `store/store.py`): every statement that touches these tables lives
here, so the modules in `manage/` and `notify/` never write SQL themselves and a second
backend implements the same methods in its own module. Rows come back as the frozen
dataclasses below, JSON columns already decoded.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from perf_alerts.store.backend import Connection


__all__ = ["AuditRecord", "ManagementQueries", "PolicyState", "ScheduleState", "SilenceRecord"]


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store remembers of one schedule (a row of `schedules`)."""

    name: str
    first_seen: float
    last_run: float | None = None
    last_slot: float | None = None
    last_status: str | None = None
    last_result: dict[str, Any] | None = None
    last_seconds: float | None = None
    runs: int = 0


@dataclass(frozen=True, slots=True)
class PolicyState:
    """When a policy last matched and last fired (a row of `policy_state`)."""

    name: str
    last_matched: float | None = None
    last_fired: float | None = None
    fired_count: int = 0
    last_values: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One executed (or dry-run) action (a row of `action_audit`); fields in the table's order."""

    id: int
    policy: str
    action: str
    target: str | None
    who: str
    at: float
    dry_run: bool
    result: str
    detail: dict[str, Any]
    metric: str | None = None
    before_value: float | None = None
    after_value: float | None = None
    verify_due_at: float | None = None
    verification: str | None = None


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """A silence as stored: matchers as plain `{"label", "op", "value"}` mappings."""

    id: str
    matchers: list[dict[str, Any]]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float


_SCHEDULE_COLS = ("name", "first_seen", "last_run", "last_slot", "last_status", "last_result", "last_seconds", "runs")
_POLICY_COLS = ("name", "last_matched", "last_fired", "fired_count", "last_values")
_AUDIT_COLS = ("id", "policy", "action", "target", "who", "at", "dry_run", "result", "detail", "metric",
               "before_value", "after_value", "verify_due_at", "verification")
_SILENCE_COLS = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at")


def _audit(row: tuple[Any, ...]) -> AuditRecord:
    d = dict(zip(_AUDIT_COLS, row))
    d["dry_run"] = bool(d["dry_run"])
    d["detail"] = json.loads(d["detail"] or "{}")
    return AuditRecord(**d)


class ManagementQueries:
    """Mixed into `Store`; uses `self.con` and `self.transaction()`."""

    if TYPE_CHECKING:  # provided by Store
        @property
        def con(self) -> Connection: ...

        def transaction(self) -> AbstractContextManager[Connection]: ...

    # -- schedules ----------------------------------------------------------------------
    def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule the store has seen, by name."""
        rows = self.con.execute(f"SELECT {', '.join(_SCHEDULE_COLS)} FROM schedules").fetchall()
        out: dict[str, ScheduleState] = {}
        for r in rows:
            d = dict(zip(_SCHEDULE_COLS, r))
            d["last_result"] = json.loads(d["last_result"]) if d["last_result"] else None
            d["runs"] = int(d["runs"] or 0)
            out[d["name"]] = ScheduleState(**d)
        return out

    def ensure_schedules(self, names: Iterable[str], now: float) -> None:
        """Remember schedules not seen before as first seen `now` (known ones keep their state)."""
        with self.transaction() as con:
            con.executemany("INSERT INTO schedules (name, first_seen) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                            [(n, now) for n in names])

    def claim_schedule_slot(self, name: str, slot: float, owner: str, wall_now: float, lease: float) -> bool:
        """Take the run of `slot` for `owner` (until `wall_now + lease`); False when it ran already or
        another process (another replica, a cron `run --once`) is running it under a live claim.
        A claim whose process died runs out, so a slot is neither run twice nor lost."""
        with self.transaction() as con:
            cur = con.execute(
                "UPDATE schedules SET claimed_slot = ?, claimed_by = ?, claim_until = ? WHERE name = ? "
                "AND (last_slot IS NULL OR last_slot < ?) "
                "AND (claimed_slot IS NULL OR claimed_slot < ? OR claim_until < ? OR claimed_by = ?)",
                (slot, owner, wall_now + lease, name, slot - 1e-6, slot - 1e-6, wall_now, owner))
            return cur.rowcount == 1

    def record_schedule_run(self, name: str, *, at: float, slot: float, status: str, result: dict[str, Any],
                            seconds: float) -> None:
        """One run of a schedule (for `slot`) finished at `at`; `result` is stored as JSON."""
        with self.transaction() as con:
            con.execute("UPDATE schedules SET last_run = ?, last_slot = ?, last_status = ?, last_result = ?, "
                        "last_seconds = ?, runs = runs + 1, claimed_slot = NULL, claimed_by = NULL, claim_until = NULL "
                        "WHERE name = ?",
                        (at, slot, status, json.dumps(result, default=str), seconds, name))

    # -- policy state --------------------------------------------------------------------
    def policy_states(self) -> dict[str, PolicyState]:
        """Every policy the store has seen, by name."""
        rows = self.con.execute(f"SELECT {', '.join(_POLICY_COLS)} FROM policy_state").fetchall()
        out: dict[str, PolicyState] = {}
        for name, matched, fired, count, values in rows:
            out[name] = PolicyState(name, matched, fired, int(count or 0), json.loads(values) if values else None)
        return out

    def save_policy_state(self, name: str, matched_at: float, fired_at: float | None,
                          values: dict[str, Any]) -> None:
        """The policy matched at `matched_at` with `values`; it also fired (its actions ran) when `fired_at`."""
        with self.transaction() as con:
            con.execute("INSERT INTO policy_state (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
            con.execute("UPDATE policy_state SET last_matched = ?, last_values = ? WHERE name = ?",
                        (matched_at, json.dumps(values, default=str), name))
            if fired_at is not None:
                con.execute("UPDATE policy_state SET last_fired = ?, fired_count = fired_count + 1 WHERE name = ?",
                            (fired_at, name))

    # -- the action audit log -------------------------------------------------------------
    def add_action_audit(self, *, policy: str, action: str, target: str | None, who: str, at: float, dry_run: bool,
                         result: str, detail_json: str, metric: str | None = None, before_value: float | None = None,
                         verify_due_at: float | None = None, verification: str | None = None) -> int:
        """Append one audit row; returns its id. `detail_json` is JSON text (already redacted by the caller)."""
        with self.transaction() as con:
            cur = con.execute(
                "INSERT INTO action_audit (policy, action, target, who, at, dry_run, result, detail, metric, "
                "before_value, verify_due_at, verification) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (policy, action, target, who, at, int(dry_run), result, detail_json, metric, before_value,
                 verify_due_at, verification))
            return int(cur.fetchone()[0])

    def due_verifications(self, now: float) -> list[AuditRecord]:
        """Audit rows whose verification is pending and due at or before `now`, oldest first."""
        rows = self.con.execute(
            f"SELECT {', '.join(_AUDIT_COLS)} FROM action_audit "
            "WHERE verification = 'pending' AND verify_due_at <= ? ORDER BY id", (now,)).fetchall()
        return [_audit(r) for r in rows]

    def set_verification(self, audit_id: int, after_value: float | None, verification: str) -> bool:
        """Settle a pending verification; False when it was no longer pending (another process settled it)."""
        with self.transaction() as con:
            cur = con.execute("UPDATE action_audit SET after_value = ?, verification = ? "
                              "WHERE id = ? AND verification = 'pending'", (after_value, verification, audit_id))
            return cur.rowcount > 0

    def action_audit(self, limit: int = 100, policy: str | None = None) -> list[AuditRecord]:
        """The newest `limit` audit rows (of one policy), newest first."""
        sql = f"SELECT {', '.join(_AUDIT_COLS)} FROM action_audit"
        args: list[Any] = []
        if policy:
            sql += " WHERE policy = ?"
            args.append(policy)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_audit(r) for r in self.con.execute(sql, args)]

    # -- silences ---------------------------------------------------------------------------
    def insert_silence(self, s: SilenceRecord) -> None:
        with self.transaction() as con:
            con.execute(
                f"INSERT INTO silences ({', '.join(_SILENCE_COLS)}) VALUES ({', '.join('?' * len(_SILENCE_COLS))})",
                (s.id, json.dumps(s.matchers), s.starts_at, s.ends_at, s.created_by, s.comment, s.created_at))

    def silences(self) -> list[SilenceRecord]:
        """Every silence (pending, active and expired), oldest first."""
        rows = self.con.execute(f"SELECT {', '.join(_SILENCE_COLS)} FROM silences ORDER BY created_at").fetchall()
        return [SilenceRecord(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def end_silence(self, silence_id: str, at: float) -> bool:
        """End a silence at `at` unless it already ended by then; True when it changed. A silence
        that had not started yet starts and ends at `at` (as Alertmanager expires a pending one),
        never ending before it starts."""
        with self.transaction() as con:
            cur = con.execute("UPDATE silences SET ends_at = ?, starts_at = CASE WHEN starts_at > ? THEN ? "
                              "ELSE starts_at END WHERE id = ? AND ends_at > ?", (at, at, at, silence_id, at))
            return cur.rowcount > 0

    # -- alerts: orphans and acknowledgements -------------------------------------------------
    def live_alert_rules(self, con: Connection | None = None) -> set[str]:
        """Names of the rules that have a firing or pending alert."""
        c = con or self.con
        return {r for (r,) in c.execute("SELECT DISTINCT rule FROM alerts WHERE state IN ('firing', 'pending')")}

    def acknowledge_alert(self, fingerprint: str, at: float, by: str, con: Connection) -> bool:
        """Mark an alert acknowledged (inside the caller's transaction); an earlier acknowledgement wins.

        True when this call acknowledged it, False when it already was (or does not exist).
        """
        cur = con.execute("UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE fingerprint = ? "
                          "AND acknowledged_at IS NULL", (at, by, fingerprint))
        return cur.rowcount > 0
