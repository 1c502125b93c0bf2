"""App behaviour that needs no real backend: keymap, palette, help, sort, command mode, NO_COLOR."""

from __future__ import annotations

import re

import pytest
from textual.command import CommandPalette

from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from sing_tui.screens.form import FormScreen
from sing_tui.screens.help import HelpScreen
from sing_tui.screens.requests import RequestsScreen
from sing_tui.widgets.resource_table import ResourceTable

from .conftest import screen_text, until
from .fake_api import FAKE_URL, FakeSingApi


def fake_app(start_view: str = "requests", **config: object) -> SingApp:
    fake = FakeSingApi()
    return SingApp(TuiConfig(url=FAKE_URL, **config), client=fake.client(), start_view=start_view,  # type: ignore[arg-type]
                   clock=fake.clock)


def requests_table(app: SingApp) -> ResourceTable:
    return app.screen.query_one("#requests", ResourceTable)


async def test_any_binding_can_be_rebound_from_the_config() -> None:
    app = fake_app(keymap={"request.scale": "S", "app.help": "f1"})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        await pilot.press("s")
        assert not isinstance(app.screen, FormScreen)
        await pilot.press("S")
        assert isinstance(app.screen, FormScreen)
        await pilot.press("escape", "f1")
        assert isinstance(app.screen, HelpScreen)
        rows = {r[2]: r[0] for r in app.screen.rows}
        assert rows["request.scale"] == "S" and rows["app.help"] == "f1"


async def test_command_mode_filters_and_sort() -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        await pilot.press("colon", *"requests type=on_demand", "enter")
        await until(pilot, lambda: requests_table(app).row_count == 2, what="the query")
        assert "type=on_demand" in screen_text(pilot)
        assert set(requests_table(app).keys) == {"demo-job", "nightly-report"}
        await pilot.press("escape")
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the query cleared")
        await pilot.press("o", "o", "o")  # sort by the third column (STATE), then reverse it
        await pilot.press("O")
        assert "sorted by STATE ▼" in screen_text(pilot)
        await pilot.press("colon", *"tasks", "enter")
        await until(pilot, lambda: app.current_mode == "tasks", what="the tasks view")
        await pilot.press("colon", *"pods", "enter")
        assert isinstance(app.screen, type(app.screen))  # nothing opened; the reason is notified


async def test_palette_offers_the_selected_rows_actions() -> None:
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        requests_table(app).move_to("demo-worker")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"scale")
        await until(pilot, lambda: "Scale: demo-worker" in screen_text(pilot), what="the row's action")


async def test_read_only_palette_has_no_actions() -> None:
    app = fake_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        titles = [t for t, _, _ in screen.palette_commands()]
        assert titles and not any(t.startswith(("Scale", "Pause", "Delete", "Bounce", "Run")) for t in titles)


WINDOW_BUTTONS = {"ff5f57", "febc2e", "28c840"}  # the SVG's window decoration, not the app


def saturated_colours(svg: str) -> set[str]:
    out = set()
    for hexa in re.findall(r"#([0-9a-fA-F]{6})\b", svg):
        r, g, b = (int(hexa[i:i + 2], 16) for i in (0, 2, 4))
        if max(r, g, b) - min(r, g, b) > 48 and hexa.lower() not in WINDOW_BUTTONS:
            out.add(hexa)
    return out


@pytest.mark.parametrize("no_color", [True, False])
async def test_no_color(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        # What the user sees: with NO_COLOR the screen is in shades of grey only.
        assert (saturated_colours(app.export_screenshot()) == set()) is no_color


async def test_sandbox_browser_opens_a_file_in_the_log_view() -> None:
    from sing_tui.screens.logs import LogScreen
    from sing_tui.screens.sandbox import SandboxScreen
    from sing_tui.screens.task import TaskScreen
    from sing_tui.widgets.log_view import LogView

    fake = FakeSingApi()
    task_id = next(p.split("/")[0] for p, text in fake.files.items() if "working on" in text)
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: "127.0.0.4" in screen_text(pilot), what="the task")
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, SandboxScreen), what="the sandbox")
        files = lambda: app.screen.query_one(ResourceTable)  # noqa: E731
        await until(pilot, lambda: "stdout.log" in files().keys, what="the files")
        assert "stderr.log" in screen_text(pilot) and "app/" in screen_text(pilot)
        files().move_to("stdout.log")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the file in the log view")
        await until(pilot, lambda: app.screen.query_one(LogView).line_count > 0, what="its lines")
        assert "working on demo-worker" in screen_text(pilot)


async def test_deploy_form_checks_the_file_then_shows_the_servers_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == 5, what="the requests")
        requests_table(app).move_to("demo-worker")
        await pilot.press("n")
        assert isinstance(app.screen, FormScreen) and "New deploy of demo-worker" in screen_text(pilot)
        await pilot.press(*str(tmp_path / "missing.json"), "enter", "enter")
        await until(pilot, lambda: "does not exist" in screen_text(pilot), what="the missing file refused")
        good = tmp_path / "deploy.json"
        good.write_text('{"id": "v2", "command": "sleep 100", "resources": {"cpus": 0.1, "memoryMb": 32}}')
        box = app.screen.query_one("#field-file")
        box.value = str(good)  # type: ignore[attr-defined]
        box.focus()
        await pilot.press("enter", "enter")
        # The fake backend refuses every change: the form shows the server's own message and stays open.
        await until(pilot, lambda: "the fake API does not change anything" in screen_text(pilot),
                    what="the server's message")
        assert isinstance(app.screen, FormScreen)


async def test_refresh_pauses_while_a_modal_is_open() -> None:
    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=fake.client(), start_view="requests",
                  clock=fake.clock)
    polls = lambda: fake.calls.count("GET /api/requests")  # noqa: E731
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: polls() >= 3, what="the table refreshing on its own")
        await pilot.press("question_mark")
        before = polls()
        await pilot.pause(1.0)  # five refresh periods
        assert polls() == before
        await pilot.press("escape")
        await until(pilot, lambda: polls() > before, what="refreshing again")
