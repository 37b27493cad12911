"""Annotation templates: `{{ labels.agent }}`, `{{ value }}`, `{{ $labels.agent }}` (promtool style).

A deliberately tiny, safe renderer: lookups and a few filters, no code execution.
A bottom-layer utility (it needs only `timeutil`): the alert state machine renders a rule's
annotations with it, insights and the CLI format numbers with `fmt_number`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

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


def render(template: str, ctx: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        v = _lookup(ctx, m.group(1))
        for fm in _FILTER.finditer(m.group(2) or ""):
            v = _apply(v, fm.group(1), fm.group(2))
        return fmt_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    return _TAG.sub(sub, template)


def template_problems(template: str) -> list[str]:
    """Unbalanced or unsupported tags, for check-config."""
    stripped = _TAG.sub("", template)
    if "{{" in stripped or "}}" in stripped:
        return [f"cannot parse template tag in {template!r} (supported: {{{{ labels.NAME }}}}, {{{{ value }}}}, {{{{ threshold }}}}, filters | round(N), | pct, | duration)"]
    return []
