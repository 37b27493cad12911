"""SQL for the notification outbox, Discord message references and receiver status.

A mixin of `Store` (see `store/sqlite.py`).
"""

from __future__ import annotations


class OutboxQueries:
    """Mixed into `Store`; uses `self.con` and `self.transaction()`."""
