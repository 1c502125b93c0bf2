"""Standbys serve the API by forwarding each call to the leader; without a leader they answer reads
from their last snapshot (marked stale) and refuse writes with 503."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx
from fastapi import Request, Response

from ..errors import ApiError
from .responses import error_response

# Hop-by-hop headers, and those httpx recomputes, are not copied across.
_SKIP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"}
_LEADER_CACHE_SECONDS = 0.5


class LeaderForwarder:
    def __init__(self) -> None:
        self._leader: str | None = None
        self._looked_at = 0.0

    def leader(self, runtime) -> str | None:  # noqa: ANN001 (Runtime; avoids an import cycle)
        if time.monotonic() - self._looked_at > _LEADER_CACHE_SECONDS:
            self._leader = runtime.leader_url()  # a cached value: never waits on ZooKeeper
            self._looked_at = time.monotonic()
        return self._leader

    async def __call__(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        runtime = request.app.state.runtime
        path = request.url.path
        if runtime.settings.mode == "local" or runtime.leading or "/api/" not in path \
                or path.endswith(("/openapi.json", "/docs")):
            return await call_next(request)
        leader = self.leader(runtime)
        if leader and leader != runtime.advertise_url:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
            try:
                upstream = await runtime.http.request(request.method, f"{leader}{path}", params=request.query_params,
                                                      content=await request.body(), headers=headers)
            except httpx.HTTPError:
                self._looked_at = 0.0  # the leader may have changed: look again next time
            else:
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
                out["X-Sing-Leader"] = leader
                return Response(upstream.content, status_code=upstream.status_code, headers=out)
        if request.method == "GET":
            response = await call_next(request)
            response.headers["X-Sing-Stale"] = "true"  # no leader reachable: this backend's last snapshot
            return response
        return error_response(ApiError(503, "no leader is reachable right now (ZooKeeper or the leader is down); "
                                            "nothing was changed, retry shortly"))
