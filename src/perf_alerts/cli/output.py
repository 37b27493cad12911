"""Printing for the CLI: JSON for programs, rich tables for people, errors on stderr.

Everything printed goes through `textsafe.terminal_safe` here, once: label values, alert
text and error messages come from data anyone can push (the HTTP API, a file, a crew), and
printed raw an ESC sequence recolours the terminal, an OSC-8 sequence plants a hyperlink and
a CR or LF forges a line. A table cell and a `line()` show a newline as `\\n` (`block()` is
for text of several lines: a report, a crew's output). JSON escapes every C0 control itself;
C1 controls, line separators and bidi controls, which it leaves raw, are written as `\\uXXXX`
escapes (the same JSON document).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Iterable, Sequence

from perf_alerts.textsafe import terminal_safe

# characters JSON keeps raw (it escapes only C0, `"` and `\`) that a terminal or a reader acts on;
# outside strings a JSON text never has them, so replacing them with `\uXXXX` keeps it valid and equal
_JSON_UNSAFE_RE = re.compile("[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def emit_json(obj: Any) -> None:
    text = json.dumps(obj, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write(_JSON_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n")


def error(message: str) -> None:
    from perf_alerts.notify.redact import redact

    sys.stderr.write(f"perf-alerts: error: {terminal_safe(redact(message))}\n")


def warn(message: str) -> None:
    from perf_alerts.notify.redact import redact

    sys.stderr.write(f"perf-alerts: warning: {terminal_safe(redact(message))}\n")


def stderr_line(text: str) -> None:
    sys.stderr.write(terminal_safe(text) + "\n")


_console: tuple[Any, Any] | None = None  # (the sys.stdout it was made for, the Console)


def console() -> Any:
    """The rich Console for the current `sys.stdout`, made once (not once per printed line: an alert
    storm prints thousands), again only when `sys.stdout` was replaced (tests capture it)."""
    global _console
    if _console is not None and _console[0] is sys.stdout:
        return _console[1]
    from rich.console import Console

    # piped output is read by people too: do not squeeze tables into 80 columns; no :emoji: codes
    c = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
    _console = (sys.stdout, c)
    return c


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:  # Text(): data such as "[FIRING:2]" is shown as is, never read as rich markup
        t.add_row(*[Text("" if x is None else terminal_safe(x, newlines=False)) for x in r])
    console().print(t)


def line(text: str = "") -> None:
    """One printed line: a newline in it (from data) is shown as `\\n`, so nothing forges a line."""
    console().print(terminal_safe(text, newlines=False), markup=False, highlight=False, emoji=False)


def lines(texts: Iterable[str]) -> None:
    """Many `line()`s in one write: each escaped as `line()` escapes it (a newline in data is shown as
    `\\n`), the same text `line()` prints (no markup, no wrapping, tabs escaped), without going
    through rich once per line."""
    body = "".join(terminal_safe(t, newlines=False) + "\n" for t in texts)
    if body:
        sys.stdout.write(body)
        sys.stdout.flush()


def block(text: str) -> None:
    """Text that is legitimately several lines (a Markdown report, a crew's output): its
    newlines are kept, every other control character is escaped."""
    console().print(terminal_safe(text), markup=False, highlight=False, emoji=False)


def to_second(iso_text: Any) -> str:
    """An ISO time from a report as people read it: without its fraction of a second."""
    return re.sub(r"\.\d+(?=Z|[+-]\d\d:?\d\d$)", "", str(iso_text))
