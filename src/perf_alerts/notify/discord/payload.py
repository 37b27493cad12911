"""Alert groups -> Discord webhook messages that Discord will accept, and that hide nothing.

Why this shape: Discord rejects a whole message for one over-long field (400 50035) and
rate-limits at ~5 requests / 2 s per webhook, so we (1) truncate every field ourselves and
keep each message under the 10-embed / 6000-character budget, (2) pack the embeds of several
groups into one message so a storm costs a handful of requests, and (3) turn large groups
into a digest embed with the complete list attached as a file, so every alert is visible.

Data is escaped for Discord markdown (`perf_alerts.textsafe`): label values shown in titles
are `discord_escape`d, the labels field shows each label as an inline code span
(`discord_code`), and annotations arrive escaped at the value level from
`template.render_annotation` (the config author's markdown in them is kept as written).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from perf_alerts.model import Alert, AlertState, Severity, sort_worst_first
from perf_alerts.notify.discord import limits as L
from perf_alerts.textsafe import discord_code, discord_escape, terminal_safe
from perf_alerts.timeutil import format_duration, iso

__all__ = [
    "AlertGroup",
    "DiscordMessage",
    "build_messages",
    "build_resolved_edit",
    "safe_username",
    "SEVERITY_COLORS",
    "RESOLVED_COLOR",
    "DEFAULT_USERNAME",
]

DEFAULT_USERNAME = "perf-alerts"
SEVERITY_COLORS: dict[Severity, int] = {
    Severity.CRITICAL: 0xE53935,  # red
    Severity.WARNING: 0xFFA000,  # amber
    Severity.INFO: 0x1E88E5,  # blue
}
RESOLVED_COLOR = 0x43A047  # green
_ICON = {Severity.CRITICAL: "🔴", Severity.WARNING: "🟠", Severity.INFO: "🔵"}
_RESOLVED_ICON = "🟢"

# Room kept free in every message for rounding and safety; the 6000 total is never approached.
_TOTAL_BUDGET = L.EMBEDS_TOTAL_MAX - 100
_DIGEST_LINE_MAX = 140
_ROW_FIELD_MAX = 1500  # per-cell cap in attachment rows: keeps a row ≲ 4 KB whatever the labels
_MAX_ROLES_PER_MESSAGE = 60  # "<@&id> " ≤ 26 chars each -> stays well under 2000 content chars
_SNOWFLAKE_RE = re.compile(r"^[0-9]{1,20}$")
_SLUG_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_LINK_TARGET_RE = re.compile(r"[()<>\[\]`]")
_FileTuple = tuple[str, bytes, str]


@dataclass
class AlertGroup:
    """One notification for one receiver: the alerts that share the route's group_by labels."""

    key: str
    alerts: list[Alert]
    group_labels: dict[str, str]
    mention_roles: Sequence[str] = ()
    title: str | None = None
    # For ad-hoc messages / executive summaries: free text and files (a PNG is shown as the
    # embed image through attachment://<name>).
    description: str | None = None
    files: Sequence[_FileTuple] = ()


@dataclass
class DiscordMessage:
    """One Execute Webhook request: JSON body, files for multipart, and what it makes visible."""

    payload: dict[str, Any]
    files: list[_FileTuple] = field(default_factory=list)
    alert_fingerprints: list[str] = field(default_factory=list)
    group_keys: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- small helpers


def safe_username(name: str | None) -> str:
    """A webhook username Discord accepts (1–80 chars, no "discord"/"clyde"), else the default."""
    if name is None or L.username_problem(name) is not None:
        return DEFAULT_USERNAME
    return name.strip()


def _safe_url(url: str | None) -> str | None:
    if not url or not isinstance(url, str):
        return None
    u = url.strip()
    if not u.lower().startswith(("http://", "https://")) or len(u) > L.URL_MAX or any(c.isspace() for c in u):
        return None
    return u


