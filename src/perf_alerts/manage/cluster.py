"""Several daemons on one store: who they are, which one leads, and what `perf-alerts status` shows.

Every daemon (`perf-alerts run`) is a *replica*: it serves HTTP (ingest, dashboard, API) and
delivers notifications (the outbox is claimed row by row). Exactly one replica at a time, the
*leader*, evaluates rules, runs schedules, policies, escalation checks and retention. Leadership
is a lease row in the store (`store/cluster.py`): the leader renews it every cycle (and every
third of its lifetime), a follower tries to take it every cycle and when it runs out, so a dead
leader is replaced within `ttl` (1.5 evaluation intervals, at least `MIN_TTL`) plus a moment:
within two evaluation intervals (for intervals under 2 s, within `MIN_TTL` and a moment). A
leader stopped cleanly resigns: a follower takes over at its next attempt. A single daemon
takes the free lease at its first cycle and leads at once.

The lease's `term` (a fencing number) is reported with each result and in the status; the
leader-only steps are guarded by checking the lease before each step (and before each
scheduled job), not by fencing their writes with the term: a leader frozen for longer than
its lease in the middle of one step can still finish that one step after a successor started.

A replica that finds the lease held by a process on its own machine (same host and PID
namespace) that no longer exists takes it over at once instead of waiting for it to run out:
a daemon restarted after a crash (systemd, a test) leads again immediately, as a lone daemon did
before replicas existed.

Lease times are wall-clock seconds from the injected `clock` (default `SystemClock`), never
the system's alert clock (`PerfAlerts.clock`, which a demo or a test moves on its own): a lease
protects against processes dying, which happens in real time. See `store/cluster.py` on clock
skew between machines.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from perf_alerts.store.cluster import LeaseRecord, ReplicaRecord
from perf_alerts.timeutil import Clock, SystemClock, format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.store import Fence
    from perf_alerts.store import Store

log = logging.getLogger("perf_alerts.cluster")

LEADER_LEASE = "leader"
TTL_INTERVALS = 1.5  # a lease lasts 1.5 evaluation intervals ...
MIN_TTL = 3.0  # ... and at least this many seconds (a renewal must fit in it even on a busy machine)
STALE_INTERVALS = 3.0  # a replica silent for 3 evaluation intervals is shown stale ...
MIN_STALE = 10.0  # ... and at least this many seconds
FORGET_AFTER = 7 * 86400.0  # the row of a replica silent this long is deleted (by the leader)
DUTIES = ("http", "deliver")  # what every replica does; the leader adds "lead"


def lease_ttl(evaluation_interval: float) -> float:
    """How long a leader's lease lasts: 1.5 evaluation intervals, at least `MIN_TTL` seconds."""
    return max(TTL_INTERVALS * float(evaluation_interval), MIN_TTL)


def stale_after(evaluation_interval: float) -> float:
    """Heartbeat age after which a replica is shown stale (it missed about three cycles)."""
    return max(STALE_INTERVALS * float(evaluation_interval), MIN_STALE)


def _version() -> str:
    from perf_alerts import __version__

    return __version__


def pid_scope() -> str | None:
    """What a PID means here: this boot of this machine and (on Linux) the PID namespace; None when
    unknown (then no replica ever judges another's PID). Host names repeat (cloned VMs, containers
    on the host network) and every Linux host's first PID namespace has the same inode, so the
    kernel's boot id (random per boot) says whether a PID is ours to judge; two containers with
    PID 7 are two processes: their namespaces differ."""
    if os.name != "posix":
        return None
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = None
    if ns is None:
        if sys.platform.startswith("linux"):  # no /proc: cannot tell namespaces apart
            return None
        return None  # macOS and BSDs: no boot id to tell two machines of the same name apart
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        return None
    return f"{socket.gethostname()}|{boot}|{ns}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (POSIX; elsewhere assumed alive)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Replica:
    """This daemon's identity among the replicas of a store: `id` is `host:pid:random`."""

    id: str
    host: str
    pid: int
    started: float
    http_url: str | None = None
    version: str = ""
    pid_scope: str | None = None

    @classmethod
    def current(cls, clock: Clock | None = None, http_url: str | None = None) -> "Replica":
        """The identity of this process (a fresh random part each time: a restart is a new replica)."""
        host = socket.gethostname() or "localhost"
        pid = os.getpid()
        now = (clock or SystemClock()).now()
        return cls(id=f"{host}:{pid}:{secrets.token_hex(3)}", host=host, pid=pid, started=now, http_url=http_url,
                   version=_version(), pid_scope=pid_scope())

    def record(self, duties: tuple[str, ...] = DUTIES) -> ReplicaRecord:
        """The row this replica's heartbeat writes."""
        return ReplicaRecord(id=self.id, host=self.host, pid=self.pid, started_at=self.started,
                             heartbeat_at=self.started, http_url=self.http_url, version=self.version or None,
                             duties=tuple(duties), pid_scope=self.pid_scope)


