"""/api/state, /api/agents, /api/racks, and /api/queued-writes (writes made on standbys)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, Response

from ..errors import bad_request, not_found
from ..models.actions import MachineChangeRequest
from ..runtime import Runtime
from ..scheduler.machines import MACHINE_STATES
from .deps import runtime
from .queued_writes import ANSWER_KEEP_SECONDS, describe
from .responses import json_response
from .views import racks, state

router = APIRouter(tags=["cluster"])
MachineAction = Literal["decommission", "freeze", "activate"]


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
    out["hostStates"][0].update(_host(rt.advertise_url))
    out["hostStates"][0]["master"] = rt.leading
    if rt.election is not None:
        # Every backend in the election, as Singularity lists every scheduler host. A standby drives
        # no Mesos driver; of another backend that leads (an answer of this one while it cannot reach
        # it), only that it leads is known here.
        for url in rt.election.contenders():
            if url == rt.advertise_url:
                continue
            if url == leader:
                out["hostStates"].append({**_host(url), "master": True})
            else:
                out["hostStates"].append({**_host(url), "master": False, "driverStatus": "DRIVER_NOT_STARTED",
                                          "mesosConnected": False})
    return json_response(out)


def _host(url: str) -> dict[str, str]:
    """A backend's hostname, as Singularity's SingularityHostState has it, and (Sing) the URL it serves the
    API on: backends on one machine differ by port only."""
    return {"hostname": urlsplit(url).hostname or url, "url": url}


@router.get("/agents", summary="Agents (optionally by state)")
@router.get("/slaves", include_in_schema=False)
async def agents(rt: Annotated[Runtime, Depends(runtime)], state: str | None = None) -> Response:
    _check_state(state)
    return json_response([a for a in rt.scheduler.agents.values()
                          if state is None or a["currentState"]["state"] == state])


@router.get("/agents/expiring", summary="Timed agent state changes not yet reverted")
@router.get("/slaves/expiring", include_in_schema=False)
async def expiring_agent_states(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response(rt.scheduler.expiring_machine_states("agent"))


@router.delete("/agents/dead", summary="Forget every DEAD agent")
@router.delete("/slaves/dead", include_in_schema=False)
async def remove_dead_agents(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    def remove() -> list[str]:
        dead = sorted(a["id"] for a in rt.scheduler.agents.values() if a["currentState"]["state"] == "DEAD")
        for agent_id in dead:
            rt.scheduler.remove_machine("agent", agent_id)
        return dead
    return json_response({"removed": rt.change(remove)})


@router.get("/agents/agent/{agentId}", summary="The state history of an agent (SingularityMachineStateHistoryUpdate)")
@router.get("/slaves/slave/{agentId}", include_in_schema=False)
async def agent_history(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    s = rt.scheduler
    if not s.machine_known("agent", agentId):
        raise not_found(f"Couldn't find agent {agentId}")
    found = s.agents.get(agentId)
    current = found["currentState"] if found is not None else s.machine_states.get(f"agent/{agentId}")
    return json_response(s.machine_history("agent", agentId, current))


@router.get("/agents/agent/{agentId}/details", summary="One agent")
@router.get("/slaves/slave/{agentId}/details", include_in_schema=False)
async def agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    found = rt.scheduler.agents.get(agentId)
    if found is None:
        raise not_found(f"Couldn't find agent {agentId}")
    return json_response(found)


@router.delete("/agents/agent/{agentId}", summary="Forget an agent: its state, history and timed change")
@router.delete("/slaves/slave/{agentId}", include_in_schema=False)
async def remove_agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    rt.change(lambda: rt.scheduler.remove_machine("agent", agentId))
    return json_response({"agentId": agentId, "removed": True})


@router.delete("/agents/agent/{agentId}/expiring", summary="Keep an agent's state: cancel its timed change back")
@router.delete("/slaves/slave/{agentId}/expiring", include_in_schema=False)
async def cancel_expiring_agent_state(rt: Annotated[Runtime, Depends(runtime)], agentId: str) -> Response:
    cancelled = _expiring_of(rt, "agent", agentId)  # answered: the timed change cancelled
    rt.change(lambda: rt.scheduler.cancel_expiring_machine_state("agent", agentId))
    return json_response(cancelled)


@router.post("/agents/agent/{agentId}/decommission/extend",
             summary="Restart an agent's timed change with a new durationMillis (and revertToState)")
@router.post("/slaves/slave/{agentId}/decommission/extend", include_in_schema=False)
async def extend_agent_decommission(rt: Annotated[Runtime, Depends(runtime)], agentId: str,
                                    body: Annotated[MachineChangeRequest | None, Body()] = None) -> Response:
    change = body or MachineChangeRequest()
    rt.change(lambda: rt.scheduler.extend_expiring_machine_state("agent", agentId, change))
    return json_response(_expiring_of(rt, "agent", agentId))


@router.post("/agents/agent/{agentId}/{action}", summary="Freeze, activate or decommission an agent")
@router.post("/slaves/slave/{agentId}/{action}", include_in_schema=False)
async def change_agent(rt: Annotated[Runtime, Depends(runtime)], agentId: str, action: MachineAction,
                       body: Annotated[MachineChangeRequest | None, Body()] = None) -> Response:
    rt.change(lambda: rt.scheduler.change_machine("agent", agentId, action, body))
    return json_response(rt.scheduler.agents[agentId])


@router.get("/racks", summary="Racks (optionally by state)")
async def list_racks(rt: Annotated[Runtime, Depends(runtime)], state: str | None = None) -> Response:
    _check_state(state)
    return json_response([r for r in racks(rt.scheduler) if state is None or r["currentState"]["state"] == state])


@router.get("/racks/expiring", summary="Timed rack state changes not yet reverted")
async def expiring_rack_states(rt: Annotated[Runtime, Depends(runtime)]) -> Response:
    return json_response(rt.scheduler.expiring_machine_states("rack"))


@router.get("/racks/rack/{rackId}", summary="The state history of a rack (SingularityMachineStateHistoryUpdate)")
async def rack_history(rt: Annotated[Runtime, Depends(runtime)], rackId: str) -> Response:
    s = rt.scheduler
    if not s.machine_known("rack", rackId):
        raise not_found(f"Couldn't find rack {rackId}")
    found = _rack(rt, rackId)
    current = found["currentState"] if found is not None else s.machine_states.get(f"rack/{rackId}")
    return json_response(s.machine_history("rack", rackId, current))


@router.get("/racks/rack/{rackId}/details", summary="Sing: one rack (Singularity has only the list)")
async def rack(rt: Annotated[Runtime, Depends(runtime)], rackId: str) -> Response:
    found = _rack(rt, rackId)
    if found is None:
        raise not_found(f"Couldn't find rack {rackId}")
    return json_response(found)


@router.delete("/racks/rack/{rackId}", summary="Forget a rack's state, history and timed change")
async def remove_rack(rt: Annotated[Runtime, Depends(runtime)], rackId: str) -> Response:
    rt.change(lambda: rt.scheduler.remove_machine("rack", rackId))
    return json_response({"rackId": rackId, "removed": True})


@router.delete("/racks/rack/{rackId}/expiring", summary="Keep a rack's state: cancel its timed change back")
async def cancel_expiring_rack_state(rt: Annotated[Runtime, Depends(runtime)], rackId: str) -> Response:
    cancelled = _expiring_of(rt, "rack", rackId)  # answered: the timed change cancelled
    rt.change(lambda: rt.scheduler.cancel_expiring_machine_state("rack", rackId))
    return json_response(cancelled)


@router.post("/racks/rack/{rackId}/{action}", summary="Freeze, activate or decommission every agent of a rack")
async def change_rack(rt: Annotated[Runtime, Depends(runtime)], rackId: str, action: MachineAction,
                      body: Annotated[MachineChangeRequest | None, Body()] = None) -> Response:
    rt.change(lambda: rt.scheduler.change_machine("rack", rackId, action, body))
    return json_response(_rack(rt, rackId))


def _check_state(state: str | None) -> None:
    if state is not None and state not in MACHINE_STATES:
        raise bad_request(f"state: must be one of {', '.join(MACHINE_STATES)}")


def _rack(rt: Runtime, rack_id: str) -> dict[str, Any] | None:
    return next((r for r in racks(rt.scheduler) if r["id"] == rack_id), None)


def _expiring_of(rt: Runtime, kind: str, machine_id: str) -> dict[str, Any] | None:
    return next((e for e in rt.scheduler.expiring_machine_states(kind) if e["machineId"] == machine_id), None)


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
