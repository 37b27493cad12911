"""The CrewAI front end: `StepResult`, the tools, the crew and the instrumentation.

The only part of perf-alerts that imports crewai — and only when a name that needs it is
used: `from perf_alerts.crew import StepResult` stays light.

    from perf_alerts.crew import PerformanceAnalyticsCrew, instrument
    crew = PerformanceAnalyticsCrew().crew()
    instrument(crew)              # records LLM/tool/task/kickoff metrics into the store
    crew.kickoff(inputs={"lookback_hours": 24})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perf_alerts.crew.result import StepResult

if TYPE_CHECKING:
    from perf_alerts.crew.crew import PerformanceAnalyticsCrew
    from perf_alerts.crew.instrument import CrewMetricsListener, instrument
    from perf_alerts.crew.tool import AdvancedPerformanceAnalyticsTool, DiscordAlertTool

__all__ = ["StepResult", "AdvancedPerformanceAnalyticsTool", "DiscordAlertTool", "PerformanceAnalyticsCrew",
           "CrewMetricsListener", "instrument", "DEFAULT_INPUTS"]

_LAZY = {
    "AdvancedPerformanceAnalyticsTool": "perf_alerts.crew.tool",
    "DiscordAlertTool": "perf_alerts.crew.tool",
    "ACTIONS": "perf_alerts.crew.tool",
    "PerformanceAnalyticsCrew": "perf_alerts.crew.crew",
    "DEFAULT_INPUTS": "perf_alerts.crew.settings",
    "CrewMetricsListener": "perf_alerts.crew.instrument",
    "instrument": "perf_alerts.crew.instrument",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'perf_alerts.crew' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value
