"""/api/deploys: start, list and cancel deploys."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ..errors import ApiError, bad_request
from ..models.actions import DeployUpdate
from ..models.deploy import DeployRequest
from ..runtime import Runtime
from .deps import runtime
from .responses import json_response
from .views import request_parent

log = logging.getLogger(__name__)

# A deploy waits no longer than this for history's word on its id: a database away does not hold deploys.
_HISTORY_CHECK_SECONDS = 1.0

router = APIRouter(prefix="/deploys", tags=["deploys"])


@router.post("", summary="Deploy a new version of a request")
async def deploy(rt: Annotated[Runtime, Depends(runtime)], body: DeployRequest) -> Response:
    await _refuse_an_id_used_before(rt, body.deploy.requestId, body.deploy.id)
    entry = rt.change(lambda: rt.scheduler.deploy(body))
    return json_response(request_parent(rt.scheduler, entry))


async def _refuse_an_id_used_before(rt: Runtime, request_id: str, deploy_id: str) -> None:
    """A deploy id is used once per request, as in Singularity: one in the request's deploy history (of
    a request deleted and created again, say) would have its history overwritten by the new deploy. The
    live state's deploys are checked by the scheduler; while history does not answer, only those are."""
    if rt.history is None or (request_id, deploy_id) in rt.scheduler.deploys:
        return
    try:
        async with asyncio.timeout(_HISTORY_CHECK_SECONDS):
            used = await rt.history_call("get_deploy", request_id, deploy_id)
    except (ApiError, TimeoutError):
        log.warning("history not answering: deploy %s of %s checked against live state only", deploy_id, request_id)
        return
    if used is not None:
        raise bad_request(f"deploy.id: deploy {deploy_id} of request {request_id} was already used (it is in the "
                          "request's deploy history); deploy with a new id")


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
