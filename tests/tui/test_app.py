"""App behaviour that needs no real backend: keymap, palette, help, sort, command mode, NO_COLOR."""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import httpx
import pytest
from textual.command import CommandPalette

from sing_tui.app import SingApp
from sing_tui.client import SingClient
from sing_tui.config import TuiConfig
from sing_tui.screens.form import FormScreen
from sing_tui.screens.help import HelpScreen
from sing_tui.screens.requests import RequestsScreen
from sing_tui.widgets.resource_table import ResourceTable

from .conftest import fill_and_submit, screen_text, top_right, until
from .fake_api import FAKE_URL, FakeSingApi

ALL = len(FakeSingApi().routes["/api/requests"])  # how many requests the fixture has


def fake_app(start_view: str = "requests", **config: object) -> SingApp:
    fake = FakeSingApi()
    return SingApp(TuiConfig(url=FAKE_URL, **config), client=fake.client(), start_view=start_view,  # type: ignore[arg-type]
                   clock=fake.clock)


def requests_table(app: SingApp) -> ResourceTable:
    return app.screen.query_one("#requests", ResourceTable)


async def test_any_binding_can_be_rebound_from_the_config() -> None:
    app = fake_app(keymap={"request.scale": "S", "app.help": "f1"})
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
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
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        await pilot.press("colon", *"requests type=on_demand", "enter")
        await until(pilot, lambda: requests_table(app).row_count == 2, what="the query")
        assert "type=on_demand" in screen_text(pilot)
        assert set(requests_table(app).keys) == {"demo-job", "nightly-report"}
        await pilot.press("escape")
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the query cleared")
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
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        requests_table(app).move_to("demo-worker")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the palette")
        await pilot.press(*"scale")
        await until(pilot, lambda: "Scale: demo-worker" in screen_text(pilot), what="the row's action")


async def test_read_only_palette_has_no_actions() -> None:
    app = fake_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
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
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        # What the user sees: with NO_COLOR the screen is in shades of grey only.
        assert (saturated_colours(app.export_screenshot()) == set()) is no_color


async def test_sandbox_browser_opens_a_file_in_the_log_view() -> None:
    from sing_tui.screens.logs import LogScreen
    from sing_tui.screens.sandbox import SandboxScreen
    from sing_tui.screens.task import TaskScreen
    from sing_tui.widgets.log_view import LogView

    fake = FakeSingApi()
    task_id = next(p.split("/")[0] for p, text in sorted(fake.files.items()) if "working on" in text)
    host = fake.routes[f"/api/tasks/task/{task_id}"]["taskId"]["host"]
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: host in screen_text(pilot), what="the task")
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
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
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


def failed_task(fake: FakeSingApi) -> str:
    return next(r["taskId"]["id"] for r in fake.routes["/api/history/tasks"] if r["lastTaskStatus"] == "TASK_FAILED")


async def test_next_run_counts_down_in_the_table_and_the_request_view() -> None:
    from sing_tui.screens.request import RequestScreen

    fake = FakeSingApi()
    cron = fake.routes["/api/requests/request/demo-cron"]
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=fake.client(), start_view="requests",
                  clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        secs = (cron["nextRunAt"] - fake.now_ms) // 1000
        assert requests_table(app).row("demo-cron")[4] == f"in {secs}s" and "NEXT RUN" in screen_text(pilot)
        fake.now_ms += 10_000  # the list does not change, the countdown does
        await until(pilot, lambda: requests_table(app).row("demo-cron")[4] == f"in {secs - 10}s", what="countdown")
        requests_table(app).move_to("demo-cron")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RequestScreen), what="the request")
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cron["nextRunAt"] / 1000))
        await until(pilot, lambda: f"next run {at} (in {secs - 10}s)" in screen_text(pilot), what="the next run")
        fake.now_ms += 3_000
        await until(pilot, lambda: f"(in {secs - 13}s)" in screen_text(pilot), what="the summary counting down")


