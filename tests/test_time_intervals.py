"""Time intervals (issue 16) pinned against Alertmanager: the config checks of config/config.go and
timeinterval/timeinterval.go (the YAML shape is Alertmanager's, key for key), `ContainsTime`'s
reading of an instant, and the notification pipeline's `TimeMuteStage` / `TimeActiveStage`
(notify/notify.go) on routes, with the route semantics of dispatch/route.go. Each test names the
behaviour it pins."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from perf_alerts.config import ConfigError, TimeIntervalSpec, parse_config
from perf_alerts.notify.timeintervals import contains, gate

BERLIN = ZoneInfo("Europe/Berlin")


def _load(body: str):  # type: ignore[no-untyped-def]
    return parse_config(textwrap.dedent(body), "am.yaml", env={})


def _rejects(body: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as e:
        _load(body)
    text = str(e.value)
    assert "\n" not in text.strip(), text  # one line: what and where
    for n in needles:
        assert n in text, text
    return text


def _ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: object = timezone.utc) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()  # type: ignore[arg-type]


def _spec(**kw: object) -> TimeIntervalSpec:
    return TimeIntervalSpec.model_validate(kw)


ROUTES = """
    receivers:
      - name: team
        console: {}
    route:
      receiver: team
      routes:
        - matchers: ['severity="page"']
          %s
    time_intervals:
      - name: business
        time_intervals:
          - times: [{start_time: "09:00", end_time: "17:00"}]
            weekdays: ["monday:friday"]
            location: Europe/Berlin
