"""Executive summary outputs: files (Markdown, HTML, JSON, PNG) and delivery with the chart attached."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

from fake_discord import fake_discord
from perf_alerts.config import parse_config
from perf_alerts.core import PerfAlerts
from perf_alerts.manage.report import build_summary, send_summary, write_summary
from perf_alerts.simulate import simulate_crew
from perf_alerts.store import Store
from perf_alerts.timeutil import ManualClock

T0 = 1_800_000_000.0


def seeded(tmp_path: Path, hook: str) -> PerfAlerts:
    rules = (Path(__file__).resolve().parents[1] / "config" / "alerting.yaml").read_text()
    cfg_text = rules.split("\nreceivers:")[0] + textwrap.dedent(f"""
    receivers:
      - name: leadership
        discord: {{webhook_url: "{hook}"}}
    route:
      receiver: console
      routes:
        - matchers: {{kind: executive_summary}}
          receiver: leadership
    """) + "\nrules:" + rules.split("\nrules:")[1]
    cfg = parse_config(cfg_text)
    clock = ManualClock(T0)
    pa = PerfAlerts(cfg, Store(tmp_path / "s.db"), clock)
    sim = simulate_crew(T0 - 8 * 3600, 8.0)
    pa.store.insert_samples(sim.samples)
    for k in range(0, 8 * 12 + 1):
        clock.set(T0 - 8 * 3600 + k * 300)
        pa.evaluate()
    return pa


def test_summary_files_and_delivery_with_chart(tmp_path: Path) -> None:
    with fake_discord() as srv:
        pa = seeded(tmp_path, srv.url_for(42, "leader-token-secret"))
        summary, md, png = build_summary(pa, 8 * 3600)
        assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
        files = write_summary(tmp_path / "out", summary, md, png)
        html = Path(files["html"]).read_text()
        assert "data:image/png;base64," in html and "researcher" in html
        data = json.loads(Path(files["json"]).read_text())
        fired = data["alerts"]["fired_total"]
        assert fired == sum(1 for e in pa.store.events() if e["event"] == "firing") and fired > 0
        assert f"{fired}" in Path(files["markdown"]).read_text()
        rep = send_summary(pa, summary, md, png, console_write=lambda s: None)
        assert rep.delivered == 1
        [msg] = srv.messages(42)
        assert msg["attachments"][0]["filename"] == "executive-summary.png"
        assert msg["attachments"][0]["data"] == png
        assert msg["embeds"][0]["image"]["url"] == "attachment://executive-summary.png"
        assert "Health" in msg["embeds"][0]["description"]
        assert "leader-token-secret" not in json.dumps(rep.to_dict())


def test_summary_discord_text_shows_data_literally() -> None:
    """Agent and label values in the executive summary's Discord text are data, not markdown:
    no masked link, no mention, no formatting (issue 10)."""
    from perf_alerts.manage.report import _discord_text

    evil = "[click me](http://evil.example) @everyone **bold**"
    from perf_alerts.manage.summary import ExecutiveSummary

    empty = {f.name: ({} if f.type.startswith("dict") else []) for f in dataclasses.fields(ExecutiveSummary)
             if f.name not in ("risks", "headline", "title", "noisiest_rules")}
    summary = ExecutiveSummary(**empty, headline=[f"worst agent: {evil}"],
                               noisiest_rules=[{"rule": "R_x_", "fired": 2}])
    text = _discord_text(summary)
    assert "[click me](http" not in text and "\\[click me\\]" in text
    assert "@everyone" not in text and "@\u200beveryone" in text  # a zero-width space: no ping
    assert "**bold**" not in text and "\\*\\*bold\\*\\*" in text
