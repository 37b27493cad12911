"""Data shown to people: escaped for the terminal it is printed on and for Discord markdown.

Label values, metric names and annotation text arrive from anyone who can push a sample
(the HTTP API, a file, a crew). Printed raw, a label value can recolour a terminal
(`ESC [ 31 m`), plant a hyperlink (OSC 8), retitle the window, or forge a log line or a
table row (CR, LF); sent raw to Discord it can become a clickable masked link, a mention or
a code block. This module has the two escapes, and every output boundary uses them:

- `terminal_safe(text)`: what is printed on a terminal (the console receiver, the CLI's
  tables and lines, the log of `perf-alerts run` / `dashboard`). Control characters become
  visible escapes (`\\x1b`, `\\r`, `\\x9b`, `\\u202e`); a newline stays a newline unless
  `newlines=False` (a table cell, a log message: one record, one line).
- `discord_escape(text)`: a *data* value put into Discord markdown (a label value in an
  annotation, an embed title). The markdown a value could form is backslash-escaped, so
  `[click](http://evil)` shows as that text (no masked link), `<@123>` and `@everyone` show
  as text, not as mentions, and a backtick cannot open code; ordinary values are unchanged.
  `discord_code(text)` is a value as an inline code span (the labels field).

A backslash in data is not doubled by `terminal_safe` (a Windows path stays readable); the
escapes exist to stop a terminal from acting on the text, not to make it reversible.

A bottom-layer module: it imports nothing from perf_alerts, so logging set-up, the CLI and
the notifiers can all use it.
"""

from __future__ import annotations

import re

__all__ = ["terminal_safe", "discord_escape", "discord_code"]

# C0 controls except LF (and TAB, which a caller may keep), DEL, C1 controls (0x80-0x9f: 0x9b is
# an 8-bit CSI, 0x9d an 8-bit OSC), the Unicode line and paragraph separators, and the
# bidirectional overrides and isolates that reorder what a reader sees ("Trojan Source").
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_TERMINAL_RE = re.compile(f"[\\t{_UNSAFE}]")
_TERMINAL_LF_RE = re.compile(f"[\\t\\n{_UNSAFE}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named is not None:
        return named
    o = ord(c)
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def terminal_safe(text: object, *, newlines: bool = True) -> str:
    """`text` with every character a terminal would act on shown as an escape.

    ESC (so CSI colour codes and OSC-8 hyperlinks), CR, BS, BEL, the other C0 and C1
    controls, DEL, tabs, U+2028/U+2029 and the bidi controls become `\\x1b`, `\\r`, `\\x9b`,
    `\\u202e`, ...; `\\n` is kept when `newlines` is true (multi-line text that is legitimately
    multi-line), else shown as `\\n`. Linear time; text without such characters is returned as is.
    """
    s = text if isinstance(text, str) else str(text)
    rx = _TERMINAL_RE if newlines else _TERMINAL_LF_RE
    if rx.search(s) is None:
        return s
    return rx.sub(_escape_char, s)


# Discord markdown, for a data value V put into text Discord renders (see discord_escape):
_MD_ALWAYS = "`*~|[]<"  # code, emphasis, strikethrough, spoiler, masked links, mentions / emoji / <url>
_BACKSLASH_RE = re.compile(r"\\(?=[!-/:-@\[-`{-~]|$)")  # a backslash before ASCII punctuation (or at the end)
_ALWAYS_RE = re.compile("[" + re.escape(_MD_ALWAYS) + "]")
_UNDERSCORE_RE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # `_` not between two letters/digits
# what makes a line a heading, subtext, list item or quote, when V starts a line
_LINE_START_RE = re.compile(r"^(\s*\d*)(#{1,3}(?=\s)|-(?=#)|[-+](?=\s)|>{1,3}(?=\s)|(?<=\d)[.)](?=\s))")
_MENTION_WORD_RE = re.compile(r"@(everyone|here)\b", re.IGNORECASE)


def discord_escape(text: object) -> str:
    """`text` as literal text in Discord markdown: no formatting, masked link, mention or code.

    For data (label values, metric names, values from samples) put into text Discord renders
    as markdown (embed descriptions, titles, field values); never for the markdown a config
    author wrote. Minimal, so ordinary values are left exactly as they are (`gpt-4o-mini`,
    `research_task`, `v1.2 (beta)`): a backslash goes before `` ` * ~ | [ ] < ``, before `_` unless
    it sits between two letters or digits, before a backslash that precedes punctuation, and
    before what would start a heading, list or quote (`# `, `-# `, `- `, `> `, `1. `) at the
    start. `@everyone` / `@here` get a zero-width space after the `@` (messages are sent with
    `allowed_mentions.parse = []` so nothing pings anyway; this keeps them from showing as a
    mention). Newlines and control characters become visible escapes as for a terminal (data
    cannot start a line of its own). A bare `https://...` stays a plain autolink showing its
    own address: it can no longer become a masked link with other text.
    """
    s = terminal_safe(text, newlines=False)
    s = _BACKSLASH_RE.sub(r"\\\\", s)
    s = _ALWAYS_RE.sub(lambda m: "\\" + m.group(0), s)
    s = _UNDERSCORE_RE.sub(r"\\_", s)
    s = _LINE_START_RE.sub(lambda m: m.group(1) + "\\" + m.group(2), s, count=1)
    return _MENTION_WORD_RE.sub(lambda m: "@\u200b" + m.group(1), s)


def discord_code(text: object) -> str:
    """`text` as a Discord inline code span: backticks inside would close it, so they are
    replaced by a look-alike (ˋ); newlines and control characters are escaped. Markdown,
    links and mentions are inert inside code, so nothing else needs escaping."""
    s = terminal_safe(text, newlines=False).replace("`", "ˋ")
    return f"`{s}`" if s.strip() else "` `"


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """`1 rule`, `2 rules`, `0 series` (`many` for irregular plurals): counts printed for people."""
    shown = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{shown} {word if n == 1 else (many or word + 's')}"
