"""What a request needs right now: which instances to launch, which tasks to kill, which deploy finished.

Pure functions over plain data, so the rules are unit-tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models.common import PendingType, RequestState, TaskCleanupType


@dataclass(frozen=True, slots=True)
class LiveTask:
    task_id: str
    deploy_id: str
    instance_no: int
    cleaning: bool = False
    running_since: int | None = None  # epoch ms of TASK_RUNNING, None while starting
    healthy: bool | None = None  # health-check verdict; None when the deploy has no check


@dataclass(frozen=True, slots=True)
class Pending:
    pending_id: str
    deploy_id: str
    instance_no: int


@dataclass(frozen=True, slots=True)
class RequestView:
    request_id: str
    long_running: bool
    state: RequestState
    instances: int
    active_deploy_id: str | None
    pending_deploy_id: str | None = None
    # How many tasks the pending deploy may run now (its step), None = all `instances`.
    pending_deploy_target: int | None = None
    # Why the active deploy's missing tasks are started (their pendingType).
    relaunch_reason: PendingType = PendingType.TASK_DONE


@dataclass(slots=True)
class Plan:
    launch: list[tuple[str, int, PendingType]] = field(default_factory=list)  # (deploy id, instance no, why)
    kill: list[tuple[str, TaskCleanupType]] = field(default_factory=list)
    drop_pending: list[str] = field(default_factory=list)


_RUNS_TASKS = (RequestState.ACTIVE, RequestState.SYSTEM_COOLDOWN, RequestState.DEPLOYING_TO_UNPAUSE)


def plan_long_running(view: RequestView, live: list[LiveTask], pending: list[Pending]) -> Plan:
    """Keep `instances` tasks of the active deploy (and the pending deploy's step) running."""
    plan = Plan()
    if not view.long_running:
        return plan
    if view.state not in _RUNS_TASKS:
        plan.drop_pending = [p.pending_id for p in pending]
        return plan

    targets: dict[str, int] = {}
    if view.active_deploy_id and view.state != RequestState.DEPLOYING_TO_UNPAUSE:
        targets[view.active_deploy_id] = view.instances
    if view.pending_deploy_id:
        step = view.instances if view.pending_deploy_target is None else view.pending_deploy_target
        targets[view.pending_deploy_id] = min(step, view.instances)

    for deploy_id, target in targets.items():
        covered = {t.instance_no for t in live if t.deploy_id == deploy_id and not t.cleaning}
        queued = {p.instance_no for p in pending if p.deploy_id == deploy_id}
        why = PendingType.NEW_DEPLOY if deploy_id == view.pending_deploy_id else view.relaunch_reason
        for instance_no in range(1, target + 1):
            if instance_no not in covered and instance_no not in queued:
                plan.launch.append((deploy_id, instance_no, why))
        plan.drop_pending.extend(p.pending_id for p in pending if p.deploy_id == deploy_id and p.instance_no > target)
        if deploy_id == view.active_deploy_id:
            plan.kill.extend(
                (t.task_id, TaskCleanupType.SCALING_DOWN)
                for t in live
                if t.deploy_id == deploy_id and not t.cleaning and t.instance_no > target
            )
    # Pending tasks of deploys that are neither active nor pending any more (cancelled, replaced).
    plan.drop_pending.extend(p.pending_id for p in pending if p.deploy_id not in targets)
    return plan


def is_healthy(t: LiveTask, now_ms: int, healthy_after_ms: int) -> bool:
    """Healthy = passed its health check, or (without one) RUNNING for long enough."""
    if t.running_since is None:
        return False
    if t.healthy is not None:
        return t.healthy
    return now_ms - t.running_since >= healthy_after_ms


def healthy_count(live: list[LiveTask], deploy_id: str, now_ms: int, healthy_after_ms: int) -> int:
    """Tasks of a deploy, not being cleaned up, that count as healthy."""
    return sum(1 for t in live
               if t.deploy_id == deploy_id and not t.cleaning and is_healthy(t, now_ms, healthy_after_ms))


def next_healthy_at(live: list[LiveTask], deploy_id: str, healthy_after_ms: int) -> int | None:
    """When the next running task without a health check becomes healthy by time alone (to wake up then)."""
    times = [t.running_since + healthy_after_ms for t in live
             if t.deploy_id == deploy_id and not t.cleaning and t.running_since is not None and t.healthy is None]
    return min(times) if times else None


def replaceable_now(waiting: int, healthy_new: int, instances: int, all_at_once: bool) -> int:
    """How many tasks waiting for a replacement may die now without capacity dropping below `instances`.

    A full bounce (all_at_once) waits for a whole healthy set; incremental ones go as capacity allows.
    """
    if all_at_once:
        return waiting if healthy_new >= instances else 0
    return max(0, min(waiting, healthy_new + waiting - instances))


@dataclass(frozen=True, slots=True)
class StepPlan:
    """Deploy rollout in steps (deployInstanceCountPerStep, or canary groups)."""

    step_size: int | None  # None: all instances at once
    wait_ms: int = 0  # between steps
    first_steps: int = 0  # canary: this many groups of step_size, then the rest at once
    allowed_failures_per_step: int = 0


def step_target(plan: StepPlan, instances: int, step: int) -> int:
    """How many new tasks the deploy may run during step `step` (0-based)."""
    if plan.step_size is None:
        return instances
    if plan.first_steps and step >= plan.first_steps:
        return instances
    return min(instances, plan.step_size * (step + 1))


def failures_in_window(failure_times: list[int], now_ms: int, window_ms: int) -> int:
    return sum(1 for t in failure_times if now_ms - t <= window_ms)


def lowest_free_instance(used: set[int]) -> int:
    n = 1
    while n in used:
        n += 1
    return n
