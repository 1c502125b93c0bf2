from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Label

from sing_backend.local_backend import Backend
from sing_tui.widgets.top_bar import TopBar


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own ~/.config/sing/tui.toml or SING_URL."""
    monkeypatch.delenv("SING_TUI_CONFIG", raising=False)
    monkeypatch.delenv("SING_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture(autouse=True)
def local_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local times (a scheduled request's next run) in UTC whatever the machine's zone, so snapshots
    and assertions read the same everywhere; a test may set another zone with `set_time_zone`."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def set_time_zone(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = Backend(tmp_path_factory.mktemp("sing")).start()
    try:
        yield b
    finally:
        b.close()


async def until(pilot: Pilot, check: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Let the app run until `check()` is truthy, failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (AssertionError, LookupError, AttributeError) as exc:  # widget not there yet
            last = exc
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" ({last})" if last else ""))


def screen_text(pilot: Pilot) -> str:
    """What the user sees: the whole screen as plain text."""
    app = pilot.app
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def fill_and_submit(pilot: Pilot, selector: str, value: str) -> None:
    """Type `value` into a form's box at once (pressing a long path key by key is slow) and submit."""
    from textual.widgets import Input

    from sing_tui.screens.form import FormScreen
    await until(pilot, lambda: isinstance(pilot.app.screen, FormScreen), what="the form")
    box = pilot.app.screen.query_one(selector, Input)
    box.value = value
    box.focus()
    await pilot.press("enter")


def top_right(app: App[None]) -> str:
    """The top bar's right-hand side on the screen shown: badges, backend, live or stale."""
    return str(app.screen.query_one(TopBar).query_one("#conn", Label).content).strip()
