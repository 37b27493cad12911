"""What the store's queries need from a database, whichever it is: the seam between the SQL of
`store/*.py` and the two backends (`store/sqlite.py`, `store/postgres.py`).

Queries are written once, with `?` parameters and SQL both databases speak (`ON CONFLICT`,
`RETURNING`, `CASE`); the few statements that differ ask `dialect`. A backend gives
- `con`: a connection-like object for reads (and single idempotent statements), any thread;
- `write(exclusive)`: a transaction. `exclusive=True` (the default) serialises it with every
  other exclusive transaction of every process, as SQLite's `BEGIN IMMEDIATE` does, because the
  evaluator and the management code read state, decide and write it back; `exclusive=False` is
  for statements that are safe side by side (sample inserts, outbox claims with row locks);
- `marker()`: a number that changes whenever anyone committed (for caches of derived results).
"""

from __future__ import annotations

import re
from typing import Any, ContextManager, Iterable, Iterator, Protocol, Sequence


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the queries use (`?` parameters on both backends)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any: ...


class Backend(Protocol):
    dialect: str  # "sqlite" or "postgresql"
    display: str  # the path, or the URL without its password: for messages

    @property
    def con(self) -> Connection: ...

    def write(self, exclusive: bool = True) -> ContextManager[Connection]: ...

    def marker(self) -> int: ...

    def close(self) -> None: ...


_URL = re.compile(r"^postgres(ql)?(\+\w+)?://", re.IGNORECASE)


def is_postgres_url(target: object) -> bool:
    """`--db` / `PERF_ALERTS_DB` names a PostgreSQL database (postgresql://… or postgres://…)."""
    return isinstance(target, str) and bool(_URL.match(target))


def redact_url(url: str) -> str:
    """The URL with its password (and any `password=` parameter) replaced by `***`."""
    # by hand, not urlsplit: a password may hold ? # / [ (libpq accepts them), which urlsplit
    # would read as the start of the query, fragment or path, or refuse
    m = re.match(r"^([A-Za-z][\w+.-]*://)(.*)$", url, re.S)
    if not m:
        return "postgresql://***"
    scheme, rest = m.groups()
    at = rest.rfind("@")
    if at >= 0:
        cred, rest = rest[:at], rest[at + 1:]
        user = cred.split(":", 1)[0]
        rest = (f"{user}:***@" if ":" in cred else f"{user}@") + rest
    return scheme + re.sub(r"(?i)(password=)[^&]*", r"\1***", rest)


__all__ = ["Backend", "Connection", "Cursor", "is_postgres_url", "redact_url"]
