"""SLO arithmetic: compliance, error budget, burn rate and projected exhaustion (numpy, vectorised).

One computation behind `perf-alerts slo`, the SLO burn-rate alerts, the crew tool and the
executive summary. The samples of an SLO become *events* with a group (the split by
`by:` labels), a bad amount and a total amount:

- latency: every sample of `metric` is one event, bad when its value is above `threshold`;
- success: every sample of `total_metric` is one event; every sample of `metric` adds its
  value (1 per failure) to the bad amount;
- budget: every sample of `metric` adds its value to the spend (bad); the "total" is time.

Windows are left-open, right-closed (`start < ts <= end`) like the rest of the store. A
window without events is "no data" (None), never a made-up 100%.

Burn rate (the SRE workbook's): how fast the error budget is spent relative to the rate that
would spend exactly all of it over the compliance window; 1× spends it on time, 14.4× spends a
30-day budget in ~2 days. For budget SLOs the sustainable rate is `limit / period`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np

from perf_alerts.config import SLO, Config
from perf_alerts.store import SampleBlock, SeriesInfo, Store
from perf_alerts.timeutil import format_duration

BURN_RATE_WINDOW = 3600.0  # `burn_rate` in a status: over the last hour
AT_RISK_REMAINING = 0.25  # less than a quarter of the budget left is "at risk"

QueryFn = Callable[[list[SeriesInfo], float, float], SampleBlock]


def human_time(ts: float | None) -> str | None:
    """`2026-11-26 14:05 UTC`: what people read (no microseconds, no `T`)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso_seconds(ts: float | None) -> str | None:
    """ISO 8601 to the second (`2026-11-26T14:05:00Z`), for JSON."""
    if ts is None:
        return None
    return datetime.fromtimestamp(round(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pct(x: float | None, digits: int = 2) -> str:
    """0.99512 → "99.51%"; None → "no data"."""
    if x is None:
        return "no data"
    return f"{x * 100:.{digits}f}%"


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


# --------------------------------------------------------------------------- events


@dataclass
class SLOEvents:
    """An SLO's events over a span, flattened: time, group index, bad amount, total amount."""

    slo: SLO
    keys: list[tuple[str, ...]]  # group index → the `by` label values
    t: np.ndarray
    g: np.ndarray
    bad: np.ndarray
    tot: np.ndarray
    start: float
    end: float

    def labels(self, gi: int) -> dict[str, str]:
        """The split labels of group `gi`; a label the series do not have is left out (as Prometheus does)."""
        return {k: v for k, v in zip(self.slo.by, self.keys[gi]) if v != ""}

    def sums(self, a: float, b: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bad, total, event count) per group over a < t <= b."""
        n = len(self.keys)
        m = (self.t > a) & (self.t <= b)
        gi = self.g[m]
        return (np.bincount(gi, weights=self.bad[m], minlength=n), np.bincount(gi, weights=self.tot[m], minlength=n),
                np.bincount(gi, minlength=n).astype(float))


def _select(store: Store, metric: str, matchers: Sequence[Any]) -> list[SeriesInfo]:
    return [s for s in store.list_series(metric) if all(m.matches(s.labels) for m in matchers)]


def slo_series(store: Store, slo: SLO) -> list[tuple[list[SeriesInfo], str]]:
    """The SLO's series: (series, role) for its metric ("main") and, for a success SLO, its total metric."""
    parts: list[tuple[list[SeriesInfo], str]] = [(_select(store, slo.metric, slo.matchers), "main")]
    if slo.kind == "success":
        assert slo.total_metric is not None
        tm = slo.total_matchers if slo.total_matchers is not None else slo.matchers
        parts.append((_select(store, slo.total_metric, tm), "total"))
    return parts


def group_key(slo: SLO, s: SeriesInfo) -> tuple[str, ...]:
    return tuple(s.labels.get(lb, "") for lb in slo.by)


def load_events(store: Store, slo: SLO, start: float, end: float, query: QueryFn | None = None, *,
                parts: list[tuple[list[SeriesInfo], str]] | None = None,
                key_index: dict[tuple[str, ...], int] | None = None, role: list[np.ndarray] | None = None
                ) -> SLOEvents:
    """The SLO's events in (start, end]. `query` reads a block (the evaluator passes its per-cycle cache).

    `parts` (`slo_series`) and `key_index` (group key → index, extended in place) let a caller that
    keeps state across reads (`rules.sloburn`) keep one group numbering; `role`, when given, receives
    one boolean array per event: True for the events of the SLO's metric ("main")."""
    q: QueryFn = query or (lambda series, a, b: store.query([s.id for s in series], a, b))
    if parts is None:
        parts = slo_series(store, slo)
    if key_index is None:
        key_index = {}
    role_l: list[np.ndarray] = []
    ts_l: list[np.ndarray] = []
    g_l: list[np.ndarray] = []
    bad_l: list[np.ndarray] = []
    tot_l: list[np.ndarray] = []
    for series, part_role in parts:
        if not series:
            continue
        block = q(series, start, end)
        if len(block) == 0:
            continue
        ids = np.array(sorted(s.id for s in series), dtype=np.int64)
        by_id = {s.id: s for s in series}
        gid = np.array([key_index.setdefault(group_key(slo, by_id[int(i)]), len(key_index)) for i in ids],
                       dtype=np.int64)
        pos = np.searchsorted(ids, block.series_id)
        ok = (pos < ids.size) & (ids[np.minimum(pos, ids.size - 1)] == block.series_id)
        t, v, g = block.ts[ok], block.value[ok], gid[pos[ok]]
        # a downsampled row stands for n raw samples: value is their mean (so their sum is value × n)
        w = block.weights[ok]
        if slo.kind == "latency":
            assert slo.threshold is not None
            bad = (v > slo.threshold) * w
            if block.n is not None and block.lo is not None and block.hi is not None:
                # a bucket entirely above (or at or under) the threshold is exact; a mixed one counts by its mean
                lo, hi = block.lo[ok], block.hi[ok]
                bad = np.where(lo > slo.threshold, w, np.where(hi <= slo.threshold, 0.0, bad))
            tot = w.astype(float)
        elif slo.kind == "success":
            bad, tot = (v * w, np.zeros_like(v)) if part_role == "main" else (np.zeros_like(v), w.astype(float))
        else:
            bad, tot = v * w, np.zeros_like(v)
        ts_l.append(t)
        g_l.append(g)
        bad_l.append(bad)
        tot_l.append(tot)
        role_l.append(np.full(t.size, part_role == "main"))
    keys = [k for k, _ in sorted(key_index.items(), key=lambda kv: kv[1])]
    if role is not None:
        role.append(np.concatenate(role_l) if role_l else np.zeros(0, dtype=bool))
    if not ts_l:
        e = np.empty(0)
        return SLOEvents(slo, keys, e, np.empty(0, dtype=np.int64), e.copy(), e.copy(), start, end)
    return SLOEvents(slo, keys, np.concatenate(ts_l), np.concatenate(g_l), np.concatenate(bad_l),
                     np.concatenate(tot_l), start, end)


# --------------------------------------------------------------------------- arithmetic


def error_ratio(bad: np.ndarray, tot: np.ndarray) -> np.ndarray:
    """bad / total per group, NaN where there were no events (failures without runs count as runs)."""
    total = np.maximum(tot, bad)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(total > 0, bad / np.where(total > 0, total, 1.0), np.nan)
    return np.clip(r, 0.0, 1.0)


def burn_rates(ev: SLOEvents, at: float, window: float) -> np.ndarray:
    """The burn rate of each group over (at - window, at]; NaN where the window has no events."""
    bad, tot, n = ev.sums(at - window, at)
    return burn_from_sums(ev.slo, bad, tot, n, window)


def burn_from_sums(slo: SLO, bad: np.ndarray, tot: np.ndarray, n: np.ndarray, window: float) -> np.ndarray:
    """`burn_rates` from a window's per-group sums (bad amount, total amount, event count)."""
    if slo.kind == "budget":
        assert slo.limit is not None
        sustainable = slo.limit / slo.period  # per second
        return np.where(n > 0, (bad / window) / sustainable, np.nan)
    return error_ratio(bad, tot) / slo.budget_fraction


@dataclass
class SLOStatus:
    """One SLO (one split value of it) over a window ending at `at`."""

    name: str
    kind: str
    labels: dict[str, str]
    objective: float | None  # fraction of good events (latency, success); None for budget SLOs
    objective_text: str
    window: float  # seconds the compliance (or spend) is measured over
    start: float
    at: float
    events: float  # events (latency, success) or samples (budget) in the window
    bad: float | None  # bad events, or the spend
    achieved: float | None  # fraction good (latency, success); the spend (budget)
    budget_remaining: float | None  # fraction of the error budget left; negative when overspent
    burn_rate: float | None  # over the last hour
    exhausted_at: float | None  # projected, inside the window / period; None if not projected to run out
    status: str  # ok, at risk, breached, no data
    limit: float | None = None  # budget SLOs: the limit for the window
    projected: float | None = None  # budget SLOs: the projected spend for the whole period
    unit: str = ""
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def held(self) -> bool | None:
        return None if self.status == "no data" else self.status != "breached"

    def series(self) -> str:
        lab = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.name}{{{lab}}}" if lab else self.name

    def achieved_text(self) -> str:
        if self.achieved is None:
            return "no data"
        if self.kind == "budget":
            return money(self.achieved, self.unit)
        return pct(self.achieved, 3 if (self.objective or 0) >= 0.999 else 2)

    def objective_value_text(self) -> str:
        if self.kind == "budget":
            return f"≤ {money(self.limit, self.unit)}"
        return pct(self.objective, 3 if (self.objective or 0) >= 0.999 else 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "labels": dict(self.labels), "objective": self.objective,
            "objective_text": self.objective_text, "window": format_duration(self.window),
            "start": iso_seconds(self.start), "at": iso_seconds(self.at),
            "events": int(self.events), "bad": _r(self.bad), "achieved": _r(self.achieved),
            "achieved_text": self.achieved_text(), "objective_display": self.objective_value_text(),
            "projected_text": None if self.projected is None else money(self.projected, self.unit),
            "budget_remaining": _r(self.budget_remaining, 4), "burn_rate": _r(self.burn_rate, 3),
            "exhausted_at": iso_seconds(self.exhausted_at), "status": self.status, "held": self.held,
            "limit": _r(self.limit), "projected": _r(self.projected, 4), "unit": self.unit, "why": self.why,
        }


def money(x: float | None, unit: str) -> str:
    if x is None:
        return "no data"
    if unit == "USD":
        return f"${x:,.2f}"
    return f"{x:.4g}{(' ' + unit) if unit else ''}"


def _status_ratio(slo: SLO, ev: SLOEvents, at: float, window: float, unit: str) -> list[SLOStatus]:
    bad, tot, n = ev.sums(at - window, at)
    r = error_ratio(bad, tot)
    burn = burn_rates(ev, at, min(BURN_RATE_WINDOW, window))
    out = []
    for gi in range(len(ev.keys)):
        total = float(max(tot[gi], bad[gi]))
        if total <= 0:
            out.append(SLOStatus(slo.name, slo.kind, ev.labels(gi), slo.objective, slo.objective_text(unit), window,
                                 at - window, at, 0.0, None, None, None, None, None, "no data", unit=unit,
                                 why=f"no events in the last {format_duration(window)}"))
            continue
        ratio = float(r[gi])
        achieved = 1.0 - ratio
        remaining = 1.0 - ratio / slo.budget_fraction
        b = None if math.isnan(burn[gi]) else float(burn[gi])
        exhausted = None
        if remaining > 0 and b is not None and b > 0:
            t = at + remaining * window / b
            exhausted = t if t <= at + window else None
        if remaining < 0:
            status, why = "breached", f"{pct(achieved)} < objective {pct(slo.objective)}: budget overspent"
        elif exhausted is not None or remaining < AT_RISK_REMAINING:
            # at risk: the last hour's burn rate runs the budget out within the window, or little is left
            status = "at risk"
            why = (f"burning {b:.1f}× the sustainable rate: {remaining:.0%} of the budget left, gone by "
                   f"{human_time(exhausted)}" if exhausted is not None and b is not None
                   else f"only {remaining:.0%} of the error budget left")
        else:
            status, why = "ok", f"{remaining:.0%} of the error budget left"
        out.append(SLOStatus(slo.name, slo.kind, ev.labels(gi), slo.objective, slo.objective_text(unit), window,
                             at - window, at, total, float(bad[gi]), achieved, remaining, b, exhausted,
                             status, unit=unit, why=why))
    return out


def _status_budget(slo: SLO, ev: SLOEvents, at: float, start: float, end: float, unit: str,
                   limit: float) -> list[SLOStatus]:
    """Spend over (start, at] against `limit` for the span (start, end]; end > at projects the rest."""
    bad, _tot, n = ev.sums(start, at)
    burn = burn_rates(ev, at, min(BURN_RATE_WINDOW, at - start) if at > start else BURN_RATE_WINDOW)
    elapsed = at - start
    out = []
    for gi in range(len(ev.keys)):
        if n[gi] <= 0:
            out.append(SLOStatus(slo.name, slo.kind, ev.labels(gi), None, slo.objective_text(unit), end - start,
                                 start, at, 0.0, None, None, None, None, None, "no data", limit=limit, unit=unit,
                                 why=f"no {slo.metric} samples since {human_time(start)}"))
            continue
        spend = float(bad[gi])
        remaining = 1.0 - spend / limit
        b = None if math.isnan(burn[gi]) else float(burn[gi])
        rate = spend / elapsed if elapsed > 0 else 0.0
        projected = spend + rate * max(0.0, end - at)
        exhausted = None
        if 0 < spend < limit and rate > 0:
            t = start + limit / rate
            exhausted = t if t <= end else None
        if spend > limit:
            status, why = "breached", f"spent {money(spend, unit)} of {money(limit, unit)}"
        elif projected > limit:
            status, why = "at risk", f"projected {money(projected, unit)} for the period, over {money(limit, unit)}"
        else:
            status, why = "ok", f"projected {money(projected, unit)} of {money(limit, unit)}"
        out.append(SLOStatus(slo.name, slo.kind, ev.labels(gi), None, slo.objective_text(unit), end - start, start,
                             at, float(n[gi]), spend, spend, remaining, b, exhausted, status, limit=limit,
                             projected=projected, unit=unit, why=why))
    return out


def slo_status(store: Store, config: Config, slo: SLO, at: float, window: float | None = None,
               query: QueryFn | None = None) -> list[SLOStatus]:
    """The SLO (per split value) at `at`.

    Without `window`: latency/success SLOs over their compliance window; budget SLOs over the
    current period (UTC-aligned: a 1d period is the UTC day) with the spend projected to its end.
    With `window`: over (at - window, at]; a budget SLO's limit is scaled to the window and nothing
    is projected (what a summary of a past period needs).
    """
    unit = config.metric_meta(slo.metric).unit
    if slo.kind == "budget":
        assert slo.limit is not None
        if window is None:
            start = math.floor(at / slo.period) * slo.period
            end, limit = start + slo.period, slo.limit
        else:
            start, end, limit = at - window, at, slo.limit * window / slo.period
        ev = load_events(store, slo, min(start, at - BURN_RATE_WINDOW), at, query)
        rows = _status_budget(slo, ev, at, start, end, unit, limit)
    else:
        w = slo.window if window is None else window
        ev = load_events(store, slo, at - max(w, BURN_RATE_WINDOW), at, query)
        rows = _status_ratio(slo, ev, at, w, unit)
    if not rows:  # no series at all: one "no data" row, so the SLO is still listed
        w = window if window is not None else (slo.period if slo.kind == "budget" else slo.window)
        no_limit = None if slo.kind != "budget" or slo.limit is None else (
            slo.limit if window is None else slo.limit * window / slo.period)
        rows = [SLOStatus(slo.name, slo.kind, {}, slo.objective, slo.objective_text(unit), w, at - w, at, 0.0, None,
                          None, None, None, None, "no data", limit=no_limit,
                          unit=unit, why=f"no {slo.metric} series recorded")]
    rows.sort(key=lambda s: tuple(s.labels.get(b, "") for b in slo.by))
    return rows


def slo_statuses(store: Store, config: Config, at: float, window: float | None = None,
                 names: Sequence[str] | None = None) -> list[SLOStatus]:
    """Every configured SLO (or those in `names`) at `at`: the one service function the CLI, the crew
    tool and the summary call."""
    out: list[SLOStatus] = []
    for slo in config.slos:
        if names is not None and slo.name not in names:
            continue
        out += slo_status(store, config, slo, at, window)
    return out


def slo_report(store: Store, config: Config, at: float, window: float | None = None,
               names: Sequence[str] | None = None) -> dict[str, Any]:
    """`slo_statuses` as JSON with counts: what `perf-alerts slo --json` prints and the crew tool returns."""
    rows = slo_statuses(store, config, at, window, names)
    counts = {k: sum(1 for r in rows if r.status == k) for k in ("ok", "at risk", "breached", "no data")}
    return {"at": iso_seconds(at), "window": None if window is None else format_duration(window),
            "slos": [r.to_dict() for r in rows], "counts": counts}


# --------------------------------------------------------------------------- burn-rate alerts


@dataclass
class BurnResult:
    labels: dict[str, str]
    value: float | None
    active: bool
    detail: dict[str, Any]


def burn_alert_results(store: Store, config: Config, alert: str, at: float,
                       query: QueryFn | None = None) -> list[BurnResult]:
    """The multi-window, multi-burn-rate condition of every SLO window that raises `alert`, at `at`.

    Active when the burn rate is at least `factor` over both the long and the short window. The value
    is the smaller of the two burn rates, so value >= factor exactly when the alert's condition holds.
    Groups whose long window has no events give no result (an alert already firing then resolves).
    This reads every window from the store; `rules.sloburn` gives the same from kept buckets.
    """
    out: list[BurnResult] = []
    for slo in config.slos:
        wins = [w for w in slo.windows if w.alert == alert]
        if not wins:
            continue
        ev = load_events(store, slo, at - max(w.long for w in slo.windows), at, query)
        if not ev.keys:
            continue
        # a burn rate "over 3d" from two hours of history is not one: a window is judged once the SLO's
        # events reach back at least half of it (a new crew, a new agent, a store younger than the window)
        first = np.full(len(ev.keys), np.inf)
        np.minimum.at(first, ev.g, ev.t)
        per_window = [(w, burn_rates(ev, at, w.long), burn_rates(ev, at, w.short), ~(first > at - w.long / 2))
                      for w in wins]
        out += window_results(store, config, slo, at, query, ev.keys, range(len(ev.keys)), per_window)
    return out


def window_results(store: Store, config: Config, slo: SLO, at: float, query: QueryFn | None,
                   keys: Sequence[tuple[str, ...]], order: Sequence[int],
                   per_window: Sequence[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]) -> list[BurnResult]:
    """The results of one SLO's burn windows at `at`, from each window's per-group burn rates (long,
    short) and whether the group's history reaches back far enough to judge it; groups in `order`."""
    unit = config.metric_meta(slo.metric).unit
    out: list[BurnResult] = []
    comp_by: dict[tuple[str, ...], SLOStatus] | None = None

    def compliance() -> dict[tuple[str, ...], SLOStatus]:
        """The budget left (the annotations' facts), read only when a window fires: a 28-day read per cycle
        would cost more than every burn rate together."""
        nonlocal comp_by
        if comp_by is None:
            comp = slo_status(store, config, slo, at, None, query)
            comp_by = {tuple(c.labels.get(b, "") for b in slo.by): c for c in comp}
        return comp_by

    def labels(gi: int) -> dict[str, str]:
        return {k: v for k, v in zip(slo.by, keys[gi]) if v != ""}

    for w, bl, bs, judged in per_window:
        for gi in order:
            key = keys[gi]
            if math.isnan(bl[gi]) or not judged[gi]:
                continue
            long_b = float(bl[gi])
            short_b = 0.0 if math.isnan(bs[gi]) else float(bs[gi])
            value = min(long_b, short_b)
            active = long_b >= w.factor and short_b >= w.factor
            c = compliance().get(key) if active else None
            lab = labels(gi)
            split = "".join(f" {k}={v}" for k, v in lab.items())
            left = None if c is None or c.budget_remaining is None else c.budget_remaining
            detail = {
                "slo": slo.name, "split": f" ({split.strip()})" if split else "",
                "burn_long": f"{long_b:.1f}", "burn_short": f"{short_b:.1f}",
                "long_window": format_duration(w.long), "short_window": format_duration(w.short),
                "factor": f"{w.factor:g}", "objective": slo.objective_text(unit),
                "window": format_duration(slo.window if slo.kind != "budget" else slo.period),
                "budget_left": ("not computed (the burn is below the alert's factor)" if not active else
                                "no data" if left is None else f"{left:.0%}"),
                "exhausted": ("already" if left is not None and left <= 0 else
                              f"at {human_time(c.exhausted_at)}" if c is not None and c.exhausted_at else
                              "not within the window"),
                "burn_rate_long": round(long_b, 3), "burn_rate_short": round(short_b, 3),
            }
            out.append(BurnResult({**slo.labels, "slo": slo.name, **lab}, value, active, detail))
    return out


__all__ = ["SLOEvents", "SLOStatus", "BurnResult", "burn_alert_results", "burn_from_sums", "burn_rates", "error_ratio",
           "group_key", "human_time", "slo_series", "window_results",
           "iso_seconds", "load_events", "money", "pct", "slo_report", "slo_status", "slo_statuses"]
