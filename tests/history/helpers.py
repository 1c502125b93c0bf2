"""Builders of Singularity-shaped history objects for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sing_backend.history import HistoryStore


def history_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def task_id(
    request_id: str, deploy_id: str, started_at: int, instance_no: int = 1, host: str = "host-1"
) -> dict[str, Any]:
    sanitized_host = host.replace("-", "_")
    return {
        "id": f"{request_id}-{deploy_id}-{started_at}-{instance_no}-{sanitized_host}-rack_a",
        "requestId": request_id,
        "deployId": deploy_id,
        "startedAt": started_at,
        "instanceNo": instance_no,
        "host": host,
        "sanitizedHost": sanitized_host,
        "rackId": "rack-a",
        "sanitizedRackId": "rack_a",
    }


def make_task(
    request_id: str,
    deploy_id: str,
    started_at: int,
    instance_no: int = 1,
    host: str = "host-1",
    run_id: str | None = None,
) -> dict[str, Any]:
    tid = task_id(request_id, deploy_id, started_at, instance_no, host)
    return {
        "taskId": tid,
        "taskRequest": {
            "request": {"id": request_id, "requestType": "WORKER", "instances": 3},
            "deploy": {"requestId": request_id, "id": deploy_id, "command": "sleep 60"},
            "pendingTask": {
                "pendingTaskId": {"requestId": request_id, "deployId": deploy_id, "instanceNo": instance_no},
                "runId": run_id,
                "envOverrides": {},
            },
        },
        "offers": [{"hostname": host}],
        "mesosTask": {"resources": [{"name": "cpus", "scalar": 1.0}]},
        "rackId": "rack-a",
    }


async def save(store: HistoryStore, task: dict[str, Any], run_id: str | None = None) -> str:
    tid: dict[str, Any] = task["taskId"]
    await store.save_task(
        task,
        task_id=tid["id"],
        request_id=tid["requestId"],
        deploy_id=tid["deployId"],
        run_id=run_id,
        host=tid["host"],
        started_at=tid["startedAt"],
    )
    task_id_string: str = tid["id"]
    return task_id_string


def update(task: str | dict[str, Any], timestamp: int, state: str, **extra: Any) -> dict[str, Any]:
    return {"taskId": task, "timestamp": timestamp, "taskState": state, **extra}
