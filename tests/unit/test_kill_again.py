"""A kill is saved as sent, not as delivered: one lost on the way (the master unreachable, or a leader
stepping down as it sent it) is sent again, by the same leader or the next, until the task is gone."""

from __future__ import annotations

from pathlib import Path

from sing_backend.ids import TaskId
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.entities import TaskEntry
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.sqlite import SqliteStateStore

NOW = 1_000_000_000


class RecordingGateway:
    """Records the kills the scheduler sends to the cluster (a fake of the Mesos driver's kill call)."""

    def __init__(self) -> None:
        self.kills: list[tuple[str, float | None]] = []

    def kill(self, task_id: str, grace: float | None) -> None:
        self.kills.append((task_id, grace))


def task_in_cleanup(store: SqliteStateStore, name: str, *, kill_sent_at: int | None, cleanup: str = "USER_REQUESTED",
                    lb_state: str | None = None) -> str:
    """A running task whose kill a previous leader saved as sent at `kill_sent_at`."""
    before = Scheduler(Settings(), store, None, HistorySink(), clock=lambda: NOW)
    tid = TaskId(name, "v1", NOW - 600_000, 1, "127.0.0.1", "127_0_0_1", "rack", "rack")
    task = {"taskId": tid.wire(), "taskRequest": {"pendingTask": {"pendingTaskId": {"requestId": name}}}}
    before._save_task(TaskEntry(tid, task, "agent-1", state="TASK_RUNNING", running_since=NOW - 600_000,
                                cleanup={"cleanupType": cleanup}, kill_sent_at=kill_sent_at, lb_state=lb_state))
    return tid.id


def test_a_kill_lost_before_a_fail_over_is_sent_again_by_the_new_leader(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    lost = task_in_cleanup(store, "lost", kill_sent_at=NOW - 61_000)
    destroyed = task_in_cleanup(store, "destroyed", kill_sent_at=NOW - 61_000, cleanup="USER_REQUESTED_DESTROY")
    recent = task_in_cleanup(store, "recent", kill_sent_at=NOW - 10_000)
    task_in_cleanup(store, "leaving-lb", kill_sent_at=NOW - 61_000, lb_state="REMOVING")
    task_in_cleanup(store, "graceful", kill_sent_at=None, cleanup="DECOMISSIONING")
    now = [NOW]
    leader = Scheduler(Settings(), store, None, HistorySink(), clock=lambda: now[0])
    leader.load()
    gateway = RecordingGateway()
    leader.gateway = gateway  # type: ignore[assignment]
    leader.kill_again()
    # Only the kills sent a minute ago; a destroy again without grace. Not the one sent 10 s ago, nor
    # one whose kill waits for the load balancer, nor a task whose kill was never due.
    assert sorted(gateway.kills) == sorted([(lost, None), (destroyed, 0.0)])
    # Saved as sent again now: not repeated at every tick, and a later leader counts from here.
    leader.kill_again()
    assert len(gateway.kills) == 2
    again = Scheduler(Settings(), store, None, HistorySink(), clock=lambda: now[0])
    again.load()
    assert again.tasks[lost].kill_sent_at == NOW
    assert again.tasks[lost].kill_retries == 1 and again.tasks[recent].kill_retries == 0  # saved with it
    # A minute on, what is still running is sent its kill again.
    now[0] += 60_000
    leader.kill_again()
    assert sorted(gateway.kills[2:]) == sorted([(lost, None), (destroyed, 0.0), (recent, None)])
