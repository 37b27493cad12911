"""The JSON HTTP API and the web dashboard (FastAPI), over the same `PerfAlerts` core.

`create_app(system, token=...)` builds the ASGI app (`http.app`); `http.server.start_server`
puts an app on a port in a running loop — for the daemon (`serve_for_daemon`) and for
`perf-alerts dashboard` (`serve`, until a signal) — refusing a non-loopback bind without a token. fastapi and
uvicorn are imported only when one of these is used (they are the `web` extra).
"""

from __future__ import annotations

from typing import Any

_WHERE = {"create_app": "app", "serve": "app", "serve_for_daemon": "app", "build_server": "app",
          "start_server": "server", "RunningServer": "server", "ServeError": "server", "is_loopback": "server"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"perf_alerts.http.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'perf_alerts.http' has no attribute {name!r}")
