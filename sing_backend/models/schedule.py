"""Validation of a SCHEDULED request's schedule and time zone (running them comes later)."""

from __future__ import annotations

import zoneinfo

from croniter import croniter
from croniter.croniter import CroniterError

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _check_five(expr: str, field: str) -> None:
    parts = expr.split()
    for i, part in enumerate(parts):
        try:
            croniter(" ".join(p if j == i else "*" for j, p in enumerate(parts)))
        except (CroniterError, ValueError) as exc:
            raise ValueError(f"{field}: {_FIELDS[i]} '{part}' is invalid ({exc})") from None
    try:
        croniter(expr)
    except (CroniterError, ValueError) as exc:
        raise ValueError(f"{field}: {exc}") from None


def validate_schedule(expr: str, schedule_type: str | None, field: str = "schedule") -> None:
    parts = expr.split()
    if schedule_type == "RFC5545" or expr.upper().startswith(("RRULE:", "FREQ=", "DTSTART")):
        if "FREQ=" not in expr.upper():
            raise ValueError(f"{field}: an RFC 5545 rule needs FREQ=")
        return
    if len(parts) == 5 and schedule_type != "QUARTZ":
        _check_five(expr, field)
        return
    if len(parts) in (6, 7):
        # Quartz: seconds first, optional year last, '?' for "no specific value".
        seconds = parts[0]
        if not all(c.isdigit() or c in "*/,-" for c in seconds):
            raise ValueError(f"{field}: seconds '{seconds}' is invalid")
        five = [p.replace("?", "*") for p in parts[1:6]]
        if five[4] != "*" and not five[4][0].isdigit() and not five[4][:3].isalpha():
            raise ValueError(f"{field}: day-of-week '{parts[5]}' is invalid")
        # Quartz numbers weekdays 1-7 from Sunday; cron 0-6. Only the range matters for validation.
        dow = five[4]
        if dow[:1].isdigit():
            five[4] = "*"
            for piece in dow.replace("#", ",").replace("L", "").replace("-", ",").split(","):
                if piece.split("/")[0].isdigit() and not 1 <= int(piece.split("/")[0]) <= 7:
                    raise ValueError(f"{field}: day-of-week '{dow}' is out of range 1-7")
        if five[2].endswith("W") or five[2] in ("LW",):
            five[2] = "*"
        _check_five(" ".join(five), field)
        return
    raise ValueError(f"{field}: expected 5 fields (cron) or 6-7 fields (Quartz), got {len(parts)}")


def validate_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"scheduleTimeZone: unknown time zone '{name}'") from None
