"""Replicas and leadership: which daemons share this store, and which one leads.

SQL only (the layer rule); written in the SQL both backends speak (`?` parameters,
`ON CONFLICT … DO UPDATE`, `RETURNING`), so the same queries run on SQLite and PostgreSQL.

Two tables:

- `replicas`: one row per running daemon (`perf-alerts run`), upserted by its heartbeat every
  cycle; a cleanly stopped daemon deletes its row, a killed one leaves it behind, stale.
- `leases`: one row per named lease (the daemons use `leader`). The holder keeps it by renewing
  it before `expires_at`; anyone may take it once it has run out (or once its holder gave it up,
  `holder` NULL). `term` is a fencing number: it grows by one on every change of holder (never
  on a renewal), so a step done "as leader of term N" can be told apart from one of a later term.

Time is wall-clock Unix seconds (`time.time()`) passed in by the caller as `now`: the replicas
are separate processes, often on separate machines, and a lease must run out in real time even
when a demo or a test runs the alert clock elsewhere. Each replica judges expiry with its own
clock, so clock skew between machines eats into the lease: a replica whose clock runs δ ahead
sees a lease run out δ early. Keep the machines NTP-synchronised, with skew far below the
lease's margin (the daemons renew every third of the lease; a lease is at least a few seconds).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

# DDL in the common dialect: TEXT / REAL / INTEGER columns (the PostgreSQL backend maps REAL to
# DOUBLE PRECISION and INTEGER to BIGINT), no SQLite-only clauses.
CLUSTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
    id            TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    pid_scope     TEXT,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    http_url      TEXT,
    version       TEXT,
    duties        TEXT
);
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    expires_at  REAL NOT NULL,
    held_since  REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    term        INTEGER NOT NULL
);
"""

_REPLICA_COLS = "id, host, pid, pid_scope, started_at, heartbeat_at, http_url, version, duties"
_LEASE_COLS = "name, holder, expires_at, held_since, renewed_at, term"


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """A daemon sharing this store (a row of `replicas`).

    `pid_scope`: what makes `pid` meaningful (host and PID namespace), so a replica can tell that a
    holder on its own machine has died; None when unknown. `duties`: what the replica does
    (`http`, `deliver`, `lead`).
    """

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    http_url: str | None = None
    version: str | None = None
    duties: tuple[str, ...] = ()
    pid_scope: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """A named lease (a row of `leases`): who holds it (None: given up), until when, since when,
    and its fencing term."""

    name: str
    holder: str | None
    expires_at: float
    held_since: float
    renewed_at: float
    term: int

    def held_at(self, now: float) -> bool:
        """Whether somebody holds it at `now` (it has a holder and has not run out)."""
        return self.holder is not None and now < self.expires_at


def _replica(r: Sequence[Any]) -> ReplicaRecord:
    duties = tuple(d for d in (r[8] or "").split(",") if d)
    return ReplicaRecord(id=r[0], host=r[1], pid=int(r[2]), pid_scope=r[3], started_at=float(r[4]),
                         heartbeat_at=float(r[5]), http_url=r[6], version=r[7], duties=duties)


def _lease(r: Sequence[Any]) -> LeaseRecord:
    return LeaseRecord(name=r[0], holder=r[1], expires_at=float(r[2]), held_since=float(r[3]),
                       renewed_at=float(r[4]), term=int(r[5]))


