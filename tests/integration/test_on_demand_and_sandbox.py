"""Run-now with args/env/runId, sandbox browse/read/download, history, pending reasons, agents and racks."""

from __future__ import annotations

from pathlib import Path

from sing_backend.local_backend import Backend, wait_for


def _finished(backend: Backend, task_id: str) -> dict:
    return wait_for(lambda: (h := backend.get(f"/api/history/task/{task_id}"))["taskUpdates"][-1]["taskState"]
                    in ("TASK_FINISHED", "TASK_FAILED") and h, what=f"{task_id} to finish")


def _run(backend: Backend, request_id: str, body: dict) -> str:
    out = backend.post(f"/api/requests/request/{request_id}/run", body)
    run_id = out["pendingRequest"]["runId"]
    tracked = wait_for(lambda: (t := backend.get(f"/api/track/run/{request_id}/{run_id}")).get("taskId") and t,
                       what=f"run {run_id} to get a task")
    return tracked["taskId"]["id"]


def test_run_now_with_args_env_and_run_id(backend: Backend):
    backend.create({"id": "job", "requestType": "ON_DEMAND", "instances": 2},
                   {"id": "v1", "command": "echo oops >&2; echo greeting=$GREETING task=$TASK_ID; printf 'arg=%s\\n'",
                    "env": {"GREETING": "hi"}, "resources": {"cpus": 0.1, "memoryMb": 32}})
    wait_for(lambda: backend.get("/api/requests/request/job")["requestDeployState"].get("activeDeploy"),
             what="on-demand deploy active")
    task_id = _run(backend, "job", {"runId": "run-1", "commandLineArgs": ["a b", "c"],
                                    "envOverrides": {"GREETING": "override"}})
    history = _finished(backend, task_id)
    assert history["taskUpdates"][-1]["taskState"] == "TASK_FINISHED"
    assert history["task"]["taskRequest"]["pendingTask"]["runId"] == "run-1"
    # Where Singularity's clients look for an ended task's sandbox: beside the task, not in it.
    assert Path(history["directory"]).is_dir() and "directory" not in history["task"]

    size = backend.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/stdout.log"})
    # Run-now arguments are appended to a shell command, each kept whole.
    text = f"greeting=override task={task_id}\narg=a b\narg=c\n"
    assert size["offset"] == len(text.encode())
    chunk = backend.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/stdout.log", "offset": 0})
    assert chunk["data"] == text and chunk["nextOffset"] == len(text.encode())
    part = backend.get(f"/api/sandbox/{task_id}/read",
                       params={"path": f"{task_id}/stdout.log", "offset": 5, "length": 3})
    assert part == {"data": text[5:8], "offset": 5, "nextOffset": 8}
    err = backend.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/stderr.log", "offset": 0})
    assert err["data"] == "oops\n"

    tracked = backend.get("/api/history/request/job/run/run-1")
    assert tracked["taskId"]["id"] == task_id


def test_sandbox_layout_browse_and_download(backend: Backend):
    task_id = _run(backend, "job", {"commandLineArgs": ["x"]})
    _finished(backend, task_id)
    root = backend.get(f"/api/sandbox/{task_id}/browse")
    assert root["currentDirectory"] == task_id
    names = {f["name"] for f in root["files"]}
    assert {"stdout.log", "stderr.log", "app", "logs"} <= names
    for f in root["files"]:
        assert set(f) == {"name", "size", "mtime", "mode"}
    app = backend.get(f"/api/sandbox/{task_id}/browse", params={"path": f"{task_id}/app"})
    assert app["currentDirectory"] == f"{task_id}/app"
    raw = backend.client.get(f"/api/sandbox/{task_id}/download", params={"path": f"{task_id}/stdout.log"})
    assert raw.status_code == 200 and b"arg=x" in raw.content


def test_sandbox_refuses_paths_that_leave_it(backend: Backend):
    task_id = backend.get("/api/history/request/job/tasks")[0]["taskId"]["id"]
    for path, why in (("../../../../etc/passwd", "must not contain '..'"),
                      (f"{task_id}/../../x", "must not contain '..'"),
                      ("/etc/passwd", "must be relative to the task's sandbox, not absolute"),
                      (f"{task_id}/stdout.log\x00.png", "contains a NUL byte")):
        r = backend.client.get(f"/api/sandbox/{task_id}/read", params={"path": path, "offset": 0})
        assert (r.status_code, r.json()["message"]) == (400, f"path: {why}"), path
    r = backend.client.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/nope.log", "offset": 0})
    assert r.status_code == 404


