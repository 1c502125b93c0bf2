"""A status update reaching a backend that no longer leads (frozen while it led, then thawed with updates
still in its stream) is neither saved nor sent on: the master sends it again to the backend that leads,
which records it in history once."""

from __future__ import annotations

import time
from uuid import uuid4

import pytest

from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.zookeeper import ZkStateStore
from tests.servers import ZooKeeperServer


def status(task_id: str, state: str, at: float) -> dict:
    return {"task_id": {"value": task_id}, "state": state, "timestamp": at, "message": "Exited with status 0"}


@pytest.fixture
def scheduler(zookeeper: ZooKeeperServer):
    store = ZkStateStore(zookeeper.hosts, root=f"/sing-status-{uuid4().hex[:8]}")
    sink = HistorySink()
    sched = Scheduler(Settings(), store, None, sink)
    tid = TaskId("job", "v1", 1000, 1, "host", "host", "rack", "rack")
    entry = TaskEntry(tid, {"taskId": tid.wire(), "taskRequest": {"pendingTask": {}}}, "agent-1",
                      state="TASK_RUNNING", updates=[{"taskState": "TASK_RUNNING", "timestamp": 1000}])
    sched.tasks[entry.id] = entry
    sched.tasks_by_request["job"].add(entry.id)
    store.put("tasks", entry.id, entry.doc())
    try:
        yield sched, store, sink, entry
    finally:
        store.close()


def test_a_status_that_cannot_be_saved_is_not_recorded_in_history(scheduler, caplog) -> None:
    sched, store, sink, entry = scheduler
    store.fence_off()  # as a leader stepping down is: every write now fails, nothing reaches ZooKeeper
    sched.on_status(status(entry.id, "TASK_FINISHED", time.time()))
    assert len(sink._queue) == 0  # nothing for history: the leader records it when the master resends it
    assert store.load("tasks").keys() == {entry.id}
    assert f"task {entry.id}: TASK_FINISHED not saved, nor recorded in history" in caplog.text


def test_a_saved_status_is_recorded_with_the_time_it_happened(scheduler) -> None:
    sched, store, sink, entry = scheduler
    sched.on_status(status(entry.id, "TASK_FINISHED", 1_700_000_123.25))
    assert store.load("tasks") == {}
    assert len(sink._queue) == 2  # the update, then the task's final save
    assert entry.updates[-1]["taskState"] == "TASK_FINISHED"
    assert entry.updates[-1]["timestamp"] == 1_700_000_123_250  # when it ended, not when it was heard of
