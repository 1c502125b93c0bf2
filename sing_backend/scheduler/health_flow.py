"""What health-check results and task failures mean for tasks, deploys and crash-looping requests.

A mixin of `core.Scheduler`; the checks themselves run in `healthchecker`, the rules in `health`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..models.common import PendingType, RequestState, TaskCleanupType
from ..models.deploy import HealthcheckOptions, SingularityDeploy
from ..models.request import SingularityRequest
from .entities import RequestEntry, TaskEntry
from .health import CheckResult, Health, apply_result, check_startup_overdue
from .planning import failures_in_window

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object


class HealthFlow(_Base):
    def effective_healthcheck(self, deploy: SingularityDeploy, request: SingularityRequest,
                              task: TaskEntry | None = None) -> HealthcheckOptions | None:
        """The check that applies to a task: none for non-long-running requests or when skipped."""
        if deploy.healthcheck is None or not request.type.long_running or request.skipHealthchecks:
            return None
        if task is not None:
            pending = task.task["taskRequest"]["pendingTask"]
            if pending.get("skipHealthchecks"):
                return None
            entry = self.requests.get(request.id)
            if deploy.skipHealthchecksOnDeploy and entry is not None and entry.pending_deploy \
                    and entry.pending_deploy["deployId"] == deploy.id:
                return None
        return deploy.healthcheck

    def healthcheck_for(self, task: TaskEntry) -> HealthcheckOptions | None:
        entry = self.requests.get(task.tid.requestId)
        dep = self.deploys.get((task.tid.requestId, task.tid.deployId))
        if entry is None or dep is None:
            return None
        return self.effective_healthcheck(dep.deploy, entry.request, task)

    def due_health_checks(self, now: int) -> list[TaskEntry]:
        """Tasks whose next check is due; fails those whose startup window ran out between checks."""
        due = []
        for task in list(self.tasks.values()):
            state = task.health
            if state is None or state.status == Health.FAILED or task.cleanup is not None:
                continue
            hc = self.healthcheck_for(task)
            if hc is None:
                continue
            check_startup_overdue(hc, state, now)
            if state.status == Health.FAILED:
                self._health_failed(task)
            elif state.next_check_at and state.next_check_at <= now:
                due.append(task)
        return due

    def on_health_result(self, task_id: str, result: CheckResult) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.health is None:
            return
        hc = self.healthcheck_for(task)
        if hc is None:
            return
        before = task.health.status
        apply_result(hc, task.health, result)
        wire = result.wire(task.tid.wire())
        self.sink.put(lambda: self.history.add_healthcheck_result(task_id, wire))
        if task.health.status != before:
            self.version += 1
            if task.health.status == Health.HEALTHY:
                log.info("task %s is healthy", task_id)
                self.kick(task.tid.requestId)
            elif task.health.status == Health.FAILED:
                self._health_failed(task)

    def _health_failed(self, task: TaskEntry) -> None:
        reason = task.health.reason if task.health else "health check failed"
        log.warning("task %s failed its health check: %s", task.id, reason)
        entry = self.requests.get(task.tid.requestId)
        if entry is None:
            return
        in_deploy = entry.pending_deploy is not None and entry.pending_deploy["deployId"] == task.tid.deployId
        if in_deploy:
            self.note_deploy_task_failure(entry, task, "TASK_FAILED_HEALTH_CHECKS", reason or "")
            self._cleanup_task(task, TaskCleanupType.DEPLOY_FAILED, message=reason)
        else:
            # A replacement or a live task that stopped answering: replace it, and count it as a crash.
            self._cleanup_task(task, TaskCleanupType.UNHEALTHY_NEW_TASK, message=reason)
            self._record_failure(entry)
        self.kick(entry.id)

    def _record_failure(self, entry: RequestEntry) -> None:
        now = self.clock()
        window_ms = int(self.settings.cooldown_window_seconds * 1000)
        entry.failures = [t for t in entry.failures if now - t <= window_ms] + [now]
        if entry.state == RequestState.ACTIVE and entry.request.type.long_running and \
                failures_in_window(entry.failures, now, window_ms) >= self.settings.cooldown_failure_threshold:
            entry.state = RequestState.SYSTEM_COOLDOWN
            self._request_event(entry, "ENTERED_COOLDOWN", message=(
                f"{len(entry.failures)} task failures within {self.settings.cooldown_window_seconds:g} s; "
                f"replacements wait {self.settings.cooldown_delay_seconds:g} s"))
            log.warning("request %s entered cooldown", entry.id)
        self._save_request(entry)

    def _check_cooldowns(self) -> None:
        now = self.clock()
        window_ms = int(self.settings.cooldown_window_seconds * 1000)
        for entry in self.requests.values():
            if entry.state == RequestState.SYSTEM_COOLDOWN and \
                    failures_in_window(entry.failures, now, window_ms) < self.settings.cooldown_failure_threshold:
                # Failures stopped: leave cooldown, and let waiting replacements go now.
                entry.state = RequestState.ACTIVE
                self._save_request(entry)
                self._request_event(entry, "EXITED_COOLDOWN", message="task failures stopped")
                for p in self.request_pending(entry.id):
                    if p.pid.nextRunAt > now and p.pid.pendingType != PendingType.ONEOFF.value:
                        self._remove_pending(p.id)
                self.kick(entry.id)
