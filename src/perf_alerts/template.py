"""Annotation templates: `{{ labels.agent }}`, `{{ value }}`, `{{ $labels.agent }}` (promtool style).

A deliberately tiny, safe renderer: lookups and a few filters, no code execution.
A bottom-layer utility (it needs only `timeutil` and `textsafe`): the alert state machine
renders a rule's annotations with it (`render_annotation`), insights and the CLI format
numbers with `fmt_number`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping
from urllib.parse import quote

from perf_alerts.textsafe import discord_escape

_TAG = re.compile(r"\{\{\s*(\$?[a-zA-Z_][\w.]*)\s*((?:\|\s*\w+(?:\(\s*-?\d*\s*\))?\s*)*)\}\}")
_FILTER = re.compile(r"\|\s*(\w+)(?:\(\s*(-?\d*)\s*\))?")


def fmt_number(x: Any, digits: int = 4) -> str:
    """Numbers as people read them: 4 significant digits, no scientific notation for normal sizes."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    mag = math.floor(math.log10(abs(x))) if x != 0 else 0
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}".rstrip("0").rstrip(".")


def _lookup(ctx: Mapping[str, Any], path: str) -> Any:
    cur: Any = ctx
    for part in path.lstrip("$").split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return ""
    return cur


def _apply(value: Any, name: str, arg: str | None) -> Any:
    if name == "round":
        try:
            return round(float(value), int(arg) if arg else 0)
        except (TypeError, ValueError):
            return value
    if name == "upper":
        return str(value).upper()
    if name == "lower":
        return str(value).lower()
    if name == "pct":
        try:
            return f"{float(value) * 100:.1f}%"
        except (TypeError, ValueError):
            return value
    if name == "duration":
        from perf_alerts.timeutil import format_duration

        try:
            return format_duration(float(value))
        except (TypeError, ValueError):
            return value
    return value


def render(template: str, ctx: Mapping[str, Any], escape: Callable[[str], str] | None = None) -> str:
    """`template` with every tag replaced by its value from `ctx`.

    `escape`, when given, is applied to each substituted value (after its filters), never to
    the template's own text: the value-level escaping of data for the place the text goes.
    """
    def sub(m: re.Match[str]) -> str:
        v = _lookup(ctx, m.group(1))
        for fm in _FILTER.finditer(m.group(2) or ""):
            v = _apply(v, fm.group(1), fm.group(2))
        text = fmt_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        return text if escape is None else escape(text)

    return _TAG.sub(sub, template)


def _url_component(text: str) -> str:
    return quote(text, safe="")


def render_annotation(name: str, template: str, ctx: Mapping[str, Any]) -> str:
    """One annotation of an alert, rendered once when the alert changes state and stored.

    Annotations are Discord markdown: the config author's text is kept exactly as written
    (`**{{ labels.agent }}** is slow`, a masked link to a runbook), and every value substituted
    into it is escaped at the value level (`textsafe.discord_escape`), so a label value pushed
    by anyone — `[click me](http://evil…)`, `@everyone`, a backtick — shows in the channel as
    the literal text it is. An annotation whose name ends in `url` (`runbook_url`) is a link:
    its values are percent-encoded instead, so data cannot add a path, a query or a `)` that
    closes the masked link it is shown in.

    Why the stored text is the escaped one (and not a plain rendering plus a Discord one, or
    values wrapped in markers that the Discord payload escapes later): the alert keeps one
    annotation text that the outbox snapshots and every front end shows; a second copy would
    need another stored field, markers would leak into the API, the CLI and test-rules, and
    the Discord payload alone cannot tell data from the author's markdown once they are
    joined. Escaping is minimal (`gpt-4o-mini`, `research_task` are unchanged), so the API,
    the dashboard and the CLI show the markdown source they already showed (`**` and all),
    with a backslash only before what Discord would otherwise have read as markdown.
    """
    escape = _url_component if name.lower().endswith("url") else discord_escape
    return render(template, ctx, escape)


# what an annotation template can use: `perf_alerts.alerts.state.template_context` (kept equal by a test)
TEMPLATE_VARIABLES = ("labels.NAME", "value", "threshold", "op", "rule", "metric", "window", "severity", "detail.NAME")
TEMPLATE_FILTERS = ("round(N)", "upper", "lower", "pct", "duration")
SUPPORTED_TEXT = ("supported: " + ", ".join(f"{{{{ {v} }}}}" for v in TEMPLATE_VARIABLES)
                  + "; filters: " + ", ".join(f"| {f}" for f in TEMPLATE_FILTERS))


def template_problems(template: str) -> list[str]:
    """Unbalanced tags, unknown variables and unknown filters, for check-config; each names the
    supported variables and filters."""
    problems: list[str] = []
    stripped = _TAG.sub("", template)
    if "{{" in stripped or "}}" in stripped:
        problems.append(f"cannot parse a template tag in {template!r} ({SUPPORTED_TEXT})")
    roots = {v.split(".")[0] for v in TEMPLATE_VARIABLES}
    filters = {f.split("(")[0] for f in TEMPLATE_FILTERS}
    for m in _TAG.finditer(template):
        path = m.group(1).lstrip("$").split(".")
        if path[0] not in roots or (path[0] in ("labels", "detail")) != (len(path) == 2):
            problems.append(f"unknown template variable {{{{ {m.group(1)} }}}} ({SUPPORTED_TEXT})")
        for fm in _FILTER.finditer(m.group(2) or ""):
            if fm.group(1) not in filters:
                problems.append(f"unknown template filter | {fm.group(1)} in {{{{ {m.group(0)[2:-2].strip()} }}}} "
                                f"({SUPPORTED_TEXT})")
    return problems
