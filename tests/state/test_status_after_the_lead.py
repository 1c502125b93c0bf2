"""A status update reaching a backend that no longer leads (frozen while it led, then thawed with updates
still in its stream) is neither saved, nor sent on, nor acknowledged: the master sends it again to the
backend that leads, which records it in history once. A saved update is acknowledged once its history
is handed over."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import pytest

from sing_backend.history import HistoryStore
from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.store import StateUnavailable
from sing_backend.state.zookeeper import Fenced, ZkStateStore
from tests.history.helpers import history_url
from tests.servers import ZooKeeperServer
from tests.unit.test_unconfirmed_launches import RecordingGateway


def status(task_id: str, state: str, at: float) -> dict:
    return {"task_id": {"value": task_id}, "state": state, "timestamp": at, "message": "Exited with status 0",
            "uuid": uuid4().hex, "agent_id": {"value": "agent-1"}}


@asynccontextmanager
async def scheduler_on(hosts: str, tmp_path: Path, timeout: float = 10.0) -> AsyncIterator[tuple]:
    store = ZkStateStore(hosts, root=f"/sing-status-{uuid4().hex[:8]}", timeout=timeout)
    history = await HistoryStore.open(history_url(tmp_path / "history.db"))
    sink = HistorySink()
    sched = Scheduler(Settings(), store, history, sink)
    sched.gateway = RecordingGateway()
    unsaved: list[Exception] = []
    sched.on_unsaved = unsaved.append  # the runtime gives up the lead here, unless fenced
    tid = TaskId("job", "v1", 1000, 1, "host", "host", "rack", "rack")
    entry = TaskEntry(tid, {"taskId": tid.wire(), "taskRequest": {"pendingTask": {}}}, "agent-1",
                      state="TASK_RUNNING", updates=[{"taskState": "TASK_RUNNING", "timestamp": 1000}])
    sched.tasks[entry.id] = entry
    sched.tasks_by_request["job"].add(entry.id)
    store.put("tasks", entry.id, entry.doc())
    await history.save_task(entry.task, task_id=entry.id, request_id="job", deploy_id="v1", run_id=None,
                            host="host", started_at=1000)
    try:
        yield sched, store, sink, entry, unsaved
    finally:
        store.close()
        await history.close()


@pytest.fixture
async def scheduler(zookeeper: ZooKeeperServer, tmp_path: Path) -> AsyncIterator[tuple]:
    async with scheduler_on(zookeeper.hosts, tmp_path) as made:
        yield made


async def test_a_status_that_cannot_be_saved_is_not_recorded_in_history_nor_acknowledged(scheduler, caplog) -> None:
    sched, store, sink, entry, unsaved = scheduler
    store.fence_off()  # as a leader stepping down is: every write now fails, nothing reaches ZooKeeper
    sched.on_status(status(entry.id, "TASK_FINISHED", time.time()))
    await sink.drain()
    assert sched.gateway.acknowledged == []  # the master sends it again, to the leader
    assert (await sched.history.task_history(entry.id))["taskUpdates"] == []
    assert store.load("tasks").keys() == {entry.id}
    assert f"task {entry.id}: TASK_FINISHED not saved, nor recorded in history; the cluster sends it again" \
        in caplog.text
    assert [type(exc) for exc in unsaved] == [Fenced]  # that leadership has ended already: nothing to give up


async def test_a_status_that_cannot_be_saved_while_leading_gives_up_the_lead(server: ZooKeeperServer,
                                                                           tmp_path: Path) -> None:
    # ZooKeeper away longer than the store waits, the session not yet lost: the leader's memory has the
    # update, ZooKeeper does not. Kept leading, it would take the copy the cluster sends again for a
    # duplicate, acknowledge it, and never save it.
    async with scheduler_on(server.hosts, tmp_path, timeout=2.0) as (sched, _store, sink, entry, unsaved):
        server.stop()
        sched.on_status(status(entry.id, "TASK_FINISHED", time.time()))
        await sink.drain()
        assert sched.gateway.acknowledged == []
        assert (await sched.history.task_history(entry.id))["taskUpdates"] == []
        assert len(unsaved) == 1 and isinstance(unsaved[0], StateUnavailable), unsaved
        assert not isinstance(unsaved[0], Fenced)  # so the runtime gives up the lead


async def test_a_saved_status_is_recorded_with_the_time_it_happened_then_acknowledged(scheduler) -> None:
    sched, store, sink, entry, unsaved = scheduler
    finished = status(entry.id, "TASK_FINISHED", 1_700_000_123.25)
    sched.on_status(finished)
    assert store.load("tasks") == {} and unsaved == []
    assert sched.gateway.acknowledged == []  # not before its history is handed over
    await sink.drain()
    assert sched.gateway.acknowledged == [finished["uuid"]]
    history = await sched.history.task_history(entry.id)
    assert [(u["taskState"], u["timestamp"]) for u in history["taskUpdates"]] == [
        ("TASK_FINISHED", 1_700_000_123_250)]  # when it ended, not when it was heard of


async def test_an_update_the_master_made_takes_no_acknowledgement(scheduler) -> None:
    sched, _store, sink, entry, _unsaved = scheduler
    answer = status(entry.id, "TASK_RUNNING", time.time())
    del answer["uuid"]  # a reconciliation's answer
    sched.on_status(answer)
    await sink.drain()
    assert sched.gateway.acknowledged == []
