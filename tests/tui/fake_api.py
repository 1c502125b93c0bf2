"""FakeSingApi: a fake Sing backend for snapshot tests, serving fixed JSON through httpx.MockTransport.

The data (fixtures/cluster.json) was captured once from a real demo backend (fixtures/capture.py), so
ids, times and log contents never change between runs. Only reads are faked; writes answer 404 with
a JSON error, like a backend that does not know the object. It also serves `/api/history/tasks`
(Singularity's global task search, which the dashboard uses for recent failures when the backend has it).
"""

from __future__ import annotations

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
        if path.endswith("/read") and path.startswith("/api/sandbox/"):
            return self._read(request)
        body = self.routes.get(path)
        if body is None:
            return _error(404, f"no such endpoint: GET {path}")
        status = request.url.params.get("lastTaskStatus")
        if status and isinstance(body, list):
            body = [row for row in body if row.get("lastTaskStatus") == status]
        return httpx.Response(200, json=body)

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


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "message": message})
