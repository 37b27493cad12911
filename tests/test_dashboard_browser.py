"""The dashboard in a real headless Chromium (the system package, driven by Playwright).

The page loads over a real server and a seeded store, shows the firing alert, its Ack
button acknowledges it in the store, and the browser reports no console error.
No browser is ever downloaded: Chromium comes from the OS (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import require  # noqa: E402

require("fastapi")  # with CI=true a missing web extra fails, locally it skips
require("uvicorn")

from test_http import LiveServer, fp_of, seeded_system  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# set PERF_ALERTS_SCREENSHOT=/some/dir to keep the screenshots; by default they go to the test's tmp_path
SCREENSHOT_DIR = os.environ.get("PERF_ALERTS_SCREENSHOT")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    msg = "Chromium is not installed (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the playwright Python package is missing (it is in the dev extra)")
        pytest.skip("the playwright Python package is not installed")
    return sync_playwright


def _management(system: Any) -> tuple[Any, Any]:
    """The real scheduler and policy engine, with one overdue schedule and one policy in cooldown."""
    from perf_alerts.config import parse_config
    from perf_alerts.manage.policies import PolicyEngine
    from perf_alerts.manage.schedules import Scheduler

    cfg = parse_config("""
schedules:
  - {name: continuous, every: continuous, job: evaluate}
  - {name: daily-summary, every: daily, at: "09:00", job: summary}
policies:
  - name: health-critical
    when: "health < 50 and firing.critical > 0"
    cooldown: 1h
    actions: [{type: notify, severity: critical}, {type: optimization_review}]
""")
    now = system.clock.now()
    with system.store.transaction() as con:  # the daily summary was first seen two days ago and never ran
        con.execute("INSERT OR REPLACE INTO schedules (name, first_seen) VALUES ('daily-summary', ?)", (now - 2 * 86400,))
        con.execute("INSERT OR REPLACE INTO policy_state (name, last_matched, last_fired, fired_count) "
                    "VALUES ('health-critical', ?, ?, 1)", (now - 1200, now - 1200))
    return Scheduler(system, schedules=cfg.schedules), PolicyEngine(system, policies=cfg.policies)


def _notifications(system: Any) -> None:
    from perf_alerts.notify.outbox import Outbox

    ob = Outbox(system.store)
    now = system.clock.now()
    snaps = [{"fingerprint": a.fingerprint, "state": "firing"} for a in system.alerts()]
    with system.store.transaction() as con:
        ok = ob.enqueue(con, "oncall", "alerts", "g1", {"alerts": snaps[:1]}, now - 300)
        bad = ob.enqueue(con, "oncall", "alerts", "g2", {"alerts": snaps[1:]}, now - 60)
    claimed = {n.id: n for n in ob.claim(now)}  # a sender records outcomes only for rows it claimed
    assert ob.delivered(claimed[ok], now - 299, ["1234"])
    assert ob.retry(claimed[bad], now - 59, "HTTP 503 Service Unavailable", 30) == "failed"


def test_dashboard_shows_firing_alert_and_ack_works(tmp_path: Path) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    system = seeded_system(tmp_path)
    _notifications(system)
    fp = fp_of(system, "HighLatency")
    problems: list[str] = []

    scheduler, policies = _management(system)
    with LiveServer(system, scheduler=scheduler, policies=policies) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1500})
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
            page.set_default_timeout(10_000)

            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-loaded='true']")
            row = page.locator(f"tr[data-fingerprint='{fp}']")
            row.wait_for()
            assert "HighLatency" in row.inner_text() and "critical" in row.inner_text().lower()
            assert "unacknowledged" in row.locator(".ack-state").inner_text()
            assert page.locator("#token-form").is_hidden()  # no token on loopback: no prompt
            # the rest of the page rendered from the API
            page.wait_for_selector("#charts svg.chart-svg polyline")
            assert page.locator("#charts .threshold").count() >= 1
            assert "researcher" in page.locator("#health").inner_text()
            assert page.locator("#alerts-body tr").count() == 2
            assert "overdue" in page.locator("#schedules").inner_text().lower()
            assert "health-critical" in page.locator("#policies").inner_text()
            notes = page.locator("#notifications").inner_text()
            assert "delivered" in notes.lower() and "HTTP 503" in notes
            shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            row.get_by_role("button", name="Acknowledge HighLatency").click()
            page.wait_for_function(
                "fp => { const r = document.querySelector(`tr[data-fingerprint='${fp}'] .ack-state`);"
                " return r && r.textContent.startsWith('acknowledged'); }", arg=fp)
            stored = system.store.get_alert(fp)
            assert stored is not None and stored.acknowledged and stored.acknowledged_by == "dashboard"
            assert next(a for a in system.alerts() if a.fingerprint == fp).acknowledged
            assert row.get_by_role("button", name="Acknowledge HighLatency").is_disabled()

            # silence the other alert from its row
            other = next(a.fingerprint for a in system.alerts() if a.rule == "LLMErrors")
            page.locator(f"tr[data-fingerprint='{other}']").get_by_role("button", name="Silence LLMErrors for one hour").click()
            page.wait_for_function(
                "fp => !!document.querySelector(`tr[data-fingerprint='${fp}'] .flag-sil`)", arg=other)
            from perf_alerts.notify.silence import active_silences

            sil = active_silences(system.store, system.clock.now())
            assert len(sil) == 1 and sil[0].matches(system.store.get_alert(other).labels)  # type: ignore[union-attr]
            page.wait_for_selector("#silences table")
            page.screenshot(path=str(shots / "dashboard-after-ack.png"), full_page=True)
        finally:
            browser.close()

    assert problems == [], problems


def test_dashboard_asks_for_the_token(tmp_path: Path) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    system = seeded_system(tmp_path)
    problems: list[str] = []
    with LiveServer(system, token="browser-test-token") as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.set_default_timeout(10_000)
            page.goto(srv.url + "/")
            page.wait_for_selector("#token-form:not([hidden])")
            page.fill("#token-input", "browser-test-token")
            page.click("#token-form button[type=submit]")
            page.wait_for_selector("body[data-loaded='true']")
            assert page.locator("#alerts-body tr[data-fingerprint]").count() == 2
        finally:
            browser.close()
    assert problems == [], problems


PANELS_CONFIG = """
schedules:
  - {name: continuous, every: continuous, job: evaluate}
  - {name: daily-summary, every: daily, at: "09:00", job: summary}
