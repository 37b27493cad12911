"""`perf-alerts slo`: every SLO (per split value) with objective, achieved, error budget left,
burn rate over the last hour and projected exhaustion: `perf_alerts.analytics.slo`, printed."""

from __future__ import annotations

from typing import Optional

import typer

from perf_alerts.cli import output as out
from perf_alerts.cli._common import system


def register(app: typer.Typer) -> None:
    @app.command("slo")
    def slo(
        at: Optional[str] = typer.Option(None, "--at", help="Judge the SLOs at this time (ISO 8601, Unix seconds, now-1h)."),
        window: Optional[str] = typer.Option(
            None, "--window", help="Over this window instead of each SLO's compliance window (budget SLOs: "
                                   "instead of the current period, limit scaled)."),
        name: Optional[list[str]] = typer.Option(None, "--name", help="Only this SLO (repeatable)."),
        fail_on_breach: bool = typer.Option(False, "--fail-on-breach", help="Exit 1 when an SLO is breached."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """SLOs: objective, achieved, error budget left, burn rate (last hour), projected exhaustion."""
        from perf_alerts.analytics.slo import human_time, slo_report
        from perf_alerts.errors import InputError
        from perf_alerts.timeutil import SystemClock, check_unix, parse_duration_arg, parse_time_arg

        s = system()
        if name:
            unknown = sorted(set(name) - {x.name for x in s.config.slos})
            if unknown:
                raise InputError(f"--name: unknown SLO(s) {', '.join(unknown)}; defined: "
                                 + (", ".join(x.name for x in s.config.slos) or "none (add slos: to the config)"))
        t = s.clock.now() if at is None else check_unix(parse_time_arg(at, SystemClock()), at)
        w = None if window is None else parse_duration_arg(window, "--window", lo=60.0)
        rep = slo_report(s.store, s.config, t, w, name or None)
        if as_json:
            out.emit_json(rep)
        elif not s.config.slos:
            out.line("no SLOs configured (add slos: to the config; see README, SLOs)")
        else:
            rows = []
            for r in rep["slos"]:
                lab = ",".join(f"{k}={v}" for k, v in r["labels"].items()) or "-"
                objective = r["objective_display"]
                left = "-" if r["budget_remaining"] is None else f"{r['budget_remaining'] * 100:.1f}%"
                burn = "-" if r["burn_rate"] is None else f"{r['burn_rate']:.2f}×"
                exhausted = human_time(_ts(r["exhausted_at"])) or "-"
                extra = "" if r["projected_text"] is None else f" (projected {r['projected_text']})"
                rows.append((r["name"], lab, objective, r["achieved_text"] + extra, left, burn, exhausted,
                             r["status"], r["window"]))
            out.table(f"SLOs at {human_time(t)}", ["slo", "labels", "objective", "achieved", "budget left",
                                                   "burn (1h)", "exhausted at", "status", "window"], rows)
            c = rep["counts"]
            out.line(f"{c['ok']} ok, {c['at risk']} at risk, {c['breached']} breached, {c['no data']} no data")
        if fail_on_breach and rep["counts"]["breached"]:
            raise typer.Exit(1)


def _ts(text: Optional[str]) -> Optional[float]:
    from perf_alerts.timeutil import parse_timestamp

    return None if text is None else parse_timestamp(text)
