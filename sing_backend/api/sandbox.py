"""/api/sandbox: browse and read a task's sandbox through its agent's Mesos-style files API."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Response

from ..agent_sandbox import agent_sandboxes, leaves, offered_agent_address
from ..errors import ApiError, bad_request, not_found
from ..runtime import Runtime
from .deps import runtime
from .responses import json_response

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


def _relative(path: str | None, default: str) -> str:
    """A path inside the sandbox root; anything that could leave it is refused."""
    if path is None or path.strip() == "":
        return default
    if (problem := leaves(path)) is not None:
        raise bad_request(f"path: {problem}")
    return str(PurePosixPath(path))


async def _locate(rt: Runtime, task_id: str) -> tuple[str, str, str]:
    """(agent files URL, sandbox root directory, host) of a task, active or finished."""
    task = rt.scheduler.tasks.get(task_id)
    if task is not None:
        agent_id, directory, host = task.agent_id, await rt.sandbox_directory(task), task.tid.host
        url = rt.agent_url(agent_id)  # its offer's address included (Scheduler.load)
    else:
        # Ended, or (on a standby answering from its last snapshot) launched since that snapshot.
        history = await rt.task_history(task_id)
        if history is None:
            raise not_found(f"Couldn't find task {task_id}")
        agent_id = history["task"]["agentId"]["value"]
        directory = history.get("directory")
        host = history["task"]["taskId"]["host"]
        url = rt.agent_url(agent_id) or offered_agent_address(history["task"])
        if not directory and url is not None:
            # Ended before its sandbox was looked up (its agent keeps listing it among completed
            # executors), or not in the snapshot: the agent lists it too.
            directory = (await agent_sandboxes(rt.http, url)).get(task_id)
    if not directory:
        raise not_found(f"Task {task_id} has no sandbox yet (it has not started)")
    if url is None:
        raise not_found(f"The agent {agent_id} of task {task_id} is gone")
    return url, directory, host


async def _agent_get(rt: Runtime, url: str, params: dict[str, Any]) -> httpx.Response:
    try:
        resp = await rt.http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the task's agent did not answer: {exc}") from exc
    if resp.status_code == 404:
        raise not_found(f"No such file or directory in the sandbox: {params.get('path')}")
    if resp.status_code in (400, 403):
        raise bad_request(f"path: {resp.json().get('message', 'refused by the agent')}")
    if resp.status_code != 200:
        raise ApiError(502, f"the task's agent answered {resp.status_code}")
    return resp


@router.get("/{taskId}/browse", summary="List a directory of the task's sandbox")
async def browse(rt: Annotated[Runtime, Depends(runtime)], taskId: str, path: str | None = None) -> Response:
    url, root, host = await _locate(rt, taskId)
    rel = _relative(path, taskId)
    resp = await _agent_get(rt, f"{url}/files/browse", {"path": f"{root}/{rel}"})
    files = []
    for f in resp.json():
        full = PurePosixPath(f["path"])
        files.append({"name": full.name, "size": f["size"], "mtime": int(f["mtime"]), "mode": f["mode"]})
    return json_response({"files": files, "fullPathToRoot": root, "currentDirectory": rel, "slaveHostname": host})


@router.get("/{taskId}/read", summary="Read part of a sandbox file by byte offset")
async def read(rt: Annotated[Runtime, Depends(runtime)], taskId: str, path: str, offset: int | None = None,
               length: int | None = None, grep: str | None = None) -> Response:
    url, root, _ = await _locate(rt, taskId)
    rel = _relative(path, "")
    if not rel:
        raise bad_request("path: is required")
    if offset is not None and offset < 0:
        raise bad_request("offset: must be 0 or more (leave it out to get the file size)")
    limit = rt.settings.max_sandbox_read_bytes
    if length is not None and length < 0:
        raise bad_request("length: must be 0 or more")
    params: dict[str, Any] = {"path": f"{root}/{rel}", "offset": -1 if offset is None else offset,
                              "length": min(length if length is not None else limit, limit)}
    data = (await _agent_get(rt, f"{url}/files/read", params)).json()
    start = int(data.get("offset", 0))
    if offset is None:
        return json_response({"data": "", "offset": start})
    text: str = data.get("data", "")
    # The agent reports where the next read starts (a character cut at the end is left for it).
    out: dict[str, Any] = {"data": text, "offset": start, "nextOffset": int(data.get("next_offset", start))}
    if grep:
        out["data"] = "".join(line for line in text.splitlines(keepends=True) if grep in line)
    return json_response(out)


@router.get("/{taskId}/download", summary="Download a sandbox file")
async def download(rt: Annotated[Runtime, Depends(runtime)], taskId: str, path: str) -> Response:
    url, root, _ = await _locate(rt, taskId)
    rel = _relative(path, "")
    if not rel:
        raise bad_request("path: is required")
    resp = await _agent_get(rt, f"{url}/files/download", {"path": f"{root}/{rel}"})
    name = PurePosixPath(rel).name
    return Response(resp.content, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
