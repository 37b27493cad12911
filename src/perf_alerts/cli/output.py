"""Printing for the CLI: JSON for programs, rich tables for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def error(message: str) -> None:
    from perf_alerts.notify.redact import redact

    sys.stderr.write(f"perf-alerts: error: {redact(message)}\n")


def warn(message: str) -> None:
    from perf_alerts.notify.redact import redact

    sys.stderr.write(f"perf-alerts: warning: {redact(message)}\n")


def stderr_line(text: str) -> None:
    sys.stderr.write(text + "\n")


def console() -> Any:
    from rich.console import Console

    # piped output is read by people too: do not squeeze tables into 80 columns
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:  # Text(): data such as "[FIRING:2]" is shown as is, never read as rich markup
        t.add_row(*[Text("" if x is None else str(x)) for x in r])
    console().print(t)


def line(text: str = "") -> None:
    console().print(text, markup=False, highlight=False)
