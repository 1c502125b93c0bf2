"""The dashboard on two backends in mesos mode, following a live task's log while the leader is killed:
it moves to the other backend, which takes over the lead, and the log goes on from where it was, with
no line shown twice or skipped and no failed read on the way. The task itself keeps running (fail-over
does not relaunch it)."""

from __future__ import annotations

import re
import signal

from textual.widgets import Static

from sing_backend.local_backend import wait_for
from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from sing_tui.screens.logs import LogScreen
from sing_tui.widgets.log_view import LogView
from tests.ha.test_failover import RES, one_leader
from tests.tui.conftest import screen_text, top_right, until

COUNTER = 'i=0; while true; do i=$((i+1)); echo "line $i"; sleep 0.2; done'


def counted(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.fullmatch(r"line (\d+)", line))]


async def test_a_followed_log_goes_on_through_the_standby_when_the_leader_dies(ha: dict) -> None:
    leader = ha["backend"]("a")
    one_leader([leader])
    standby = ha["backend"]("b")
    assert one_leader([leader, standby]) is leader
    leader.create({"id": "talker", "requestType": "WORKER"}, {"id": "v1", "command": COUNTER, "resources": RES})
    task_id = wait_for(lambda: (tasks := leader.active_tasks("talker")) and tasks[0]["taskId"]["id"],
                       timeout=30, what="the task running")

    config = TuiConfig(url=f"{leader.url},{standby.url}", refresh_seconds=0.3, log_poll_seconds=0.1)
    app = SingApp(config, start_view="tasks")
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await pilot.press("colon", *f"logs {task_id}", "enter")
        await until(pilot, lambda: isinstance(app.screen, LogScreen), what="the log view")
        log = app.screen.query_one(LogView)
        await until(pilot, lambda: len(counted(log.lines)) >= 3, timeout=20, what="the task's first lines")
        before = max(counted(log.lines))

        leader.stop(signal.SIGKILL)
        a, b = (x.url.removeprefix("http://") for x in (leader, standby))
        await until(pilot, lambda: top_right(app).endswith(f"failed over {a} → {b} ● live"), timeout=30,
                    what="the top bar naming the move")
        # Lines written after the kill, read through the backend that now leads.
        await until(pilot, lambda: max(counted(log.lines)) >= before + 10, timeout=30,
                    what="the log going on after the fail-over")
        # Nothing but the task's lines: no read failed on the way (the standby answering from its snapshot
        # and the new leader before its first offer both reach the agent through the task's own offer).
        assert [line for line in log.lines if not re.fullmatch(r"line \d+", line)] == []
        numbers = counted(log.lines)
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), "a line shown twice or skipped"
        assert "● FOLLOW" in str(app.screen.query_one("#log-status", Static).content)
        assert "ENDED" not in screen_text(pilot)

    assert one_leader([standby]) is standby
    assert [t["taskId"]["id"] for t in standby.active_tasks("talker")] == [task_id]
