"""The SLOs on the web (issue 11, item 7): `GET /api/v1/slos` and the dashboard's SLOs panel.

The API answers what `perf-alerts slo --json` prints (the same `slo_report`), row for row equal to
`slo_statuses` at the server's now; the panel, in a real headless Chromium, shows per SLO and split
value the name, the achieved fraction and the error budget left as the CLI formats them, on a
desktop and on a phone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from conftest import require  # noqa: E402

require("fastapi")  # with CI=true a missing web extra fails, locally it skips
require("uvicorn")
import httpx  # noqa: E402

from test_dashboard_browser import CHROMIUM_ARGS, _chromium, _playwright  # noqa: E402
from test_http import SEED_CONFIG, LiveServer, seeded_system  # noqa: E402

from perf_alerts.analytics.slo import slo_report, slo_statuses  # noqa: E402
from perf_alerts.config import parse_config  # noqa: E402
from perf_alerts.core import PerfAlerts  # noqa: E402
from perf_alerts.http.app import SLOReportOut  # noqa: E402

SCREENSHOT_DIR = os.environ.get("PERF_ALERTS_SCREENSHOT")

# over the seeded data (test_http): the researcher's task time is above 30 s for the last 20 of 180
# minutes (88.9% good against 95%: breached), the writer's never (ok); the writer's LLM calls fail
# 8 times of 180, all in the last 8 minutes (at risk at this burn); no cost recorded (no data)
SLO_CONFIG = """
slos:
  - {name: task-latency, kind: latency, metric: crew_task_seconds, threshold: 30, objective: 95%, window: 3h, by: [agent]}
  - {name: llm-success, kind: success, metric: crew_llm_errors, total_metric: crew_llm_calls, objective: 90%,
     window: 1d, by: [agent]}
  - {name: daily-cost, kind: budget, metric: crew_cost_usd, limit: 5}
