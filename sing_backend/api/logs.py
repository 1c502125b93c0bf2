"""/api/logs (archived task logs, as Singularity's S3 log API) and /api/tasks/task/{id}/statistics.

Logs are the rotated segments the executor archived: in a local directory (served by /logs/download)
or in S3-compatible storage (presigned URLs). Each entry is Singularity's SingularityS3Log:
{key, size, lastModified, getUrl, downloadUrl, startTime, endTime}, newest first.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from ..errors import ApiError, bad_request, not_found
from ..executor.logstore import LocalLogStore, LogObject, LogStore, S3LogStore, check_key, open_store, task_prefix
from ..executor.settings import ExecutorPaths, ExecutorSettings, S3Settings
from ..ids import TaskId
from ..runtime import Runtime
from .deps import runtime
from .responses import json_response

router = APIRouter(tags=["logs"])


def executor_settings(rt: Runtime) -> ExecutorSettings:
    """The backend's executor settings (defaults while the settings have no ``executor`` table)."""
    found = getattr(rt.settings, "executor", None)
    return found if isinstance(found, ExecutorSettings) else ExecutorSettings()


def log_store(rt: Runtime) -> LogStore:
    settings = executor_settings(rt)
    paths = ExecutorPaths.resolve(settings, rt.settings.data_dir)
    return _store(settings.s3.model_dump_json() if settings.s3 else "", str(paths.log_dir))


@lru_cache(maxsize=8)
def _store(s3_json: str, log_dir: str) -> LogStore:
    # One boto3 client per configuration: making one costs tens of milliseconds.
    return open_store(S3Settings.model_validate_json(s3_json) if s3_json else None, Path(log_dir))


def _api_root(request: Request) -> str:
    """The absolute URL of the API root this request came through (/api or {base_path}/api)."""
    url = str(request.url.replace(query=""))
    return url[: url.index("/logs/")] if "/logs/" in url else url.rsplit("/tasks/", 1)[0]


def _entry(store: LogStore, obj: LogObject, api_root: str) -> dict[str, Any]:
    if isinstance(store, S3LogStore):
        get_url, download_url = store.url(obj.key, download=False), store.url(obj.key, download=True)
    else:
        query = httpx.QueryParams({"key": obj.key})
        get_url = f"{api_root}/logs/download?{query}"
        download_url = f"{get_url}&download=true"
    entry: dict[str, Any] = {"key": obj.key, "size": obj.size, "lastModified": obj.last_modified_ms,
                             "getUrl": get_url, "downloadUrl": download_url}
    segment = obj.segment
    if segment is not None:
        entry["startTime"] = segment.start_ms
        entry["endTime"] = segment.end_ms
    return entry


async def _listing(rt: Runtime, request: Request, prefix: str, start: int | None, end: int | None) -> Response:
    if start is not None and end is not None and start > end:
        raise bad_request("start: must not be after end")
    store = log_store(rt)
    try:
        objects = await asyncio.to_thread(store.list, prefix)
    except Exception as exc:  # botocore's errors: the store did not answer as it should
        raise ApiError(502, f"the log store ({store.describe()}) failed: {exc}") from exc
    root = _api_root(request)
    out = []
    for obj in objects:
        segment = obj.segment
        if segment is not None and ((start is not None and segment.end_ms < start)
                                    or (end is not None and segment.start_ms > end)):
            continue
        out.append(_entry(store, obj, root))
    out.sort(key=lambda e: (e.get("endTime", e["lastModified"]), e["key"]), reverse=True)
    return json_response(out)


async def _task_owner(rt: Runtime, task_id: str) -> tuple[str, str]:
    """(requestId, deployId) of a task, active, finished, or by its id alone."""
    task = rt.scheduler.tasks.get(task_id)
    if task is not None:
        return task.tid.requestId, task.tid.deployId
    history = await rt.task_history(task_id)
    if history is not None:
        tid = history["task"]["taskId"]
        return tid["requestId"], tid["deployId"]
    try:
        parsed = TaskId.parse(task_id)
    except ValueError as exc:
        raise not_found(f"Couldn't find task {task_id}") from exc
    return parsed.requestId, parsed.deployId


