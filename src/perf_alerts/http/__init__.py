"""The JSON HTTP API and the web dashboard (FastAPI), over the same `PerfAlerts` core.

`create_app(system, token=...)` builds the ASGI app; `serve(system, host, port, token)`
runs it with uvicorn and refuses a non-loopback bind without a token. fastapi and
uvicorn are imported only when one of these is used (they are the `web` extra).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve", "build_server", "ServeError", "is_loopback"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from perf_alerts.http import app as _app

        return getattr(_app, name)
    raise AttributeError(f"module 'perf_alerts.http' has no attribute {name!r}")