async def test_archived_logs_listed_opened_and_saved(tmp_path: Path) -> None:
    from sing_tui.screens.logs import LogScreen
    from sing_tui.screens.task import TaskScreen
    from sing_tui.widgets.log_view import LogView

    fake = FakeSingApi()
    task_id = failed_task(fake)
    keys = [e["key"] for e in fake.routes[f"/api/logs/task/{task_id}"]]
    stdout = next(k for k in keys if "/stdout-" in k)
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: "Archived logs  2 files" in screen_text(pilot), what="the archive in the overview")
        await pilot.press("a")
        archived = lambda: app.screen.query_one("#archive", ResourceTable)  # noqa: E731
        await until(pilot, lambda: set(archived().keys) == set(keys), what="the archived files")
        assert "stdout-00001" in screen_text(pilot) and "stderr-00001" in screen_text(pilot)
        archived().move_to(stdout)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: "starting the report" in app.screen.query_one(LogView).lines, what="its lines")
        assert "ARCHIVED" in screen_text(pilot) and "archived stdout-00001" in screen_text(pilot)
        assert "GET /api/logs/download" in fake.calls
        await pilot.press("ctrl+s")  # save: decompressed
        target = tmp_path / "report.log"
        await fill_and_submit(pilot, "#field-path", str(target))
        await until(pilot, lambda: target.exists(), what="the saved file")
        assert target.read_text() == fake.archives[stdout]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen), what="the task again")
        await pilot.press("ctrl+s")  # from the table: the file as stored
        gz = tmp_path / "report.log.gz"
        await fill_and_submit(pilot, "#field-path", str(gz))
        await until(pilot, lambda: gz.exists() and gz.stat().st_size > 0, what="the saved gzip")
        assert gzip.decompress(gz.read_bytes()).decode() == fake.archives[stdout]


async def test_a_task_whose_sandbox_is_gone_shows_its_archived_log() -> None:
    from sing_tui.screens.logs import LogScreen
    from sing_tui.screens.task import TaskScreen
    from sing_tui.widgets.log_view import LogView

    fake = FakeSingApi()
    task_id = failed_task(fake)
    for name in ("stdout.log", "stderr.log"):
        del fake.files[f"{task_id}/{name}"]  # the sandbox was cleaned up
    app = SingApp(TuiConfig(url=FAKE_URL, log_poll_seconds=0.05), client=fake.client(), start_view="requests",
                  clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: "FAILED" in screen_text(pilot), what="the task")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        log = app.screen.query_one(LogView)
        await until(pilot, lambda: "disk full" in log.lines, what="the archived stderr")
        text = screen_text(pilot)
        assert "the sandbox is gone; its archived stderr (1 file)" in text and "ARCHIVED" in text
        reads = fake.calls.count(f"GET /api/sandbox/{task_id}/read")
        await pilot.pause(0.3)
        assert fake.calls.count(f"GET /api/sandbox/{task_id}/read") == reads  # no more polling


async def test_dashboard_keeps_going_while_the_history_is_away() -> None:
    fake = FakeSingApi()
    handle = fake.handle
    away = {"on": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        if away["on"] and request.url.path.startswith("/api/history/"):
            return httpx.Response(503, json={"code": 503, "message": "the history database is unavailable"})
        return handle(request)
    client = SingClient(FAKE_URL, transport=httpx.MockTransport(flaky))
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=client, start_view="dashboard",
                  clock=fake.clock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        failed = failed_task(fake)
        failures = lambda: app.screen.query_one("#failures", ResourceTable)  # noqa: E731
        await until(pilot, lambda: failures().keys == [failed], what="the failed task")
        assert "Recent failures (failed, lost or errored tasks)" in screen_text(pilot)
        away["on"] = True
        await until(pilot, lambda: "not updated: the history database is unavailable" in screen_text(pilot),
                    what="the note")
        assert failures().keys == [failed] and "● live" in screen_text(pilot)  # the last failures stay
        assert "The backend refused" not in screen_text(pilot)
        away["on"] = False
        await until(pilot, lambda: "(failed, lost or errored tasks)" in screen_text(pilot), what="recovered")


async def test_the_stale_banner_gives_the_time_of_the_screens_own_data() -> None:
    """Another screen polled later than the one shown: the banner must not date this one's data by it."""
    import time as _time

    fake = FakeSingApi()
    handle = fake.handle
    now = {"t": fake.clock()}
    down = {"on": False}

    def maybe_down(request: httpx.Request) -> httpx.Response:
        if down["on"]:
            raise httpx.ConnectError("connection refused", request=request)
        return handle(request)
    client = SingClient(FAKE_URL, transport=httpx.MockTransport(maybe_down))
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=client, start_view="dashboard",
                  clock=lambda: now["t"])
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.query_one("#failures", ResourceTable).keys, what="the dashboard")
        dashboard_at = _time.strftime("%H:%M:%S", _time.localtime(now["t"]))
        await pilot.press("3")
        now["t"] += 3600  # the tasks view polls an hour later
        await until(pilot, lambda: app.connection.last_ok_at == now["t"], what="the tasks view's poll")
        down["on"] = True
        await pilot.press("1")
        await until(pilot, lambda: "STALE" in screen_text(pilot), what="the dashboard, stale")
        text = " ".join(screen_text(pilot).split())
        assert f"the data shown is stale, from {dashboard_at}" in text, text[:400]


