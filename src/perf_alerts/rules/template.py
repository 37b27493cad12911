"""Annotation templates: see `perf_alerts.template` (re-exported here for older imports)."""

from perf_alerts.template import fmt_number, render, template_problems

__all__ = ["fmt_number", "render", "template_problems"]