class ClusterQueries:
    """Mixin of `Store` (uses its `con` for reads and `_write()` for transactions).

    Every write here is one statement, atomic by itself (SQLite's write lock, PostgreSQL's row
    locks), so none takes the exclusive transaction: a lease renewal must not wait behind a long
    evaluation holding it, or the lease would run out while its holder is busy and alive.
    """

    if TYPE_CHECKING:  # provided by Store (each backend's connection: execute/executemany/fetch*)
        @property
        def con(self) -> Any: ...

        def _write(self, exclusive: bool = True) -> AbstractContextManager[Any]: ...

    # -- replicas ------------------------------------------------------------------------------
    def heartbeat(self, replica: ReplicaRecord, now: float) -> None:
        """Insert or refresh `replica`'s row: its heartbeat is `now` (wall clock), and its HTTP
        address, version and duties are what it says now (its identity and start time stay)."""
        with self._write(exclusive=False) as con:
            con.execute(
                f"INSERT INTO replicas ({_REPLICA_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, http_url = excluded.http_url, "
                "version = excluded.version, duties = excluded.duties",
                (replica.id, replica.host, int(replica.pid), replica.pid_scope, float(replica.started_at), float(now),
                 replica.http_url, replica.version, ",".join(replica.duties)))

    def list_replicas(self) -> list[ReplicaRecord]:
        """Every replica with a row, oldest first."""
        rows = self.con.execute(f"SELECT {_REPLICA_COLS} FROM replicas ORDER BY started_at, id").fetchall()
        return [_replica(r) for r in rows]

    def remove_replica(self, replica_id: str) -> bool:
        """Delete a replica's row (a clean stop); True if there was one."""
        with self._write(exclusive=False) as con:
            rows = con.execute("DELETE FROM replicas WHERE id = ? RETURNING id", (replica_id,)).fetchall()
        return bool(rows)

    def forget_replicas(self, heartbeat_before: float) -> int:
        """Delete the rows of replicas silent since before `heartbeat_before` (killed long ago); how many."""
        with self._write(exclusive=False) as con:
            rows = con.execute("DELETE FROM replicas WHERE heartbeat_at < ? RETURNING id",
                               (float(heartbeat_before),)).fetchall()
        return len(rows)

    # -- leases --------------------------------------------------------------------------------
    def claim_lease(self, name: str, holder: str, ttl: float, now: float,
                    dead_holder: str | None = None) -> LeaseRecord | None:
        """Take or renew the lease `name` for `holder` until `now + ttl`; the lease as it now is,
        or None if somebody else holds it.

        Taken when nobody has it yet, when it ran out (`expires_at <= now`), when its holder gave
        it up, or when its holder is `dead_holder` (the caller knows that process is gone);
        renewed when `holder` has it (even if it ran out meanwhile: nobody took it). `term`
        grows by one whenever the holder changes; `held_since` is when the current holder got it.
        One statement, atomic on both backends (SQLite's write lock; PostgreSQL's row lock, with
        the `WHERE` judged against the row as the winner of a race left it).
        """
        if not ttl > 0:
            raise ValueError(f"lease ttl must be > 0, got {ttl!r}")
        until = float(now) + float(ttl)
        with self._write(exclusive=False) as con:
            row = con.execute(
                f"INSERT INTO leases ({_LEASE_COLS}) VALUES (?, ?, ?, ?, ?, 1) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at, "
                "renewed_at = excluded.renewed_at, "
                "held_since = CASE WHEN leases.holder = excluded.holder THEN leases.held_since "
                "ELSE excluded.held_since END, "
                "term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END "
                "WHERE leases.holder IS NULL OR leases.holder = excluded.holder OR leases.expires_at <= ? "
                "OR leases.holder = ? "
                f"RETURNING {_LEASE_COLS}",
                (name, holder, until, float(now), float(now), float(now), dead_holder)).fetchone()
        return None if row is None else _lease(row)

    def try_lead(self, name: str, holder: str, ttl: float, now: float, dead_holder: str | None = None) -> bool:
        """`claim_lease` as a yes/no: does `holder` hold the lease `name` until `now + ttl`?"""
        return self.claim_lease(name, holder, ttl, now, dead_holder) is not None

    def resign(self, name: str, holder: str, now: float) -> bool:
        """Give the lease up at once, if `holder` has it (a clean stop), so another replica can take
        it without waiting for it to run out; True if it was held by `holder`. The term is kept:
        the next holder, whoever it is, gets the next one."""
        with self._write(exclusive=False) as con:
            rows = con.execute(
                "UPDATE leases SET holder = NULL, expires_at = ?, renewed_at = ? WHERE name = ? AND holder = ? "
                "RETURNING name", (float(now), float(now), name, holder)).fetchall()
        return bool(rows)

    def lease(self, name: str) -> LeaseRecord | None:
        """The lease `name` as stored (None: never taken)."""
        row = self.con.execute(f"SELECT {_LEASE_COLS} FROM leases WHERE name = ?", (name,)).fetchone()
        return None if row is None else _lease(row)


__all__ = ["CLUSTER_SCHEMA", "ClusterQueries", "LeaseRecord", "ReplicaRecord"]
