"""Standbys serve reads by forwarding them to the leader, and queue writes for it in ZooKeeper (see
queued_writes.py); without a leader they answer reads from their last snapshot, marked stale."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from fastapi import Request, Response

from ..state.write_queue import APPLYING
from .queued_writes import SKIP_HEADERS, WRITE_ID_HEADER, queue_for_leader, refuse_if_too_large

_LEADER_CACHE_SECONDS = 0.5
# While a read is forwarded, how often the leadership is looked at again (cached values, see
# Runtime.leader_url): a leader frozen or cut off never answers, and the standby learns that it lost
# the lead after the ZooKeeper session timeout, well before the HTTP timeout.
_LEADER_CHECK_SECONDS = 0.1
_READS = ("GET", "HEAD")


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
        if runtime.leading and runtime.write_queue is not None and request.method not in _READS \
                and APPLYING.get() is None and "/api/" in path:  # a write sent to the leader
            if runtime.queue_first() or WRITE_ID_HEADER in request.headers:
                # (A write with an id of the client's goes through the queue, where a repeat of it is caught.)
                return await queue_for_leader(runtime, request)
            refused = await refuse_if_too_large(runtime, request)
            if refused is not None:
                return refused
        if runtime.settings.mode == "local" or runtime.leading or "/api/" not in path \
                or path.endswith(("/openapi.json", "/docs")) or APPLYING.get() is not None:
            # (A queued write being applied is for this backend itself, even if it has just stopped
            # leading: Runtime.change then refuses it, and it stays queued.)
            return await call_next(request)
        if request.method not in _READS:
            return await queue_for_leader(runtime, request)
        leader = self.leader(runtime)
        while leader and leader != runtime.advertise_url:
            try:
                upstream = await self._ask(runtime, request, leader)
            except httpx.HTTPError:
                self._looked_at = 0.0  # the leader may have changed: look again next time
                break
            if upstream is not None:
                # Date and Server are this backend's to send (its HTTP server adds them): not twice.
                out = {k: v for k, v in upstream.headers.items()
                       if k.lower() not in SKIP_HEADERS and k.lower() not in ("date", "server")}
                out["X-Sing-Leader"] = leader
                return Response(upstream.content, status_code=upstream.status_code, headers=out)
            self._looked_at = 0.0  # the lead has moved on: ask wherever it is now
            leader = self.leader(runtime)
        # Elected while the read was forwarded, this backend answers as the leader does.
        stale = not runtime.leading
        response = await call_next(request)
        if stale:
            response.headers["X-Sing-Stale"] = "true"  # no leader reachable: this backend's last snapshot
        return response

    @staticmethod
    async def _ask(runtime, request: Request, leader: str) -> httpx.Response | None:  # noqa: ANN001 (Runtime)
        """The answer of `leader` to a read; None as soon as it is known to lead no longer (this backend or
        another leads now) rather than waiting on it until the HTTP timeout. While this backend is taking
        up the lead, or knows of no leader (its own ZooKeeper connection may be the one that is down),
        the answer is still waited for."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIP_HEADERS}
        asking = asyncio.ensure_future(runtime.http.request(request.method, f"{leader}{request.url.path}",
                                                            params=request.query_params, headers=headers))
        try:
            while not (await asyncio.wait({asking}, timeout=_LEADER_CHECK_SECONDS))[0]:
                if runtime.leading or runtime.leader_url() not in (leader, runtime.advertise_url, None):
                    return None
            return asking.result()
        finally:
            if not asking.done():
                asking.cancel()
                await asyncio.wait({asking})  # ended (its connection closed) before this read goes on
