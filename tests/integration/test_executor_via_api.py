"""The executor seen through the API: artifacts from a deploy's `uris`, memory limits, statistics, logs."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from sing_backend.local_backend import Backend, pid_alive, wait_for


def _deploy(backend: Backend, request_id: str, deploy: dict) -> None:
    backend.create({"id": request_id, "requestType": "ON_DEMAND"}, {"id": "v1", **deploy})
    wait_for(lambda: backend.get(f"/api/requests/request/{request_id}")["requestDeployState"].get("activeDeploy"),
             what="deploy")


def _run_to_end(backend: Backend, request_id: str) -> dict:
    run_id = backend.post(f"/api/requests/request/{request_id}/run", {})["pendingRequest"]["runId"]
    task_id = wait_for(lambda: backend.get(f"/api/track/run/{request_id}/{run_id}").get("taskId"), what="task")["id"]
    return wait_for(lambda: (h := backend.get(f"/api/history/task/{task_id}"))["taskUpdates"][-1]["taskState"]
                    in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED") and h, timeout=30, what="run ended")


def _running_sleeper(backend: Backend, request_id: str) -> str:
    """A run of a `sleep 60` deploy of `request_id`, once it is running: its task id."""
    _deploy(backend, request_id, {"command": "sleep 60", "resources": {"cpus": 0.01, "memoryMb": 16}})
    run_id = backend.post(f"/api/requests/request/{request_id}/run", {})["pendingRequest"]["runId"]
    return wait_for(lambda: (t := backend.get(f"/api/track/run/{request_id}/{run_id}")).get("currentState")
                    == "TASK_RUNNING" and t, what="running")["taskId"]["id"]


def _killed(backend: Backend, task_id: str) -> bool:
    return backend.get(f"/api/history/task/{task_id}")["taskUpdates"][-1]["taskState"] == "TASK_KILLED"


def test_artifact_is_fetched_verified_and_used(backend: Backend, tmp_path: Path):
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool says $1\n")
    md5 = hashlib.md5(tool.read_bytes()).hexdigest()
    _deploy(backend, "artifact", {"command": "./tool.sh hello && sh checked.sh",
                                  "resources": {"cpus": 0.01, "memoryMb": 32},
                                  "executorData": {"externalArtifacts": [
                                      {"url": tool.as_uri(), "filename": "checked.sh", "md5sum": md5}]},
                                  "uris": [{"uri": tool.as_uri(), "executable": True}]})
    history = _run_to_end(backend, "artifact")
    task_id = history["task"]["taskId"]["id"]
    messages = [u.get("statusMessage") for u in history["taskUpdates"]]
    assert history["taskUpdates"][-1]["taskState"] == "TASK_FINISHED", messages
    out = backend.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/stdout.log", "offset": 0})
    assert out["data"] == "tool says hello\ntool says\n"


def test_wrong_checksum_fails_the_task_naming_the_artifact(backend: Backend, tmp_path: Path):
    tool = tmp_path / "tool2.sh"
    tool.write_text("echo hi\n")
    _deploy(backend, "badsum", {"command": "sh tool2.sh", "resources": {"cpus": 0.01, "memoryMb": 32},
                                "executorData": {"externalArtifacts": [
                                    {"url": tool.as_uri(), "filename": "tool2.sh", "md5sum": "0" * 32}]}})
    history = _run_to_end(backend, "badsum")
    last = history["taskUpdates"][-1]
    assert last["taskState"] == "TASK_FAILED"
    assert "tool2.sh" in last.get("statusMessage", "") and "md5" in last["statusMessage"].lower()


def test_memory_limit_kills_with_a_clear_reason(backend: Backend):
    # Touches 150 MB for real (every page), then waits: well over its 64 MB.
    code = "import time; b = bytearray(150 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    hog = f'{sys.executable} -c "{code}"'
    _deploy(backend, "hog", {"command": hog, "resources": {"cpus": 0.01, "memoryMb": 64}})
    history = _run_to_end(backend, "hog")
    messages = " ".join(u.get("statusMessage", "") for u in history["taskUpdates"])
    assert "memory limit exceeded" in messages and "of 64 MB" in messages


def test_statistics_and_archived_logs(backend: Backend):
    _deploy(backend, "stats", {"command": "echo hello logs; sleep 30", "resources": {"cpus": 0.01, "memoryMb": 32}})
    run_id = backend.post("/api/requests/request/stats/run", {})["pendingRequest"]["runId"]
    task_id = wait_for(lambda: backend.get(f"/api/track/run/stats/{run_id}").get("taskId"), what="task")["id"]
    stats = wait_for(lambda: (s := backend.client.get(f"/api/tasks/task/{task_id}/statistics")).status_code == 200
                     and s.json(), what="statistics")
    assert stats["memLimitBytes"] == 32 * 1024 * 1024 and stats["memRssBytes"] > 0
    backend.delete(f"/api/tasks/task/{task_id}", {})
    logs = wait_for(lambda: backend.get(f"/api/logs/task/{task_id}"), timeout=30, what="archived logs")
    assert all("downloadUrl" in item and "key" in item for item in logs)


def test_shell_command_runs_before_the_kill(backend: Backend):
    task_id = _running_sleeper(backend, "prekill")
    backend.delete(f"/api/tasks/task/{task_id}", {"runShellCommandBeforeKill": {
        "name": "sh", "options": ["-c", "echo drained by $TASK_ID > drained.txt"]}})
    wait_for(lambda: _killed(backend, task_id), what="killed")
    out = backend.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/app/drained.txt", "offset": 0})
    assert out["data"] == f"drained by {task_id}\n"


def test_a_destroy_cuts_a_running_pre_kill_command_short(backend: Backend):
    task_id = _running_sleeper(backend, "slowdrain")
    # A drain that would take 25 s (the pre-kill command may run 30 s).
    backend.delete(f"/api/tasks/task/{task_id}", {"runShellCommandBeforeKill": {
        "name": "sh", "options": ["-c", "echo $$ > drain.pid; sleep 25; echo drained > drained.txt"]}})

    def read(name: str) -> str | None:
        r = backend.client.get(f"/api/sandbox/{task_id}/read", params={"path": f"{task_id}/app/{name}", "offset": 0})
        return r.json()["data"] if r.status_code == 200 and r.json()["data"] else None
    drain_pid = int(wait_for(lambda: read("drain.pid"), what="the pre-kill command running"))
    destroyed_at = time.monotonic()
    backend.delete(f"/api/tasks/task/{task_id}", {"override": True})
    wait_for(lambda: _killed(backend, task_id), what="killed by the destroy")
    assert time.monotonic() - destroyed_at < 5, "the destroy waited for the pre-kill command"
    assert not pid_alive(drain_pid)
    assert read("drained.txt") is None
