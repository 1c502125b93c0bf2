"""Load balancing of `loadBalanced` SERVICE requests: register healthy tasks, deregister before kills.

A mixin of `core.Scheduler`. A task counts as serving only once the load balancer has it (ADD
succeeded); a task leaving (deploy, bounce, scale down, kill) is removed from the load balancer first
and killed only when that succeeded, so traffic never reaches a dying task. A failed ADD fails the
deploy (LOAD_BALANCER_UPDATE_FAILED) or, outside a deploy, replaces the task, as in Singularity.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import bad_request
from ..models.common import RequestType, TaskCleanupType
from ..models.deploy import SingularityDeploy
from ..models.request import SingularityRequest
from .entities import RequestEntry, TaskEntry
from .lb_driver import LbOperation

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object

log = logging.getLogger(__name__)


def _ports(task: TaskEntry) -> list[int]:
    for r in task.task["mesosTask"]["resources"]:
        if r["name"] == "ports":
            return [x["begin"] for x in r["ranges"]["range"]]
    return []


class LoadBalancerFlow(_Base):
    def check_load_balanced(self, request: SingularityRequest, deploy: SingularityDeploy | None = None) -> None:
        """400s for load-balancer settings that cannot work."""
        if not request.loadBalanced:
            return
        if self.lb is None:
            raise bad_request("loadBalanced: no load balancer is configured on this backend "
                              "(settings: load_balancer)")
        if deploy is not None:
            if not deploy.serviceBasePath or not deploy.serviceBasePath.startswith("/"):
                raise bad_request("deploy.serviceBasePath: a load-balanced deploy needs a path starting with '/'")
            index = deploy.loadBalancerPortIndex or 0
            ports = deploy.resources.numPorts if deploy.resources else 0
            if index >= ports:
                raise bad_request(f"deploy.loadBalancerPortIndex: {index} needs at least {index + 1} port(s) but "
                                  f"resources.numPorts is {ports}")

    def _is_lb(self, request_id: str) -> bool:
        entry = self.requests.get(request_id)
        return self.lb is not None and entry is not None and bool(entry.request.loadBalanced) \
            and entry.request.type == RequestType.SERVICE

    def _lb_body(self, entry: RequestEntry, deploy: SingularityDeploy, lb_request_id: str,
                 add: list[TaskEntry] = (), remove: list[TaskEntry] = ()) -> dict[str, Any]:
        service: dict[str, Any] = {
            "serviceId": deploy.loadBalancerServiceIdOverride or entry.id,
            "owners": entry.request.owners or [],
            "serviceBasePath": deploy.serviceBasePath or f"/{entry.id}",
            "loadBalancerGroups": deploy.loadBalancerGroups or [],
        }
        optional = (("loadBalancerOptions", "options"), ("loadBalancerDomains", "domains"),
                    ("loadBalancerAdditionalRoutes", "additionalRoutes"), ("loadBalancerTemplate", "templateName"))
        for src, dst in optional:
            value = getattr(deploy, src)
            if value:
                service[dst] = value

        def upstream(task: TaskEntry) -> dict[str, Any]:
            ports = _ports(task)
            port = ports[min(deploy.loadBalancerPortIndex or 0, len(ports) - 1)] if ports else 0
            out = {"upstream": f"{task.tid.host}:{port}", "requestId": lb_request_id, "rackId": task.tid.rackId}
            if deploy.loadBalancerUpstreamGroup:
                out["group"] = deploy.loadBalancerUpstreamGroup
            return out

        return {"loadBalancerRequestId": lb_request_id, "loadBalancerService": service,
                "addUpstreams": [upstream(t) for t in add], "removeUpstreams": [upstream(t) for t in remove],
                "action": "UPDATE"}

    def _lb_register_ready(self, entry: RequestEntry, health_ok: list[TaskEntry]) -> None:
        """ADD every healthy task that the load balancer does not have yet."""
        for task in health_ok:
            if task.lb_state is not None or task.cleanup is not None:
                continue
            dep = self.deploys.get((entry.id, task.tid.deployId))
            if dep is None:
                continue
            task.lb_state = "ADDING"
            self._save_task(task)
            lb_id = f"{task.id}-ADD-1"
            assert self.lb is not None
            self._lb_submit(LbOperation("ADD", entry.id, lb_id, self._lb_body(entry, dep.deploy, lb_id, add=[task]),
                                        [task.id]))

    def _lb_submit(self, operation: LbOperation) -> None:
        lb = self.lb
        assert lb is not None
        self.effect(lambda: lb.submit(operation))

    def _lb_remove(self, task: TaskEntry) -> bool:
        """Start taking a task out of the load balancer; True if its kill must wait for that."""
        if self.lb is None or task.lb_state not in ("ADDING", "ADDED"):
            return False
        entry = self.requests.get(task.tid.requestId)
        dep = self.deploys.get((task.tid.requestId, task.tid.deployId))
        if entry is None or dep is None:
            return False
        task.lb_state = "REMOVING"
        lb_id = f"{task.id}-REMOVE-1"
        self._lb_submit(LbOperation("REMOVE", entry.id, lb_id, self._lb_body(entry, dep.deploy, lb_id,
                                                                              remove=[task]),
                                    [task.id], retry_forever=True))
        return True

    def _lb_delete_service(self, entry: RequestEntry) -> None:
        dep = self.active_deploy(entry)
        if self.lb is None or dep is None or not entry.request.loadBalanced:
            return
        lb_id = f"{entry.id}-{self.clock()}-DELETE-1"
        body = self._lb_body(entry, dep.deploy, lb_id)
        body["action"] = "DELETE"
        self._lb_submit(LbOperation("DELETE", entry.id, lb_id, body))

    def resume_load_balancer(self, *, empty: bool) -> None:
        """Take over the load-balancer work of a previous leader, whose answers this one never sees.

        An ADD it may not have seen answered is sent again by the next round (same request id, which the
        load balancer treats as the same request), a REMOVE at once; and when the load balancer starts
        empty (the built-in nginx adapter, started by each leader) every healthy task is added again."""
        for task in self.tasks.values():
            if task.lb_state == "ADDING" or (empty and task.lb_state == "ADDED"):
                task.lb_state = None
                self._save_task(task)
            elif task.lb_state == "REMOVING":
                task.lb_state = "ADDED"
                if self._lb_remove(task):
                    self._save_task(task)
        # Planned again with the load balancer in place: a round that ran before it was set up skipped
        # their registration, and nothing else may come to plan them (their tasks already run).
        for request_id in self.requests:
            if self._is_lb(request_id):
                self.kick(request_id)

    def on_lb_result(self, op: LbOperation, state: str, message: str) -> None:
        ok = state == "SUCCESS"
        log.info("load balancer %s %s for %s: %s", op.kind, state, op.request_id, message)
        for task_id in op.task_ids:
            task = self.tasks.get(task_id)
            if task is None:
                continue
            if op.kind == "ADD":
                if task.lb_state != "ADDING":
                    continue  # it is already being removed
                if ok:
                    task.lb_state = "ADDED"
                    self._save_task(task)
                else:
                    task.lb_state = "FAILED"
                    self._lb_add_failed(task, message)
            elif op.kind == "REMOVE" and ok:
                task.lb_state = "REMOVED"
                self._save_task(task)
                if task.kill_sent_at is not None and self.gateway is not None:
                    self.gateway.kill(task.id, None)
            self.version += 1
            self.kick(task.tid.requestId)

    def _lb_add_failed(self, task: TaskEntry, message: str) -> None:
        entry = self.requests.get(task.tid.requestId)
        if entry is None:
            return
        reason = f"load balancer refused the task: {message}"
        if entry.pending_deploy and entry.pending_deploy["deployId"] == task.tid.deployId:
            self.note_deploy_task_failure(entry, task, "LOAD_BALANCER_UPDATE_FAILED", reason)
            self._cleanup_task(task, TaskCleanupType.DEPLOY_FAILED, message=reason)
        else:
            # A replacement the load balancer will not take is replaced again: counted as a crash, so that
            # a refusal that repeats puts the request in cool-down instead of a launch-and-kill loop.
            self._cleanup_task(task, TaskCleanupType.UNHEALTHY_NEW_TASK, message=reason)
            self._record_failure(entry)
