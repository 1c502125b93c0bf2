"""Writes made on standbys: queued in ZooKeeper (see state/write_queue.py), applied by the leader.

The standby's side queues the call and answers with the leader's answer once it is stored, or with
202 if none comes within `standby_write_wait_seconds`. The leader's side feeds each queued call,
in order, through its own API in-process (same checks, same errors, same answers as a direct call),
marked with `APPLYING` so that `Runtime.change` commits the change together with the write's removal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

import httpx
from fastapi import Request, Response
from kazoo.exceptions import KazooException

from ..errors import ApiError
from ..state.store import StateUnavailable
from ..state.write_queue import APPLYING, Applying
from ..state.zookeeper import MAX_REQUEST_BYTES, encode_doc
from .responses import error_response, json_response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime

log = logging.getLogger(__name__)

# Hop-by-hop headers, and those recomputed for the leader's in-process call, are not queued.
SKIP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"}
# Answers are kept this long for GET /api/queued-writes/{name} (api/cluster.py), then removed by the leader.
ANSWER_KEEP_SECONDS = 3600.0
_FORGET_EVERY_SECONDS = 60.0


# Standby side --------------------------------------------------------------------------------------

async def queue_for_leader(rt: Runtime, request: Request) -> Response:
    assert rt.write_queue is not None
    body = await request.body()
    write = {"method": request.method, "path": request.url.path, "query": request.url.query,
             "headers": {k: v for k, v in request.headers.items() if k.lower() not in SKIP_HEADERS},
             # latin-1 maps every byte to one character and back: the body reaches the leader unchanged.
             "body": body.decode("latin-1"), "queuedAt": int(time.time() * 1000), "queuedBy": rt.advertise_url}
    if len(encode_doc(write)) > MAX_REQUEST_BYTES - 1024:
        return error_response(ApiError(413, "body: too large to queue for the leader (ZooKeeper takes about "
                                            "1 MB per write, after compression); send it to the leader"))
    if not rt.write_queue.connected:
        # Checked first: kazoo keeps a call made while it is disconnected and sends it once it is back,
        # so a write tried now could land after its caller was told it had not.
        return error_response(ApiError(503, "no leader, and this backend has lost ZooKeeper: it cannot queue the "
                                            "write for a leader; nothing was changed, retry shortly"))
    try:
        name = await asyncio.to_thread(rt.write_queue.put, write)
    except (StateUnavailable, KazooException) as exc:
        return error_response(ApiError(503, f"ZooKeeper stopped answering while this standby queued the write "
                                            f"({exc}): it may or may not have been queued for the leader; check, "
                                            "then retry"))
    wait = rt.settings.standby_write_wait_seconds
    try:
        answer = await asyncio.to_thread(rt.write_queue.wait_answer, name, wait)
    except (StateUnavailable, KazooException):
        answer = None
    if answer is None:
        return json_response({"code": 202, "queuedWrite": name, "message": (
            f"queued for the leader as {name}, which has not applied it within {wait:g} s (no leader, or a "
            f"fail-over in progress); the next leader applies it once. GET /api/queued-writes/{name} "
            "tells when it is done and what it answered; do not send it again")}, 202)
    return Response(answer["body"].encode("latin-1"), status_code=answer["status"], media_type=answer["contentType"],
                    headers={"X-Sing-Leader": answer["leader"], "X-Sing-Queued-Write": name})


# Leader side ---------------------------------------------------------------------------------------

class QueuedWriteApplier:
    """Applies the queued writes while this backend leads: started when elected, stopped when not."""

    def __init__(self, rt: Runtime, app: FastAPI) -> None:
        self._rt = rt
        self._app = app
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        rt = self._rt
        assert rt.write_queue is not None
        forgotten_at = 0.0
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self._app), base_url="http://leader",
                                     timeout=None) as client:
            while rt.leading:
                rt.write_queue_changed.clear()
                try:
                    for name in await asyncio.to_thread(rt.write_queue.names):
                        if not await self._apply(client, name):
                            return  # stepping down: the rest waits for the next leader
                    if time.monotonic() - forgotten_at > _FORGET_EVERY_SECONDS:
                        await asyncio.to_thread(rt.write_queue.forget_answers, ANSWER_KEEP_SECONDS)
                        forgotten_at = time.monotonic()
                except (StateUnavailable, KazooException) as exc:
                    log.warning("queued writes: ZooKeeper is not answering (%s); trying again", exc)
                    await asyncio.sleep(1.0)
                    continue
                try:
                    async with asyncio.timeout(_FORGET_EVERY_SECONDS):
                        await rt.write_queue_changed.wait()
                except TimeoutError:
                    pass

    async def _apply(self, client: httpx.AsyncClient, name: str) -> bool:
        rt = self._rt
        assert rt.write_queue is not None
        write = await asyncio.to_thread(rt.write_queue.read, name)
        if write is None:
            return True  # applied meanwhile
        applying = Applying(name)
        token = APPLYING.set(applying)
        try:
            response = await client.request(write["method"], write["path"], params=write["query"],
                                            content=write["body"].encode("latin-1"), headers=write["headers"])
        finally:
            APPLYING.reset(token)
        if applying.abandoned or not rt.leading:
            return False
        if response.is_success and not applying.changed:
            # Every write endpoint makes its change through Runtime.change; one that does not would be
            # applied again should this leader die before the write's removal below.
            log.error("queued write %s (%s %s) succeeded without Runtime.change", name, write["method"],
                      write["path"])
        answer = {"status": response.status_code, "contentType": response.headers.get("content-type"),
                  "body": response.content.decode("latin-1"), "leader": rt.advertise_url,
                  "answeredAt": int(time.time() * 1000)}
        await asyncio.to_thread(partial(rt.write_queue.finish, name, answer, removed=applying.changed))
        log.info("queued write %s from %s applied: %s %s → %d", name, write.get("queuedBy"), write["method"],
                 write["path"], response.status_code)
        return True
