"""A cheap "has anything been committed to this store since?" marker, for caches of derived results.

The backend says how (`Store.change_marker`): on SQLite, `PRAGMA data_version` of a connection
of its own that never writes, which moves whenever *another* connection commits (another
thread's, another process's: the daemon, the CLI, the crew tool) and costs a few microseconds;
on PostgreSQL, the server's current snapshot, which moves whenever a writing transaction
of any replica starts or ends. That covers what a derived result can depend on: new samples, a new evaluation
(`kv['last_evaluation']` and the alerts it wrote), acknowledgements, silences, retention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perf_alerts.store.store import Store


class ChangeMarker:
    """`marker()` is equal between two calls iff nothing was committed to the store in between."""

    def __init__(self, store: "Store") -> None:
        self._store = store

    def marker(self) -> int:
        return self._store.change_marker()

    def close(self) -> None:
        """Nothing of its own to close (the store owns the connection)."""


__all__ = ["ChangeMarker"]
