"""Silences: matchers plus a time range; a silenced alert is not notified (it still fires).

Persisted in the store, so the CLI, the dashboard and the daemon share them.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import ValidationError

from perf_alerts.config import Matcher, parse_matchers
from perf_alerts.errors import InputError, NotFoundError
from perf_alerts.store import Store
from perf_alerts.store.management import SilenceRecord
from perf_alerts.timeutil import iso

log = logging.getLogger("perf_alerts.silence")


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    # why a stored matcher was refused on load (see `_stored_matchers`); such a silence matches nothing
    problem: str | None = None

    def active(self, at: float) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        # a matcher refused on load (see `_stored_matchers`) makes the whole silence match nothing,
        # also when it is a negative one (`!~`) that would otherwise match everything
        return self.problem is None and all(m.matches(labels) for m in self.matchers)

    def state(self, at: float) -> str:
        return "pending" if at < self.starts_at else ("active" if at < self.ends_at else "expired")

    def to_dict(self, at: float | None = None) -> dict[str, Any]:
        d = {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],  # escaped as Alertmanager prints them
            "starts_at": iso(self.starts_at), "ends_at": iso(self.ends_at),
            "created_by": self.created_by, "comment": self.comment, "created_at": iso(self.created_at),
        }
        if at is not None:
            d["state"] = self.state(at)
        if self.problem is not None:
            d["problem"] = self.problem
        return d


class SilenceError(InputError, ValueError):
    """A silence that cannot be created or expired as asked."""


class SilenceNotFound(SilenceError, NotFoundError):
    """No silence has the given id (prefix)."""


def add_silence(store: Store, matchers: Any, starts_at: float, ends_at: float, created_by: str,
                comment: str, now: float) -> Silence:
    try:
        ms = parse_matchers(matchers)
    except ValueError as e:
        raise SilenceError(str(e)) from None
    if not ms:
        raise SilenceError("a silence needs at least one matcher (e.g. agent=researcher) — it would silence everything")
    if all(m.matches({}) for m in ms):
        # as in Alertmanager: matchers that all match an absent label would silence every alert
        raise SilenceError("these matchers match every alert (each also matches an empty label); "
                           "add one that names something, e.g. alertname=HighLatency")
    if ends_at <= starts_at:
        raise SilenceError("a silence must end after it starts")
    sil = Silence(secrets.token_hex(4), ms, starts_at, ends_at, created_by, comment, now)
    store.insert_silence(SilenceRecord(sil.id, [m.model_dump() for m in ms], starts_at, ends_at, created_by,
                                       comment, now))
    return sil


_warned: set[str] = set()  # ids of the broken silences already logged by this process


def _stored_matchers(silence_id: str, raw: list[Any]) -> tuple[list[Matcher], str | None]:
    """The stored matchers of a silence, and why they cannot be used (None when they can).

    A matcher this version refuses (a regex RE2 cannot run, written by an older version) is kept
    as written, so the silence can still be listed and expired, but the silence then matches no
    alert; a warning is logged once per process. Reading never raises and never backtracks.
    """
    out: list[Matcher] = []
    problem: str | None = None
    for m in raw if isinstance(raw, list) else []:
        try:
            out.append(Matcher.model_validate(m))
        except ValidationError as e:
            why = str(e.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
            problem = problem or f"stored matcher is not valid: {why}"
            d = m if isinstance(m, Mapping) else {}
            out.append(Matcher.model_construct(label=str(d.get("label", "")), op=str(d.get("op", "=")),
                                               value=str(d.get("value", ""))))
    if not isinstance(raw, list) or not out:
        problem = problem or "stored silence has no matchers"
    if problem is not None and silence_id not in _warned:
        _warned.add(silence_id)
        log.warning("silence %s: %s; it silences nothing (expire it and create it again)", silence_id, problem)
    return out, problem


def list_silences(store: Store) -> list[Silence]:
    out = []
    for r in store.silences():
        ms, problem = _stored_matchers(r.id, r.matchers)
        out.append(Silence(r.id, ms, r.starts_at, r.ends_at, r.created_by, r.comment, r.created_at, problem))
    return out


def expire_silence(store: Store, silence_id: str, now: float) -> Silence:
    matches = [s for s in list_silences(store) if s.id.startswith(silence_id.strip())] if silence_id.strip() else []
    if not matches:
        raise SilenceNotFound(f"no silence with id {silence_id!r}")
    if len(matches) > 1:
        raise SilenceError(f"silence id {silence_id!r} is ambiguous: {', '.join(s.id for s in matches)}")
    s = matches[0]
    store.end_silence(s.id, now)
    return Silence(s.id, s.matchers, min(s.starts_at, now), min(s.ends_at, now), s.created_by, s.comment, s.created_at)


def active_silences(store: Store, at: float) -> list[Silence]:
    return [s for s in list_silences(store) if s.active(at)]
