"""`perf-alerts crew kickoff`: run the perf-alerts crew with the LLM the user configures.

crewai is imported inside the command only, so `perf-alerts --help` stays fast and free of it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Optional, cast

import typer

from perf_alerts.cli import output as out

log = logging.getLogger("perf_alerts")

if TYPE_CHECKING:
    from crewai.crews.crew_output import CrewOutput

crew_app = typer.Typer(help="Run the perf-alerts CrewAI crew (system_alert_manager and its five tasks).",
                       no_args_is_help=True, add_completion=False, rich_markup_mode=None)

TASKS_HELP = ("run_performance_analytics, monitor_performance_alerts, predictive_performance_analysis, "
              "optimize_system_performance, send_performance_executive_summary")


def _load_factory(spec: str) -> Any:
    import importlib

    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"--llm-factory must look like module:function, got {spec!r}")
    fn = getattr(importlib.import_module(mod_name), attr)
    return fn() if callable(fn) else fn


@crew_app.command()
def kickoff(
    inputs: Optional[str] = typer.Option(None, "--inputs", help='Kickoff inputs as JSON, e.g. \'{"lookback_hours": 12}\'.'),
    task: Optional[list[str]] = typer.Option(None, "--task", help=f"Run only this task (repeatable): {TASKS_HELP}."),
    llm_factory: Optional[str] = typer.Option(None, "--llm-factory", envvar="PERF_ALERTS_CREW_LLM",
                                              help="module:function returning a crewai LLM (default: CrewAI's environment, e.g. MODEL + OPENAI_API_KEY)."),
    no_instrument: bool = typer.Option(False, "--no-instrument", help="Do not record the crew's own metrics."),
    verbose: bool = typer.Option(False, "--verbose", help="Show CrewAI's step-by-step output."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Kick off the crew; exits 2 with instructions when no LLM is configured."""
    from perf_alerts.cli._common import system
    from perf_alerts.errors import InputError
    from perf_alerts.notify.redact import redact

    # usage errors are raised, and shown (one line, exit 2) by the CLI's one error mapping
    try:
        parsed: dict[str, Any] = json.loads(inputs) if inputs else {}
    except json.JSONDecodeError as e:
        raise InputError(f"--inputs is not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise InputError('--inputs must be a JSON object, e.g. {"lookback_hours": 12}')

    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    from perf_alerts.crew.settings import LLM_ENV_HINT, TASK_NAMES, llm_configured

    unknown = [t for t in (task or []) if t not in TASK_NAMES]
    if unknown:
        raise InputError(f"--task: unknown task {unknown[0]!r}; valid: {', '.join(TASK_NAMES)}")
    llm = None
    if llm_factory:
        try:
            llm = _load_factory(llm_factory)
        except Exception as e:  # whatever the user's factory raises: it is theirs to fix
            raise InputError(f"--llm-factory {llm_factory}: {type(e).__name__}: {e}") from None
    elif not llm_configured():
        raise InputError(LLM_ENV_HINT)

    from perf_alerts.crew import PerformanceAnalyticsCrew, instrument
    from perf_alerts.crew.settings import kickoff_inputs

    pa = system()  # a ConfigError is mapped with the other errors
    try:
        crew = PerformanceAnalyticsCrew(llm=llm, system=pa, verbose=verbose).crew(task_names=task or None)
    except Exception as e:
        log.debug("building the crew failed", exc_info=True)  # the traceback for --verbose / a debug log
        out.error(f"cannot build the crew: {type(e).__name__}: {e}")
        raise typer.Exit(2) from None
    listener = None if no_instrument else instrument(crew, system=pa)
    try:
        # The crew is built without stream=True, so kickoff() returns a CrewOutput, never a CrewStreamingOutput.
        result = cast("CrewOutput", crew.kickoff(inputs=kickoff_inputs(parsed)))
    except Exception as e:
        log.debug("crew kickoff failed", exc_info=True)
        out.error(f"crew kickoff failed: {type(e).__name__}: {redact(str(e))}")
        raise typer.Exit(1) from None
    finally:
        if listener is not None:
            listener.flush(wait_for_bus=True)
            listener.close()
    tasks: list[dict[str, Any]] = [{"task": t.name, "output": redact(t.raw)} for t in result.tasks_output]
    if as_json:
        out.emit_json({"tasks": tasks, "final": redact(result.raw),
                       "token_usage": getattr(result.token_usage, "model_dump", lambda: {})()})
        return
    for t in tasks:
        out.line(f"== {t['task']}")
        out.block(t["output"])
        out.line()
