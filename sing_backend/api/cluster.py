"""/api/state, /api/agents, /api/racks, and /api/queued-writes (writes made on standbys)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Response

from ..errors import bad_request, not_found
from ..models.actions import MachineChangeRequest
from ..runtime import Runtime
from .deps import runtime
from .queued_writes import ANSWER_KEEP_SECONDS, describe
from .responses import json_response
from .views import racks, state

router = APIRouter(tags=["cluster"])
MachineAction = Literal["decommission", "freeze", "activate"]
_MACHINE_STATES = {"MISSING_ON_STARTUP", "ACTIVE", "STARTING_DECOMMISSION", "DECOMMISSIONING", "DECOMMISSIONED",
                   "DEAD", "FROZEN"}


@router.get("/state", summary="Counters of requests, tasks, agents and racks")
async def get_state(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    out = state(rt.scheduler)
    # Sing: how late the scheduler's event loop runs (ms), a direct measure of its responsiveness.
    out["schedulerLoopLagMs"] = rt.loop_lag.summary()
    # Sing: who schedules, and whether this backend reaches its state store.
    leader = rt.leader_url()
    if leader:
        out["leader"] = leader
    out["mode"] = rt.settings.mode
    if rt.election is not None:
        out["zookeeperConnected"] = rt.election.connected
        # Writes made on standbys that no leader has applied yet.
        out["queuedWrites"] = rt.queued_writes
    out["hostStates"][0]["hostname"] = rt.advertise_url
    out["hostStates"][0]["master"] = rt.leading
    if rt.election is not None:
        # Every backend in the election, as Singularity lists every scheduler host. A standby drives
        # no Mesos driver; of another backend that leads (an answer of this one while it cannot reach
        # it), only that it leads is known here.
        for url in rt.election.contenders():
            if url == rt.advertise_url:
                continue
            if url == leader:
                out["hostStates"].append({"hostname": url, "master": True})
            else:
                out["hostStates"].append({"hostname": url, "master": False, "driverStatus": "DRIVER_NOT_STARTED",
                                          "mesosConnected": False})
    return json_response(out)


@router.get("/agents", summary="Agents (optionally by state)")
@router.get("/slaves", include_in_schema=False)
async def agents(rt: Annotated[Runtime, Depends(runtime)], state: str | None = None) -> Response:
    if state is not None and state not in _MACHINE_STATES:
        raise bad_request(f"state: must be one of {', '.join(sorted(_MACHINE_STATES))}")
    return json_response([a for a in rt.scheduler.agents.values()
                          if state is None or a["currentState"]["state"] == state])


@router.get("/agents/agent/{agentId}", summary="One agent")
@router.get("/slaves/slave/{agentId}", include_in_schema=False)
async def agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    found = rt.scheduler.agents.get(agentId)
    if found is None:
        raise not_found(f"Couldn't find agent {agentId}")
    return json_response(found)


@router.get("/racks", summary="Racks (optionally by state)")
async def list_racks(rt: Annotated[Runtime, Depends(runtime)], state: str | None = None) -> Response:
    if state is not None and state not in _MACHINE_STATES:
        raise bad_request(f"state: must be one of {', '.join(sorted(_MACHINE_STATES))}")
    return json_response([r for r in racks(rt.scheduler) if state is None or r["currentState"]["state"] == state])


@router.get("/racks/rack/{rackId}", summary="One rack")
async def rack(rt: Annotated[Runtime, Depends(runtime)], rackId: str) -> Response:
    for r in racks(rt.scheduler):
        if r["id"] == rackId:
            return json_response(r)
    raise not_found(f"Couldn't find rack {rackId}")


def _change(rt: Runtime, kind: str, machine_id: str, action: str, body: MachineChangeRequest | None) -> None:
    body = body or MachineChangeRequest()
    rt.change(lambda: rt.scheduler.change_machine(kind, machine_id, action, body.user, body.message))


@router.post("/agents/agent/{agentId}/{action}", summary="Freeze, activate or decommission an agent")
@router.post("/slaves/slave/{agentId}/{action}", include_in_schema=False)
async def change_agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str, action: MachineAction,
                       body: Annotated[MachineChangeRequest | None, Body()] = None) -> Response:
    _change(rt, "agent", agentId, action, body)
    return json_response(rt.scheduler.agents[agentId])


@router.post("/racks/rack/{rackId}/{action}", summary="Freeze, activate or decommission every agent of a rack")
async def change_rack(rt: Annotated[Runtime, Depends(runtime)], rackId: str, action: MachineAction,
                      body: Annotated[MachineChangeRequest | None, Body()] = None) -> Response:
    _change(rt, "rack", rackId, action, body)
    return json_response(next(r for r in racks(rt.scheduler) if r["id"] == rackId))


@router.post("/local/agents/{agentId}/lose", summary="Local mode only: take an agent away (fault injection)")
async def lose_agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    if rt.cluster is None:
        raise bad_request("agentId: fault injection needs the embedded local cluster")
    if agentId not in rt.cluster.agent_ids:
        raise not_found(f"Couldn't find agent {agentId}")
    await asyncio.to_thread(rt.cluster.remove_agent, agentId)
    return json_response({"agentId": agentId, "lost": True})


@router.get("/queued-writes/{ref}", summary="Sing: a write queued on a standby (name or id), and the answer")
async def queued_write(rt: Annotated[Runtime, Depends(runtime)], ref: str) -> Response:
    found = await describe(rt, ref)
    if found is None:
        raise not_found(f"Couldn't find queued write {ref}: not queued, and no answer is kept for it (answers are "
                        f"kept {ANSWER_KEEP_SECONDS / 3600:g} h)")
    return json_response(found)