policies:
  - name: health-critical
    when: "health < 50 and firing.critical > 0"
    cooldown: 1h
    actions: [{type: notify, severity: critical}]
"""


def _dashboard_mode_system(tmp_path: Path) -> Any:
    """`perf-alerts dashboard`: no daemon in the process, schedules and policies only in the config and the store."""
    from test_http import SEED_CONFIG

    from perf_alerts.config import parse_config
    from perf_alerts.core import PerfAlerts

    seeded = seeded_system(tmp_path)
    system = PerfAlerts(parse_config(SEED_CONFIG + PANELS_CONFIG, "seed.yaml", env={}), seeded.store, seeded.clock)
    now = system.clock.now()
    with system.store.transaction() as con:
        con.execute("INSERT OR REPLACE INTO schedules (name, first_seen) VALUES ('daily-summary', ?)", (now - 2 * 86400,))
        con.execute("INSERT OR REPLACE INTO policy_state (name, last_matched, last_fired, fired_count) "
                    "VALUES ('health-critical', ?, ?, 1)", (now - 1200, now - 1200))
    _notifications(system)
    return system


@pytest.mark.parametrize("width", [1440, 390])
def test_every_panel_says_what_a_user_needs_on_a_desktop_and_a_phone(tmp_path: Path, width: int) -> None:
    executable = _chromium()
    sync_playwright = _playwright()
    system = _dashboard_mode_system(tmp_path)
    problems: list[str] = []
    with LiveServer(system) as srv, sync_playwright() as pw:  # no scheduler/policies objects: dashboard mode
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.set_default_timeout(10_000)
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-loaded='true']")
            page.wait_for_selector("#charts svg.chart-svg polyline")

            # header: times in UTC like everything else on the page
            assert re.fullmatch(r"updated \d\d:\d\d:\d\d UTC", page.locator("#updated").inner_text())
            assert "2 rules" in page.locator("#last-eval").inner_text()

            # alerts: the rule, what it says, its value against the threshold
            alerts = page.locator("#alerts-body").inner_text()
            assert "HighLatency" in alerts and "researcher task time" in alerts and "LLMErrors" in alerts

            # schedules and policies from the store, with last and next run, no markdown backticks
            sched = page.locator("#schedules").inner_text()
            assert "continuous (every 1m)" in sched and "daily-summary" in sched and "never" in sched
            assert re.search(r"OVERDUE", sched, re.I) and "UTC" in sched and "`" not in sched
            assert re.search(r"(?i:overdue) by \d+[dhm]", sched), sched  # the duration keeps its case: 2m24s, not 2M24S
            pol = page.locator("#policies").inner_text()
            assert "health-critical" in pol and "health < 50 and firing.critical > 0" in pol
            assert re.search(r"cooling down", pol, re.I) and "until" in pol and "`" not in pol

            # notifications name the alert they announced; receivers say name → kind, once
            notes = page.locator("#notifications").inner_text()
            assert "HighLatency firing" in notes and "LLMErrors firing" in notes, notes
            receivers = page.locator("#receivers").inner_text()
            assert "oncall → discord" in receivers and "console (console)" not in receivers, receivers

            # the chart: y-axis labels carry the unit and are not cut at the left edge
            ticks = page.eval_on_selector_all(
                "#charts figure", "figs => figs.map(f => ({caption: f.querySelector('figcaption').textContent, "
                "ticks: [...f.querySelectorAll('text.axis-y')].map(t => ({text: t.textContent, "
                "left: t.getBoundingClientRect().left - f.querySelector('svg').getBoundingClientRect().left}))}))")
            latency = next(f for f in ticks if f["caption"].startswith("HighLatency"))
            assert "crew_task_seconds (s)" in latency["caption"], latency
            assert len(latency["ticks"]) == 4 and all(re.fullmatch(r"[\d.]+ (s|ms|min)", t["text"]) for t in latency["ticks"])
            assert all(t["left"] >= 0 for f in ticks for t in f["ticks"]), ticks

            # health: both agents with a score
            # the scores are the last hour judged against the day (a morning's incident is not in them): say so
            assert page.locator("#health-window").inner_text() == "the last 1h vs the 1d before"
            health = page.locator("#health").inner_text()
            assert "researcher" in health and "writer" in health

            # nothing makes the page wider than the screen (a phone scrolls down, never sideways)
            shots = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
            page.screenshot(path=str(shots / f"dashboard-{width}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = page.evaluate("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
                                 "window.innerWidth + 1 && !e.closest('.card > div')).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)")
            assert overflow <= 0, f"the page is {overflow} px wider than a {width} px screen: {wide}"
        finally:
            browser.close()
    assert problems == [], problems
