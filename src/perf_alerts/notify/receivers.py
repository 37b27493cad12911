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
from typing import Any, Callable, Literal

import httpx

from perf_alerts.config import Receiver
from perf_alerts.model import Alert, AlertState, alert_from_snapshot
from perf_alerts.notify.discord import AlertGroup, DiscordClient, DiscordMessage, build_messages, build_resolved_edit
from perf_alerts.notify.outbox import Notification
from perf_alerts.notify.redact import redact
from perf_alerts.timeutil import iso

OutcomeKind = Literal["delivered", "retry", "dead", "disabled"]


@dataclass
class Outcome:
    kind: OutcomeKind
    message_ids: list[str] = field(default_factory=list)
    error: str | None = None
    retry_after: float | None = None
    rate_limited: bool = False  # a retry caused by a rate limit does not spend the retry budget


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
    """A Discord message as plain text: what the console receiver prints."""
    p = msg.payload
    lines = [f"─── to {receiver} as {p.get('username', 'perf-alerts')} " + "─" * 20]
    if p.get("content"):
        lines.append(str(p["content"]))
    for e in p.get("embeds", []):
        colour = e.get("color")
        lines.append(f"▌ {e.get('title', '')}" + (f"   (#{colour:06x})" if isinstance(colour, int) else ""))
        if e.get("description"):
            lines += ["▌ " + ln for ln in str(e["description"]).splitlines()]
        for f in e.get("fields", []):
            lines.append(f"▌ {f.get('name')}: {f.get('value')}")
        if e.get("footer"):
            lines.append(f"▌ — {e['footer'].get('text', '')}" + (f"  {e['timestamp']}" if e.get("timestamp") else ""))
    for name, data, _ in msg.files:
        lines.append(f"📎 {name} ({len(data):,} bytes)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- console / file


def send_console(notifications: list[Notification], receiver: Receiver, dashboard_url: str | None,
                 write: Callable[[str], None] | None = None) -> dict[int, Outcome]:
    stream = sys.stderr if receiver.console is not None and receiver.console.stream == "stderr" else sys.stdout
    out = write or (lambda s: (stream.write(s + "\n"), stream.flush()))
    groups = [to_group(n, receiver) for n in notifications]
    for msg in build_messages(groups, dashboard_url=dashboard_url):
        out(redact(render_text(msg, receiver.name)))
    return {n.id: Outcome("delivered") for n in notifications}


def send_file(notifications: list[Notification], receiver: Receiver) -> dict[int, Outcome]:
    assert receiver.file is not None
    path = Path(receiver.file.path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            for n in notifications:
                fh.write(json.dumps(_generic_body(n, receiver.name), default=str) + "\n")
    except OSError as e:
        return {n.id: Outcome("retry", error=f"cannot write {path}: {e.strerror}") for n in notifications}
    return {n.id: Outcome("delivered") for n in notifications}


def _generic_body(n: Notification, receiver: str) -> dict[str, Any]:
    """Alertmanager-like JSON, for the file and webhook receivers."""
    alerts = notification_alerts(n)
    return {
        "version": "1", "receiver": receiver, "kind": n.kind, "notification_id": n.id,
        "status": "firing" if any(a.state == AlertState.FIRING for a in alerts) else "resolved",
        "title": n.body.get("title"), "description": n.body.get("description"),
        "groupLabels": n.body.get("group_labels", {}),
        "alerts": [{
            "status": a.state.value, "fingerprint": a.fingerprint, "labels": a.labels, "annotations": a.annotations,
            "value": a.value, "threshold": a.threshold, "startsAt": iso(a.started_at), "endsAt": iso(a.resolved_at),
            "acknowledged": a.acknowledged, "escalation_level": a.escalation_level,
        } for a in alerts],
        "created_at": iso(n.created_at),
    }


# --------------------------------------------------------------------------- generic webhook


async def send_webhook(http: httpx.AsyncClient, notifications: list[Notification], receiver: Receiver) -> dict[int, Outcome]:
    assert receiver.webhook is not None
    cfg = receiver.webhook
    out: dict[int, Outcome] = {}
    for n in notifications:
        try:
            r = await http.post(cfg.url, json=_generic_body(n, receiver.name), headers=cfg.headers, timeout=cfg.timeout)
        except httpx.HTTPError as e:
            out[n.id] = Outcome("retry", error=redact(f"{type(e).__name__}: {e}"))
            continue
        if 200 <= r.status_code < 300:
            out[n.id] = Outcome("delivered")
        elif r.status_code == 429 or r.status_code >= 500:
            ra = r.headers.get("Retry-After")
            try:
                retry_after = float(ra) if ra else None
            except ValueError:
                retry_after = None
            out[n.id] = Outcome("retry", error=f"HTTP {r.status_code}", retry_after=retry_after,
                                rate_limited=r.status_code == 429)
        elif r.status_code in (401, 403, 404, 410):
            out[n.id] = Outcome("disabled", error=f"HTTP {r.status_code} from the webhook endpoint")
        else:
            out[n.id] = Outcome("dead", error=f"HTTP {r.status_code}: {redact(r.text[:200])}")
    return out


# --------------------------------------------------------------------------- Discord


@dataclass
class DiscordContext:
    """What the Discord sender needs from the store, passed in so this module stays I/O-free there."""

    message_for: Callable[[str, str], str | None]  # (receiver, fingerprint) → message id of its firing message
    message_groups: Callable[[str, str], list[AlertGroup]]  # (receiver, message id) → its groups, alerts current
    remember: Callable[[str, str, list[str], int], None]  # (receiver, message id, fingerprints, notification id)


async def send_discord(client: DiscordClient, url: str, batch: list[tuple[Notification, Receiver]],
                       ctx: DiscordContext, dashboard_url: str | None) -> dict[int, Outcome]:
    """Deliver every due notification for one webhook URL, packed into as few requests as possible.

    Resolved alerts whose firing message is known are shown by editing that message
    (PATCH) instead of posting again; if the edit fails they are posted as new messages.
    """
    out: dict[int, Outcome] = {}
    pending_ids: dict[int, list[str]] = {n.id: [] for n, _ in batch}
    failed: dict[int, Outcome] = {}

    # 1. edits for resolved alerts that have an original message
    groups: list[AlertGroup] = []
    owner: dict[str, tuple[Notification, Receiver]] = {}
    edits: dict[tuple[str, str], set[str]] = {}  # (receiver, message id) → resolved fingerprints
    for n, rcv in batch:
        alerts = notification_alerts(n)
        keep: list[Alert] = []
        for a in alerts:
            mid = ctx.message_for(rcv.name, a.fingerprint) if a.state == AlertState.RESOLVED and n.kind == "alerts" else None
            if mid:
                edits.setdefault((rcv.name, mid), set()).add(a.fingerprint)
            else:
                keep.append(a)
        if keep or not any(a.state == AlertState.RESOLVED for a in alerts) or n.kind != "alerts":
            g = to_group(n, rcv, keep)
            groups.append(g)
            owner[g.key] = (n, rcv)
        # a notification whose alerts are all shown by edits needs no new message

    edit_failed: dict[tuple[str, str], Outcome] = {}
    for (rname, mid), fps in edits.items():
        mgroups = ctx.message_groups(rname, mid)
        if not mgroups:
            edit_failed[(rname, mid)] = Outcome("dead", error="original message unknown")
            continue
        res = await client.edit(url, mid, build_resolved_edit(mgroups, dashboard_url=dashboard_url))
        if res.outcome != "delivered":
            edit_failed[(rname, mid)] = Outcome(res.outcome, error=res.error, retry_after=res.retry_after)
    if edit_failed:
        # post those resolved alerts instead (a deleted message must not hide a resolution)
        for n, rcv in batch:
            lost = [a for a in notification_alerts(n)
                    if any(a.fingerprint in edits.get(k, set()) for k in edit_failed if k[0] == rcv.name)]
            if not lost:
                continue
            key = f"n{n.id}"
            existing = next((g for g in groups if g.key == key), None)
            if existing is not None:
                existing.alerts.extend(lost)
            else:
                g = to_group(n, rcv, lost)
                groups.append(g)
                owner[g.key] = (n, rcv)

    # 2. new messages, several notifications per message
    attempted: set[int] = set()
    if groups:
        username = batch[0][1].discord.username if batch[0][1].discord else "perf-alerts"
        thread_id = batch[0][1].discord.thread_id if batch[0][1].discord else None
        for msg in build_messages(groups, username=username, dashboard_url=dashboard_url):
            res = await client.execute(url, msg, wait=True, thread_id=thread_id)
            for key in msg.group_keys:
                n, rcv = owner[key]
                attempted.add(n.id)
                if res.outcome == "delivered":
                    if res.message_id:
                        pending_ids[n.id].append(res.message_id)
                        firing = [fp for fp in msg.alert_fingerprints if fp in set(n.fingerprints)]
                        ctx.remember(rcv.name, res.message_id, firing, n.id)
                elif n.id not in failed or res.outcome in ("disabled", "dead"):
                    failed[n.id] = Outcome(res.outcome, error=res.error, retry_after=res.retry_after,
                                           rate_limited=bool(res.rate_limited))
            if res.outcome == "disabled":
                break  # the webhook is gone: do not keep knocking (Discord bans IPs that do)

    with_message = {owner[g.key][0].id for g in groups}
    for n, _ in batch:
        if n.id in failed:
            out[n.id] = failed[n.id]
        elif n.id in with_message and n.id not in attempted:
            out[n.id] = Outcome("disabled", error="webhook disabled during this delivery")
        else:
            out[n.id] = Outcome("delivered", message_ids=pending_ids[n.id])
    return out
