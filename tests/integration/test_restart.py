"""A backend restart keeps requests, deploys and history; no task is duplicated or left orphaned."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

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


def test_a_deploy_saved_before_its_artifacts_were_checked_stops_only_its_own_tasks(tmp_path: Path):
    """Deploys are checked when they are made; one saved before (by an older version) with an artifact
    the executor cannot fetch must not stop the scheduling rounds: its task stays pending, saying why,
    and every other task is launched. On a full cluster too: the task that cannot be built is not
    placed, so it holds no room (one agent with room for one task here, and it asks first)."""
    from sing_backend.state.sqlite import SqliteStateStore

    env = {"SING_AGENTS__COUNT": "1", "SING_AGENTS__CPUS": "1"}
    backend = Backend(tmp_path / "data", env=env).start()
    try:
        res = {"cpus": 1, "memoryMb": 16}
        backend.create({"id": "old", "requestType": "ON_DEMAND"}, {"id": "v1", "command": "true", "resources": res})
        backend.create({"id": "good", "requestType": "ON_DEMAND"}, {"id": "v1", "command": "true", "resources": res})
        for rid in ("old", "good"):
            wait_for(lambda r=rid: backend.get(f"/api/requests/request/{r}")["requestDeployState"].get("activeDeploy"),
                     what=f"{rid} deployed")
        backend.stop()
        store = SqliteStateStore(tmp_path / "data" / "state.db")
        doc = store.load("deploys")["old/v1"]
        doc["deploy"]["uris"] = [{"uri": "ftp://example.invalid/x.tar"}]
        # And what else has been refused since: still loaded as it was saved.
        doc["deploy"]["env"] = {"A=B": "1"}
        doc["deploy"]["healthcheck"] = {"uri": "/h", "portNumber": 8080, "failureStatusCodes": [0]}
        store.put("deploys", "old/v1", doc)
        store.close()

        backend = Backend(tmp_path / "data", port=backend.port, env=env).start()
        backend.post("/api/requests/request/old/run", {})
        backend.post("/api/requests/request/good/run", {})
        wait_for(lambda: backend.get("/api/history/request/good/tasks"), what="good's run launched")
        (pending,) = wait_for(lambda: [p for p in backend.get("/api/tasks/scheduled")
                                       if p["pendingTask"]["pendingTaskId"]["requestId"] == "old"
                                       and "cannot be launched" in (p.get("notPlacedReason") or "")],
                              what="old's run saying why it waits")
        assert pending["notPlacedReason"] == ("cannot be launched: uris: artifact 'x.tar': unsupported URL scheme "
                                              "'ftp' (http, https, file or s3)")
        # And the rounds go on: a second run of the good request launches too.
        backend.post("/api/requests/request/good/run", {})
        wait_for(lambda: len(backend.get("/api/history/request/good/tasks")) == 2, what="good's second run")
        assert backend.get("/api/history/request/old/tasks") == []
    finally:
        backend.close()


def test_timed_actions_saved_without_an_action_id_get_one_that_stays_the_same(tmp_path: Path):
    """Timed actions and machine changes saved by an older version have no actionId; they are shown with
    one derived from what they are, the same at every read and after a restart."""
    from sing_backend.state.sqlite import SqliteStateStore

    backend = Backend(tmp_path / "data").start()
    try:
        backend.post("/api/requests", {"id": "old-pause", "requestType": "ON_DEMAND"})
        backend.post("/api/requests/request/old-pause/pause", {"durationMillis": 3_600_000})
        agent = backend.get("/api/agents")[0]["id"]
        backend.post(f"/api/agents/agent/{agent}/freeze", {"durationMillis": 3_600_000, "revertToState": "ACTIVE"})
        backend.stop()
        store = SqliteStateStore(tmp_path / "data" / "state.db")
        request_doc = store.load("requests")["old-pause"]
        del request_doc["expiring"]["pause"]["actionId"]
        store.put("requests", "old-pause", request_doc)
        change = store.load("machineExpiring")[f"agent/{agent}"]
        del change["actionId"]
        store.put("machineExpiring", f"agent/{agent}", change)
        store.close()

        ids = []
        for _ in range(2):
            backend = Backend(tmp_path / "data", port=backend.port).start()
            pause_id = backend.get("/api/requests/request/old-pause")["expiringPause"]["actionId"]
            [expiring] = backend.get("/api/agents/expiring")
            assert pause_id and expiring["actionId"]
            assert backend.get("/api/requests/request/old-pause")["expiringPause"]["actionId"] == pause_id
            ids.append((pause_id, expiring["actionId"]))
            backend.stop()
        assert ids[0] == ids[1]
    finally:
        backend.close()


@pytest.mark.parametrize("ignored", [False, True], ids=["foreground", "background-job"])
def test_ctrl_c_stops_the_backend_cleanly(tmp_path: Path, ignored: bool):
    """Ctrl-C in the terminal reaches the backend's whole process group, its history processes included:
    it stops without a traceback from any of them, and what history was handed is kept. Started as a
    background job (SIGINT ignored from the start), an interrupt stops it the same way."""
    import os
    import subprocess
    import sys

    b = Backend(tmp_path / "data")
    b.data_dir.mkdir(parents=True)
    with open(b.log_path, "wb") as log:
        b.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "sing_backend.cli", "backend", "--port", str(b.port), "--data-dir",
             str(b.data_dir)], env=b.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None)
    try:
        wait_for(b._up, timeout=30, what="the backend up")
        b.post("/api/requests", {"id": "kept", "requestType": "ON_DEMAND"})
        wait_for(lambda: b.get("/api/history/request/kept/requests"), what="its creation in history")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = b.log_path.read_text()
    assert "Traceback" not in output, output[-3000:]

    again = Backend(tmp_path / "data", port=b.port).start()
    try:
        assert [e["eventType"] for e in again.get("/api/history/request/kept/requests")] == ["CREATED"]
    finally:
        again.close()
