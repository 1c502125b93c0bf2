"""Health checks, rollback, steps and canaries, crash-loop cool-down, timed actions, agent loss."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sing_backend.local_backend import Backend, wait_for

APP = f"{sys.executable} {Path(__file__).parent.parent / 'apps' / 'webapp.py'}"
RES = {"cpus": 0.05, "memoryMb": 32, "numPorts": 1}
HC = {"uri": "/health", "startupIntervalSeconds": 1, "intervalSeconds": 1, "responseTimeoutSeconds": 1,
      "maxRetries": 1, "startupTimeoutSeconds": 10}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    env = {"SING_COOLDOWN_WINDOW_SECONDS": "4", "SING_COOLDOWN_DELAY_SECONDS": "1",
           "SING_COOLDOWN_FAILURE_THRESHOLD": "3"}
    b = Backend(tmp_path_factory.mktemp("sing"), env=env).start()
    try:
        yield b
    finally:
        b.close()


def _port(task: dict) -> int:
    return next(r for r in task["mesosTask"]["resources"] if r["name"] == "ports")["ranges"]["range"][0]["begin"]


def _get(task: dict) -> int:
    return httpx.get(f"http://{task['taskId']['host']}:{_port(task)}/", timeout=2).status_code


def _deploy_result(backend: Backend, request_id: str, deploy_id: str) -> dict:
    return wait_for(lambda: (d := backend.get(f"/api/history/request/{request_id}/deploy/{deploy_id}"))
                    .get("deployResult") and d["deployResult"], timeout=30, what=f"{deploy_id} result")


def test_health_checked_deploy_succeeds_and_records_results(backend: Backend):
    backend.create({"id": "hc", "requestType": "SERVICE", "instances": 2},
                   {"id": "v1", "command": f"{APP} ok", "resources": RES, "healthcheck": HC})
    assert _deploy_result(backend, "hc", "v1")["deployState"] == "SUCCEEDED"
    task = backend.active_tasks("hc")[0]
    results = backend.get(f"/api/history/task/{task['taskId']['id']}")["healthcheckResults"]
    assert results and results[-1]["statusCode"] == 200
    ids = backend.get("/api/tasks/ids/request/hc")
    assert len(ids["healthy"]) == 2 and not ids["notYetHealthy"]


def test_failing_health_check_rolls_back_while_old_tasks_keep_serving(backend: Backend):
    old = backend.active_tasks("hc")
    backend.post("/api/deploys", {"deploy": {"requestId": "hc", "id": "v2", "command": f"{APP} 500",
                                             "resources": RES, "healthcheck": HC}})
    failed_requests = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for task in old:
            try:
                failed_requests += _get(task) != 200
            except httpx.HTTPError:
                failed_requests += 1
        d = backend.get("/api/history/request/hc/deploy/v2")
        if d.get("deployResult"):
            break
        time.sleep(0.05)
    result = d["deployResult"]
    assert result["deployState"] == "FAILED"
    assert result["deployFailures"][0]["reason"] == "TASK_FAILED_HEALTH_CHECKS"
    assert "500" in result["deployFailures"][0]["message"]
    assert failed_requests == 0
    assert backend.get("/api/requests/request/hc")["requestDeployState"]["activeDeploy"]["deployId"] == "v1"
    wait_for(lambda: {t["taskId"]["id"] for t in backend.active_tasks("hc", state=None)}
             == {t["taskId"]["id"] for t in old}, what="v2 tasks gone, v1 tasks untouched")


def test_step_deploy_keeps_capacity(backend: Backend):
    backend.post("/api/deploys", {"deploy": {"requestId": "hc", "id": "v3", "command": f"{APP} ok",
                                             "resources": RES, "healthcheck": HC, "deployInstanceCountPerStep": 1}})
    lowest = 2
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        ids = backend.get("/api/tasks/ids/request/hc")
        lowest = min(lowest, len(ids["healthy"]))
        d = backend.get("/api/history/request/hc/deploy/v3")
        if d.get("deployResult"):
            break
        time.sleep(0.05)
    assert d["deployResult"]["deployState"] == "SUCCEEDED"
    assert lowest >= 2, "capacity dropped during the step deploy"
    wait_for(lambda: {t["taskId"]["deployId"] for t in backend.active_tasks("hc", state=None)} == {"v3"},
             what="only v3 tasks")


def test_canary_stops_at_first_group_when_it_fails(backend: Backend):
    backend.post("/api/deploys", {"deploy": {
        "requestId": "hc", "id": "v4", "command": f"{APP} 500", "resources": RES, "healthcheck": HC,
        "canaryDeploySettings": {"enableCanaryDeploy": True, "instanceGroupSize": 1, "acceptanceMode": "TIMED",
                                 "waitMillisBetweenGroups": 500}}})
    result = _deploy_result(backend, "hc", "v4")
    assert result["deployState"] == "FAILED"
    launched = [t for t in backend.get("/api/history/request/hc/tasks", params={"deployId": "v4"})]
    assert len(launched) == 1, "only the first canary group may run"
    assert "step 1" in result["message"]


def test_hanging_health_check_never_stalls_the_scheduler(backend: Backend):
    backend.create({"id": "hang", "requestType": "SERVICE", "instances": 1},
                   {"id": "v1", "command": f"{APP} hang", "resources": RES,
                    "healthcheck": {**HC, "responseTimeoutSeconds": 2, "maxRetries": 5}})
    wait_for(lambda: backend.active_tasks("hang"), what="hanging service running")
    backend.create({"id": "quick", "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": "true", "resources": {"cpus": 0.01, "memoryMb": 8}})
    wait_for(lambda: backend.get("/api/requests/request/quick")["requestDeployState"].get("activeDeploy"),
             what="deploy")
    start = time.monotonic()
    backend.post("/api/requests/request/quick/run", {"runId": "q1"})
    wait_for(lambda: backend.get("/api/track/run/quick/q1").get("taskId"), what="run-now placed")
    assert time.monotonic() - start < 2
    backend.delete("/api/requests/request/hang", {})


def test_crash_loop_enters_and_leaves_cooldown(backend: Backend, tmp_path: Path):
    counter = tmp_path / "runs"
    # Fails the first 4 runs at once, then stays up: failures stop, so cooldown ends by itself.
    command = (f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
               f"if [ $n -ge 4 ]; then exec sleep 1000; fi; sleep 0.3; exit 1")
    backend.create({"id": "crashy", "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": command, "resources": {"cpus": 0.01, "memoryMb": 8},
                    "considerHealthyAfterRunningForSeconds": 0})
    wait_for(lambda: backend.get("/api/requests/request/crashy")["state"] == "SYSTEM_COOLDOWN",
             what="cooldown")
    assert backend.get("/api/requests/cooldown")[0]["request"]["id"] == "crashy"
    wait_for(lambda: backend.get("/api/requests/request/crashy")["state"] == "ACTIVE", timeout=30,
             what="cooldown to end once failures stop")
    events = [e["eventType"] for e in backend.get("/api/history/request/crashy/requests")]
    assert "ENTERED_COOLDOWN" in events and "EXITED_COOLDOWN" in events
    wait_for(lambda: backend.active_tasks("crashy"), what="worker finally running")


def test_exit_cooldown_by_hand(backend: Backend):
    backend.create({"id": "doomed", "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": "sleep 0.3; exit 1", "resources": {"cpus": 0.01, "memoryMb": 8},
                    "considerHealthyAfterRunningForSeconds": 0})
    wait_for(lambda: backend.get("/api/requests/request/doomed")["state"] == "SYSTEM_COOLDOWN", what="cooldown")
    parent = backend.post("/api/requests/request/doomed/exit-cooldown", {"message": "fixed upstream"})
    assert parent["state"] == "ACTIVE"
    backend.post("/api/requests/request/doomed/pause", {})
    assert backend.client.post("/api/requests/request/doomed/exit-cooldown", json={}).status_code == 409


def test_timed_pause_and_scale_revert_themselves(backend: Backend):
    backend.create({"id": "timed", "requestType": "WORKER", "instances": 1},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.01, "memoryMb": 8},
                    "considerHealthyAfterRunningForSeconds": 0})
    wait_for(lambda: backend.active_tasks("timed"), what="worker")
    parent = backend.put("/api/requests/request/timed/scale", {"instances": 2, "durationMillis": 1500})
    expiring = parent["expiringScale"]  # as Singularity's SingularityExpiringScale
    assert expiring["expiringAPIRequestObject"]["durationMillis"] == 1500 and expiring["revertToInstances"] == 1
    assert expiring["requestId"] == "timed" and expiring["actionId"] and expiring["startMillis"] > 0
    wait_for(lambda: len(backend.active_tasks("timed")) == 2, what="scaled to 2")
    wait_for(lambda: backend.get("/api/requests/request/timed")["request"]["instances"] == 1, what="scale reverts")
    wait_for(lambda: len(backend.active_tasks("timed", state=None)) == 1, what="back to 1 task")
    assert backend.client.put("/api/requests/request/timed/scale", json={"instances": 0}).status_code == 400
    backend.post("/api/requests/request/timed/pause", {"durationMillis": 1000})
    assert backend.client.put("/api/requests/request/timed/scale", json={"instances": 3}).status_code == 409
    wait_for(lambda: backend.get("/api/requests/request/timed")["state"] == "ACTIVE", what="pause expires")
    events = [e["eventType"] for e in backend.get("/api/history/request/timed/requests")]
    assert "SCALE_REVERTED" in events and events.count("UNPAUSED") == 1


def test_lost_agent_tasks_move_elsewhere(backend: Backend):
    backend.create({"id": "mover", "requestType": "WORKER", "instances": 2, "agentPlacement": "SEPARATE_BY_REQUEST"},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.01, "memoryMb": 8},
                    "considerHealthyAfterRunningForSeconds": 0})
    tasks = wait_for(lambda: len(ts := backend.active_tasks("mover")) == 2 and ts, what="2 movers")
    victim = tasks[0]["agentId"]["value"]
    backend.post(f"/api/local/agents/{victim}/lose")
    history = wait_for(lambda: (h := backend.get(f"/api/history/task/{tasks[0]['taskId']['id']}"))
                       ["taskUpdates"][-1]["taskState"] == "TASK_LOST" and h, what="task lost")
    assert history["taskUpdates"][-1]["taskState"] == "TASK_LOST"
    moved = wait_for(lambda: len(ts := backend.active_tasks("mover")) == 2 and ts, what="replacement")
    assert victim not in {t["agentId"]["value"] for t in moved}
    assert backend.get(f"/api/agents/agent/{victim}/details")["currentState"]["state"] == "DEAD"


@pytest.mark.parametrize(("deploy", "fragment"), [
    ({"healthcheck": {"intervalSeconds": 5}}, "healthcheck"),
    ({"healthcheck": {"uri": "/h", "portIndex": 3}}, "healthcheck.portIndex"),
    ({"healthcheck": {"uri": "/h", "startupTimeoutSeconds": -1}}, "startupTimeoutSeconds"),
    ({"healthcheck": {"uri": "/h", "failureStatusCodes": [500, 99999]}},
     "healthcheck.failureStatusCodes: 1: 99999 is not an HTTP status code"),
    ({"canaryDeploySettings": {"enableCanaryDeploy": True, "acceptanceMode": "CHECKS"}}, "acceptanceMode"),
    ({"canaryDeploySettings": {"enableCanaryDeploy": True, "instanceGroupSize": 0}}, "instanceGroupSize"),
])
def test_bad_health_and_canary_settings(backend: Backend, deploy: dict, fragment: str):
    body = {"deploy": {"requestId": "timed", "id": "bad", "command": "true", "resources": RES, **deploy}}
    r = backend.client.post("/api/deploys", json=body)
    assert r.status_code == 400 and fragment in r.json()["message"], r.text


def test_advancing_a_deploy_that_is_not_pending(backend: Backend):
    r = backend.client.post("/api/deploys/update", json={"requestId": "timed", "deployId": "v1",
                                                         "targetActiveInstances": 1})
    assert r.status_code == 400 and "deployId" in r.json()["message"]


def test_cancelling_an_expiry_keeps_the_change(backend: Backend):
    backend.put("/api/requests/request/timed/scale", {"instances": 2, "durationMillis": 1500})
    parent = backend.delete("/api/requests/request/timed/scale")
    assert "expiringScale" not in parent and parent["request"]["instances"] == 2
    wait_for(lambda: len(backend.active_tasks("timed")) == 2, what="2 tasks")
    time.sleep(2)  # past the cancelled expiry: nothing may revert
    assert backend.get("/api/requests/request/timed")["request"]["instances"] == 2
    assert backend.client.delete("/api/requests/request/timed/scale").status_code == 404
    backend.put("/api/requests/request/timed/skip-healthchecks", {"skipHealthchecks": True, "durationMillis": 800})
    wait_for(lambda: "skipHealthchecks" not in backend.get("/api/requests/request/timed")["request"],
             what="skip-healthchecks reverted")
