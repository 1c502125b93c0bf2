"""Writes made on standbys: queued in ZooKeeper (see state/write_queue.py), applied by the leader.

The standby's side queues the call and answers with the leader's answer once it is stored, or with
202 if none comes within `standby_write_wait_seconds`. The leader's side feeds each queued call,
in order, through its own API in-process (same checks, same errors, same answers as a direct call),
marked with `APPLYING` so that `Runtime.change` commits the change together with the write's removal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from fastapi import Request, Response
from kazoo.exceptions import KazooException

from ..errors import ApiError
from ..state.store import StateUnavailable
from ..state.write_queue import (
    APPLYING,
    PROVISIONAL,
    Applying,
    fingerprint,
    new_write_id,
    sequence_of,
    write_id_of,
)
from ..state.zookeeper import MAX_REQUEST_BYTES, encode_doc
from .responses import error_response, json_response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime

log = logging.getLogger(__name__)

# Hop-by-hop headers, and those recomputed for the leader's in-process call, are not queued.
SKIP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"}
# Answers are kept this long for GET /api/queued-writes/{name} (api/cluster.py), then removed by the leader;
# so long, a write sent again with the same X-Sing-Write-Id gets the first one's answer instead of being applied.
ANSWER_KEEP_SECONDS = 3600.0
WRITE_ID_HEADER = "X-Sing-Write-Id"
_WRITE_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
_WRITE_REF = re.compile(r"[A-Za-z0-9_]{1,64}|w-[A-Za-z0-9_]{1,64}-[0-9]{10}")  # an id, or a queued write's name
_FORGET_EVERY_SECONDS = 60.0


def _text(raw: bytes) -> str:
    # latin-1 maps every byte to one character and back: bytes reach the leader unchanged.
    return raw.decode("latin-1")


TOO_LARGE = ApiError(413, "body: too large to be saved in ZooKeeper, where the backends keep their state (about "
                          "1 MB per write, after compression); nothing was changed")
# Bodies this much under ZooKeeper's limit fit in a queued write whatever its headers (which the HTTP
# server caps far below it): only larger ones are compressed to find out.
_SURELY_FITS = MAX_REQUEST_BYTES - 256 * 1024


def _write(rt: Runtime, request: Request, body: bytes) -> dict[str, Any]:
    """The queued write of a call: what the leader needs to make it again."""
    scope = request.scope
    write = {"method": request.method,
             # The path as sent (percent-escapes included) and every header, repeated ones too.
             "path": _text(scope.get("raw_path") or scope["path"].encode()), "query": _text(scope["query_string"]),
             "headers": [[_text(k), _text(v)] for k, v in scope["headers"] if _text(k).lower() not in SKIP_HEADERS],
             "body": _text(body), "queuedAt": int(time.time() * 1000), "queuedBy": rt.advertise_url}
    write["fingerprint"] = fingerprint(write["method"], write["path"], write["query"], write["body"])
    return write


def _too_large(write: dict[str, Any]) -> bool:
    return len(write["body"]) > _SURELY_FITS and len(encode_doc(write)) > MAX_REQUEST_BYTES - 1024


async def refuse_if_too_large(rt: Runtime, request: Request) -> Response | None:
    """The leader's answer to a write too large to go through the queue of writes: the one a standby
    gives. Refused before it is applied: made, it would not fit in ZooKeeper either (the objects it saves
    hold what it sent), and a change found too large only when saved leaves the scheduler's memory ahead
    of what is saved, which its leader can only mend by giving up the lead."""
    body = await request.body()
    if len(body) > _SURELY_FITS and _too_large(_write(rt, request, body)):
        return error_response(TOO_LARGE)
    return None


# Standby side --------------------------------------------------------------------------------------

async def queue_for_leader(rt: Runtime, request: Request) -> Response:
    assert rt.write_queue is not None
    write_id = request.headers.get(WRITE_ID_HEADER)
    if write_id is None:
        write_id = new_write_id()
    elif not _WRITE_ID.fullmatch(write_id):
        return error_response(ApiError(400, f"{WRITE_ID_HEADER}: must be 1 to 64 letters, digits or _ (a UUID's hex "
                                            f"digits, say), got {write_id[:80]!r}"))
    write = _write(rt, request, await request.body())
    if _too_large(write):
        return error_response(TOO_LARGE)
    if not rt.write_queue.connected:
        # Checked first: kazoo keeps a call made while it is disconnected and sends it once it is back,
        # so a write tried now could land after its caller was told it had not.
        return error_response(ApiError(503, "this backend has lost ZooKeeper, so it can neither lead nor queue the "
                                            "write for the leader; nothing was changed: retry shortly, or send it to "
                                            "another backend"))
    try:
        name = await rt.write_queue.put(write_id, write)
        rt.queued_here(name)
    except (StateUnavailable, KazooException) as exc:
        return json_response({"code": 503, "queuedWrite": write_id, "message": (
            f"ZooKeeper stopped answering while this backend queued the write ({str(exc) or type(exc).__name__}): "
            "it may or may not have "
            f"been queued, and if it was, the leader applies it. Send it again with the header {WRITE_ID_HEADER}: "
            f"{write_id} to have it applied once either way; GET /api/queued-writes/{write_id} shows it once it "
            "is found")}, 503)
    wait = rt.settings.standby_write_wait_seconds
    try:
        answer = await rt.write_queue.wait_answer(name, wait)
    except (StateUnavailable, KazooException):
        answer = None
    if answer is not None and answer.get("fingerprint") != write["fingerprint"]:
        return error_response(_reused(write_id, answer))
    if answer is not None and answer.get("state") != PROVISIONAL:
        return Response(answer["body"].encode("latin-1"), status_code=answer["status"],
                        headers={**answer["headers"], "X-Sing-Leader": answer["leader"], "X-Sing-Queued-Write": name})
    if answer is not None:
        message = (f"applied by the leader as queued write {name}, but its answer was lost (that leader stopped); "
                   "read the object to see its state; do not send it again")
    else:
        message = (f"queued for the leader as {name}, which has not applied it within {wait:g} s (no leader, or a "
                   f"fail-over in progress); the next leader applies it once. GET /api/queued-writes/{name} tells "
                   f"when it is done and what it answered; send it again only with {WRITE_ID_HEADER}: "
                   f"{write_id_of(name)}")
    return json_response({"code": 202, "queuedWrite": name, "applied": answer is not None, "message": message}, 202)


def _reused(write_id: str, answer: dict[str, Any]) -> ApiError:
    return ApiError(409, f"{WRITE_ID_HEADER}: {write_id} was used for another write ({answer.get('name')}, answered "
                         f"{answer.get('answeredAt')}); this one was not applied. Give each write an id of its own")


async def describe(rt: Runtime, ref: str) -> dict[str, Any] | None:
    """GET /api/queued-writes/{ref}: a write by its name or its id, and the leader's answer if any."""
    if rt.write_queue is None or not _WRITE_REF.fullmatch(ref):
        return None
    name, answer = await rt.write_queue.find(ref)
    if name is None:
        return None
    if answer is None:
        return {"name": name, "state": "QUEUED"}
    if answer.get("state") == PROVISIONAL:
        return {"name": name, "state": PROVISIONAL, "leader": answer["leader"], "answeredAt": answer["answeredAt"]}
    return {"name": name, "state": "ANSWERED", "status": answer["status"], "response": _parsed(answer["body"]),
            "leader": answer["leader"], "answeredAt": answer["answeredAt"]}