async def test_every_screen_says_when_the_backend_has_lost_zookeeper() -> None:
    """The backend reaches the TUI but not ZooKeeper (so no leader either): each screen says so at the
    top and what it means, until it is over."""
    fake = FakeSingApi()
    handle = fake.handle
    away = {"on": False}

    def zookeeper_away(request: httpx.Request) -> httpx.Response:
        if away["on"] and request.url.path == "/api/state":
            fake.calls.append("GET /api/state")
            state = dict(fake.routes["/api/state"])
            state["zookeeperConnected"] = False
            state["hostStates"] = [{**state["hostStates"][0], "master": False, "mesosConnected": False}]
            return httpx.Response(200, json=state, headers={"X-Sing-Stale": "true"})
        return handle(request)
    client = SingClient(FAKE_URL, transport=httpx.MockTransport(zookeeper_away))
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=0.2), client=client, start_view="requests",
                  clock=fake.clock)
    async with app.run_test(size=(110, 24), notifications=True) as pilot:
        await until(pilot, lambda: fake.calls.count("GET /api/state") >= 2, what="the backend asked twice")
        assert top_right(app).endswith("● live") and "DOWN" not in top_right(app)
        away["on"] = True
        await until(pilot, lambda: "ZOOKEEPER DOWN" in top_right(app) and "NO LEADER" in top_right(app),
                    what="the badges on the requests screen")
        # What it means, in the banner (drawn in a frame after the top bar's badges).
        await until(pilot, lambda: "this backend cannot reach ZooKeeper" in screen_text(pilot), what="the banner")
        await pilot.press("1")
        await until(pilot, lambda: "ZOOKEEPER DISCONNECTED" in screen_text(pilot), what="the dashboard's line")
        assert "ZOOKEEPER DOWN" in top_right(app)
        # The dashboard reads /api/state anyway: the app does not ask a second time.
        before = fake.calls.count("GET /api/state"), fake.calls.count("GET /api/tasks/scheduled")
        await pilot.pause(1.0)
        after = fake.calls.count("GET /api/state"), fake.calls.count("GET /api/tasks/scheduled")
        polls = after[1] - before[1]
        assert polls >= 2 and abs((after[0] - before[0]) - polls) <= 1
        away["on"] = False
        await until(pilot, lambda: top_right(app).endswith("● live") and "DOWN" not in top_right(app)
                    and "NO LEADER" not in top_right(app), what="the badges gone, the backend live")
        await until(pilot, lambda: "cannot reach ZooKeeper" not in screen_text(pilot), what="the banner gone")


async def test_a_write_queued_by_a_standby_closes_the_form_saying_so() -> None:
    """A standby with no leader queues a write and answers 202: the form closes (sending it again would
    apply it twice) and the notice says it is queued, not done and not failed."""
    fake = FakeSingApi()
    writes: list[str] = []

    def standby_without_leader(request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            writes.append(f"{request.method} {request.url.path}")
            return httpx.Response(202, json={"code": 202, "queuedWrite": "w-0000000042",
                                             "message": "queued for the leader as w-0000000042"})
        return fake.handle(request)
    client = SingClient(FAKE_URL, transport=httpx.MockTransport(standby_without_leader))
    app = SingApp(TuiConfig(url=FAKE_URL), client=client, start_view="requests", clock=fake.clock)
    async with app.run_test(size=(110, 24), notifications=True) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        requests_table(app).move_to("demo-worker")
        await pilot.press("s")
        assert isinstance(app.screen, FormScreen)
        await fill_and_submit(pilot, "#field-instances", "3")
        await pilot.press("enter")  # past the message box: submitted
        await until(pilot, lambda: not isinstance(app.screen, FormScreen), what="the form closed")
        await until(pilot, lambda: "queued for the leader" in screen_text(pilot), what="the queued notice")
        assert writes == ["PUT /api/requests/request/demo-worker/scale"]


async def test_a_view_key_goes_back_to_that_views_top_from_what_was_opened_on_it() -> None:
    from sing_tui.screens.dashboard import DashboardScreen
    from sing_tui.screens.task import TaskScreen

    fake = FakeSingApi()
    task_id = next(p.split("/")[0] for p, text in sorted(fake.files.items()) if "working on" in text)
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="dashboard", clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: isinstance(app.screen, TaskScreen), what="the task, opened on the dashboard")
        await pilot.press("1")  # the view shown: back to its top
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
        app.push_screen(TaskScreen(task_id))
        await until(pilot, lambda: isinstance(app.screen, TaskScreen), what="the task again")
        await pilot.press("2", "1")  # another view and back: the dashboard, not what was opened on it
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard again")
        assert len(app.screen_stack) == 1


