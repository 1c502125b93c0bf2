"""Agents and racks as Singularity serves them: timed state changes (durationMillis, revertToState,
killTasksOnDecommissionTimeout) that revert on their own, also across a restart; each machine's state
history at /agents/agent/{id} and its object at .../details; removing agents and racks."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from sing_backend.local_backend import Backend, pid_alive, wait_for


def _agent_ids(backend: Backend, rack: str | None = None) -> list[str]:
    return sorted(a["id"] for a in backend.get("/api/agents") if rack is None or a["rackId"] == rack)


def _state(backend: Backend, agent_id: str) -> str:
    return str(backend.get(f"/api/agents/agent/{agent_id}/details")["currentState"]["state"])


def _expiring(backend: Backend, kind: str = "agents") -> dict[str, dict[str, Any]]:
    return {e["machineId"]: e for e in backend.get(f"/api/{kind}/expiring")}


def test_timed_freeze_reverts_to_active_and_the_history_says_so(backend: Backend):
    agent = _agent_ids(backend)[0]
    frozen = backend.post(f"/api/agents/agent/{agent}/freeze",
                          {"message": "kernel patch", "durationMillis": 1500, "revertToState": "ACTIVE",
                           "actionId": "patch-1", "user": "ops"})
    assert frozen["currentState"]["state"] == "FROZEN"
    pending = _expiring(backend)[agent]
    assert pending["revertToState"] == "ACTIVE" and pending["actionId"] == "patch-1"
    assert pending["expiringAPIRequestObject"]["durationMillis"] == 1500
    assert pending["killTasksOnDecommissionTimeout"] is False and pending["user"] == "ops"

    wait_for(lambda: _state(backend, agent) == "ACTIVE", timeout=15, what="the timed freeze to run out")
    assert agent not in _expiring(backend)
    history = backend.get(f"/api/agents/agent/{agent}")
    assert [u["state"] for u in history[-2:]] == ["FROZEN", "ACTIVE"]
    froze, back = history[-2:]
    assert froze == {"objectId": agent, "state": "FROZEN", "timestamp": froze["timestamp"], "user": "ops",
                     "message": "kernel patch"}
    assert back["message"] == "Updated due to expiring action" and back["user"] == "ops"
    assert back["timestamp"] - froze["timestamp"] >= 1500
    # The deprecated /slaves paths answer the same.
    assert backend.get(f"/api/slaves/slave/{agent}") == history
    assert backend.get(f"/api/slaves/slave/{agent}/details")["id"] == agent


def test_timed_rack_freeze_reverts_the_rack_and_its_agents(backend: Backend):
    backend.post("/api/racks/rack/rack-2/freeze", {"durationMillis": 1500, "revertToState": "ACTIVE"})
    assert backend.get("/api/racks/rack/rack-2/details")["currentState"]["state"] == "FROZEN"
    assert all(_state(backend, a) == "FROZEN" for a in _agent_ids(backend, "rack-2"))
    assert _expiring(backend, "racks")["rack-2"]["revertToState"] == "ACTIVE"
    wait_for(lambda: backend.get("/api/racks/rack/rack-2/details")["currentState"]["state"] == "ACTIVE",
             timeout=15, what="the rack's timed freeze to run out")
    assert all(_state(backend, a) == "ACTIVE" for a in _agent_ids(backend, "rack-2"))
    assert [u["state"] for u in backend.get("/api/racks/rack/rack-2")[-2:]] == ["FROZEN", "ACTIVE"]
    assert "rack-2" not in _expiring(backend, "racks")


def test_a_rack_reverting_leaves_an_agent_changed_by_hand_meanwhile(backend: Backend):
    agents = _agent_ids(backend, "rack-1")
    assert len(agents) >= 2
    backend.post("/api/racks/rack/rack-1/freeze", {"durationMillis": 2000, "revertToState": "ACTIVE"})
    backend.post(f"/api/agents/agent/{agents[0]}/decommission", {"message": "disk failing"})
    wait_for(lambda: backend.get("/api/racks/rack/rack-1/details")["currentState"]["state"] == "ACTIVE",
             timeout=15, what="the rack's timed freeze to run out")
    assert _state(backend, agents[0]) in ("DECOMMISSIONING", "DECOMMISSIONED")
    assert all(_state(backend, a) == "ACTIVE" for a in agents[1:])
    backend.post(f"/api/agents/agent/{agents[0]}/activate", {})


@pytest.mark.parametrize(("action", "body", "field"), [
    ("freeze", {"durationMillis": 3000, "revertToState": "BOGUS"}, "revertToState"),
    ("freeze", {"revertToState": "BOGUS"}, "revertToState"),
    ("freeze", {"durationMillis": -5, "revertToState": "ACTIVE"}, "durationMillis"),
    ("freeze", {"durationMillis": "soon", "revertToState": "ACTIVE"}, "durationMillis"),
    ("freeze", {"durationMillis": 3000}, "revertToState"),
    ("freeze", {"durationMillis": 3000, "revertToState": "FROZEN"}, "revertToState"),
    ("freeze", {"durationMillis": 3000, "revertToState": "DECOMMISSIONED",
                "killTasksOnDecommissionTimeout": True}, "revertToState"),
    ("freeze", {"durationMillis": 3000, "revertToState": "DEAD"}, "revertToState"),
    ("decommission", {"durationMillis": 3000, "revertToState": "DECOMMISSIONED"}, "revertToState"),
    ("decommission", {"durationMillis": 3000, "revertToState": "FROZEN"}, "revertToState"),
    ("decommission", {"durationMillis": 3000, "killTasksOnDecommissionTimeout": "yes please"},
     "killTasksOnDecommissionTimeout"),
])
def test_bad_change_requests_are_refused_and_change_nothing(backend: Backend, action: str, body: dict[str, Any],
                                                            field: str):
    agent = _agent_ids(backend)[-1]
    for path in (f"/api/agents/agent/{agent}/{action}", f"/api/slaves/slave/{agent}/{action}",
                 f"/api/racks/rack/rack-1/{action}"):
        r = backend.client.post(path, json=body)
        assert r.status_code == 400, (path, r.text)
        assert field in r.json()["message"], (path, r.text)
    assert _state(backend, agent) == "ACTIVE"
    assert backend.get("/api/racks/rack/rack-1/details")["currentState"]["state"] == "ACTIVE"
    assert agent not in _expiring(backend) and "rack-1" not in _expiring(backend, "racks")


def test_second_timed_change_conflicts_and_cancelling_keeps_the_state(backend: Backend):
    agent = _agent_ids(backend)[1]
    backend.post(f"/api/agents/agent/{agent}/freeze", {"durationMillis": 60_000, "revertToState": "ACTIVE"})
    r = backend.client.post(f"/api/agents/agent/{agent}/decommission",
                            json={"durationMillis": 60_000, "revertToState": "ACTIVE"})
    assert r.status_code == 409 and "expiring" in r.json()["message"]
    assert _state(backend, agent) == "FROZEN"

    cancelled = backend.delete(f"/api/agents/agent/{agent}/expiring")
    assert cancelled["machineId"] == agent and cancelled["revertToState"] == "ACTIVE"
    assert agent not in _expiring(backend)
    assert _state(backend, agent) == "FROZEN"  # frozen until activated by hand now
    assert backend.client.delete(f"/api/agents/agent/{agent}/expiring").status_code == 404
    backend.post(f"/api/agents/agent/{agent}/activate", {})

    # A timed change extended (Singularity's path says decommission, it takes any): it starts again with
    # the new duration, here a short one.
    assert backend.client.post(f"/api/agents/agent/{agent}/decommission/extend",
                               json={"durationMillis": 1000}).status_code == 404  # nothing timed to extend
    backend.post(f"/api/agents/agent/{agent}/freeze", {"durationMillis": 60_000, "revertToState": "ACTIVE",
                                                       "user": "ops", "actionId": "freeze-2"})
    r = backend.client.post(f"/api/agents/agent/{agent}/decommission/extend", json={"revertToState": "ACTIVE"})
    assert r.status_code == 400 and "durationMillis" in r.json()["message"]
    extended = backend.post(f"/api/agents/agent/{agent}/decommission/extend", {"durationMillis": 1000})
    assert extended["expiringAPIRequestObject"]["durationMillis"] == 1000 and extended["revertToState"] == "ACTIVE"
    assert extended["user"] == "ops" and extended["actionId"] == "freeze-2"  # kept from the change extended
    wait_for(lambda: _state(backend, agent) == "ACTIVE", timeout=15, what="the extended freeze to run out")

    # Activated by hand before a timed freeze runs out: the timed change has nothing left to do.
    backend.post(f"/api/agents/agent/{agent}/freeze", {"durationMillis": 60_000, "revertToState": "ACTIVE"})
    assert agent in _expiring(backend)
    backend.post(f"/api/agents/agent/{agent}/activate", {})
    assert agent not in _expiring(backend)
    assert _state(backend, agent) == "ACTIVE"


def test_decommission_that_times_out_kills_what_is_left(backend: Backend):
    # A one-off task is not moved by a decommission: it holds the agent in DECOMMISSIONING.
    backend.create({"id": "lingering", "requestType": "ON_DEMAND", "instances": 1},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.1, "memoryMb": 32}})
    wait_for(lambda: backend.get("/api/requests/request/lingering")["requestDeployState"].get("activeDeploy"),
             what="on-demand deploy active")
    backend.post("/api/requests/request/lingering/run", {})
    task = wait_for(lambda: backend.active_tasks("lingering"), what="the one-off task running")[0]
    task_id, agent = task["taskId"]["id"], task["agentId"]["value"]
    pid = backend.task_pid(task_id)

    backend.post(f"/api/agents/agent/{agent}/decommission",
                 {"durationMillis": 2000, "revertToState": "DECOMMISSIONED", "killTasksOnDecommissionTimeout": True,
                  "message": "rack move"})
    wait_for(lambda: _state(backend, agent) == "DECOMMISSIONING", what="decommissioning")
    wait_for(lambda: _state(backend, agent) == "DECOMMISSIONED", timeout=15, what="the decommission to time out")
    updates = wait_for(lambda: (u := backend.get(f"/api/history/task/{task_id}")["taskUpdates"])
                       and u[-1]["taskState"] == "TASK_KILLED" and u, what="the task killed")
    assert any(u["taskState"] == "TASK_CLEANING" and "DECOMMISSION_TIMEOUT" in u.get("statusMessage", "")
               for u in updates), updates
    wait_for(lambda: not pid_alive(pid), what="the task's process gone")
    assert [u["state"] for u in backend.get(f"/api/agents/agent/{agent}")[-3:]] == \
        ["STARTING_DECOMMISSION", "DECOMMISSIONING", "DECOMMISSIONED"]
    backend.post(f"/api/agents/agent/{agent}/activate", {})
    assert _state(backend, agent) == "ACTIVE"


def test_history_details_and_removal_paths(backend: Backend):
    agent = _agent_ids(backend)[0]
    assert isinstance(backend.get(f"/api/agents/agent/{agent}"), list)
    assert backend.get(f"/api/agents/agent/{agent}/details")["id"] == agent
    for path in ("/api/agents/agent/nope", "/api/agents/agent/nope/details", "/api/slaves/slave/nope",
                 "/api/racks/rack/nope", "/api/racks/rack/nope/details"):
        r = backend.client.get(path)
        assert r.status_code == 404 and "nope" in r.json()["message"], (path, r.text)
    for path in ("/api/agents/agent/nope", "/api/racks/rack/nope", "/api/racks/rack/nope/expiring"):
        assert backend.client.delete(path).status_code == 404, path
    assert backend.client.get("/api/agents?state=BOGUS").status_code == 400

    # Forgotten, an agent that is still there starts again: ACTIVE (no longer frozen), with a new history.
    backend.post(f"/api/agents/agent/{agent}/freeze", {"message": "to forget"})
    assert backend.delete(f"/api/agents/agent/{agent}") == {"agentId": agent, "removed": True}
    assert [u["state"] for u in backend.get(f"/api/agents/agent/{agent}")] == ["ACTIVE"]
    assert _state(backend, agent) == "ACTIVE"
    backend.post("/api/racks/rack/rack-2/freeze", {"message": "to forget"})
    backend.post("/api/racks/rack/rack-2/activate", {})
    assert [u["state"] for u in backend.get("/api/racks/rack/rack-2")][-2:] == ["FROZEN", "ACTIVE"]
    assert backend.delete("/api/racks/rack/rack-2") == {"rackId": "rack-2", "removed": True}
    assert [u["state"] for u in backend.get("/api/racks/rack/rack-2")] == ["ACTIVE"]


def test_timed_change_survives_a_crash_and_dead_agents_can_be_cleared(tmp_path: Path):
    backend = Backend(tmp_path / "data").start()
    try:
        agent = _agent_ids(backend)[0]
        backend.post(f"/api/agents/agent/{agent}/freeze",
                     {"durationMillis": 3000, "revertToState": "ACTIVE", "message": "before the crash"})
        frozen_at = backend.get(f"/api/agents/agent/{agent}")[-1]["timestamp"]
        backend.stop(signal.SIGKILL)

        backend = Backend(tmp_path / "data", port=backend.port).start()
        # The new backend knows the timed change (else the agent stayed FROZEN) and the history before it.
        wait_for(lambda: _state(backend, agent) == "ACTIVE", timeout=20, what="the timed freeze to run out")
        history = backend.get(f"/api/agents/agent/{agent}")
        assert [(u["state"], u.get("message")) for u in history[-2:]] == \
            [("FROZEN", "before the crash"), ("ACTIVE", "Updated due to expiring action")]
        assert history[-1]["timestamp"] - frozen_at >= 3000

        victim = _agent_ids(backend)[-1]
        backend.post(f"/api/local/agents/{victim}/lose")
        wait_for(lambda: _state(backend, victim) == "DEAD", what="the agent dead")
        assert backend.get(f"/api/agents/agent/{victim}")[-1]["state"] == "DEAD"
        assert backend.delete("/api/agents/dead") == {"removed": [victim]}
        assert backend.client.get(f"/api/agents/agent/{victim}/details").status_code == 404
        assert victim not in _agent_ids(backend)
    finally:
        backend.close()


def test_a_rack_is_dead_only_once_every_agent_of_it_is_dead(tmp_path: Path):
    backend = Backend(tmp_path / "data").start()
    try:
        rack = "rack-1"
        agents = _agent_ids(backend, rack)
        assert len(agents) >= 2
        for agent in agents[:-1]:
            backend.post(f"/api/agents/agent/{agent}/freeze", {})
        backend.post(f"/api/agents/agent/{agents[-1]}/decommission", {})
        wait_for(lambda: _state(backend, agents[-1]) == "DECOMMISSIONED", what="the last agent decommissioned")
        # No agent of it is ACTIVE, but they are all there: the rack is not dead.
        assert backend.get(f"/api/racks/rack/{rack}/details")["currentState"]["state"] == "ACTIVE"
        assert backend.get("/api/state")["deadRacks"] == 0

        for agent in agents:
            backend.post(f"/api/local/agents/{agent}/lose")
        wait_for(lambda: all(_state(backend, a) == "DEAD" for a in agents), what="every agent of the rack dead")
        assert backend.get(f"/api/racks/rack/{rack}/details")["currentState"]["state"] == "DEAD"
        assert backend.get("/api/state")["deadRacks"] == 1
    finally:
        backend.close()


def test_no_more_than_two_agents_decommission_at_once(tmp_path: Path):
    """Each agent's task has nowhere else to go (one per agent), so a decommission stays DECOMMISSIONING."""
    backend = Backend(tmp_path / "data").start()
    try:
        agents = _agent_ids(backend)
        assert len(agents) == 3
        backend.post("/api/requests", {"id": "spread", "requestType": "WORKER", "instances": 3,
                                       "agentPlacement": "SEPARATE_BY_REQUEST"})
        backend.post("/api/deploys", {"deploy": {"requestId": "spread", "id": "v1", "command": "sleep 1000",
                                                 "resources": {"cpus": 0.1, "memoryMb": 16}}})
        wait_for(lambda: len(backend.get("/api/tasks/active")) == 3, what="a task on every agent")
        for agent in agents[:2]:
            backend.post(f"/api/agents/agent/{agent}/decommission", {})
        assert [_state(backend, a) for a in agents[:2]] == ["DECOMMISSIONING", "DECOMMISSIONING"]

        r = backend.client.post(f"/api/agents/agent/{agents[2]}/decommission", json={})
        assert r.status_code == 400
        assert "2 agents are already decommissioning (2 allowed at once" in r.json()["message"]
        assert _state(backend, agents[2]) == "ACTIVE"
        assert backend.get(f"/api/agents/agent/{agents[2]}")[-1]["state"] == "ACTIVE"  # no history written

        backend.post(f"/api/agents/agent/{agents[0]}/activate", {})  # one fewer: the third may go now
        backend.post(f"/api/agents/agent/{agents[2]}/decommission", {})
        assert _state(backend, agents[2]) == "DECOMMISSIONING"
    finally:
        backend.close()
