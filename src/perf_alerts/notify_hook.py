"""The one place that finds the notification pipeline, for every front end.

The CLI (`evaluate`), the crew tools (`alerts`, `executive_summary`, `DiscordAlertTool`)
and later the daemon all ask here, so "is delivery available in this build?" has one
answer. Each lookup returns the pipeline function, or None when `perf_alerts.notify.pipeline`
(or that function) is not importable yet.

Expected signatures in `perf_alerts.notify.pipeline` (sync, or async: `call_sync` copes):
    deliver_evaluation(system: PerfAlerts, result: EvaluationResult) -> JSON-able delivery report
    deliver_summary(system: PerfAlerts, summary: dict) -> JSON-able delivery report
    deliver_message(system: PerfAlerts, title: str, severity: str, text: str,
                    metrics: dict | None = None) -> JSON-able delivery report
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from typing import Any, Callable, Optional

PIPELINE_MODULE = "perf_alerts.notify.pipeline"
NOT_AVAILABLE = ("notifications are not available in this build (the notification pipeline, "
                 "perf_alerts.notify.pipeline, is not installed)")


def _lookup(name: str) -> Optional[Callable[..., Any]]:
    try:
        mod = importlib.import_module(PIPELINE_MODULE)
    except ImportError:
        return None
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def notifier() -> Optional[Callable[..., Any]]:
    """`deliver_evaluation(system, result)`, when the pipeline is installed."""
    return _lookup("deliver_evaluation")


def summary_sender() -> Optional[Callable[..., Any]]:
    """`deliver_summary(system, summary)`, when the pipeline is installed."""
    return _lookup("deliver_summary")


def message_sender() -> Optional[Callable[..., Any]]:
    """`deliver_message(system, title, severity, text, metrics)`, when the pipeline is installed."""
    return _lookup("deliver_message")


def call_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn`; if it returns an awaitable, finish it without `asyncio.run` inside a running loop.

    Outside a loop the coroutine runs on a fresh loop here; inside one (a notebook, the
    daemon, an async crew) it runs on a fresh loop in a helper thread and this call waits.
    """
    res = fn(*args, **kwargs)
    if not inspect.isawaitable(res):
        return res

    async def _await() -> Any:
        return await res

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await())
    box: dict[str, Any] = {}

    def _worker() -> None:
        try:
            box["value"] = asyncio.run(_await())
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=_worker, name="perf-alerts-notify", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