"""


# --------------------------------------------------------------------------- configuration


def test_alertmanager_time_intervals_load_unchanged() -> None:
    # Alertmanager's configuration documentation, `time_interval` section: the keys and value forms
    # (names and numbers, ranges "a:b", negative days, 24:00, location) are read as written
    cfg = _load("""
        receivers: [{name: team, console: {}}]
        route:
          receiver: team
          routes:
            - matchers: ['team="db"']
              mute_time_intervals: [offhours, holidays]
              active_time_intervals: [business]
        time_intervals:
          - name: business
            time_intervals:
              - times: [{start_time: "09:00", end_time: "17:00"}]
                weekdays: ['monday:friday']
                location: Europe/Berlin
          - name: offhours
            time_intervals:
              - times: [{start_time: "00:00", end_time: "09:00"}, {start_time: "17:00", end_time: "24:00"}]
              - weekdays: [saturday, sunday]
        mute_time_intervals:
          - name: holidays
            time_intervals:
              - days_of_month: ['1', 24, '-3:-1']
                months: ['december', '1:2']
                years: ['2026:2027']
        """)
    assert set(cfg.time_interval_map()) == {"business", "offhours", "holidays"}
    hol = cfg.time_interval_map()["holidays"][0]
    assert hol.days_of_month == ["1", "24", "-3:-1"] and hol.months == ["december", "1:2"]
    assert cfg.route.routes[0].mute_time_intervals == ["offhours", "holidays"]
    assert cfg.route.routes[0].active_time_intervals == ["business"]
    assert cfg.warnings == []


@pytest.mark.parametrize("line, needles", [
    # timeinterval.go parseTime: "^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)" — two-digit hours
    ('- times: [{start_time: "9:00", end_time: "17:00"}]', ("am.yaml:", "times[0]", "9:00")),
    ('- times: [{start_time: "09:00", end_time: "24:01"}]', ("24:01",)),
    # TimeRange.UnmarshalYAML: "start time cannot be equal or greater than end time"
    ('- times: [{start_time: "17:00", end_time: "09:00"}]', ("cannot be equal to or after",)),
    # TimeRange.UnmarshalYAML: "both start and end times must be provided"
    ('- times: [{start_time: "09:00"}]', ("both start_time and end_time",)),
    # WeekdayRange.UnmarshalYAML: "start day cannot be before end day" (Sunday is day 0)
    ("- weekdays: ['saturday:sunday']", ("start day cannot be after end day",)),
    ("- weekdays: ['funday']", ("not a valid weekday",)),
    # DayOfMonthRange.UnmarshalYAML: 0 and beyond ±31 are out of range; negative start needs negative end;
    # a range empty in every month (28-day minimum) is refused
    ("- days_of_month: ['0']", ("0 is not a valid day of the month",)),
    ("- days_of_month: ['-32']", ("-32 is not a valid day of the month",)),
    ("- days_of_month: ['-5:3']", ("end day must be negative if start day is negative",)),
    ("- days_of_month: ['10:5']", ("end day 5 is always before start day 10",)),
    ("- days_of_month: ['-1:-5']", ("always before",)),
    # MonthRange / YearRange: "end month ... is before start month", "end year ... is before start year"
    ("- months: ['march:january']", ("end month is before start month",)),
    ("- months: ['janury']", ("not a valid month", "did you mean 'january'")),
    ("- years: ['2027:2026']", ("end year 2026 is before start year 2027",)),
    # Location.UnmarshalYAML: time.LoadLocation must know the zone
    ("- location: Mars/Olympus", ("unknown time zone 'Mars/Olympus'",)),
])
def test_invalid_time_interval_fields_are_rejected(line: str, needles: tuple[str, ...]) -> None:
    _rejects(f"""
        time_intervals:
          - name: x
            time_intervals:
              {line}
        """, "am.yaml:", *needles)


def test_undefined_time_interval_on_a_route_is_rejected_with_its_line() -> None:
    # config.go checkTimeInterval: "undefined time interval %q used in route" (mute and active alike)
    text = _rejects(ROUTES % "mute_time_intervals: [busines]", "am.yaml:9:",
                    "route.routes[0].mute_time_intervals[0]", "undefined time interval 'busines' used in route",
                    "did you mean 'business'")
    assert text.startswith("am.yaml:9:")
    _rejects(ROUTES % "active_time_intervals: [weekend]", "undefined time interval 'weekend'")


@pytest.mark.parametrize("key", ["mute_time_intervals", "active_time_intervals"])
def test_root_route_time_intervals_are_rejected(key: str) -> None:
    # config.go: "root route must not have any mute time intervals" / "... active time intervals"
    _rejects(f"""
        route:
          receiver: console
          {key}: [x]
        time_intervals: [{{name: x, time_intervals: [{{}}]}}]
        """, "am.yaml:4:", "root route must not have any")


def test_time_interval_names_are_unique_across_both_lists() -> None:
    # config.go: "time interval %q is not unique"; the deprecated top-level mute_time_intervals share
    # the namespace of time_intervals
    _rejects("""
        mute_time_intervals: [{name: x, time_intervals: [{}]}]
        time_intervals: [{name: x, time_intervals: [{}]}]
        """, "time interval 'x' is not unique")
    _rejects("""
        time_intervals: [{name: '', time_intervals: [{}]}]
        """, "missing name in time interval")


def test_unused_time_interval_is_a_warning() -> None:
    # perf-alerts addition (Alertmanager is silent): an interval no route names is usually a typo
    cfg = _load(ROUTES % "active_time_intervals: [business]" + "      - name: spare\n        time_intervals: [{}]\n")
    assert cfg.warnings == ["time interval 'spare' is not used by any route "
                            "(mute_time_intervals / active_time_intervals)"]


# --------------------------------------------------------------------------- ContainsTime


def test_business_hours_in_berlin_follow_the_dst_change() -> None:
    # ContainsTime: the instant is read in the entry's location (t.In(location)), so 09:00 Berlin is
    # 08:00 UTC in winter and 07:00 UTC from the last Sunday of March (2026-03-29)
    biz = _spec(times=[{"start_time": "09:00", "end_time": "17:00"}], weekdays=["monday:friday"],
                location="Europe/Berlin")
    assert not contains(biz, _ts(2026, 3, 27, 7, 30))  # Friday 08:30 CET
    assert contains(biz, _ts(2026, 3, 27, 8, 0))  # Friday 09:00 CET: start inclusive
    assert contains(biz, _ts(2026, 3, 27, 15, 59))  # 16:59 CET
    assert not contains(biz, _ts(2026, 3, 27, 16, 0))  # 17:00 CET: end exclusive
    assert contains(biz, _ts(2026, 3, 30, 7, 30))  # Monday 09:30 CEST: one hour earlier in UTC
    assert not contains(biz, _ts(2026, 3, 30, 15, 0))  # 17:00 CEST
    # the same wall-clock hours in the autumn change (2026-10-25)
    assert contains(biz, _ts(2026, 10, 23, 7, 0))  # Friday 09:00 CEST
    assert not contains(biz, _ts(2026, 10, 26, 7, 30))  # Monday 08:30 CET
    assert contains(biz, _ts(2026, 10, 26, 8, 0))  # Monday 09:00 CET


def test_without_location_intervals_are_utc() -> None:
    # Intervener.Mutes passes now.UTC(): no location means UTC
    night = _spec(times=[{"start_time": "22:00", "end_time": "24:00"}])
    assert contains(night, _ts(2026, 6, 1, 23, 59))
    assert not contains(night, _ts(2026, 6, 2, 0, 0))  # 24:00 ends the day; 00:00 is the next one


def test_weekends() -> None:
    # WeekdayRange: 0 = Sunday … 6 = Saturday; a weekend is two entries (saturday:sunday is refused)
    weekend = _spec(weekdays=["saturday", "Sunday"], location="America/New_York")
    assert contains(weekend, _ts(2026, 6, 6, 12, 0, BERLIN))  # Saturday
    assert contains(weekend, _ts(2026, 6, 8, 3, 0))  # Monday 03:00 UTC = Sunday 23:00 in New York
    assert not contains(weekend, _ts(2026, 6, 8, 4, 0))  # Monday 00:00 in New York
    assert not contains(weekend, _ts(2026, 6, 5, 23, 0, ZoneInfo("America/New_York")))  # Friday


def test_negative_days_of_month_count_from_the_month_end() -> None:
    # ContainsTime: a negative day is daysInMonth + day + 1 (so -1 is the last day, 28th or 29th in February)
    last = _spec(days_of_month=["-1"])
    assert contains(last, _ts(2026, 2, 28, 12))
    assert not contains(last, _ts(2028, 2, 28, 12)) and contains(last, _ts(2028, 2, 29, 12))  # leap year
    assert contains(last, _ts(2026, 4, 30, 12)) and not contains(last, _ts(2026, 4, 29, 12))
    last3 = _spec(days_of_month=["-3:-1"])
    assert [d for d in range(1, 32) if contains(last3, _ts(2026, 1, d, 12))] == [29, 30, 31]


def test_days_of_month_beyond_the_month_are_clamped_or_skipped() -> None:
    # ContainsTime: the end is clamped to the month's length; a range starting after it is skipped
    late = _spec(days_of_month=["25:31"])
    assert [d for d in range(1, 29) if contains(late, _ts(2026, 2, d, 12))] == [25, 26, 27, 28]
    only31 = _spec(days_of_month=["31"])
    assert not any(contains(only31, _ts(2026, 4, d, 12)) for d in range(1, 31))


def test_months_years_and_all_fields_must_match() -> None:
    # ContainsTime: every field given must contain the instant; within a field any range may
    q1 = _spec(months=["january:march", "12"], years=["2026:2027"], weekdays=["monday"])
    assert contains(q1, _ts(2026, 3, 30, 12))  # Monday in March 2026
    assert not contains(q1, _ts(2026, 3, 31, 12))  # Tuesday
    assert not contains(q1, _ts(2026, 4, 6, 12))  # Monday in April
    assert contains(q1, _ts(2027, 12, 6, 12))  # Monday in December 2027
    assert not contains(q1, _ts(2028, 1, 3, 12))  # 2028
    assert contains(_spec(), _ts(2030, 1, 1))  # an empty entry is always


def test_route_gate_mute_and_active() -> None:
    # TimeMuteStage: muted when any mute interval contains now; TimeActiveStage: inactive when none of
    # the active intervals does
    intervals = {"biz": [_spec(times=[{"start_time": "09:00", "end_time": "17:00"}])],
                 "lunch": [_spec(times=[{"start_time": "12:00", "end_time": "13:00"}])]}
    noon, ten, night = _ts(2026, 5, 4, 12, 30), _ts(2026, 5, 4, 10), _ts(2026, 5, 4, 20)
    assert not gate(intervals, [], ["biz"], ten).closed
    assert gate(intervals, [], ["biz"], night).inactive == ("biz",)
    g = gate(intervals, ["lunch"], ["biz"], noon)
    assert g.muted_by == ("lunch",) and g.reason() == "muted by time interval lunch"
    assert not gate(intervals, ["lunch"], [], night).closed


# --------------------------------------------------------------------------- routes in the pipeline

PIPE_RULES = """
rules:
  - name: DiskFull
    type: threshold
    metric: disk
    aggregate: last
    window: 10m
    op: ">"
    value: 90
    severity: warning