def _parsed(body: str) -> Any:
    try:
        return orjson.loads(body.encode("latin-1"))
    except orjson.JSONDecodeError:
        return body


# Leader side ---------------------------------------------------------------------------------------

# The leader's answer headers worth passing on (the others are the standby's own to set).
_ANSWER_HEADERS = ("content-type", "etag", "location", "cache-control")


class QueuedWriteApplier:
    """Applies the queued writes while this backend leads: started when elected, stopped when not."""

    def __init__(self, rt: Runtime, app: FastAPI) -> None:
        self._rt = rt
        self._app = app
        self._task: asyncio.Task[None] | None = None
        # Whether the writes queued before this backend was elected are applied (see Runtime.queue_first).
        self.drained = False
        self._applied_through = ""  # the sequence of the last write applied
        self._own_through = ""  # the sequence of the last write sent to this leader that it queued

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def queued_here(self, name: str) -> None:
        """A write sent to this leader went through the queue: until it is applied, those sent after it
        must too, or they could overtake it (one answered 202 meanwhile, say)."""
        self._own_through = max(self._own_through, sequence_of(name))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # already logged by _run; stepping down must go on
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
                    names = await rt.write_queue.names()
                    for name in names:
                        if not await self._apply(client, name):
                            return  # stepping down: the rest waits for the next leader
                        self._applied_through = sequence_of(name)
                    # Every write queued before this backend was elected is in its first listing: once
                    # those, and those sent here that queued since, are applied, the writes sent here go
                    # straight in. (Waiting instead to see the queue empty also queued the writes sent
                    # just after such a write had been answered, before the queue was listed again.)
                    if self._applied_through >= self._own_through:
                        self.drained = True
                    if time.monotonic() - forgotten_at > _FORGET_EVERY_SECONDS:
                        await rt.write_queue.forget_answers(ANSWER_KEEP_SECONDS)
                        forgotten_at = time.monotonic()
                except (StateUnavailable, KazooException) as exc:
                    log.warning("queued writes: ZooKeeper is not answering (%s); trying again", exc)
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    log.exception("queued writes: unexpected error; trying again")
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
        write = await rt.write_queue.read(name)
        if write is None:
            return True  # applied meanwhile
        if (earlier := await rt.write_queue.answer(name)) is not None:
            # Its id has an answer: the same write sent again gets that answer (once is enough), and
            # another write that reuses the id is refused (its standby tells its caller; see _reused).
            await rt.write_queue.finish(name, earlier, changed=False)
            log.info("queued write %s: its id was answered for %s (%s); not applied", name, earlier.get("name"),
                     "the same write" if earlier.get("fingerprint") == write["fingerprint"] else "another write")
            return rt.leading
        applying = Applying(name, fingerprint=write["fingerprint"])
        token = APPLYING.set(applying)
        try:
            url = write["path"] + (f"?{write['query']}" if write["query"] else "")
            response = await client.request(
                write["method"], url, content=write["body"].encode("latin-1"),
                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in write["headers"]])
            answer = {"status": response.status_code,
                      "headers": {k: v for k in _ANSWER_HEADERS if (v := response.headers.get(k)) is not None},
                      "body": _text(response.content)}
        except Exception as exc:
            if applying.changed or applying.abandoned:
                raise
            # Could not be replayed at all (nothing changed): answered as an error, not retried for ever.
            log.exception("queued write %s could not be replayed", name)
            answer = {"status": 500, "headers": {"content-type": "application/json"},
                      "body": _text(json_response({"code": 500, "message": f"the leader could not replay this "
                                                   f"write: {type(exc).__name__}: {exc}"}, 500).body)}
        finally:
            APPLYING.reset(token)
        if applying.abandoned:
            return False
        if response_ok(answer) and not applying.changed:
            # Every write endpoint makes its change through Runtime.change; one that does not would be
            # applied again should this leader die before the write's removal below.
            log.error("queued write %s (%s %s) succeeded without Runtime.change", name, write["method"],
                      write["path"])
        answer.update(leader=rt.advertise_url, answeredAt=int(time.time() * 1000), fingerprint=applying.fingerprint)
        # Even if this backend has just stopped leading: the change is made, and its caller waits.
        await rt.write_queue.finish(name, answer, changed=applying.changed)
        log.info("queued write %s from %s applied: %s %s → %d", name, write.get("queuedBy"), write["method"],
                 write["path"], answer["status"])
        return rt.leading


def response_ok(answer: dict[str, Any]) -> bool:
    return 200 <= answer["status"] < 300
