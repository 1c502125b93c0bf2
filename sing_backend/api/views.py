"""Singularity's response objects, built from the scheduler's live state."""

from __future__ import annotations

from typing import Any

from ..ids import derived_action_id
from ..models.common import RequestState
from ..scheduler.core import Scheduler
from ..scheduler.entities import RequestEntry, TaskEntry
from ..scheduler.health import Health
from ..scheduler.planning import LiveTask, is_healthy

_DECOMMISSIONING = ("STARTING_DECOMMISSION", "DECOMMISSIONING")


def task_ids_for_request(s: Scheduler, request_id: str) -> dict[str, Any]:
    entry = s.requests.get(request_id)
    healthy, not_yet, cleaning, killed = [], [], [], []
    now = s.clock()
    for task in s.request_tasks(request_id):
        if task.cleanup is not None:
            cleaning.append(task.tid.wire())
            if task.kill_sent_at is not None:
                killed.append(task.tid.wire())
            continue
        dep = s.deploys.get((request_id, task.tid.deployId))
        after = (dep.deploy.consider_healthy_after_s if dep else 5) * 1000
        live = LiveTask(task.id, task.tid.deployId, task.tid.instanceNo, False, task.running_since,
                        None if task.health is None else task.health.status == Health.HEALTHY)
        (healthy if is_healthy(live, now, after) else not_yet).append(task.tid.wire())
    pending = [p.pid.wire() for p in s.request_pending(request_id)] if entry else []
    return {"healthy": healthy, "notYetHealthy": not_yet, "pending": pending, "cleaning": cleaning,
            "loadBalanced": [], "killed": killed}


def request_parent(s: Scheduler, entry: RequestEntry, *, full: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"request": entry.request.wire(), "state": entry.state.value}
    deploy_state: dict[str, Any] = {"requestId": entry.id}
    if entry.active_deploy:
        deploy_state["activeDeploy"] = entry.active_deploy
    if entry.pending_deploy:
        deploy_state["pendingDeploy"] = entry.pending_deploy
    out["requestDeployState"] = deploy_state
    if entry.request.type.value == "SCHEDULED":
        next_run = s.next_run_at(entry)
        if next_run is not None:
            out["nextRunAt"] = next_run  # Sing: when the next scheduled run is due (epoch ms)
    for kind, record in entry.expiring.items():
        out[f"expiring{kind[0].upper()}{kind[1:]}"] = _expiring_wire(entry.id, kind, record)
    if not full:
        return out
    active = s.active_deploy(entry)
    if active:
        out["activeDeploy"] = active.deploy.wire()
    pending = s.pending_deploy(entry)
    if pending:
        out["pendingDeploy"] = pending.deploy.wire()
        pend = s.pending_deploys.get(entry.id)
        if pend:
            current = sum(1 for t in s.request_tasks(entry.id)
                          if t.tid.deployId == pending.deploy.id and t.cleanup is None)
            out["pendingDeployState"] = pend.wire(entry.request.instance_count, current)
    out["taskIds"] = task_ids_for_request(s, entry.id)
    return out


def task_history_live(task: TaskEntry) -> dict[str, Any]:
    results = [r.wire(task.tid.wire()) for r in task.health.results] if task.health else []
    out: dict[str, Any] = {"task": task.task, "taskUpdates": task.updates, "healthcheckResults": results,
                           "loadBalancerUpdates": [], "shellCommandHistory": [], "taskMetadata": []}
    if task.directory:
        out["directory"] = task.directory
    return out


def pending_task_request(s: Scheduler, pending_id: str) -> dict[str, Any] | None:
    p = s.pending.get(pending_id)
    if p is None:
        return None
    entry = s.requests.get(p.pid.requestId)
    dep = s.deploys.get((p.pid.requestId, p.pid.deployId))
    out: dict[str, Any] = {"pendingTask": p.wire()}
    if entry:
        out["request"] = entry.request.wire()
    if dep:
        out["deploy"] = dep.deploy.wire()
    if p.reason:
        out["notPlacedReason"] = p.reason
    elif p.pid.nextRunAt > s.clock():
        out["notPlacedReason"] = f"scheduled to run at {p.pid.nextRunAt} (epoch ms)"
    else:
        out["notPlacedReason"] = "waiting for the next scheduling round"
    return out