receivers:
  - name: team
    console: {}
  - name: db
    console: {}
  - name: dbpage
    console: {}
"""


class Pipe:
    """A system on a manual clock planning and delivering every `step` seconds, as the daemon does."""

    def __init__(self, tmp_path: Path, tail: str, start: float) -> None:
        from perf_alerts.core import PerfAlerts
        from perf_alerts.notify.pipeline import Notifier
        from perf_alerts.store import Store
        from perf_alerts.timeutil import ManualClock

        self.cfg = parse_config(PIPE_RULES + textwrap.dedent(tail), "am.yaml", env={})
        self.clock = ManualClock(start)
        self.pa = PerfAlerts(self.cfg, Store(tmp_path / "s.db"), self.clock)
        self.lines: list[str] = []
        self.n = Notifier(self.pa, console_write=self.lines.append)
        self.values: dict[tuple[str, str], float] = {}
        self.t = start

    def set(self, host: str, value: float, team: str = "db") -> None:
        self.values[(host, team)] = value

    def run_until(self, end: float, step: float = 300) -> list[tuple[float, str, dict[str, str]]]:
        """(time, receiver, {host: state}) of every notification planned from now until `end`."""
        from perf_alerts.notify.outbox import Outbox

        out = []
        while self.t <= end:
            self.clock.set(self.t)
            for (host, team), v in self.values.items():
                self.pa.record("disk", v, {"host": host, "team": team})
            self.pa.evaluate()
            for nid in self.n.plan().created:
                x = Outbox(self.pa.store).get(nid)
                assert x is not None
                out.append((self.t, x.receiver, {a["labels"]["host"]: a["state"] for a in x.body["alerts"]}))
            self.n.deliver()
            self.t += step
        return out


MAINTENANCE = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['team="db"']
      receiver: db
      mute_time_intervals: [db-maintenance]
time_intervals:
  - name: db-maintenance
    time_intervals:
      - times: [{start_time: "02:00", end_time: "04:00"}]
        days_of_month: ["-1"]
        location: Europe/Berlin
"""