def _name(alert: Alert) -> str:
    return alert.labels.get("alertname") or alert.rule or "alert"


def _fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.6g}"


def _value_text(a: Alert) -> str:
    """The value of the state change the message reports: the firing value while firing, the
    resolving value once resolved ("no data" when the series stopped reporting)."""
    if a.state == AlertState.RESOLVED and a.fired_value is not None and a.resolved_value is None:
        return "no data"
    return _fmt_num(a.shown_value)


def _threshold_text(a: Alert) -> str:
    """The rule's condition, operator included (`>= 3`), so value and threshold read consistently."""
    if a.threshold is None:
        return "-"
    return f"{a.operator} {_fmt_num(a.threshold)}" if a.operator else _fmt_num(a.threshold)


def _code(text: str) -> str:
    """Inline code span; backticks inside would break it, so they are replaced, and newlines and
    control characters are escaped."""
    return discord_code(text)


def _labels_text(labels: dict[str, str], limit: int, exclude: Iterable[str] = ()) -> str:
    ex = set(exclude)
    items = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in ex]
    if not items:
        return "-"
    out: list[str] = []
    used = 0
    for i, it in enumerate(items):
        piece = _code(L.truncate(it, 200))
        more = f" … (+{len(items) - i} more)"
        if used + len(piece) + 1 + len(more) > limit and i < len(items):
            if used + len(piece) + 1 <= limit and i == len(items) - 1:
                out.append(piece)
                return " ".join(out)
            out.append(more.strip())
            return L.truncate(" ".join(out), limit)
        out.append(piece)
        used += len(piece) + 1
    return L.truncate(" ".join(out), limit)


def _distinct_labels(alert: Alert, group: AlertGroup, markdown: bool = False) -> str:
    """The labels that tell this alert from the rest of its group, `k=v, ...`; with `markdown`,
    escaped for text Discord renders (a title), else raw (for a code span)."""
    esc = discord_escape if markdown else str
    items = [
        f"{esc(k)}={esc(v)}" for k, v in sorted(alert.labels.items()) if k != "alertname" and group.group_labels.get(k) != v
    ]
    return ", ".join(items)


def _state_icon(a: Alert) -> str:
    return _RESOLVED_ICON if a.state == AlertState.RESOLVED else _ICON.get(a.severity, "⚪")


def _worst_color(alerts: Sequence[Alert]) -> int:
    firing = [a for a in alerts if a.state != AlertState.RESOLVED]
    if not firing:
        return RESOLVED_COLOR
    worst = max(firing, key=lambda a: a.severity.rank)
    return SEVERITY_COLORS.get(worst.severity, SEVERITY_COLORS[Severity.INFO])


def _group_name(group: AlertGroup) -> str:
    """A title's name: the notification's own title (text its author wrote, kept as is), else the
    alert name, else the group key (data: escaped for markdown)."""
    if group.title:
        return group.title
    if group.alerts:
        return discord_escape(_name(group.alerts[0]))
    return discord_escape(group.key) if group.key else "notification"


def _status_prefix(alerts: Sequence[Alert]) -> str:
    firing = sum(1 for a in alerts if a.state != AlertState.RESOLVED)
    resolved = len(alerts) - firing
    if firing == 0:
        return "[RESOLVED]"
    return f"[FIRING:{firing}]" if resolved == 0 else f"[FIRING:{firing}, RESOLVED:{resolved}]"


def _text(a: Alert) -> str:
    summary = (a.annotations.get("summary") or "").strip()
    desc = (a.annotations.get("description") or "").strip()
    if summary and desc and desc != summary:
        return f"{summary}\n\n{desc}"
    return summary or desc


def _timestamp(a: Alert) -> str | None:
    if a.state == AlertState.RESOLVED and a.resolved_at is not None:
        return iso(a.resolved_at)
    return iso(a.started_at if a.started_at is not None else a.active_since)