def state(s: Scheduler) -> dict[str, Any]:
    counts = {st: 0 for st in RequestState}
    for entry in s.requests.values():
        counts[entry.state] += 1
    now = s.clock()
    launching = sum(1 for t in s.tasks.values() if t.state in ("TASK_LAUNCHED", "TASK_STAGING", "TASK_STARTING"))
    cleaning = sum(1 for t in s.tasks.values() if t.cleanup is not None)
    late = [p for p in s.pending.values() if now - p.pid.nextRunAt > 30_000]
    future = sum(1 for p in s.pending.values() if p.pid.nextRunAt > now)
    agents = list(s.agents.values())
    agent_states = [a["currentState"]["state"] for a in agents]
    racks = _racks(s)
    rack_states = [r["currentState"]["state"] for r in racks]
    under, over = [], []
    for entry in s.requests.values():
        if not entry.request.type.long_running or entry.state not in (RequestState.ACTIVE,
                                                                      RequestState.SYSTEM_COOLDOWN):
            continue
        running = sum(1 for t in s.request_tasks(entry.id) if t.cleanup is None)
        if running < entry.request.instance_count:
            under.append(entry.id)
        elif running > entry.request.instance_count:
            over.append(entry.id)
    oldest = min((p.marker["timestamp"] for p in s.pending_deploys.values()), default=0)
    return {
        "activeTasks": len(s.tasks) - cleaning,
        "launchingTasks": launching,
        "activeRequests": counts[RequestState.ACTIVE],
        "cooldownRequests": counts[RequestState.SYSTEM_COOLDOWN],
        "pausedRequests": counts[RequestState.PAUSED],
        "scheduledTasks": len(s.pending),
        "pendingRequests": len({p.pid.requestId for p in s.pending.values()}),
        "lbCleanupTasks": 0,
        "lbCleanupRequests": 0,
        "cleaningRequests": len(s.request_cleanups),
        "finishedRequests": counts[RequestState.FINISHED],
        "lateTasks": len(late),
        "listLateTasks": [p.pid.wire() for p in late],
        "onDemandLateTasks": sum(1 for p in late if p.pid.pendingType == "ONEOFF"),
        "futureTasks": future,
        "maxTaskLag": max((now - p.pid.nextRunAt for p in s.pending.values() if p.pid.nextRunAt <= now), default=0),
        "cleaningTasks": cleaning,
        "activeAgents": agent_states.count("ACTIVE"),
        "deadAgents": agent_states.count("DEAD"),
        "decommissioningAgents": sum(1 for st in agent_states if st in _DECOMMISSIONING),
        "unknownAgents": 0,
        "activeRacks": rack_states.count("ACTIVE"),
        "deadRacks": rack_states.count("DEAD"),
        "decommissioningRacks": sum(1 for st in rack_states if st in _DECOMMISSIONING),
        "unknownRacks": 0,
        "numDeploys": len(s.pending_deploys),
        "oldestDeploy": now - oldest if oldest else 0,
        "oldestDeployStep": 0,
        "activeDeploys": [p.marker for p in s.pending_deploys.values()],
        "underProvisionedRequests": len(under),
        "overProvisionedRequests": len(over),
        "underProvisionedRequestIds": under,
        "overProvisionedRequestIds": over,
        "hostStates": [{
            "hostname": "localhost", "master": True, "driverStatus": "DRIVER_RUNNING" if s.connected
            else "DRIVER_NOT_STARTED", "mesosConnected": s.connected,
            "millisSinceLastOffer": now - s.last_offer_at if s.last_offer_at else 0, "uptime": now - s.started_at,
        }],
        "generatedAt": now,
        "avgStatusUpdateDelayMs": 0,
        "lastHeartbeatAt": s.last_offer_at or 0,
        "authDatastoreHealthy": True,
    }


def _racks(s: Scheduler) -> list[dict[str, Any]]:
    """A rack is ACTIVE while any agent of it is alive, whatever that agent's own state (frozen or
    decommissioned agents still stand in it), and DEAD once every one is dead. A state set on the rack
    itself (freeze, decommission) overrides both."""
    members: dict[str, list[dict[str, Any]]] = {}
    for agent in s.agents.values():
        members.setdefault(agent["rackId"], []).append(agent)
    racks = []
    for rack_id, agents in members.items():
        first_seen = min(a["firstSeenAt"] for a in agents)
        if all(a["currentState"]["state"] == "DEAD" for a in agents):
            current = {"state": "DEAD", "timestamp": max(a["currentState"]["timestamp"] for a in agents)}
        else:
            current = {"state": "ACTIVE", "timestamp": first_seen}
        racks.append({"id": rack_id, "currentState": s.machine_states.get(f"rack/{rack_id}") or current,
                      "firstSeenAt": first_seen})
    return sorted(racks, key=lambda r: r["id"])


racks = _racks


# What an expiring action reverts to, under the name Singularity's SingularityExpiring* objects give it.
_REVERT_FIELDS = {"scale": "revertToInstances", "skipHealthchecks": "revertToSkipHealthchecks"}


def _expiring_wire(request_id: str, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "revertTo"}
    if not out.get("actionId"):  # saved before actions had one
        out["actionId"] = derived_action_id(request_id, kind, record.get("startMillis")).hex
    if kind in _REVERT_FIELDS and "revertTo" in record:
        out[_REVERT_FIELDS[kind]] = bool(record["revertTo"]) if kind == "skipHealthchecks" else record["revertTo"]
    return out
