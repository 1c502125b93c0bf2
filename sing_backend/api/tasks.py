"""/api/tasks and /api/track: active, scheduled and cleaning tasks; kill."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from ..errors import not_found
from ..models.actions import KillTaskRequest
from ..models.common import NOTE_STATES, TERMINAL_TASK_STATES
from ..runtime import Runtime
from ..scheduler.entities import TaskEntry
from .deps import runtime
from .responses import cached_list, json_response
from .views import pending_task_request, task_ids_for_request

router = APIRouter(tags=["tasks"])


@router.get("/tasks/active", summary="Every active task")
async def active(http: Request) -> Response:
    tasks = runtime(http).scheduler.tasks
    return await cached_list(http, "tasks/active", lambda: [t.task for t in tasks.values()])


@router.get("/tasks/active/ids", summary="Ids of every active task")
async def active_ids(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response([t.tid.wire() for t in rt.scheduler.tasks.values()])


@router.get("/tasks/active/states", summary="Last state of every active task")
async def active_states(http: Request) -> Response:
    tasks = runtime(http).scheduler.tasks
    return await cached_list(http, "tasks/active/states",
                             lambda: [{"taskId": t.tid.wire(), "taskState": t.state} for t in tasks.values()])


@router.get("/tasks/active/agent/{agentId}", summary="Active tasks on one agent")
@router.get("/tasks/active/slave/{agentId}", include_in_schema=False)
async def active_on_agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    return json_response([t.task for t in rt.scheduler.tasks.values() if t.agent_id == agentId])


@router.get("/tasks/ids/request/{requestId}", summary="Task ids of a request, by state")
async def ids_for_request(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    rt.scheduler.get_request(requestId)
    return json_response(task_ids_for_request(rt.scheduler, requestId))


@router.get("/tasks/scheduled", summary="Pending tasks, each with why it is not placed yet")
async def scheduled(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    s = rt.scheduler
    return json_response([r for p in list(s.pending) if (r := pending_task_request(s, p))])


@router.get("/tasks/scheduled/ids", summary="Pending task ids")
async def scheduled_ids(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response([p.pid.wire() for p in rt.scheduler.pending.values()])


@router.get("/tasks/scheduled/request/{requestId}", summary="Pending tasks of one request")
async def scheduled_for_request(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    s = rt.scheduler
    return json_response([r for p in list(s.pending_by_request.get(requestId, ()))
                          if (r := pending_task_request(s, p))])


@router.get("/tasks/scheduled/task/{pendingTaskId}", summary="One pending task")
async def scheduled_task(rt: Annotated[Runtime, Depends(runtime)], pendingTaskId: str) -> Response:
    found = pending_task_request(rt.scheduler, pendingTaskId)
    if found is None:
        raise not_found(f"Couldn't find pending task {pendingTaskId}")
    return json_response(found)


@router.delete("/tasks/scheduled/task/{pendingTaskId}", summary="Remove a pending one-off run")
async def delete_scheduled(rt: Annotated[Runtime, Depends(runtime)], pendingTaskId: str) -> Response:
    p = rt.change(lambda: rt.scheduler.delete_pending(pendingTaskId))
    return json_response(p.wire())


@router.get("/tasks/cleaning", summary="Tasks being cleaned up (killed, bounced, scaled down)")
async def cleaning(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response([t.cleanup for t in rt.scheduler.tasks.values() if t.cleanup])


@router.get("/tasks/killed", summary="Tasks a kill was sent to, still running")
async def killed(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response([_killed_record(t) for t in rt.scheduler.tasks.values() if t.kill_sent_at is not None])


def _killed_record(task: TaskEntry) -> dict[str, Any]:
    """Singularity's SingularityKilledTaskIdRecord: `timestamp` is the last kill sent, `originalTimestamp`
    when it was decided (the cleanup's time), `retries` the kills sent again since."""
    cleanup = task.cleanup or {}
    record: dict[str, Any] = {"taskId": task.tid.wire(), "timestamp": task.kill_sent_at,
                              "originalTimestamp": cleanup.get("timestamp", task.kill_sent_at),
                              "retries": task.kill_retries}
    if "cleanupType" in cleanup:
        record["taskCleanupType"] = cleanup["cleanupType"]
    if "user" in cleanup:
        record["user"] = cleanup["user"]
    return record


@router.get("/tasks/task/{taskId}", summary="One task (active or finished)")
async def get_task(rt: Annotated[Runtime, Depends(runtime)], taskId: str) -> Response:
    task = rt.scheduler.tasks.get(taskId)
    if task is not None:
        return json_response(task.task)
    history = await rt.task_history(taskId)
    if history is None:
        raise not_found(f"Couldn't find task {taskId}")
    return json_response(history["task"])


@router.delete("/tasks/task/{taskId}", summary="Kill a task (SIGTERM, then SIGKILL after the grace period)")
async def kill(rt: Annotated[Runtime, Depends(runtime)], taskId: str,
               body: Annotated[KillTaskRequest | None, Body()] = None) -> Response:
    task = rt.change(lambda: rt.scheduler.kill_task(taskId, body or KillTaskRequest()))
    return json_response(task.cleanup)


@router.get("/tasks/task/{taskId}/cleanup", summary="The cleanup record of a task")
async def task_cleanup(rt: Annotated[Runtime, Depends(runtime)], taskId: str) -> Response:
    task = rt.scheduler.tasks.get(taskId)
    if task is None or task.cleanup is None:
        raise not_found(f"Task {taskId} is not being cleaned up")
    return json_response(task.cleanup)


@router.get("/track/task/{taskId}", summary="Where a task is: active or finished")
async def track_task(rt: Annotated[Runtime, Depends(runtime)], taskId: str) -> Response:
    task = rt.scheduler.tasks.get(taskId)
    if task is not None:
        return json_response({"taskId": task.tid.wire(), "currentState": task.state, "taskHistory": task.updates,
                              "pending": False})
    history = await rt.task_history(taskId)
    if history is None:
        raise not_found(f"Couldn't find task {taskId}")
    updates = history.get("taskUpdates", [])
    out = {"taskId": history["task"]["taskId"], "taskHistory": updates, "pending": False}
    if (state := ended_state(updates)) is not None:
        out["currentState"] = state
    return json_response(out)


@router.get("/track/run/{requestId}/{runId}", summary="Where a run is: pending, active or finished")
async def track_run(rt: Annotated[Runtime, Depends(runtime)], requestId: str, runId: str) -> Response:
    s = rt.scheduler
    for pending_id in s.pending_by_request.get(requestId, ()):
        p = s.pending[pending_id]
        if p.extras.get("runId") == runId:
            return json_response({"pendingTaskId": p.pid.wire(), "runId": runId, "taskHistory": [],
                                  "pending": True})
    for task in s.request_tasks(requestId):
        if task.task["taskRequest"]["pendingTask"].get("runId") == runId:
            return json_response({"taskId": task.tid.wire(), "runId": runId, "currentState": task.state,
                                  "taskHistory": task.updates, "pending": False})
    found = await rt.history_call("task_by_run_id", requestId, runId)
    if found is None:
        raise not_found(f"Couldn't find run {runId} of request {requestId}")
    history = await rt.task_history(found["taskId"]["id"])
    updates = history.get("taskUpdates", []) if history else []
    out = {"taskId": found["taskId"], "runId": runId, "taskHistory": updates, "pending": False}
    if (state := ended_state(updates)) is not None:
        out["currentState"] = state
    return json_response(out)


def ended_state(updates: list[dict[str, Any]]) -> str | None:
    """The state of a task that history has (as Singularity orders updates, an end outranks the rest):
    its last end, else its last update that is not a note of why it is being stopped."""
    states = [u["taskState"] for u in updates if u["taskState"] not in NOTE_STATES]
    ends = [state for state in states if state in TERMINAL_TASK_STATES]
    return (ends or states or [None])[-1]
