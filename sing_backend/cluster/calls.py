"""Reading v1 scheduler call bodies, and the error a refused call turns into."""

from __future__ import annotations

from typing import Any

_MAX_REFUSE_SECONDS = 365 * 24 * 3600.0


class CallError(Exception):
    """A scheduler call the master refuses; becomes an HTTP error with a plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def id_value(obj: Any) -> str | None:
    """The ``value`` of a Mesos ID object ({"value": "..."}), if well formed."""
    value = obj.get("value") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def id_values(objs: Any) -> list[str]:
    if not isinstance(objs, list):
        return []
    return [v for v in (id_value(o) for o in objs) if v]


def refuse_seconds(filters: Any, default: float) -> float:
    if not isinstance(filters, dict) or "refuse_seconds" not in filters:
        return default
    try:
        seconds = float(filters["refuse_seconds"])
    except (TypeError, ValueError):
        raise CallError(400, "'filters.refuse_seconds' must be a number") from None
    return min(seconds, _MAX_REFUSE_SECONDS)


def call_object(call: dict[str, Any], key: str) -> dict[str, Any]:
    body = call.get(key, {})
    if not isinstance(body, dict):
        raise CallError(400, f"Expecting '{key}' to be an object")
    return body


def launch_task_infos(operations: Any) -> list[Any]:
    if operations is None:
        return []
    if not isinstance(operations, list):
        raise CallError(400, "'accept.operations' must be a list")
    task_infos: list[Any] = []
    for operation in operations:
        kind = operation.get("type") if isinstance(operation, dict) else None
        if kind != "LAUNCH":
            raise CallError(400, f"Operation {kind!r} is not supported by the embedded cluster (only LAUNCH)")
        infos = (operation.get("launch") or {}).get("task_infos") or []
        if not isinstance(infos, list):
            raise CallError(400, "'launch.task_infos' must be a list")
        task_infos.extend(infos)
    return task_infos
