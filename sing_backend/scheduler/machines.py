"""Agents and racks: freeze, activate, decommission (replacements first, then the old tasks go).

A mixin of `core.Scheduler`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import conflict, not_found
from ..models.common import TaskCleanupType

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object


class Machines(_Base):
    _MACHINE_ACTIONS = {"freeze": "FROZEN", "activate": "ACTIVE", "decommission": "STARTING_DECOMMISSION"}

    def change_machine(self, kind: str, machine_id: str, action: str, user: str | None = None,
                       message: str | None = None) -> None:
        """Freeze, activate or decommission an agent ("agent") or every agent of a rack ("rack")."""
        if kind == "agent":
            targets = [machine_id] if machine_id in self.agents else []
        else:
            targets = [a["id"] for a in self.agents.values() if a["rackId"] == machine_id]
        if not targets:
            raise not_found(f"Couldn't find {kind} {machine_id}")
        new_state = self._MACHINE_ACTIONS[action]
        current = (self.machine_states.get(f"{kind}/{machine_id}") or
                   self.agents[targets[0]]["currentState"])["state"]
        if current == "DEAD":
            raise conflict(f"{kind} {machine_id} is dead")
        if action == "freeze" and current != "ACTIVE":
            raise conflict(f"{kind} {machine_id} is {current}; only an ACTIVE {kind} can be frozen")
        if action == "decommission" and current in ("STARTING_DECOMMISSION", "DECOMMISSIONING", "DECOMMISSIONED"):
            raise conflict(f"{kind} {machine_id} is already {current}")
        if action == "activate" and current == "ACTIVE":
            raise conflict(f"{kind} {machine_id} is already ACTIVE")
        state: dict[str, Any] = {"state": new_state, "timestamp": self.clock()}
        if user:
            state["user"] = user
        if message:
            state["message"] = message
        with self.store.batch():
            self._set_machine_state(f"{kind}/{machine_id}", state)
            if kind == "rack":
                for agent_id in targets:
                    self._set_machine_state(f"agent/{agent_id}", dict(state))
        self._progress_machines()
        self.kick()

    def _set_machine_state(self, key: str, state: dict[str, Any]) -> None:
        kind, machine_id = key.split("/", 1)
        if state["state"] == "ACTIVE":
            self.machine_states.pop(key, None)
            self.store.delete("machineStates", key)
        else:
            self.machine_states[key] = state
            self.store.put("machineStates", key, state)
        if kind == "agent" and machine_id in self.agents:
            self.agents[machine_id]["currentState"] = state
        self.version += 1

    def _progress_machines(self) -> None:
        """Decommission: replacements first (graceful cleanups), then DECOMMISSIONED once empty."""
        for key, state in list(self.machine_states.items()):
            kind, machine_id = key.split("/", 1)
            if kind != "agent":
                continue
            if state["state"] == "STARTING_DECOMMISSION":
                for task in self.tasks.values():
                    if task.agent_id == machine_id and task.cleanup is None:
                        owner = self.requests.get(task.tid.requestId)
                        if owner is not None and owner.request.type.long_running:
                            self._cleanup_task(task, TaskCleanupType.DECOMISSIONING, state.get("user"))
                self._set_machine_state(key, {**state, "state": "DECOMMISSIONING", "timestamp": self.clock()})
            elif state["state"] == "DECOMMISSIONING" and not any(t.agent_id == machine_id for t in self.tasks.values()):
                self._set_machine_state(key, {**state, "state": "DECOMMISSIONED", "timestamp": self.clock()})
        for key, state in list(self.machine_states.items()):
            kind, rack_id = key.split("/", 1)
            if kind == "rack" and state["state"] in ("STARTING_DECOMMISSION", "DECOMMISSIONING"):
                agents = [a for a in self.agents.values() if a["rackId"] == rack_id]
                if all(a["currentState"]["state"] == "DECOMMISSIONED" for a in agents):
                    self._set_machine_state(key, {**state, "state": "DECOMMISSIONED", "timestamp": self.clock()})
                elif state["state"] == "STARTING_DECOMMISSION":
                    self._set_machine_state(key, {**state, "state": "DECOMMISSIONING"})
