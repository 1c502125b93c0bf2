"""Pilot tests of the real app against a real backend in local mode (real task processes)."""

from __future__ import annotations

import gzip
import re
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for
from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from sing_tui.model import fmt_local, fmt_until
from sing_tui.screens.form import FormScreen
from sing_tui.screens.logs import LogScreen
from sing_tui.screens.request import RequestScreen
from sing_tui.screens.requests import RequestsScreen
from sing_tui.screens.task import TaskScreen
from sing_tui.widgets.log_view import LogView
from sing_tui.widgets.resource_table import ResourceTable, age_key

from .conftest import fill_and_submit, screen_text, until

SIZE = (80, 24)


def make_app(backend: Backend, **kw: object) -> SingApp:
    # A short refresh keeps the tests quick; the default is 2 s.
    return SingApp(TuiConfig(url=backend.url, refresh_seconds=0.3, log_poll_seconds=0.1), start_view="requests",
                   **kw)  # type: ignore[arg-type]


def worker(backend: Backend, rid: str, command: str, instances: int = 1) -> None:
    backend.create({"id": rid, "requestType": "WORKER", "instances": instances},
                   {"id": "v1", "command": command, "resources": {"cpus": 0.05, "memoryMb": 16}})


def table(app: SingApp, selector: str) -> ResourceTable:
    return app.screen.query_one(selector, ResourceTable)


async def open_request(pilot, rid: str) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    await until(pilot, lambda: rid in table(app, "#requests").keys, what=f"{rid} in the requests table")
    await pilot.press("slash", *rid, "enter")
    await until(pilot, lambda: table(app, "#requests").cursor_key == rid, what="the filter to select it")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, RequestScreen), what="the request screen")


async def test_scale_see_new_task_then_follow_its_log(backend: Backend, tmp_path: Path) -> None:
    """The issue's walk-through: navigate to a request, scale it, see the new task appear, open a
    task's log and see a line the task printed after the view opened."""
    rid = "tui-scale"
    say = f"{tmp_path}/say-$INSTANCE_NO"  # one file per instance: only the task we watch prints it
    worker(backend, rid, f'while true; do if [ -f "{say}" ]; then cat "{say}"; rm -f "{say}"; fi; '
                         "echo tick; sleep 0.1; done")
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_request(pilot, rid)
        tasks = lambda: table(app, "#tasks")  # noqa: E731
        await until(pilot, lambda: tasks().row_count == 1 and tasks().row(tasks().keys[0])[4] == "RUNNING",
                    what="one running task")
        first = tasks().keys[0]

        await pilot.press("s")
        assert isinstance(app.screen, FormScreen) and rid in screen_text(pilot)  # the form names its target
        await pilot.press("ctrl+a", "ctrl+k", "2", "enter", "enter")
        await until(pilot, lambda: not isinstance(app.screen, FormScreen), what="the form to close")
        await until(pilot, lambda: tasks().row_count == 2, timeout=20, what="the new task in the table")
        new = next(k for k in tasks().keys if k != first)
        await until(pilot, lambda: new[:28] in screen_text(pilot), what="the new task on screen")  # id, start, #
        assert backend.get(f"/api/requests/request/{rid}")["request"]["instances"] == 2

        tasks().move_to(first)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        log = app.screen.query_one(LogView)
        await until(pilot, lambda: "tick" in log.lines, what="the task's output")
        said = f"hello from the test {uuid.uuid4().hex[:8]}"
        instance = backend.get(f"/api/tasks/task/{first}")["taskId"]["instanceNo"]
        (tmp_path / f"say-{instance}").write_text(said + "\n")  # printed only now, after the view opened
        await until(pilot, lambda: said in screen_text(pilot), what="the new line on screen")
        assert log.follow


async def test_bad_input_is_refused_in_the_form(backend: Backend) -> None:
    rid = "tui-bad-input"
    worker(backend, rid, "sleep 1000")
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_request(pilot, rid)
        await pilot.press("s", "ctrl+a", "ctrl+k", *"three", "enter", "enter")
        assert isinstance(app.screen, FormScreen)
        await until(pilot, lambda: "'three' is not a whole number" in screen_text(pilot), what="the reason")
        await pilot.press("escape")
        assert backend.get(f"/api/requests/request/{rid}")["request"]["instances"] == 1

        await pilot.press("D")  # delete needs the id typed out
        await pilot.press(*"nope", "enter", "enter")
        await until(pilot, lambda: f"type '{rid}' exactly" in screen_text(pilot), what="the refusal")
        await pilot.press("escape")

        await pilot.press("colon", *"request no-such-request", "enter")
        await until(pilot, lambda: "Couldn't find request" in screen_text(pilot), what="the server's message")
        assert isinstance(app.screen, RequestScreen) and app.screen.request_id == rid


