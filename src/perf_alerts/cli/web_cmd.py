"""`perf-alerts dashboard`: serve the JSON API and the web dashboard over the store.

fastapi and uvicorn are imported inside the command so `perf-alerts --help` stays fast.
"""

from __future__ import annotations

from typing import Optional

import typer


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="PERF_ALERTS_TOKEN", show_default=False,
        help="API token (env PERF_ALERTS_TOKEN); clients send 'Authorization: Bearer <token>'."),
) -> None:
    """Serve the web dashboard and the JSON API (http://127.0.0.1:8080 by default)."""
    from perf_alerts.cli import output as out
    from perf_alerts.cli.main import handled, system

    token = token or None

    @handled
    def _run() -> None:
        try:
            from perf_alerts.http.app import ServeError, build_server
        except ImportError as e:
            out.error(f"the dashboard needs the web extra: pip install 'perf-alerts[web]' ({e})")
            raise typer.Exit(2) from None
        s = system()
        try:
            server = build_server(s, host, port, token)
        except ServeError as e:
            out.error(str(e))
            raise typer.Exit(2) from None
        shown = f"[{host}]" if ":" in host else host
        out.line(f"perf-alerts dashboard on http://{shown}:{port}/ (API at /api/v1; Ctrl-C to stop)"
                 + ("; token required" if token else ""))
        try:
            server.run()
        except SystemExit:  # uvicorn exits when it cannot bind
            server.started = False
        if not server.started:
            out.error(f"could not listen on {shown}:{port} (address in use or not available)")
            raise typer.Exit(2)

    _run()