def test_maintenance_window_mutes_the_route_then_sends_at_the_first_flush_after(tmp_path: Path) -> None:
    # TimeMuteStage: inside the window the route's flushes send nothing; the notification log is not
    # touched, so at the first flush after the window the alert that started inside it is new
    start = _ts(2026, 6, 30, 2, 0, BERLIN)  # the last day of June, 02:00 in Berlin
    p = Pipe(tmp_path, MAINTENANCE, start)
    p.set("db1", 95)
    assert p.run_until(start + 2 * 3600 - 300) == []  # flushes every 5 minutes, all muted
    assert p.run_until(start + 2 * 3600) == [(start + 2 * 3600, "db", {"db1": "firing"})]  # 04:00: open
    # the other team's route has no window
    (tmp_path / "q").mkdir()
    q = Pipe(tmp_path / "q", MAINTENANCE, start)
    q.set("web1", 95, team="web")
    assert q.run_until(start) == [(start, "team", {"web1": "firing"})]


def test_alert_announced_before_the_window_is_not_repeated_when_it_ends(tmp_path: Path) -> None:
    # TimeMuteStage leaves the notification log alone: an alert announced before the window and still
    # firing after it is repeated only repeat_interval after its last notification (Alertmanager
    # issue #3367 asks for the opposite; it is not Alertmanager's behaviour)
    start = _ts(2026, 6, 30, 1, 0, BERLIN)
    p = Pipe(tmp_path, MAINTENANCE, start)
    p.set("db1", 95)
    assert p.run_until(start) == [(start, "db", {"db1": "firing"})]
    assert p.run_until(start + 4 * 3600 - 300) == []  # the window 02:00–04:00 passes silently
    assert p.run_until(start + 4 * 3600 + 300) == [(start + 4 * 3600 + 300, "db", {"db1": "firing"})]


