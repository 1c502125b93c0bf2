"""/api/requests: create, update, list, act on requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from ..models.actions import (
    BounceRequest,
    DeleteRequest,
    ExitCooldownRequest,
    PauseRequest,
    RunNowRequest,
    ScaleRequest,
    SkipHealthchecksRequest,
    UnpauseRequest,
)
from ..models.common import RequestState, RequestType
from ..models.request import SingularityRequest
from ..runtime import Runtime
from .deps import runtime
from .responses import cached_list, json_response
from .views import request_parent

router = APIRouter(prefix="/requests", tags=["requests"])

_BY_STATE = {
    "active": (RequestState.ACTIVE,),
    "paused": (RequestState.PAUSED,),
    "cooldown": (RequestState.SYSTEM_COOLDOWN,),
    "finished": (RequestState.FINISHED,),
}


async def _list(http: Request, states: tuple[RequestState, ...] | None, types: list[RequestType] | None,
                limit: int | None) -> Response:
    s = runtime(http).scheduler
    wanted = frozenset(types or ())

    def listing() -> list:
        return [request_parent(s, e) for e in s.requests.values()
                if (states is None or e.state in states) and (not wanted or e.request.requestType in wanted)]
    if limit is not None:  # not cached: one body per limit asked would pile up between two state changes
        return json_response(listing()[:limit])
    return await cached_list(http, ("requests", states, wanted), listing)


# As Singularity's: requestType may be given several times (any of them), limit cuts the list.
Types = Annotated[list[RequestType] | None, Query()]
Limit = Annotated[int | None, Query(ge=0)]


@router.get("", summary="All requests")
async def list_requests(http: Request, requestType: Types = None, limit: Limit = None) -> Response:
    return await _list(http, None, requestType, limit)


@router.get("/active", summary="Active requests")
async def list_active(http: Request, requestType: Types = None, limit: Limit = None) -> Response:
    return await _list(http, _BY_STATE["active"], requestType, limit)


@router.get("/paused", summary="Paused requests")
async def list_paused(http: Request, requestType: Types = None, limit: Limit = None) -> Response:
    return await _list(http, _BY_STATE["paused"], requestType, limit)


@router.get("/cooldown", summary="Requests in cooldown")
async def list_cooldown(http: Request, requestType: Types = None, limit: Limit = None) -> Response:
    return await _list(http, _BY_STATE["cooldown"], requestType, limit)


@router.get("/finished", summary="Finished requests")
async def list_finished(http: Request, requestType: Types = None, limit: Limit = None) -> Response:
    return await _list(http, _BY_STATE["finished"], requestType, limit)


@router.get("/queued/pending", summary="Requests with tasks waiting to be placed")
async def list_pending(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    out = [{"requestId": p.pid.requestId, "deployId": p.pid.deployId, "timestamp": p.pid.createdAt,
            "pendingType": p.pid.pendingType, **({"runId": p.extras["runId"]} if "runId" in p.extras else {})}
           for p in rt.scheduler.pending.values()]
    return json_response(out)


@router.get("/queued/cleanup", summary="Requests being cleaned up (deleting)")
async def list_cleanup(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response(list(rt.scheduler.request_cleanups.values()))


@router.post("", summary="Create or update a request")
async def save_request(rt: Annotated[Runtime, Depends(runtime)], request: SingularityRequest) -> Response:
    entry = rt.change(lambda: rt.scheduler.save_request(request))
    return json_response(request_parent(rt.scheduler, entry))


@router.get("/request/{requestId}", summary="One request with its deploys and tasks")
async def get_request(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    return json_response(request_parent(rt.scheduler, rt.scheduler.get_request(requestId)))


@router.get("/request/{requestId}/simple", summary="One request without deploys and tasks")
async def get_request_simple(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    return json_response(request_parent(rt.scheduler, rt.scheduler.get_request(requestId), full=False))


@router.delete("/request/{requestId}", summary="Delete a request (its tasks are killed first)")
async def delete_request(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                         body: Annotated[DeleteRequest | None, Body()] = None) -> Response:
    entry = rt.change(lambda: rt.scheduler.delete_request(requestId, body or DeleteRequest()))
    return json_response(entry.request.wire())


@router.put("/request/{requestId}/scale", summary="Change the number of instances")
async def scale(rt: Annotated[Runtime, Depends(runtime)], requestId: str, body: ScaleRequest,
                largeScaleDownAcknowledged: bool = Query(False)) -> Response:
    entry = rt.change(lambda: rt.scheduler.scale(requestId, body, largeScaleDownAcknowledged))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/request/{requestId}/pause", summary="Pause (killTasks defaults to true)")
async def pause(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                body: Annotated[PauseRequest | None, Body()] = None) -> Response:
    entry = rt.change(lambda: rt.scheduler.pause(requestId, body or PauseRequest()))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/request/{requestId}/unpause", summary="Unpause")
async def unpause(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                  body: Annotated[UnpauseRequest | None, Body()] = None) -> Response:
    entry = rt.change(lambda: rt.scheduler.unpause(requestId, body or UnpauseRequest()))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/request/{requestId}/bounce", summary="Restart every task (replacements first)")
async def bounce(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                 body: Annotated[BounceRequest | None, Body()] = None) -> Response:
    entry = rt.change(lambda: rt.scheduler.bounce(requestId, body or BounceRequest()))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/request/{requestId}/exit-cooldown", summary="Leave system cooldown now")
async def exit_cooldown(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                        body: Annotated[ExitCooldownRequest | None, Body()] = None) -> Response:
    entry = rt.change(lambda: rt.scheduler.exit_cooldown(requestId, body or ExitCooldownRequest()))
    return json_response(request_parent(rt.scheduler, entry))


@router.post("/request/{requestId}/run", summary="Run an ON_DEMAND (or SCHEDULED) request now")
async def run_now(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                  body: Annotated[RunNowRequest | None, Body()] = None) -> Response:
    entry, pending = rt.change(lambda: rt.scheduler.run_now(requestId, body or RunNowRequest()))
    p = pending.wire()
    pending_request = {"requestId": entry.id, "deployId": pending.pid.deployId, "timestamp": pending.pid.createdAt,
                       "pendingType": pending.pid.pendingType,
                       **{k: v for k, v in p.items() if k != "pendingTaskId"}}
    out = request_parent(rt.scheduler, entry)
    out["pendingRequest"] = pending_request
    out["pendingTaskId"] = pending.pid.wire()
    return json_response(out)


@router.delete("/request/{requestId}/pause", summary="Make a timed pause permanent (cancel its expiry)")
async def cancel_pause_expiry(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    entry = rt.change(lambda: rt.scheduler.cancel_expiring(requestId, "pause"))
    return json_response(request_parent(rt.scheduler, entry))


@router.delete("/request/{requestId}/scale", summary="Make a timed scale permanent (cancel its expiry)")
async def cancel_scale_expiry(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    entry = rt.change(lambda: rt.scheduler.cancel_expiring(requestId, "scale"))
    return json_response(request_parent(rt.scheduler, entry))


@router.delete("/request/{requestId}/bounce", summary="Cancel a bounce in progress")
async def cancel_bounce(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    entry = rt.change(lambda: rt.scheduler.cancel_expiring(requestId, "bounce"))
    return json_response(request_parent(rt.scheduler, entry))


@router.put("/request/{requestId}/skip-healthchecks", summary="Skip (or stop skipping) health checks")
@router.put("/request/{requestId}/skipHealthchecks", include_in_schema=False)
async def skip_healthchecks(rt: Annotated[Runtime, Depends(runtime)], requestId: str,
                            body: SkipHealthchecksRequest) -> Response:
    entry = rt.change(lambda: rt.scheduler.skip_healthchecks(requestId, body.skipHealthchecks, body.durationMillis,
                                                             body.user, body.message))
    return json_response(request_parent(rt.scheduler, entry))


@router.delete("/request/{requestId}/skip-healthchecks", summary="Make a timed skip-healthchecks permanent")
@router.delete("/request/{requestId}/skipHealthchecks", include_in_schema=False)
async def cancel_skip_expiry(rt: Annotated[Runtime, Depends(runtime)], requestId: str) -> Response:
    entry = rt.change(lambda: rt.scheduler.cancel_expiring(requestId, "skipHealthchecks"))
    return json_response(request_parent(rt.scheduler, entry))