@pytest.mark.parametrize(("key", "typed", "label"), [("colon", "tas", ":"), ("slash", "demo", "/")])
async def test_what_is_typed_at_the_prompt_is_on_screen_above_the_footer(key: str, typed: str, label: str) -> None:
    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press(key, *typed)
        lines = screen_text(pilot).splitlines()
        assert lines[-2].startswith(f" {label}{typed}"), lines[-3:]
        assert "esc" in lines[-1]  # the footer, still there below it
        await pilot.press("escape")
        assert typed not in screen_text(pilot).splitlines()[-2]


async def test_dashboard_logs_are_of_the_focused_failures_table_only() -> None:
    from sing_tui.screens.dashboard import DashboardScreen
    from sing_tui.screens.logs import LogScreen

    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="dashboard", clock=fake.clock)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        pending = app.screen.query_one("#pending", ResourceTable)
        failures = app.screen.query_one("#failures", ResourceTable)
        await until(pilot, lambda: pending.cursor_key and failures.cursor_key, what="both tables filled")
        pending.focus()
        await pilot.press("l")
        await until(pilot, lambda: "has not run yet" in screen_text(pilot), what="the warning")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("tab", "l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the failed task's logs")
        assert app.screen.task_ids == [failures.cursor_key]


async def test_a_command_pasted_in_one_burst_goes_to_the_prompt() -> None:
    # Keys that arrive together (a paste, fast typing) are handled before the next turn of the loop: were
    # the prompt focused only then, `request` would reach the screen's bindings, and its `q` quit.
    from textual import events

    from sing_tui.screens.request import RequestScreen

    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="dashboard", clock=fake.clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for ch in ":request demo-web":
            app.post_message(events.Key({":": "colon", " ": "space", "-": "minus"}.get(ch, ch), ch))
        app.post_message(events.Key("enter", "\r"))
        await until(pilot, lambda: isinstance(app.screen, RequestScreen), what="the request opened")
        await until(pilot, lambda: "demo-web" in screen_text(pilot), what="the request shown")
        assert app.is_running


def log_status(app: SingApp) -> str:
    """The log view's status line ("" until the view is there)."""
    status = app.screen.query("#log-status")
    return str(status.first().render()).strip() if status else ""


async def test_the_logs_of_a_task_that_does_not_exist_say_so_and_are_no_longer_read() -> None:
    from sing_tui.screens.logs import LogScreen

    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL, log_poll_seconds=0.05), client=fake.client(), start_view="requests",
                  clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("colon", *"logs nosuch", "enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: log_status(app).startswith("■ NO SUCH TASK"), what="no such task")
        assert "there is no task nosuch" in screen_text(pilot) and "FOLLOW" not in log_status(app)
        reads = fake.calls.count("GET /api/sandbox/nosuch/read")
        await pilot.pause(1.5)  # longer than the 1 s between reads that fail: none more
        assert fake.calls.count("GET /api/sandbox/nosuch/read") == reads


async def test_an_empty_log_shows_its_status_at_once() -> None:
    from sing_tui.screens.logs import LogScreen

    fake = FakeSingApi()
    empty = next(p.split("/")[0] for p, text in sorted(fake.files.items()) if p.endswith("/stdout.log") and not text
                 and p.startswith("demo-web-"))
    app = SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=60), client=fake.client(), start_view="requests",
                  clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(LogScreen.for_task_ids([empty]))
        await until(pilot, lambda: log_status(app) == "● FOLLOW · 0 lines · stdout", timeout=3,
                    what="the status of an empty log")


