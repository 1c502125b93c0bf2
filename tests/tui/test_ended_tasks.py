"""Pilot tests, against a real backend in local mode, of what the task page and the log view show of a
task that has ended: its whole log, said to have ended and no longer polled, and a sandbox line that
does not promise what will never come."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from textual.pilot import Pilot
from textual.widgets import Static

from sing_backend.local_backend import Backend, wait_for
from sing_tui.app import SingApp
from sing_tui.client import SingClient
from sing_tui.config import TuiConfig
from sing_tui.screens.logs import LogScreen
from sing_tui.screens.sandbox import SandboxScreen
from sing_tui.screens.task import TaskScreen
from sing_tui.widgets.log_view import LogView
from sing_tui.widgets.resource_table import ResourceTable

from .conftest import screen_text, until

SIZE = (80, 24)
POLL_SECONDS = 0.1


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting the sandbox reads the dashboard sends."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/read"):
            self.reads += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def app_on(backend: Backend, transport: CountingTransport) -> SingApp:
    config = TuiConfig(url=backend.url, refresh_seconds=0.3, log_poll_seconds=POLL_SECONDS)
    return SingApp(config, client=SingClient(backend.url, transport=transport), start_view="tasks")


def run_once(backend: Backend, rid: str, command: str, **deploy: object) -> str:
    """Run an ON_DEMAND request's command once; its task's id."""
    backend.create({"id": rid, "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": command, "resources": {"cpus": 0.05, "memoryMb": 16}, **deploy})
    backend.post(f"/api/requests/request/{rid}/run", {})
    rows = wait_for(lambda: backend.get(f"/api/history/request/{rid}/tasks"), what=f"{rid}'s task")
    return rows[0]["taskId"]["id"]


def last_state(backend: Backend, task_id: str) -> str:
    return backend.get(f"/api/history/task/{task_id}")["taskUpdates"][-1]["taskState"]


def log_status(app: SingApp) -> str:
    return str(app.screen.query_one("#log-status", Static).content)


async def open_logs(pilot: Pilot[None], app: SingApp, task_id: str) -> LogView:
    await pilot.press("colon", *f"logs {task_id}", "enter")
    await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
    return app.screen.query_one(LogView)


def follow_worker_done(app: SingApp) -> bool:
    return all(w.is_finished for w in app.workers if w.group == "follow")


async def test_an_ended_tasks_log_is_shown_whole_said_ended_and_not_polled(backend: Backend) -> None:
    # ~180 KB: far more than the 64 KB tail a running task's log view starts from.
    task_id = run_once(backend, "tui-ended-log", 'seq -f "line %05g of the finished job ............" 1 5000')
    wait_for(lambda: last_state(backend, task_id) == "TASK_FINISHED", what="the task finished")
    transport = CountingTransport()
    app = app_on(backend, transport)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        log = await open_logs(pilot, app, task_id)
        await until(pilot, lambda: "■ ENDED" in screen_text(pilot), what="the view saying the task ended")
        lines = log.lines
        assert lines[0] == "line 00001 of the finished job ............"  # from the start, not a tail
        assert lines[5000 - 1] == "line 05000 of the finished job ............"
        assert lines[5000:] == ["— the task finished: end of its stdout —"]
        assert "■ ENDED · task finished · 5,000 lines" in log_status(app) and "FOLLOW" not in screen_text(pilot)
        assert "end of its stdout" in screen_text(pilot)  # the view sits at the end of the log

        await until(pilot, lambda: follow_worker_done(app), what="the reading to stop")
        reads = transport.reads
        await pilot.pause(10 * POLL_SECONDS)  # ten poll intervals: none of them reads
        assert transport.reads == reads
        await transport.aclose()


async def test_a_task_that_ends_while_watched_goes_from_follow_to_ended(backend: Backend, tmp_path: Path) -> None:
    go = tmp_path / "go"
    last = f"last words {uuid.uuid4().hex[:8]}"
    task_id = run_once(backend, "tui-ends-watched",
                       f'echo started; while [ ! -f "{go}" ]; do echo waiting; sleep 0.2; done; echo "{last}"')
    wait_for(lambda: last_state(backend, task_id) == "TASK_RUNNING", what="the task running")
    transport = CountingTransport()
    app = app_on(backend, transport)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        log = await open_logs(pilot, app, task_id)
        await until(pilot, lambda: log.lines.count("waiting") >= 3, what="the running task's lines")
        assert "● FOLLOW" in screen_text(pilot) and "ENDED" not in screen_text(pilot)
        assert not follow_worker_done(app)  # a running task's log keeps being read

        early: list[list[str]] = []  # what the log held whenever it already said "ended" without the last line

        def says_ended() -> bool:
            ended = "■ ENDED" in log_status(app)
            if ended and last not in log.lines:
                early.append(log.lines[-3:])
            return ended
        go.touch()
        await until(pilot, says_ended, what="the view saying the task ended")
        assert early == []
        assert log.lines[-2:] == [last, "— the task finished: end of its stdout —"]
        assert "■ ENDED · task finished" in screen_text(pilot) and "FOLLOW" not in screen_text(pilot)
        assert last_state(backend, task_id) == "TASK_FINISHED"

        await until(pilot, lambda: follow_worker_done(app), what="the reading to stop")
        reads = transport.reads
        await pilot.pause(10 * POLL_SECONDS)
        assert transport.reads == reads
        await transport.aclose()


async def test_an_ended_tasks_page_says_whether_its_sandbox_was_recorded(backend: Backend) -> None:
    # A task that ran has its sandbox recorded; one whose artifact could not be fetched ended before it
    # ran, so none was: its page must not say "not yet known", as if it might still come.
    ran = run_once(backend, "tui-sandbox-ran", "echo done")
    never = run_once(backend, "tui-sandbox-never", "echo never", uris=[{"uri": "http://127.0.0.1:9/app.tar.gz"}])
    wait_for(lambda: last_state(backend, ran) == "TASK_FINISHED", what="the task that ran, finished")
    wait_for(lambda: last_state(backend, never) == "TASK_FAILED", what="the task that never ran, failed")
    directory = backend.get(f"/api/history/task/{ran}")["directory"]
    assert "directory" not in backend.get(f"/api/history/task/{never}")

    transport = CountingTransport()
    app = app_on(backend, transport)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await pilot.press("colon", *f"task {ran}", "enter")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen) and "FINISHED" in screen_text(pilot),
                    what="the finished task's page")
        # (a long path folds onto the next line)
        assert f"Sandbox{directory}Archived" in "".join(screen_text(pilot).split())

        await pilot.press("colon", *f"task {never}", "enter")
        await until(pilot, lambda: app.screen.task_id == never and "FAILED" in screen_text(pilot),
                    what="the failed task's page")
        text = " ".join(screen_text(pilot).split())
        assert "Sandbox not recorded: the task ended before the backend learned it (b asks its agent)" in text
        assert "not yet known" not in text
        await pilot.press("b")  # and b does find it, through the agent
        await until(pilot, lambda: isinstance(app.screen, SandboxScreen), what="the sandbox browser")
        files = lambda: app.screen.query_one(ResourceTable)  # noqa: E731
        await until(pilot, lambda: "app" in files().keys, what="the sandbox's files")
        await transport.aclose()


async def test_the_all_instances_view_says_once_that_one_of_its_tasks_ended(backend: Backend, tmp_path: Path) -> None:
    go = tmp_path / "go-on"
    short = run_once(backend, "tui-two-runs-short", "echo short done")
    long = run_once(backend, "tui-two-runs-long", f'echo started; while [ ! -f "{go}" ]; do sleep 0.2; done')
    wait_for(lambda: last_state(backend, short) == "TASK_FINISHED", what="the short run finished")
    transport = CountingTransport()
    app = app_on(backend, transport)
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            app.push_screen(LogScreen.for_task_ids([short, long]))
            await until(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.query(LogView),
                        what="the log view")
            log = app.screen.query_one(LogView)
            await until(pilot, lambda: any("end of its stdout" in line for line in log.lines), what="the end marker")
            reads = transport.reads
            await until(pilot, lambda: transport.reads >= reads + 10, what="ten more polls of the running task")
            assert sum("end of its stdout" in line for line in log.lines) == 1, log.lines
            assert "1 of 2 tasks ended" in log_status(app)
    finally:
        go.touch()
        await transport.aclose()
