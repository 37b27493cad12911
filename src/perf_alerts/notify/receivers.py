"""Receivers: how a batch of due notifications reaches Discord, the console, a file or a webhook.

Each sender takes the notifications due for one target and returns one `Outcome` per
notification; the pipeline turns outcomes into outbox state. Discord senders pack every
due notification for the same webhook into as few messages as Discord's limits allow.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

import httpx

from perf_alerts.config import Receiver
from perf_alerts.model import Alert, AlertState, alert_from_snapshot
from perf_alerts.notify.discord import AlertGroup, DiscordClient, DiscordMessage, build_messages, build_resolved_edit
from perf_alerts.notify.outbox import Notification
from perf_alerts.notify.redact import redact
from perf_alerts.textsafe import terminal_safe
from perf_alerts.timeutil import iso

# "lost": another sender took the notification over (this one's lease ran out): not ours to record
# "dropped": routed to a blackhole receiver (no integration), dropped on purpose, not a failure
OutcomeKind = Literal["delivered", "retry", "dead", "disabled", "lost", "dropped"]


@dataclass
class Outcome:
    kind: OutcomeKind
    message_ids: list[str] = field(default_factory=list)
    error: str | None = None
    retry_after: float | None = None
    # a retry that is not the notification's fault (a rate limit, a co-traveller lost to another
    # sender) does not spend its retry budget
    rate_limited: bool = False


# --------------------------------------------------------------------------- rendering helpers


def notification_alerts(n: Notification) -> list[Alert]:
    return [alert_from_snapshot(a) for a in n.body.get("alerts", [])]


def to_group(n: Notification, receiver: Receiver, alerts: list[Alert] | None = None) -> AlertGroup:
    """The Discord view of one notification. Receiver-level role mentions ping only for firing alerts."""
    alerts = notification_alerts(n) if alerts is None else alerts
    roles = list(n.body.get("mention_roles") or [])
    if receiver.discord is not None and any(a.state == AlertState.FIRING for a in alerts):
        roles += [r for r in receiver.discord.mention_roles if r not in roles]
    files = [(f["name"], bytes.fromhex(f["hex"]), f.get("content_type", "application/octet-stream"))
             for f in n.body.get("files", [])]
    return AlertGroup(key=f"n{n.id}", alerts=alerts, group_labels=dict(n.body.get("group_labels") or {}),
                      mention_roles=roles, title=n.body.get("title"), description=n.body.get("description"),
                      files=files)


def render_text(msg: DiscordMessage, receiver: str) -> str:
    """A Discord message as plain text: what the console receiver prints.

    Safe for a terminal (`textsafe.terminal_safe`): escape sequences, OSC-8 hyperlinks, CR and
    the other control characters in any part of the message are shown escaped (`\\x1b`, `\\r`);
    single-line parts (title, fields, footer, names) show a newline as `\\n`, and every line of
    a description keeps its `▌ ` prefix, so no data can forge a line of its own.
    """
    def one(x: object) -> str:
        return terminal_safe("" if x is None else x, newlines=False)

    p = msg.payload
    lines = [f"─── to {one(receiver)} as {one(p.get('username', 'perf-alerts'))} " + "─" * 20]
    if p.get("content"):
        lines += [one(ln) for ln in str(p["content"]).split("\n")]
    for e in p.get("embeds", []):
        colour = e.get("color")
        lines.append(f"▌ {one(e.get('title', ''))}" + (f"   (#{colour:06x})" if isinstance(colour, int) else ""))
        if e.get("description"):
            lines += ["▌ " + one(ln) for ln in str(e["description"]).split("\n")]
        for f in e.get("fields", []):
            lines.append(f"▌ {one(f.get('name'))}: {one(f.get('value'))}")
        if e.get("footer"):
            lines.append(f"▌ — {one(e['footer'].get('text', ''))}" + (f"  {one(e['timestamp'])}" if e.get("timestamp") else ""))
    for name, data, _ in msg.files:
        lines.append(f"📎 {one(name)} ({len(data):,} bytes)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- console / file


def send_console(notifications: list[Notification], receiver: Receiver, dashboard_url: str | None,
                 write: Callable[[str], None] | None = None) -> dict[int, Outcome]:
    stream = sys.stderr if receiver.console is not None and receiver.console.stream == "stderr" else sys.stdout
    out = write or (lambda s: (stream.write(s + "\n"), stream.flush()))
    groups = [to_group(n, receiver) for n in notifications]
    for msg in build_messages(groups, dashboard_url=dashboard_url):
        out(redact(render_text(msg, receiver.name)))  # render_text escapes for the terminal
    return {n.id: Outcome("delivered") for n in notifications}


def send_file(notifications: list[Notification], receiver: Receiver, external_url: str = "") -> dict[int, Outcome]:
    assert receiver.file is not None
    path = Path(receiver.file.path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for n in notifications:
                fh.write(json.dumps(_generic_body(n, receiver.name, external_url), default=str) + "\n")
    except OSError as e:
        return {n.id: Outcome("retry", error=f"cannot write {path}: {e.strerror}") for n in notifications}
    return {n.id: Outcome("delivered") for n in notifications}


_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every dict shares (Alertmanager's commonLabels / commonAnnotations)."""
    if not dicts:
        return {}
    return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}


