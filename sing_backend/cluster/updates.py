"""The JSON the master sends to schedulers: task statuses and stream events."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)


def new_uuid() -> str:
    """An update uuid: base64 of 16 random bytes, as pymesos' executor and ack code expect."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def task_status(
    task_id: str,
    state: str,
    *,
    source: str,
    agent_id: str | None = None,
    executor_id: str | None = None,
    message: str | None = None,
    reason: str | None = None,
    reliable: bool = False,
    uuid: str | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """A TaskStatus. ``reliable`` ones carry a uuid (``uuid`` when an executor made one): pymesos
    acknowledges those, and needs agent_id for it."""
    status: dict[str, Any] = {
        "task_id": {"value": task_id},
        "state": state,
        "source": source,
        "timestamp": time.time(),
    }
    if agent_id is not None:
        status["agent_id"] = {"value": agent_id}
        # The command executor's id is the task id.
        status["executor_id"] = {"value": executor_id or task_id}
    if message is not None:
        status["message"] = message
    if reason is not None:
        status["reason"] = reason
    if data is not None:
        status["data"] = data
    if reliable:
        if agent_id is None:
            raise ValueError("a status with a uuid needs an agent_id (pymesos acknowledges it)")
        status["uuid"] = uuid or new_uuid()
    return status


def update_event(status: dict[str, Any]) -> dict[str, Any]:
    return {"type": "UPDATE", "update": {"status": status}}


def offers_event(offers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "OFFERS", "offers": {"offers": offers}}


def rescind_event(offer_id: str) -> dict[str, Any]:
    return {"type": "RESCIND", "rescind": {"offer_id": {"value": offer_id}}}


def failure_event(agent_id: str, executor_id: str | None = None, status: int = 0) -> dict[str, Any]:
    """An agent lost, or (with ``executor_id``) an executor that exited with ``status``."""
    failure: dict[str, Any] = {"agent_id": {"value": agent_id}}
    if executor_id is not None:
        failure.update(executor_id={"value": executor_id}, status=status)
    return {"type": "FAILURE", "failure": failure}


def message_event(agent_id: str, executor_id: str, data: str) -> dict[str, Any]:
    return {"type": "MESSAGE", "message": {"agent_id": {"value": agent_id}, "executor_id": {"value": executor_id},
                                           "data": data}}


def error_event(message: str) -> dict[str, Any]:
    return {"type": "ERROR", "error": {"message": message}}


HEARTBEAT_EVENT: dict[str, Any] = {"type": "HEARTBEAT"}
