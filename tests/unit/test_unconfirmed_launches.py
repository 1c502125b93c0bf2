"""A launch the cluster never answers (its call or its answer lost) must not leave a task in
TASK_LAUNCHED for ever: the scheduler asks the cluster about launched tasks it has heard nothing of for
a while, and about no others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.sqlite import SqliteStateStore

CONFIRM_MS = 30_000


class RecordingGateway:
    """The cluster side of the scheduler, recording what it is asked (the scheduler's logic under test
    needs no cluster to decide whom to ask about)."""

    def __init__(self) -> None:
        self.reconciled: list[list[str]] = []
        self.acknowledged: list[str] = []  # uuids

    def launch(self, offer_id: str, task_infos: list[dict[str, Any]]) -> None: ...
    def decline(self, offer_ids: list[str], refuse_seconds: float) -> None: ...
    def kill(self, task_id: str, grace_seconds: float | None) -> None: ...
    def message(self, task_id: str, agent_id: str, data: str) -> None: ...

    def reconcile(self, task_ids: list[str]) -> None:
        self.reconciled.append(sorted(task_ids))

    def acknowledge(self, status: dict[str, Any]) -> None:
        self.acknowledged.append(status["uuid"])


def task(name: str, state: str, last_update_at: int) -> TaskEntry:
    tid = TaskId(name, "v1", 1, 1, "host", "host", "rack", "rack")
    return TaskEntry(tid, {"taskId": tid.wire()}, "agent-1", state=state,
                     updates=[{"taskState": state, "timestamp": last_update_at}])


def scheduler(tmp_path: Path, now: list[int]) -> tuple[Scheduler, RecordingGateway]:
    sched = Scheduler(Settings(), SqliteStateStore(tmp_path / "state.db"), None, HistorySink(), clock=lambda: now[0])
    gateway = RecordingGateway()
    sched.gateway = gateway
    sched.connected = True
    return sched, gateway


def test_only_launched_tasks_silent_for_the_timeout_are_reconciled(tmp_path: Path) -> None:
    now = [1_000_000]
    sched, gateway = scheduler(tmp_path, now)
    for entry in (
        task("silent-launched", "TASK_LAUNCHED", now[0] - CONFIRM_MS),
        task("silent-staging", "TASK_STAGING", now[0] - CONFIRM_MS - 1),
        task("recent-launch", "TASK_LAUNCHED", now[0] - CONFIRM_MS + 1),
        task("running", "TASK_RUNNING", now[0] - 10 * CONFIRM_MS),
    ):
        sched.tasks[entry.id] = entry
    sched.reconcile_unconfirmed(CONFIRM_MS)
    assert gateway.reconciled == [sorted([task("silent-launched", "", 0).id, task("silent-staging", "", 0).id])]

    now[0] += 1  # the recent launch is now silent for as long
    sched.reconcile_unconfirmed(CONFIRM_MS)
    assert task("recent-launch", "", 0).id in gateway.reconciled[-1]


def test_nothing_is_asked_while_disconnected_or_when_all_is_confirmed(tmp_path: Path) -> None:
    now = [1_000_000]
    sched, gateway = scheduler(tmp_path, now)
    sched.tasks["r"] = task("running", "TASK_RUNNING", 0)
    sched.reconcile_unconfirmed(CONFIRM_MS)
    sched.tasks["l"] = task("launched", "TASK_LAUNCHED", 0)
    sched.connected = False  # the answers could not arrive: asked again after re-subscribing
    sched.reconcile_unconfirmed(CONFIRM_MS)
    assert gateway.reconciled == []
