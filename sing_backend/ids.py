"""Singularity's task id and pending task id formats."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


def sanitize(value: str, suffix_to_omit: str = "") -> str:
    if suffix_to_omit and value.endswith(suffix_to_omit):
        value = value[: -len(suffix_to_omit)]
    return value.replace("-", "_").replace(".", "_")


@dataclass(frozen=True, slots=True)
class TaskId:
    requestId: str
    deployId: str
    startedAt: int
    instanceNo: int
    host: str
    sanitizedHost: str
    rackId: str
    sanitizedRackId: str

    @property
    def id(self) -> str:
        return (f"{self.requestId}-{self.deployId}-{self.startedAt}-{self.instanceNo}-"
                f"{self.sanitizedHost}-{self.sanitizedRackId}")

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "requestId": self.requestId, "deployId": self.deployId, "startedAt": self.startedAt,
            "instanceNo": self.instanceNo, "host": self.host, "sanitizedHost": self.sanitizedHost,
            "rackId": self.rackId, "sanitizedRackId": self.sanitizedRackId,
        }

    @classmethod
    def parse(cls, task_id: str) -> TaskId:
        """Split from the right: request ids may contain hyphens, the other five parts may not."""
        parts = task_id.rsplit("-", 5)
        if len(parts) != 6:
            raise ValueError(f"taskId: {task_id!r} is not a Singularity task id")
        request_id, deploy_id, started, instance, host, rack = parts
        if not request_id or not started.isdigit() or not instance.isdigit():
            raise ValueError(f"taskId: {task_id!r} is not a Singularity task id")
        return cls(request_id, deploy_id, int(started), int(instance), host, host, rack, rack)


@dataclass(frozen=True, slots=True)
class PendingTaskId:
    requestId: str
    deployId: str
    nextRunAt: int
    instanceNo: int
    pendingType: str
    createdAt: int

    @property
    def id(self) -> str:
        return (f"{self.requestId}-{self.deployId}-{self.nextRunAt}-{self.instanceNo}-"
                f"{self.pendingType}-{self.createdAt}")

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "requestId": self.requestId, "deployId": self.deployId, "nextRunAt": self.nextRunAt,
            "instanceNo": self.instanceNo, "pendingType": self.pendingType, "createdAt": self.createdAt,
        }


_ACTION_NAMESPACE = uuid.UUID("5a1e7c2e-9d2b-4f0e-8c55-3b1f0f6c2a41")


def derived_action_id(*parts: object) -> uuid.UUID:
    """The actionId of a timed action saved before actions had one, derived from what identifies it, so
    every read, on every backend, gives the same id."""
    return uuid.uuid5(_ACTION_NAMESPACE, "/".join(map(str, parts)))