def _generic_body(n: Notification, receiver: str, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4) for the file and webhook receivers.

    A receiver written for Alertmanager's webhook (`perf-alerts import-alertmanager` maps
    `webhook_configs` here) reads the same fields: status, receiver, groupKey, groupLabels,
    commonLabels, commonAnnotations, externalURL, truncatedAlerts and per alert status, labels,
    annotations, startsAt, endsAt (Go's zero time while firing), generatorURL and fingerprint.
    perf-alerts' own facts ride along in extra keys (kind, notification_id, title, description,
    value, threshold, acknowledged, escalation_level, created_at), which such a receiver ignores.
    """
    alerts = notification_alerts(n)
    labels = [dict(a.labels) for a in alerts]
    annotations = [dict(a.annotations) for a in alerts]
    return {
        "version": "4", "groupKey": n.group_key, "truncatedAlerts": 0,
        "status": "firing" if any(a.state == AlertState.FIRING for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": n.body.get("group_labels", {}),
        "commonLabels": _common(labels), "commonAnnotations": _common(annotations),
        "externalURL": external_url,  # Alertmanager's own address there; here the dashboard's (global.dashboard_url)
        "alerts": [{
            "status": a.state.value, "labels": a.labels, "annotations": a.annotations,
            "startsAt": iso(a.started_at),
            "endsAt": iso(a.resolved_at) if a.state == AlertState.RESOLVED and a.resolved_at else _GO_ZERO_TIME,
            "generatorURL": "", "fingerprint": a.fingerprint,
            "value": a.value, "threshold": a.threshold, "acknowledged": a.acknowledged,
            "escalation_level": a.escalation_level,
        } for a in alerts],
        "kind": n.kind, "notification_id": n.id,
        "title": n.body.get("title"), "description": n.body.get("description"),
        "created_at": iso(n.created_at),
    }


# --------------------------------------------------------------------------- generic webhook


@dataclass
class WebhookReply:
    """One JSON POST's result: the status (None when no answer came) or the (redacted) error."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def post_json(http: httpx.AsyncClient, url: str, payload: Any, headers: dict[str, str],
                    timeout: float) -> WebhookReply:
    """The one generic webhook POST: the webhook receiver and the policies' webhook action use it."""
    try:
        r = await http.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        return WebhookReply(None, error=redact(f"{type(e).__name__}: {e}"))
    ra = r.headers.get("Retry-After")
    try:
        retry_after = float(ra) if ra else None
    except ValueError:
        retry_after = None
    return WebhookReply(r.status_code, retry_after=retry_after, text=redact(r.text[:200]))


async def send_webhook(http: httpx.AsyncClient, notifications: list[Notification], receiver: Receiver,
                       external_url: str = "") -> dict[int, Outcome]:
    assert receiver.webhook is not None
    cfg = receiver.webhook
    out: dict[int, Outcome] = {}
    for n in notifications:
        r = await post_json(http, cfg.url, _generic_body(n, receiver.name, external_url), cfg.headers, cfg.timeout)
        if r.status is None:
            out[n.id] = Outcome("retry", error=r.error)
        elif r.ok:
            out[n.id] = Outcome("delivered")
        elif r.status == 429 or r.status >= 500:
            out[n.id] = Outcome("retry", error=f"HTTP {r.status}", retry_after=r.retry_after,
                                rate_limited=r.status == 429)
        elif r.status in (401, 403, 404, 410):
            out[n.id] = Outcome("disabled", error=f"HTTP {r.status} from the webhook endpoint")
        else:
            out[n.id] = Outcome("dead", error=f"HTTP {r.status}: {r.text}")
    return out


