"""Persistence: the store shared by every process (daemons, CLI, crew tool): a SQLite file by
default, or a PostgreSQL database for several daemons (`postgresql://…`)."""

from perf_alerts.errors import StoreError, StoreUnavailable
from perf_alerts.store.store import (DEFAULT_DB, ENV_DB, Fence, LeadershipLost, SampleBlock, SeriesInfo, Store,
                                     resolve_db_path, resolve_db_target)

__all__ = ["DEFAULT_DB", "ENV_DB", "Fence", "LeadershipLost", "SampleBlock", "SeriesInfo", "Store", "StoreError", "StoreUnavailable",
           "resolve_db_path", "resolve_db_target"]
