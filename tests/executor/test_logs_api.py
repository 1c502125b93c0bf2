"""/api/logs/... and /api/tasks/task/{id}/statistics on a real runtime (scheduler, embedded cluster)."""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sing_backend.api.app import create_app
from sing_backend.runtime import Runtime
from sing_backend.settings import LocalAgentSettings, Settings

T = TypeVar("T")


async def _eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, kill_grace_seconds=1.0, tick_seconds=0.2, log_level="warning",
                        agents=LocalAgentSettings(count=1, ports_per_agent=100,
                                                  first_port=random.randrange(10000, 19000, 100)))
    rt = Runtime(settings)
    app = create_app(settings, rt)
    await rt.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sing") as client:
            yield client
    finally:
        await rt.stop()


async def _json(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
    return response.json()


async def test_archived_logs_and_statistics(api: httpx.AsyncClient) -> None:
    command = "echo hello; echo warn >&2; while [ ! -f ../stop ]; do sleep 0.05; done; echo bye"
    assert (await api.post("/api/requests", json={"id": "logged", "requestType": "ON_DEMAND"})).status_code == 200
    deploy = {"requestId": "logged", "id": "d1", "command": command,
              "resources": {"cpus": 0.5, "memoryMb": 64, "diskMb": 50}}
    assert (await api.post("/api/deploys", json={"deploy": deploy})).status_code == 200

    async def deployed() -> bool:
        return bool((await _json(api, "/api/requests/request/logged"))["requestDeployState"].get("activeDeploy"))

    await _eventually(deployed, "the deploy")
    assert (await api.post("/api/requests/request/logged/run", json={})).status_code == 200

    async def running() -> str | None:
        states = await _json(api, "/api/tasks/active/states")
        return next((s["taskId"]["id"] for s in states if s["taskState"] == "TASK_RUNNING"), None)

    task_id = await _eventually(running, "the task to run")

    async def stats() -> dict[str, Any] | None:
        response = await api.get(f"/api/tasks/task/{task_id}/statistics")
        body = response.json() if response.status_code == 200 else {}
        return body if body.get("memRssBytes") else None

    measured = await _eventually(stats, "statistics with the task's memory")
    assert measured["cpusLimit"] == 0.5 and measured["memLimitBytes"] == 64 << 20
    assert measured["diskLimitBytes"] == 50 << 20 and measured["diskUsedBytes"] > 0
    assert measured["cpusUserTimeSecs"] >= 0 and measured["cpusSystemTimeSecs"] >= 0 and measured["timestamp"] > 0

    sandbox = await _json(api, f"/api/sandbox/{task_id}/browse")
    (Path(sandbox["fullPathToRoot"]) / task_id / "stop").touch()  # ../stop seen from the task's app/

    async def archived() -> list[dict[str, Any]] | None:
        found = await _json(api, f"/api/logs/task/{task_id}")
        return found if len(found) == 2 else None

    entries = await _eventually(archived, "both streams to be archived")
    stdout = next(e for e in entries if "/stdout-" in e["key"])
    assert stdout["key"].startswith(f"logged/d1/{task_id}/stdout-")
    assert stdout["size"] > 0 and stdout["startTime"] <= stdout["endTime"] and stdout["lastModified"] > 0
    assert stdout["getUrl"].startswith("http://sing/api/logs/download?key=")
    got = await api.get(stdout["getUrl"])
    assert got.status_code == 200 and gzip.decompress(got.content) == b"hello\nbye\n"
    downloaded = await api.get(stdout["downloadUrl"])
    assert downloaded.headers["content-disposition"].startswith("attachment")
    assert (await api.get(f"/singularity/api/logs/task/{task_id}")).json()[0]["getUrl"].startswith(
        "http://sing/singularity/api/logs/download?key=")

    assert {e["key"] for e in await _json(api, "/api/logs/request/logged")} == {e["key"] for e in entries}
    assert len(await _json(api, "/api/logs/request/logged/deploy/d1")) == 2
    assert await _json(api, "/api/logs/request/logged/deploy/other") == []
    assert await _json(api, f"/api/logs/task/{task_id}", end=stdout["startTime"] - 1) == []
    assert len(await _json(api, f"/api/logs/task/{task_id}", start=stdout["startTime"])) == 2

    assert (await api.get("/api/logs/task/not-a-task-id")).status_code == 404
    assert (await api.get("/api/logs/download", params={"key": "../../etc/passwd"})).status_code == 400
    assert (await api.get("/api/logs/download", params={"key": "logged/d1/x/none.log.gz"})).status_code == 404
    assert (await api.get(f"/api/tasks/task/{task_id}/statistics")).status_code == 404  # no longer running