# --------------------------------------------------------------------------- Discord


@dataclass
class Accepted:
    """What one accepted message (or the round's edits) achieved, for the outbox."""

    message_id: str | None  # None for edits
    shown: list[tuple[Notification, list[str]]]  # per notification: the fingerprints now in the channel
    completed: list[Notification]  # notifications with nothing left to show
    announced: list[tuple[Notification, str]]  # firing alerts this message announced: edit it when they resolve
    resolved: list[tuple[str, str]]  # (receiver, fingerprint) whose resolution is now shown everywhere


@dataclass
class DiscordContext:
    """What the Discord sender needs from the store, passed in so this module stays free of SQL.

    Every callback is async: the pipeline runs the store work in a worker thread, so a
    writer holding SQLite's lock in another process never stalls the event loop.
    """

    # (receiver, fingerprint) → every message that announced the alert's current incident there
    message_ids_for: Callable[[str, str], Awaitable[list[str]]]
    # (receiver, message id) → the groups that message showed, with their alerts' current state
    message_groups: Callable[[str, str], Awaitable[list[AlertGroup]]]
    # one accepted message or the edits: recorded at once, so a crash re-sends at most the message in flight
    accepted: Callable[[Accepted], Awaitable[None]]
    # before each request: the ids this sender no longer holds (taken over after its lease ran out)
    lost: Callable[[], Awaitable[frozenset[int]]]


def _parts_of(key: str) -> str:
    """`n12 (part 2/3)` → `n12`: a group split over several messages belongs to one notification."""
    return key.split(" (part ", 1)[0]


