"""perf-alerts: performance analytics and alerting for CrewAI crews, delivered to Discord.

    import perf_alerts
    perf_alerts.record("crew_task_seconds", 12.5, {"agent": "researcher"})
    system = perf_alerts.PerfAlerts(config="config/alerting.yaml", db="perf_alerts.db")
    result = system.evaluate()

Importing this package is cheap and never imports crewai; `perf_alerts.crew` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

__version__ = "0.1.0"

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts, RecordReport
    from perf_alerts.model import Sample

__all__ = ["PerfAlerts", "record", "record_many", "__version__"]


def record(metric: str, value: float, labels: Mapping[str, str] | None = None, ts: float | str | None = None) -> "Sample":
    """Record one sample into the default store (`PERF_ALERTS_DB`, else ./perf_alerts.db)."""
    from perf_alerts.core import default_system

    return default_system().record(metric, value, labels, ts)


def record_many(records: Iterable[Any]) -> "RecordReport":
    """Record many samples; invalid ones are reported by position, the valid ones kept."""
    from perf_alerts.core import default_system

    return default_system().record_many(records)


def __getattr__(name: str) -> Any:
    # lazy: keeps `import perf_alerts` fast (no numpy/pydantic until needed)
    if name == "PerfAlerts":
        from perf_alerts.core import PerfAlerts

        return PerfAlerts
    raise AttributeError(f"module 'perf_alerts' has no attribute {name!r}")