async def test_deleted_while_viewing_goes_back(backend: Backend) -> None:
    rid = "tui-deleted"
    worker(backend, rid, "sleep 1000")
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_request(pilot, rid)
        backend.delete(f"/api/requests/request/{rid}")
        await until(pilot, lambda: isinstance(app.screen, RequestsScreen), timeout=20, what="going back")
        await until(pilot, lambda: "was deleted" in screen_text(pilot), what="the reason")


async def test_logs_of_a_task_the_backend_does_not_know_say_so_and_stop(backend: Backend) -> None:
    app = make_app(backend)
    tid = "no-such-request-v1-1-1-nohost-norack"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *f"logs {tid}", "enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        status = lambda: str(app.screen.query_one("#log-status").render())  # noqa: E731
        await until(pilot, lambda: status().startswith("■ NO SUCH TASK"), what="no such task")
        assert f"there is no task {tid}" in " ".join(app.screen.query_one(LogView).lines)
        screen = app.screen
        await until(pilot, lambda: not [w for w in app.workers if w.node is screen and w.group == "follow"
                                        and w.is_running], what="the log view's reads to stop")


async def test_all_instances_in_one_log_view(backend: Backend) -> None:
    rid = "tui-all-logs"
    worker(backend, rid, 'while true; do echo "from $INSTANCE_NO"; sleep 0.2; done', instances=2)
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: rid in table(app, "#requests").keys, what="the request")
        table(app, "#requests").move_to(rid)
        backend_running = lambda: len(backend.active_tasks(rid)) == 2  # noqa: E731
        await until(pilot, backend_running, timeout=20, what="two running tasks")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        log = app.screen.query_one(LogView)
        await until(pilot, lambda: {"from 1", "from 2"} <= set(log.lines), what="lines from both instances")
        text = screen_text(pilot)
        assert "v1#1 │ from 1" in text and "v1#2 │ from 2" in text


async def test_p_opens_the_last_failed_tasks_logs(backend: Backend) -> None:
    rid = "tui-fails"
    backend.create({"id": rid, "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": "echo about to fail; exit 3", "resources": {"cpus": 0.05, "memoryMb": 16}})
    backend.post(f"/api/requests/request/{rid}/run", {})
    wait_for(lambda: backend.get(f"/api/history/request/{rid}/tasks", params={"lastTaskStatus": "TASK_FAILED"}),
             what="the failed run")
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: rid in table(app, "#requests").keys, what="the request")
        table(app, "#requests").move_to(rid)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: "about to fail" in screen_text(pilot), what="the failed task's output")
        assert "last failed task of tui-fails" in screen_text(pilot)


async def test_agent_actions_show_the_servers_answer(backend: Backend) -> None:
    # Freeze then activate, so the agent ends as it started whether or not the endpoints exist yet.
    answer = httpx.post(f"{backend.url}/api/agents/agent/agent-1/freeze", json={})
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("4")
        await until(pilot, lambda: table(app, "#agents").row_count == 3, what="three agents")
        table(app, "#agents").move_to("agent-1")
        await pilot.press("A")
        assert isinstance(app.screen, FormScreen) and "agent-1" in screen_text(pilot)
        await pilot.press("enter")
        if answer.status_code == 404:  # not on this backend yet: the form shows the server's message
            message = answer.json()["message"].replace("freeze", "activate")
            await until(pilot, lambda: message in screen_text(pilot), what="the server's message")
        else:
            await until(pilot, lambda: not isinstance(app.screen, FormScreen), what="the action to finish")
            assert backend.get("/api/agents/agent/agent-1/details")["currentState"]["state"] == "ACTIVE"


