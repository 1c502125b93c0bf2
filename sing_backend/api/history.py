"""/api/history: request, deploy and task history (live state merged with the history store)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ..errors import bad_request, not_found
from ..models.common import LIVE_TASK_STATES, TERMINAL_TASK_STATES
from ..runtime import Runtime
from .deps import page_args, runtime
from .responses import json_response

router = APIRouter(prefix="/history", tags=["history"])


TASK_STATES = LIVE_TASK_STATES | TERMINAL_TASK_STATES


def _order(orderDirection: str | None) -> bool:
    if orderDirection is None:
        return True
    if orderDirection not in ("ASC", "DESC"):
        raise bad_request("orderDirection: must be ASC or DESC")
    return orderDirection == "DESC"


@router.get("/task/{taskId}", summary="A task with every status update")
async def task_history(rt: Annotated[Runtime, Depends(runtime)], taskId: str) -> Response:
    found = await rt.task_history(taskId)
    if found is None:
        raise not_found(f"Couldn't find task {taskId}")
    return json_response(found)


@router.get("/tasks", summary="Task ids across every request, newest first, paged and filtered")
async def all_tasks(rt: Annotated[Runtime, Depends(runtime)], requestId: str | None = None,
                    deployId: str | None = None, runId: str | None = None, host: str | None = None,
                    lastTaskStatus: str | None = None, startedBefore: int | None = None,
                    startedAfter: int | None = None, updatedBefore: int | None = None,
                    updatedAfter: int | None = None, orderDirection: str | None = None, count: int | None = None,
                    page: int | None = None) -> Response:
    return await request_tasks(rt, requestId, deployId, runId, host, lastTaskStatus, startedBefore, startedAfter,
                               updatedBefore, updatedAfter, orderDirection, count, page)


@router.get("/request/{requestId}/tasks", summary="Task ids of a request, newest first, paged and filtered")
async def request_tasks(rt: Annotated[Runtime, Depends(runtime)], requestId: str | None, deployId: str | None = None,
                        runId: str | None = None, host: str | None = None, lastTaskStatus: str | None = None,
                        startedBefore: int | None = None, startedAfter: int | None = None,
                        updatedBefore: int | None = None, updatedAfter: int | None = None,
                        orderDirection: str | None = None, count: int | None = None,
                        page: int | None = None) -> Response:
    count, page = page_args(count, page)
    if lastTaskStatus is not None and lastTaskStatus not in TASK_STATES:
        # A typo, or a lowercase name, would otherwise match nothing and look like an empty history.
        raise bad_request(f"lastTaskStatus: must be one of {', '.join(sorted(TASK_STATES))}, got {lastTaskStatus!r}")
    rows = await rt.history_call(
        "request_task_ids", requestId, deploy_id=deployId, run_id=runId, host=host, last_task_status=lastTaskStatus,
        started_before=startedBefore, started_after=startedAfter, updated_before=updatedBefore,
        updated_after=updatedAfter, order_desc=_order(orderDirection), count=count, page=page)
    return json_response(rows)


@router.get("/request/{requestId}/tasks/active", summary="Active task ids of a request")
async def request_active_tasks(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    out = []
    for t in rt.scheduler.request_tasks(requestId):
        row = {"taskId": t.tid.wire(), "updatedAt": t.updates[-1]["timestamp"] if t.updates else t.tid.startedAt,
               "lastTaskStatus": t.state}
        run_id = t.task["taskRequest"]["pendingTask"].get("runId")
        if run_id:
            row["runId"] = run_id
        out.append(row)
    return json_response(out)


@router.get("/request/{requestId}/run/{runId}", summary="The task of one run")
async def request_run(rt: Annotated[Runtime, Depends(runtime)], requestId: str, runId: str) -> Response:
    found = await rt.history_call("task_by_run_id", requestId, runId)
    if found is None:
        raise not_found(f"Couldn't find run {runId} of request {requestId}")
    return json_response(found)


@router.get("/request/{requestId}/deploys", summary="Deploy history of a request")
async def deploys(rt: Annotated[Runtime, Depends(runtime)], requestId: str, count: int | None = None,
                  page: int | None = None) -> Response:
    count, page = page_args(count, page)
    return json_response(await rt.history_call("deploy_history", requestId, count=count, page=page))


@router.get("/request/{requestId}/deploy/{deployId}", summary="One deploy with its result")
async def deploy(rt: Annotated[Runtime, Depends(runtime)], requestId: str, deployId: str) -> Response:
    live = rt.scheduler.deploys.get((requestId, deployId))
    if live is not None:
        return json_response(live.doc())
    found = await rt.history_call("get_deploy", requestId, deployId)
    if found is None:
        raise not_found(f"Couldn't find deploy {deployId} of request {requestId}")
    return json_response(found)


@router.get("/request/{requestId}/requests", summary="Request history (created, scaled, paused...)")
async def request_history(rt: Annotated[Runtime, Depends(runtime)], requestId: str, count: int | None = None,
                          page: int | None = None, createdBefore: int | None = None,
                          createdAfter: int | None = None, orderDirection: str | None = None) -> Response:
    count, page = page_args(count, page)
    return json_response(await rt.history_call(
        "request_history", requestId, count=count, page=page, order_desc=_order(orderDirection),
        created_before=createdBefore, created_after=createdAfter))
