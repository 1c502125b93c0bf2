"""The scheduler's live objects, and how each is stored and shown on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..ids import PendingTaskId, TaskId
from ..models.common import RequestState
from ..models.deploy import STORED, SingularityDeploy, deploy_launch_problem
from ..models.request import SingularityRequest
from .health import HealthState


def deploy_marker(request_id: str, deploy_id: str, timestamp: int, user: str | None = None,
                  message: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {"requestId": request_id, "deployId": deploy_id, "timestamp": timestamp}
    if user:
        marker["user"] = user
    if message:
        marker["message"] = message
    return marker


@dataclass(slots=True)
class RequestEntry:
    request: SingularityRequest
    state: RequestState
    timestamp: int
    user: str | None = None
    active_deploy: dict[str, Any] | None = None  # DeployMarker
    pending_deploy: dict[str, Any] | None = None  # DeployMarker
    bouncing: bool = False
    # Timed actions that revert themselves: "bounce", "pause", "scale", "skipHealthchecks" ->
    # {user?, startMillis, durationMillis, actionId?, expiringAPIRequestObject, revertTo?}
    expiring: dict[str, dict[str, Any]] = field(default_factory=dict)
    # When recent tasks of the active deploy failed (crash-loop detection).
    failures: list[int] = field(default_factory=list)
    # Why the tasks the next scheduling round starts are needed, when not a task's end (UNPAUSED):
    # their pendingType, as Singularity gives it. Not saved: after a fail-over they say TASK_DONE.
    relaunch_reason: str | None = None

    @property
    def id(self) -> str:
        return self.request.id

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"request": self.request.wire(), "state": self.state.value, "timestamp": self.timestamp}
        if self.user:
            doc["user"] = self.user
        if self.active_deploy:
            doc["activeDeploy"] = self.active_deploy
        if self.pending_deploy:
            doc["pendingDeploy"] = self.pending_deploy
        if self.bouncing:
            doc["bouncing"] = True
        if self.expiring:
            doc["expiring"] = self.expiring
        if self.failures:
            doc["failures"] = self.failures
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RequestEntry:
        return cls(
            request=SingularityRequest.model_validate(doc["request"]),
            state=RequestState(doc["state"]),
            timestamp=doc["timestamp"],
            user=doc.get("user"),
            active_deploy=doc.get("activeDeploy"),
            pending_deploy=doc.get("pendingDeploy"),
            bouncing=doc.get("bouncing", False),
            expiring=doc.get("expiring", {}),
            failures=doc.get("failures", []),
        )


@dataclass(slots=True)
class DeployEntry:
    deploy: SingularityDeploy
    marker: dict[str, Any]
    result: dict[str, Any] | None = None  # DeployResult once it has one
    _problem: str | None = field(default=None, init=False, repr=False)
    _checked: bool = field(default=False, init=False, repr=False)

    def launch_problem(self) -> str | None:
        """Why its tasks cannot be built (a deploy saved before a check it fails), so that they are not even
        placed; checked once, when a task of it is first to be placed (not for every deploy at start-up)."""
        if not self._checked:
            self._problem, self._checked = deploy_launch_problem(self.deploy), True
        return self._problem

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"deploy": self.deploy.wire(), "deployMarker": self.marker}
        if self.result:
            doc["deployResult"] = self.result
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DeployEntry:
        deploy = SingularityDeploy.model_validate(doc["deploy"], context=STORED)
        return cls(deploy, doc["deployMarker"], doc.get("deployResult"))


@dataclass(slots=True)
class PendingDeployEntry:
    marker: dict[str, Any]
    state: str = "WAITING"
    updated_request: dict[str, Any] | None = None
    unpause_on_success: bool = False
    failed_tasks: list[dict[str, str]] = field(default_factory=list)  # {id, reason, message}
    step: int = 0  # 0-based rollout step (deployInstanceCountPerStep or canary group)
    step_healthy_at: int | None = None  # when the current step's tasks were all healthy
    target_override: int | None = None  # set through /api/deploys/update
    step_failures: int = 0  # failed tasks in the current step (canary tolerance)

    def wire(self, target: int, current: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deployMarker": self.marker,
            "currentDeployState": self.state,
            "deployProgress": {
                "targetActiveInstances": target,
                "currentActiveInstances": current,
                "stepLaunchComplete": current >= target,
                "autoAdvanceDeploySteps": True,
                "failedDeployTasks": [TaskId.parse(f["id"]).wire() for f in self.failed_tasks],
                "timestamp": self.step_healthy_at or self.marker["timestamp"],
                "step": self.step,
            },
        }
        if self.updated_request:
            out["updatedRequest"] = self.updated_request
        return out

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"deployMarker": self.marker, "state": self.state, "failedTasks": self.failed_tasks,
                               "step": self.step, "stepFailures": self.step_failures}
        if self.step_healthy_at is not None:
            doc["stepHealthyAt"] = self.step_healthy_at
        if self.target_override is not None:
            doc["targetOverride"] = self.target_override
        if self.updated_request:
            doc["updatedRequest"] = self.updated_request
        if self.unpause_on_success:
            doc["unpauseOnSuccessfulDeploy"] = True
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PendingDeployEntry:
        return cls(doc["deployMarker"], doc.get("state", "WAITING"), doc.get("updatedRequest"),
                   doc.get("unpauseOnSuccessfulDeploy", False), list(doc.get("failedTasks", [])),
                   doc.get("step", 0), doc.get("stepHealthyAt"), doc.get("targetOverride"),
                   doc.get("stepFailures", 0))


@dataclass(slots=True)
class PendingTaskEntry:
    pid: PendingTaskId
    extras: dict[str, Any] = field(default_factory=dict)  # cmdLineArgsList, runId, user, message, envOverrides...
    reason: str | None = None  # why it is not placed yet (not persisted: recomputed every round)

    @property
    def id(self) -> str:
        return self.pid.id

    def wire(self) -> dict[str, Any]:
        return {"pendingTaskId": self.pid.wire(), **self.extras}

    def doc(self) -> dict[str, Any]:
        return {"pendingTaskId": self.pid.wire(), "extras": self.extras}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PendingTaskEntry:
        p = doc["pendingTaskId"]
        pid = PendingTaskId(p["requestId"], p["deployId"], p["nextRunAt"], p["instanceNo"], p["pendingType"],
                            p["createdAt"])
        return cls(pid, doc.get("extras", {}))


@dataclass(slots=True)
class TaskEntry:
    tid: TaskId
    task: dict[str, Any]  # SingularityTask, as shown by the API
    agent_id: str
    state: str = "TASK_LAUNCHED"
    running_since: int | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None  # SingularityTaskCleanup while it is being cleaned up
    kill_sent_at: int | None = None
    directory: str | None = None
    # Load balancer: None (not registered), ADDING, ADDED, REMOVING, REMOVED, FAILED.
    lb_state: str | None = None
    kill_retries: int = 0  # kills sent again (Scheduler.kill_again)
    # Health-check progress; not persisted: a new leader checks its running tasks again (Scheduler.load).
    health: HealthState | None = None

    @property
    def id(self) -> str:
        return self.tid.id

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"task": self.task, "agentId": self.agent_id, "state": self.state,
                               "updates": self.updates}
        if self.running_since is not None:
            doc["runningSince"] = self.running_since
        if self.cleanup:
            doc["cleanup"] = self.cleanup
        if self.kill_sent_at is not None:
            doc["killSentAt"] = self.kill_sent_at
        if self.directory:
            doc["directory"] = self.directory
        if self.lb_state:
            doc["lbState"] = self.lb_state
        if self.kill_retries:
            doc["killRetries"] = self.kill_retries
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TaskEntry:
        t = doc["task"]["taskId"]
        tid = TaskId(t["requestId"], t["deployId"], t["startedAt"], t["instanceNo"], t["host"], t["sanitizedHost"],
                     t["rackId"], t["sanitizedRackId"])
        return cls(tid, doc["task"], doc["agentId"], doc["state"], doc.get("runningSince"), doc.get("updates", []),
                   doc.get("cleanup"), doc.get("killSentAt"), doc.get("directory"), doc.get("lbState"),
                   doc.get("killRetries", 0))
