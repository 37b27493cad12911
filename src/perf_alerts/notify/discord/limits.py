"""Discord's Execute/Edit Webhook limits, and a validator that reports what Discord would.

Discord answers a violation with 400 50035 and the message is lost; we check the same rules
before sending so a bad payload is caught (and fixed by the builder) on our side. Lengths are
Unicode code points after trimming (Discord's API is Python and counts `len(s.strip())`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_TEXT_MAX = 2048
AUTHOR_NAME_MAX = 256
EMBEDS_TOTAL_MAX = 6000
USERNAME_MIN = 1
USERNAME_MAX = 80
USERNAME_FORBIDDEN = ("discord", "clyde")
COLOR_MAX = 0xFFFFFF
URL_MAX = 2048
FILES_MAX = 10
ATTACHMENTS_MAX = 10
FILE_SIZE_MAX = 10 * 1024 * 1024
ALLOWED_MENTION_IDS_MAX = 100
ALLOWED_MENTION_TYPES = ("roles", "users", "everyone")

FileTuple = tuple[str, bytes, str]

__all__ = [
    "CONTENT_MAX", "EMBEDS_MAX", "EMBED_TITLE_MAX", "EMBED_DESCRIPTION_MAX", "EMBED_FIELDS_MAX",
    "FIELD_NAME_MAX", "FIELD_VALUE_MAX", "FOOTER_TEXT_MAX", "AUTHOR_NAME_MAX", "EMBEDS_TOTAL_MAX",
    "USERNAME_MIN", "USERNAME_MAX", "USERNAME_FORBIDDEN", "COLOR_MAX", "URL_MAX", "FILES_MAX",
    "ATTACHMENTS_MAX", "FILE_SIZE_MAX", "ALLOWED_MENTION_IDS_MAX",
    "text_len", "truncate", "embed_chars", "embeds_chars", "username_problem", "validate_payload",
]


def text_len(s: object) -> int:
    """Length as Discord counts it: code points after trimming whitespace."""
    return len(s.strip()) if isinstance(s, str) else 0


def truncate(s: str, limit: int, ellipsis: str = "…") -> str:
    """Trim, then cut to at most `limit` counted characters, ending with `ellipsis` if cut."""
    s = s.strip()
    if len(s) <= limit:
        return s
    if limit <= len(ellipsis):
        return s[:limit]
    return s[: limit - len(ellipsis)].rstrip() + ellipsis


def embed_chars(embed: Mapping[str, Any]) -> int:
    """Characters an embed contributes to the 6000 total (title, description, fields,
    footer text, author name)."""
    n = text_len(embed.get("title")) + text_len(embed.get("description"))
    for f in embed.get("fields") or []:
        if isinstance(f, Mapping):
            n += text_len(f.get("name")) + text_len(f.get("value"))
    footer = embed.get("footer")
    if isinstance(footer, Mapping):
        n += text_len(footer.get("text"))
    author = embed.get("author")
    if isinstance(author, Mapping):
        n += text_len(author.get("name"))
    return n


def embeds_chars(embeds: Sequence[Mapping[str, Any]]) -> int:
    return sum(embed_chars(e) for e in embeds if isinstance(e, Mapping))


def username_problem(name: object) -> str | None:
    """Why Discord would reject this webhook username, or None if it is fine."""
    if not isinstance(name, str):
        return "must be a string"
    n = text_len(name)
    if n < USERNAME_MIN or n > USERNAME_MAX:
        return f"must be between {USERNAME_MIN} and {USERNAME_MAX} in length (got {n})"
    low = name.lower()
    for bad in USERNAME_FORBIDDEN:
        if bad in low:
            return f'must not contain "{bad}"'
    return None


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, msg: str) -> None:
        self.items.append(f"{path}: {msg}")

    def length(self, path: str, value: object, limit: int, *, required: bool = False) -> None:
        if value is None:
            if required:
                self.add(path, "this field is required")
            return
        if not isinstance(value, str):
            self.add(path, "must be a string")
            return
        n = text_len(value)
        if required and n == 0:
            self.add(path, "this field is required (empty after trimming)")
        elif n > limit:
            self.add(path, f"must be {limit} or fewer in length (got {n})")

    def url(self, path: str, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            self.add(path, "must be a string")
            return
        if text_len(value) > URL_MAX:
            self.add(path, f"must be {URL_MAX} or fewer in length (got {text_len(value)})")
        v = value.strip().lower()
        if not v.startswith(("http://", "https://", "attachment://")):
            self.add(path, "not a well formed URL (http, https or attachment scheme)")


def _validate_embed(err: _Errors, i: int, embed: object) -> None:
    p = f"embeds.{i}"
    if not isinstance(embed, Mapping):
        err.add(p, "must be an object")
        return
    err.length(f"{p}.title", embed.get("title"), EMBED_TITLE_MAX)
    err.length(f"{p}.description", embed.get("description"), EMBED_DESCRIPTION_MAX)
    err.url(f"{p}.url", embed.get("url"))
    color = embed.get("color")
    if color is not None and (isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= COLOR_MAX):
        err.add(f"{p}.color", f"must be an integer between 0 and {COLOR_MAX} (got {color!r})")
    fields = embed.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            err.add(f"{p}.fields", "must be an array")
        else:
            if len(fields) > EMBED_FIELDS_MAX:
                err.add(f"{p}.fields", f"must be {EMBED_FIELDS_MAX} or fewer in length (got {len(fields)})")
            for j, f in enumerate(fields):
                fp = f"{p}.fields.{j}"
                if not isinstance(f, Mapping):
                    err.add(fp, "must be an object")
                    continue
                err.length(f"{fp}.name", f.get("name"), FIELD_NAME_MAX, required=True)
                err.length(f"{fp}.value", f.get("value"), FIELD_VALUE_MAX, required=True)
    footer = embed.get("footer")
    if footer is not None:
        if not isinstance(footer, Mapping):
            err.add(f"{p}.footer", "must be an object")
        else:
            err.length(f"{p}.footer.text", footer.get("text"), FOOTER_TEXT_MAX, required=True)
            err.url(f"{p}.footer.icon_url", footer.get("icon_url"))
    author = embed.get("author")
    if author is not None:
        if not isinstance(author, Mapping):
            err.add(f"{p}.author", "must be an object")
        else:
            err.length(f"{p}.author.name", author.get("name"), AUTHOR_NAME_MAX, required=True)
            err.url(f"{p}.author.url", author.get("url"))
            err.url(f"{p}.author.icon_url", author.get("icon_url"))
    for key in ("image", "thumbnail"):
        media = embed.get(key)
        if media is not None:
            if not isinstance(media, Mapping):
                err.add(f"{p}.{key}", "must be an object")
            else:
                err.url(f"{p}.{key}.url", media.get("url"))


def validate_payload(
    payload: Mapping[str, Any],
    *,
    files: Sequence[FileTuple] | None = None,
    edit: bool = False,
) -> list[str]:
    """Every violation of Discord's limits in an Execute (or, with `edit`, Edit) Webhook
    body, each as "field.path: problem". Empty list means Discord would accept it."""
    err = _Errors()
    if not isinstance(payload, Mapping):
        return ["(body): must be a JSON object"]
    err.length("content", payload.get("content"), CONTENT_MAX)
    if "username" in payload and payload["username"] is not None:
        problem = username_problem(payload["username"])
        if problem:
            err.add("username", problem)
    err.url("avatar_url", payload.get("avatar_url"))

    embeds = payload.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list):
            err.add("embeds", "must be an array")
            embeds = []
        elif len(embeds) > EMBEDS_MAX:
            err.add("embeds", f"must be {EMBEDS_MAX} or fewer in length (got {len(embeds)})")
        for i, e in enumerate(embeds):
            _validate_embed(err, i, e)
        total = embeds_chars(embeds)
        if total > EMBEDS_TOTAL_MAX:
            err.add("embeds", f"embed size exceeds maximum size of {EMBEDS_TOTAL_MAX} (got {total})")

    am = payload.get("allowed_mentions")
    if am is not None:
        if not isinstance(am, Mapping):
            err.add("allowed_mentions", "must be an object")
        else:
            parse = am.get("parse") or []
            for k, v in enumerate(parse if isinstance(parse, list) else []):
                if v not in ALLOWED_MENTION_TYPES:
                    err.add(f"allowed_mentions.parse.{k}", f"value must be one of {ALLOWED_MENTION_TYPES}")
            for kind in ("roles", "users"):
                ids = am.get(kind)
                if ids is None:
                    continue
                if not isinstance(ids, list):
                    err.add(f"allowed_mentions.{kind}", "must be an array")
                    continue
                if len(ids) > ALLOWED_MENTION_IDS_MAX:
                    err.add(f"allowed_mentions.{kind}", f"must be {ALLOWED_MENTION_IDS_MAX} or fewer in length")
                if kind in parse and ids:
                    err.add("allowed_mentions", f'parse "{kind}" and {kind} list are mutually exclusive')
                for k, v in enumerate(ids):
                    if not (isinstance(v, str) and v.isdigit()):
                        err.add(f"allowed_mentions.{kind}.{k}", "value is not snowflake")

    attachments = payload.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            err.add("attachments", "must be an array")
        elif len(attachments) > ATTACHMENTS_MAX:
            err.add("attachments", f"must be {ATTACHMENTS_MAX} or fewer in length (got {len(attachments)})")

    files = list(files or [])
    if len(files) > FILES_MAX:
        err.add("files", f"must be {FILES_MAX} or fewer (got {len(files)})")
    for k, f in enumerate(files):
        if len(f[1]) > FILE_SIZE_MAX:
            err.add(f"files.{k}", f"file too large: {len(f[1])} bytes > {FILE_SIZE_MAX}")
        if not f[0] or len(f[0]) > 1024:
            err.add(f"files.{k}.filename", "must be between 1 and 1024 in length")

    if not edit:
        has_content = text_len(payload.get("content")) > 0
        has_embeds = isinstance(embeds, list) and len(embeds) > 0
        has_other = bool(payload.get("components")) or bool(payload.get("poll"))
        if not (has_content or has_embeds or files or has_other):
            err.add("(body)", "cannot send an empty message: one of content, embeds, files, components or poll is required")
    return err.items
