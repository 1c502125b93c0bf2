"""Fire times of cron, Quartz and RFC 5545 schedules: exact instants, DST days, oracles, errors."""

from __future__ import annotations

import calendar
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil import rrule

from sing_backend.models.schedule import validate_schedule
from sing_backend.scheduler.schedules import Schedule, all_next_fires, next_fire_after, parse_schedule


def ms(text: str) -> int:
    """Epoch ms of an ISO time with offset, e.g. "2026-03-08T03:00:00-04:00"."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso(epoch_ms: int, tz: str | None = None) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, ZoneInfo(tz) if tz else UTC).isoformat()


def fires(schedule: Schedule, after: str, count: int, tz: str | None = None) -> list[str]:
    out: list[str] = []
    at: int | None = ms(after)
    while len(out) < count:
        at = next_fire_after(schedule, at, tz)
        if at is None:
            break
        out.append(iso(at, tz))
    return out


# ------------------------------------------------------------------------------------------ exact instants

EXACT = [
    # cron: 5 fields, weekdays 0-7 with Sunday 0 and 7
    ("*/5 * * * *", None, "2026-11-25T07:32:10+00:00",
     ["2026-11-25T07:35:00+00:00", "2026-11-25T07:40:00+00:00", "2026-11-25T07:45:00+00:00"]),
    ("0 9 * * MON-FRI", None, "2026-11-27T10:00:00+00:00",
     ["2026-11-30T09:00:00+00:00", "2026-12-01T09:00:00+00:00", "2026-12-02T09:00:00+00:00"]),
    ("0 12 * * 7", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-29T12:00:00+00:00", "2026-12-06T12:00:00+00:00"]),
    ("0 12 * * 5", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-27T12:00:00+00:00", "2026-12-04T12:00:00+00:00"]),
    # both day fields restricted: cron fires on either (the 1st, and every Monday)
    ("0 0 1 * MON", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00", "2026-12-07T00:00:00+00:00"]),
    ("30 23 L * *", None, "2027-01-31T23:30:00+00:00",
     ["2027-02-28T23:30:00+00:00", "2027-03-31T23:30:00+00:00"]),
    ("0 6 * * 5L", None, "2026-11-01T00:00:00+00:00",  # cron numbering: 5 is Friday
     ["2026-11-27T06:00:00+00:00", "2026-12-25T06:00:00+00:00"]),
    # Quartz: seconds first, weekdays 1-7 with Sunday 1
    ("0 0 12 ? * 6", "QUARTZ", "2026-11-25T00:00:00+00:00",
     ["2026-11-27T12:00:00+00:00", "2026-12-04T12:00:00+00:00"]),
    ("15/20 * * * * ?", None, "2026-11-25T07:32:10+00:00",
     ["2026-11-25T07:32:15+00:00", "2026-11-25T07:32:35+00:00", "2026-11-25T07:32:55+00:00",
      "2026-11-25T07:33:15+00:00"]),
    ("0 30 2 * * ?", None, "2026-11-25T02:30:00+00:00",
     ["2026-11-26T02:30:00+00:00", "2026-11-27T02:30:00+00:00"]),
    ("0 15 10 L * ?", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-30T10:15:00+00:00", "2026-12-31T10:15:00+00:00", "2027-01-31T10:15:00+00:00",
      "2027-02-28T10:15:00+00:00"]),
    ("0 0 0 L-3 * ?", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-27T00:00:00+00:00", "2026-12-28T00:00:00+00:00", "2027-01-28T00:00:00+00:00",
      "2027-02-25T00:00:00+00:00"]),
    # Nov 15th 2026 is a Sunday (→ Monday 16th); Feb 15th 2027 a Monday
    ("0 0 0 15W * ?", None, "2026-11-01T00:00:00+00:00",
     ["2026-11-16T00:00:00+00:00", "2026-12-15T00:00:00+00:00", "2027-01-15T00:00:00+00:00",
      "2027-02-15T00:00:00+00:00"]),
    # Aug 1st 2026 is a Saturday: W never leaves the month, so Monday the 3rd, not Friday July 31st
    ("0 0 0 1W * ?", None, "2026-07-15T00:00:00+00:00",
     ["2026-08-03T00:00:00+00:00", "2026-09-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00",
      "2026-11-02T00:00:00+00:00"]),
    # 31W: not in 30-day months; Jan 31st 2027 is a Sunday → Friday 29th
    ("0 0 0 31W * ?", None, "2026-11-01T00:00:00+00:00",
     ["2026-12-31T00:00:00+00:00", "2027-01-29T00:00:00+00:00", "2027-03-31T00:00:00+00:00"]),
    # May 31st 2026 Sunday → 29th; Oct 31st Saturday → 30th
    ("0 0 0 LW * ?", None, "2026-05-01T00:00:00+00:00",
     ["2026-05-29T00:00:00+00:00", "2026-06-30T00:00:00+00:00", "2026-07-31T00:00:00+00:00",
      "2026-08-31T00:00:00+00:00", "2026-09-30T00:00:00+00:00", "2026-10-30T00:00:00+00:00"]),
    ("0 0 0 ? * 6L", None, "2026-11-01T00:00:00+00:00",
     ["2026-11-27T00:00:00+00:00", "2026-12-25T00:00:00+00:00", "2027-01-29T00:00:00+00:00"]),
    ("0 0 0 ? * 6#3", None, "2026-11-25T00:00:00+00:00",
     ["2026-12-18T00:00:00+00:00", "2027-01-15T00:00:00+00:00", "2027-02-19T00:00:00+00:00"]),
    ("0 0 0 ? * MON#5", None, "2026-11-01T00:00:00+00:00",
     ["2026-11-30T00:00:00+00:00", "2027-03-29T00:00:00+00:00"]),
    ("0 0 0 29 2 ?", None, "2026-11-25T00:00:00+00:00",
     ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
    ("0 0 8 ? JAN,jul MON-FRI", None, "2026-12-31T00:00:00+00:00",
     ["2027-01-01T08:00:00+00:00", "2027-01-04T08:00:00+00:00"]),
    ("0 0 22-2 * * ?", None, "2026-11-25T12:00:00+00:00",  # a range wrapping past midnight
     ["2026-11-25T22:00:00+00:00", "2026-11-25T23:00:00+00:00", "2026-11-26T00:00:00+00:00",
      "2026-11-26T01:00:00+00:00", "2026-11-26T02:00:00+00:00", "2026-11-26T22:00:00+00:00"]),
    ("0 0 0 ? * FRI-MON", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-27T00:00:00+00:00", "2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00",
      "2026-11-30T00:00:00+00:00", "2026-12-04T00:00:00+00:00"]),
    ("0 0/5 * * * ? 2027", None, "2026-11-25T07:30:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2027-01-01T00:05:00+00:00"]),
    ("0 0 0 1 1 ? 2027-2028", None, "2026-11-25T00:00:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),  # and then never again
    # RFC 5545
    ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "RFC5545", "2026-11-25T07:30:00+00:00",
     ["2026-11-26T02:30:00+00:00", "2026-11-27T02:30:00+00:00"]),
    # fortnightly from Thursday Jan 1st 2026: Tuesdays of the weeks of Jan 12th, 26th, ... Nov 30th
    ("DTSTART:20260101T090000\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "RFC5545", "2026-11-25T00:00:00+00:00",
     ["2026-12-01T09:00:00+00:00", "2026-12-15T09:00:00+00:00", "2026-12-29T09:00:00+00:00"]),
    ("DTSTART:20260131T080000\nRRULE:FREQ=MONTHLY", "RFC5545", "2026-11-25T00:00:00+00:00",
     ["2026-12-31T08:00:00+00:00", "2027-01-31T08:00:00+00:00", "2027-03-31T08:00:00+00:00"]),
    ("DTSTART:20261120T100000Z\nRRULE:FREQ=DAILY;COUNT=10", "RFC5545", "2026-11-27T12:00:00+00:00",
     ["2026-11-28T10:00:00+00:00", "2026-11-29T10:00:00+00:00"]),
    ("FREQ=HOURLY;INTERVAL=5;UNTIL=20261126T000000Z", "RFC5545", "2026-11-25T12:00:00+00:00",
     ["2026-11-25T17:00:00+00:00", "2026-11-25T22:00:00+00:00"]),  # every 5 hours since 1970
    ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=18", None, "2026-11-25T00:00:00+00:00",
     ["2026-11-27T18:00:00+00:00", "2026-12-25T18:00:00+00:00"]),
]


@pytest.mark.parametrize(("expr", "kind", "after", "expected"), EXACT)
def test_exact_fire_times_in_utc(expr, kind, after, expected):
    assert fires(parse_schedule(expr, kind), after, len(expected)) == expected


def test_exact_fire_times_end_when_the_schedule_does():
    assert next_fire_after(parse_schedule("0 0 0 1 1 ? 2027-2028", None), ms("2028-01-01T00:00:00+00:00"), None) \
        is None
    counted = parse_schedule("DTSTART:20261120T100000Z\nRRULE:FREQ=DAILY;COUNT=10", "RFC5545")
    assert fires(counted, "2026-11-27T12:00:00+00:00", 5) == [
        "2026-11-28T10:00:00+00:00", "2026-11-29T10:00:00+00:00"]
    until = parse_schedule("FREQ=HOURLY;INTERVAL=5;UNTIL=20261126T000000Z", "RFC5545")
    assert fires(until, "2026-11-25T12:00:00+00:00", 5) == ["2026-11-25T17:00:00+00:00", "2026-11-25T22:00:00+00:00"]


def test_strictly_after_at_millisecond_precision():
    s = parse_schedule("0 * * * * ?", None)
    fire = ms("2026-11-25T07:33:00+00:00")
    assert next_fire_after(s, fire - 1, None) == fire
    assert next_fire_after(s, fire, None) == fire + 60_000
    assert next_fire_after(s, fire + 999, None) == fire + 60_000


def test_cron_and_its_quartz_conversion_agree():
    # Singularity's conversion: "0" seconds, DOW * → ?, weekday numbers + 1 (Sunday 0 → 1)
    for cron, quartz in [("0 9 * * 1-5", "0 0 9 ? * 2-6"), ("*/10 * * * *", "0 */10 * * * ?"),
                         ("15 3 1,15 * *", "0 15 3 1,15 * ?"), ("0 0 * * 0", "0 0 0 ? * 1")]:
        assert fires(parse_schedule(cron, None), "2026-11-25T00:00:00+00:00", 12) == \
            fires(parse_schedule(quartz, None), "2026-11-25T00:00:00+00:00", 12)


def test_rfc5545_dtstart_with_a_zone_is_an_instant_and_floating_is_local():
    rule = "DTSTART;TZID=America/New_York:20260301T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO"
    assert fires(parse_schedule(rule, "RFC5545"), "2026-03-01T00:00:00+00:00", 2, "Europe/London") == [
        "2026-03-02T14:00:00+00:00", "2026-03-09T14:00:00+00:00"]  # 09:00 New York; its DST starts on the 8th
    floating = "DTSTART:20260301T090000\nRRULE:FREQ=WEEKLY;BYDAY=MO"
    assert fires(parse_schedule(floating, "RFC5545"), "2026-03-01T00:00:00+00:00", 2, "Europe/London") == [
        "2026-03-02T09:00:00+00:00", "2026-03-09T09:00:00+00:00"]


def test_all_next_fires_matches_one_by_one():
    items = [(parse_schedule(e, None), ms("2026-11-25T07:32:10+00:00"), tz)
             for e, tz in [("*/5 * * * *", None), ("0 0 12 ? * MON-FRI", "America/New_York"),
                           ("0 0 0 1 1 ? 2027", "Europe/London"), ("0 0 0 1 1 ? 2027", None)]]
    assert all_next_fires(items) == [next_fire_after(*item) for item in items]
    assert all_next_fires([(items[0][0], ms("2027-01-01T00:00:00+00:00"), None)]) == \
        [ms("2027-01-01T00:05:00+00:00")]


# ------------------------------------------------------------------------------------------ DST


def whole_day(expr: str, tz: str, day: str, kind: str | None = None) -> list[str]:
    """Every fire time on local `day`, found by iterating next_fire_after from the day's start."""
    zone = ZoneInfo(tz)
    start = datetime.fromisoformat(day).replace(tzinfo=zone)
    end = start + timedelta(days=1)  # wall-clock arithmetic: the next local midnight, 23 or 25 hours later
    schedule, at, out = parse_schedule(expr, kind), int(start.timestamp() * 1000) - 1, []
    while (at := next_fire_after(schedule, at, tz)) is not None and at < end.timestamp() * 1000:
        out.append(iso(at, tz))
    return out


