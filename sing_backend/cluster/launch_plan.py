"""Checking the tasks of an ACCEPT against the offered resources (no side effects)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..executor.payload import PayloadError, TaskSpec
from .launcher import executor_problem
from .resources import Resources
from .sandbox import task_id_problem
from .tasks import TaskRecord


@dataclass(frozen=True)
class Rejection:
    task_id: str | None  # None when the TaskInfo has no usable id (nothing can be reported for it)
    state: str
    reason: str
    message: str


@dataclass(frozen=True)
class LaunchPlan:
    launches: list[TaskRecord]
    rejections: list[Rejection]
    leftover: Resources


def plan_launches(
    task_infos: list[Any],
    *,
    framework_id: str,
    agent_id: str,
    pool: Resources,
    active_ids: Collection[str],
    stale_offer: bool,
) -> LaunchPlan:
    """Carve each valid task's resources out of ``pool``, in order.

    Malformed tasks are TASK_ERROR. A task that does not fit is TASK_ERROR too, except when the offer
    was reached through an alias (the scheduler's view was stale): then it is TASK_DROPPED, which a
    scheduler retries.
    """
    launches: list[TaskRecord] = []
    rejections: list[Rejection] = []
    taken = set(active_ids)
    for info in task_infos:
        task_id = _task_id(info)
        problem, resources = _task_problem(info, task_id, agent_id, taken)
        if problem is None:
            assert resources is not None
            shortfall = resources.shortfall(pool)
            if shortfall is not None:
                state, reason = ("TASK_DROPPED", "REASON_INVALID_OFFERS") if stale_offer else (
                    "TASK_ERROR", "REASON_TASK_INVALID")
                rejections.append(Rejection(task_id, state, reason, f"Task {shortfall}"))
                continue
            pool = pool - resources
            taken.add(task_id)
            launches.append(TaskRecord(str(task_id), framework_id, agent_id, resources, info))
        else:
            # Even an id unfit for a directory name can be reported on, if it is a string.
            reportable = task_id if isinstance(task_id, str) and task_id else None
            rejections.append(Rejection(reportable, "TASK_ERROR", "REASON_TASK_INVALID", problem))
    return LaunchPlan(launches, rejections, pool)


def _task_id(info: Any) -> Any:
    if not isinstance(info, dict):
        return None
    return (info.get("task_id") or {}).get("value") if isinstance(info.get("task_id"), dict) else None


def _task_problem(
    info: Any, task_id: Any, agent_id: str, taken: set[str]
) -> tuple[str | None, Resources | None]:
    if not isinstance(info, dict):
        return "TaskInfo must be an object", None
    problem = task_id_problem(task_id)
    if problem is not None:
        return problem, None
    if task_id in taken:
        return f"Task ID {task_id} is already in use", None
    target = (info.get("agent_id") or {}).get("value") if isinstance(info.get("agent_id"), dict) else None
    if target is not None and target != agent_id:
        return f"Task is for agent {target} but the offer is from agent {agent_id}", None
    try:
        if "executor" in info:
            problem = executor_problem(info)
            if problem is not None:
                return problem, None
            # Like Mesos, an executor's own resources are taken from the offer too.
            resources = Resources.from_mesos(info.get("resources")) + Resources.from_mesos(
                info["executor"].get("resources"))
        else:
            TaskSpec.from_task_info(info)
            resources = Resources.from_mesos(info.get("resources"))
    except (PayloadError, ValueError) as exc:
        return str(exc), None
    return None, resources
