"""analyze's findings give a trend's slope in the metric's unit (issue 11): the demo's HTML summary
listed "crew_cost_usd{...} is worsening: 0.0000238 per hour" under Findings while its Risks said
"+0.0000238 USD per hour" for the same trend."""

from __future__ import annotations

import numpy as np

from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

H = 3600.0
T = 1_800_000_000.0


def test_a_worsening_finding_names_the_unit() -> None:
    cfg = parse_config("metrics:\n  crew_cost_usd: {unit: USD, better: lower, kind: event}\n", "u.yaml", env={})
    pa = PerfAlerts(cfg, Store(":memory:"), ManualClock(T))
    rng = np.random.default_rng(3)
    for i, ts in enumerate(np.arange(T - 8 * H, T, 300.0)):  # cost per call climbing 0.01 USD an hour
        pa.record("crew_cost_usd", 0.02 + 0.01 * i / 12 + float(rng.normal(0, 0.001)), {"agent": "writer"}, ts=float(ts))
    rep = pa.analyze(lookback=4 * H, at=T)
    (finding,) = [f for f in rep.findings if "is worsening" in f]
    assert finding.startswith('crew_cost_usd{agent="writer"} is worsening: ') and " USD per hour " in finding
