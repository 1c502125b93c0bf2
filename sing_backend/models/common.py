"""Base for Singularity's wire objects: camelCase fields, absent values omitted, unknown fields ignored."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

REQUEST_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
DEPLOY_ID_PATTERN = r"^[A-Za-z0-9_.]+$"


class WireModel(BaseModel):
    # Fields keep Singularity's camelCase names so the JSON maps one to one.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, use_enum_values=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RequestType(StrEnum):
    SERVICE = "SERVICE"
    WORKER = "WORKER"
    SCHEDULED = "SCHEDULED"
    ON_DEMAND = "ON_DEMAND"
    RUN_ONCE = "RUN_ONCE"

    @property
    def long_running(self) -> bool:
        return self in (RequestType.SERVICE, RequestType.WORKER)


class RequestState(StrEnum):
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    DELETED = "DELETED"
    PAUSED = "PAUSED"
    SYSTEM_COOLDOWN = "SYSTEM_COOLDOWN"
    FINISHED = "FINISHED"
    DEPLOYING_TO_UNPAUSE = "DEPLOYING_TO_UNPAUSE"


class AgentPlacement(StrEnum):
    GREEDY = "GREEDY"
    OPTIMISTIC = "OPTIMISTIC"
    SEPARATE = "SEPARATE"
    SEPARATE_BY_DEPLOY = "SEPARATE_BY_DEPLOY"
    SEPARATE_BY_REQUEST = "SEPARATE_BY_REQUEST"
    SPREAD_ALL_AGENTS = "SPREAD_ALL_AGENTS"


class ScheduleType(StrEnum):
    CRON = "CRON"
    QUARTZ = "QUARTZ"
    RFC5545 = "RFC5545"


class DeployState(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED_INTERNAL_STATE = "FAILED_INTERNAL_STATE"
    CANCELING = "CANCELING"
    WAITING = "WAITING"
    OVERDUE = "OVERDUE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class PendingType(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    ONEOFF = "ONEOFF"
    BOUNCE = "BOUNCE"
    NEW_DEPLOY = "NEW_DEPLOY"
    NEXT_DEPLOY_STEP = "NEXT_DEPLOY_STEP"
    UNPAUSED = "UNPAUSED"
    RETRY = "RETRY"
    UPDATED_REQUEST = "UPDATED_REQUEST"
    DECOMISSIONED_SLAVE_OR_RACK = "DECOMISSIONED_SLAVE_OR_RACK"
    TASK_DONE = "TASK_DONE"
    STARTUP = "STARTUP"
    CANCEL_BOUNCE = "CANCEL_BOUNCE"
    TASK_BOUNCE = "TASK_BOUNCE"
    DEPLOY_CANCELLED = "DEPLOY_CANCELLED"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DEPLOY_FINISHED = "DEPLOY_FINISHED"
    TASK_RECOVERED = "TASK_RECOVERED"


class TaskCleanupType(StrEnum):
    USER_REQUESTED = "USER_REQUESTED"
    USER_REQUESTED_DESTROY = "USER_REQUESTED_DESTROY"
    USER_REQUESTED_TASK_BOUNCE = "USER_REQUESTED_TASK_BOUNCE"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    DEPLOY_CANCELED = "DEPLOY_CANCELED"
    NEW_DEPLOY_SUCCEEDED = "NEW_DEPLOY_SUCCEEDED"
    DEPLOY_STEP_FINISHED = "DEPLOY_STEP_FINISHED"
    SCALING_DOWN = "SCALING_DOWN"
    BOUNCING = "BOUNCING"
    INCREMENTAL_BOUNCE = "INCREMENTAL_BOUNCE"
    PAUSE = "PAUSE"
    PAUSING = "PAUSING"
    REQUEST_DELETING = "REQUEST_DELETING"
    DECOMISSIONING = "DECOMISSIONING"
    DECOMMISSION_TIMEOUT = "DECOMMISSION_TIMEOUT"
    OVERDUE_NEW_TASK = "OVERDUE_NEW_TASK"
    UNHEALTHY_NEW_TASK = "UNHEALTHY_NEW_TASK"
    TASK_EXCEEDED_TIME_LIMIT = "TASK_EXCEEDED_TIME_LIMIT"


# Mesos states plus Singularity's own LAUNCHED and CLEANING.
LIVE_TASK_STATES = frozenset(
    {"TASK_LAUNCHED", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_CLEANING", "TASK_KILLING"}
)
TERMINAL_TASK_STATES = frozenset(
    {
        "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_LOST_WHILE_DOWN", "TASK_ERROR",
        "TASK_DROPPED", "TASK_GONE", "TASK_UNREACHABLE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
    }
)
# Updates that say why a task is being stopped rather than what state it is in (the scheduler writes
# them, stamped by its own clock): listed among the task's updates, they never become its status, as
# one could otherwise outrank the task's end and list it as unended.
NOTE_STATES = frozenset({"TASK_CLEANING"})
