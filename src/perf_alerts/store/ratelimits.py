"""Discord rate-limit state shared by every sender of one store (several daemons, the CLI).

SQL only (the layer rule); written in the SQL both backends speak (`?` parameters,
`ON CONFLICT … DO UPDATE`, `RETURNING`), so the same queries run on SQLite and PostgreSQL.
"""

from __future__ import annotations

# DDL in the common dialect: TEXT / REAL / INTEGER columns (the PostgreSQL backend maps REAL to
# DOUBLE PRECISION and INTEGER to BIGINT), no SQLite-only clauses.
RATELIMIT_SCHEMA = ""


class RateLimitQueries:
    """Mixin of `Store` (uses its `con` for reads and `_write()` for transactions)."""


__all__ = ["RATELIMIT_SCHEMA", "RateLimitQueries"]
