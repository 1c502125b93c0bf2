"""TUI at scale: 5,000 requests and 20,000 active tasks on the backend (simulated agents).

Measures, each in a fresh `python` process running the real app headless at 120x40:
  1. start-up: process start -> the requests table painted with all 5,000 rows (target <= 1 s);
  2. keystroke-to-screen for a `/` filter over the 5,000 rows, live refresh running (target p99 <= 50 ms);
  3. memory: peak RSS after visiting the requests, tasks (20,000 rows) and agents views (target <= 200 MB).
Figures are printed, not asserted.
Usage: python -m bench.tui_scale [--requests 5000] [--instances 4] [--runs 5] [--url URL (already populated)]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sing_backend.local_backend import Backend

from .api_latency import populate
from .stats import percentile, summary

CHILD = r'''
import asyncio, json, resource, sys, time
T0 = time.perf_counter()
from textual import events
from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from sing_tui.widgets.resource_table import ResourceTable

URL, MODE, N = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def until(pilot, check, timeout=60):
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out")
        await pilot.pause(0.005)

async def main():
    app = SingApp(TuiConfig(url=URL), start_view="requests")
    out = {}
    async with app.run_test(size=(120, 40)) as pilot:
        table = lambda sel: app.screen.query_one(sel, ResourceTable)
        await until(pilot, lambda: table("#requests").row_count >= N)
        await pilot.pause()  # the frame with the rows is rendered
        out["startup_s"] = time.perf_counter() - T0
        if MODE == "filter":
            # Keystroke -> screen: post the key event as the terminal driver would, and stop the clock when
            # the frame that shows the re-filtered table has been rendered (App._display), not when the
            # test harness has finished its own waiting.
            shown = []
            display = app._display
            def spy(screen, renderable):
                display(screen, renderable)
                if renderable is not None:
                    shown.append(time.perf_counter())
            app._display = spy
            filtered = []
            set_filter = ResourceTable.set_filter
            def spy_filter(self, *a, **k):
                set_filter(self, *a, **k)
                filtered.append(time.perf_counter())
            ResourceTable.set_filter = spy_filter
            await pilot.press("slash")
            await pilot.pause(0.2)
            lat = []
            async def key(name, char):
                n = len(filtered)
                t = time.perf_counter()
                app.post_message(events.Key(name, char))
                while len(filtered) == n:
                    await asyncio.sleep(0.0005)
                while not shown or shown[-1] < filtered[-1]:
                    await asyncio.sleep(0.0005)
                lat.append((shown[-1] - t) * 1000)
                await asyncio.sleep(0.02)  # typing speed: 50 keys a second
            for word in ["svc-0", "svc-01", "svc-012", "!svc-012", "1.3", "owner", "^svc-04", "worker|active"] * 6:
                for ch in word:
                    await key(ch if ch.isalnum() else {"-": "minus", "!": "exclamation_mark", ".": "full_stop",
                              "^": "circumflex_accent", "|": "vertical_line"}[ch], ch)
                for _ in word:
                    await key("backspace", None)
            out["filter_ms"] = lat
        if MODE == "memory":
            await pilot.press("3")
            await until(pilot, lambda: table("#tasks").row_count >= N * 4 * 0.99)
            await pilot.pause()
            await pilot.press("4")
            await until(pilot, lambda: table("#agents").row_count > 0)
            await pilot.pause(2.5)  # a refresh of the agents view (it reads every active task)
            out["tasks_rows"] = table("#agents").row_count
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))

asyncio.run(main())
'''


def child(url: str, mode: str, requests: int) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, url, mode, str(requests)], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", default=None, help="a backend already holding the requests (skips populating)")
    args = parser.parse_args()
    if args.url:
        measure(args.url, args)
        return
    env = {"SING_SIMULATED_AGENTS": "true", "SING_AGENTS__COUNT": "40", "SING_AGENTS__CPUS": "1000",
           "SING_AGENTS__MEM_MB": "1000000", "SING_LIMITS__MAX_INSTANCES": "1000"}
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp) / "data", env=env).start()
        try:
            t0 = time.perf_counter()
            populate(backend, args.requests, args.instances)
            print(f"populated {args.requests:,} requests x {args.instances} = "
                  f"{args.requests * args.instances:,} active tasks in {time.perf_counter() - t0:.0f} s")
            measure(backend.url, args)
        finally:
            backend.close()


def measure(url: str, args: argparse.Namespace) -> None:
    startup = [child(url, "startup", args.requests)["startup_s"] for _ in range(args.runs)]
    print(f"1. start-up to the requests table painted ({args.requests:,} rows), {args.runs} runs: "
          f"median {statistics.median(startup):.2f} s, max {max(startup):.2f} s "
          f"(process start included; target <= 1 s)")

    lat = child(url, "filter", args.requests)["filter_ms"]
    print(f"2. filter keystroke -> screen over {args.requests:,} rows, live refresh on: {summary(lat)}; "
          f"max {max(lat):.1f} ms (target p99 <= 50 ms: {'met' if percentile(lat, 99) <= 50 else 'NOT met'})")

    mem = child(url, "memory", args.requests)
    print(f"3. peak RSS after requests, tasks ({args.requests * args.instances:,} rows) and agents views: "
          f"{mem['maxrss_mb']:.0f} MB (target <= 200 MB)")


if __name__ == "__main__":
    main()
