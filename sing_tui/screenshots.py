"""Regenerate screenshots/*.svg of every screen from the real app on a demo backend (`make screenshots`).

Usage: python -m sing_tui.screenshots OUTDIR [--url URL]
Without --url it starts a local-mode backend in a temporary directory (on a free port, so a demo
left running elsewhere is never touched), creates the demo's sample requests (a scheduled one among
them) plus one that cannot be placed and one job that fails, and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from .app import SingApp
from .config import TuiConfig
from .widgets.log_view import LogView
from .widgets.resource_table import ResourceTable

SIZE = (80, 24)


def seed_extras(url: str) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=10) as c:
        c.post("/api/requests", json={"id": "big-batch", "requestType": "WORKER", "instances": 2,
                                      "owners": ["data@example.com"]}).raise_for_status()
        c.post("/api/deploys", json={"deploy": {"requestId": "big-batch", "id": "v3", "command": "sleep 1000",
                                                "resources": {"cpus": 0.5, "memoryMb": 9000}}}).raise_for_status()
        c.post("/api/requests", json={"id": "nightly-report", "requestType": "ON_DEMAND",
                                      "owners": ["ops@example.com"]}).raise_for_status()
        c.post("/api/deploys", json={"deploy": {
            "requestId": "nightly-report", "id": "v2",
            "command": "echo starting the report; echo disk full >&2; exit 3",
            "resources": {"cpus": 0.1, "memoryMb": 32}}}).raise_for_status()
        c.put("/api/requests/request/demo-worker/scale", json={"instances": 2}).raise_for_status()
        time.sleep(1.0)
        c.post("/api/requests/request/nightly-report/run", json={}).raise_for_status()


async def _ready(pilot: Pilot, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = pilot.app.screen
        tables = [t for t in screen.query(ResourceTable) if t.display]
        logs = list(screen.query(LogView))
        if all(t.loaded for t in tables) and all(log.line_count for log in logs):
            break
        await pilot.pause(0.1)
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.3)


Shot = tuple[str, Callable[[Pilot], Awaitable[None]]]


def keys(*presses: str) -> Callable[[Pilot], Awaitable[None]]:
    """Press keys one by one, waiting for each screen's data; ":command" types a command."""
    async def run(pilot: Pilot) -> None:
        for key in presses:
            if key.startswith(":"):
                await pilot.press("colon", *key[1:], "enter")
            else:
                await pilot.press(key)
            await pilot.pause(0.3)
            await _ready(pilot)
    return run


SHOTS: list[Shot] = [
    ("dashboard", keys()),
    ("requests", keys("2")),
    ("request", keys("enter")),  # demo-web
    ("scale-form", keys("s")),
    ("task", keys("escape", "enter")),
    ("logs", keys("escape", "escape", "down", "enter", "enter", "l")),  # demo-worker's stdout
    ("logs-all-instances", keys("escape", "escape", "escape", "a")),  # both demo-worker instances
    ("request-scheduled", keys("escape", ":request demo-cron")),  # its next run
    ("task-archived-logs", keys("escape", "1", "tab", "enter", "a")),  # the failed job's archived logs
    ("logs-archived", keys("enter")),
    ("tasks", keys("escape", "escape", "3")),
    ("agents", keys("4")),
    ("help", keys("question_mark")),
]


async def capture(url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    app = SingApp(TuiConfig(url=url))
    saved: list[Path] = []
    async with app.run_test(size=SIZE, notifications=False) as pilot:
        await _ready(pilot)
        for name, run in SHOTS:
            await run(pilot)
            saved.append(Path(app.save_screenshot(f"{name}.svg", path=str(out))))
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", default=None, help="use this running backend instead of starting one")
    args = parser.parse_args()
    if args.url:
        paths = asyncio.run(capture(args.url, args.out))
    else:
        from sing_backend.demo import seed
        from sing_backend.local_backend import Backend, wait_for

        with tempfile.TemporaryDirectory() as tmp:
            backend = Backend(Path(tmp) / "data").start()
            try:
                seed(backend.url)
                seed_extras(backend.url)
                wait_for(lambda: backend.get("/api/state")["activeTasks"] >= 3, timeout=30, what="demo tasks")
                time.sleep(11)  # let the workers log a line or two and the failed job reach history
                paths = asyncio.run(capture(backend.url, args.out))
            finally:
                backend.close()
    for p in paths:
        print(p)


if __name__ == "__main__":
    main()
