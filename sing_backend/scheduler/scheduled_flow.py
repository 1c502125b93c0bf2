"""Scheduled jobs and one-off runs: when the next run is queued, retries, time limits, overdue runs.

A mixin of `core.Scheduler`. One run of a SCHEDULED request at a time: the next fire time is computed
when a run finishes, from then, so runs never overlap and fire times that pass meanwhile are skipped.
A fire time missed while the backend was down is run late if it is at most
`scheduled_missed_grace_seconds` old, and skipped (with a history entry) otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..ids import PendingTaskId
from ..models.common import PendingType, RequestState, RequestType, TaskCleanupType
from .entities import PendingTaskEntry, RequestEntry, TaskEntry
from .schedules import Schedule, next_fire_after, parse_schedule

if TYPE_CHECKING:
    from .core import Scheduler

    _Base = Scheduler
else:
    _Base = object

log = logging.getLogger(__name__)

_RUNNABLE = (RequestState.ACTIVE, RequestState.SYSTEM_COOLDOWN)


class ScheduledFlow(_Base):
    _schedules: dict[str, tuple[str, Schedule]]

    def schedule_of(self, entry: RequestEntry) -> Schedule | None:
        """The parsed schedule of a SCHEDULED request, cached until its expression changes."""
        req = entry.request
        expr = req.quartzSchedule or req.schedule
        if expr is None:
            return None
        key = f"{req.scheduleType}|{bool(req.quartzSchedule)}|{expr}"
        cached = self._schedules.get(entry.id)
        if cached is None or cached[0] != key:
            cached = (key, parse_schedule(expr, req.scheduleType, quartz=bool(req.quartzSchedule)))
            self._schedules[entry.id] = cached
        return cached[1]

    def next_run_at(self, entry: RequestEntry) -> int | None:
        """When the request's next scheduled run is due (for the API and the TUI)."""
        for p in self.request_pending(entry.id):
            if p.pid.pendingType != PendingType.ONEOFF.value:
                return p.pid.nextRunAt
        return None

    def _plan_scheduled(self, entry: RequestEntry) -> None:
        """Keep exactly one future run queued for an active SCHEDULED request with a deploy."""
        if entry.state not in _RUNNABLE or entry.active_deploy is None:
            for p in self.request_pending(entry.id):
                if p.pid.pendingType != PendingType.ONEOFF.value:
                    self._remove_pending(p.id)
            return
        if self.tasks_by_request.get(entry.id) or self.request_pending(entry.id):
            self._check_missed(entry)
            return  # a run is going or queued: the next one is computed when it finishes
        schedule = self.schedule_of(entry)
        if schedule is None:
            return
        now = self.clock()
        wait = entry.request.waitAtLeastMillisAfterTaskFinishesForReschedule or 0
        after = max(now, self._last_finished.get(entry.id, 0) + wait) - 1
        fire = next_fire_after(schedule, after, entry.request.scheduleTimeZone)
        if fire is None:
            entry.state = RequestState.FINISHED
            self._save_request(entry)
            self._request_event(entry, "FINISHED", message="the schedule has no future fire time")
            return
        pid = PendingTaskId(entry.id, entry.active_deploy["deployId"], fire, 1, PendingType.TASK_DONE.value, now)
        self._add_pending(PendingTaskEntry(pid))
        self._wake_at(entry.id, fire)

    def _check_missed(self, entry: RequestEntry) -> None:
        """A queued run whose time passed long ago (the backend was down) is skipped, not run late."""
        grace_ms = int(self.settings.scheduled_missed_grace_seconds * 1000)
        now = self.clock()
        for p in self.request_pending(entry.id):
            if p.pid.pendingType in (PendingType.ONEOFF.value, PendingType.RETRY.value):
                continue
            if now - p.pid.nextRunAt > grace_ms:
                self._remove_pending(p.id)
                self._request_event(entry, "UPDATED", message=(
                    f"skipped the run due at {p.pid.nextRunAt} (epoch ms): missed by "
                    f"{(now - p.pid.nextRunAt) // 1000} s while the scheduler was away"))
                log.warning("request %s: skipped a missed run due at %s", entry.id, p.pid.nextRunAt)
                self._last_finished[entry.id] = now
                self._dirty.add(entry.id)

    def _run_finished(self, entry: RequestEntry, task: TaskEntry, state: str) -> None:
        """After a run of a SCHEDULED or ON_DEMAND request: retry it, or let the schedule go on."""
        self._last_finished[entry.id] = self.clock()
        pending = task.task["taskRequest"]["pendingTask"]
        kind = pending["pendingTaskId"]["pendingType"]
        failed = state in ("TASK_FAILED", "TASK_LOST", "TASK_ERROR")
        user_killed = task.cleanup is not None and task.cleanup["cleanupType"] in (
            TaskCleanupType.USER_REQUESTED, TaskCleanupType.USER_REQUESTED_DESTROY)
        manual = entry.request.type == RequestType.SCHEDULED and kind == PendingType.ONEOFF.value
        limit = entry.request.numRetriesOnFailure or 0
        tries = int(pending.get("retryCount", 0))
        if failed and not user_killed and not manual and tries < limit and entry.state in _RUNNABLE:
            extras: dict[str, Any] = {k: v for k, v in pending.items() if k != "pendingTaskId"}
            extras["retryCount"] = tries + 1
            now = self.clock()
            run_at = now + (entry.request.waitAtLeastMillisAfterTaskFinishesForReschedule or 0)
            pid = PendingTaskId(entry.id, task.tid.deployId, run_at, task.tid.instanceNo, PendingType.RETRY.value,
                                now)
            self._add_pending(PendingTaskEntry(pid, extras))
            log.info("retrying %s (%d of %d)", task.id, tries + 1, limit)
        if entry.request.type == RequestType.SCHEDULED:
            now = self.clock()
            self._note_skipped_during_run(entry, pending["pendingTaskId"]["nextRunAt"], now)
            for p in self.request_pending(entry.id):
                if p.pid.pendingType not in (PendingType.ONEOFF.value, PendingType.RETRY.value) \
                        and p.pid.nextRunAt <= now:
                    # Its fire time came while this run was still going: skipped, never overlapped.
                    self._remove_pending(p.id)
                    self._request_event(entry, "UPDATED", message=(
                        f"skipped the run due at {p.pid.nextRunAt} (epoch ms): the previous run was still going"))
            self._dirty.add(entry.id)

    def _note_skipped_during_run(self, entry: RequestEntry, fired_at: int, now: int) -> None:
        """Fire times that came while a run was going are skipped; the request history says so."""
        schedule = self.schedule_of(entry)
        if schedule is None:
            return
        skipped: list[int] = []
        at = fired_at
        while len(skipped) < 10_000:
            at_next = next_fire_after(schedule, at, entry.request.scheduleTimeZone)
            if at_next is None or at_next > now:
                break
            skipped.append(at_next)
            at = at_next
        if skipped:
            self._request_event(entry, "UPDATED", message=(
                f"skipped {len(skipped)} fire time(s) from {skipped[0]} to {skipped[-1]} (epoch ms): "
                "the previous run was still going"))

    def _enforce_run_limits(self) -> None:
        """Kill runs over taskExecutionTimeLimitMillis; mark runs past scheduledExpectedRuntimeMillis."""
        now = self.clock()
        for task in list(self.tasks.values()):
            if task.running_since is None or task.cleanup is not None:
                continue
            entry = self.requests.get(task.tid.requestId)
            if entry is None:
                continue
            limit = entry.request.taskExecutionTimeLimitMillis
            if limit is not None and now - task.running_since > limit:
                self._cleanup_task(task, TaskCleanupType.TASK_EXCEEDED_TIME_LIMIT,
                                   message=f"ran longer than taskExecutionTimeLimitMillis ({limit} ms)")
                continue
            expected = entry.request.scheduledExpectedRuntimeMillis
            if expected is not None and now - task.running_since > expected and "overdueSince" not in task.task:
                # Sing extension on the task object: when the run went past its expected runtime.
                task.task["overdueSince"] = task.running_since + expected
                self._save_task(task)
                self.version += 1
                self._request_event(entry, "UPDATED", message=(
                    f"run {task.id} is overdue: still running after scheduledExpectedRuntimeMillis ({expected} ms)"))
