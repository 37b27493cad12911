"""manage.summary: the executive summary dict and its Markdown."""

import json

from perf_alerts import catalog
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.summary import executive_summary, to_markdown
from perf_alerts.model import Sample
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

CFG = """
pricing:
  gpt-4o: {input: 2.5, output: 10}
rules:
  - name: ToolErrors
    type: threshold
    metric: crew_tool_errors
    aggregate: sum
    window: 10m
    op: ">="
    value: 3
    severity: warning
"""


def _system():
    end = 1_760_000_000.0
    clock = ManualClock(end - 2 * 3600)
    s = PerfAlerts(parse_config(CFG), Store(":memory:"), clock)
    samples = []
    for i in range(240):  # 4 h of one call a minute for two agents
        t = end - 4 * 3600 + i * 60
        for agent, lat in (("researcher", 6.0), ("writer", 2.0), ("reviewer", 2.0)):
            samples.append(Sample(catalog.LLM_SECONDS, {"agent": agent, "model": "gpt-4o"}, t, lat + (i % 5) * 0.1))
            samples.append(Sample(catalog.TOOL_SECONDS, {"agent": agent, "tool": "t"}, t, 1.0))
        if end - 90 * 60 < t <= end - 80 * 60:  # an error burst 80-90 minutes ago
            samples.append(Sample(catalog.TOOL_ERRORS, {"agent": "writer", "tool": "t"}, t, 1.0))
    s.store.insert_samples(samples)
    t = end - 2 * 3600
    while t <= end:  # evaluate every 5 minutes over the last 2 h: the burst fires, then resolves
        clock.set(t)
        s.evaluate()
        t += 300
    return s, end


def test_summary_numbers():
    s, end = _system()
    fp = next(e["fingerprint"] for e in s.store.events() if e["event"] == "firing")
    summ = executive_summary(s, 2 * 3600, at=end)
    assert summ.period["length"] == "2h"
    assert summ.alerts["fired_by_severity"] == {"critical": 0, "warning": 1, "info": 0}
    assert summ.alerts["firing_now"] == 0
    assert summ.mttr["count"] == 1 and summ.mttr["mean_seconds"] > 0
    assert summ.noisiest_rules[0] == {"rule": "ToolErrors", "severity": "warning", "fired": 1}
    names = [a["agent"] for a in summ.agents]
    assert sorted(names) == ["researcher", "reviewer", "writer"]
    assert summ.health["score"] is not None and summ.health["previous_score"] is not None
    assert summ.health["change"] == round(summ.health["score"] - summ.health["previous_score"], 1)
    assert any("researcher" in r["title"] for r in summ.recommendations)  # 3× slower LLM calls
    json.dumps(summ.to_dict())  # JSON-able
    assert fp


def test_markdown_and_no_data():
    s, end = _system()
    md = to_markdown(executive_summary(s, 2 * 3600, at=end))
    assert md.startswith("# Performance executive summary")
    assert "ToolErrors (warning): 1×" in md and "## Recommendations" in md
    empty = PerfAlerts(parse_config(CFG), Store(":memory:"), ManualClock(end))
    e = executive_summary(empty, 3600)
    assert e.health["score"] is None
    assert e.headline[0].startswith("No crew data")
    assert "Now (the last hour): **—**" in to_markdown(e) and "Over the period: **—**" in to_markdown(e)
