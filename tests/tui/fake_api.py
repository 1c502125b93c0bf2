"""FakeSingApi: a fake Sing backend for snapshot tests, serving fixed JSON through httpx.MockTransport.

The data (fixtures/cluster.json) was captured once from a real demo backend (fixtures/capture.py), so
ids, times and log contents never change between runs. Only reads are faked; writes answer 404 with
a JSON error, like a backend that does not know the object. It serves `/api/history/tasks` (the global
task search, filtered by lastTaskStatus and cut at count) and archived logs: the listings as captured,
and `/api/logs/download?key=...` gzipped here, the same bytes every time. A task it has no history of is
unknown to it, and answered as the backend answers one: 404 "Couldn't find task ...".
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx

from sing_tui.client import SingClient

FIXTURE = Path(__file__).parent / "fixtures" / "cluster.json"
FAKE_URL = "http://sing.test:7099"


class FakeSingApi:
    def __init__(self, fixture: Path = FIXTURE) -> None:
        data = json.loads(fixture.read_text())
        self.now_ms: int = data["now"]
        self.routes: dict[str, Any] = data["routes"]
        self.files: dict[str, str] = data["files"]
        self.archives: dict[str, str] = data.get("archives", {})
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now_ms / 1000

    def client(self) -> SingClient:
        return SingClient(FAKE_URL, transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if request.method != "GET":
            return _error(404, f"the fake API does not change anything ({request.method} {path})")
        if (task := _task_of(path)) is not None and f"/api/history/task/{task}" not in self.routes:
            return _error(404, f"Couldn't find task {task}")
        if path.endswith("/read") and path.startswith("/api/sandbox/"):
            return self._read(request)
        if path == "/api/logs/download":
            return self._download(request)
        body = self.routes.get(path)
        if body is None:
            return _error(404, f"no such endpoint: GET {path}")
        status = request.url.params.get("lastTaskStatus")
        if status and isinstance(body, list):
            body = [row for row in body if row.get("lastTaskStatus") == status]
        if "count" in request.url.params and isinstance(body, list):
            body = body[:int(request.url.params["count"])]
        return httpx.Response(200, json=body)

    def _download(self, request: httpx.Request) -> httpx.Response:
        key = request.url.params.get("key", "")
        if key not in self.archives:
            return _error(404, f"No archived log {key}")
        return httpx.Response(200, content=gzip.compress(self.archives[key].encode(), mtime=0),
                              headers={"content-type": "application/gzip"})

    def _read(self, request: httpx.Request) -> httpx.Response:
        path = request.url.params.get("path", "")
        if path not in self.files:
            return _error(404, f"No such file or directory in the sandbox: {path}")
        raw = self.files[path].encode()
        if "offset" not in request.url.params:
            return httpx.Response(200, json={"data": "", "offset": len(raw)})
        offset = int(request.url.params["offset"])
        length = int(request.url.params.get("length", len(raw)))
        chunk = raw[offset:offset + length]
        return httpx.Response(200, json={"data": chunk.decode(errors="replace"), "offset": offset,
                                         "nextOffset": offset + len(chunk)})


def _task_of(path: str) -> str | None:
    """The task id in a path about one task (its sandbox, history, state or archived logs)."""
    for prefix in ("/api/sandbox/", "/api/history/task/", "/api/tasks/task/", "/api/logs/task/"):
        if path.startswith(prefix):
            return path.removeprefix(prefix).split("/")[0]
    return None


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "message": message})