"""


def slo_system(tmp_path: Path) -> PerfAlerts:
    seeded = seeded_system(tmp_path)
    return PerfAlerts(parse_config(SEED_CONFIG + SLO_CONFIG, "seed.yaml", env={}), seeded.store, seeded.clock)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, PerfAlerts]]:
    system = slo_system(tmp_path_factory.mktemp("slo-web"))
    with LiveServer(system) as srv:
        yield srv, system


def test_api_slos_is_slo_statuses_at_the_same_time(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    r = httpx.get(srv.url + "/api/v1/slos", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    now = system.clock.now()
    want = [s.to_dict() for s in slo_statuses(system.store, system.config, now)]
    assert body["slos"] == want
    SLOReportOut.model_validate(body)  # the documented 200 model holds real rows too (the contract test's store has none)
    assert body == slo_report(system.store, system.config, now)  # what `perf-alerts slo --json` prints
    by = {(s["name"], tuple(s["labels"].items())): s for s in body["slos"]}
    lat = by[("task-latency", (("agent", "researcher"),))]
    assert lat["status"] == "breached" and lat["budget_remaining"] < 0 and lat["achieved_text"] == "88.89%"
    assert by[("task-latency", (("agent", "writer"),))]["status"] == "ok"
    llm = by[("llm-success", (("agent", "writer"),))]
    assert llm["status"] == "at risk" and llm["burn_rate"] > 1 and llm["exhausted_at"]
    assert by[("daily-cost", ())]["status"] == "no data"
    assert body["counts"] == {"ok": 1, "at risk": 1, "breached": 1, "no data": 1}


def test_api_slos_window_and_name_and_errors(live: tuple[LiveServer, PerfAlerts]) -> None:
    srv, system = live
    now = system.clock.now()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.get("/api/v1/slos", params={"window": "1h", "name": "task-latency"})
        assert r.status_code == 200, r.text
        assert r.json() == slo_report(system.store, system.config, now, 3600.0, ["task-latency"])
        for params, status in [({"window": "forever"}, 400), ({"window": "10s"}, 400), ({"name": "nope"}, 400)]:
            r = c.get("/api/v1/slos", params=params)
            assert r.status_code == status, (params, r.text)
            assert r.json()["error"]
        assert c.get("/api/v1/slos", headers={"host": "evil.example"}).status_code == 403
    with LiveServer(system, token="slo-token") as guarded, httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.get("/api/v1/slos").status_code == 401
        r = c.get("/api/v1/slos", headers={"Authorization": "Bearer slo-token"})
        assert r.status_code == 200 and len(r.json()["slos"]) == 4


@pytest.mark.parametrize("width", [1440, 390])
def test_slo_panel_shows_name_achieved_and_budget(live: tuple[LiveServer, PerfAlerts], tmp_path: Path,
                                                  width: int) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    srv, system = live
    rows = {(s.name, tuple(s.labels.values())): s for s in slo_statuses(system.store, system.config, system.clock.now())}
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.set_default_timeout(10_000)
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-loaded='true']")
            page.wait_for_selector("#slos table")

            panel = page.locator("#slos")
            trs = panel.locator("tbody tr")
            assert trs.count() == 4
            lines: dict[tuple[str, str], str] = {}
            for i in range(4):
                t = trs.nth(i).inner_text()
                name = trs.nth(i).locator(".slo-name").inner_text()
                lines[(name, re.sub(r"\s+", " ", trs.nth(i).locator("td").nth(1).inner_text()).strip())] = t
            # each row says what `perf-alerts slo` says: achieved as achieved_text, budget left to 0.1%
            for (name, labels), st in rows.items():
                key = (name, f"agent={labels[0]}" if labels else "—")
                assert key in lines, (key, list(lines))
                row = lines[key]
                assert st.achieved_text() in row, (key, row)
                if st.budget_remaining is None:
                    assert "no data" in row, row
                else:
                    assert f"{st.budget_remaining * 100:.1f}%" in row, (key, row)
                if st.burn_rate is not None:
                    assert f"{st.burn_rate:.2f}×" in row, (key, row)
                assert st.status in row.lower(), (key, row)
            researcher = lines[("task-latency", "agent=researcher")]
            assert "88.89%" in researcher and "overspent" in researcher
            assert page.locator("#slos-count").inner_text() == "1 breached · 1 at risk · 1 ok · 1 no data"
            # the bar: full and red when overspent, a fraction otherwise
            bars = page.eval_on_selector_all(
                "#slos .budget", "bs => bs.map(b => ({fill: b.querySelector('.budget-fill').getBoundingClientRect().width, "
                "track: b.querySelector('.budget-track').getBoundingClientRect().width, "
                "color: getComputedStyle(b.querySelector('.budget-fill')).backgroundColor, text: b.textContent}))")
            assert len(bars) == 3, bars
            over = next(b for b in bars if "overspent" in b["text"])
            assert over["color"] == "rgb(198, 40, 40)" and abs(over["fill"] - over["track"]) < 1, over
            writer_ok = next(b for b in bars if b["text"] == "100.0%")
            assert abs(writer_ok["fill"] - writer_ok["track"]) < 1 and writer_ok["color"] != over["color"]
            llm = next(b for b in bars if b is not over and b is not writer_ok)
            assert 0 < llm["fill"] < llm["track"], llm
            if width < 600:  # a phone: the table is stacked "LABEL value" rows
                assert panel.locator("thead").is_hidden()
                labels = page.eval_on_selector_all(
                    "#slos tbody tr:first-child td", "tds => tds.map(td => getComputedStyle(td, '::before').content)")
                assert labels[3:5] == ['"Achieved"', '"Budget left"'], labels
                tops = page.eval_on_selector_all("#slos tbody tr:first-child td",
                                                 "tds => tds.map(td => td.getBoundingClientRect().top)")
                assert tops == sorted(tops) and len(set(tops)) == len(tops), tops  # one cell under the other
            shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
            page.locator("#slos").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / f"dashboard-slo-{width}.png"), full_page=True)
            panel.screenshot(path=str(shots / f"slo-panel-{width}.png"))
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen"
            slo_box = page.evaluate("(() => { const r = document.getElementById('slos').getBoundingClientRect();"
                                    " return [r.left, r.right]; })()")
            assert slo_box[0] >= 0 and slo_box[1] <= width, slo_box
            wide = page.evaluate("[...document.querySelectorAll('#slos *')].filter(e => e.getBoundingClientRect().right > "
                                 "document.getElementById('slos').getBoundingClientRect().right + 1).length")
            assert wide == 0, f"{wide} elements of the SLOs panel stick out of it at {width} px"
        finally:
            browser.close()
    assert problems == [], problems
