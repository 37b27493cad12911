"""Which alerts are muted right now, and why: silenced (by which silences) or inhibited, and
which have every route closed by a time interval now (mute_time_intervals, or outside their
active_time_intervals).

One computation for the pipeline (what not to notify), the CLI and the dashboard (what to
show), so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from perf_alerts.config import Config
from perf_alerts.model import Alert, AlertState
from perf_alerts.notify.inhibit import inhibited
from perf_alerts.notify.routing import match_routes
from perf_alerts.notify.silence import active_silences
from perf_alerts.notify.timeintervals import gate
from perf_alerts.store import Store


@dataclass(frozen=True)
class Muting:
    silenced_by: dict[str, list[str]] = field(default_factory=dict)  # fingerprint → silence ids
    inhibited: frozenset[str] = frozenset()
    # fingerprint → why none of its routes sends now. Not part of `muted`: a time interval closes
    # a route's flushes (the pipeline checks it per group), not the alert
    time_muted: dict[str, str] = field(default_factory=dict)

    @property
    def silenced(self) -> set[str]:
        return set(self.silenced_by)

    @property
    def muted(self) -> set[str]:
        return self.silenced | set(self.inhibited)


def muting(store: Store, config: Config, alerts: Iterable[Alert], at: float) -> Muting:
    alerts = list(alerts)
    silences = active_silences(store, at)
    by: dict[str, list[str]] = {}
    for a in alerts:
        if a.state == AlertState.FIRING:
            hits = [s.id for s in silences if s.matches(a.labels)]
            if hits:
                by[a.fingerprint] = hits
    return Muting(by, frozenset(inhibited(alerts, config.inhibit_rules) - set(by)), _time_muted(config, alerts, at))


def _time_muted(config: Config, alerts: list[Alert], at: float) -> dict[str, str]:
    intervals = config.time_interval_map()
    if not intervals:
        return {}
    out: dict[str, str] = {}
    for a in alerts:
        if a.state != AlertState.FIRING:
            continue
        gates = [gate(intervals, r.mute_time_intervals, r.active_time_intervals, at)
                 for r in match_routes(config.route, a.labels)]
        if gates and all(g.closed for g in gates):
            out[a.fingerprint] = "; ".join(dict.fromkeys(g.reason() for g in gates))
    return out
