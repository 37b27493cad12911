"""The demo: a simulated day of a three-agent crew, run through the real pipeline on an
accelerated injected clock. Everything it prints is computed from the run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from perf_alerts.config import load_config
from perf_alerts.core import PerfAlerts
from perf_alerts.simulate import simulate_crew
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock, SystemClock, format_duration, iso


def run_demo(out_dir: Path = Path("demo-output"), db: str | None = None, config: str | None = None,
             fast: bool = False, echo: Callable[[str], None] | None = print, step: float = 300.0) -> dict[str, Any]:
    say = echo or (lambda _s: None)
    t_wall = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = Path(db) if db else out_dir / "demo.db"
    if not db:
        for suffix in ("", "-wal", "-shm"):  # the demo's own scratch store starts empty each run
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    cfg = load_config(config)
    hours = 8.0 if fast else 24.0
    end = math.floor(SystemClock().now() / 60.0) * 60.0
    start = end - hours * 3600.0
    sim = simulate_crew(start, hours)
    clock = ManualClock(start)
    system = PerfAlerts(cfg, Store(db_path), clock)

    say(f"perf-alerts demo: simulating {hours:g}h of a 3-agent crew ({len(sim.samples):,} samples), "
        f"evaluating {len(cfg.rules)} rules every {format_duration(step)} of simulated time")
    for inc in sim.incidents:
        say(f"  injected: {inc.describe()}")
    timeline: list[dict[str, Any]] = []
    i = 0
    n = len(sim.samples)
    t = start
    evaluations = 0
    while t <= end:
        j = i
        while j < n and sim.samples[j].ts <= t:
            j += 1
        if j > i:
            system.store.insert_samples(sim.samples[i:j])
            i = j
        clock.set(t)
        res = system.evaluate()
        evaluations += 1
        for tr in res.transitions:
            if tr.event in ("firing", "resolved"):
                timeline.append({"at": iso(tr.at), "event": tr.event, "rule": tr.alert.rule,
                                 "severity": tr.alert.severity.value, "agent": tr.alert.labels.get("agent"),
                                 "summary": tr.alert.annotations.get("summary", "")})
        t += step

    say("")
    say("timeline (simulated time):")
    for e in timeline:
        say(f"  {e['at']}  {e['event']:8} {e['severity']:8} {e['rule']}: {e['summary']}")
    if not timeline:
        say("  no alert fired")

    analysis = system.analyze(lookback=hours * 3600.0)
    prediction = system.predict(horizon=6 * 3600.0, lookback=min(12.0, hours) * 3600.0)
    stats = system.alert_stats()
    h = analysis["health"]
    say("")
    say(f"health now: {h['score'] if h['score'] is not None else 'no data'} ({h['status']})")
    for name, d in analysis["agents"].items():
        say(f"  {name:11} {d['score']!s:>5} {d['status']}")
    for f in analysis["findings"][:6]:
        say(f"  - {f}")
    if prediction["breaches"]:
        b = prediction["breaches"][0]
        say(f"forecast: {b['series']} may breach {b['rule']} ({b['threshold']}) in {b['time_to_breach']} "
            f"(p={b['probability']})")
    say(f"alert history: {stats['episodes']} firing episodes, MTTR {format_duration(stats['mttr']['mean_seconds'])}")

    report = {
        "simulated": {"start": iso(start), "end": iso(end), "hours": hours, "samples": n,
                      "incidents": [inc.describe() for inc in sim.incidents]},
        "evaluations": evaluations,
        "timeline": timeline,
        "alerts": [a.to_dict() for a in system.alerts()],
        "analysis": analysis,
        "prediction": prediction,
        "alert_stats": stats,
        "db": str(db_path),
        "wall_seconds": round(time.perf_counter() - t_wall, 2),
    }
    (out_dir / "demo-report.json").write_text(json.dumps(report, indent=2, default=str))
    say(f"wrote {out_dir / 'demo-report.json'} and the store {db_path} in {report['wall_seconds']}s")
    return report
