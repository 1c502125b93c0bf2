"""Long-running requests end to end: real processes that answer HTTP, deploys, scale, pause, bounce, kill."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from sing_backend.local_backend import Backend, pid_alive, wait_for

HTTP_SERVER = f"{sys.executable} -m http.server $PORT0 --bind 0.0.0.0"


def _ports(task: dict) -> list[int]:
    for r in task["mesosTask"]["resources"]:
        if r["name"] == "ports":
            return [x["begin"] for x in r["ranges"]["range"]]
    return []


def _serving(task: dict) -> bool:
    host, port = task["taskId"]["host"], _ports(task)[0]
    try:
        return httpx.get(f"http://{host}:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_service_tasks_answer_http_and_deploy_succeeds(backend: Backend):
    backend.create({"id": "web", "requestType": "SERVICE", "instances": 2},
                   {"id": "v1", "command": HTTP_SERVER, "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1},
                    "considerHealthyAfterRunningForSeconds": 1})
    tasks = wait_for(lambda: len(backend.active_tasks("web")) == 2 and backend.active_tasks("web"),
                     what="2 running web tasks")
    assert {t["taskId"]["instanceNo"] for t in tasks} == {1, 2}
    for task in tasks:
        wait_for(lambda task=task: _serving(task), what=f"{task['taskId']['id']} to answer HTTP")
    parent = wait_for(lambda: (p := backend.get("/api/requests/request/web"))["requestDeployState"].get(
        "activeDeploy") and p, what="deploy v1 to succeed")
    assert parent["requestDeployState"]["activeDeploy"]["deployId"] == "v1"
    assert "pendingDeploy" not in parent["requestDeployState"]
    assert backend.get("/api/history/request/web/deploy/v1")["deployResult"]["deployState"] == "SUCCEEDED"


def test_new_deploy_replaces_old_tasks_after_they_run(backend: Backend):
    old = {t["taskId"]["id"] for t in backend.active_tasks("web")}
    old_pids = [backend.task_pid(t) for t in old]
    backend.post("/api/deploys", {"deploy": {"requestId": "web", "id": "v2", "command": HTTP_SERVER,
                                             "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1},
                                             "considerHealthyAfterRunningForSeconds": 1}})
    pending = backend.get("/api/deploys/pending")
    assert [p["deployMarker"]["deployId"] for p in pending] == ["v2"]

    def switched() -> bool:
        p = backend.get("/api/requests/request/web")
        return p["requestDeployState"].get("activeDeploy", {}).get("deployId") == "v2"
    wait_for(switched, what="deploy v2 to become active")
    new = wait_for(lambda: (ts := backend.active_tasks("web", state=None)) and
                   all(t["taskId"]["deployId"] == "v2" for t in ts) and len(ts) == 2 and ts,
                   what="only v2 tasks left")
    assert not old & {t["taskId"]["id"] for t in new}
    wait_for(lambda: not any(pid_alive(p) for p in old_pids), what="old processes to exit")


def test_scale_up_and_down(backend: Backend):
    backend.put("/api/requests/request/web/scale", {"instances": 3})
    wait_for(lambda: len(backend.active_tasks("web")) == 3, what="3 running tasks")
    backend.put("/api/requests/request/web/scale", {"instances": 1})
    tasks = wait_for(lambda: (ts := backend.active_tasks("web", state=None)) and len(ts) == 1 and ts,
                     what="scale down to 1")
    assert tasks[0]["taskId"]["instanceNo"] == 1
    events = [e["eventType"] for e in backend.get("/api/history/request/web/requests")]
    assert events.count("SCALED") == 2


def test_pause_kills_and_unpause_restarts(backend: Backend):
    pid = backend.task_pid(backend.active_tasks("web")[0]["taskId"]["id"])
    parent = backend.post("/api/requests/request/web/pause", {})
    assert parent["state"] == "PAUSED"
    wait_for(lambda: not backend.active_tasks("web", state=None), what="tasks killed by pause")
    wait_for(lambda: not pid_alive(pid), what="process gone")
    assert backend.client.post("/api/requests/request/web/pause", json={}).status_code == 409
    backend.post("/api/requests/request/web/unpause", {})
    (task,) = wait_for(lambda: len(ts := backend.active_tasks("web")) == 1 and ts, what="task back after unpause")
    pending_id = backend.get(f"/api/tasks/task/{task['taskId']['id']}")["taskRequest"]["pendingTask"]["pendingTaskId"]
    assert pending_id["pendingType"] == "UNPAUSED"  # why it was started, as Singularity says it


def test_pause_without_kill_leaves_tasks_running(backend: Backend):
    task_id = backend.active_tasks("web")[0]["taskId"]["id"]
    backend.post("/api/requests/request/web/pause", {"killTasks": False})
    assert [t["taskId"]["id"] for t in backend.active_tasks("web")] == [task_id]
    assert pid_alive(backend.task_pid(task_id))
    backend.post("/api/requests/request/web/unpause", {})
    assert [t["taskId"]["id"] for t in backend.active_tasks("web")] == [task_id]


def test_bounce_replaces_every_task(backend: Backend):
    before = {t["taskId"]["id"] for t in backend.active_tasks("web")}
    backend.post("/api/requests/request/web/bounce", {})
    after = wait_for(lambda: (ts := {t["taskId"]["id"] for t in backend.active_tasks("web", state=None)})
                     and not ts & before and len(ts) == 1 and ts, what="bounce to finish")
    assert after


def test_killed_task_gets_sigterm_then_sigkill_and_is_replaced(backend: Backend):
    backend.create({"id": "stubborn", "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": "trap '' TERM; while true; do sleep 0.1; done",
                    "resources": {"cpus": 0.1, "memoryMb": 32}, "considerHealthyAfterRunningForSeconds": 0})
    task = wait_for(lambda: backend.active_tasks("stubborn") and backend.active_tasks("stubborn")[0],
                    what="stubborn worker running")
    task_id = task["taskId"]["id"]
    pid = backend.task_pid(task_id)
    cleanup = backend.delete(f"/api/tasks/task/{task_id}", {"message": "test kill", "user": "jo"})
    assert cleanup["cleanupType"] == "USER_REQUESTED"
    # Why, by whom and with what message, in the task's history from then on (as Singularity words it).
    updates = backend.get(f"/api/history/task/{task_id}")["taskUpdates"]
    assert [u.get("statusMessage") for u in updates if u["taskState"] == "TASK_CLEANING"] == [
        "USER_REQUESTED by jo - test kill"]
    assert any(c["taskId"]["id"] == task_id for c in backend.get("/api/tasks/cleaning"))
    wait_for(lambda: not pid_alive(pid), timeout=15, what="SIGKILL after the grace period")
    history = wait_for(lambda: (h := backend.get(f"/api/history/task/{task_id}"))["taskUpdates"][-1][
        "taskState"] == "TASK_KILLED" and h, what="TASK_KILLED in history")
    states = [u["taskState"] for u in history["taskUpdates"]]
    assert states[0] == "TASK_LAUNCHED" and "TASK_RUNNING" in states and "TASK_KILLING" in states
    assert states.index("TASK_RUNNING") < states.index("TASK_CLEANING") < states.index("TASK_KILLING")
    wait_for(lambda: [t for t in backend.active_tasks("stubborn") if t["taskId"]["id"] != task_id],
             what="replacement task")
    backend.delete("/api/requests/request/stubborn", {"message": "done"})
    wait_for(lambda: backend.client.get("/api/requests/request/stubborn").status_code == 404,
             what="request deleted once its tasks are gone")


@pytest.mark.parametrize("executor", [{}, {"customExecutorCmd": "sing executor"}], ids=["built-in", "custom"])
def test_a_destroy_of_a_task_being_killed_sigkills_it_at_once(backend: Backend, executor: dict[str, str]):
    """`override: true` on a task whose kill is under way (its grace period a minute long here) does not
    wait for that grace period: the task is SIGKILLed at once, as Singularity's destroy does. Run by a
    custom executor (in a process of its own), the agent stops it the hard way if it does not act first."""
    rid = f"destroyed-{len(executor)}"
    backend.create({"id": rid, "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": "trap '' TERM; while true; do sleep 0.1; done",
                    "resources": {"cpus": 0.1, "memoryMb": 32}, "considerHealthyAfterRunningForSeconds": 0,
                    "executorData": {"sigKillProcessesAfterMillis": 60_000}, **executor})
    task_id = wait_for(lambda: (ts := backend.active_tasks(rid)) and ts[0]["taskId"]["id"],
                       what="the worker running")
    backend.delete(f"/api/tasks/task/{task_id}", {"message": "slow kill"})

    def states() -> list[str]:
        return [u["taskState"] for u in backend.get(f"/api/history/task/{task_id}")["taskUpdates"]]
    wait_for(lambda: "TASK_KILLING" in states(), what="the kill under way")
    (record,) = [r for r in backend.get("/api/tasks/killed") if r["taskId"]["id"] == task_id]
    assert record["taskCleanupType"] == "USER_REQUESTED" and record["retries"] == 0  # Singularity's record
    assert record["originalTimestamp"] <= record["timestamp"]
    # It ignores SIGTERM: only the SIGKILL, a minute away, would end it.
    assert any(t["taskId"]["id"] == task_id for t in backend.active_tasks(rid, state=None))
    destroyed_at = time.monotonic()
    destroy = backend.delete(f"/api/tasks/task/{task_id}", {"override": True, "message": "now"})
    assert destroy["cleanupType"] == "USER_REQUESTED_DESTROY"
    wait_for(lambda: states()[-1] in ("TASK_KILLED", "TASK_FAILED"), timeout=15, what="the task ended by the destroy")
    assert states()[-1] == "TASK_KILLED"
    # By the executor itself: the agent's hard stop of a custom executor would come only 5 s later.
    assert time.monotonic() - destroyed_at < 4.0
    backend.delete(f"/api/requests/request/{rid}", {})