@dataclass(frozen=True)
class LeadershipResult:
    """One leadership attempt (or check): does this replica lead, and did that just change?"""

    at: float  # wall clock of the attempt
    leader: bool  # this replica holds the lease now
    changed: bool  # it became leader, or stopped being leader, with this attempt
    holder: str | None  # the replica that leads (None: nobody holds a live lease)
    term: int | None  # the lease's fencing term (None: never taken)
    expires_at: float | None  # when the holder's lease runs out unless renewed

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "leader": self.leader, "changed": self.changed, "holder": self.holder,
                "term": self.term, "expires_at": iso(self.expires_at)}


class Leadership:
    """The daemon's side of the leader lease: heartbeat + try to lead, every cycle.

    Thread-safe (the daemon calls it from worker threads): one attempt at a time. It logs one
    line when this replica becomes leader and one when it loses leadership.
    """

    def __init__(self, store: "Store", replica: Replica, evaluation_interval: float, *,
                 clock: Clock | None = None, name: str = LEADER_LEASE) -> None:
        self.store = store
        self.replica = replica
        self.interval = float(evaluation_interval)
        self.ttl = lease_ttl(self.interval)
        self.clock: Clock = clock or SystemClock()
        self.name = name
        self._lock = threading.Lock()
        self._leading = False
        self._renewed_at: float | None = None  # when this replica last renewed (leading only)
        self._lease: LeaseRecord | None = None  # the lease as the last attempt saw it

    # ------------------------------------------------------------------ state
    @property
    def leading(self) -> bool:
        """This replica led at its last attempt and its lease has not run out since (no store access)."""
        lease = self._lease
        return self._leading and lease is not None and self.clock.now() < lease.expires_at

    @property
    def term(self) -> int | None:
        lease = self._lease
        return None if lease is None else lease.term

    def fence(self) -> "Fence | None":
        """What this replica's leader-only writes must still find in the store (None: not leading)."""
        from perf_alerts.store import Fence

        lease = self._lease
        if not self._leading or lease is None or lease.term is None:
            return None
        return Fence(self.name, self.replica.id, int(lease.term), self.clock.now)

    def set_http_url(self, url: str | None) -> None:
        """The address this replica serves HTTP on (known once the server started), for `status`."""
        self.replica = replace(self.replica, http_url=url)

    def next_attempt_at(self) -> float:
        """When this replica should next talk to the lease (wall clock): a leader a third of the
        lease after its last renewal; a follower when the holder's lease runs out unless renewed
        (at the latest one evaluation interval from now)."""
        now = self.clock.now()
        lease = self._lease
        if self._leading and self._renewed_at is not None:
            return self._renewed_at + self.ttl / 3
        if lease is not None and lease.holder is not None:
            return min(lease.expires_at, now + self.interval)
        return now + self.interval

    # ------------------------------------------------------------------ attempts
    def cycle(self) -> LeadershipResult:
        """What the daemon does at the start of every cycle: lead (take or renew the lease), then heartbeat."""
        res = self.attempt()
        self.store.heartbeat(self.replica.record(DUTIES + (("lead",) if res.leader else ())), self.clock.now())
        return res

    def attempt(self) -> LeadershipResult:
        """Take or renew the lease; logs a change of role."""
        with self._lock:
            now = self.clock.now()
            me = self.replica.id
            lease = self.store.claim_lease(self.name, me, self.ttl, now)
            if lease is not None and lease.holder == me and self.clock.now() - now > self.ttl / 3:
                # the store was slow to answer (an outage): the lease was written from a stale
                # `now`, maybe already run out; renew it from the time it is now
                now = self.clock.now()
                lease = self.store.claim_lease(self.name, me, self.ttl, now)
            if lease is None:
                current = self.store.lease(self.name)
                dead = self._dead_local_holder(current, now)
                if dead is not None:
                    lease = self.store.claim_lease(self.name, me, self.ttl, now, dead_holder=dead)
                    if lease is not None:
                        log.info("leadership: the leader %s is gone (its process no longer exists); taking over", dead)
                if lease is None:
                    lease = current
            leader = lease is not None and lease.holder == me
            was = self._leading
            self._leading = leader
            self._lease = lease
            self._renewed_at = now if leader else None
            if leader and not was:
                assert lease is not None
                log.info("leadership: this replica (%s) leads now (term %d); it evaluates rules and runs "
                         "schedules, policies, escalations and retention", me, lease.term)
            elif was and not leader:
                who = lease.holder if lease is not None and lease.held_at(now) else None
                log.warning("leadership: this replica (%s) lost leadership%s; it stops evaluating and "
                            "serves and delivers only", me, f" to {who} (term {lease.term})" if who and lease else "")
            holder = lease.holder if lease is not None and lease.held_at(now) else None
            return LeadershipResult(at=now, leader=leader, changed=leader != was, holder=holder,
                                    term=None if lease is None else lease.term,
                                    expires_at=None if lease is None else lease.expires_at)

    def still_leading(self) -> bool:
        """Checked before each leader-only step: True while this replica's lease is live. No store
        access while the last renewal is fresh (less than a third of the lease ago); renews it
        otherwise, and reports (and logs) a lost lease."""
        if not self._leading:
            return False
        renewed = self._renewed_at
        if renewed is not None and self.clock.now() < renewed + self.ttl / 3 and self.leading:
            return True
        return self.attempt().leader

    def resign(self) -> bool:
        """Give the lease up (a clean stop) so a follower takes over at once; True if this replica held it."""
        with self._lock:
            was = self._leading
            self._leading = False
            self._renewed_at = None
            gave_up = self.store.resign(self.name, self.replica.id, self.clock.now())
            if gave_up or was:
                log.info("leadership: this replica (%s) resigned; another replica can lead at once", self.replica.id)
            return gave_up

    def leave(self) -> None:
        """A clean stop: resign, and remove this replica's row (it is no replica any more)."""
        try:
            self.resign()
        finally:
            self.store.remove_replica(self.replica.id)

    def forget_silent(self) -> int:
        """Delete the rows of replicas silent for `FORGET_AFTER` (the leader, with retention)."""
        return self.store.forget_replicas(self.clock.now() - FORGET_AFTER)

    def _dead_local_holder(self, lease: LeaseRecord | None, now: float) -> str | None:
        """The lease's holder if it is a process of this machine (same PID scope) that no longer exists."""
        if lease is None or not lease.held_at(now) or lease.holder == self.replica.id or self.replica.pid_scope is None:
            return None
        for r in self.store.list_replicas():
            if r.id == lease.holder:
                if r.pid_scope == self.replica.pid_scope and r.pid != self.replica.pid and not pid_alive(r.pid):
                    return r.id
                return None
        return None


