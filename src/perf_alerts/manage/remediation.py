"""Example python actions for policies (`type: python, callable: "perf_alerts.manage.remediation:log_only"`).

A python action is any callable taking the `ActionContext` (see `perf_alerts.manage.actions`);
one that also accepts `dry_run` is called in dry runs too, so it can say what it would do.
Register your own by import path, with `perf_alerts.manage.actions.register_action(name)`,
or as an entry point in the `perf_alerts.actions` group.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("perf_alerts.remediation")


def log_only(ctx: Any, dry_run: bool = True) -> dict[str, Any]:
    """Does nothing but say what a remediation would act on: a safe template to copy."""
    firing = ctx.variables.get("firing.critical")
    what = f"policy {ctx.policy}: would restart the slowest agent's worker (critical alerts firing: {firing})"
    log.info("%s%s", "[dry run] " if dry_run else "", what)
    return {"description": what, "dry_run": dry_run}
