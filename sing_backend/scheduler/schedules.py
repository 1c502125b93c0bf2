"""When a SCHEDULED request fires: cron, Quartz and RFC 5545 rules in any IANA time zone.

Pure functions: "now" is always an argument (`after_ms`), nothing reads a clock or does I/O.
An expression is parsed once into a `Schedule`; `next_fire_after` then finds the next fire time.

Dialects (as Singularity reads them):
- 5 fields: cron. Weekdays 0-7 (0 and 7 are Sunday), no seconds. Singularity turns it into Quartz
  ("0" seconds, DOW `*` → `?`, weekday numbers +1), which is the same schedule, except when day-of-month
  and day-of-week are both restricted (neither `*` nor `?`): Singularity then drops day-of-month, while
  this module keeps cron's (and croniter's) rule, a day fires when it matches EITHER field.
  For example, `0 0 1 * MON` fires on the 1st and on every Monday.
- 6-7 fields: Quartz. Seconds first, optional year (1970-2199), weekdays 1-7 (1 is Sunday). `?` means
  "no constraint". Quartz refuses an expression that restricts both day fields, and so does this module.
  When one of them is `*`, the other one governs, which is what Singularity's cron conversion does.
- Both dialects accept names (JAN, MON-FRI), ranges (also wrapping ones such as FRI-MON), steps, lists,
  `L` / `L-3` (last / third-to-last day of the month), `15W` (weekday nearest the 15th, within the month),
  `LW` (last weekday), `6L` (last Friday) and `6#3` (third Friday); in cron's weekday numbers those two are
  `5L` and `5#3`. `L` alone in day-of-week is Saturday, as in Quartz.
- RFC 5545: `FREQ=...` or `DTSTART...` plus `RRULE:...` lines, evaluated by dateutil on local wall time.
  Without DTSTART the rule counts from 1970-01-01T00:00 local time, so unspecified parts default to
  second/minute/hour 0 (and day 1, Thursday for WEEKLY); COUNT then has nothing to count from and is refused.

Time zones (DST):
- Fixed-hour schedules (those that do not fire in every hour): each wall-clock fire time fires once. One
  that falls into a spring-forward gap fires at the first instant after the gap (02:30 → 03:00 local,
  like cron, so a daily job is never skipped); one that occurs twice in a fall-back fires at its first
  occurrence only.
- Schedules that fire in every hour (hour field `*`, or an RRULE of FREQ=HOURLY or finer without BYHOUR) follow
  elapsed time instead: wall times inside a gap are skipped and the repeated hour fires again, so a job every
  15 minutes keeps its 15-minute rhythm and an hourly job stays hourly through both changes.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as rr

_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_LAST_ORDINAL = date.max.toordinal() - _EPOCH_ORDINAL
_DAY = 86_400
_CYCLE_YEARS = range(2000, 2400)  # the Gregorian calendar, weekdays included, repeats every 400 years
_QUARTZ_YEARS = (1970, 2199)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_CRON_DAY_NAMES = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_QUARTZ_DAY_NAMES = {name: i + 1 for name, i in _CRON_DAY_NAMES.items()}
_SATURDAY, _SUNDAY = 6, 0  # internal weekday numbering is cron's: Sunday = 0
_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})

# RFC 5545 frequencies whose period is a fixed stretch of wall time (seconds); MONTHLY and YEARLY count months.
_FIXED_PERIODS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": _DAY, "WEEKLY": 7 * _DAY}
_MONTH_PERIODS = {"MONTHLY": 1, "YEARLY": 12}
_DTSTART = re.compile(r"DTSTART(?:;TZID=([^:;]+))?[:=](\d{8}(?:T\d{6})?)(Z?)", re.IGNORECASE)
_RFC_TIME = re.compile(r"(\d{8})(?:T(\d{6}))?(Z?)")
_DATE_PARTS = ("BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "WKST")
_NTH_WEEKDAY = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class _MonthDays:
    """A restricted day-of-month field."""

    days: int  # bit d set: day d fires
    from_end: tuple[int, ...]  # L-n: n days before the last day (L is 0)
    nearest_weekday: tuple[int, ...]  # nW
    last_weekday: bool  # LW


@dataclass(frozen=True, slots=True)
class _WeekDays:
    """A restricted day-of-week field (weekdays numbered Sunday = 0)."""

    by_first: tuple[int, ...]  # [w]: day bits of the listed weekdays in a month whose 1st is weekday w
    nth: tuple[tuple[int, int], ...]  # (weekday, n) for `#`: the n-th such weekday of the month
    last: tuple[int, ...]  # weekdays for `nL`: the last such weekday of the month


@dataclass(frozen=True, slots=True)
class _Fields:
    """A cron or Quartz expression as lookup tables: `x_next[i]` is the first allowed value >= i, or -1."""

    second_next: tuple[int, ...]
    minute_next: tuple[int, ...]
    hour_next: tuple[int, ...]
    month_next: tuple[int, ...]
    years: tuple[int, ...] | None  # sorted; None = every year
    dom: _MonthDays | None  # None = no day-of-month constraint
    dow: _WeekDays | None  # None = no day-of-week constraint; both set = either one (cron)
    first_time: int  # second of the day of the day's first fire time


@dataclass(frozen=True, slots=True)
class _Moment:
    """A DTSTART or UNTIL value: a wall time in the schedule's zone (floating) or an absolute UTC instant."""

    seconds: int
    floating: bool

    def wall(self, zone: ZoneInfo | None) -> int:
        return self.seconds if self.floating or zone is None else self.seconds + _offset_at(zone, self.seconds)


