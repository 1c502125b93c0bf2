"""/api/deploys: start, list and cancel deploys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ..models.actions import DeployUpdate
from ..models.deploy import DeployRequest
from ..runtime import Runtime
from .deps import runtime
from .responses import json_response
from .views import request_parent

router = APIRouter(prefix="/deploys", tags=["deploys"])


@router.post("", summary="Deploy a new version of a request")
async def deploy(rt: Annotated[Runtime, Depends(runtime)], body: DeployRequest) -> Response:
    entry = rt.change(lambda: rt.scheduler.deploy(body))
    return json_response(request_parent(rt.scheduler, entry))


@router.get("/pending", summary="Deploys in progress")
async def pending(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    s = rt.scheduler
    out = []
    for request_id, pend in s.pending_deploys.items():
        entry = s.requests.get(request_id)
        if entry is None:
            continue
        current = sum(1 for t in s.request_tasks(request_id)
                      if t.tid.deployId == pend.marker["deployId"] and t.cleanup is None)
        out.append(pend.wire(entry.request.instance_count, current))
    return json_response(out)


@router.delete("/deploy/{deployId}/request/{requestId}", summary="Cancel a pending deploy")
async def cancel(rt: Annotated[Runtime, Depends(runtime)], deployId: str, requestId: str) -> Response:
    entry = rt.change(lambda: rt.scheduler.cancel_deploy(requestId, deployId))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/update", summary="Advance (or hold) a deploy's steps: run targetActiveInstances new tasks")
async def update(rt: Annotated[Runtime, Depends(runtime)], body: DeployUpdate) -> Response:
    entry = rt.change(lambda: rt.scheduler.update_deploy(body))
    return json_response(request_parent(rt.scheduler, entry))