async def test_the_log_status_counts_the_tasks_lines_not_the_views_markers() -> None:
    from sing_tui.screens.logs import LogScreen

    fake = FakeSingApi()
    finished = next(r["taskId"]["id"] for r in fake.routes["/api/history/tasks"]
                    if r["lastTaskStatus"] == "TASK_FINISHED")
    assert fake.files[f"{finished}/stdout.log"].count("\n") == 1
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(LogScreen.for_task_ids([finished]))
        await until(pilot, lambda: "ENDED" in log_status(app), what="the finished task's log, whole")
        assert "end of its stdout" in screen_text(pilot)  # a marker line: not one of the task's lines
        assert log_status(app) == "■ ENDED · task finished · 1 line · stdout"


def tasks_table(app: SingApp) -> ResourceTable:
    return app.screen.query_one("#tasks", ResourceTable)


def age_of(app: SingApp, key: str) -> str:
    row = tasks_table(app).row(key)
    return row[-1] if row else ""


async def first_task_and_its_age(pilot, fake: FakeSingApi) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    await until(pilot, lambda: tasks_table(pilot.app).row_count == 4, what="the tasks")
    key = tasks_table(pilot.app).keys[0]
    started = next(s["taskId"]["startedAt"] for s in fake.routes["/api/tasks/active/states"]
                   if s["taskId"]["id"] == key)
    age = (fake.now_ms - started) // 1000
    assert age < 55 and age_of(pilot.app, key) == f"{age}s"
    return key, age


def tasks_view_without_polls(fake: FakeSingApi) -> SingApp:
    """No poll during the test: what moves the ages is not a new list (the list does not change anyway)."""
    return SingApp(TuiConfig(url=FAKE_URL, refresh_seconds=60), client=fake.client(), start_view="tasks",
                   clock=fake.clock)


async def test_task_ages_move_on_between_polls() -> None:
    fake = FakeSingApi()
    app = tasks_view_without_polls(fake)
    async with app.run_test(size=(100, 24)) as pilot:
        key, age = await first_task_and_its_age(pilot, fake)
        fake.now_ms += 5_000
        await until(pilot, lambda: age_of(app, key) == f"{age + 5}s", timeout=3, what="the age moving on")
        await until(pilot, lambda: f"RUNNING {age + 5}s" in screen_text(pilot), timeout=3, what="it on screen")
        fake.now_ms += 10_000
        await until(pilot, lambda: age_of(app, key) == "1m", timeout=3, what="a minute")


async def test_ctrl_r_redraws_the_task_ages_at_once() -> None:
    fake = FakeSingApi()
    app = tasks_view_without_polls(fake)
    async with app.run_test(size=(100, 24)) as pilot:
        key, age = await first_task_and_its_age(pilot, fake)
        fake.now_ms += 3_000
        await pilot.press("ctrl+r")
        assert age_of(app, key) == f"{age + 3}s"


async def test_task_ids_use_the_room_there_is() -> None:
    fake = FakeSingApi()
    longest = max((s["taskId"]["id"] for s in fake.routes["/api/tasks/active/states"]), key=len)
    assert len(longest) > 44
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="tasks", clock=fake.clock)
    async with app.run_test(size=(150, 24)) as pilot:
        await until(pilot, lambda: tasks_table(app).row_count == 4, what="the tasks")
        await until(pilot, lambda: f"{longest} " in screen_text(pilot), what="the whole task id")
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: longest not in screen_text(pilot) and longest[:30] in screen_text(pilot),
                    what="the task id cut at 80 columns")


async def test_agents_columns_fit_their_content_at_a_wide_terminal() -> None:
    app = fake_app("agents")
    async with app.run_test(size=(150, 24)) as pilot:
        agents = lambda: app.screen.query_one("#agents", ResourceTable)  # noqa: E731
        await until(pilot, lambda: agents().row_count == 3, what="the agents")
        await until(pilot, lambda: "agent-1" in screen_text(pilot), what="the agents on screen")
        lines = screen_text(pilot).splitlines()
        header = next(line for line in lines if "MEM MB" in line)
        assert re.search(r"MEM MB +TASKS$", header.rstrip()) and len(header.rstrip()) < 80, header
        row = next(line for line in lines if "agent-1" in line)
        assert len(row.rstrip()) == len(header.rstrip()), row  # TASKS right-aligned under its header


async def test_a_filter_that_hides_every_task_says_so() -> None:
    app = fake_app("tasks")
    async with app.run_test(size=(100, 24)) as pilot:
        await until(pilot, lambda: tasks_table(app).row_count == 4, what="the tasks")
        await pilot.press("slash", *"nothing-like-this", "enter")
        await until(pilot, lambda: tasks_table(app).row_count == 0, what="every task hidden")
        await until(pilot, lambda: "no task matches the filter" in screen_text(pilot), what="the empty table's text")
        assert "no active tasks" not in screen_text(pilot)


