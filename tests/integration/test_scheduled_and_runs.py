"""Scheduled jobs firing on a real seconds-level Quartz schedule, one run at a time, retries, time limits,
overdue runs, and no run lost or doubled across a backend crash."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sing_backend.local_backend import Backend, wait_for

RES = {"cpus": 0.01, "memoryMb": 8}


def _runs(backend: Backend, request_id: str) -> list[dict]:
    return backend.get(f"/api/history/request/{request_id}/tasks", params={"count": 1000, "orderDirection": "ASC"})


def _finished_runs(backend: Backend, request_id: str) -> list[dict]:
    return [r for r in _runs(backend, request_id) if r.get("lastTaskStatus") in ("TASK_FINISHED", "TASK_FAILED",
                                                                                   "TASK_KILLED", "TASK_LOST")]


def _deploy(backend: Backend, request: dict, deploy: dict) -> None:
    backend.create(request, deploy)
    wait_for(lambda: backend.get(f"/api/requests/request/{request['id']}")["requestDeployState"].get("activeDeploy"),
             what="deploy active")


def test_quartz_seconds_schedule_fires_several_times(backend: Backend):
    _deploy(backend, {"id": "tick", "requestType": "SCHEDULED", "quartzSchedule": "*/2 * * * * ?"},
            {"id": "v1", "command": "echo tick $TASK_ID", "resources": RES})
    parent = backend.get("/api/requests/request/tick")
    assert parent["nextRunAt"] > parent["requestDeployState"]["activeDeploy"]["timestamp"] - 2000
    assert parent["nextRunAt"] % 2000 == 0, "fires on even seconds"
    runs = wait_for(lambda: len(r := _finished_runs(backend, "tick")) >= 3 and r, timeout=20, what="3 runs")
    assert all(r["lastTaskStatus"] == "TASK_FINISHED" for r in runs)
    fire_times = [backend.get(f"/api/history/task/{r['taskId']['id']}")["task"]["taskRequest"]["pendingTask"]
                  ["pendingTaskId"]["nextRunAt"] for r in runs]
    assert len(set(fire_times)) == len(fire_times), "no fire time ran twice"
    assert all(t % 2000 == 0 for t in fire_times)


def test_runs_never_overlap_and_missed_fire_times_are_skipped(backend: Backend):
    _deploy(backend, {"id": "slow", "requestType": "SCHEDULED", "quartzSchedule": "* * * * * ?"},
            {"id": "v1", "command": "sleep 2.5", "resources": RES})
    runs = wait_for(lambda: len(r := _finished_runs(backend, "slow")) >= 2 and r, timeout=30, what="2 slow runs")
    spans = []
    for r in runs:
        updates = backend.get(f"/api/history/task/{r['taskId']['id']}")["taskUpdates"]
        spans.append((updates[0]["timestamp"], updates[-1]["timestamp"]))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "a run started before the previous one ended"
    assert len(backend.active_tasks("slow", state=None)) <= 1
    messages = [e.get("message", "") for e in backend.get("/api/history/request/slow/requests")]
    assert any("previous run was still going" in m for m in messages)
    r = backend.client.post("/api/requests/request/slow/run", json={})
    if backend.active_tasks("slow", state=None):
        assert r.status_code in (200, 409)
    backend.delete("/api/requests/request/slow", {})


def test_on_demand_failures_retry_with_the_same_arguments(backend: Backend):
    _deploy(backend, {"id": "flaky", "requestType": "ON_DEMAND", "numRetriesOnFailure": 2},
            {"id": "v1", "command": "echo \"$@\"; exit 1", "arguments": [], "shell": True, "resources": RES})
    backend.post("/api/requests/request/flaky/run", {"runId": "r-1", "commandLineArgs": ["--day", "mon"]})
    runs = wait_for(lambda: len(r := _finished_runs(backend, "flaky")) == 3 and r, timeout=20, what="1 run + 2 retries")
    for r in runs:
        task = backend.get(f"/api/history/task/{r['taskId']['id']}")["task"]
        assert task["taskRequest"]["pendingTask"]["cmdLineArgsList"] == ["--day", "mon"]
        assert task["taskRequest"]["pendingTask"]["runId"] == "r-1"
    time.sleep(1)  # nothing more may come: the retries are used up
    assert len(_runs(backend, "flaky")) == 3


def test_execution_time_limit_kills_and_expected_runtime_marks_overdue(backend: Backend):
    _deploy(backend, {"id": "capped", "requestType": "ON_DEMAND", "taskExecutionTimeLimitMillis": 800,
                      "scheduledExpectedRuntimeMillis": 300},
            {"id": "v1", "command": "sleep 60", "resources": RES})
    backend.post("/api/requests/request/capped/run", {"runId": "long"})
    task = wait_for(lambda: backend.active_tasks("capped") and backend.active_tasks("capped")[0], what="run")
    wait_for(lambda: "overdueSince" in backend.get(f"/api/tasks/task/{task['taskId']['id']}"),
             what="run marked overdue")
    history = wait_for(lambda: (h := backend.get(f"/api/history/task/{task['taskId']['id']}"))["taskUpdates"][-1]
                       ["taskState"] == "TASK_KILLED" and h, what="killed at its time limit")
    assert history["taskUpdates"][-1]["taskState"] == "TASK_KILLED"


def test_invalid_schedules_are_refused_and_nothing_is_stored(backend: Backend):
    for body, fragment in (({"schedule": "0 0 32 * *"}, "day-of-month"),
                           ({"quartzSchedule": "0 0 0 30 2 ?"}, "never fires"),
                           ({"schedule": "0 2 * * *", "scheduleTimeZone": "Nowhere/Land"}, "scheduleTimeZone")):
        r = backend.client.post("/api/requests", json={"id": "badcron", "requestType": "SCHEDULED", **body})
        assert r.status_code == 400 and fragment in r.json()["message"], r.text
    assert backend.client.get("/api/requests/request/badcron").status_code == 404


def test_no_scheduled_run_is_lost_or_doubled_across_a_crash(tmp_path: Path):
    backend = Backend(tmp_path / "data").start()
    try:
        _deploy(backend, {"id": "steady", "requestType": "SCHEDULED", "quartzSchedule": "*/2 * * * * ?"},
                {"id": "v1", "command": "true", "resources": RES})
        wait_for(lambda: len(_finished_runs(backend, "steady")) >= 2, timeout=20, what="runs before the crash")
        backend.stop(signal.SIGKILL)
        backend = Backend(tmp_path / "data", port=backend.port).start()
        before = len(_finished_runs(backend, "steady"))
        wait_for(lambda: len(_finished_runs(backend, "steady")) >= before + 2, timeout=20,
                 what="runs after the restart")
        fire_times = [backend.get(f"/api/history/task/{r['taskId']['id']}")["task"]["taskRequest"]["pendingTask"]
                      ["pendingTaskId"]["nextRunAt"] for r in _runs(backend, "steady")]
        assert len(fire_times) == len(set(fire_times)), "a fire time ran twice"
    finally:
        backend.close()