async def test_backend_down_at_start_then_mid_session(tmp_path: Path) -> None:
    port = free_port()
    app = SingApp(TuiConfig(url=f"http://127.0.0.1:{port}", refresh_seconds=0.3), start_view="requests")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: "connection refused" in screen_text(pilot), what="the banner")
        assert "STALE" in screen_text(pilot) and "no data yet" in screen_text(pilot)
        assert app.connection.failures >= 1

        other = Backend(tmp_path / "data", port=port).start()  # the backend comes up: the TUI recovers
        try:
            worker(other, "comes-and-goes", "sleep 1000")
            await until(pilot, lambda: "comes-and-goes" in screen_text(pilot), timeout=30, what="data")
            assert "● live" in screen_text(pilot)
        finally:
            other.close()
        await until(pilot, lambda: "unreachable" in screen_text(pilot), timeout=20, what="the banner again")
        text = screen_text(pilot)
        assert "comes-and-goes" in text and "stale" in text  # the last data stays, marked stale


@pytest.mark.parametrize("read_only", [True, False])
async def test_read_only_hides_every_action(backend: Backend, read_only: bool) -> None:
    rid = f"tui-ro-{str(read_only).lower()}"
    worker(backend, rid, "sleep 1000")
    app = SingApp(TuiConfig(url=backend.url, read_only=read_only, refresh_seconds=0.3), start_view="requests")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: rid in table(app, "#requests").keys, what="the request")
        table(app, "#requests").move_to(rid)
        # The top bar and the footer (painted after the rows on a loaded machine: wait for them).
        def painted() -> bool:
            text = screen_text(pilot)
            return ("READ-ONLY" in text) is read_only and "Help" in text and (read_only or "Scale" in text)
        await until(pilot, painted, what="the top bar and the footer")
        assert ("Scale" in screen_text(pilot)) is (not read_only)  # the footer
        await pilot.press("s")
        assert isinstance(app.screen, FormScreen) is (not read_only)
        if not read_only:
            await pilot.press("escape")
        await pilot.press("question_mark")
        help_text = "\n".join(" ".join(r) for r in app.screen.query_one(ResourceTable)._rows.values())
        for binding_id in ("request.scale", "request.pause", "request.delete", "request.run_now"):
            assert (binding_id in help_text) is (not read_only)
        assert "request.describe" in help_text and "app.quit" in help_text


def countdown_secs(text: str) -> float:
    """ "3m 20s" -> 200, "1h 05m" -> 3900."""
    return age_key(text.replace(" ", ""))


async def test_scheduled_request_shows_its_next_run(backend: Backend) -> None:
    rid = "cron"
    backend.create({"id": rid, "requestType": "SCHEDULED", "quartzSchedule": "0 0 * * * ?"},
                   {"id": "v1", "command": "echo tick", "resources": {"cpus": 0.05, "memoryMb": 16}})

    def next_run() -> int | None:
        return backend.get(f"/api/requests/request/{rid}").get("nextRunAt")

    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: rid in table(app, "#requests").keys, what="the request")
        # The backend's own nextRunAt, as a countdown (a run at the top of the hour moves it on: re-read it).
        await until(pilot, lambda: (at := next_run()) is not None and table(app, "#requests").row(rid)[4] ==
                    fmt_until(at, int(time.time() * 1000), compact=True), what="NEXT RUN in the table")
        assert "NEXT RUN" in screen_text(pilot)
        await open_request(pilot, rid)

        def shows_next_run() -> bool:
            at = next_run()
            m = re.search(r"next run (.+?) \(in ([^)]+)\)", screen_text(pilot))
            return bool(at and m and m[1] == fmt_local(at)
                        and abs(countdown_secs(m[2]) - (at - time.time() * 1000) / 1000) <= 3)
        await until(pilot, shows_next_run, what="the next run in local time, and how long until then")
        assert "0 0 * * * ?" in screen_text(pilot)


