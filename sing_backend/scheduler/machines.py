"""Agents and racks: freeze, activate, decommission (replacements first, then the old tasks go), the state
history of each, and timed changes that revert on their own (Singularity's expiring machine states).

A mixin of `core.Scheduler`.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import bad_request, conflict, not_found
from ..ids import derived_action_id
from ..models.actions import MachineChangeRequest
from ..models.common import TaskCleanupType
from ..state.store import StateUnavailable

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object

log = logging.getLogger(__name__)

MACHINE_STATES = ("MISSING_ON_STARTUP", "ACTIVE", "STARTING_DECOMMISSION", "DECOMMISSIONING", "DECOMMISSIONED",
                  "DEAD", "FROZEN")
_DECOMMISSIONING = frozenset({"STARTING_DECOMMISSION", "DECOMMISSIONING", "DECOMMISSIONED"})
_MOVING_OUT = frozenset({"STARTING_DECOMMISSION", "DECOMMISSIONING"})  # a decommission under way
_INACTIVE = frozenset({"MISSING_ON_STARTUP", "DECOMMISSIONED", "DEAD"})
# States only the scheduler itself moves a machine to: a timed change may not revert to them.
_SYSTEM_ONLY = ("DEAD", "MISSING_ON_STARTUP", "DECOMMISSIONING")
# State updates kept per machine (oldest dropped): each machine's history is one document, which must stay
# far below ZooKeeper's 1 MB per znode; a machine changes state a handful of times in its life.
HISTORY_KEEP = 100


def _illegal_transition(current: str, new: str, expiring: bool) -> str | None:
    """Why `current` -> `new` is refused, as Singularity's AbstractMachineManager decides it (None: allowed).
    `expiring`: the change is a timed one coming due, which may not bring an inactive machine back."""
    if current == new:
        return f"already {current}"
    if new == "STARTING_DECOMMISSION" and current in _DECOMMISSIONING:
        return f"{current}: decommissioning has already started"
    if new in ("DECOMMISSIONING", "DECOMMISSIONED") and current in ("FROZEN", "ACTIVE"):
        return f"{current} can not go to {new} without being decommissioned first"
    if new == "FROZEN" and current in _DECOMMISSIONING:
        return f"{current} can not be frozen"
    if expiring and current in _INACTIVE:
        return f"{current} is no longer in service"
    return None


def _revert_refused(target: str, change: MachineChangeRequest) -> str | None:
    """Why a timed change to `target` can not revert to `change.revertToState` (Singularity's
    validateExpiringMachineStateChange, plus a revert to the state the change itself sets)."""
    revert = change.revertToState
    if revert == target:
        return f"revertToState: {revert} is the state this change sets; it would revert to itself"
    if revert == "STARTING_DECOMMISSION" and target in _DECOMMISSIONING:
        return "revertToState: can not start a decommission when the change already starts one"
    if revert in ("DECOMMISSIONING", "DECOMMISSIONED") and target in ("FROZEN", "ACTIVE"):
        return f"revertToState: can not go from {target} to {revert} (decommission instead)"
    if revert == "FROZEN" and target in _DECOMMISSIONING:
        return f"revertToState: can not go from {target} to FROZEN"
    if revert in _SYSTEM_ONLY:
        return f"revertToState: {', '.join(_SYSTEM_ONLY)} are set by the scheduler only, not by a timed change"
    if revert == "DECOMMISSIONED" and not change.killTasksOnDecommissionTimeout:
        return ("revertToState: DECOMMISSIONED needs killTasksOnDecommissionTimeout true (the tasks still on the "
                "machine when the time is up are killed)")
    return None


def validate_change(action_state: str, change: MachineChangeRequest) -> None:
    """Refuse (400, naming the field) a change request Singularity refuses; nothing is changed yet."""
    if change.revertToState is not None and change.revertToState not in MACHINE_STATES:
        raise bad_request(f"revertToState: must be one of {', '.join(MACHINE_STATES)}")
    if change.durationMillis is None:
        return  # as in Singularity, revertToState and killTasksOnDecommissionTimeout mean nothing without it
    if change.revertToState is None:
        raise bad_request("revertToState: required with durationMillis (the state to go back to once it expires)")
    refused = _revert_refused(action_state, change)
    if refused:
        raise bad_request(refused)


class Machines(_Base):
    _MACHINE_ACTIONS = {"freeze": "FROZEN", "activate": "ACTIVE", "decommission": "STARTING_DECOMMISSION"}

    def _load_machines(self) -> None:
        self.machine_states = self.store.load("machineStates")
        self.machine_expiring = self.store.load("machineExpiring")
        self.machine_updates = {key: doc.get("updates", []) for key, doc in self.store.load("machineHistory").items()}

    # ------------------------------------------------------------------ lookups

    def _rack_agents(self, rack_id: str) -> list[str]:
        return [a["id"] for a in self.agents.values() if a["rackId"] == rack_id]

    def machine_known(self, kind: str, machine_id: str) -> bool:
        """Seen in an offer, or with something saved (a state, a history, a timed change)."""
        key = f"{kind}/{machine_id}"
        if key in self.machine_states or key in self.machine_updates or key in self.machine_expiring:
            return True
        return machine_id in self.agents if kind == "agent" else bool(self._rack_agents(machine_id))

    def machine_history(self, kind: str, machine_id: str, current: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Its SingularityMachineStateHistoryUpdates, oldest first. `current` (its state now) ends the list
        when the last saved update is of another state: an agent is ACTIVE from its first offer, and DEAD
        once lost, without an update being saved."""
        updates = list(self.machine_updates.get(f"{kind}/{machine_id}", []))
        if current is not None and (not updates or updates[-1]["state"] != current["state"]):
            updates.append(_history_update(machine_id, current))
        return updates

    def expiring_machine_states(self, kind: str) -> list[dict[str, Any]]:
        """GET /agents/expiring, /racks/expiring: the timed changes not yet due (SingularityExpiringMachineState)."""
        return [_expiring_wire(record) for key, record in sorted(self.machine_expiring.items())
                if key.startswith(f"{kind}/")]

    # ------------------------------------------------------------------ changes asked for through the API

    def _check_decommissioning_count(self) -> None:
        """As Singularity: a few agents at a time move their tasks away (a rack's decommission is not
        counted, as there)."""
        limit = self.settings.limits.max_decommissioning_agents
        busy = sum(1 for a in self.agents.values()
                   if a["currentState"]["state"] in _MOVING_OUT)
        if busy >= limit:
            raise bad_request(f"{busy} agents are already decommissioning ({limit} allowed at once, "
                              "limits.max_decommissioning_agents); let them finish before decommissioning another")

    def change_machine(self, kind: str, machine_id: str, action: str,
                       change: MachineChangeRequest | None = None) -> None:
        """Freeze, activate or decommission an agent ("agent") or every agent of a rack ("rack"); with
        `durationMillis`, go to `revertToState` once that time has passed (an expiring machine state)."""
        change = change or MachineChangeRequest()
        new_state = self._MACHINE_ACTIONS[action]
        validate_change(new_state, change)
        key = f"{kind}/{machine_id}"
        if kind == "agent":
            targets = [machine_id] if machine_id in self.agents else []
        else:
            targets = self._rack_agents(machine_id)
        if not targets:
            raise not_found(f"Couldn't find {kind} {machine_id}")
        if change.durationMillis is not None and key in self.machine_expiring:
            pending = self.machine_expiring[key]
            raise conflict(f"{kind} {machine_id} already has a timed change (to {pending['revertToState']}); delete "
                           f"it first (DELETE .../{kind}/{machine_id}/expiring)")
        current = self._current_state(key, targets)
        if current == "DEAD":
            raise conflict(f"{kind} {machine_id} is dead")
        if action == "freeze" and current != "ACTIVE":
            raise conflict(f"{kind} {machine_id} is {current}; only an ACTIVE {kind} can be frozen")
        if action == "decommission" and current in _DECOMMISSIONING:
            raise conflict(f"{kind} {machine_id} is already {current}")
        if action == "activate" and current == "ACTIVE":
            raise conflict(f"{kind} {machine_id} is already ACTIVE")
        if action == "decommission" and kind == "agent":
            self._check_decommissioning_count()
        state: dict[str, Any] = {"state": new_state, "timestamp": self.clock()}
        if change.user:
            state["user"] = change.user
        if change.message:
            state["message"] = change.message
        with self.store.batch():
            self._set_machine_state(key, state)
            if kind == "rack":
                for agent_id in self._live_agents(targets):
                    self._set_machine_state(f"agent/{agent_id}", dict(state))
            if change.durationMillis is not None:
                self._save_expiring(kind, machine_id, change, targets)
        self._progress_machines()
        self.kick()

    def _live_agents(self, agent_ids: list[str]) -> list[str]:
        # A rack's change leaves its dead agents dead: they come back, if ever, through a new offer.
        return [a for a in agent_ids if a not in self.agents or self.agents[a]["currentState"]["state"] != "DEAD"]

    def _save_expiring(self, kind: str, machine_id: str, change: MachineChangeRequest, targets: list[str]) -> None:
        record: dict[str, Any] = {
            "startMillis": self.clock(), "actionId": change.actionId or str(uuid.uuid4()),
            "expiringAPIRequestObject": change.wire(), "machineId": machine_id,
            "revertToState": change.revertToState,
            "killTasksOnDecommissionTimeout": bool(change.killTasksOnDecommissionTimeout)}
        if change.user:
            record["user"] = change.user
        if kind == "rack":
            # Sing: the rack's agents at the time, so that its revert reaches them all even if a new
            # leader has not had an offer from each yet when it comes due (not shown in the API).
            record["agentIds"] = targets
        key = f"{kind}/{machine_id}"
        self.machine_expiring[key] = record
        self.store.put("machineExpiring", key, record)
        self.version += 1

    def cancel_expiring_machine_state(self, kind: str, machine_id: str) -> None:
        """DELETE .../expiring: keep the machine's state, drop the timed change back."""
        key = f"{kind}/{machine_id}"
        if key not in self.machine_expiring:
            raise not_found(f"{kind} {machine_id} has no timed state change")
        self._drop_expiring(key)

    def extend_expiring_machine_state(self, kind: str, machine_id: str, change: MachineChangeRequest) -> None:
        """POST /agents/agent/{id}/decommission/extend: the timed change starts again with these settings."""
        key = f"{kind}/{machine_id}"
        pending = self.machine_expiring.get(key)
        if change.durationMillis is None:
            raise bad_request("durationMillis: required to extend a timed state change")
        if pending is None:
            raise not_found(f"{kind} {machine_id} has no timed state change to extend")
        agent_ids = [machine_id] if kind == "agent" else pending.get("agentIds", [])
        current = self._current_state(key, agent_ids)
        # What the caller does not say again is kept from the change it extends.
        kept = {"revertToState": pending["revertToState"], "actionId": pending.get("actionId"),
                "user": pending.get("user"),
                "killTasksOnDecommissionTimeout": pending["killTasksOnDecommissionTimeout"]}
        change = change.model_copy(update={k: v for k, v in kept.items() if getattr(change, k) is None})
        validate_change(current, change)
        with self.store.batch():
            self._drop_expiring(key)
            self._save_expiring(kind, machine_id, change, pending.get("agentIds", []))

    def _drop_expiring(self, key: str) -> None:
        if self.machine_expiring.pop(key, None) is not None:
            self.store.delete("machineExpiring", key)
            self.version += 1

    def remove_machine(self, kind: str, machine_id: str) -> None:
        """DELETE /agents/agent/{id}, /racks/rack/{id}: forget the machine, its state, history and timed
        change (which cancels a decommission, as in Singularity)."""
        if not self.machine_known(kind, machine_id):
            raise not_found(f"Couldn't find {kind} {machine_id}")
        key = f"{kind}/{machine_id}"
        with self.store.batch():
            if self.machine_states.pop(key, None) is not None:
                self.store.delete("machineStates", key)
            if self.machine_updates.pop(key, None) is not None:
                self.store.delete("machineHistory", key)
            self._drop_expiring(key)
        agent = self.agents.get(machine_id) if kind == "agent" else None
        if agent is not None and agent["currentState"]["state"] == "DEAD":
            del self.agents[machine_id]
        elif agent is not None:
            # Not known to be gone, it still makes offers: Singularity sees it again, ACTIVE and new, with
            # its next one. Sing notes an agent at its first offer only, so it starts again here at once.
            now = self.clock()
            self.agents[machine_id] = {**agent, "currentState": {"state": "ACTIVE", "timestamp": now},
                                       "firstSeenAt": now}
        self.version += 1

    # ------------------------------------------------------------------ state changes

    def _set_machine_state(self, key: str, state: dict[str, Any]) -> None:
        kind, machine_id = key.split("/", 1)
        if state["state"] == "ACTIVE":
            if self.machine_states.pop(key, None) is not None:
                self.store.delete("machineStates", key)
        else:
            self.machine_states[key] = state
            self.store.put("machineStates", key, state)
        if kind == "agent" and machine_id in self.agents:
            self.agents[machine_id]["currentState"] = state
        updates = [*self.machine_updates.get(key, []), _history_update(machine_id, state)][-HISTORY_KEEP:]
        self.machine_updates[key] = updates
        self.store.put("machineHistory", key, {"updates": updates})
        # As Singularity: a timed change that could no longer apply from the new state is dropped (the
        # machine was activated by hand before a timed freeze ran out, decommissioned before a timed...).
        pending = self.machine_expiring.get(key)
        if pending is not None and _illegal_transition(state["state"], pending["revertToState"], expiring=True):
            self._drop_expiring(key)
        self.version += 1

    def _progress_machines(self) -> None:
        """Decommission: replacements first (graceful cleanups), then DECOMMISSIONED once empty."""
        # Called every tick: a transaction is opened only when some machine is being decommissioned.
        if any(s["state"] in _MOVING_OUT for s in self.machine_states.values()):
            with self.store.batch():
                self._progress_agents_and_racks()

    def _progress_agents_and_racks(self) -> None:
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
            if kind == "rack" and state["state"] in _MOVING_OUT:
                agents = [a for a in self.agents.values() if a["rackId"] == rack_id]
                # (Its dead agents, left as they are, do not hold it up.)
                if all(a["currentState"]["state"] in ("DECOMMISSIONED", "DEAD") for a in agents):
                    self._set_machine_state(key, {**state, "state": "DECOMMISSIONED", "timestamp": self.clock()})
                elif state["state"] == "STARTING_DECOMMISSION":
                    self._set_machine_state(key, {**state, "state": "DECOMMISSIONING"})

    # ------------------------------------------------------------------ timed changes coming due

    def _expire_machine_states(self) -> None:
        """Revert each timed change whose time is up (every tick, as Singularity's expiring user action
        poller). Its writes land in one batch, and its kills go out only once they are saved."""
        now = self.clock()
        due = [(key, record) for key, record in self.machine_expiring.items()
               if now - record["startMillis"] > record["expiringAPIRequestObject"]["durationMillis"]]
        if not due:
            return
        try:
            # Split if too large for one ZooKeeper multi: a rack's revert may kill hundreds of tasks.
            with self.effects_after_commit(), self.store.batch(split_if_too_large=True):
                for key, record in due:
                    self._revert_machine(key, record)
                self._progress_agents_and_racks()
        except StateUnavailable as exc:
            # Memory is now ahead of what is saved: start again from what is (the next leader reverts it).
            log.warning("timed machine state changes not saved (%s)", exc)
            if self.on_unsaved is not None:
                self.on_unsaved(exc)
            else:
                raise
        self.kick()

    def _revert_machine(self, key: str, record: dict[str, Any]) -> None:
        kind, machine_id = key.split("/", 1)
        self._drop_expiring(key)
        revert = record["revertToState"]
        agent_ids = [machine_id] if kind == "agent" else \
            sorted(set(record.get("agentIds", [])) | set(self._rack_agents(machine_id)))
        current = self._current_state(key, agent_ids)
        refused = _illegal_transition(current, revert, expiring=True)
        if refused:
            log.info("%s: timed change back to %s dropped: %s", key, revert, refused)
            return
        state: dict[str, Any] = {"state": revert, "timestamp": self.clock(),
                                 "message": "Updated due to expiring action"}
        if record.get("user"):
            state["user"] = record["user"]
        self._set_machine_state(key, state)
        if kind == "rack":
            for agent_id in self._live_agents(agent_ids):
                # Only the agents the rack's change still holds: one decommissioned by hand meanwhile is
                # not brought back with the rack.
                if self._current_state(f"agent/{agent_id}", [agent_id]) == current:
                    self._set_machine_state(f"agent/{agent_id}", dict(state))
        if revert == "DECOMMISSIONED" and record.get("killTasksOnDecommissionTimeout"):
            # The decommission did not finish in time: what still runs there is killed now.
            took = self.clock() - record["startMillis"]
            message = f"Agent decommission (started by: {record.get('user', 'unknown')}) timed out after {took}ms"
            on_machine = set(agent_ids)
            for task in list(self.tasks.values()):
                if task.agent_id in on_machine:
                    self._cleanup_task(task, TaskCleanupType.DECOMMISSION_TIMEOUT, record.get("user"), message)

    def _current_state(self, key: str, agent_ids: list[str]) -> str:
        kind, machine_id = key.split("/", 1)
        if kind == "agent" and machine_id in self.agents:
            # Kept in step with the saved state, and DEAD once lost (which is not saved).
            return str(self.agents[machine_id]["currentState"]["state"])
        saved = self.machine_states.get(key)
        if saved is not None:
            return str(saved["state"])
        if kind == "rack" and agent_ids and all(
                self.agents.get(a, {}).get("currentState", {}).get("state") == "DEAD" for a in agent_ids):
            return "DEAD"
        return "ACTIVE"


def _history_update(machine_id: str, state: dict[str, Any]) -> dict[str, Any]:
    update: dict[str, Any] = {"objectId": machine_id, "state": state["state"], "timestamp": state["timestamp"]}
    for field in ("user", "message"):
        if state.get(field):
            update[field] = state[field]
    return update


def _expiring_wire(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k != "agentIds"}
    if not out.get("actionId"):  # saved before changes had one
        out["actionId"] = str(derived_action_id(record.get("machineId"), record.get("startMillis")))
    return out
