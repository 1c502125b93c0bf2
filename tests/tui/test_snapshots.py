"""SVG snapshots of every screen at 80x24, fed by FakeSingApi's fixed data and a fixed clock.

Update after an intended change with: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from sing_tui.app import SingApp
from sing_tui.client import SingClient
from sing_tui.config import TuiConfig
from sing_tui.widgets.log_view import LogView
from sing_tui.widgets.resource_table import ResourceTable

from .conftest import top_right, until
from .fake_api import FAKE_URL, FakeSingApi

Steps = Callable[[Pilot], Awaitable[None]]


def fake_app(start_view: str = "dashboard", **config: object) -> SingApp:
    fake = FakeSingApi()
    return SingApp(TuiConfig(url=FAKE_URL, **config), client=fake.client(), start_view=start_view,  # type: ignore[arg-type]
                   clock=fake.clock)


async def loaded(pilot: Pilot) -> None:
    """Every table on screen has its data, every log its lines; no cursor blinks."""
    def ready() -> bool:
        screen = pilot.app.screen
        tables = [t for t in screen.query(ResourceTable) if t.display]
        logs = list(screen.query(LogView))
        return all(t.loaded for t in tables) and all(log.line_count for log in logs)
    await until(pilot, ready, what="the screen's data")
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()


def steps(*keys: str) -> Steps:
    """Press keys; a key ending in "!" opens a screen: wait for it (and, with "!!", for its data)."""
    async def run(pilot: Pilot) -> None:
        await loaded(pilot)
        for key in keys:
            before = pilot.app.screen
            await pilot.press(key.rstrip("!"))
            if key.endswith("!"):
                await until(pilot, lambda b=before: pilot.app.screen is not b, what=f"the screen {key} opens")
            if key.endswith("!!"):
                await loaded(pilot)
        await loaded(pilot)
    return run


SCREENS: dict[str, tuple[str, Steps]] = {
    "dashboard": ("dashboard", steps()),
    "requests": ("requests", steps()),
    "requests_filtered_marked": ("requests", steps("slash", *"demo", "enter", "space", "space")),
    "request": ("requests", steps("enter!!")),
    "request_history": ("requests", steps("enter!!", "right_square_bracket")),
    "scale_form": ("requests", steps("enter!!", "s!!")),
    "task": ("requests", steps("down", "enter!!", "enter!!")),
    "task_timeline": ("requests", steps("down", "enter!!", "enter!!", "right_square_bracket")),
    "logs": ("requests", steps("down", "enter!!", "l!!")),
    "logs_all_instances": ("requests", steps("a!", "o")),  # demo-web writes to stderr
    "request_scheduled": ("requests", steps("down", "down", "down", "enter!!")),  # demo-cron: its next run
    "task_archived_logs": ("dashboard", steps("tab", "enter!!", "a")),  # the failed job's archived logs
    "logs_archived": ("dashboard", steps("tab", "enter!!", "a", "enter!!")),
    "tasks": ("tasks", steps()),
    "agents": ("agents", steps()),
    "help": ("requests", steps("question_mark!!")),
    "json": ("requests", steps("y!!")),
}


@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(snap_compare: Callable[..., bool], name: str) -> None:
    view, run_before = SCREENS[name]
    assert snap_compare(fake_app(view), terminal_size=(80, 24), run_before=run_before)


def test_read_only_requests(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(fake_app("requests", read_only=True), terminal_size=(80, 24), run_before=steps())


def test_requests_while_the_backend_has_lost_zookeeper(snap_compare: Callable[..., bool]) -> None:
    """The badges in the top bar and the banner saying what they mean."""
    fake = FakeSingApi()
    state = fake.routes["/api/state"]
    state["zookeeperConnected"] = False
    state["hostStates"] = [{**state["hostStates"][0], "master": False, "mesosConnected": False}]

    def stale_state(request: httpx.Request) -> httpx.Response:
        response = fake.handle(request)
        if request.url.path == "/api/state":
            response.headers["X-Sing-Stale"] = "true"
        return response
    client = SingClient(FAKE_URL, transport=httpx.MockTransport(stale_state))
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=client, start_view="requests",
                  clock=fake.clock)

    async def run_before(pilot: Pilot) -> None:
        await until(pilot, lambda: "NO LEADER" in top_right(pilot.app), what="the badges")
        await steps()(pilot)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
