"""Agents and racks (freeze, decommission, activate), deploy cancel and failure, kill with replacement."""

from __future__ import annotations

from sing_backend.local_backend import Backend, pid_alive, wait_for


def _agent_of(backend: Backend, request_id: str) -> set[str]:
    return {t["agentId"]["value"] for t in backend.active_tasks(request_id)}


def test_frozen_agent_gets_no_new_tasks(backend: Backend):
    agents = [a["id"] for a in backend.get("/api/agents")]
    frozen = backend.post(f"/api/agents/agent/{agents[0]}/freeze", {"message": "maintenance"})
    assert frozen["currentState"]["state"] == "FROZEN" and frozen["currentState"]["message"] == "maintenance"
    assert backend.client.post(f"/api/agents/agent/{agents[0]}/freeze", json={}).status_code == 409
    backend.create({"id": "spread", "requestType": "WORKER", "instances": 4},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.1, "memoryMb": 16},
                    "considerHealthyAfterRunningForSeconds": 0})
    wait_for(lambda: len(backend.active_tasks("spread")) == 4, what="4 workers")
    assert agents[0] not in _agent_of(backend, "spread")
    backend.post(f"/api/agents/agent/{agents[0]}/activate", {})
    assert backend.get(f"/api/agents/agent/{agents[0]}/details")["currentState"]["state"] == "ACTIVE"


def test_decommission_replaces_tasks_elsewhere_then_kills_them(backend: Backend):
    victim = sorted(_agent_of(backend, "spread"))[0]
    old = [t for t in backend.active_tasks("spread") if t["agentId"]["value"] == victim]
    pids = [backend.task_pid(t["taskId"]["id"]) for t in old]
    backend.post(f"/api/agents/agent/{victim}/decommission", {"message": "retiring"})
    wait_for(lambda: backend.get(f"/api/agents/agent/{victim}/details")["currentState"]["state"] == "DECOMMISSIONED",
             what="agent decommissioned")
    tasks = wait_for(lambda: len(ts := backend.active_tasks("spread")) == 4 and ts, what="4 workers again")
    assert victim not in {t["agentId"]["value"] for t in tasks}
    wait_for(lambda: not any(pid_alive(p) for p in pids), what="old processes gone")
    assert backend.get("/api/state")["decommissioningAgents"] == 0
    backend.post(f"/api/agents/agent/{victim}/activate", {})


def test_rack_freeze_and_unknown_machines(backend: Backend):
    rack = backend.post("/api/racks/rack/rack-2/freeze", {})
    assert rack["currentState"]["state"] == "FROZEN"
    assert all(a["currentState"]["state"] == "FROZEN" for a in backend.get("/api/agents") if a["rackId"] == "rack-2")
    backend.post("/api/racks/rack/rack-2/activate", {})
    assert backend.client.post("/api/racks/rack/nope/freeze", json={}).status_code == 404
    assert backend.client.post("/api/agents/agent/nope/freeze", json={}).status_code == 404
    assert backend.client.post("/api/racks/rack/rack-1/explode", json={}).status_code == 400


def test_kill_with_wait_for_replacement(backend: Backend):
    task_id = backend.active_tasks("spread")[0]["taskId"]["id"]
    pid = backend.task_pid(task_id)
    cleanup = backend.delete(f"/api/tasks/task/{task_id}", {"waitForReplacementTask": True})
    assert cleanup["cleanupType"] == "USER_REQUESTED_TASK_BOUNCE"
    wait_for(lambda: not pid_alive(pid), what="old task killed after its replacement runs")
    assert len(backend.active_tasks("spread")) == 4


def test_cancel_pending_deploy_keeps_the_old_one(backend: Backend):
    backend.post("/api/deploys", {"deploy": {"requestId": "spread", "id": "v2", "command": "sleep 1000",
                                             "resources": {"cpus": 0.1, "memoryMb": 16},
                                             "considerHealthyAfterRunningForSeconds": 600}})
    wait_for(lambda: any(t["taskId"]["deployId"] == "v2" for t in backend.active_tasks("spread")),
             what="v2 tasks started")
    parent = backend.delete("/api/deploys/deploy/v2/request/spread")
    assert parent["requestDeployState"]["activeDeploy"]["deployId"] == "v1"
    assert "pendingDeploy" not in parent["requestDeployState"]
    wait_for(lambda: all(t["taskId"]["deployId"] == "v1" for t in backend.active_tasks("spread", state=None)),
             what="v2 tasks killed")
    result = backend.get("/api/history/request/spread/deploy/v2")["deployResult"]
    assert result["deployState"] == "CANCELED"


def test_failing_deploy_fails_and_old_tasks_keep_running(backend: Backend):
    before = {t["taskId"]["id"] for t in backend.active_tasks("spread")}
    backend.post("/api/deploys", {"deploy": {"requestId": "spread", "id": "v3", "command": "exit 3",
                                             "resources": {"cpus": 0.1, "memoryMb": 16}}})
    result = wait_for(lambda: (d := backend.get("/api/history/request/spread/deploy/v3")).get("deployResult")
                      and d["deployResult"], what="deploy v3 result")
    assert result["deployState"] == "FAILED"
    assert result["deployFailures"][0]["reason"] == "TASK_FAILED_ON_STARTUP"
    failed = result["deployFailures"][0]["taskId"]  # the task's own id object: host and rack as they are
    assert failed["host"].startswith("127.0.0.") and failed["rackId"].startswith("rack-"), failed
    assert failed == backend.get(f"/api/history/task/{failed['id']}")["task"]["taskId"]
    # The failed deploy's tasks are killed; the old ones were never touched.
    wait_for(lambda: {t["taskId"]["id"] for t in backend.active_tasks("spread", state=None)} == before,
             what="only the old tasks left")
    deploys = backend.get("/api/history/request/spread/deploys")
    assert {d["deployMarker"]["deployId"] for d in deploys} >= {"v1", "v2", "v3"}
