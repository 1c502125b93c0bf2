"""In mesos mode a task's sandbox is found by asking its agent (`/state`), as Singularity does: the
sandbox API and the health checks of a result file go through the agent's files API."""

from __future__ import annotations

from sing_backend.agent_sandbox import sandboxes_in_state
from sing_backend.local_backend import wait_for
from tests.ha.test_failover import one_leader

RES = {"cpus": 0.01, "memoryMb": 8}


def _names(listing: dict) -> set[str]:
    return {f["name"] for f in listing["files"]}


def test_sandbox_and_result_file_checks_go_through_the_agent(ha: dict):
    b = ha["backend"]("a")
    one_leader([b])
    b.post("/api/requests", {"id": "svc", "requestType": "SERVICE", "instances": 1})
    b.post("/api/deploys", {"deploy": {
        "requestId": "svc", "id": "v1", "command": "echo ready > healthy; echo hello; exec sleep 1000",
        "resources": RES, "healthcheck": {"healthcheckResultFilePath": "healthy", "startupTimeoutSeconds": 20}}})
    wait_for(lambda: b.get("/api/requests/request/svc")["requestDeployState"].get("activeDeploy"), timeout=30,
             what="v1 healthy through its result file, read on the agent")
    (task,) = b.active_tasks("svc")
    tid = task["taskId"]["id"]
    assert any(r.get("statusCode") == 200 for r in b.get(f"/api/history/task/{tid}")["healthcheckResults"])

    root = b.get(f"/api/sandbox/{tid}/browse")
    assert root["currentDirectory"] == tid and "app" in _names(root)
    assert "healthy" in _names(b.get(f"/api/sandbox/{tid}/browse", params={"path": f"{tid}/app"}))
    read = b.get(f"/api/sandbox/{tid}/read", params={"path": f"{tid}/app/healthy", "offset": 0})
    assert read["data"] == "ready\n"
    r = b.client.get(f"/api/sandbox/{tid}/read", params={"path": f"{tid}/app/nothing", "offset": 0})
    assert r.status_code == 404

    # A file that never appears fails the deploy, through the same agent: the check is not vacuous.
    b.post("/api/deploys", {"deploy": {
        "requestId": "svc", "id": "v2", "command": "exec sleep 1000", "resources": RES,
        "healthcheck": {"healthcheckResultFilePath": "healthy", "startupTimeoutSeconds": 2, "intervalSeconds": 1}}})
    result = wait_for(lambda: b.get("/api/history/request/svc/deploy/v2").get("deployResult"), timeout=60,
                      what="v2 failing its health checks")
    assert result["deployState"] == "FAILED"
    assert result["deployFailures"][0]["reason"] == "TASK_FAILED_HEALTH_CHECKS"
    assert b.get("/api/requests/request/svc")["requestDeployState"]["activeDeploy"]["deployId"] == "v1"


def test_a_finished_tasks_sandbox_is_read_through_its_agent(ha: dict):
    b = ha["backend"]("a")
    one_leader([b])
    b.post("/api/requests", {"id": "job", "requestType": "ON_DEMAND"})
    b.post("/api/deploys", {"deploy": {"requestId": "job", "id": "v1", "command": "echo done > out.txt",
                                       "resources": RES}})
    wait_for(lambda: b.get("/api/requests/request/job")["requestDeployState"].get("activeDeploy"), timeout=30,
             what="job deployed")
    b.post("/api/requests/request/job/run", {"runId": "once"})
    finished = wait_for(lambda: [t for t in b.get("/api/history/request/job/tasks")
                                 if t.get("lastTaskStatus") == "TASK_FINISHED"], timeout=30, what="the run finished")
    tid = finished[0]["taskId"]["id"]
    read = b.get(f"/api/sandbox/{tid}/read", params={"path": f"{tid}/app/out.txt", "offset": 0})
    assert read["data"] == "done\n"


def test_a_sandbox_is_found_in_an_agents_state_while_the_task_runs_and_after():
    state = {"frameworks": [{"executors": [
        {"id": "a", "directory": "/s/a", "tasks": [{"id": "a"}]},
        {"id": "exec-1", "directory": "/s/e", "tasks": [], "queued_tasks": [{"id": "b"}]},
        {"id": "starting", "directory": "", "tasks": [{"id": "f"}]},
    ], "completed_executors": [{"id": "x", "directory": "/s/x", "tasks": [], "completed_tasks": [{"id": "c"}]}]}],
        "completed_frameworks": [{"executors": [], "completed_executors": [{"id": "d", "directory": "/s/d"}]}]}
    assert sandboxes_in_state(state) == {"a": "/s/a", "exec-1": "/s/e", "b": "/s/e", "x": "/s/x", "c": "/s/x",
                                         "d": "/s/d"}