def test_resolution_inside_the_window_is_sent_when_it_ends(tmp_path: Path) -> None:
    # Deliberate difference (README): Alertmanager drops an alert that resolves inside a mute window
    # (aggrGroup.flush deletes resolved alerts after the muted flush, so the receiver never hears
    # of it; PR #4634's discussion lists it as a gap); perf-alerts keeps an announced alert's
    # resolution owed, as it does for silences, and sends it at the first open flush
    start = _ts(2026, 6, 30, 1, 0, BERLIN)
    p = Pipe(tmp_path, MAINTENANCE, start)
    p.set("db1", 95)
    assert p.run_until(start) == [(start, "db", {"db1": "firing"})]
    assert p.run_until(start + 3600) == []
    p.set("db1", 10)  # resolves at 02:05, inside the window
    assert p.run_until(start + 3 * 3600 - 300) == []
    assert p.run_until(start + 3 * 3600) == [(start + 3 * 3600, "db", {"db1": "resolved"})]


BUSINESS = """
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1h
  repeat_interval: 24h
  routes:
    - matchers: ['team="db"']
      receiver: db
      active_time_intervals: [business]
      routes:
        - matchers: ['host="db-primary"']
          receiver: dbpage
time_intervals:
  - name: business
    time_intervals:
      - times: [{start_time: "09:00", end_time: "17:00"}]
        weekdays: ["monday:friday"]
        location: Europe/Berlin
"""


def test_business_hours_route_waits_for_monday_across_the_dst_change(tmp_path: Path) -> None:
    # TimeActiveStage: outside every active interval the route sends nothing; the group's flushes go on
    # (group_wait, then hourly) and the first one inside Monday's business hours sends. 2026-03-29 is
    # the change to summer time: Monday 09:00 in Berlin is 07:00 UTC
    start = _ts(2026, 3, 28, 10, 0, BERLIN)  # Saturday 10:00
    p = Pipe(tmp_path, BUSINESS, start)
    p.set("db2", 95)
    sent = p.run_until(_ts(2026, 3, 30, 10, 0, BERLIN), step=600)
    db = [(t, h) for t, r, h in sent if r == "db"]
    # flushes at 10:00:30 + k hours; the first at or after Monday 09:00 CEST is 09:00:30 → planned at 09:10
    assert db == [(_ts(2026, 3, 30, 9, 10, BERLIN), {"db2": "firing"})]
    assert datetime.fromtimestamp(db[0][0], timezone.utc).hour == 7


