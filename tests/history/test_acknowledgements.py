"""A task's status update is acknowledged to the cluster once its history is handed over, except while
history is backed up (its database away so long that its writes wait for room): the cluster holds a
task's next update until this one is acknowledged, so waiting for history would leave the scheduler
blind to its tasks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sing_backend.history import HistoryStore
from sing_backend.history import store as history_store
from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.sqlite import SqliteStateStore
from tests.unit.test_unconfirmed_launches import RecordingGateway

from .helpers import history_url, update


def running(sched: Scheduler, started_at: int, instance: int) -> TaskId:
    tid = TaskId("job", "v1", started_at, instance, "host", "host", "rack", "rack")
    sched.tasks[tid.id] = TaskEntry(tid, {"taskId": tid.wire(), "taskRequest": {"pendingTask": {}}}, "agent-1",
                                    state="TASK_RUNNING",
                                    updates=[{"taskState": "TASK_RUNNING", "timestamp": started_at}])
    sched.tasks_by_request["job"].add(tid.id)
    return tid


def finished(task_id: str, uuid: str) -> dict:
    return {"task_id": {"value": task_id}, "state": "TASK_FINISHED", "timestamp": 2.0, "uuid": uuid,
            "agent_id": {"value": "agent-1"}}


async def test_updates_are_acknowledged_at_once_while_history_is_backed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_store, "MAX_QUEUED", 1)  # one write not committed fills it
    path = tmp_path / "history.db"
    store = await HistoryStore.open(history_url(path))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        sink = HistorySink()
        sched = Scheduler(Settings(), SqliteStateStore(tmp_path / "state.db"), store, sink)
        gateway = RecordingGateway()
        sched.gateway = gateway
        tid = running(sched, 1000, 1)

        sched.on_status(finished(tid.id, "u-1"))  # history answers: acknowledged behind its hand-over
        assert gateway.acknowledged == []
        await sink.drain()
        await store.flush()
        assert gateway.acknowledged == ["u-1"]

        blocker.execute("BEGIN EXCLUSIVE")  # the database away: nothing commits
        await store.add_task_updates([update(tid.wire(), 1500, "TASK_RUNNING")])
        assert store.backed_up
        other = running(sched, 3000, 2)
        sched.on_status(finished(other.id, "u-2"))
        assert gateway.acknowledged == ["u-1", "u-2"]  # at once
        assert len(sink._queue) == 2  # its history still waits, in order: the update, the task's last save
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
        await sink.drain()
        await store.close()
