"""SQL for management state: schedules, policy state, the action audit log, silences, alert acks.

A mixin of `Store` (see `store/sqlite.py`): every statement that touches these tables lives
here, so the modules in `manage/` and `notify/` never write SQL themselves and a second
backend implements the same methods in its own module.
"""

from __future__ import annotations


class ManagementQueries:
    """Mixed into `Store`; uses `self.con` and `self.transaction()`."""
