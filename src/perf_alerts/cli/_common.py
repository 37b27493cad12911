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
    if isinstance(e, PerfAlertsError):  # IngestError too (an InputError)
        return str(e)
    if isinstance(e, sqlite3.DatabaseError):  # a file that is not a SQLite store, a locked or corrupt one
        return f"SQLite store: {e}"
    return None


GLOBAL_OPTIONS = ("--db", "--config", "-c")  # the root's options: accepted before or after the subcommand

# what an option's value is, in --help (typer would show `<str>`, `<list[Path]>`)
_METAVARS = {
    "--at": "TIME", "--since": "TIME", "--start": "TIME", "--end": "TIME",
    "--lookback": "DURATION", "--horizon": "DURATION", "--period": "DURATION", "--duration": "DURATION",
    "--deadline": "DURATION", "--step": "DURATION", "--window": "DURATION",
    "--db": "FILE|URL", "--config": "FILE", "--out": "DIR", "--agent": "NAME", "--labels": "LABELS",
    "--state": "STATE", "--format": "FORMAT", "--group": "GROUP", "--fail-on": "SEVERITY", "--by": "WHO",
    "--comment": "TEXT", "--limit": "N", "--inputs": "JSON", "--host": "HOST", "--port": "PORT",
}
# help for the options many commands share, where a command gives none
_OPTION_HELP = {
    "--json": "Machine-readable JSON output instead of text.",
    "--agent": "Only the series of this agent (label agent=NAME).",
    "--at": "As of this time: ISO 8601, Unix seconds, now, now-1h (default: now).",
    "--horizon": "How far ahead to forecast, e.g. 6h.",
    "--lookback": "How much history to use, e.g. 24h.",
    "--limit": "At most this many rows.",
    "--by": "Who does it.",
    "--comment": "Why (shown with the silence).",
    "--duration": "How long, e.g. 2h.",
    "--verbose": "Log debug details too.",
    "--policy": "Only the actions of this policy.",
}


def hoist_global_options(args: list[str]) -> list[str]:
    """`perf-alerts alerts --db x.db` means `perf-alerts --db x.db alerts`: the global options are
    moved in front of the subcommand (up to a `--`), so they work in both places."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in GLOBAL_OPTIONS and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith(("--db=", "--config=")):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def tidy_help(cmd: Any) -> None:
    """Readable --help for a command tree: value names instead of typer's `<str>`/`<list[Path]>`,
    `FILES...` instead of `{files}...`, a description for every common option, and the full
    first sentence of every command in a group's list (not cut with "...")."""
    for p in getattr(cmd, "params", []):
        if getattr(p, "param_type_name", "") == "argument":
            name = (p.name or "arg").upper() + ("..." if p.nargs != 1 else "")
            shown = name if p.required else f"[{name}]"
            p.metavar = (p.name or "arg").upper()
            p._usage_display_name = lambda shown=shown: shown
            p._rich_display_name = lambda name=name: name
            p.display_type_rich = lambda ctx: None
        elif not getattr(p, "is_flag", False) and p.metavar is None:
            long = max(p.opts, key=len)
            bare = p.bare_type() if hasattr(p, "bare_type") else ""
            p.metavar = _METAVARS.get(long) or {"int": "N", "float": "NUMBER", "Path": "PATH"}.get(bare, "TEXT")
        if getattr(p, "param_type_name", "") == "option" and not p.help:
            p.help = _OPTION_HELP.get(max(p.opts, key=len))
    sub = getattr(cmd, "commands", None) or {}
    for c in sub.values():
        if not c.short_help:
            c.short_help = _first_paragraph(c.help)
        tidy_help(c)


class _Group(TyperGroup):
    """The root command group: maps every user error of every command, once, to one stderr line and exit 2
    (SPEC §10: 0 ok, 1 a finding the user asked to fail on, 2 bad usage or config)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy_help(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

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
    db: Optional[str] = typer.Option(None, "--db", envvar="PERF_ALERTS_DB", help="The store: a SQLite file (default ./perf_alerts.db) or postgresql://user@host/db."),
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