@router.get("/logs/task/{taskId}", summary="Archived log files of a task")
async def task_logs(rt: Annotated[Runtime, Depends(runtime)], request: Request, taskId: str,
                    start: int | None = None, end: int | None = None) -> Response:
    request_id, deploy_id = await _task_owner(rt, taskId)
    return await _listing(rt, request, task_prefix(request_id, deploy_id, taskId), start, end)


@router.get("/logs/request/{requestId}", summary="Archived log files of every task of a request")
async def request_logs(rt: Annotated[Runtime, Depends(runtime)], request: Request, requestId: str,
                       start: int | None = None, end: int | None = None) -> Response:
    return await _listing(rt, request, task_prefix(requestId), start, end)


@router.get("/logs/request/{requestId}/deploy/{deployId}", summary="Archived log files of a deploy's tasks")
async def deploy_logs(rt: Annotated[Runtime, Depends(runtime)], request: Request, requestId: str, deployId: str,
                      start: int | None = None, end: int | None = None) -> Response:
    return await _listing(rt, request, task_prefix(requestId, deployId), start, end)


@router.get("/logs/download", summary="One archived log file (gzip); S3 objects redirect to a presigned URL")
async def download(rt: Annotated[Runtime, Depends(runtime)], key: str, download: bool = False) -> Response:
    try:
        check_key(key)
    except ValueError as exc:
        raise bad_request(f"key: {exc}") from exc
    store = log_store(rt)
    if isinstance(store, S3LogStore):
        return RedirectResponse(store.url(key, download=download), status_code=307)
    assert isinstance(store, LocalLogStore)
    path = store.path(key)
    if not path.is_file():
        raise not_found(f"No archived log {key}")
    name = key.rsplit("/", 1)[-1]
    return FileResponse(path, media_type="application/gzip", filename=name,
                        content_disposition_type="attachment" if download else "inline")


class TaskStatistics(BaseModel):
    """Singularity's MesosTaskStatisticsObject (the fields this cluster measures)."""

    timestamp: float
    cpusLimit: float | None = None
    cpusUserTimeSecs: float
    cpusSystemTimeSecs: float
    memRssBytes: int
    memTotalBytes: int
    memLimitBytes: int | None = None
    diskUsedBytes: int
    diskLimitBytes: int | None = None


@router.get("/tasks/task/{taskId}/statistics", summary="Live resource usage of a running task",
            response_model=TaskStatistics, response_model_exclude_none=True)
async def statistics(rt: Annotated[Runtime, Depends(runtime)], taskId: str) -> Response:
    task = rt.scheduler.tasks.get(taskId)
    if task is None:
        raise not_found(f"Task {taskId} is not active")
    url = rt.agent_url(task.agent_id)
    if url is None:
        raise not_found(f"The agent {task.agent_id} of task {taskId} is gone")
    try:
        resp = await rt.http.get(f"{url}/monitor/statistics")
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the task's agent did not answer: {exc}") from exc
    if resp.status_code != 200:
        raise ApiError(502, f"the task's agent answered {resp.status_code}")
    for entry in resp.json():
        if taskId in (entry.get("executor_id"), entry.get("source")):
            s = entry.get("statistics") or {}
            stats = TaskStatistics(
                timestamp=s.get("timestamp", 0.0), cpusLimit=s.get("cpus_limit"),
                cpusUserTimeSecs=s.get("cpus_user_time_secs", 0.0),
                cpusSystemTimeSecs=s.get("cpus_system_time_secs", 0.0),
                memRssBytes=s.get("mem_rss_bytes", 0), memTotalBytes=s.get("mem_total_bytes", 0),
                memLimitBytes=s.get("mem_limit_bytes"), diskUsedBytes=s.get("disk_used_bytes", 0),
                diskLimitBytes=s.get("disk_limit_bytes"),
            )
            return json_response(stats.model_dump(exclude_none=True))
    raise not_found(f"No statistics for task {taskId} (it may not have started yet)")