async def test_killed_task_has_an_archived_log_the_task_view_lists_and_opens(backend: Backend,
                                                                            tmp_path: Path) -> None:
    rid = "tui-archive"
    said = f"archived line {uuid.uuid4().hex[:8]}"
    backend.create({"id": rid, "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": f'echo "{said}"; sleep 1000', "resources": {"cpus": 0.05, "memoryMb": 16}})
    backend.post(f"/api/requests/request/{rid}/run", {})
    task_id = wait_for(lambda: backend.active_tasks(rid), what="the running task")[0]["taskId"]["id"]
    wait_for(lambda: said in backend.get(f"/api/sandbox/{task_id}/read",
                                         params={"path": f"{task_id}/stdout.log", "offset": 0})["data"],
             what="the line in its stdout")
    app = make_app(backend)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("colon", *f"task {task_id}", "enter")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen), what="the task view")
        await until(pilot, lambda: "RUNNING" in screen_text(pilot), what="the running task")
        await pilot.press("K")
        await fill_and_submit(pilot, "#field-message", "done with it")  # kill it from the TUI
        await until(pilot, lambda: backend.get(f"/api/history/task/{task_id}")["taskUpdates"][-1]["taskState"]
                    == "TASK_KILLED", what="the task killed")
        await pilot.press("a")
        archived = lambda: app.screen.query_one("#archive", ResourceTable)  # noqa: E731
        await until(pilot, lambda: any("/stdout-" in k for k in archived().keys), timeout=20,
                    what="its archived stdout in the Archived logs tab")
        assert "stdout-00001" in screen_text(pilot)
        archived().move_to(next(k for k in archived().keys if "/stdout-" in k))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: said in app.screen.query_one(LogView).lines, what="the line, gunzipped")
        assert "ARCHIVED" in screen_text(pilot)
        saved = tmp_path / "stdout.log.gz"  # saved as stored: what the backend archived
        await pilot.press("ctrl+s")
        await fill_and_submit(pilot, "#field-path", str(saved))
        await until(pilot, lambda: saved.exists() and saved.stat().st_size > 0, what="the saved file")
        assert said in gzip.decompress(saved.read_bytes()).decode()

        # Once the sandbox is gone, `l` still shows the task's output: from its archived logs.
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen), what="the task view again")
        for sandbox in backend.data_dir.glob(f"cluster/agents/*/sandboxes/{task_id}"):
            shutil.rmtree(sandbox)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        await until(pilot, lambda: said in app.screen.query_one(LogView).lines, what="the archived stdout")
        assert "the sandbox is gone" in screen_text(pilot)


async def test_dashboard_shows_recent_failures_from_the_global_search(backend: Backend) -> None:
    rid = "tui-dash-fails"
    backend.create({"id": rid, "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": "exit 4", "resources": {"cpus": 0.05, "memoryMb": 16}})
    backend.post(f"/api/requests/request/{rid}/run", {})
    failed = wait_for(lambda: backend.get("/api/history/tasks", params={"requestId": rid,
                                                                        "lastTaskStatus": "TASK_FAILED"}),
                      what="the failed run")[0]["taskId"]["id"]
    app = SingApp(TuiConfig(url=backend.url, refresh_seconds=0.3), start_view="dashboard")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: failed in table(app, "#failures").keys, what="the failed task")
        text = screen_text(pilot)
        # The global search answered (no fall-back to requests in cool-down), and the row says what happened.
        assert "Recent failures (failed, lost or errored tasks)" in text and "FAILED" in text
        await pilot.press("tab")
        table(app, "#failures").move_to(failed)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskScreen) and app.screen.task_id == failed,
                    what="the failed task's view")


async def test_the_log_view_says_the_backend_is_down_until_it_answers_again(tmp_path: Path) -> None:
    port = free_port()
    b = Backend(tmp_path / "data", port=port).start()
    worker(b, "ticking", "while true; do echo tick; sleep 0.2; done")
    (task,) = wait_for(lambda: b.active_tasks("ticking"), timeout=30, what="the task running")
    app = SingApp(TuiConfig(url=f"http://127.0.0.1:{port}", refresh_seconds=0.3), start_view="tasks")
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            app.push_screen(LogScreen([task["taskId"]["id"]]))
            await until(pilot, lambda: "tick" in screen_text(pilot), what="the task's lines")
            b.close()
            down_at = time.monotonic()
            # Down, and said so for as long as it is: every failed read counts, none is taken for an answer
            # (the view told the app "reachable" at each refresh, and the retries started over).
            await until(pilot, lambda: app.connection.failures >= 6, timeout=40, what="six failed reads in a row")
            assert app.connection.ok is False and "Reconnected" not in screen_text(pilot)
            # At the pace the banner announces, backing off (0.3 + 0.6 + 1.2 + 2.4 + 4.8 s between the six),
            # not once a second for ever.
            assert time.monotonic() - down_at >= 7.5
            b = Backend(tmp_path / "data", port=port).start()
            await until(pilot, lambda: app.connection.ok is True, timeout=30, what="the backend answering again")
    finally:
        b.close()
