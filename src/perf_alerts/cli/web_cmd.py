"""`perf-alerts dashboard`: serve the JSON API and the web dashboard over the store.

fastapi and uvicorn are imported inside the command so `perf-alerts --help` stays fast.
Serving goes through `http.server` — the same start-up (bind check, port-in-use error) as
the daemon's dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

from perf_alerts.cli import output as out
from perf_alerts.cli._common import setup_logging, system

if TYPE_CHECKING:
    from perf_alerts.http.server import RunningServer


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8080, "--port", help="TCP port (0: any free port)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="PERF_ALERTS_TOKEN", show_default=False,
        help="API token (env PERF_ALERTS_TOKEN); clients send 'Authorization: Bearer <token>'."),
) -> None:
    """Serve the web dashboard and the JSON API (http://127.0.0.1:8080 by default) until Ctrl-C."""
    try:
        from perf_alerts.http.app import serve
    except ImportError as e:
        out.error(f"the dashboard needs the web extra: pip install 'perf-alerts[web]' ({e})")
        raise typer.Exit(2) from None
    token = token or None

    def started(server: "RunningServer") -> None:
        setup_logging()  # from now on the API logs (a bug's traceback, redacted) on stderr
        out.line(f"perf-alerts dashboard on {server.url} (API at /api/v1; Ctrl-C to stop)"
                 + ("; token required" if token else ""))

    # ServeError (public address without a token, port in use) is a DaemonError: one line, exit 2
    serve(system(), host, port, token, on_started=started)
