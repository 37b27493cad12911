"""Masking of secrets (Discord webhook URLs, tokens) in every text we log or show.

A Discord webhook URL is a bearer credential: whoever reads it can post to the channel.
So every error, log line and repr that might contain one goes through `redact()` first.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote

__all__ = ["redact", "register_secret", "clear_secrets", "MASK"]

MASK = "***"

# Any URL path containing /webhooks/<id>/<token> (Discord, its ptb./canary. hosts, the legacy
# discordapp.com host, /api or /api/v10 prefixes, and test servers on 127.0.0.1 alike).
# The id is kept (it names the webhook in logs); the token is masked.
_WEBHOOK_RE = re.compile(
    r"(?P<prefix>(?:https?://[^\s/\"'<>]+)?(?:/api(?:/v\d+)?)?/webhooks/(?P<id>\d+)/)"
    r"(?P<token>[^\s/?#\"'<>:,;)\]]+)",
    re.IGNORECASE,
)
# user:password@ in any URL.
_USERINFO_RE = re.compile(r"(?P<scheme>https?://)(?P<user>[^\s/:@\"'<>]+):(?P<pw>[^\s/@\"'<>]+)@", re.I)
# Query parameters whose names say they carry a credential.
_QUERY_SECRET_RE = re.compile(
    r"(?P<key>[?&](?:token|access_token|api_key|apikey|key|secret|password|sig|signature|auth)=)"
    r"(?P<val>[^&\s#\"'<>]+)",
    re.IGNORECASE,
)

_MIN_SECRET_LEN = 6  # shorter "secrets" would mask ordinary words everywhere
_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def register_secret(s: str) -> None:
    """Mask `s` (and its URL-encoded form) wherever it appears from now on.

    Register every configured webhook URL and token at load time, so that even a URL the
    patterns would not recognise (a proxy, a generic webhook receiver) never leaks.
    """
    if not isinstance(s, str):
        return
    s = s.strip()
    if len(s) < _MIN_SECRET_LEN:
        return
    global _secret_re
    with _lock:
        variants = {s, quote(s, safe=""), quote(s, safe="/:")}
        m = _WEBHOOK_RE.search(s)
        if m:  # the bare token of a webhook URL is a secret on its own too
            variants.add(m.group("token"))
        _secrets.update(v for v in variants if len(v) >= _MIN_SECRET_LEN)
        # Longest first so a URL is replaced whole before its token alone is.
        alts = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(a) for a in alts))


def clear_secrets() -> None:
    """Forget registered secrets (tests only)."""
    global _secret_re
    with _lock:
        _secrets.clear()
        _secret_re = None


def _mask_webhook(m: re.Match[str]) -> str:
    return f"{m.group('prefix')}{MASK}"


def redact(text: str) -> str:
    """Return `text` with every webhook token, URL password, credential query value and
    registered secret replaced by `***`. Safe to call on any string, repeatedly."""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    out = text
    secret_re = _secret_re
    if secret_re is not None:
        out = secret_re.sub(_secret_replacement, out)
    out = _WEBHOOK_RE.sub(_mask_webhook, out)
    out = _USERINFO_RE.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", out)
    out = _QUERY_SECRET_RE.sub(lambda m: f"{m.group('key')}{MASK}", out)
    return out


def _secret_replacement(m: re.Match[str]) -> str:
    """A registered webhook URL keeps its readable `…/webhooks/<id>/***` form."""
    hit = m.group(0)
    if _WEBHOOK_RE.search(hit):
        return _WEBHOOK_RE.sub(_mask_webhook, hit)
    return MASK
