"""The notification pipeline: from alert state to delivered messages.

`plan(at)` decides what to say (route, group, silence, inhibit, escalate) and writes it
to the outbox in one transaction; `deliver(now)` sends what is due and records the
outcome. Splitting the two is what makes delivery survive a crash: whatever was planned
is in the store before any request leaves the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from perf_alerts import selfmetrics
from perf_alerts.config import Receiver
from perf_alerts.model import Alert, AlertState, alert_from_snapshot, alert_snapshot, canonical_labels
from perf_alerts.notify.discord import AlertGroup, SharedRateLimits
from perf_alerts.notify.engine import NotificationEngine, engine as default_engine, in_running_loop
from perf_alerts.notify.escalate import due_escalations
from perf_alerts.notify.mute import muting
from perf_alerts.errors import InputError
from perf_alerts.notify.outbox import STATES, Notification, Outbox
from perf_alerts.notify.receivers import Accepted, DiscordContext, Outcome, send_console, send_discord, send_file, send_webhook
from perf_alerts.notify.redact import redact, register_secret
from perf_alerts.notify.routing import ResolvedRoute, match_routes
from perf_alerts.notify.silence import active_silences
from perf_alerts.notify.timeintervals import gate
from perf_alerts.store.outbox import NotifyGroupRow

if TYPE_CHECKING:
    from perf_alerts.core import EvaluationResult, PerfAlerts

log = logging.getLogger("perf_alerts.notify")


@dataclass
class PlanReport:
    created: list[int] = field(default_factory=list)
    silenced: int = 0
    inhibited: int = 0
    escalations: int = 0
    background: bool = False  # planned by the engine in the background (called inside a running loop)

    def to_dict(self) -> dict[str, Any]:
        return {"created": len(self.created), "silenced": self.silenced, "inhibited": self.inhibited,
                "escalations": self.escalations}


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    dropped: int = 0  # routed to a blackhole receiver: dropped on purpose, not a failure
    requests: int = 0
    rate_limited: int = 0
    disabled_receivers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # started on the notification engine without waiting (the caller was inside a running event loop)
    background: bool = False

    def merge(self, other: "DeliveryReport") -> None:
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead
        self.dropped += other.dropped
        self.requests += other.requests
        self.rate_limited += other.rate_limited
        self.disabled_receivers += [r for r in other.disabled_receivers if r not in self.disabled_receivers]
        self.errors += other.errors

    def to_dict(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed, "dead": self.dead, "dropped": self.dropped,
                "requests": self.requests, "rate_limited": self.rate_limited, "disabled_receivers": self.disabled_receivers,
                "errors": self.errors[:20], **({"background": True} if self.background else {})}


def _needs_update(notified: bool, prev: set[str], shown: set[str], resolved: set[str], send_resolved: bool,
                  last_sent: float | None, repeat_interval: float, at: float, unacknowledged: bool) -> bool:
    """Alertmanager's DedupStage.needsUpdate at a flush: whether the group notifies.

    `prev` is what the last notification announced as firing, `shown` the firing alerts a
    notification may show now (not muted), `resolved` the resolved ones it may show. A group
    that never notified does so once something fires; new firing alerts, newly resolved ones
    (with send_resolved) and "everything resolved" notify; otherwise only `repeat_interval`
    after the last notification, checked at flushes only — so a repeat_interval below
    group_interval repeats every group_interval, and one that is a multiple of it waits for the
    flush after (Alertmanager: the last notification must be *before* now - repeat_interval).
    A repeat waits while every alert is acknowledged (perf-alerts' acknowledgements).
    """
    if not shown and not resolved:  # all muted: the pipeline stops before the dedup stage
        return False
    if not notified:
        return bool(shown)
    if shown - prev:
        return True
    if not shown:
        return bool(prev)
    if send_resolved and resolved:
        return True
    return unacknowledged and last_sent is not None and last_sent < at - repeat_interval


def _target_hash(r: Receiver) -> str:
    target = (r.discord.webhook_url if r.discord else r.webhook.url if r.webhook else
              r.file.path if r.file else "console")
    return hashlib.sha256(target.encode()).hexdigest()[:16]


class Notifier:
    """Plans and delivers notifications for one `PerfAlerts` system.

    Cheap to create: the long-lived parts (event loop, HTTP clients) belong to the
    process-wide `NotificationEngine`; the Discord rate-limit state is the store's
    (`SharedRateLimits`), shared with every other process delivering from it. `discord_client`
    and `http_client` replace the engine's clients (tests, benchmarks); the caller closes them,
    and such a Discord client keeps its own rate-limit state.
    """

    def __init__(self, system: "PerfAlerts", *, console_write: Callable[[str], None] | None = None,
                 discord_client: Any = None, http_client: Any = None,
                 engine: NotificationEngine | None = None) -> None:
        self.system = system
        self.store = system.store
        self.config = system.config
        self._engine = engine
        self.outbox = Outbox(self.store, lease=self.config.delivery.lease)
        self._console_write = console_write
        self._discord = discord_client
        self._http = http_client
        self._shared_limits: SharedRateLimits | None = None
        for r in self.config.receivers:
            if r.discord is not None and r.discord.webhook_url:
                register_secret(r.discord.webhook_url)
            if r.webhook is not None and r.webhook.url:
                register_secret(r.webhook.url)
                for v in r.webhook.headers.values():
                    register_secret(v)

    @property
    def engine(self) -> NotificationEngine:
        """The engine given, else the process-wide one (looked up each time: it may have been closed and replaced)."""
        return self._engine if self._engine is not None else default_engine()

    # ------------------------------------------------------------------ planning
    def plan(self, at: float | None = None, *, flush_new_groups: bool = False) -> PlanReport:
        """Turn the current alert state into outbox entries.

        `flush_new_groups` skips `group_wait` for groups first seen now: a one-shot
        `perf-alerts evaluate` has already seen the whole burst, and there is no later
        cycle in the same process to send it.
        """
        at = self.system.clock.now() if at is None else at
        cfg = self.config
        rep = PlanReport()
        with self.store.transaction() as con:
            # active alerts, plus the resolved ones some group still holds: not the whole history
            states = self.store.notify_groups_load(con)
            owed = {fp for st in states.values() for fp in (*st.sent_firing, *st.members)}
            alerts = self.store.load_alerts(states=[AlertState.FIRING, AlertState.PENDING], con=con)
            have = {a.fingerprint for a in alerts}
            alerts += self.store.load_alerts(fingerprints=sorted(owed - have), con=con)
            by_fp = {a.fingerprint: a for a in alerts}
            firing = [a for a in alerts if a.state == AlertState.FIRING]
            mute = muting(self.store, cfg, alerts, at)
            muted = mute.muted
            rep.silenced, rep.inhibited = len(mute.silenced), len(mute.inhibited)
            intervals = cfg.time_interval_map()
            silences: list[Any] | None = None

            def muted_now(a: Alert) -> bool:
                """A resolved alert is still muted while a silence matches it or a firing source
                inhibits it (Alertmanager's MuteStage asks about the labels, whatever the state)."""
                nonlocal silences
                if a.fingerprint in mute.inhibited:
                    return True
                if silences is None:
                    silences = active_silences(self.store, at)
                return any(s.matches(a.labels) for s in silences)

            # every firing alert belongs to its routes' groups, muted or not (as in Alertmanager's
            # aggregation groups): muting decides what a flush shows, not when the group flushes
            current: dict[str, tuple[ResolvedRoute, dict[str, str], dict[str, Alert]]] = {}
            for a in firing:
                for route in match_routes(cfg.route, a.labels):
                    gl = route.group_labels(a.labels)
                    key = f"{route.id}|{route.receiver}|{canonical_labels(gl)}"
                    current.setdefault(key, (route, gl, {}))[2][a.fingerprint] = a

            for key in sorted(set(current) | set(states)):
                route_now = current.get(key)
                st = states.get(key)
                if route_now is not None:
                    route, group_labels, fmap = route_now
                    settings: dict[str, Any] = {"group_wait": route.group_wait, "group_interval": route.group_interval,
                                "repeat_interval": route.repeat_interval, "send_resolved": route.send_resolved,
                                "mute_time_intervals": list(route.mute_time_intervals),
                                "active_time_intervals": list(route.active_time_intervals)}
                    receiver = route.receiver
                else:
                    assert st is not None
                    group_labels, fmap = st.group_labels, {}
                    settings = st.settings
                    receiver = st.receiver
                members = set(fmap)
                shown = {fp for fp in members if fp not in muted}  # what a flush may show as firing
                prev = set(st.sent_firing) if st else set()  # announced as firing by the last notification
                gone = ((prev | set(st.members)) if st else set()) - members
                resolved = {fp for fp in gone if fp in by_fp and by_fp[fp].state == AlertState.RESOLVED}
                # announced earlier, still firing, muted now: owed its resolution (perf-alerts keeps it)
                held = prev & (members - shown)
                # the route's send_resolved and the receiver's (Alertmanager's per-integration
                # send_resolved, default true): either false keeps resolved notifications back
                rcv_cfg = next((r for r in cfg.receivers if r.name == receiver), None)
                send_resolved = bool(settings["send_resolved"]) and (rcv_cfg is None or rcv_cfg.send_resolved)
                group_interval = float(settings["group_interval"])
                if st is None:
                    if not members:
                        continue
                    first_seen, last_sent = at, None
                    next_flush: float = at + float(settings["group_wait"])
                else:
                    first_seen, last_sent = st.first_seen, st.last_sent_at
                    due = first_seen + float(settings["group_wait"]) if last_sent is None else last_sent + group_interval
                    next_flush = st.next_flush_at if st.next_flush_at is not None else due
                    if any(float(st.settings.get(k, settings[k])) != float(settings[k])
                           for k in ("group_wait", "group_interval")):
                        # a reload changed the timers: the stored tick must not outlive them (a
                        # group_wait cut from 2h to 30s sends now, not 2h after the first alert);
                        # Alertmanager rebuilds its groups on reload
                        next_flush = min(next_flush, due)
                forced = flush_new_groups and last_sent is None and at < next_flush
                sent, pending = prev, resolved
                if at >= next_flush or forced:
                    # a flush (Alertmanager's aggregation-group tick): group_wait after the group's first
                    # alert, then every group_interval on that grid, whatever happened in between
                    next_flush = at + group_interval if forced else \
                        next_flush + (math.floor((at - next_flush) / group_interval) + 1) * group_interval
                    # names a reloaded configuration no longer defines (a group kept for a resolution
                    # owed under an older configuration) neither mute nor close the route
                    tg = gate(intervals, [n for n in settings.get("mute_time_intervals") or () if n in intervals],
                              [n for n in settings.get("active_time_intervals") or () if n in intervals], at)
                    if tg.closed:
                        # TimeMuteStage / TimeActiveStage: nothing is sent and the notification log is
                        # untouched (so what fired meanwhile is new at the first open flush); a muted
                        # member's resolution is dropped, an announced alert's stays owed (see the README)
                        pending = resolved & prev
                    else:
                        # resolved now, shown before or passing the mutes now
                        visible_resolved = {fp for fp in resolved if fp in prev or not muted_now(by_fp[fp])}
                        due = _needs_update(last_sent is not None, prev, shown, visible_resolved, send_resolved,
                                            last_sent, float(settings["repeat_interval"]), at,
                                            any(not fmap[fp].acknowledged for fp in shown))
                        if due:
                            out = [fmap[fp] for fp in sorted(shown)]
                            if send_resolved:
                                out += [by_fp[fp] for fp in sorted(visible_resolved)]
                            if out:
                                body = {"group_labels": group_labels, "alerts": [alert_snapshot(a) for a in out]}
                                rep.created.append(self.outbox.enqueue(con, receiver, "alerts", key, body, at))
                            last_sent, sent = at, shown | held
                        else:
                            sent = prev - resolved
                        pending = set()  # a flush ends the group's resolved alerts, sent or not
                sent = {fp for fp in sent if fp in members or fp in pending}
                if not members and not sent and not pending:
                    self.store.notify_group_delete(con, key)
                    continue
                self.store.notify_group_save(con, NotifyGroupRow(key, receiver, group_labels, first_seen, last_sent,
                                                                 sorted(sent), settings, next_flush,
                                                                 sorted(members | (pending - sent))))

            # escalations: one notification per (receiver, policy, level), every alert in it
            batches: dict[tuple[str, str, int, tuple[str, ...]], list[Alert]] = defaultdict(list)
            for e in due_escalations(firing, cfg.escalations, at, muted):
                for rcv in e.spec.receivers:
                    batches[(rcv, e.policy, e.level, tuple(e.spec.mention_roles))].append(e.alert)
                self.store.alert_set_escalation(con, e.alert.fingerprint, e.level, at)
                self.store.add_events([(e.alert.fingerprint, e.alert.rule, e.alert.severity.value, at, "escalated",
                                        e.alert.value, f"{e.policy} level {e.level}{' (repeat)' if e.repeat else ''}")], con)
                rep.escalations += 1
            for (rcv, policy, level, roles), alerts_ in batches.items():
                body = {
                    "title": f"⚠ Escalation: {policy} level {level} — unacknowledged",
                    "group_labels": {"escalation": policy},
                    "mention_roles": list(roles),
                    "alerts": [alert_snapshot(a) for a in alerts_],
                }
                rep.created.append(self.outbox.enqueue(con, rcv, "escalation", f"escalation|{policy}|{level}", body, at))
        return rep

    def enqueue_message(self, title: str, description: str, severity: str = "info", *,
                        labels: dict[str, str] | None = None, files: list[tuple[str, bytes, str]] | None = None,
                        kind: str = "message", at: float | None = None) -> list[int]:
        """An ad-hoc message or an executive summary, routed like an alert with these labels."""
        at = self.system.clock.now() if at is None else at
        lab = {"alertname": title[:100], "severity": severity, "kind": kind, **(labels or {})}
        body = {"title": title, "description": description, "group_labels": lab, "alerts": [],
                "files": [{"name": n, "hex": d.hex(), "content_type": c} for n, d, c in (files or [])]}
        ids = []
        with self.store.transaction() as con:
            for route in match_routes(self.config.route, lab):
                ids.append(self.outbox.enqueue(con, route.receiver, kind, f"{kind}|{title[:60]}", body, at))
        return ids

    # ------------------------------------------------------------------ delivery
    def deliver(self, now: float | None = None) -> DeliveryReport:
        """Send what is due and wait for the outcome (sync; from any thread).

        Inside a running event loop it must not wait: the delivery is started on the
        notification engine and a report marked `background` comes back at once.
        """
        if in_running_loop():
            self.engine.submit(self._deliver(now))
            return DeliveryReport(background=True)
        return self.engine.run(self._deliver(now))

    async def deliver_async(self, now: float | None = None) -> DeliveryReport:
        """Send what is due; awaitable from any event loop (the work runs on the engine's loop)."""
        return await self.engine.wrap(self._deliver(now))

    async def _deliver(self, now: float | None = None) -> DeliveryReport:
        now = self.system.clock.now() if now is None else now
        rep = DeliveryReport()
        due = await asyncio.to_thread(self.outbox.claim, now)
        if not due:
            return rep
        claim = _Claim(self.outbox, [n.id for n in due])
        claim.start()
        try:
            return await self._deliver_claimed(due, claim, now, rep)
        finally:
            await claim.stop()

    async def _deliver_claimed(self, due: list[Notification], claim: "_Claim", now: float,
                               rep: DeliveryReport) -> DeliveryReport:
        d = self.config.delivery
        receivers = {r.name: r for r in self.config.receivers}
        disabled = await asyncio.to_thread(self._disabled)
        discord_batches: dict[str, list[tuple[Notification, Receiver]]] = defaultdict(list)
        by_receiver: dict[str, list[Notification]] = defaultdict(list)
        for n in due:
            rcv = receivers.get(n.receiver)
            if n.attempts >= d.max_attempts:  # every sender that tried it died (or it ran out of retries)
                await self._settle(n, Outcome("dead", error=f"gave up after {n.attempts} attempts; the last "
                                              "sender died while sending it"), rcv, now, rep, claim)
                continue
            if rcv is None:
                await self._settle(n, Outcome("dead", error=f"receiver {n.receiver!r} is no longer configured"),
                                   None, now, rep, claim)
                continue
            if rcv.name in disabled and disabled[rcv.name][0] == _target_hash(rcv):
                await self._settle(n, Outcome("dead", error=f"receiver {rcv.name} is disabled: {disabled[rcv.name][1]}"),
                                   None, now, rep, claim)
                continue
            if rcv.blackhole:  # Alertmanager's receiver with no integration: dropped silently
                await self._settle(n, Outcome("dropped", error=f"receiver {rcv.name} has no integration (blackhole)"),
                                   rcv, now, rep, claim)
                continue
            if rcv.kind == "discord":
                assert rcv.discord is not None
                discord_batches[rcv.discord.webhook_url].append((n, rcv))
            else:
                by_receiver[rcv.name].append(n)

        for name, ns in by_receiver.items():
            rcv = receivers[name]
            if rcv.kind == "webhook":
                # one request per notification, each recorded as soon as it is answered
                for n in ns:
                    if n.id in await claim.lost_ids():
                        await self._settle(n, Outcome("lost"), rcv, now, rep, claim)
                        continue
                    try:
                        outcome = (await send_webhook(self._http_client(), [n], rcv,
                                                      self.config.global_.dashboard_url or ""))[n.id]
                    except Exception as e:  # one broken receiver must not keep the others from their messages
                        outcome = self._crashed(rcv.name, [n], e)[n.id]
                    rep.requests += 1
                    await self._settle(n, outcome, rcv, now, rep, claim)
                continue
            try:
                if rcv.kind == "console":
                    outcomes = send_console(ns, rcv, self.config.global_.dashboard_url, self._console_write)
                else:
                    outcomes = await asyncio.to_thread(send_file, ns, rcv, self.config.global_.dashboard_url or "")
            except Exception as e:
                outcomes = self._crashed(rcv.name, ns, e)
            for n in ns:
                await self._settle(n, outcomes[n.id], rcv, now, rep, claim)

        if discord_batches:
            client = self._discord_client()
            before = client.stats()
            for url, batch in discord_batches.items():
                sent_before = client.stats()
                try:
                    outcomes = await send_discord(client, url, batch, self._discord_ctx(now, claim),
                                                  self.config.global_.dashboard_url)
                except Exception as e:
                    outcomes = self._crashed(batch[0][1].name, [n for n, _ in batch], e)
                sent_after = client.stats()  # GET /metrics: requests and 429s of this process, by receiver
                selfmetrics.inc("discord_requests", sent_after["requests"] - sent_before["requests"],
                                receiver=batch[0][1].name)
                selfmetrics.inc("discord_rate_limited", sent_after["rate_limited"] - sent_before["rate_limited"],
                                receiver=batch[0][1].name)
                for n, rcv in batch:
                    o = outcomes[n.id]
                    if n.id in claim.lost:
                        continue  # another sender took it over: its outcome is theirs to record
                    if o.kind == "delivered" and n.id in claim.finished:
                        rep.delivered += 1  # recorded message by message while sending
                        selfmetrics.inc("notifications_delivered", receiver=rcv.name)
                        continue
                    await self._settle(n, o, rcv, now, rep, claim)
            after = client.stats()
            rep.requests += after["requests"] - before["requests"]
            rep.rate_limited += after["rate_limited"] - before["rate_limited"]
        return rep

    @staticmethod
    def _crashed(receiver: str, ns: list[Notification], e: BaseException) -> dict[int, Outcome]:
        log.error("receiver %s: delivery failed unexpectedly: %s", receiver, redact(f"{type(e).__name__}: {e}"),
                  exc_info=(type(e), e, e.__traceback__))
        return {n.id: Outcome("retry", error=redact(f"internal error: {type(e).__name__}: {e}")) for n in ns}

    async def _settle(self, n: Notification, o: Outcome, rcv: Receiver | None, now: float, rep: DeliveryReport,
                      claim: "_Claim") -> None:
        """Record one notification's outcome (in a worker thread; guarded by this sender's claim)."""
        from perf_alerts.notify.discord import backoff_delay

        d = self.config.delivery
        name = rcv.name if rcv is not None else n.receiver
        claim.finished.add(n.id)
        if o.kind == "lost":
            return  # another sender holds it now: its outcome is theirs to record
        if o.kind == "dropped":
            if await asyncio.to_thread(self.outbox.dropped, n, now, o.error or "dropped"):
                rep.dropped += 1
            return
        if o.kind == "delivered":
            if await asyncio.to_thread(self.outbox.delivered, n, now, o.message_ids):
                rep.delivered += 1
                selfmetrics.inc("notifications_delivered", receiver=name)
        elif o.kind == "retry":
            delay = o.retry_after if o.retry_after is not None else \
                max(d.backoff_base / 2, backoff_delay(n.attempts, d.backoff_base, d.backoff_cap))
            state = await asyncio.to_thread(self.outbox.retry, n, now, o.error or "temporary failure", delay,
                                            not o.rate_limited, d.max_attempts)
            if state == "dead":
                rep.dead += 1
            elif state == "failed":
                rep.failed += 1
            selfmetrics.inc("notification_failures", receiver=name)
            if state == "dead":
                selfmetrics.inc("notifications_dead", receiver=name)
            rep.errors.append(f"{name}: {redact(o.error or 'retry')}")
        elif o.kind == "disabled" and rcv is not None:
            reason = redact(o.error or "the endpoint says it does not exist")
            await asyncio.to_thread(self._disable, rcv, now, reason)
            await asyncio.to_thread(self.outbox.dead, n, now, f"receiver {rcv.name} disabled: {reason}")
            rep.dead += 1
            selfmetrics.inc("notification_failures", receiver=name)
            selfmetrics.inc("notifications_dead", receiver=name)
            if rcv.name not in rep.disabled_receivers:
                rep.disabled_receivers.append(rcv.name)
        else:
            await asyncio.to_thread(self.outbox.dead, n, now, o.error or "rejected")
            rep.dead += 1
            selfmetrics.inc("notification_failures", receiver=name)
            selfmetrics.inc("notifications_dead", receiver=name)
            rep.errors.append(f"{name}: {redact(o.error or 'rejected')}")

    def _disable(self, rcv: Receiver, now: float, reason: str) -> None:
        log.error("receiver %s disabled: %s — fix its configuration; nothing more is sent to it", rcv.name, reason)
        self.store.receiver_disable(rcv.name, _target_hash(rcv), now, reason)

    def _disabled(self) -> dict[str, tuple[str, str]]:
        return {s.receiver: (s.target_hash, s.reason) for s in self.store.receiver_statuses()}

    def disabled_receivers(self) -> dict[str, str]:
        """Receivers disabled by a 404/401 whose configuration has not changed since."""
        receivers = {r.name: r for r in self.config.receivers}
        return {name: reason for name, (h, reason) in self._disabled().items()
                if name in receivers and _target_hash(receivers[name]) == h}

    # -- the Discord sender's view of the store -------------------------------------------
    def _discord_ctx(self, now: float, claim: "_Claim") -> DiscordContext:
        store = self.store

        async def message_ids_for(receiver: str, fp: str) -> list[str]:
            return await asyncio.to_thread(store.message_ids_for, receiver, fp)

        def _groups(receiver: str, message_id: str) -> list[AlertGroup]:
            groups = []
            for nid, fps in store.message_contents(receiver, message_id):
                n = self.outbox.get(nid)
                if n is None:
                    continue
                snap = {a["fingerprint"]: a for a in n.body.get("alerts", [])}
                current = {a.fingerprint: a for a in store.load_alerts(fingerprints=fps)}
                alerts = []
                for fp in fps:
                    cur = current.get(fp)
                    if cur is None and fp in snap:
                        cur = alert_from_snapshot(snap[fp])
                    if cur is not None:
                        alerts.append(cur)
                groups.append(AlertGroup(key=f"n{nid}", alerts=alerts, group_labels=dict(n.body.get("group_labels") or {})))
            return groups

        async def message_groups(receiver: str, message_id: str) -> list[AlertGroup]:
            return await asyncio.to_thread(_groups, receiver, message_id)

        async def accepted(acc: Accepted) -> None:
            refs = [(n.receiver, fp, acc.message_id, n.id) for n, fp in acc.announced] if acc.message_id else []
            args = ([(n.id, acc.message_id, fps) for n, fps in acc.shown], [n.id for n in acc.completed], now,
                    refs, acc.resolved)
            # Discord has the message now: recording it must not fail the round (that would post it
            # again), so a busy store is retried while the claim still holds
            lost: list[int] = []
            for attempt in range(5):
                try:
                    lost = await asyncio.to_thread(self.outbox.progress, *args)
                    break
                except Exception:
                    if attempt == 4:
                        raise
                    log.warning("outbox: recording an accepted message failed; retrying", exc_info=True)
                    await asyncio.sleep(0.5 * 2 ** attempt)
            claim.lost.update(lost)
            claim.finished.update(n.id for n in acc.completed if n.id not in claim.lost)

        return DiscordContext(message_ids_for, message_groups, accepted, claim.lost_ids)

    def _discord_client(self) -> Any:
        """The client given (it keeps its own rate-limit state), else the engine's, with the
        rate limits of this store: shared by every process that delivers from it."""
        if self._discord is not None:
            return self._discord
        if self._shared_limits is None:
            self._shared_limits = SharedRateLimits(self.store)
        return self.engine.discord().with_limits(self._shared_limits)

    def _http_client(self) -> Any:
        return self._http if self._http is not None else self.engine.http()

    # ------------------------------------------------------------------ one-shot helper
    def flush(self, at: float, deadline: float, *, flush_new_groups: bool = True) -> tuple[PlanReport, DeliveryReport]:
        """Plan, then deliver until nothing is due within `deadline` real seconds (the CLI's evaluate).

        Inside a running event loop the whole flush runs in the background on the engine
        (the caller's loop is never held up); the report then says `background`.
        """
        coro = self._flush(at, deadline, flush_new_groups)
        if in_running_loop():
            self.engine.submit(coro)
            return PlanReport(background=True), DeliveryReport(background=True)
        return self.engine.run(coro)

    async def _flush(self, at: float, deadline: float, flush_new_groups: bool) -> tuple[PlanReport, DeliveryReport]:
        plan = await asyncio.to_thread(lambda: self.plan(at, flush_new_groups=flush_new_groups))
        total = DeliveryReport()
        t0 = time.monotonic()
        while True:
            elapsed = time.monotonic() - t0
            total.merge(await self._deliver(at + elapsed))
            nxt = await asyncio.to_thread(self.outbox.next_due_at)
            if nxt is None:
                break
            wait = nxt - (at + (time.monotonic() - t0))
            if time.monotonic() - t0 + max(wait, 0) > deadline:
                break
            if wait > 0:
                await asyncio.sleep(wait)
        return plan, total


class _Claim:
    """The notifications one delivery round claimed, and the lease that keeps them ours.

    A heartbeat renews the lease every third of it while the round runs, however long a
    request or a rate-limit wait takes, so another process never takes over rows still
    being sent. If the heartbeat could not run in time (the process stalled past its lease)
    and another sender took rows over, `lost_ids()` says so and those rows are not sent.
    """

    def __init__(self, outbox: Outbox, ids: list[int]) -> None:
        self.outbox = outbox
        self.ids = ids
        self.finished: set[int] = set()
        self.lost: set[int] = set()
        self._renewed = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.outbox.lease / 3)
            try:
                await self._renew()
            except Exception:  # a busy store: try again next beat (the lease has two more thirds)
                log.warning("outbox: renewing the claim failed", exc_info=True)

    async def _renew(self) -> None:
        async with self._lock:  # the heartbeat and a request's check never renew at once
            left = [i for i in self.ids if i not in self.finished and i not in self.lost]
            if left:
                held = await asyncio.to_thread(self.outbox.renew, left)
                gone = set(left) - held
                if gone:
                    log.warning("outbox: notification(s) %s were taken over by another sender; not sending them",
                                sorted(gone))
                    self.lost |= gone
            self._renewed = time.monotonic()

    async def lost_ids(self) -> frozenset[int]:
        """Before a request: the ids no longer ours (checked in the store if the heartbeat is late)."""
        if time.monotonic() - self._renewed > self.outbox.lease / 3:
            await self._renew()
        return frozenset(self.lost)


@dataclass
class DeliveryOutcome:
    """What one send call achieved: its plan (if it planned), its delivery rounds, and where
    the outbox stands after them. The CLI, the API, the crew tools and the demo render this."""

    plan: PlanReport | None
    delivery: DeliveryReport
    still_pending: int | None  # None: not known yet (delivering in the background)
    disabled: dict[str, str]
    notifications: list[Notification] | None = None  # the ones this call queued (messages, summaries)

    @property
    def state(self) -> str | None:
        """For a call that queued its own notifications: did they get through?"""
        if self.delivery.background:
            return "queued; delivering in the background"
        if self.notifications is None:
            return None
        states = {x.state for x in self.notifications}
        if "dropped" in states and states <= {"delivered", "dropped"}:
            return "delivered" if "delivered" in states else "dropped (blackhole receiver)"
        states -= {"dropped"}
        return ("delivered" if states == {"delivered"} else "dead" if states == {"dead"}
                else "nothing to send" if not states else "queued for retry" if "delivered" not in states
                else "partially delivered")

    @property
    def delivered(self) -> int:
        return self.delivery.delivered

    def to_dict(self) -> dict[str, Any]:
        created = self.plan.to_dict() if self.plan else {"created": len(self.notifications or [])}
        d: dict[str, Any] = {**created, **self.delivery.to_dict(), "still_pending": self.still_pending,
                             "disabled": self.disabled}
        if self.notifications is not None:
            d["notifications"] = [x.to_dict() for x in self.notifications]
            d["state"] = self.state
        return d


def _outcome(n: Notifier, plan: PlanReport | None, delivery: DeliveryReport,
             ids: list[int] | None = None) -> DeliveryOutcome:
    if delivery.background:  # the caller's loop must not wait for the store either
        return DeliveryOutcome(plan, delivery, None, {}, None if ids is None else [])
    items = None if ids is None else [x for x in (n.outbox.get(i) for i in ids) if x is not None]
    return DeliveryOutcome(plan, delivery, n.outbox.open_count(), n.disabled_receivers(), items)


def _send_now(n: Notifier, enqueue: Callable[[], list[int]]) -> DeliveryOutcome:
    """Queue a message (`enqueue`) and deliver it (and anything else due) before returning.

    Inside a running event loop nothing here touches the store or waits on that loop: the
    queueing and the delivery run on the notification engine, and the outcome says so.
    """
    system = n.system
    deadline = system.config.delivery.cli_deadline
    if in_running_loop():
        async def queue_and_send() -> None:
            await asyncio.to_thread(enqueue)
            await n._flush(system.clock.now(), deadline, False)

        n.engine.submit(queue_and_send())
        return _outcome(n, None, DeliveryReport(background=True), [])
    ids = enqueue()
    _, delivery = n.flush(system.clock.now(), deadline, flush_new_groups=False)
    return _outcome(n, None, delivery, ids)


@dataclass
class NotificationList:
    """The outbox, newest first, with the receivers a 404/401 disabled."""

    items: list[Notification]
    disabled: dict[str, str]


def list_notifications(system: "PerfAlerts", state: str | None = None, limit: int = 50) -> NotificationList:
    """What `perf-alerts notifications` and `GET /api/v1/notifications` show."""
    if state is not None and state not in STATES:
        raise InputError(f"state: unknown notification state {state!r}; valid: {', '.join(STATES)}")
    n = Notifier(system)
    return NotificationList(n.outbox.recent(state, limit), n.disabled_receivers())


def deliver_due(system: "PerfAlerts", at: float | None = None, console_write: Callable[[str], None] | None = None,
                deadline: float | None = None) -> DeliveryOutcome:
    """Plan what the alert state calls for at `at`, then deliver until nothing is due within `deadline`."""
    n = Notifier(system, console_write=console_write)
    at = system.clock.now() if at is None else at
    plan, delivery = n.flush(at, system.config.delivery.cli_deadline if deadline is None else deadline)
    return _outcome(n, plan, delivery)


def deliver_evaluation(system: "PerfAlerts", result: "EvaluationResult",
                       console_write: Callable[[str], None] | None = None) -> DeliveryOutcome:
    """What `perf-alerts evaluate` calls after a cycle: send what it produced before exiting."""
    return deliver_due(system, result.at, console_write)


def deliver_message(system: "PerfAlerts", title: str, severity: str, text: str,
                    metrics: dict[str, Any] | None = None, console_write: Callable[[str], None] | None = None) -> DeliveryOutcome:
    """An ad-hoc message through the whole pipeline (routing, limits, rate limits, outbox, redaction)."""
    n = Notifier(system, console_write=console_write)
    body = text
    if metrics:
        body += "\n" + "\n".join(f"• {k}: {v}" for k, v in list(metrics.items())[:20])
    return _send_now(n, lambda: n.enqueue_message(title, body, severity))


def deliver_summary(system: "PerfAlerts", title: str, text: str, files: list[tuple[str, bytes, str]] | None = None,
                    console_write: Callable[[str], None] | None = None) -> DeliveryOutcome:
    """The executive summary (its title and the message text rendered by manage.report) to the
    receivers routed for `kind=executive_summary` (leadership), with `files` attached."""
    n = Notifier(system, console_write=console_write)
    return _send_now(n, lambda: n.enqueue_message(title or "Executive performance summary", text, "info",
                                                  kind="executive_summary", files=files))