DST_DAYS = [
    # New York springs forward at 02:00 EST → 03:00 EDT: 02:30 does not exist and fires at 03:00
    ("0 30 2 * * ?", "America/New_York", "2026-03-08", ["2026-03-08T03:00:00-04:00"]),
    ("30 2 * * *", "America/New_York", "2026-03-08", ["2026-03-08T03:00:00-04:00"]),
    ("0 30 1 * * ?", "America/New_York", "2026-03-08", ["2026-03-08T01:30:00-05:00"]),
    # New York falls back at 02:00 EDT → 01:00 EST: 01:30 happens twice and fires the first time
    ("0 30 1 * * ?", "America/New_York", "2026-11-01", ["2026-11-01T01:30:00-04:00"]),
    ("0 30 2 * * ?", "America/New_York", "2026-11-01", ["2026-11-01T02:30:00-05:00"]),
    # London springs forward at 01:00 GMT → 02:00 BST: 01:30 does not exist and fires at 02:00
    ("0 30 1 * * ?", "Europe/London", "2026-03-29", ["2026-03-29T02:00:00+01:00"]),
    ("0 30 2 * * ?", "Europe/London", "2026-03-29", ["2026-03-29T02:30:00+01:00"]),
    # London falls back at 02:00 BST → 01:00 GMT
    ("0 30 1 * * ?", "Europe/London", "2026-10-25", ["2026-10-25T01:30:00+01:00"]),
    ("0 30 2 * * ?", "Europe/London", "2026-10-25", ["2026-10-25T02:30:00+00:00"]),
    # several fixed hours: the skipped ones collapse onto the gap's end, the repeated ones fire once
    ("0 0/30 1-3 * * ?", "America/New_York", "2026-03-08",
     ["2026-03-08T01:00:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
      "2026-03-08T03:30:00-04:00"]),
    ("0 0/30 1-3 * * ?", "America/New_York", "2026-11-01",
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T02:00:00-05:00",
      "2026-11-01T02:30:00-05:00", "2026-11-01T03:00:00-05:00", "2026-11-01T03:30:00-05:00"]),
    ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "America/New_York", "2026-03-08", ["2026-03-08T03:00:00-04:00"]),
    ("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", "Europe/London", "2026-10-25", ["2026-10-25T01:30:00+01:00"]),
]


