"""A backend restart keeps requests, deploys and history; no task is duplicated or left orphaned."""

from __future__ import annotations

import signal
from pathlib import Path

from sing_backend.local_backend import Backend, pid_alive, wait_for


def test_restart_after_kill_keeps_state_and_leaves_no_orphans(tmp_path: Path):
    backend = Backend(tmp_path / "data").start()
    try:
        backend.create({"id": "keep", "requestType": "WORKER", "instances": 2},
                       {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.1, "memoryMb": 32},
                        "considerHealthyAfterRunningForSeconds": 0})
        tasks = wait_for(lambda: len(ts := backend.active_tasks("keep")) == 2 and ts, what="2 workers")
        old_ids = {t["taskId"]["id"] for t in tasks}
        pids = [backend.task_pid(t) for t in old_ids]
        wait_for(lambda: backend.get("/api/requests/request/keep")["requestDeployState"].get("activeDeploy"),
                 what="deploy done")
        backend.stop(signal.SIGKILL)  # a crash: nothing gets to clean up
        assert all(pid_alive(p) for p in pids), "tasks outlive a crashed backend until it comes back"

        backend = Backend(tmp_path / "data", port=backend.port).start()
        parent = backend.get("/api/requests/request/keep")
        assert parent["requestDeployState"]["activeDeploy"]["deployId"] == "v1"
        assert parent["request"]["instances"] == 2
        wait_for(lambda: not any(pid_alive(p) for p in pids), what="the old processes to be gone")
        new = wait_for(lambda: len(ts := backend.active_tasks("keep")) == 2 and ts, what="2 replacement workers")
        assert not old_ids & {t["taskId"]["id"] for t in new}
        # Each old task ends with one terminal update, and the request never runs more than 2.
        for task_id in old_ids:
            updates = backend.get(f"/api/history/task/{task_id}")["taskUpdates"]
            assert updates[-1]["taskState"] in ("TASK_LOST", "TASK_KILLED")
        assert len(backend.active_tasks("keep", state=None)) == 2
        events = [e["eventType"] for e in backend.get("/api/history/request/keep/requests")]
        assert events == ["CREATED"]
    finally:
        backend.close()


async def test_a_task_left_unended_in_history_is_completed_after_a_restart(tmp_path: Path):
    # As a backend killed after saving a task's end in its state, and before handing it to history, leaves
    # it: history shows the task running, and the state store does not have it. Here the cluster has no
    # update of it to send again (it never ran it): the next backend to subscribe asks the cluster.
    from sing_backend.history import HistoryStore
    from tests.history.helpers import make_task, save, update

    backend = Backend(tmp_path / "data").start()
    backend.close()
    store = await HistoryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'history.db'}")
    try:
        task_id = await save(store, make_task("gone", "v1", 1000))
        await store.add_task_updates([update(task_id, 1001, "TASK_RUNNING")])
    finally:
        await store.close()
    backend = Backend(tmp_path / "data", port=backend.port).start()
    try:
        updates = wait_for(lambda: (u := backend.get(f"/api/history/task/{task_id}")["taskUpdates"])[-1][
            "taskState"] != "TASK_RUNNING" and u, timeout=30, what="the task's end, asked of the cluster")
        assert [u["taskState"] for u in updates] == ["TASK_RUNNING", "TASK_LOST"]  # a cluster that never ran it
        assert backend.get("/api/history/request/gone/tasks")[0]["lastTaskStatus"] == "TASK_LOST"
    finally:
        backend.close()
