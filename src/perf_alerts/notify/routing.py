"""The route tree: which receivers get an alert, and with which grouping and timings.

Semantics follow Alertmanager: depth-first, the first matching child wins unless it says
`continue: true`; a node that matches but has no matching child is itself the target;
unset fields inherit from the parent — except `mute_time_intervals` and
`active_time_intervals`, which are the node's own (dispatch/route.go sets them from the
node's configuration, so a child of a muted route is not muted unless it says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from perf_alerts.config import DEFAULT_ROUTE, Route


@dataclass(frozen=True)
class ResolvedRoute:
    id: str  # position in the tree, e.g. "0.1"
    receiver: str
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    send_resolved: bool
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if "..." in self.group_by:  # Alertmanager's "group by every label"
            return dict(labels)
        return {k: labels.get(k, "") for k in self.group_by}


def _resolve(node: Route, parent: ResolvedRoute, node_id: str) -> ResolvedRoute:
    return ResolvedRoute(
        id=node_id,
        receiver=node.receiver or parent.receiver,
        group_by=tuple(node.group_by) if node.group_by is not None else parent.group_by,
        group_wait=node.group_wait if node.group_wait is not None else parent.group_wait,
        group_interval=node.group_interval if node.group_interval is not None else parent.group_interval,
        repeat_interval=node.repeat_interval if node.repeat_interval is not None else parent.repeat_interval,
        send_resolved=node.send_resolved if node.send_resolved is not None else parent.send_resolved,
        mute_time_intervals=tuple(node.mute_time_intervals),
        active_time_intervals=tuple(node.active_time_intervals),
    )


_DEFAULT = ResolvedRoute(
    "", DEFAULT_ROUTE.receiver, tuple(DEFAULT_ROUTE.group_by), DEFAULT_ROUTE.group_wait,
    DEFAULT_ROUTE.group_interval, DEFAULT_ROUTE.repeat_interval, DEFAULT_ROUTE.send_resolved,
)


def match_routes(root: Route, labels: Mapping[str, str]) -> list[ResolvedRoute]:
    """Every route (receiver + settings) an alert with these labels goes to; never empty."""

    def walk(node: Route, parent: ResolvedRoute, node_id: str) -> list[ResolvedRoute]:
        me = _resolve(node, parent, node_id)
        out: list[ResolvedRoute] = []
        for i, child in enumerate(node.routes):
            if all(m.matches(labels) for m in child.matchers):
                out += walk(child, me, f"{node_id}.{i}")
                if not child.continue_:
                    break
        return out or [me]

    return walk(root, _DEFAULT, "0")