# ---------------------------------------------------------------------- status


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as `perf-alerts status` and the dashboard show it."""

    id: str
    host: str
    pid: int
    http_url: str | None
    version: str | None
    started_at: float
    heartbeat_at: float
    heartbeat_age: float  # seconds since its last heartbeat (negative: its clock is ahead of ours)
    leader: bool
    alive: bool  # heartbeat within `stale_after` (and, on this machine, its process exists); False: stale

    @property
    def state(self) -> str:
        return "alive" if self.alive else "stale"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "http": self.http_url, "version": self.version,
                "started_at": iso(self.started_at), "heartbeat_at": iso(self.heartbeat_at),
                "heartbeat_age": round(self.heartbeat_age, 3), "heartbeat_ago": format_duration(max(self.heartbeat_age, 0)),
                "leader": self.leader, "state": self.state}


@dataclass(frozen=True)
class ClusterStatus:
    """The replicas of a store and which one leads (`leader` None: no live lease)."""

    at: float
    replicas: list[ReplicaStatus] = field(default_factory=list)
    leader: str | None = None
    term: int | None = None
    leader_since: float | None = None
    lease_expires_at: float | None = None
    lease_ttl: float = 0.0
    stale_after: float = 0.0

    @property
    def alive(self) -> int:
        return sum(1 for r in self.replicas if r.alive)

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "leader": self.leader, "term": self.term, "leader_since": iso(self.leader_since),
                "lease_expires_at": iso(self.lease_expires_at), "lease_ttl": self.lease_ttl,
                "stale_after": self.stale_after, "alive": self.alive,
                "replicas": [r.to_dict() for r in self.replicas]}


def cluster_status(store: "Store", now: float, evaluation_interval: float = 60.0,
                   name: str = LEADER_LEASE) -> ClusterStatus:
    """Replicas with their heartbeat age, which one leads, and which are stale, at wall-clock `now`."""
    lease = store.lease(name)
    held = lease is not None and lease.held_at(now)
    leader = lease.holder if held and lease is not None else None
    limit = stale_after(evaluation_interval)
    here = pid_scope()

    def alive(r: ReplicaRecord) -> bool:  # a process of this machine that is gone is stale at once
        gone = here is not None and r.pid_scope == here and r.pid != os.getpid() and not pid_alive(r.pid)
        return now - r.heartbeat_at <= limit and not gone

    rows = [ReplicaStatus(id=r.id, host=r.host, pid=r.pid, http_url=r.http_url, version=r.version,
                          started_at=r.started_at, heartbeat_at=r.heartbeat_at, heartbeat_age=now - r.heartbeat_at,
                          leader=r.id == leader, alive=alive(r))
            for r in store.list_replicas()]
    return ClusterStatus(at=now, replicas=rows, leader=leader, term=lease.term if lease is not None else None,
                         leader_since=lease.held_since if held and lease is not None else None,
                         lease_expires_at=lease.expires_at if held and lease is not None else None,
                         lease_ttl=lease_ttl(evaluation_interval), stale_after=limit)


__all__ = ["ClusterStatus", "LEADER_LEASE", "Leadership", "LeadershipResult", "Replica", "ReplicaStatus",
           "cluster_status", "lease_ttl", "stale_after"]