@pytest.mark.parametrize(("expr", "tz", "day", "expected"), DST_DAYS)
def test_dst_days_fire_each_fixed_time_exactly_once(expr, tz, day, expected):
    assert whole_day(expr, tz, day) == expected


def test_hourly_schedules_follow_elapsed_time_across_dst():
    ny_spring = whole_day("0 30 * * * ?", "America/New_York", "2026-03-08")
    assert ny_spring[:3] == ["2026-03-08T00:30:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"]
    assert len(ny_spring) == 23
    ny_fall = whole_day("0 30 * * * ?", "America/New_York", "2026-11-01")
    assert ny_fall[:4] == ["2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00",
                           "2026-11-01T02:30:00-05:00"]
    assert len(ny_fall) == 25
    london_fall = whole_day("*/15 * * * *", "Europe/London", "2026-10-25")
    assert len(london_fall) == 25 * 4
    utc = [ms(t) for t in london_fall]
    assert all(b - a == 15 * 60_000 for a, b in zip(utc, utc[1:], strict=False))  # an even rhythm throughout
    london_spring = [ms(t) for t in whole_day("*/15 * * * *", "Europe/London", "2026-03-29")]
    assert len(london_spring) == 23 * 4
    assert all(b - a == 15 * 60_000 for a, b in zip(london_spring, london_spring[1:], strict=False))
    assert len(whole_day("FREQ=MINUTELY;INTERVAL=30", "America/New_York", "2026-11-01", "RFC5545")) == 50


