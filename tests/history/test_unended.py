"""A leader killed after saving a task's end in the state store, and before handing it to history, leaves
the task unended in history, and the next leader no longer runs it. Once subscribed, that leader looks
at the tasks history shows unended that it does not run: the ends the cluster sends again (the leader
that died had not acknowledged them) are recorded as they come, and the cluster is asked about the
others, whose answers complete their history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sing_backend.history import HistoryStore
from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.sqlite import SqliteStateStore
from tests.unit.test_unconfirmed_launches import RecordingGateway

from .helpers import history_url, make_task, save, update


def ended(task_id: str, state: str, at: float) -> dict[str, Any]:
    return {"task_id": {"value": task_id}, "state": state, "timestamp": at, "message": "Exited with status 0"}


async def test_tasks_left_unended_in_history_are_asked_about_and_completed(tmp_path: Path) -> None:
    store = await HistoryStore.open(history_url(tmp_path / "history.db"))
    try:
        lost_end = await save(store, make_task("job", "v1", 1000))
        resent = await save(store, make_task("job", "v1", 1500))
        finished = await save(store, make_task("job", "v1", 2000))
        live = await save(store, make_task("job", "v1", 3000))
        await store.add_task_updates([update(lost_end, 1001, "TASK_RUNNING"), update(finished, 2001, "TASK_RUNNING"),
                                      update(finished, 2005, "TASK_FINISHED"), update(live, 3001, "TASK_RUNNING")])
        sink = HistorySink()
        sched = Scheduler(Settings(), SqliteStateStore(tmp_path / "state.db"), store, sink)
        doc = make_task("job", "v1", 3000)
        tid = TaskId(**{k: doc["taskId"][k] for k in TaskId.__dataclass_fields__})
        sched.tasks[live] = TaskEntry(tid, doc, "agent-1", state="TASK_RUNNING")
        gateway = RecordingGateway()
        sched.gateway = gateway
        sched.on_subscribed = lambda: None  # the runtime asks history here (see Runtime._complete_history)
        sched.on_registered("framework-1")
        unended = await store.unended_task_ids()
        assert sorted(unended) == sorted([lost_end, resent, live])
        # The task it ran ends while history is asked: its end is on the way to history, not lost.
        sched.on_status(ended(live, "TASK_FINISHED", 3.5))
        # The master sends again the ends the last leader did not acknowledge: one it had not handed to
        # history, one it had (history does not show it unended).
        sent_again = [{**ended(resent, "TASK_FAILED", 1.75), "uuid": "u-1"},
                      {**ended(finished, "TASK_FINISHED", 2.005), "uuid": "u-2"}]
        for status in sent_again:
            sched.on_status(status)
        await sink.drain()
        assert gateway.acknowledged == []  # not before history has said whether it shows them ended
        sched.ask_about_unended(unended)
        assert gateway.reconciled == [[live], [lost_end]]  # its live tasks at subscription, then the unended
        await sink.drain()
        assert sorted(gateway.acknowledged) == ["u-1", "u-2"]  # one recorded, the other already there

        sched.on_status(ended(lost_end, "TASK_FINISHED", 1.5))
        sched.on_status(ended(lost_end, "TASK_FINISHED", 1.5))  # answered twice: recorded once
        await sink.drain()
        sched.on_status(ended("job-v1-9000-1-host_1-rack_a", "TASK_FINISHED", 9.0))  # never asked about
        assert len(sink._queue) == 0  # nothing for history
        assert await store.unended_task_ids() == []
        history = await store.task_history(lost_end)
        assert history is not None
        assert [(u["taskState"], u["timestamp"]) for u in history["taskUpdates"]] == [
            ("TASK_RUNNING", 1001), ("TASK_FINISHED", 1500)]
        history = await store.task_history(resent)
        assert history is not None
        assert [(u["taskState"], u["timestamp"]) for u in history["taskUpdates"]] == [("TASK_FAILED", 1750)]
        history = await store.task_history(finished)
        assert history is not None
        assert [u["taskState"] for u in history["taskUpdates"]] == ["TASK_RUNNING", "TASK_FINISHED"]
    finally:
        await store.close()
