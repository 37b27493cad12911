"""Alert history → MTTA (time to acknowledge) and MTTR (time to resolve) per rule and severity."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np


def episodes(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Firing episodes (firing → acknowledged? → resolved?) rebuilt from the event log."""
    open_ep: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for e in events:
        fp, ev, ts = e["fingerprint"], e["event"], float(e["ts"])
        if ev == "firing":
            ep = {"fingerprint": fp, "rule": e["rule"], "severity": e["severity"], "fired_at": ts,
                  "acknowledged_at": None, "resolved_at": None}
            open_ep[fp] = ep
            out.append(ep)
        elif ev == "acknowledged" and fp in open_ep and open_ep[fp]["acknowledged_at"] is None:
            open_ep[fp]["acknowledged_at"] = ts
        elif ev == "resolved" and fp in open_ep:
            open_ep.pop(fp)["resolved_at"] = ts
    return out


@dataclass(frozen=True)
class Durations:
    """How long something took over `count` episodes (seconds, rounded to 0.1; None when count is 0)."""

    count: int
    mean_seconds: float | None
    median_seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean_seconds": self.mean_seconds, "median_seconds": self.median_seconds}


@dataclass(frozen=True)
class SeverityStats:
    fired: int
    mtta: Durations
    mttr: Durations

    def to_dict(self) -> dict[str, Any]:
        return {"fired": self.fired, "mtta": self.mtta.to_dict(), "mttr": self.mttr.to_dict()}


@dataclass(frozen=True)
class RuleStats:
    rule: str
    severity: str
    fired: int
    mtta: Durations
    mttr: Durations

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "fired": self.fired,
                "mtta": self.mtta.to_dict(), "mttr": self.mttr.to_dict()}


@dataclass(frozen=True)
class AlertStats:
    """Firing episodes with MTTA/MTTR overall, per severity (critical, warning, info) and per rule
    (most fired first). One computation read by `perf-alerts history`, the executive summary and
    the demo; `to_dict()` is the JSON form."""

    episodes: int
    mtta: Durations
    mttr: Durations
    by_severity: dict[str, SeverityStats]
    by_rule: list[RuleStats]

    def to_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "mtta": self.mtta.to_dict(), "mttr": self.mttr.to_dict(),
                "by_severity": {k: v.to_dict() for k, v in self.by_severity.items()},
                "by_rule": [r.to_dict() for r in self.by_rule]}


def _stats(xs: list[float]) -> Durations:
    if not xs:
        return Durations(0, None, None)
    a = np.asarray(xs)
    return Durations(int(a.size), round(float(a.mean()), 1), round(float(np.median(a)), 1))


def alert_stats(events: Iterable[Mapping[str, Any]]) -> AlertStats:
    eps = episodes(events)
    tta: dict[tuple[str, str], list[float]] = defaultdict(list)
    ttr: dict[tuple[str, str], list[float]] = defaultdict(list)
    fired: dict[tuple[str, str], int] = defaultdict(int)
    for ep in eps:
        k = (ep["rule"], ep["severity"])
        fired[k] += 1
        if ep["acknowledged_at"] is not None:
            tta[k].append(ep["acknowledged_at"] - ep["fired_at"])
        if ep["resolved_at"] is not None:
            ttr[k].append(ep["resolved_at"] - ep["fired_at"])
    by_rule = [RuleStats(r, s, fired[(r, s)], _stats(tta[(r, s)]), _stats(ttr[(r, s)]))
               for (r, s) in sorted(fired, key=lambda k: -fired[k])]
    by_sev: dict[str, SeverityStats] = {}
    for sev in ("critical", "warning", "info"):
        a = [x for (r, s), xs in tta.items() if s == sev for x in xs]
        b = [x for (r, s), xs in ttr.items() if s == sev for x in xs]
        n = sum(v for (r, s), v in fired.items() if s == sev)
        by_sev[sev] = SeverityStats(n, _stats(a), _stats(b))
    all_a = [x for xs in tta.values() for x in xs]
    all_b = [x for xs in ttr.values() for x in xs]
    return AlertStats(len(eps), _stats(all_a), _stats(all_b), by_sev, by_rule)
