"""Alert history → MTTA (time to acknowledge) and MTTR (time to resolve) per rule and severity."""

from __future__ import annotations

from collections import defaultdict
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


def _stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"count": 0, "mean_seconds": None, "median_seconds": None}
    a = np.asarray(xs)
    return {"count": int(a.size), "mean_seconds": round(float(a.mean()), 1), "median_seconds": round(float(np.median(a)), 1)}


def alert_stats(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
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
    by_rule = [
        {"rule": r, "severity": s, "fired": fired[(r, s)], "mtta": _stats(tta[(r, s)]), "mttr": _stats(ttr[(r, s)])}
        for (r, s) in sorted(fired, key=lambda k: -fired[k])
    ]
    by_sev: dict[str, Any] = {}
    for sev in ("critical", "warning", "info"):
        a = [x for (r, s), xs in tta.items() if s == sev for x in xs]
        b = [x for (r, s), xs in ttr.items() if s == sev for x in xs]
        n = sum(v for (r, s), v in fired.items() if s == sev)
        by_sev[sev] = {"fired": n, "mtta": _stats(a), "mttr": _stats(b)}
    all_a = [x for xs in tta.values() for x in xs]
    all_b = [x for xs in ttr.values() for x in xs]
    return {"episodes": len(eps), "mtta": _stats(all_a), "mttr": _stats(all_b), "by_severity": by_sev, "by_rule": by_rule}