async def send_discord(client: DiscordClient, url: str, batch: list[tuple[Notification, Receiver]],
                       ctx: DiscordContext, dashboard_url: str | None) -> dict[int, Outcome]:
    """Deliver every due notification for one webhook URL, packed into as few requests as possible.

    Resolved alerts whose firing messages are known are shown by editing *every* message that
    announced the current incident (PATCH). An edit Discord refuses for good (the message was
    deleted) falls back to posting the resolution; an edit that may work later (429, 5xx,
    timeout) makes the notification retry, so the red message still turns green. Alerts a
    notification already showed in an accepted message (`Notification.sent`: a crash after
    Discord accepted part of it) are not posted again. Each accepted message is reported
    through `ctx.accepted` before the next request; a message whose notification another
    sender took over is not sent. Returns the outcome of every notification in the batch.
    """
    by_id = {n.id: (n, rcv) for n, rcv in batch}
    done: set[int] = set()
    failed: dict[int, Outcome] = {}

    # 1. what is left to show per notification; resolved alerts with earlier messages become edits
    remaining: dict[int, list[Alert]] = {}
    edits: dict[tuple[str, str], set[str]] = {}  # (receiver, message id) → resolved fingerprints
    edit_of: dict[int, set[tuple[str, str]]] = {}
    for n, rcv in batch:
        already = set(n.sent)
        keep: list[Alert] = []
        for a in notification_alerts(n):
            if a.fingerprint in already:
                continue
            mids = (await ctx.message_ids_for(rcv.name, a.fingerprint)
                    if a.state == AlertState.RESOLVED and n.kind == "alerts" else [])
            if mids:
                for mid in mids:
                    edits.setdefault((rcv.name, mid), set()).add(a.fingerprint)
                    edit_of.setdefault(n.id, set()).add((rcv.name, mid))
            else:
                keep.append(a)
        remaining[n.id] = keep

    edit_result: dict[tuple[str, str], Outcome] = {}
    for (rname, mid), fps in edits.items():
        mgroups = await ctx.message_groups(rname, mid)
        if not mgroups:
            edit_result[(rname, mid)] = Outcome("dead", error="original message unknown")
            continue
        res = await client.edit(url, mid, build_resolved_edit(mgroups, dashboard_url=dashboard_url))
        edit_result[(rname, mid)] = Outcome(res.outcome, error=res.error, retry_after=res.retry_after,
                                            rate_limited=bool(res.rate_limited))
    shown_by_edit: list[tuple[Notification, list[str]]] = []
    resolved_shown: list[tuple[str, str]] = []
    for nid, keys in edit_of.items():
        n, rcv = by_id[nid]
        outcome_of: dict[str, list[Outcome]] = {}
        for k in keys:
            for fp in edits[k]:
                outcome_of.setdefault(fp, []).append(edit_result[k])
        ok = sorted(fp for fp, os_ in outcome_of.items() if all(o.kind == "delivered" for o in os_))
        later = [o for os_ in outcome_of.values() for o in os_ if o.kind == "retry"]
        gone = {fp for fp, os_ in outcome_of.items()
                if not any(o.kind == "retry" for o in os_) and any(o.kind in ("dead", "disabled") for o in os_)}
        if later:  # try the edits again later rather than leave a red message beside a green one
            failed[nid] = Outcome("retry", error=later[0].error or "edit failed", retry_after=later[0].retry_after,
                                  rate_limited=later[0].rate_limited)
        # a deleted or uneditable message must not hide a resolution: post it instead
        remaining[nid] += [a for a in notification_alerts(n) if a.fingerprint in gone]
        if ok:
            shown_by_edit.append((n, ok))
            resolved_shown += [(rcv.name, fp) for fp in ok]

    # 2. new messages, several notifications per message
    groups: list[AlertGroup] = []
    for n, rcv in batch:
        keep = remaining[n.id]
        if keep or (n.kind != "alerts" and not n.sent):
            groups.append(to_group(n, rcv, keep))
    needs: dict[int, set[int]] = {n.id: set() for n, _ in batch}  # notification → messages it still waits for
    messages = []
    if groups:
        username = batch[0][1].discord.username if batch[0][1].discord else "perf-alerts"
        messages = build_messages(groups, username=username, dashboard_url=dashboard_url)
        for i, msg in enumerate(messages):
            for key in msg.group_keys:
                needs[int(_parts_of(key)[1:])].add(i)

    complete_now = [by_id[nid][0] for nid, w in needs.items() if not w and nid not in failed]
    if shown_by_edit or complete_now:
        await ctx.accepted(Accepted(None, shown_by_edit, complete_now, [], resolved_shown))
    done.update(n.id for n in complete_now)

    thread_id = batch[0][1].discord.thread_id if batch[0][1].discord else None
    for i, msg in enumerate(messages):
        nids = sorted({int(_parts_of(k)[1:]) for k in msg.group_keys})
        lost = await ctx.lost()
        if lost.intersection(nids):
            # another sender owns part of this message now: it sends its notifications, ours wait
            for nid in nids:
                failed.setdefault(nid, Outcome("lost") if nid in lost else Outcome(
                    "retry", error="shared a message with a notification another sender took over",
                    retry_after=0.0, rate_limited=True))
            continue
        res = await client.execute(url, msg, wait=True, thread_id=thread_id)
        if res.outcome == "delivered":
            shown: list[tuple[Notification, list[str]]] = []
            completed = []
            announced: list[tuple[Notification, str]] = []
            resolved: list[tuple[str, str]] = []
            state = {a.fingerprint: a.state for g in groups for a in g.alerts}
            for nid in nids:
                n, rcv = by_id[nid]
                mine = set(n.fingerprints)
                in_msg = [fp for fp in msg.alert_fingerprints if fp in mine]
                shown.append((n, in_msg))
                announced += [(n, fp) for fp in in_msg if state.get(fp) == AlertState.FIRING]
                resolved += [(rcv.name, fp) for fp in in_msg if state.get(fp) == AlertState.RESOLVED]
                needs[nid].discard(i)
                if not needs[nid] and nid not in failed:
                    completed.append(n)
            await ctx.accepted(Accepted(res.message_id, shown, completed, announced, resolved))
            done.update(n.id for n in completed)
        else:
            for nid in nids:
                if nid not in failed or res.outcome in ("disabled", "dead"):
                    failed[nid] = Outcome(res.outcome, error=res.error, retry_after=res.retry_after,
                                          rate_limited=bool(res.rate_limited))
            if res.outcome == "disabled":
                break  # the webhook is gone: do not keep knocking (Discord bans IPs that do)

    out: dict[int, Outcome] = {}
    for n, _ in batch:
        if n.id in done:
            out[n.id] = Outcome("delivered")
        elif n.id in failed:
            out[n.id] = failed[n.id]
        else:
            out[n.id] = Outcome("disabled", error="webhook disabled during this delivery")
    return out