def test_on_demand_cap_gives_429(backend: Backend):
    backend.create({"id": "capped", "requestType": "ON_DEMAND", "instances": 1},
                   {"id": "v1", "command": "sleep 30", "resources": {"cpus": 0.1, "memoryMb": 32}})
    wait_for(lambda: backend.get("/api/requests/request/capped")["requestDeployState"].get("activeDeploy"),
             what="deploy active")
    backend.post("/api/requests/request/capped/run", {})
    r = backend.client.post("/api/requests/request/capped/run", json={})
    assert r.status_code == 429 and "capped" in r.json()["message"]
    task = wait_for(lambda: backend.active_tasks("capped"), what="capped run")[0]
    backend.delete(f"/api/tasks/task/{task['taskId']['id']}", {})


def test_pending_task_says_why_it_is_not_placed(backend: Backend):
    backend.create({"id": "huge", "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": "sleep 100", "resources": {"cpus": 0.1, "memoryMb": 20000}})
    entry = wait_for(lambda: [t for t in backend.get("/api/tasks/scheduled/request/huge")
                              if "memory" in t.get("notPlacedReason", "")], what="a not-placed reason")[0]
    assert "no agent with enough memory: needs 20000 MB" in entry["notPlacedReason"]
    assert entry["pendingTask"]["pendingTaskId"]["requestId"] == "huge"
    backend.delete("/api/requests/request/huge", {})


def test_request_task_history_is_paged(backend: Backend):
    for _ in range(3):
        _finished(backend, _run(backend, "job", {}))
    all_rows = backend.get("/api/history/request/job/tasks", params={"count": 100})
    assert len(all_rows) >= 5
    first = backend.get("/api/history/request/job/tasks", params={"count": 2, "page": 1})
    second = backend.get("/api/history/request/job/tasks", params={"count": 2, "page": 2})
    assert [r["taskId"]["id"] for r in first + second] == [r["taskId"]["id"] for r in all_rows[:4]]
    started = [r["taskId"]["startedAt"] for r in all_rows]
    assert started == sorted(started, reverse=True)


def test_state_agents_and_racks(backend: Backend):
    state = backend.get("/api/state")
    for key in ("activeTasks", "launchingTasks", "activeRequests", "cooldownRequests", "pausedRequests",
                "scheduledTasks", "pendingRequests", "lbCleanupTasks", "lbCleanupRequests", "cleaningRequests",
                "finishedRequests", "lateTasks", "futureTasks", "cleaningTasks", "activeAgents", "deadAgents",
                "decommissioningAgents", "unknownAgents", "activeRacks", "deadRacks", "decommissioningRacks",
                "unknownRacks", "numDeploys", "oldestDeploy", "activeDeploys", "overProvisionedRequests",
                "underProvisionedRequests", "hostStates", "generatedAt", "maxTaskLag", "listLateTasks"):
        assert key in state, key
    assert state["activeAgents"] == 3 and state["activeRacks"] == 2
    assert state["activeRequests"] >= 1
    agents = backend.get("/api/agents")
    assert len(agents) == 3 and {a["rackId"] for a in agents} == {"rack-1", "rack-2"}
    assert backend.get(f"/api/agents/agent/{agents[0]['id']}/details")["host"] == agents[0]["host"]
    assert [r["id"] for r in backend.get("/api/racks")] == ["rack-1", "rack-2"]


def test_base_path_and_openapi(backend: Backend):
    assert backend.client.get("/singularity/api/requests").json() == backend.get("/api/requests")
    spec = backend.get("/api/openapi.json")
    assert "/api/requests" in spec["paths"] and "/api/deploys" in spec["paths"]
    r = backend.client.get("/api/requests")
    assert r.headers["content-type"] == "application/json"


def test_task_search_across_requests(backend: Backend):
    rows = backend.get("/api/history/tasks", params={"count": 1000})
    assert {r["taskId"]["requestId"] for r in rows} >= {"job", "capped"}
    finished = backend.get("/api/history/tasks", params={"lastTaskStatus": "TASK_FINISHED", "count": 1000})
    assert finished and all(r["lastTaskStatus"] == "TASK_FINISHED" for r in finished)
    assert {r["taskId"]["requestId"] for r in finished} == {"job"}
