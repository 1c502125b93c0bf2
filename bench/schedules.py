"""Schedule evaluation at scale: 5,000 varied SCHEDULED requests.

1. Start-up: the next fire time of every schedule (target <= 1 s in total), with croniter's get_next on the
   5-field cron ones as a same-run baseline.
2. Ticks: every simulated minute, find the schedules due at "now" and compute their next fire time
   (target p99 <= 20 ms per tick over 50 ticks).
Usage: python -m bench.schedules [--schedules 5000] [--ticks 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from sing_backend.scheduler.schedules import Schedule, all_next_fires, next_fire_after, parse_schedule

from .stats import percentile

ZONES = [None, "America/New_York", "Europe/London", "Europe/Berlin", "Asia/Tokyo", "Asia/Kolkata",
         "Australia/Sydney", "America/Los_Angeles"]
START = datetime(2026, 3, 8, 6, 40, tzinfo=ZoneInfo("UTC"))  # the ticks cross New York's spring-forward gap


def cron_expr(rng: random.Random) -> str:
    pair = f"{rng.randint(0, 29)},{rng.randint(30, 59)}"
    minute = rng.choice(["*", "*/5", "*/15", "0", str(rng.randint(0, 59)), pair])
    hour = rng.choice(["*", "*", "*/2", str(rng.randint(0, 23)), "9-17", "1-3"])
    dom = rng.choice(["*", "*", "*", "1", "15", "1,15", "*/10"])
    month = rng.choice(["*", "*", "*", "1-6", "JAN,JUL"])
    dow = rng.choice(["*", "*", "1-5", "MON", "0,6"])
    return f"{minute} {hour} {dom} {month} {dow}"


def quartz_expr(rng: random.Random) -> str:
    second = rng.choice(["0", "0", "*/10", "30"])
    minute = rng.choice(["0", "*/5", "0/30", str(rng.randint(0, 59))])
    hour = rng.choice(["*", str(rng.randint(0, 23)), "8-18", "2"])
    dom, dow = rng.choice([("?", "MON-FRI"), ("L", "?"), ("15W", "?"), ("?", "6#3"), ("?", "6L"), ("LW", "?"),
                           ("*", "?"), ("L-2", "?"), ("1,15", "?")])
    year = rng.choice(["", "", "", " 2026-2030"])
    return f"{second} {minute} {hour} {dom} * {dow}{year}"


def rule_expr(rng: random.Random) -> str:
    return rng.choice(["FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9",
                       "FREQ=HOURLY;INTERVAL=3;BYMINUTE=15", "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=18",
                       "DTSTART:20250101T090000\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
                       "FREQ=MINUTELY;INTERVAL=20"])


def varied(count: int, seed: int) -> list[tuple[str, str | None]]:
    """About 60% cron, 35% Quartz, 5% RFC 5545, each in a random zone."""
    rng = random.Random(seed)
    out: list[tuple[str, str | None]] = []
    while len(out) < count:
        pick = rng.random()
        expr = cron_expr(rng) if pick < 0.6 else quartz_expr(rng) if pick < 0.95 else rule_expr(rng)
        out.append((expr, rng.choice(ZONES)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=5000)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    exprs = varied(args.schedules, args.seed)
    now = int(START.timestamp() * 1000)

    began = time.perf_counter()
    schedules: list[tuple[Schedule, str | None]] = [(parse_schedule(e, None), tz) for e, tz in exprs]
    parse_s = time.perf_counter() - began
    began = time.perf_counter()
    nexts = all_next_fires([(s, now, tz) for s, tz in schedules])
    batch_s = time.perf_counter() - began
    print(f"{len(schedules)} schedules: parse {parse_s * 1000:7.1f} ms, next fire of all {batch_s * 1000:7.1f} ms "
          f"(target <= 1000 ms)")

    # Baseline: the same 5-field cron schedules with croniter (build + get_next, and get_next alone).
    cron = [(e, tz, s) for (e, tz), (s, _) in zip(exprs, schedules, strict=True) if len(e.split()) == 5]
    began = time.perf_counter()
    ours = [next_fire_after(s, now, tz) for _, tz, s in cron]
    ours_s = time.perf_counter() - began
    began = time.perf_counter()
    iters = [croniter(e, START.astimezone(ZoneInfo(tz or "UTC"))) for e, tz, _ in cron]
    build_s = time.perf_counter() - began
    began = time.perf_counter()
    theirs = [int(it.get_next(float) * 1000) for it in iters]
    get_s = time.perf_counter() - began
    agree = sum(a == b for a, b in zip(ours, theirs, strict=True))
    print(f"  5-field subset ({len(cron)}): ours {ours_s * 1000:7.1f} ms; croniter build {build_s * 1000:7.1f} ms "
          f"+ get_next {get_s * 1000:7.1f} ms; same answer for {agree}/{len(cron)}")

    tick_ms: list[float] = []
    fired = 0
    for _ in range(args.ticks):
        now += 60_000
        began = time.perf_counter()
        due = [i for i, at in enumerate(nexts) if at is not None and at <= now]
        for i in due:
            schedule, tz = schedules[i]
            nexts[i] = next_fire_after(schedule, now, tz)
        tick_ms.append((time.perf_counter() - began) * 1000)
        fired += len(due)
    print(f"{args.ticks} ticks of one minute over {len(schedules)} schedules ({fired / args.ticks:.0f} due per tick "
          f"on average): p50 {percentile(tick_ms, 50):6.2f} ms  p99 {percentile(tick_ms, 99):6.2f} ms  "
          f"max {max(tick_ms):6.2f} ms (target p99 <= 20 ms)")


if __name__ == "__main__":
    main()
