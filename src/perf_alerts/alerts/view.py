"""`AlertView`: an alert as every front end shows it — the alert, what its rule measures, and
whether notifications about it are muted.

The CLI (`perf-alerts alerts`), the HTTP API (`/api/v1/alerts`) and the crew tool (`alerts`,
`dashboard`) render this one view, so an agent, the dashboard and a terminal agree on which
alerts are silenced or inhibited and what they measure. Built by
`PerfAlerts.alert_views()` / `views_of()`; this module only assembles the facts it is given —
muting is computed by the notification layer (`notify.mute.muting`), which the front ends
hand in, so the alerts layer stays below the notification layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from perf_alerts.model import Alert, AlertState
from perf_alerts.timeutil import iso

if TYPE_CHECKING:
    from perf_alerts.config import Config, Rule
    from perf_alerts.store import Store

# labels every alert carries that say nothing about *which* series it is
RULE_LABELS = ("alertname", "severity")


@dataclass(frozen=True)
class AlertView:
    """One alert with its rule's metric and its muting state, ready to render."""

    alert: Alert
    metric: str | None = None  # None: the rule is no longer configured
    op: str | None = None
    rule_type: str | None = None
    silenced_by: tuple[str, ...] = ()  # ids of the active silences that match it
    inhibited: bool = False
    time_muted: str | None = None  # every route it takes is muted by a time interval now: why

    # -- facts the front ends read -----------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_by)

    @property
    def summary(self) -> str | None:
        return self.alert.annotations.get("summary") or None

    @property
    def since(self) -> float | None:
        """When the current episode began: pending since the condition held, otherwise since it fired."""
        a = self.alert
        return a.active_since if a.state == AlertState.PENDING else a.started_at

    @property
    def series_labels(self) -> dict[str, str]:
        """The labels that tell this series apart (without alertname and severity)."""
        return {k: v for k, v in self.alert.labels.items() if k not in RULE_LABELS}

    @property
    def flags(self) -> tuple[str, ...]:
        """acknowledged / silenced / inhibited / time-muted, in that order, for a one-column rendering."""
        return tuple(name for name, on in (("acknowledged", self.alert.acknowledged), ("silenced", self.silenced),
                                           ("inhibited", self.inhibited), ("time-muted", self.time_muted))
                     if on)

    # -- rendering -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The full JSON form (`perf-alerts alerts --json`, `/api/v1/alerts`): every alert field plus the view's."""
        return {
            **self.alert.to_dict(),
            "since": iso(self.since),
            "metric": self.metric,
            "op": self.op,
            "rule_type": self.rule_type,
            "silenced": self.silenced,
            "silenced_by": list(self.silenced_by),
            "inhibited": self.inhibited,
            "time_muted": self.time_muted,
            "summary": self.summary,
        }


class MutingFacts(Protocol):
    """Who is muted now (`perf_alerts.notify.mute.Muting`): the silences matching each silenced
    alert, and the inhibited alerts."""

    @property
    def silenced_by(self) -> Mapping[str, list[str]]: ...

    @property
    def inhibited(self) -> AbstractSet[str]: ...

    @property
    def time_muted(self) -> Mapping[str, str]: ...


# `perf_alerts.notify.mute.muting(store, config, firing_alerts, at)`: the one computation of
# muting, handed to the façade by the front ends (this layer must not import notify)
MutingFn = Callable[["Store", "Config", list[Alert], float], MutingFacts]


def build_views(alerts: Iterable[Alert], rules: Iterable["Rule"], muting: MutingFacts) -> list[AlertView]:
    """Views of `alerts` (order kept), given the configured rules and the current muting."""
    by_name = {r.name: r for r in rules}
    out: list[AlertView] = []
    for a in alerts:
        rule = by_name.get(a.rule)
        out.append(AlertView(
            alert=a,
            metric=rule.metric if rule else None,
            op=rule.op if rule else None,
            rule_type=rule.type if rule else None,
            silenced_by=tuple(muting.silenced_by.get(a.fingerprint, ())),
            inhibited=a.fingerprint in muting.inhibited,
            time_muted=muting.time_muted.get(a.fingerprint),
        ))
    return out