def test_every_hour_search_from_inside_the_repeated_hour():
    s = parse_schedule("0 10 * * * ?", None)
    # 01:40 EDT is in the first pass: 01:10 EST (second pass) comes next, not 02:10 EST
    assert iso(next_fire_after(s, ms("2026-11-01T01:40:00-04:00"), "America/New_York"), "America/New_York") == \
        "2026-11-01T01:10:00-05:00"
    daily = parse_schedule("0 10 1 * * ?", None)
    assert iso(next_fire_after(daily, ms("2026-11-01T01:40:00-04:00"), "America/New_York"), "America/New_York") == \
        "2026-11-02T01:10:00-05:00"
    assert iso(next_fire_after(daily, ms("2026-11-01T01:05:00-05:00"), "America/New_York"), "America/New_York") == \
        "2026-11-02T01:10:00-05:00"


# ------------------------------------------------------------------------------------------ oracles


def _nearest_weekday(d: date) -> date:
    last = calendar.monthrange(d.year, d.month)[1]
    if d.weekday() == 5:
        return d + timedelta(days=2) if d.day == 1 else d - timedelta(days=1)
    if d.weekday() == 6:
        return d - timedelta(days=2) if d.day == last else d + timedelta(days=1)
    return d


def _last(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


# Day rules written out by hand with the calendar module (Python weekdays: Monday 0).
DAY_ORACLES = [
    ("0 0 0 L-3 * ?", lambda d: d.day == _last(d) - 3),
    ("0 0 0 15W * ?", lambda d: d == _nearest_weekday(d.replace(day=15))),
    ("0 0 0 1W,L * ?", lambda d: d == _nearest_weekday(d.replace(day=1)) or d.day == _last(d)),
    ("0 0 0 LW * ?", lambda d: d == _nearest_weekday(d.replace(day=_last(d)))),
    ("0 0 0 ? * 6#3", lambda d: d.weekday() == 4 and 15 <= d.day <= 21),
    ("0 0 0 ? * 2#5", lambda d: d.weekday() == 0 and d.day >= 29),
    ("0 0 0 ? * 6L", lambda d: d.weekday() == 4 and d.day > _last(d) - 7),
    ("0 0 0 ? * 1L,4", lambda d: d.weekday() == 2 or (d.weekday() == 6 and d.day > _last(d) - 7)),
    ("0 0 0 29 2 ?", lambda d: (d.month, d.day) == (2, 29)),
    ("0 0 0 ? JAN,JUL MON-FRI", lambda d: d.month in (1, 7) and d.weekday() < 5),
    ("0 0 0 */10 * ?", lambda d: d.day in (1, 11, 21, 31)),
    ("0 0 0 ? 2/3 SAT", lambda d: d.month in (2, 5, 8, 11) and d.weekday() == 5),
    ("0 0 13 * 5", lambda d: d.day == 13 or d.weekday() == 4),  # cron: either field
    ("0 0 * * 0,6", lambda d: d.weekday() >= 5),
]


@pytest.mark.parametrize(("expr", "oracle"), DAY_ORACLES)
def test_fires_on_exactly_the_days_the_rule_describes(expr, oracle):
    schedule = parse_schedule(expr, None)
    first, last = date(2026, 1, 1), date(2029, 12, 31)
    want = [first + timedelta(days=i) for i in range((last - first).days + 1) if oracle(first + timedelta(days=i))]
    got, at = [], ms("2025-12-31T23:59:59+00:00")
    while (at := next_fire_after(schedule, at, None)) is not None and at < ms("2030-01-01T00:00:00+00:00"):
        got.append(datetime.fromtimestamp(at / 1000, UTC).date())
    assert got == want


def _random_cron(rng: random.Random) -> str:
    def part(lo: int, hi: int) -> str:
        kind = rng.choice(["*", "n", "list", "range", "step", "rangestep"])
        a, b = sorted(rng.sample(range(lo, hi + 1), 2))
        return {"*": "*", "n": str(a), "list": f"{a},{b}", "range": f"{a}-{b}", "step": f"*/{rng.randint(2, 9)}",
                "rangestep": f"{a}-{b}/{rng.randint(2, 4)}"}[kind]
    return " ".join([part(0, 59), part(0, 23), part(1, 31), part(1, 12), part(0, 7)])


def test_random_cron_expressions_agree_with_croniter():
    rng = random.Random(7)
    start = datetime(2026, 11, 25, 7, 32, 10, tzinfo=UTC)
    checked = 0
    while checked < 150:
        expr = _random_cron(rng)
        try:
            schedule = parse_schedule(expr, None)
        except ValueError as exc:
            assert "never fires" in str(exc)
            continue
        it = croniter(expr, start)
        at = int(start.timestamp() * 1000)
        for _ in range(15):
            at = next_fire_after(schedule, at, None)
            assert at == int(it.get_next(float) * 1000), expr
        checked += 1


QUARTZ_TIMES = ["*/7 * * * * ?", "5,10-12 */13 * * * ?", "0 0/20 9-17 ? * *", "30 59 23 * * ?",
                "10-50/15 3 */5 * * ?", "0 0 0,12 * * ?"]


@pytest.mark.parametrize("expr", QUARTZ_TIMES)
def test_quartz_times_of_day_agree_with_croniter_seconds_first(expr):
    start = datetime(2026, 11, 25, 22, 58, 1, tzinfo=UTC)
    it = croniter(expr, start, second_at_beginning=True)
    schedule, at = parse_schedule(expr, None), int(start.timestamp() * 1000)
    for _ in range(60):
        at = next_fire_after(schedule, at, None)
        assert at == int(it.get_next(float) * 1000)


# (expression, the same schedule for croniter seconds-first with cron weekday numbers, or for dateutil)
VARIED = [("*/5 * * * *", "0 */5 * * * *"), ("0 9 * * 1-5", "0 0 9 * * 1-5"), ("0 0 1 * MON", "0 0 0 1 * MON"),
          ("17 */3 * * *", "0 17 */3 * * *"), ("0 30 2 * * ?", "0 30 2 * * *"), ("0 0/15 * * * ?", "0 */15 * * * *"),
          ("0 30 1 * * ?", "0 30 1 * * *"), ("0 0 12 ? * MON-FRI", "0 0 12 * * MON-FRI"),
          ("0 15 10 L * ?", "0 15 10 L * *"), ("0 0 0 15W * ?", "0 0 0 15W * *"), ("0 0 0 ? * 6#3", "0 0 0 * * 5#3"),
          ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"),
          ("FREQ=HOURLY;INTERVAL=2;BYMINUTE=30", "FREQ=HOURLY;INTERVAL=2;BYMINUTE=30")]


@pytest.mark.parametrize("tz", [None, "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"])
def test_results_strictly_increase_and_match_the_expression(tz):
    zone = ZoneInfo(tz or "UTC")
    for expr, reference in VARIED:
        schedule = parse_schedule(expr, None)
        rule = rrule.rrulestr(reference, dtstart=datetime(2026, 1, 1), cache=True) if "FREQ" in expr else None
        at, previous = ms("2026-03-01T00:00:00+00:00"), 0
        for _ in range(150):
            at = next_fire_after(schedule, at, tz)
            assert at > previous
            previous = at
            local = datetime.fromtimestamp(at / 1000, zone)
            naive = local.replace(tzinfo=None)
            if rule is not None:
                matches = rule.after(naive - timedelta(seconds=1)) == naive
            else:
                matches = croniter.match(reference, naive, second_at_beginning=True)
            gap_end = local.utcoffset() != datetime.fromtimestamp(at / 1000 - 1, zone).utcoffset()
            assert matches or gap_end, (expr, tz, local)


# ------------------------------------------------------------------------------------------ errors


ERRORS = [
    ("* * 32 * *", None, "schedule: day-of-month '32' is out of range 1-31"),
    ("61 * * * *", None, "schedule: minute '61' is out of range 0-59"),
    ("* 24 * * *", None, "schedule: hour '24' is out of range 0-23"),
    ("* * * 13 *", None, "schedule: month '13' is out of range 1-12"),
    ("* * * * 8", None, "schedule: day-of-week '8' is out of range 0-7"),
    ("0 0 2 ? * 9", "QUARTZ", "schedule: day-of-week '9' is out of range 1-7"),
    ("0 0 2 ? * 0", None, "schedule: day-of-week '0' is out of range 1-7"),
    ("60 * * * * ?", None, "schedule: second '60' is out of range 0-59"),
    ("0 0 0 1 1 ? 1969", None, "schedule: year '1969' is out of range 1970-2199"),
    ("* * *", None, "schedule: expected 5 fields (cron) or 6-7 fields (Quartz), got 3"),
    ("*/5 * * * *", "QUARTZ", "schedule: expected 6-7 fields (Quartz), got 5"),
    ("*/0 * * * *", None, "schedule: minute '*/0' is invalid: the step must be 1 or more"),
    ("5-x * * * *", None, "schedule: minute '5-x' is invalid"),
    ("0 ? * * *", None, "schedule: hour '?' is invalid: '?' is only for day-of-month and day-of-week"),
    ("0 0 0 1 * MON", None, "schedule: day-of-month '1' and day-of-week 'MON' are both set"),
    ("0 0 0 ? * 6#6", None, "schedule: day-of-week '6#6' is out of range: # takes 1-5"),
    ("0 0 0 L-31 * ?", None, "schedule: day-of-month 'L-31' is out of range L-0 to L-30"),
    ("0 0 0 32W * ?", None, "schedule: day-of-month '32W' is out of range 1-31"),
    ("0 0 30 2 ?", None, "schedule: never fires"),
    ("0 0 0 30 2 ?", None, "schedule: never fires"),
    ("0 0 0 31 4,6,9,11 ?", None, "schedule: never fires"),
    ("0 0 0 29 2 ? 2027", None, "schedule: never fires"),
    ("0 0 0 ? 2 2#5 2026-2027", None, "schedule: never fires"),
    ("BYHOUR=2", "RFC5545", "schedule: RFC 5545 line 'BYHOUR=2' is not supported"),
    ("RRULE:BYHOUR=2", "RFC5545", "schedule: an RFC 5545 rule needs FREQ="),
    ("FREQ=FORTNIGHTLY", "RFC5545", "schedule: RFC 5545 rule 'FREQ=FORTNIGHTLY' is invalid"),
    ("FREQ=DAILY;COUNT=3", "RFC5545", "schedule: RFC 5545 COUNT needs a DTSTART"),
    ("DTSTART:2026\nRRULE:FREQ=DAILY", "RFC5545", "schedule: DTSTART 'DTSTART:2026' is invalid"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "RFC5545", "schedule: never fires"),
    ("FREQ=SECONDLY;BYMONTH=4;BYMONTHDAY=31", "RFC5545", "schedule: never fires"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "RFC5545", "schedule: never fires"),
    ("0 0 * * *", "HOURLY", "schedule: unknown scheduleType 'HOURLY'"),
]


@pytest.mark.parametrize(("expr", "kind", "message"), ERRORS)
def test_errors_name_the_part(expr, kind, message):
    with pytest.raises(ValueError) as exc:
        parse_schedule(expr, kind)
    assert str(exc.value).startswith(message)


def test_validation_uses_the_same_parser_and_refuses_schedules_that_are_over():
    now = ms("2026-11-25T12:00:00+00:00")
    validate_schedule("0 0/5 * * * ? 2027", None, now_ms=now)
    validate_schedule("0 0 0 ? * 6#3", "QUARTZ", "quartzSchedule", now_ms=now)
    with pytest.raises(ValueError, match=r"^schedule: never fires"):
        validate_schedule("0 0 0 1 1 ? 2025", None, now_ms=now)
    with pytest.raises(ValueError, match=r"^schedule: never fires"):
        validate_schedule("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY;COUNT=3", "RFC5545", now_ms=now)
    with pytest.raises(ValueError, match=r"^quartzSchedule: day-of-week '9' is out of range 1-7"):
        validate_schedule("0 0 2 ? * 9", "QUARTZ", "quartzSchedule", now_ms=now)
    # a schedule whose last fire time was under a day ago may still be ahead in some zone: accepted
    validate_schedule("0 0 0 1 1 ? 2026", None, now_ms=ms("2026-01-01T10:00:00+00:00"))
    # without a "now" (loading a stored request), a schedule that has run its course is still valid
    validate_schedule("0 0 0 1 1 ? 2025", None)


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        next_fire_after(parse_schedule("* * * * *", None), 0, "Mars/Base")


def test_dateutil_agrees_when_the_rule_starts_from_a_later_period():
    # The evaluator skips ahead whole periods from DTSTART; dateutil walking from DTSTART is the reference.
    for text in ["FREQ=MINUTELY;INTERVAL=7", "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40", "FREQ=DAILY;INTERVAL=3",
                 "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,FR", "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31",
                 "FREQ=YEARLY;INTERVAL=3;BYMONTH=2;BYMONTHDAY=29", "FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU;BYSETPOS=1"]:
        dtstart = datetime(2024, 5, 31, 6, 45, 30)
        schedule = parse_schedule(f"DTSTART:{dtstart:%Y%m%dT%H%M%S}\nRRULE:{text}", "RFC5545")
        reference = rrule.rrulestr(text, dtstart=dtstart, cache=True)
        at = datetime(2026, 11, 25, 7, 32, 10)
        for _ in range(5):
            want = reference.after(at)
            got = next_fire_after(schedule, int(at.replace(tzinfo=UTC).timestamp() * 1000), None)
            assert got == int(want.replace(tzinfo=UTC).timestamp() * 1000), text
            at = want
