"""What operators do to requests: create, update, delete, scale, pause, bounce, run now, kill, timed actions.

A mixin of `core.Scheduler`: each action validates against the request's type and state (4xx naming
the problem, nothing changed), persists, and asks for a scheduling round.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, bad_request, conflict, not_found
from ..executor.payload import kill_message
from ..ids import PendingTaskId
from ..models.actions import (
    BounceRequest,
    DeleteRequest,
    ExitCooldownRequest,
    KillTaskRequest,
    PauseRequest,
    RunNowRequest,
    ScaleRequest,
    UnpauseRequest,
)
from ..models.common import DeployState, PendingType, RequestState, RequestType, TaskCleanupType
from ..models.request import SingularityRequest
from .entities import PendingTaskEntry, RequestEntry, TaskEntry
from .planning import lowest_free_instance

MAX_RUN_AT_AHEAD_MS = 30 * 24 * 3600 * 1000
# Cleanups that wait (for replacements to be healthy, or for the task to end) instead of killing at once.
GRACEFUL = {TaskCleanupType.BOUNCING, TaskCleanupType.USER_REQUESTED_TASK_BOUNCE, TaskCleanupType.PAUSING,
            TaskCleanupType.DECOMISSIONING}
# Graceful cleanups whose task is killed once its replacement is healthy.
REPLACED_FIRST = {TaskCleanupType.BOUNCING, TaskCleanupType.INCREMENTAL_BOUNCE,
                  TaskCleanupType.USER_REQUESTED_TASK_BOUNCE, TaskCleanupType.DECOMISSIONING}

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object


class RequestActions(_Base):
    def _check_limits(self, request: SingularityRequest) -> None:
        if request.instances is not None and request.instances > self.settings.limits.max_instances:
            raise bad_request(f"instances: {request.instances} is above the limit of "
                              f"{self.settings.limits.max_instances}")

    def save_request(self, request: SingularityRequest, user: str | None = None,
                     message: str | None = None) -> RequestEntry:
        self._check_limits(request)
        self.check_load_balanced(request)
        existing = self.requests.get(request.id)
        now = self.clock()
        if existing is not None:
            if existing.state == RequestState.DELETING:
                raise conflict(f"Request {request.id} is being deleted; wait until it is gone to recreate it")
            if existing.request.requestType != request.requestType:
                raise bad_request(f"requestType: request {request.id} is {existing.request.requestType} and the "
                                  f"type cannot change to {request.requestType}; delete it and create it again")
            self.check_load_balanced_kept(existing, request, "loadBalanced")
            existing.request = request
            existing.timestamp = now
            self._save_request(existing)
            self._request_event(existing, "UPDATED", user, message)
            self.kick(request.id)
            return existing
        entry = RequestEntry(request, RequestState.ACTIVE, now, user)
        self.requests[request.id] = entry
        self._save_request(entry)
        self._request_event(entry, "CREATED", user, message)
        self.kick(request.id)
        return entry

    def check_load_balanced_kept(self, existing: RequestEntry, request: SingularityRequest, field: str) -> None:
        """As Singularity refuses it: the running tasks' ports and base path were never checked for a load
        balancer (turned on), or their upstreams would be left behind (turned off)."""
        if bool(existing.request.loadBalanced) != bool(request.loadBalanced):
            was = "is" if existing.request.loadBalanced else "is not"
            raise bad_request(f"{field}: request {request.id} {was} load balanced, and a request can not change "
                              "whether it is load balanced; delete it and create it again")

    def delete_request(self, request_id: str, body: DeleteRequest) -> RequestEntry:
        entry = self.get_request(request_id)
        if entry.state == RequestState.DELETING:
            raise conflict(f"Request {request_id} is already being deleted")
        with self.store.batch():
            entry.state = RequestState.DELETING
            entry.timestamp = self.clock()
            self._save_request(entry)
            cleanup = {"requestId": request_id, "cleanupType": "DELETING", "timestamp": entry.timestamp}
            if body.user:
                cleanup["user"] = body.user
            if body.message:
                cleanup["message"] = body.message
            self.request_cleanups[request_id] = cleanup
            self.store.put("requestCleanups", request_id, cleanup)
            if entry.pending_deploy:
                self._finish_pending_deploy(entry, DeployState.CANCELED, "Request was deleted", [],
                                            TaskCleanupType.REQUEST_DELETING)
            self._drop_pending_of(request_id)
            for task in self.request_tasks(request_id):
                self._cleanup_task(task, TaskCleanupType.REQUEST_DELETING, body.user, body.message)
        self._request_event(entry, "DELETING", body.user, body.message)
        self._maybe_finish_delete(entry)
        self.kick(request_id)
        return entry

    def _maybe_finish_delete(self, entry: RequestEntry) -> None:
        if entry.state != RequestState.DELETING or self.tasks_by_request.get(entry.id):
            return
        self._lb_delete_service(entry)
        with self.store.batch():
            entry.state = RequestState.DELETED
            self.requests.pop(entry.id, None)
            self.store.delete("requests", entry.id)
            self.request_cleanups.pop(entry.id, None)
            self.store.delete("requestCleanups", entry.id)
            for key in [k for k in self.deploys if k[0] == entry.id]:
                del self.deploys[key]
                self.store.delete("deploys", f"{key[0]}/{key[1]}")
        self._request_event(entry, "DELETED")
        self.version += 1

    def scale(self, request_id: str, body: ScaleRequest, large_scale_down_ok: bool = False) -> RequestEntry:
        entry = self._live_request(request_id)
        kind = entry.request.type
        if kind in (RequestType.SCHEDULED, RequestType.RUN_ONCE):
            raise bad_request(f"instances: a {kind.value} request runs exactly one instance and cannot be scaled")
        if body.instances > self.settings.limits.max_instances:
            raise bad_request(f"instances: {body.instances} is above the limit of "
                              f"{self.settings.limits.max_instances}")
        if entry.request.maxScale is not None and body.instances > entry.request.maxScale:
            raise bad_request(f"instances: {body.instances} is above the request's maxScale "
                              f"{entry.request.maxScale}")
        if entry.state == RequestState.PAUSED:
            raise conflict(f"Request {request_id} is paused; unpause it before scaling")
        bounce = body.bounce and kind.long_running and entry.active_deploy
        if bounce and entry.bouncing:
            # Refused before the scale is made: a refusal changes nothing.
            raise conflict(f"Request {request_id} is already bouncing")
        old = entry.request.instance_count
        if old - body.instances > 10 and not large_scale_down_ok:
            raise bad_request(f"instances: scaling down by {old - body.instances} (more than 10) needs "
                              "largeScaleDownAcknowledged=true")
        revert_to = entry.expiring.get("scale", {}).get("revertTo", old)
        entry.request = entry.request.model_copy(update={"instances": body.instances})
        entry.timestamp = self.clock()
        self._set_expiring(entry, "scale", body.durationMillis, body.wire(), body.user, body.actionId, revert_to)
        self._save_request(entry)
        self._request_event(entry, "SCALED", body.user, body.message)
        if bounce:
            self.bounce(request_id, BounceRequest(incremental=body.incremental, message=body.message))
        self.kick(request_id)
        return entry

    def pause(self, request_id: str, body: PauseRequest) -> RequestEntry:
        entry = self._live_request(request_id)
        if entry.state == RequestState.PAUSED:
            raise conflict(f"Request {request_id} is already paused")
        kill = body.killTasks is not False
        with self.store.batch():
            entry.state = RequestState.PAUSED
            entry.bouncing = False
            entry.expiring.pop("bounce", None)
            self._set_expiring(entry, "pause", body.durationMillis, body.wire(), body.user, body.actionId)
            entry.timestamp = self.clock()
            self._save_request(entry)
            self._drop_pending_of(request_id)
            for task in self.request_tasks(request_id):
                if task.cleanup is None or task.cleanup["cleanupType"] in GRACEFUL:
                    self._cleanup_task(task, TaskCleanupType.PAUSE if kill else TaskCleanupType.PAUSING,
                                       body.user, body.message)
        self._request_event(entry, "PAUSED", body.user, body.message)
        self.kick(request_id)
        return entry

    def unpause(self, request_id: str, body: UnpauseRequest) -> RequestEntry:
        entry = self._live_request(request_id)
        if entry.state != RequestState.PAUSED:
            raise conflict(f"Request {request_id} is not paused (it is {entry.state.value})")
        with self.store.batch():
            entry.state = RequestState.ACTIVE
            entry.expiring.pop("pause", None)
            entry.timestamp = self.clock()
            self._save_request(entry)
            # Tasks left running by a pause without kill count again.
            for task in self.request_tasks(request_id):
                if task.cleanup and task.cleanup["cleanupType"] == TaskCleanupType.PAUSING:
                    task.cleanup = None
                    self._save_task(task)
        entry.relaunch_reason = PendingType.UNPAUSED.value
        self._request_event(entry, "UNPAUSED", body.user, body.message)
        self.kick(request_id)
        return entry

    def exit_cooldown(self, request_id: str, body: ExitCooldownRequest) -> RequestEntry:
        entry = self._live_request(request_id)
        if entry.state != RequestState.SYSTEM_COOLDOWN:
            raise conflict(f"Request {request_id} is not in cooldown (it is {entry.state.value})")
        entry.state = RequestState.ACTIVE
        entry.failures = []
        self._save_request(entry)
        self._request_event(entry, "EXITED_COOLDOWN", body.user, body.message)
        for p in self.request_pending(request_id):
            if p.pid.nextRunAt > self.clock() and p.pid.pendingType != PendingType.ONEOFF.value:
                self._remove_pending(p.id)  # re-planned at once
        self.kick(request_id)
        return entry

    def bounce(self, request_id: str, body: BounceRequest) -> RequestEntry:
        entry = self._live_request(request_id)
        if not entry.request.type.long_running:
            raise bad_request(f"requestType: only SERVICE and WORKER requests can be bounced, not "
                              f"{entry.request.requestType}")
        if entry.state == RequestState.PAUSED:
            raise conflict(f"Request {request_id} is paused; unpause it before bouncing")
        if entry.active_deploy is None:
            raise conflict(f"Request {request_id} has no active deploy to bounce")
        if entry.bouncing:
            raise conflict(f"Request {request_id} is already bouncing")
        kind = TaskCleanupType.INCREMENTAL_BOUNCE if body.incremental else TaskCleanupType.BOUNCING
        with self.store.batch():
            for task in self.request_tasks(request_id):
                if task.cleanup is None:
                    self._cleanup_task(task, kind, body.user, body.message)
            entry.bouncing = True
            duration = body.durationMillis or int(self.settings.bounce_expiry_seconds * 1000)
            self._set_expiring(entry, "bounce", duration, body.wire(), body.user, body.actionId)
            self._save_request(entry)
        self._request_event(entry, "BOUNCED", body.user, body.message)
        self.kick(request_id)
        return entry

    def run_now(self, request_id: str, body: RunNowRequest) -> tuple[RequestEntry, PendingTaskEntry]:
        entry = self._live_request(request_id)
        kind = entry.request.type
        if kind not in (RequestType.ON_DEMAND, RequestType.SCHEDULED):
            raise bad_request(f"requestType: run now is only for ON_DEMAND and SCHEDULED requests, not {kind.value}")
        if entry.state == RequestState.PAUSED:
            raise conflict(f"Request {request_id} is paused")
        deploy = self.active_deploy(entry)
        if deploy is None:
            raise conflict(f"Request {request_id} has no active deploy to run")
        now = self.clock()
        if body.runAt is not None:
            if body.runAt < now - 1000:
                raise bad_request("runAt: is in the past")
            if body.runAt > now + MAX_RUN_AT_AHEAD_MS:
                raise bad_request("runAt: is more than 30 days ahead")
        if body.resources is not None:
            self._check_resources(body.resources.cpus, body.resources.memoryMb, body.resources.diskMb,
                                  body.resources.numPorts, "resources")
        live = len(self.tasks_by_request.get(request_id, ())) + len(self.pending_by_request.get(request_id, ()))
        if kind == RequestType.SCHEDULED and (self.tasks_by_request.get(request_id) or any(
                p.pid.pendingType in (PendingType.ONEOFF.value, PendingType.RETRY.value)
                for p in self.request_pending(request_id))):
            raise conflict(f"Request {request_id} already has a run in progress")
        if kind == RequestType.ON_DEMAND and entry.request.instances is not None and live >= entry.request.instances:
            raise ApiError(429, f"Request {request_id} already has {live} of at most {entry.request.instances} "
                                "on-demand tasks active or pending")
        run_id = body.runId or str(uuid.uuid4())
        extras: dict[str, Any] = {"runId": run_id}
        if body.commandLineArgs:
            extras["cmdLineArgsList"] = body.commandLineArgs
        if body.envOverrides:
            extras["envOverrides"] = body.envOverrides
        if body.resources:
            extras["resources"] = body.resources.wire()
        for name in ("user", "message", "skipHealthchecks", "runAsUserOverride", "actionId"):
            value = getattr(body, name)
            if value is not None:
                extras[name] = value
        used = {self.tasks[t].tid.instanceNo for t in self.tasks_by_request.get(request_id, ())}
        used |= {self.pending[p].pid.instanceNo for p in self.pending_by_request.get(request_id, ())}
        pid = PendingTaskId(request_id, deploy.deploy.id, body.runAt or now, lowest_free_instance(used),
                            PendingType.ONEOFF.value, now)
        pending = PendingTaskEntry(pid, extras)
        self._add_pending(pending)
        self.kick(request_id)
        return entry, pending

    def _live_request(self, request_id: str) -> RequestEntry:
        entry = self.get_request(request_id)
        if entry.state == RequestState.DELETING:
            raise conflict(f"Request {request_id} is being deleted")
        return entry

    def kill_task(self, task_id: str, body: KillTaskRequest) -> TaskEntry:
        task = self.tasks.get(task_id)
        if task is None:
            raise not_found(f"Couldn't find active task {task_id}")
        if body.override:
            kind = TaskCleanupType.USER_REQUESTED_DESTROY
        elif body.waitForReplacementTask:
            owner = self.requests.get(task.tid.requestId)
            if owner is None or not owner.request.type.long_running:
                raise bad_request("waitForReplacementTask: only tasks of SERVICE and WORKER requests get replacements")
            kind = TaskCleanupType.USER_REQUESTED_TASK_BOUNCE
        else:
            kind = TaskCleanupType.USER_REQUESTED
        if task.cleanup and task.cleanup["cleanupType"] == kind.value and task.kill_sent_at and not body.override:
            raise conflict(f"Task {task_id} is already being killed")
        if body.runShellCommandBeforeKill is not None and self.gateway is not None:
            # Queued on the same channel as the kill, so the executor has it before the SIGTERM.
            gateway, data = self.gateway, kill_message(body.runShellCommandBeforeKill.wire())
            self.effect(lambda: gateway.message(task.id, task.agent_id, data))
        self._cleanup_task(task, kind, body.user, body.message, force=True)
        self.kick(task.tid.requestId)
        return task

    def _set_expiring(self, entry: RequestEntry, kind: str, duration_ms: int | None, body: dict[str, Any],
                      user: str | None, action_id: str | None, revert_to: Any = None) -> None:
        if duration_ms is None:
            entry.expiring.pop(kind, None)
            return
        record: dict[str, Any] = {"startMillis": self.clock(), "durationMillis": duration_ms,
                                  "expiringAPIRequestObject": body, "requestId": entry.id}
        if user:
            record["user"] = user
        # Singularity gives every expiring action an id (the caller's, or one of its own).
        record["actionId"] = action_id or uuid.uuid4().hex
        if revert_to is not None:
            record["revertTo"] = revert_to
        entry.expiring[kind] = record

    def cancel_expiring(self, request_id: str, kind: str) -> RequestEntry:
        """DELETE .../pause|scale|bounce|skip-healthchecks: keep the change, drop its expiry."""
        entry = self._live_request(request_id)
        if kind not in entry.expiring:
            raise not_found(f"Request {request_id} has no expiring {kind}")
        del entry.expiring[kind]
        if kind == "bounce":
            self._cancel_bounce(entry)
        self._save_request(entry)
        self.kick(request_id)
        return entry

    def _cancel_bounce(self, entry: RequestEntry) -> None:
        entry.bouncing = False
        for task in self.request_tasks(entry.id):
            if task.cleanup and task.cleanup["cleanupType"] in REPLACED_FIRST and task.kill_sent_at is None:
                task.cleanup = None
                self._save_task(task)

    def skip_healthchecks(self, request_id: str, skip: bool, duration_ms: int | None, user: str | None = None,
                          message: str | None = None) -> RequestEntry:
        entry = self._live_request(request_id)
        previous = bool(entry.request.skipHealthchecks)
        entry.request = entry.request.model_copy(update={"skipHealthchecks": skip or None})
        self._set_expiring(entry, "skipHealthchecks", duration_ms,
                           {"skipHealthchecks": skip, "durationMillis": duration_ms}, user, None, previous)
        self._save_request(entry)
        self._request_event(entry, "UPDATED", user, message or f"skipHealthchecks={skip}")
        self.kick(request_id)
        return entry

    def _expire_actions(self) -> None:
        now = self.clock()
        for entry in list(self.requests.values()):
            for kind, record in list(entry.expiring.items()):
                if now < record["startMillis"] + record["durationMillis"]:
                    continue
                del entry.expiring[kind]
                if kind == "pause" and entry.state == RequestState.PAUSED:
                    entry.state = RequestState.ACTIVE
                    entry.relaunch_reason = PendingType.UNPAUSED.value
                    self._request_event(entry, "UNPAUSED", message="timed pause expired")
                elif kind == "scale":
                    entry.request = entry.request.model_copy(update={"instances": record["revertTo"]})
                    self._request_event(entry, "SCALE_REVERTED", message=f"back to {record['revertTo']} instances")
                elif kind == "bounce":
                    self._cancel_bounce(entry)
                elif kind == "skipHealthchecks":
                    entry.request = entry.request.model_copy(update={"skipHealthchecks": record["revertTo"] or None})
                    self._request_event(entry, "UPDATED", message="timed skipHealthchecks expired")
                self._save_request(entry)
                self.kick(entry.id)

    def delete_pending(self, pending_id: str) -> PendingTaskEntry:
        p = self.pending.get(pending_id)
        if p is None:
            raise not_found(f"Couldn't find pending task {pending_id}")
        if p.pid.pendingType != PendingType.ONEOFF.value:
            raise bad_request(f"pendingTaskId: {pending_id} is not a one-off run; scale or pause the request instead")
        self._remove_pending(pending_id)
        return p