async def test_a_paused_requests_footer_offers_unpause() -> None:
    from sing_tui.screens.request import RequestScreen

    fake = FakeSingApi()
    fake.routes["/api/requests/request/demo-worker"]["state"] = "PAUSED"
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(RequestScreen("demo-worker"))
        await until(pilot, lambda: "PAUSED" in screen_text(pilot), what="the paused request")
        await until(pilot, lambda: "z Unpause" in screen_text(pilot).splitlines()[-1], what="Unpause in the footer")
        await pilot.press("escape")
        app.push_screen(RequestScreen("demo-web"))  # another, active: its own label
        await until(pilot, lambda: "ACTIVE" in screen_text(pilot), what="the active request")
        await pilot.pause()
        assert "z Pause" in screen_text(pilot).splitlines()[-1]


async def test_the_requests_lists_footer_follows_the_paused_state_of_its_targets() -> None:
    fake = FakeSingApi()
    [paused] = [p for p in fake.routes["/api/requests"] if p["request"]["id"] == "demo-worker"]
    paused["state"] = "PAUSED"
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        table = app.screen.query_one("#requests", ResourceTable)
        await until(pilot, lambda: table.row_count == ALL, what="the requests")
        footer = lambda: screen_text(pilot).splitlines()[-1]  # noqa: E731
        assert table.cursor_key != "demo-worker"
        await until(pilot, lambda: "z Pause" in footer(), what="the footer drawn, saying Pause")
        table.move_to("demo-worker")
        await until(pilot, lambda: "z Unpause" in footer(), what="Unpause on the paused row")
        await pilot.press("space")  # marked: the marks are the targets now
        await until(pilot, lambda: table.marks == {"demo-worker"}, what="the paused request marked")
        table.move_to("demo-web")
        await until(pilot, lambda: table.cursor_key == "demo-web", what="the cursor on an active request")
        await pilot.pause()
        assert "z Unpause" in footer()
        await pilot.press("space")  # a paused and an active one marked: z pauses
        await until(pilot, lambda: "z Pause" in footer(), what="Pause once an active request is marked too")


async def test_all_logs_of_a_request_with_one_instance_says_one_instance() -> None:
    from sing_tui.screens.logs import LogScreen
    from sing_tui.screens.request import RequestScreen

    fake = FakeSingApi()
    ids = fake.routes["/api/requests/request/demo-worker"]["taskIds"]
    ids["healthy"] = ids["healthy"][:1]
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(RequestScreen("demo-worker"))
        await until(pilot, lambda: "ACTIVE" in screen_text(pilot), what="the request")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: "stdout of demo-worker: its 1 instance" in screen_text(pilot), what="the title")
        assert "instances" not in screen_text(pilot)


async def test_a_misspelt_binding_id_in_the_keymap_is_reported_at_start() -> None:
    app = fake_app(keymap={"request.scael": "S", "app.help": "f1"})
    async with app.run_test(size=(160, 30), notifications=True) as pilot:
        await until(pilot, lambda: requests_table(app).row_count == ALL, what="the requests")
        messages = [n.message for n in app._notifications]
        assert len(messages) == 1 and "\n" not in messages[0], messages
        assert "unknown binding id 'request.scael' (did you mean 'request.scale'?)" in messages[0]
        assert "app.help" not in messages[0]
        await until(pilot, lambda: "request.scael" in screen_text(pilot), what="the notice on screen")


async def test_a_failed_tasks_header_says_it_ended_not_that_it_finished() -> None:
    from sing_tui.screens.task import TaskScreen

    fake = FakeSingApi()
    app = SingApp(TuiConfig(url=FAKE_URL), client=fake.client(), start_view="requests", clock=fake.clock)
    async with app.run_test(size=(100, 24)) as pilot:
        app.push_screen(TaskScreen(failed_task(fake)))
        summary = lambda: str(app.screen.query_one("#summary").render())  # noqa: E731
        await until(pilot, lambda: isinstance(app.screen, TaskScreen) and app.screen.history, what="the task")
        await until(pilot, lambda: summary().startswith("FAILED"), what="the failed task")
        assert "finished" not in summary() and summary().endswith(" · ended"), summary()
