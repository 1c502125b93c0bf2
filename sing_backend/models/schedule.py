"""Validation of a SCHEDULED request's schedule and time zone, with the parser that later fires it."""

from __future__ import annotations

import zoneinfo

from ..scheduler.schedules import next_fire_after, parse_schedule

# A day's margin covers every UTC offset, so a schedule with a fire time still ahead in some zone is not refused.
_ZONE_MARGIN_MS = 86_400_000


def validate_schedule(expr: str, schedule_type: str | None, field: str = "schedule", *,
                      now_ms: int | None = None) -> None:
    """Raise ValueError("<field>: <what is wrong>") unless `expr` parses and can fire at all (Feb 30th cannot).

    Given `now_ms` (a request arriving through the API), a schedule whose fire times are all in the past is refused
    too. The request model leaves it out because it also loads stored requests, and a stored request whose schedule
    has run its course must still load.
    """
    schedule = parse_schedule(expr, schedule_type, field=field)
    if now_ms is not None and next_fire_after(schedule, now_ms - _ZONE_MARGIN_MS, None) is None:
        raise ValueError(f"{field}: never fires (its last fire time has passed)")


def validate_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"scheduleTimeZone: unknown time zone '{name}'") from None