def _slug(key: str) -> str:
    s = _SLUG_RE.sub("-", key).strip("-.")[:60]
    return s or "group"


# --------------------------------------------------------------------------- embeds


def _detail_embed(alert: Alert, group: AlertGroup, budget: int, dashboard_url: str | None) -> dict[str, Any]:
    """One alert in full: description, value/threshold/window/labels/runbook fields, timestamp.
    Every piece is capped so the embed's counted size stays within `budget`."""
    resolved = alert.state == AlertState.RESOLVED
    prefix = "[RESOLVED]" if resolved else _status_prefix(group.alerts)
    title = f"{prefix} {_group_name(group)}"
    if len(group.alerts) > 1:
        distinct = _distinct_labels(alert, group, markdown=True)
        if distinct:
            title += f" · {distinct}"
    title = L.truncate(title, min(L.EMBED_TITLE_MAX, max(40, budget // 6)))

    fields: list[dict[str, Any]] = [
        {"name": "Value", "value": L.truncate(_value_text(alert), 64), "inline": True},
        {"name": "Threshold", "value": L.truncate(_threshold_text(alert), 64), "inline": True},
        {"name": "Window", "value": L.truncate(alert.window or "-", 64), "inline": True},
        {"name": "Severity", "value": alert.severity.value, "inline": True},
    ]
    if resolved and alert.started_at is not None and alert.resolved_at is not None:
        fields.append(
            {"name": "Duration", "value": format_duration(alert.resolved_at - alert.started_at), "inline": True}
        )
        if alert.fired_value is not None:
            fields.append({"name": "Fired with", "value": L.truncate(
                f"{_fmt_num(alert.fired_value)} at {iso(alert.started_at)}", 64), "inline": True})
    fields.append(
        {"name": "Labels", "value": _labels_text(alert.labels, min(L.FIELD_VALUE_MAX, max(60, budget // 4)))}
    )
    runbook = _safe_url(alert.annotations.get("runbook_url"))
    if runbook:
        # a parenthesis or angle bracket in the address would end the masked link early
        link = f"[Open runbook]({_LINK_TARGET_RE.sub(lambda m: f'%{ord(m.group(0)):02X}', runbook)})"
        cap = min(L.FIELD_VALUE_MAX, max(60, budget // 5))
        fields.append({"name": "Runbook", "value": link if len(link) <= cap else L.truncate(runbook, cap)})

    fp = f"fp {alert.fingerprint}"
    footer_cap = min(L.FOOTER_TEXT_MAX, max(len(fp) + 20, budget // 8))
    # footers are not markdown: only control characters need escaping
    key_part = L.truncate(f"perf-alerts · {terminal_safe(group.key, newlines=False)}", max(1, footer_cap - len(fp) - 3))
    embed: dict[str, Any] = {
        "title": title,
        "color": RESOLVED_COLOR if resolved else SEVERITY_COLORS.get(alert.severity, SEVERITY_COLORS[Severity.INFO]),
        "fields": fields,
        "footer": {"text": f"{key_part} · {fp}"},
    }
    ts = _timestamp(alert)
    if ts:
        embed["timestamp"] = ts
    if dashboard_url:
        embed["url"] = dashboard_url

    text = _text(alert)
    room = min(L.EMBED_DESCRIPTION_MAX, budget - L.embed_chars(embed))
    if text and room >= 20:
        embed["description"] = L.truncate(text, room)
    # Last resort for tiny budgets: drop the optional fields, widest first, until it fits.
    while L.embed_chars(embed) > budget and len(embed["fields"]) > 0:
        widest = max(range(len(embed["fields"])), key=lambda i: L.text_len(embed["fields"][i]["value"]))
        embed["fields"].pop(widest)
    if L.embed_chars(embed) > budget and "description" in embed:
        del embed["description"]
    return embed


def _digest_embed(
    group: AlertGroup, budget: int, dashboard_url: str | None, attachment_name: str | None
) -> tuple[dict[str, Any], list[str]]:
    """A large group in one embed: counts by severity and state, the worst alerts first,
    and a pointer to the attached full list. Returns the embed and the fingerprints it names."""
    alerts = sort_worst_first(list(group.alerts))
    firing = [a for a in alerts if a.state != AlertState.RESOLVED]
    resolved = [a for a in alerts if a.state == AlertState.RESOLVED]
    title = L.truncate(f"{_status_prefix(alerts)} {_group_name(group)}", min(L.EMBED_TITLE_MAX, max(40, budget // 5)))
    counts = " · ".join(
        f"{_ICON[s]} {n} {s.value}"
        for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
        if (n := sum(1 for a in firing if a.severity == s))
    )
    head = [f"**{len(firing)} firing**" + (f" — {counts}" if counts else "")]
    if resolved:
        head.append(f"{_RESOLVED_ICON} **{len(resolved)} resolved**")
    if group.group_labels:
        head.append("Group: " + _labels_text(dict(group.group_labels), 160))
    footer = {"text": L.truncate(f"perf-alerts · digest of {len(alerts)} alerts", 100)}
    embed: dict[str, Any] = {"title": title, "color": _worst_color(alerts), "footer": footer}
    starts = [a.started_at for a in firing if a.started_at is not None]
    ts = iso(min(starts)) if starts else (_timestamp(alerts[0]) if alerts else None)
    if ts:
        embed["timestamp"] = ts
    if dashboard_url:
        embed["url"] = dashboard_url

    fixed = L.text_len(title) + L.text_len(footer["text"])
    room = min(L.EMBED_DESCRIPTION_MAX, budget - fixed)
    head_text = L.truncate("\n".join(head), max(20, room // 3))
    shown: list[str] = []
    lines: list[str] = []
    for i, a in enumerate(alerts):
        remaining = len(alerts) - i - 1
        where = f" — full list attached ({attachment_name})" if attachment_name else ""
        tail = f"… and {remaining} more{where}" if remaining else (f"Full list attached ({attachment_name})" if attachment_name else "")
        distinct = _distinct_labels(a, group) or _name(a)
        val = (f" {_value_text(a)}" + (f" ({_threshold_text(a)})" if a.threshold is not None else "")
               if a.shown_value is not None or a.state == AlertState.RESOLVED else "")
        summary = (a.annotations.get("summary") or "").strip().replace("\n", " ")
        line = L.truncate(f"{_state_icon(a)} {_code(L.truncate(distinct, 60))}{val}" + (f" · {summary}" if summary else ""), _DIGEST_LINE_MAX)
        candidate = "\n".join([head_text, "", *lines, line, tail]).strip()
        if len(candidate) > room:
            break
        lines.append(line)
        shown.append(a.fingerprint)
    remaining = len(alerts) - len(lines)
    where = f" — full list attached ({attachment_name})" if attachment_name else ""
    tail = f"… and {remaining} more{where}" if remaining else (f"Full list attached ({attachment_name})" if attachment_name else "")
    desc = "\n".join([head_text, "", *lines, tail]).strip()
    embed["description"] = L.truncate(desc, max(1, room))
    return embed, shown


def _free_embed(group: AlertGroup, budget: int, dashboard_url: str | None, image: str | None) -> dict[str, Any]:
    """An ad-hoc notification (no alerts): title, free text, optional attached image."""
    title = L.truncate(group.title or group.key or "perf-alerts", L.EMBED_TITLE_MAX)
    embed: dict[str, Any] = {"title": title, "color": SEVERITY_COLORS[Severity.INFO]}
    room = min(L.EMBED_DESCRIPTION_MAX, budget - L.text_len(title))
    if group.description and room > 0:
        embed["description"] = L.truncate(group.description, room)
    if dashboard_url:
        embed["url"] = dashboard_url
    if image:
        embed["image"] = {"url": f"attachment://{image}"}
    return embed


# --------------------------------------------------------------------------- attachment rows

_ROW_HEADER = "| state | severity | alert | labels | value | threshold | window | started | resolved | summary | fingerprint |\n|---|---|---|---|---|---|---|---|---|---|---|\n"


def _cell(text: str | None) -> str:
    t = (text or "").replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    t = terminal_safe(t, newlines=False)  # the file is read in terminals too
    return L.truncate(t, _ROW_FIELD_MAX) if t.strip() else "-"


def _group_section(group: AlertGroup) -> list[bytes]:
    """The group's complete alert list as markdown table rows (header first), worst first."""
    alerts = sort_worst_first(list(group.alerts))
    head = (
        f"\n## {_cell(group.key)}\n\n{len(alerts)} alerts — "
        f"{sum(1 for a in alerts if a.state != AlertState.RESOLVED)} firing, "
        f"{sum(1 for a in alerts if a.state == AlertState.RESOLVED)} resolved\n\n{_ROW_HEADER}"
    )
    rows = [head.encode()]
    for a in alerts:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))
        rows.append(
            (
                f"| {a.state.value} | {a.severity.value} | {_cell(_name(a))} | {_cell(labels)} | {_value_text(a)} | "
                f"{_cell(_threshold_text(a))} | {_cell(a.window)} | {iso(a.started_at) or '-'} | {iso(a.resolved_at) or '-'} | "
                f"{_cell(a.annotations.get('summary'))} | {a.fingerprint} |\n"
            ).encode()
        )
    return rows


def _attachment_files(name: str, rows: list[bytes]) -> list[_FileTuple]:
    """The rows as one markdown file, or `-partN` files when over Discord's 10 MiB per file."""
    head = b"# perf-alerts: full alert list\n"
    parts: list[list[bytes]] = [[head]]
    size = len(head)
    for r in rows:
        if size + len(r) > L.FILE_SIZE_MAX:
            parts.append([head])
            size = len(head)
        parts[-1].append(r)
        size += len(r)
    if len(parts) == 1:
        return [(name, b"".join(parts[0]), "text/markdown; charset=utf-8")]
    stem = name[:-3] if name.endswith(".md") else name
    return [(f"{stem}-part{i + 1}.md", b"".join(p), "text/markdown; charset=utf-8") for i, p in enumerate(parts)]


def _attachment_name(key: str) -> str:
    digest = hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()[:6]
    return f"alerts-{_slug(key)[:40]}-{digest}.md"


# --------------------------------------------------------------------------- packing


@dataclass
class _Rendered:
    group: AlertGroup
    embeds: list[dict[str, Any]]
    visible: list[str]
    attached: list[str]  # fingerprints listed in this group's attached file(s)
    files: list[_FileTuple]  # the digest's full list and/or the group's own files
    roles: list[str]

    @property
    def chars(self) -> int:
        return L.embeds_chars(self.embeds)


def _roles(group: AlertGroup) -> list[str]:
    out: list[str] = []
    for r in group.mention_roles:
        r = str(r).strip()
        if _SNOWFLAKE_RE.match(r) and r not in out:
            out.append(r)
    return out[:_MAX_ROLES_PER_MESSAGE]


def _render(
    group: AlertGroup,
    *,
    dashboard_url: str | None,
    max_embeds_per_group: int,
    digest_budget: int,
    attach: bool,
    force_digest: bool = False,
) -> _Rendered:
    roles = _roles(group)
    files = [f for f in group.files if f[0]]
    if not group.alerts:
        image = next((f[0] for f in files if f[0].lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp"))), None)
        emb = _free_embed(group, _TOTAL_BUDGET, dashboard_url, image)
        return _Rendered(group, [emb], [], [], files, roles)
    n = len(group.alerts)
    if n <= max_embeds_per_group and not force_digest:
        budget = _TOTAL_BUDGET // n
        alerts = sort_worst_first(list(group.alerts))
        embeds = [_detail_embed(a, group, budget, dashboard_url) for a in alerts]
        return _Rendered(group, embeds, [a.fingerprint for a in alerts], [], files, roles)
    name = _attachment_name(group.key) if attach else None
    emb, shown = _digest_embed(group, digest_budget, dashboard_url, name)
    attached: list[str] = []
    if name:
        files = files + _attachment_files(name, _group_section(group))
        attached = [a.fingerprint for a in group.alerts]
    return _Rendered(group, [emb], shown, attached, files, roles)


def _group_order(group: AlertGroup) -> tuple[int, int]:
    firing = [a.severity.rank for a in group.alerts if a.state != AlertState.RESOLVED]
    return (0 if _roles(group) else 1, -(max(firing) if firing else 0))


def _split_giant(group: AlertGroup, max_alerts: int) -> list[AlertGroup]:
    """Split a group so one message's ten 10 MiB files can always hold its full list."""
    if len(group.alerts) <= max_alerts:
        return [group]
    alerts = sort_worst_first(list(group.alerts))
    chunks = [alerts[i : i + max_alerts] for i in range(0, len(alerts), max_alerts)]
    return [
        AlertGroup(
            key=f"{group.key} (part {i + 1}/{len(chunks)})",
            alerts=c,
            group_labels=group.group_labels,
            mention_roles=group.mention_roles if i == 0 else (),
            title=(f"{_group_name(group)} (part {i + 1}/{len(chunks)})"),
        )
        for i, c in enumerate(chunks)
    ]


class _Msg:
    """One message being filled: embeds, files and the fingerprints they show."""

    def __init__(self) -> None:
        self.embeds: list[dict[str, Any]] = []
        self.visible: list[str] = []
        self.keys: list[str] = []
        self.roles: list[str] = []
        self.files: list[_FileTuple] = []

    def fits(self, r: _Rendered) -> bool:
        if not self.embeds:
            return True
        if len(self.embeds) + len(r.embeds) > L.EMBEDS_MAX:
            return False
        if L.embeds_chars(self.embeds) + r.chars > _TOTAL_BUDGET:
            return False
        if len(set(self.roles) | set(r.roles)) > _MAX_ROLES_PER_MESSAGE:
            return False
        if len(self.files) + len(r.files) > L.FILES_MAX:
            return False
        names = {f[0] for f in self.files}
        return not any(f[0] in names for f in r.files)

    def add(self, r: _Rendered) -> None:
        self.embeds.extend(r.embeds)
        self.visible.extend(r.visible)
        self.visible.extend(r.attached)
        self.keys.append(r.group.key)
        self.roles.extend(x for x in r.roles if x not in self.roles)
        self.files.extend(r.files)

    def build(self, username: str) -> DiscordMessage:
        payload: dict[str, Any] = {"username": username, "embeds": self.embeds}
        if self.roles:
            payload["content"] = " ".join(f"<@&{r}>" for r in self.roles)
            payload["allowed_mentions"] = {"parse": [], "roles": list(self.roles)}
        else:
            payload["allowed_mentions"] = {"parse": []}
        if self.files:
            payload["attachments"] = [{"id": i, "filename": f[0]} for i, f in enumerate(self.files)]
        seen: set[str] = set()
        fps = [fp for fp in self.visible if not (fp in seen or seen.add(fp))]  # type: ignore[func-returns-value]
        return DiscordMessage(payload=payload, files=list(self.files), alert_fingerprints=fps, group_keys=list(self.keys))


def build_messages(
    groups: list[AlertGroup],
    *,
    username: str = DEFAULT_USERNAME,
    dashboard_url: str | None = None,
    max_embeds_per_group: int = 5,
    digest_budget: int = 580,
    max_alerts_per_digest: int = 5000,
) -> list[DiscordMessage]:
    """Render groups into as few messages as Discord's limits allow.

    A group of at most `max_embeds_per_group` alerts gets one detailed embed per alert;
    a larger one becomes a digest embed (≈`digest_budget` characters, so ten fit a message)
    plus its complete list in an attached markdown file `alerts-<key>-<hash>.md`. Groups with role mentions and the
    worst severities come first. Every returned payload passes `limits.validate_payload`.
    """
    username = safe_username(username)
    dash = _safe_url(dashboard_url)
    per_group = max(1, min(L.EMBEDS_MAX, int(max_embeds_per_group)))
    digest_budget = max(200, min(_TOTAL_BUDGET, int(digest_budget)))
    expanded = [g2 for g in groups for g2 in _split_giant(g, max(1, max_alerts_per_digest))]
    ordered = sorted(expanded, key=_group_order)

    messages: list[DiscordMessage] = []
    current = _Msg()
    for g in ordered:
        r = _render(g, dashboard_url=dash, max_embeds_per_group=per_group, digest_budget=digest_budget, attach=True)
        if not current.fits(r):
            messages.append(current.build(username))
            current = _Msg()
        current.add(r)
    if current.embeds:
        messages.append(current.build(username))
    return messages


def build_resolved_edit(
    target: AlertGroup | Alert | Sequence[AlertGroup],
    *,
    dashboard_url: str | None = None,
    max_embeds_per_group: int = 5,
    digest_budget: int = 580,
) -> dict[str, Any]:
    """PATCH body that re-renders an earlier message's groups with their current states
    (resolved alerts green), so the channel shows one message per incident, not two.

    Pass the same groups the original message carried (`DiscordMessage.group_keys`), with
    the alerts updated. Content (the role mentions) and attachments are left untouched.
    """
    if isinstance(target, Alert):
        name = _name(target)
        groups = [AlertGroup(key=f"alertname={name}", alerts=[target], group_labels={"alertname": name})]
    elif isinstance(target, AlertGroup):
        groups = [target]
    else:
        groups = list(target)
    dash = _safe_url(dashboard_url)
    per_group = max(1, min(L.EMBEDS_MAX, int(max_embeds_per_group)))
    rendered = [
        _render(g, dashboard_url=dash, max_embeds_per_group=per_group, digest_budget=digest_budget,
                attach=False)
        for g in groups
    ]

    def size(rs: list[_Rendered]) -> tuple[int, int]:
        return sum(len(r.embeds) for r in rs), sum(r.chars for r in rs)

    # Too big for one message: collapse the groups with most embeds into digests first.
    while size(rendered)[0] > L.EMBEDS_MAX or size(rendered)[1] > _TOTAL_BUDGET:
        multi = [i for i, r in enumerate(rendered) if len(r.embeds) > 1]
        if not multi:
            break
        i = max(multi, key=lambda k: len(rendered[k].embeds))
        rendered[i] = _render(rendered[i].group, dashboard_url=dash, max_embeds_per_group=per_group,
                              digest_budget=digest_budget, attach=False, force_digest=True)
    embeds = [e for r in rendered for e in r.embeds]
    if len(embeds) > L.EMBEDS_MAX or L.embeds_chars(embeds) > _TOTAL_BUDGET:
        # More groups than one message can show: keep what fits, summarise the rest.
        kept: list[dict[str, Any]] = []
        for e in embeds:
            if len(kept) < L.EMBEDS_MAX - 1 and L.embeds_chars(kept + [e]) <= _TOTAL_BUDGET - 200:
                kept.append(e)
        rest = len(embeds) - len(kept)
        kept.append({"title": f"… and {rest} more", "description": "Further groups are listed in the attached file.",
                     "color": RESOLVED_COLOR})
        embeds = kept
    return {"embeds": embeds, "allowed_mentions": {"parse": []}}