@dataclass(frozen=True, slots=True)
class _Rule:
    rule: rr.rrule  # built with dtstart = start as a wall time; replaced per evaluation
    start: _Moment
    until: _Moment | None
    period: int  # seconds per step for SECONDLY..WEEKLY, else 0
    months: int  # months per step for MONTHLY and YEARLY, else 0
    counted: bool  # COUNT: occurrences are counted from DTSTART, so no starting from a later period


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule, reused on every tick. Exactly one of `fields` and `rule` is set."""

    expr: str
    kind: str  # "CRON", "QUARTZ" or "RFC5545"
    every_hour: bool  # fires in every hour: follows elapsed time across DST changes (see module doc)
    fields: _Fields | None = None
    rule: _Rule | None = None


# ---------------------------------------------------------------------------------------------- parsing


def parse_schedule(expr: str, schedule_type: str | None, *, quartz: bool = False,
                   field: str = "schedule") -> Schedule:
    """Parse `expr`; `quartz` (a `quartzSchedule`) forces Quartz. Errors read "<field>: <what is wrong>"."""
    try:
        return _parse(expr.strip(), None if schedule_type is None else str(schedule_type), quartz)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _parse(text: str, schedule_type: str | None, quartz: bool) -> Schedule:
    if schedule_type not in (None, "CRON", "QUARTZ", "RFC5545"):
        raise ValueError(f"unknown scheduleType '{schedule_type}'")
    looks_like_rule = text.upper().startswith(("RRULE:", "FREQ=", "DTSTART"))
    if not quartz and (schedule_type == "RFC5545" or (schedule_type is None and looks_like_rule)):
        return _parse_rule(text)
    parts = text.split()
    if quartz or schedule_type == "QUARTZ":
        if len(parts) not in (6, 7):
            raise ValueError(f"expected 6-7 fields (Quartz), got {len(parts)}")
    elif len(parts) not in (5, 6, 7):
        raise ValueError(f"expected 5 fields (cron) or 6-7 fields (Quartz), got {len(parts)}")
    if len(parts) == 5:
        fields, hours = _cron_fields(parts)
        kind = "CRON"
    else:
        fields, hours = _quartz_fields(parts)
        kind = "QUARTZ"
    if not _ever_fires(fields):
        raise ValueError("never fires")
    return Schedule(text, kind, every_hour=len(hours) == 24, fields=fields)


def _cron_fields(parts: list[str]) -> tuple[_Fields, set[int]]:
    minute, hour, dom, month, dow = parts
    hours = _values(hour, "hour", 0, 23)
    fields = _build({0}, _values(minute, "minute", 0, 59), hours, _month_days(dom), _values(month, "month", 1, 12,
                    _MONTH_NAMES), _week_days(dow, 0, 7, _CRON_DAY_NAMES), None)
    return fields, hours


def _quartz_fields(parts: list[str]) -> tuple[_Fields, set[int]]:
    second, minute, hour, dom, month, dow = parts[:6]
    if dom not in ("*", "?") and dow not in ("*", "?"):
        raise ValueError(f"day-of-month '{dom}' and day-of-week '{dow}' are both set; Quartz needs '?' in one")
    years = None if len(parts) == 6 or parts[6] == "*" else tuple(sorted(_values(parts[6], "year", *_QUARTZ_YEARS)))
    hours = _values(hour, "hour", 0, 23)
    fields = _build(_values(second, "second", 0, 59), _values(minute, "minute", 0, 59), hours, _month_days(dom),
                    _values(month, "month", 1, 12, _MONTH_NAMES), _week_days(dow, 1, 7, _QUARTZ_DAY_NAMES), years)
    return fields, hours


def _build(seconds: set[int], minutes: set[int], hours: set[int], dom: _MonthDays | None, months: set[int],
           dow: _WeekDays | None, years: tuple[int, ...] | None) -> _Fields:
    second_next, minute_next, hour_next = _next_table(seconds, 60), _next_table(minutes, 60), _next_table(hours, 24)
    return _Fields(second_next, minute_next, hour_next, _next_table(months, 13), years, dom, dow,
                   hour_next[0] * 3600 + minute_next[0] * 60 + second_next[0])


def _next_table(allowed: set[int], size: int) -> tuple[int, ...]:
    table = [-1] * (size + 1)  # the extra slot lets callers look up i + 1 without a bounds check
    following = -1
    for i in range(size - 1, -1, -1):
        if i in allowed:
            following = i
        table[i] = following
    return tuple(table)


def _values(text: str, part: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int]:
    """Expand a plain field: `*`, numbers or names, ranges (wrapping past `hi`), `/` steps, lists."""
    if text == "?":
        raise ValueError(f"{part} '?' is invalid: '?' is only for day-of-month and day-of-week")
    out: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = _number(step_text, part, item) if slash else 1
        if step < 1:
            raise ValueError(f"{part} '{item}' is invalid: the step must be 1 or more")
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first, last = _number(first_text, part, item, names), _number(last_text, part, item, names)
        else:
            first = _number(base, part, item, names)
            last = hi if slash else first  # "5/15" runs from 5 to the end of the range
        for value in (first, last):
            if not lo <= value <= hi:
                raise ValueError(f"{part} '{item}' is out of range {lo}-{hi}")
        span = hi - lo + 1
        out.update(lo + (first - lo + k) % span for k in range(0, (last - first) % span + 1, step))
    return out


def _number(text: str, part: str, item: str, names: dict[str, int] | None = None) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    if names and text.upper() in names:
        return names[text.upper()]
    raise ValueError(f"{part} '{item}' is invalid")


def _month_days(text: str) -> _MonthDays | None:
    if text in ("*", "?"):
        return None
    days, from_end, nearest, last_weekday = 0, [], [], False
    for item in text.split(","):
        special = item.upper()
        if special == "L":
            from_end.append(0)
        elif special.startswith("L-"):
            back = _number(item[2:], "day-of-month", item)
            if back > 30:
                raise ValueError(f"day-of-month '{item}' is out of range L-0 to L-30")
            from_end.append(back)
        elif special == "LW":
            last_weekday = True
        elif special.endswith("W"):
            day = _number(item[:-1], "day-of-month", item)
            if not 1 <= day <= 31:
                raise ValueError(f"day-of-month '{item}' is out of range 1-31")
            nearest.append(day)
        else:
            for day in _values(item, "day-of-month", 1, 31):
                days |= 1 << day
    return _MonthDays(days, tuple(from_end), tuple(nearest), last_weekday)


def _week_days(text: str, lo: int, hi: int, names: dict[str, int]) -> _WeekDays | None:
    """`lo` is the number of Sunday: 0 in cron (which also takes 7 for Sunday), 1 in Quartz."""
    if text in ("*", "?"):
        return None
    plain: set[int] = set()
    nth: list[tuple[int, int]] = []
    last: list[int] = []

    def weekday(item: str, value_text: str) -> int:
        value = _number(value_text, "day-of-week", item, names)
        if not lo <= value <= hi:
            raise ValueError(f"day-of-week '{item}' is out of range {lo}-{hi}")
        return (value - lo) % 7

    for item in text.split(","):
        if item.upper() == "L":  # alone, "last day of the week": Saturday
            plain.add(_SATURDAY)
        elif item.upper().endswith("L"):
            last.append(weekday(item, item[:-1]))
        elif "#" in item:
            day_text, _, n_text = item.partition("#")
            n = _number(n_text, "day-of-week", item)
            if not 1 <= n <= 5:
                raise ValueError(f"day-of-week '{item}' is out of range: # takes 1-5")
            nth.append((weekday(item, day_text), n))
        else:
            plain.update((value - lo) % 7 for value in _values(item, "day-of-week", lo, hi, names))
    by_first = tuple(sum(1 << day for day in range(1, 32) if (first + day - 1) % 7 in plain) for first in range(7))
    return _WeekDays(by_first, tuple(nth), tuple(last))


def _ever_fires(fields: _Fields) -> bool:
    years = fields.years or _CYCLE_YEARS
    return any(fields.month_next[m] == m and _month_mask(fields, y, m) for y in years for m in range(1, 13))


def _parse_rule(text: str) -> Schedule:
    start: _Moment | None = None
    rule_text = ""
    for line in text.split():
        upper = line.upper()
        if upper.startswith("DTSTART"):
            match = _DTSTART.fullmatch(line)
            if not match:
                raise ValueError(f"DTSTART '{line}' is invalid (want DTSTART:20260101T090000[Z])")
            start = _moment(match.group(2) + match.group(3).upper(), match.group(1), "DTSTART")
        elif upper.startswith("RRULE:"):
            rule_text = upper[len("RRULE:"):]
        elif upper.startswith("FREQ="):
            rule_text = upper
        else:
            raise ValueError(f"RFC 5545 line '{line}' is not supported (only DTSTART and RRULE)")
    parts: dict[str, str] = {}
    for piece in rule_text.split(";") if rule_text else []:
        key, eq, value = piece.partition("=")
        if not eq:
            raise ValueError(f"RFC 5545 rule part '{piece}' is invalid")
        parts[key] = value
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("an RFC 5545 rule needs FREQ=")
    if "COUNT" in parts and start is None:
        raise ValueError("RFC 5545 COUNT needs a DTSTART to count from")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("RFC 5545 COUNT and UNTIL cannot both be set")
    # UNTIL is applied per evaluation: in UTC form it depends on the zone the rule runs in.
    until_text = parts.pop("UNTIL", None)
    until = None if until_text is None else _moment(until_text, None, "UNTIL")
    start = start or _Moment(0, floating=True)
    try:
        rule = rr.rrulestr(";".join(f"{k}={v}" for k, v in parts.items()), dtstart=_naive(start.seconds))
        interval = int(parts.get("INTERVAL", "1"))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"RFC 5545 rule '{rule_text}' is invalid ({exc})") from None
    if not _dates_exist(parts, _naive(start.seconds)):
        raise ValueError("never fires")
    spec = _Rule(rule, start, until, _FIXED_PERIODS.get(freq, 0) * interval, _MONTH_PERIODS.get(freq, 0) * interval,
                 counted="COUNT" in parts)
    if _rule_next_wall(spec, start.wall(None), None) is None:
        raise ValueError("never fires")
    every_hour = freq in ("HOURLY", "MINUTELY", "SECONDLY") and "BYHOUR" not in parts
    return Schedule(text, "RFC5545", every_hour=every_hour, rule=spec)


def _dates_exist(parts: dict[str, str], start: datetime) -> bool:
    """Whether the rule's date filters ever match (Feb 30th never does).

    dateutil, asked for the next occurrence of such a rule, walks every period up to the year 9999 (seconds of
    work). The calendar repeats every 400 years, so this probe walks the years 9600-9999 instead, by year or
    month, with INTERVAL dropped: milliseconds. DAILY and finer rules take BYDAY as plain weekdays.
    """
    freq = parts["FREQ"]
    if freq in ("YEARLY", "MONTHLY"):
        probe = {k: v for k, v in parts.items() if k not in ("INTERVAL", "COUNT")}
    elif any(k in parts for k in _DATE_PARTS if k != "WKST"):
        probe = {k: v for k, v in parts.items() if k in _DATE_PARTS}
        if "BYDAY" in probe:
            probe["BYDAY"] = ",".join(_NTH_WEEKDAY.sub("", day) for day in probe["BYDAY"].split(","))
        probe["FREQ"] = "YEARLY"
    else:
        return True
    rule = rr.rrulestr(";".join(f"{k}={v}" for k, v in probe.items()), dtstart=start.replace(year=9600))
    return next(iter(rule), None) is not None


def _moment(text: str, tzid: str | None, part: str) -> _Moment:
    match = _RFC_TIME.fullmatch(text)
    if not match:
        raise ValueError(f"{part} '{text}' is invalid (want 20260101T090000[Z])")
    day, time_of_day, utc = match.groups()
    try:
        wall = int((datetime.strptime(day + (time_of_day or "000000"), "%Y%m%d%H%M%S") - _EPOCH).total_seconds())
    except ValueError:
        raise ValueError(f"{part} '{text}' is not a valid date and time") from None
    if utc:
        return _Moment(wall, floating=False)
    if tzid:
        zone = _zone(tzid)  # None for UTC
        offset = 0 if zone is None else int(zone.utcoffset(_naive(wall)).total_seconds())
        return _Moment(wall - offset, floating=False)
    return _Moment(wall, floating=True)


# ---------------------------------------------------------------------------------------------- firing


def next_fire_after(schedule: Schedule, after_ms: int, tz: str | None) -> int | None:
    """Epoch ms of the first fire time strictly after `after_ms` in IANA zone `tz` (None = UTC); None if none."""
    after = after_ms // 1000  # fire times are whole seconds, so "> after_ms" is "> this second"
    zone = _zone(tz)
    if zone is None:
        wall = _next_wall(schedule, after + 1, None)
        return None if wall is None else wall * 1000
    local = datetime.fromtimestamp(after, zone)
    # An every-hour schedule fires again in the second pass of a repeated hour. If `after` lies in the first
    # pass, wall times before it are still due in the second, so the search starts one DST shift earlier.
    offset = local.replace(fold=1).utcoffset() if schedule.every_hour else local.utcoffset()
    second_pass: int | None = None
    wall = _next_wall(schedule, after + int(offset.total_seconds()) + 1, zone)
    while wall is not None:
        naive = _naive(wall)
        early = int(zone.utcoffset(naive).total_seconds())  # fold=0: the offset before a change
        late = int(zone.utcoffset(naive.replace(fold=1)).total_seconds())
        instant: int | None = wall - early
        if early > late:  # the wall time happens twice (fall back)
            if schedule.every_hour and second_pass is None and wall - late > after:
                second_pass = wall - late
        elif early < late:  # the wall time does not exist (spring forward)
            instant = None if schedule.every_hour else _gap_end(zone, wall - late, wall - early, early)
        if instant is not None and instant > after:
            # Later wall times only map to later instants, so the search ends here.
            return 1000 * (instant if second_pass is None else min(instant, second_pass))
        wall = _next_wall(schedule, wall + 1, zone)
    return None if second_pass is None else second_pass * 1000


def all_next_fires(items: list[tuple[Schedule, int, str | None]]) -> list[int | None]:
    """`next_fire_after` for many (schedule, after_ms, tz) at once, e.g. for every SCHEDULED request at start-up."""
    return [next_fire_after(schedule, after_ms, tz) for schedule, after_ms, tz in items]


def _next_wall(schedule: Schedule, wall: int, zone: ZoneInfo | None) -> int | None:
    """The first wall time (naive epoch seconds) >= `wall` that the expression matches, ignoring DST."""
    if schedule.fields is not None:
        return _fields_next_wall(schedule.fields, wall)
    assert schedule.rule is not None
    return _rule_next_wall(schedule.rule, wall, zone)


def _fields_next_wall(fields: _Fields, wall: int) -> int | None:
    days, second_of_day = divmod(wall, _DAY)
    if not 0 <= days <= _LAST_ORDINAL:
        return None
    today = date.fromordinal(days + _EPOCH_ORDINAL)
    time_of_day = _time_at_or_after(fields, second_of_day)
    if time_of_day >= 0:
        day = _next_date(fields, today.year, today.month, today.day)
        if day == days:
            return days * _DAY + time_of_day
    else:
        day = _next_date(fields, today.year, today.month, today.day + 1)
    return None if day is None else day * _DAY + fields.first_time


def _time_at_or_after(fields: _Fields, second_of_day: int) -> int:
    """Second of the day of the first fire time at or after `second_of_day` on a firing day, or -1."""
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    if fields.hour_next[hour] == hour:
        if fields.minute_next[minute] == minute:
            next_second = fields.second_next[second]
            if next_second >= 0:
                return second_of_day - second + next_second
        next_minute = fields.minute_next[minute + 1]
        if next_minute >= 0:
            return hour * 3600 + next_minute * 60 + fields.second_next[0]
    next_hour = fields.hour_next[hour + 1]
    if next_hour >= 0:
        return next_hour * 3600 + fields.minute_next[0] * 60 + fields.second_next[0]
    return -1


def _next_date(fields: _Fields, year: int, month: int, day: int) -> int | None:
    """Days since the epoch of the first firing date on or after year-month-day (day may be past the month's end)."""
    years = fields.years
    while year <= date.max.year:
        if years is not None:
            i = bisect_left(years, year)
            if i == len(years):
                return None
            if years[i] != year:
                year, month, day = years[i], 1, 1
        next_month = fields.month_next[month]
        if next_month < 0:
            year, month, day = year + 1, 1, 1
            continue
        if next_month != month:
            month, day = next_month, 1
        mask = _month_mask(fields, year, month) >> day
        if mask:
            found = day + (mask & -mask).bit_length() - 1
            return date(year, month, found).toordinal() - _EPOCH_ORDINAL
        month, day = month + 1, 1
    return None


def _month_mask(fields: _Fields, year: int, month: int) -> int:
    """Bit d set when day d of the month fires (the day fields only)."""
    last = 29 if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else _MONTH_DAYS[month]
    valid = (2 << last) - 2
    dom, dow = fields.dom, fields.dow
    if dom is None and dow is None:
        return valid
    first = date(year, month, 1).toordinal() % 7  # weekday of the 1st, Sunday = 0 (day 1 of year 1 was a Monday)
    mask = 0
    if dom is not None:
        mask = dom.days
        for back in dom.from_end:
            if back < last:
                mask |= 1 << (last - back)
        for target in dom.nearest_weekday:
            if target <= last:  # "31W" does not fire in a 30-day month, like plain "31"
                mask |= 1 << _nearest_weekday(target, last, first)
        if dom.last_weekday:
            mask |= 1 << _nearest_weekday(last, last, first)
    if dow is not None:  # with both fields set (cron only), a day matching either fires
        mask |= dow.by_first[first]
        for weekday, n in dow.nth:
            day = 1 + (weekday - first) % 7 + 7 * (n - 1)
            if day <= last:
                mask |= 1 << day
        for weekday in dow.last:
            mask |= 1 << (last - (first + last - 1 - weekday) % 7)
    return mask & valid


def _nearest_weekday(day: int, last: int, first: int) -> int:
    """Quartz's `W`: the weekday nearest `day`, never crossing into another month."""
    weekday = (first + day - 1) % 7
    if weekday == _SATURDAY:
        return day + 2 if day == 1 else day - 1
    if weekday == _SUNDAY:
        return day - 2 if day == last else day + 1
    return day


def _rule_next_wall(spec: _Rule, wall: int, zone: ZoneInfo | None) -> int | None:
    start = spec.start.wall(zone)
    # dateutil walks every period from DTSTART; starting from a later period boundary gives the same occurrences
    # without walking years of them. COUNT needs the walk from DTSTART.
    anchor = start if spec.counted or wall <= start else _later_start(spec, start, wall)
    changes: dict[str, datetime] = {}
    if anchor != spec.start.seconds:
        changes["dtstart"] = _naive(anchor)
    if spec.until is not None:
        changes["until"] = _naive(spec.until.wall(zone))
    rule = spec.rule.replace(**changes) if changes else spec.rule
    hit = rule.after(_naive(wall), inc=True)
    return None if hit is None else int((hit - _EPOCH).total_seconds())


def _later_start(spec: _Rule, start: int, wall: int) -> int:
    """The last DTSTART, a whole number of periods after `start`, that is not after `wall`."""
    if spec.period:
        return start + (wall - start) // spec.period * spec.period
    first, target = _naive(start), _naive(wall)
    steps = ((target.year - first.year) * 12 + target.month - first.month) // spec.months
    for back in range(steps, 0, -1):
        months = first.month - 1 + back * spec.months
        try:
            moved = first.replace(year=first.year + months // 12, month=months % 12 + 1)
        except ValueError:  # that month lacks DTSTART's day (the 31st, Feb 29): an earlier period will do
            continue
        if moved <= target:
            return int((moved - _EPOCH).total_seconds())
    return start


# ---------------------------------------------------------------------------------------------- time zones


@lru_cache(maxsize=1024)
def _zone(name: str | None) -> ZoneInfo | None:
    """The zone, or None for UTC (no DST work needed). Unknown names are a ValueError."""
    if name is None or name in _UTC_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'") from None


def _naive(wall: int) -> datetime:
    return _EPOCH + timedelta(seconds=wall)


def _offset_at(zone: ZoneInfo, instant: int) -> int:
    return int(datetime.fromtimestamp(instant, zone).utcoffset().total_seconds())


def _gap_end(zone: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """The instant a spring-forward gap ends: the first second in (lo, hi] whose offset is no longer `before`."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi
