"""`perf-alerts import-alertmanager alertmanager.yml [--out FILE]`: an Alertmanager configuration
converted into perf-alerts config (`perf_alerts.amimport`), printed or written to a file.

The config goes to stdout (or `--out`), the report to stderr, one line per item: what was not
carried over, which environment variable to set for each secret, how a feature was mapped.
A user redirecting stdout to a file still sees every line of the report.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from perf_alerts.cli import output as out


def register(app: typer.Typer) -> None:
    @app.command("import-alertmanager")
    def import_alertmanager(
        file: Path = typer.Argument(..., help="The Alertmanager configuration file (alertmanager.yml)."),
        out_file: Optional[Path] = typer.Option(
            None, "--out", metavar="FILE", help="Write the perf-alerts config to FILE (default: standard output)."),
        force: bool = typer.Option(False, "--force", help="Overwrite --out FILE when it exists."),
    ) -> None:
        """Convert an Alertmanager configuration (route tree, receivers, inhibit rules, time intervals) into
        perf-alerts config that routes the same way; what cannot be converted is listed on stderr."""
        from perf_alerts.amimport import convert_alertmanager_file
        from perf_alerts.errors import InputError

        if out_file is not None and out_file.exists() and not force:  # said before any work
            raise InputError(f"--out: {out_file} exists; add --force to overwrite it")
        result = convert_alertmanager_file(file)
        for n in result.notes:
            if n.kind == "unsupported":
                out.warn(n.text)
            elif n.kind == "secret":
                out.stderr_line(f"perf-alerts: {n.text}")
            else:
                out.stderr_line(f"perf-alerts: note: {n.text}")
        if out_file is None:
            sys.stdout.write(result.text)
            return
        try:
            with open(out_file, "w" if force else "x", encoding="utf-8") as f:
                f.write(result.text)
        except FileExistsError:
            raise InputError(f"--out: {out_file} exists; add --force to overwrite it") from None
        except OSError as e:
            raise InputError(f"--out: cannot write {out_file}: {e.strerror or e}") from None
        receivers = len(result.data.get("receivers", []))
        out.stderr_line(f"perf-alerts: wrote {out_file} ({receivers} receiver(s)); check it with: "
                        f"perf-alerts --config {out_file} check-config")
