"""Deploys: start, step through (steps, canary groups), succeed, fail and roll back, cancel.

A mixin of `core.Scheduler`: it shares the scheduler's state and helpers. New tasks start beside the
old ones; old tasks are removed only as new ones prove healthy, so capacity never drops, and a failed
deploy just kills its own tasks while the previous deploy keeps serving.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..errors import bad_request, conflict, not_found
from ..ids import PendingTaskId, TaskId
from ..models.actions import DeployUpdate
from ..models.common import DeployState, PendingType, RequestState, RequestType, TaskCleanupType
from ..models.deploy import DeployRequest, SingularityDeploy
from ..models.request import SingularityRequest
from .entities import DeployEntry, PendingDeployEntry, PendingTaskEntry, RequestEntry, TaskEntry, deploy_marker
from .health import DEFAULT_INTERVAL_S, DEFAULT_STARTUP_TIMEOUT_S
from .planning import LiveTask, StepPlan, healthy_count, next_healthy_at, step_target

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object


def step_plan(deploy: SingularityDeploy) -> StepPlan:
    canary = deploy.canaryDeploySettings or {}
    if canary.get("enableCanaryDeploy"):
        timed = canary.get("acceptanceMode", "NONE") == "TIMED"
        return StepPlan(step_size=canary.get("instanceGroupSize", 1),
                        wait_ms=canary.get("waitMillisBetweenGroups", 0) if timed else 0,
                        first_steps=canary.get("canaryCycleCount", 3),
                        allowed_failures_per_step=canary.get("allowedTasksFailuresPerGroup", 0))
    if deploy.deployInstanceCountPerStep:
        return StepPlan(step_size=deploy.deployInstanceCountPerStep, wait_ms=deploy.deployStepWaitTimeMs or 0,
                        allowed_failures_per_step=deploy.maxTaskRetries or 0)
    return StepPlan(step_size=None, allowed_failures_per_step=deploy.maxTaskRetries or 0)


class DeployFlow(_Base):
    # ------------------------------------------------------------------ API actions

    def deploy(self, body: DeployRequest) -> RequestEntry:
        deploy = body.deploy
        entry = self.get_request(deploy.requestId)
        if entry.state == RequestState.DELETING:
            raise conflict(f"Request {deploy.requestId} is being deleted")
        if (deploy.requestId, deploy.id) in self.deploys:
            raise bad_request(f"deploy.id: deploy {deploy.id} of request {deploy.requestId} already exists; "
                              "deploy ids must be new")
        if entry.pending_deploy:
            raise conflict(f"Request {deploy.requestId} already has a pending deploy "
                           f"{entry.pending_deploy['deployId']}; cancel it or wait for it to finish")
        if deploy.resources:
            r = deploy.resources
            self._check_resources(r.cpus, r.memoryMb, r.diskMb, r.numPorts, "deploy.resources")
        if body.updatedRequest is not None:
            if body.updatedRequest.id != deploy.requestId:
                raise bad_request("updatedRequest.id: must be the deploy's requestId")
            if body.updatedRequest.requestType != entry.request.requestType:
                raise bad_request("updatedRequest.requestType: the request type cannot change")
            self.check_load_balanced_kept(entry, body.updatedRequest, "updatedRequest.loadBalanced")
            self._check_limits(body.updatedRequest)
        self.check_load_balanced(body.updatedRequest or entry.request, deploy)
        if deploy.runImmediately is not None and entry.request.type not in (RequestType.ON_DEMAND,
                                                                            RequestType.RUN_ONCE):
            raise bad_request("deploy.runImmediately: only for ON_DEMAND and RUN_ONCE requests")
        if deploy.canaryDeploySettings and deploy.canaryDeploySettings.get("enableCanaryDeploy") \
                and not entry.request.type.long_running:
            raise bad_request("deploy.canaryDeploySettings: canary deploys are for SERVICE and WORKER requests")
        now = self.clock()
        deploy = deploy.model_copy(update={"timestamp": deploy.timestamp or now})
        marker = deploy_marker(deploy.requestId, deploy.id, now, body.user, body.message)
        dep = DeployEntry(deploy, marker)
        pend = PendingDeployEntry(marker, "WAITING",
                                  body.updatedRequest.wire() if body.updatedRequest else None,
                                  bool(body.unpauseOnSuccessfulDeploy))
        with self.store.batch():
            self.deploys[(deploy.requestId, deploy.id)] = dep
            self.store.put("deploys", f"{deploy.requestId}/{deploy.id}", dep.doc())
            entry.pending_deploy = marker
            self.pending_deploys[entry.id] = pend
            self.store.put("pendingDeploys", entry.id, pend.doc())
            if entry.state == RequestState.PAUSED and pend.unpause_on_success:
                entry.state = RequestState.DEPLOYING_TO_UNPAUSE
            self._save_request(entry)
        self._deploy_history(entry.id, deploy.id)
        # Only long-running requests prove a deploy by running it; others (and paused requests) take it at once.
        if not entry.request.type.long_running or entry.state == RequestState.PAUSED:
            self._finish_pending_deploy(entry, DeployState.SUCCEEDED, None, [], None)
        self.kick(entry.id)
        return entry

    def cancel_deploy(self, request_id: str, deploy_id: str, user: str | None = None) -> RequestEntry:
        entry = self.get_request(request_id)
        if not entry.pending_deploy or entry.pending_deploy["deployId"] != deploy_id:
            raise not_found(f"Request {request_id} has no pending deploy {deploy_id}")
        failure = {"reason": "DEPLOY_CANCELLED", "message": f"Canceled by {user or 'a user'}"}
        self._finish_pending_deploy(entry, DeployState.CANCELED, failure["message"], [failure],
                                    TaskCleanupType.DEPLOY_CANCELED)
        return entry

    def update_deploy(self, body: DeployUpdate) -> RequestEntry:
        """Manual step control: run `targetActiveInstances` new tasks now (advance, or go back)."""
        entry = self.get_request(body.requestId)
        if not entry.pending_deploy or entry.pending_deploy["deployId"] != body.deployId:
            raise bad_request(f"deployId: {body.deployId} is not the pending deploy of request {body.requestId}")
        if body.targetActiveInstances < 1 or body.targetActiveInstances > entry.request.instance_count:
            raise bad_request(f"targetActiveInstances: must be between 1 and the request's "
                              f"{entry.request.instance_count} instances")
        pend = self.pending_deploys[entry.id]
        pend.target_override = body.targetActiveInstances
        pend.step_healthy_at = None
        self.store.put("pendingDeploys", entry.id, pend.doc())
        self.kick(entry.id)
        return entry

    # ------------------------------------------------------------------ progress

    def pending_target(self, entry: RequestEntry) -> int | None:
        """How many new tasks the pending deploy may run in its current step (None: no pending deploy)."""
        pend = self.pending_deploys.get(entry.id)
        dep = self.pending_deploy(entry)
        if pend is None or dep is None:
            return None
        instances = entry.request.instance_count
        if pend.target_override is not None:
            return min(pend.target_override, instances)
        return step_target(step_plan(dep.deploy), instances, pend.step)

    def _deploy_timeout_ms(self, deploy: SingularityDeploy, request: SingularityRequest) -> int:
        if deploy.deployHealthTimeoutSeconds is not None:
            return deploy.deployHealthTimeoutSeconds * 1000
        seconds = self.settings.deploy_health_timeout_seconds
        hc = self.effective_healthcheck(deploy, request)
        if hc is not None:
            # Never time out before the health check itself could have given up.
            startup = (hc.startupDelaySeconds or 0) + (hc.startupTimeoutSeconds or DEFAULT_STARTUP_TIMEOUT_S)
            retries = ((hc.maxRetries or 0) + 1) * (hc.intervalSeconds or DEFAULT_INTERVAL_S)
            seconds = max(seconds, startup + retries + 10)
        return int((seconds + deploy.consider_healthy_after_s) * 1000)

    def _evaluate_deploy(self, entry: RequestEntry, live: list[LiveTask]) -> None:
        pend = self.pending_deploys.get(entry.id)
        dep = self.pending_deploy(entry)
        if pend is None or dep is None:
            return
        plan = step_plan(dep.deploy)
        now = self.clock()
        if len(pend.failed_tasks) > plan.allowed_failures_per_step or pend.step_failures > \
                plan.allowed_failures_per_step:
            failures = [{"reason": f.get("reason", "TASK_FAILED_ON_STARTUP"),
                         "taskId": f.get("taskId") or TaskId.parse(f["id"]).wire(),
                         "message": f.get("message", "Task failed before the deploy succeeded")}
                        for f in pend.failed_tasks]
            where = f" in step {pend.step + 1}" if plan.step_size else ""
            self._finish_pending_deploy(entry, DeployState.FAILED,
                                        f"{len(pend.failed_tasks)} task(s) failed{where}: "
                                        f"{failures[-1]['message']}", failures, TaskCleanupType.DEPLOY_FAILED)
            return
        target = self.pending_target(entry) or entry.request.instance_count
        after_ms = dep.deploy.consider_healthy_after_s * 1000
        healthy = healthy_count(live, dep.deploy.id, now, after_ms)
        step_started = pend.step_healthy_at or pend.marker["timestamp"]
        timeout_ms = self._deploy_timeout_ms(dep.deploy, entry.request)
        if healthy < target and now - step_started > timeout_ms:
            self._fail_overdue(entry, dep, timeout_ms)
            return
        if healthy >= target:
            self._retire_old_for_step(entry, dep.deploy.id, target)
            if target >= entry.request.instance_count:
                self._finish_pending_deploy(entry, DeployState.SUCCEEDED, None, [], None)
                return
            if pend.step_healthy_at is None:
                pend.step_healthy_at = now
                self.store.put("pendingDeploys", entry.id, pend.doc())
            if pend.target_override is not None or dep.deploy.autoAdvanceDeploySteps is False:
                return  # waits for /api/deploys/update
            advance_at = pend.step_healthy_at + plan.wait_ms
            if now >= advance_at:
                pend.step += 1
                pend.step_healthy_at = None
                pend.step_failures = 0
                self.store.put("pendingDeploys", entry.id, pend.doc())
                self._dirty.add(entry.id)
            else:
                self._wake_at(entry.id, advance_at)
            return
        wake = next_healthy_at(live, dep.deploy.id, after_ms)
        deadline = step_started + timeout_ms + 1
        self._wake_at(entry.id, min(wake, deadline) if wake is not None and wake > now else deadline)

    def _fail_overdue(self, entry: RequestEntry, dep: DeployEntry, timeout_ms: int) -> None:
        unplaced = [p for p in self.request_pending(entry.id) if p.pid.deployId == dep.deploy.id]
        if unplaced:
            reason = "TASK_COULD_NOT_BE_SCHEDULED"
            why = unplaced[0].reason or "no offer fitted"
            message = f"{len(unplaced)} task(s) could not be placed within {timeout_ms // 1000} s: {why}"
        else:
            reason = "DEPLOY_OVERDUE"
            message = f"new tasks were not healthy within {timeout_ms // 1000} s"
            for task in self.request_tasks(entry.id):
                if task.tid.deployId == dep.deploy.id and task.health is not None and task.health.reason:
                    message += f" ({task.health.reason})"
                    break
        failure = {"reason": reason, "message": message}
        self._finish_pending_deploy(entry, DeployState.OVERDUE, message, [failure], TaskCleanupType.DEPLOY_FAILED)

    def _retire_old_for_step(self, entry: RequestEntry, new_deploy_id: str, target: int) -> None:
        """Keep old + new serving tasks at `instances`: each healthy new task retires one old one."""
        old = sorted((t for t in self.request_tasks(entry.id)
                      if t.tid.deployId != new_deploy_id and t.cleanup is None),
                     key=lambda t: -t.tid.instanceNo)
        excess = len(old) + target - entry.request.instance_count
        for task in old[:max(0, excess)]:
            self._cleanup_task(task, TaskCleanupType.DEPLOY_STEP_FINISHED)

    def note_deploy_task_failure(self, entry: RequestEntry, task: TaskEntry, reason: str, message: str) -> None:
        pend = self.pending_deploys.get(entry.id)
        if pend is None:
            return
        # The task's own id object: parsed back from the id string, its host and rack come out sanitized.
        pend.failed_tasks.append({"id": task.id, "taskId": task.tid.wire(), "reason": reason, "message": message})
        pend.step_failures += 1
        self.store.put("pendingDeploys", entry.id, pend.doc())
        self._dirty.add(entry.id)

    def _finish_pending_deploy(self, entry: RequestEntry, state: DeployState, message: str | None,
                               failures: list[dict[str, Any]], kill_new: TaskCleanupType | None) -> None:
        marker = entry.pending_deploy
        assert marker is not None
        deploy_id = marker["deployId"]
        dep = self.deploys[(entry.id, deploy_id)]
        pend = self.pending_deploys.pop(entry.id, None)
        result: dict[str, Any] = {"deployState": state.value, "deployFailures": failures, "timestamp": self.clock()}
        if message:
            result["message"] = message
        dep.result = result
        with self.store.batch():
            self.store.delete("pendingDeploys", entry.id)
            entry.pending_deploy = None
            if state == DeployState.SUCCEEDED:
                self._take_deploy(entry, dep, pend)
            else:
                if entry.state == RequestState.DEPLOYING_TO_UNPAUSE:
                    entry.state = RequestState.PAUSED
                for task in self.request_tasks(entry.id):
                    if task.tid.deployId == deploy_id and kill_new is not None:
                        self._cleanup_task(task, kill_new)
                for p in self.request_pending(entry.id):
                    if p.pid.deployId == deploy_id:
                        self._remove_pending(p.id)
            self._save_request(entry)
            self.store.put("deploys", f"{entry.id}/{deploy_id}", dep.doc())
        self._deploy_history(entry.id, deploy_id)
        self.kick(entry.id)

    def _take_deploy(self, entry: RequestEntry, dep: DeployEntry, pend: PendingDeployEntry | None) -> None:
        marker = dep.marker
        old = entry.active_deploy["deployId"] if entry.active_deploy else None
        entry.active_deploy = marker
        if pend and pend.updated_request:
            entry.request = SingularityRequest.model_validate(pend.updated_request)
        if entry.state == RequestState.DEPLOYING_TO_UNPAUSE:
            entry.state = RequestState.ACTIVE
        if entry.state == RequestState.SYSTEM_COOLDOWN:
            # A new deploy starts with a clean slate.
            entry.state = RequestState.ACTIVE
            entry.failures = []
            self._request_event(entry, "EXITED_COOLDOWN", marker.get("user"), f"new deploy {dep.deploy.id}")
        for task in self.request_tasks(entry.id):
            if task.tid.deployId != dep.deploy.id and task.cleanup is None and old is not None:
                self._cleanup_task(task, TaskCleanupType.NEW_DEPLOY_SUCCEEDED, marker.get("user"))
        if entry.request.type == RequestType.RUN_ONCE or (
                dep.deploy.runImmediately is not None and entry.request.type == RequestType.ON_DEMAND):
            self._enqueue_run_immediately(entry, dep.deploy)
        if entry.state == RequestState.FINISHED and entry.request.type == RequestType.RUN_ONCE:
            entry.state = RequestState.ACTIVE

    def _enqueue_run_immediately(self, entry: RequestEntry, deploy: SingularityDeploy) -> None:
        run = deploy.runImmediately
        now = self.clock()
        extras: dict[str, Any] = {"runId": (run.runId if run and run.runId else str(uuid.uuid4()))}
        if run is not None:
            if run.commandLineArgs:
                extras["cmdLineArgsList"] = run.commandLineArgs
            if run.envOverrides:
                extras["envOverrides"] = run.envOverrides
            if run.message:
                extras["message"] = run.message
        kind = PendingType.NEW_DEPLOY if entry.request.type == RequestType.RUN_ONCE else PendingType.ONEOFF
        self._add_pending(PendingTaskEntry(PendingTaskId(entry.id, deploy.id, now, 1, kind.value, now), extras))
