"""Persistence: the SQLite store shared by every process (daemon, CLI, crew tool)."""

from perf_alerts.errors import StoreError
from perf_alerts.store.sqlite import DEFAULT_DB, ENV_DB, SampleBlock, SeriesInfo, Store, resolve_db_path

__all__ = ["DEFAULT_DB", "ENV_DB", "SampleBlock", "SeriesInfo", "Store", "StoreError", "resolve_db_path"]
