"""What every `perf-alerts` command module shares: the typer app, the global options, the
system they work on, and the one mapping of errors to exit codes.

`cli.main` and the `cli/*_cmd.py` modules import this module and never each other, so the
command modules can be imported in any order (no import cycle through `cli.main`).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperGroup

from perf_alerts.cli import output as out
from perf_alerts.errors import PerfAlertsError

if TYPE_CHECKING:
    from perf_alerts.core import PerfAlerts
    from perf_alerts.timeutil import Clock


def user_error_message(e: BaseException) -> str | None:
    """The one line to show for a user mistake, None for anything else (a bug: its traceback is shown)."""
    if isinstance(e, PerfAlertsError):
        return str(e)
    from perf_alerts.sources.files import IngestError

    if isinstance(e, IngestError):  # not (yet) in the hierarchy: a file that cannot be read at all
        return str(e)
    if isinstance(e, sqlite3.DatabaseError):  # a file that is not a SQLite store, a locked or corrupt one
        return f"SQLite store: {e}"
    return None


class _Group(TyperGroup):
    """The root command group: maps every user error of every command, once, to one stderr line and exit 2
    (SPEC §10: 0 ok, 1 a finding the user asked to fail on, 2 bad usage or config)."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's own Context (typer >= 0.29) or click's
        try:
            return super().invoke(ctx)
        except Exception as e:  # typer.Exit, usage errors and bugs are not user errors: they pass
            message = user_error_message(e)
            if message is None:
                raise
            out.error(message)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="perf-alerts",
    cls=_Group,
    help="Performance analytics and alerting for CrewAI crews, delivered to Discord.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _State:
    """The global options (`--config`, `--db`), set by the root callback before any command runs."""

    config: Optional[str] = None
    db: Optional[str] = None


state = _State()


@app.callback()
def _global(
    config: Optional[str] = typer.Option(
        None, "--config", "-c", envvar="PERF_ALERTS_CONFIG",
        help="Config file (default ./config/alerting.yaml, else the packaged default)."),
    db: Optional[str] = typer.Option(None, "--db", envvar="PERF_ALERTS_DB", help="SQLite store (default ./perf_alerts.db)."),
) -> None:
    state.config = config
    state.db = db


def system(clock: "Clock | None" = None) -> "PerfAlerts":
    """The system every command works on: the global --config and --db."""
    from perf_alerts.core import PerfAlerts

    return PerfAlerts(config=state.config, db=state.db, clock=clock)


def setup_logging(verbose: bool = False) -> None:
    """perf_alerts' log (and the web server's) on stderr, redacted and terminal-safe, for the
    long-running commands (run, dashboard)."""
    import logging
    import sys

    from perf_alerts.notify.redact import redact
    from perf_alerts.textsafe import terminal_safe

    def block(text: str) -> str:
        """A traceback: redacted, escaped, and every line after its `Traceback (most recent call last):`
        indented two more spaces, so an exception message with a newline in it cannot start a line
        that looks like a record of its own."""
        first, *rest = terminal_safe(redact(text)).split("\n")
        return "\n".join([first, *("  " + ln if ln else ln for ln in rest)])

    class _Redact(logging.Filter):
        """No secret in the log: the message and a traceback's text (exception messages can hold a webhook URL).
        And nothing a terminal acts on: a logged label value or request detail with ESC, OSC-8 or CR
        is shown escaped, and a newline in a message is `\\n` (one record, one line)."""

        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = terminal_safe(redact(record.getMessage()), newlines=False)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = block(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = block(record.stack_info)
            return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redact())
    root = logging.getLogger("perf_alerts")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # uvicorn's own records (a request it cannot parse, a traceback it prints) through the same filter;
    # http.server leaves uvicorn's logging unconfigured (log_config=None) so this handler stays
    web = logging.getLogger("uvicorn")
    web.handlers[:] = [handler]
    web.propagate = False
