"""Management commands: `run` (the daemon), `status` (its replicas), `optimize`, `schedules`, `policies`, `audit`.

Registered on the main app by `register(app)`. Heavy imports stay inside the commands so
`perf-alerts --help` does not pay for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

import typer

from perf_alerts.cli import output as out
from perf_alerts.cli._common import setup_logging, system
from perf_alerts.textsafe import plural
from perf_alerts.timeutil import format_duration, iso

if TYPE_CHECKING:
    from perf_alerts.manage.daemon import ServeHTTP


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def _http_front_end() -> "ServeHTTP | None":
    """The daemon's dashboard/API server (`http.app.serve_for_daemon`), handed to the daemon so the
    management layer never imports the HTTP front end; None (with a warning) without the web extra."""
    try:
        from perf_alerts.http.app import serve_for_daemon
    except ImportError as e:
        out.warn(f"dashboard/API not served: the web extra is missing (pip install 'perf-alerts[web]'): {e}")
        return None
    return serve_for_daemon


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        host: Optional[str] = typer.Option(None, "--host", help="Dashboard/API address (default global.http_host, 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, "--port", help="Dashboard/API port (default global.http_port, 8080; 0 = any free port)."),
        once: bool = typer.Option(False, "--once", help="Run one cycle and exit (no HTTP)."),
        no_http: bool = typer.Option(False, "--no-http", help="Do not serve the dashboard and API."),
        token: Optional[str] = typer.Option(None, "--token", envvar="PERF_ALERTS_TOKEN", show_envvar=True,
                                            help="API token (required off loopback); prefer the environment variable."),
        no_host_metrics: bool = typer.Option(False, "--no-host-metrics", help="Do not collect CPU/memory/disk."),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """The daemon: collect, evaluate on the schedules, run policies, deliver, serve the dashboard.

        Stops cleanly on SIGTERM/SIGINT; undelivered notifications stay in the outbox and a
        restart continues where it stopped. The API token comes from PERF_ALERTS_TOKEN.

        Several daemons may share one store: all serve and deliver, one leads (evaluates, runs
        schedules, policies and retention) and another takes over when it dies; see
        `perf-alerts status`. A `--once` run while another daemon leads collects and delivers only.
        """
        from perf_alerts.manage.daemon import run_daemon

        setup_logging(verbose)
        s = system()
        code = run_daemon(s, host=host, port=port, http=not no_http, once=once, token=token or None,
                          collect_host=not no_host_metrics, serve_http=None if no_http or once else _http_front_end())
        raise typer.Exit(code)  # a DaemonError (bad bind, port in use) is mapped to exit 2 with the other errors

    @app.command()
    def optimize(
        lookback: str = typer.Option("24h", "--lookback", help="Window the recommendations look at."),
        agent: Optional[str] = typer.Option(None, "--agent"),
        apply: bool = typer.Option(False, "--apply", help="Run the policy actions whose condition holds "
                                   "(remediation only where the action has enabled: true)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Recommendations with their evidence, and what the policies would do now (dry run unless --apply)."""
        from perf_alerts.manage.policies import optimize_report
        from perf_alerts.timeutil import parse_duration_arg

        lb = parse_duration_arg(lookback, "--lookback")
        s = system()
        rep = optimize_report(s, lookback=lb, agent=agent, apply=apply, who=f"cli:{_user()}")
        if as_json:
            out.emit_json(rep)
            return
        recs = rep["recommendations"].get("recommendations", [])
        out.line(f"recommendations for {rep['recommendations']['window']['lookback']} "
                 f"ending {out.to_second(rep['recommendations']['window']['end'])}:")
        if not recs:
            out.line(f"  {rep['recommendations'].get('note') or 'none'}")
        for r in recs:
            out.line(f"  [{r['priority']}] {r['title']}")
            for ev in r.get("evidence", [])[:3]:
                out.line(f"      · {ev}")
            out.line(f"      → {r['action']}")
        out.line("")
        pol = rep["policies"]
        if not pol:
            out.line("no policies configured")
            return
        out.line("policies " + ("(applied)" if apply else "(dry run; --apply runs the enabled actions)") + ":")
        for p in pol:
            vals = ", ".join(f"{k}={'no data' if v is None else v}" for k, v in p["values"].items())
            state = "matches" if p["matched"] else "no match"
            out.line(f"  {p['policy']}: {state} ({vals})" + (f" — {p['skipped']}" if p["skipped"] else ""))
            for ex in p["executions"]:
                out.line(f"      {_execution_text(ex, applied=apply)}"
                         + (f" (audit #{ex['audit_id']})" if ex["audit_id"] else ""))

    @app.command("schedules")
    def schedules_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
        """Schedules with their job, last run, next run and whether they are overdue."""
        from perf_alerts.manage.schedules import Scheduler

        sch = Scheduler(system())
        items = sch.status()
        if as_json:
            out.emit_json(items)
            return
        out.table(None, ["name", "every", "job", "group", "last run", "status", "next run", "overdue", "runs"], [
            (x["name"] + ("" if x["enabled"] else " (disabled)"), x["every"], x["job"], x["group"] or "",
             x["last_run"] or "never", x["last_status"] or "", x["next_run"] or "-",
             f"yes ({x['overdue_by']})" if x["overdue"] else "", x["runs"]) for x in items
        ])
        for g in sch.uncovered_groups():
            out.warn(f"no evaluate schedule covers rule group {g!r}: its rules are never evaluated by the daemon")

    @app.command("policies")
    def policies_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
        """Notification policies: condition, priority, cooldown, actions (live or dry-run), last fired."""
        from perf_alerts.manage.policies import PolicyEngine

        items = PolicyEngine(system()).status()
        if as_json:
            out.emit_json(items)
            return
        if not items:
            out.line("no policies configured")
            return
        out.table(None, ["priority", "name", "when", "actions", "cooldown", "last fired", "in cooldown"], [
            (x["priority"], x["name"] + ("" if x["enabled"] else " (disabled)"), x["when"],
             ", ".join(f"{a['type']}[{a['mode']}]" for a in x["actions"]), x["cooldown"], x["last_fired"] or "never",
             x["cooldown_until"] or "") for x in items
        ])

    @app.command("status")
    def status_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
        """The daemons (replicas) sharing the store, which one leads, and their last heartbeat.

        A replica whose heartbeat is older than three evaluation intervals is shown stale
        (killed, hung or cut off from the store); its row is forgotten after a week.
        """
        from perf_alerts.manage.cluster import cluster_status
        from perf_alerts.timeutil import SystemClock

        s = system()
        st = cluster_status(s.store, SystemClock().now(), float(s.config.global_.evaluation_interval))
        if as_json:
            out.emit_json(st.to_dict())
            return
        if st.leader is not None:
            out.line(f"leader: {st.leader} (term {st.term}, since {out.to_second(iso(st.leader_since))}, "
                     f"lease until {out.to_second(iso(st.lease_expires_at))})")
        else:
            out.line("leader: none (no daemon holds the lease: none is running, or the last leader died and "
                     "its lease has not run out yet)")
        if not st.replicas:
            out.line("no replicas: no daemon (perf-alerts run) is running on this store")
            return
        out.table(None, ["replica", "host", "pid", "http", "last heartbeat", "state", "leader"], [
            (r.id, r.host, r.pid, r.http_url or "-", f"{format_duration(max(r.heartbeat_age, 0.0))} ago",
             r.state, "yes" if r.leader else "") for r in st.replicas
        ])
        stale = len(st.replicas) - st.alive
        out.line(f"{plural(len(st.replicas), 'replica')}, {st.alive} alive" + (f", {stale} stale" if stale else ""))

    @app.command("audit")
    def audit_cmd(
        limit: int = typer.Option(50, "--limit"),
        policy: Optional[str] = typer.Option(None, "--policy"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """The audit log of automated actions: who, what, when, result, and the verified effect."""
        from perf_alerts.manage.actions import audit_log

        items = audit_log(system(), limit, policy)
        if as_json:
            out.emit_json(items)
            return
        if not items:
            out.line("no actions recorded")
            return

        def effect(x: dict[str, Any]) -> str:
            if not x["verification"]:
                return ""
            if x["verification"] == "pending":
                return f"pending until {x['verify_due_at']}"
            b, a = x["before_value"], x["after_value"]
            fmt = (lambda v: "-" if v is None else f"{v:.4g}")
            return f"{x['verification']} ({x['metric']} {fmt(b)} → {fmt(a)})"

        out.table(None, ["id", "at", "who", "policy", "action", "mode", "result", "effect"], [
            (x["id"], x["at"], x["who"], x["policy"], x["action"], "dry-run" if x["dry_run"] else "live", x["result"],
             effect(x)) for x in items
        ])


def _execution_text(ex: dict[str, Any], *, applied: bool = True) -> str:
    """One action as a person reads it: what it targets and what it did (or, in a dry run, would do).

    A dry run under `--apply` means the action itself is not enabled, so the hint says how to enable
    it; without `--apply` every action is a dry run and the heading already says what runs them.
    """
    import json

    d = ex.get("detail") or {}
    target = ex.get("target")
    head = ex["action"] + (f" {target}" if target and target != ex["action"] else "")
    if ex["dry_run"] or ex["result"] == "dry-run":
        what = ("would call " + str(d["would_call"]) + (f" with {json.dumps(d['params'], sort_keys=True, default=str)}" if d.get("params") else "")
                if d.get("would_call") else
                f"would post {', '.join(map(str, d['would_post']))}" if d.get("would_post") else
                f"would escalate {plural(int(d['would_escalate']), 'alert')} to {', '.join(d.get('receivers', []))}"
                if "would_escalate" in d else "would run")
        return f"{head}: dry run, {what}" + (" (not enabled: set enabled: true on the action to run it)"
                                              if applied else "")
    return f"{head}: {ex['result']}"