def test_active_time_intervals_are_not_inherited_by_child_routes(tmp_path: Path) -> None:
    # dispatch/route.go NewRoute: `opts.ActiveTimeIntervals = cr.ActiveTimeIntervals` — a child route
    # has only its own intervals, so the page route under the business-hours route pages at the weekend
    start = _ts(2026, 3, 28, 10, 0, BERLIN)
    p = Pipe(tmp_path, BUSINESS, start)
    p.set("db-primary", 95)
    assert p.run_until(start + 600, step=600) == [(start + 600, "dbpage", {"db-primary": "firing"})]
    from perf_alerts.notify.routing import match_routes

    (page,) = match_routes(p.cfg.route, {"team": "db", "host": "db-primary"})
    (db,) = match_routes(p.cfg.route, {"team": "db", "host": "db2"})
    assert (page.active_time_intervals, db.active_time_intervals) == ((), ("business",))


def test_alerts_view_says_when_every_route_is_closed_by_a_time_interval(tmp_path: Path) -> None:
    # perf-alerts' view of TimeMuteStage/TimeActiveStage: `perf-alerts alerts` and /api/v1/alerts show
    # why an alert is not notified now when every route it takes is muted or inactive
    start = _ts(2026, 3, 28, 10, 0, BERLIN)  # Saturday
    p = Pipe(tmp_path, BUSINESS, start)
    p.set("db2", 95)
    p.set("db-primary", 95)  # its page route has no interval
    p.run_until(start)
    from perf_alerts.notify.mute import muting

    views = {v.alert.labels["host"]: v for v in p.pa.alert_views(None, muting)}
    assert views["db2"].time_muted == "outside its active time interval(s) business"
    assert views["db2"].flags == ("time-muted",) and views["db2"].to_dict()["time_muted"] is not None
    assert views["db-primary"].time_muted is None and views["db-primary"].flags == ()
    p.clock.set(_ts(2026, 3, 30, 10, 0, BERLIN))  # Monday
    assert {v.alert.labels["host"]: v.time_muted for v in p.pa.alert_views(None, muting)}["db2"] is None


def test_check_config_lists_each_time_interval_with_its_routes_and_whether_it_is_open(tmp_path: Path) -> None:
    # a maintenance window or business-hours gate that silently holds a page back is checked here
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app

    cfg = tmp_path / "ti.yaml"
    cfg.write_text(textwrap.dedent("""
        time_intervals:
          - name: always
            time_intervals: [{}]
          - name: never-used
            time_intervals: [{months: ['january']}]
        receivers: [{name: console, console: {}}, {name: oncall, console: {}}]
        route:
          receiver: console
          routes:
            - receiver: oncall
              matchers: ['severity="critical"']
              mute_time_intervals: [always]
        """), encoding="utf-8")
    r = CliRunner().invoke(app, ["--config", str(cfg), "--db", str(tmp_path / "s.db"), "check-config"])
    assert r.exit_code == 0, r.output
    assert "time interval 'always': mutes route 0.0 (oncall) (in the interval now)" in r.output
    assert "time interval 'never-used': used by no route" in r.output


def test_deliver_at_judges_time_intervals_at_the_replayed_time(tmp_path: Path) -> None:
    # replaying history: `evaluate --at T --no-notify` then `deliver --at T` plans as of T, so a
    # weekend mute holds on the Saturday of the replay whatever day it is now
    import json as _json

    from typer.testing import CliRunner

    from perf_alerts.cli.main import app
    from perf_alerts.core import PerfAlerts
    from perf_alerts.store import Store

    sat = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc).timestamp()  # a Saturday
    mon = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc).timestamp()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent("""
        rules:
          - {name: Slow, type: threshold, metric: lat, aggregate: last, window: 3d, op: ">", value: 30}
        time_intervals:
          - name: weekends
            time_intervals: [{weekdays: ['saturday', 'sunday']}]
        receivers: [{name: quiet, console: {}}]
        route:
          receiver: quiet
          group_wait: 0s
          routes:
            - receiver: quiet
              matchers: ['alertname="Slow"']
              mute_time_intervals: [weekends]
        """), encoding="utf-8")
    db = tmp_path / "s.db"
    PerfAlerts(str(cfg), Store(db)).record("lat", 50.0, {"agent": "a"}, ts=sat - 60)
    glob = ["--config", str(cfg), "--db", str(db)]

    def run(*args: str) -> dict:  # type: ignore[type-arg]
        r = CliRunner().invoke(app, [*glob, *args])
        assert r.exit_code == 0, r.output
        return _json.loads(r.stdout) if "--json" in args else {}

    run("evaluate", "--no-notify", "--at", str(sat))
    assert run("deliver", "--at", str(sat), "--json")["delivered"] == 0  # muted on the replayed Saturday
    assert run("deliver", "--at", str(mon), "--json")["delivered"] == 1  # Monday: the group's flush goes out


def test_silence_add_with_start_and_end(tmp_path: Path) -> None:
    # as amtool's --start/--end: a maintenance window planned ahead
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app

    glob = ["--db", str(tmp_path / "s.db")]
    r = CliRunner().invoke(app, [*glob, "silence", "add", "agent=x", "--start", "2030-01-01T02:00:00Z",
                                 "--end", "2030-01-01T04:00:00Z", "--json"])
    assert r.exit_code == 0, r.output
    assert '"starts_at": "2030-01-01T02:00:00Z"' in r.stdout.replace(".000000", "") or "2030-01-01T02:00:00" in r.stdout
    assert "2030-01-01T04:00:00" in r.stdout
    bad = CliRunner().invoke(app, [*glob, "silence", "add", "agent=x", "--start", "2030-01-01T04:00:00Z",
                                   "--end", "2030-01-01T02:00:00Z"])
    assert bad.exit_code == 2 and "--end" in bad.output


@pytest.mark.parametrize("entry, field, expected", [
    ("- times: [{start_time: 20:00, end_time: 23:59}]", "times", None),
    ("- months: [1:3]", "months", ["1:3"]),            # YAML 1.1 would make it month 63: never matching
    ("- days_of_month: [1:7]", "days_of_month", ["1:7"]),  # ... and day 67: refused
])
def test_unquoted_alertmanager_values_mean_what_they_say(entry: str, field: str, expected: list[str] | None) -> None:
    # Alertmanager's docs write `start_time: 17:00` and `months: [1:3]` unquoted; Go's YAML reads
    # them as text, PyYAML (YAML 1.1) as base-60 numbers. The config loader reads them as text.
    cfg = parse_config(textwrap.dedent("""
        receivers: [{name: ops, console: {}}]
        route:
          receiver: ops
          routes: [{matchers: ['severity="warning"'], mute_time_intervals: [offhours]}]
        time_intervals:
          - name: offhours
            time_intervals:
        """) + textwrap.indent(entry + "\n", "      "), "am.yaml", env={})
    spec = cfg.time_intervals[0].time_intervals[0]
    if expected is None:
        assert spec.times[0].minutes == (1200, 1439)
    else:
        assert getattr(spec, field) == expected


def test_silence_add_without_matchers_is_one_line(tmp_path: Path) -> None:
    # every usage error is one line on stderr, exit 2 (typer printed a usage block for this one)
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app

    r = CliRunner().invoke(app, ["--db", str(tmp_path / "s.db"), "silence", "add"])
    assert r.exit_code == 2 and "give at least one matcher" in r.output and "Usage" not in r.output


def test_silence_list_shows_when_a_planned_silence_starts(tmp_path: Path) -> None:
    # with --start a silence can be pending: the list says when it starts, not only when it ends
    from typer.testing import CliRunner

    from perf_alerts.cli.main import app

    glob = ["--db", str(tmp_path / "s.db")]
    assert CliRunner().invoke(app, [*glob, "silence", "add", "agent=x", "--start", "2030-01-01T02:00:00Z",
                                    "--end", "2030-01-01T04:00:00Z"]).exit_code == 0
    r = CliRunner().invoke(app, [*glob, "silence", "list"])
    assert r.exit_code == 0 and "starts" in r.output and "2030-01-01T02:00:00Z" in r.output and "pending" in r.output
