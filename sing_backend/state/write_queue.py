"""Writes made on standbys, queued in ZooKeeper for the leader, as Singularity's standbys queue theirs.

A standby stores each API write it gets (method, raw path, query, headers, body) as a sequential
znode under `{root}/writeQueue`, named `w-{id}-{sequence}`: the id is the standby's own, or the
client's (`X-Sing-Write-Id`), so the write can be found even when ZooKeeper's answer to its creation
is lost; the sequence orders the queue. The leader applies the writes in order, through its own API,
and stores each answer under `{root}/writeAnswers/{id}`, where the standby that queued the write
waits for it. A write whose id already has an answer (the same write sent again) is not applied
again: it gets that answer.

Applied once: the leader removes a queued write (`StateStore.take`) in the same ZooKeeper multi as
the change it makes, and in that multi it also stores a provisional answer ("APPLIED", with a token of
its own) that the real answer then replaces. So a leader that dies half-way leaves either all three or
none; a write that another leader already applied makes the multi fail; and a write whose leader died
before answering is known to have been applied. A write that changes nothing (refused by the leader's
checks) is answered and removed in one multi.

`APPLYING` names the queued write being applied, for the code that makes the change.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.interfaces import IAsyncResult
from kazoo.recipe.watchers import ChildrenWatch

from .store import Doc, StateUnavailable
from .zookeeper import MAX_REQUEST_BYTES, decode_doc, encode_doc, raise_if_fenced, request_bytes

QUEUE = "writeQueue"
ANSWERS = "writeAnswers"
PROVISIONAL = "APPLIED"  # the state of an answer stored with the change, before the real one


@dataclass
class Applying:
    """The queued write being applied, and what became of it (set by the code that makes the change)."""

    name: str
    # What the write is (see fingerprint): stored with its answer, so that a write sent again with the
    # same id is told from another write that reuses the id.
    fingerprint: str = ""
    # Marks this leader's provisional answer: after a lost connection, tells "my change landed" from
    # "another leader applied it".
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    changed: bool = False
    # Whether the change landed is not known here (its commit failed for want of ZooKeeper, or this
    # backend stopped leading): the write is left queued, for the next leader, whose take fails if it did.
    abandoned: bool = False


APPLYING: ContextVar[Applying | None] = ContextVar("applying_queued_write", default=None)


def new_write_id() -> str:
    return uuid.uuid4().hex


def sequence_of(name: str) -> str:
    """A queued write's place in the queue (fixed-width digits: they sort as strings)."""
    return name.rsplit("-", 1)[-1]


def write_id_of(name: str) -> str:
    """The id a write was queued with, from its name `w-{id}-{sequence}`."""
    return name[2:].rsplit("-", 1)[0]


def provisional_answer(applying: Applying, leader: str) -> Doc:
    return {"state": PROVISIONAL, "name": applying.name, "fingerprint": applying.fingerprint,
            "token": applying.token, "leader": leader, "answeredAt": int(time.time() * 1000)}


def _answer_data(path: str, answer: Doc) -> bytes:
    """The answer as stored. One too large for a znode would make ZooKeeper drop the leader's connection,
    each time a leader tried to store it: its body is left out, and the status and a message say so."""
    data = encode_doc(answer)
    if request_bytes(path, data) <= MAX_REQUEST_BYTES or "body" not in answer:
        return data
    message = (f"the leader's answer ({len(data)} bytes, compressed) is too large to keep with the queued write; "
               "the status is the leader's: read the object through the API to see its state")
    body = orjson.dumps({"code": answer["status"], "message": message}).decode()
    headers = {**answer.get("headers", {}), "content-type": "application/json"}
    return encode_doc({**answer, "headers": headers, "body": body})


def fingerprint(method: str, path: str, query: str, body: str) -> str:
    """What a write asks for, in a few bytes: the same write sent again has the same fingerprint."""
    return hashlib.sha256("\0".join((method, path, query, body)).encode("latin-1", "replace")).hexdigest()[:32]


class WriteQueue:
    def __init__(self, client: KazooClient, root: str, timeout: float,
                 fence: Callable[[], str | None] = lambda: None) -> None:
        """`fence()`: the znode the leader's writes check (its election node), as in ZkStateStore.fence."""
        self._client = client
        self._fence = fence
        self._queue = f"{root.rstrip('/')}/{QUEUE}"
        self._answers = f"{root.rstrip('/')}/{ANSWERS}"
        self._timeout = timeout
        self._parents_made = False

    def _get(self, result: IAsyncResult) -> Any:
        # kazoo's blocking calls wait for as long as ZooKeeper is away; these wait at most the timeout.
        try:
            return result.get(timeout=self._timeout)
        except self._client.handler.timeout_exception:
            raise StateUnavailable(f"ZooKeeper did not answer within {self._timeout:g} s") from None

    async def _await(self, result: IAsyncResult) -> Any:
        """Await a kazoo call on the event loop, holding no thread while it is in flight."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        result.rawlink(lambda _result: loop.call_soon_threadsafe(done.set))
        try:
            async with asyncio.timeout(self._timeout):
                await done.wait()
        except TimeoutError:
            raise StateUnavailable(f"ZooKeeper did not answer within {self._timeout:g} s") from None
        return result.get_nowait()

    def _ensure_parents(self) -> None:
        if not self._parents_made:
            for path in (self._queue, self._answers):
                self._get(self._client.ensure_path_async(path))
            self._parents_made = True

    # Standby side ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def put(self, write_id: str, write: Doc) -> str:
        """Queue a write; its name once ZooKeeper has it (a quorum has logged it)."""
        path = await self._await(self._client.create_async(f"{self._queue}/w-{write_id}-", encode_doc(write),
                                                           sequence=True, makepath=True))
        return str(path).rsplit("/", 1)[1]

    async def wait_answer(self, name: str, timeout: float) -> Doc | None:
        """The leader's answer to a queued write, waiting up to `timeout` seconds for it; at the end of
        the wait, the provisional answer if that is all there is (the write was applied, the answer not
        stored yet, or lost with its leader), or None."""
        path = self._answer_path(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        answer: Doc | None = None
        while True:
            changed = asyncio.Event()
            # Fires when the answer is created, and when the real answer replaces the provisional one.
            watch: Callable[[Any], None] = lambda _event, changed=changed: loop.call_soon_threadsafe(changed.set)  # noqa: E731
            if await self._await(self._client.exists_async(path, watch=watch)) is not None:
                answer = await self.answer(name)
                if answer is not None and answer.get("state") != PROVISIONAL:
                    return answer
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
                    await changed.wait()
            except TimeoutError:
                return answer

    def _answer_path(self, name: str) -> str:
        return f"{self._answers}/{write_id_of(name)}"

    async def answer(self, name: str) -> Doc | None:
        """The answer stored for a write's id (a write sent again shares the answer of the first)."""
        return await self._answer_at(self._answer_path(name))

    async def _answer_at(self, path: str) -> Doc | None:
        try:
            data, _ = await self._await(self._client.get_async(path))
        except NoNodeError:
            return None
        return decode_doc(data)

    async def find(self, ref: str) -> tuple[str | None, Doc | None]:
        """A queued or answered write by its name or by the id its standby gave it: (its name, its answer,
        None while it is still queued); (None, None) if none is known."""
        # The server this backend is connected to may lag behind the one that took the write.
        for path in (self._queue, self._answers):
            await self._await(self._client.sync_async(path))
        # The answer first: a repeat of an answered write can still be queued, waiting for its removal.
        answer_path = self._answer_path(ref) if ref.startswith("w-") else f"{self._answers}/{ref}"
        if (answer := await self._answer_at(answer_path)) is None:
            # The first queued under the id: the one a repeat's answer will be the answer of.
            queued = [name for name in await self._children(self._queue) if name == ref or name.startswith(f"w-{ref}-")]
            if queued:
                return min(queued, key=sequence_of), None
            answer = await self._answer_at(answer_path)  # answered (and removed) while the queue was listed
        return (answer.get("name", ref), answer) if answer is not None else (None, None)

    async def _children(self, path: str) -> list[str]:
        try:
            names: list[str] = await self._await(self._client.get_children_async(path))
        except NoNodeError:
            return []
        return names

    # Leader side ----------------------------------------------------------------------------------

    def watch(self, changed: Callable[[int], None]) -> None:
        """Call `changed(number queued)` now and on every change of the queue (on kazoo's thread)."""
        self._ensure_parents()
        ChildrenWatch(self._client, self._queue, lambda children: changed(len(children)))

    async def names(self) -> list[str]:
        # The server this backend is connected to may lag behind the one that took a write.
        await self._await(self._client.sync_async(self._queue))
        return sorted(await self._children(self._queue), key=sequence_of)

    async def read(self, name: str) -> Doc | None:
        try:
            data, _ = await self._await(self._client.get_async(f"{self._queue}/{name}"))
        except NoNodeError:
            return None  # applied meanwhile
        return decode_doc(data)

    def provisional_answer_of(self, name: str) -> Doc | None:
        """The answer stored for a write, read without awaiting (from inside a change)."""
        try:
            data, _ = self._get(self._client.get_async(self._answer_path(name)))
        except NoNodeError:
            return None
        return decode_doc(data)

    async def finish(self, name: str, answer: Doc, *, changed: bool) -> None:
        """Store a queued write's answer. A write that `changed` state was removed with its change, which
        stored a provisional answer: replace it. Otherwise store the answer and remove the write in one
        multi, so that neither is done without the other."""
        answer_path, write_path = self._answer_path(name), f"{self._queue}/{name}"
        data = _answer_data(answer_path, {**answer, "name": name})
        if changed:
            try:
                await self._await(self._client.set_async(answer_path, data))
            except NoNodeError:  # removed as too old meanwhile
                pass
            return
        self._ensure_parents()
        transaction = self._client.transaction()
        # Fenced as the leader's changes are: a leader that has lost its election node answers nothing
        # (the write stays queued for the next one, whose checks may answer otherwise).
        fence = self._fence()
        if fence is not None:
            transaction.check(fence, 0)
        transaction.create(answer_path, data)
        transaction.delete(write_path)
        results = await self._await(transaction.commit_async())
        if fence is not None:
            raise_if_fenced(fence, results)
            results = results[1:]
        if isinstance(results[0], NodeExistsError):
            # Answered before (the same write sent again, or a crash left it queued): the first answer stands.
            await self._ignore(NoNodeError, self._client.delete_async(write_path))
        elif isinstance(results[1], NoNodeError):
            await self._ignore(NodeExistsError, self._client.create_async(answer_path, data))
        elif failed := [r for r in results if isinstance(r, Exception)]:
            raise failed[0]

    async def _ignore(self, error: type[Exception], result: IAsyncResult) -> None:
        try:
            await self._await(result)
        except error:
            pass

    async def forget_answers(self, older_than_seconds: float) -> int:
        """Remove answers stored more than `older_than_seconds` ago; how many were removed."""
        ids = await self._children(self._answers)
        cut_ms = (time.time() - older_than_seconds) * 1000
        looks = [(write_id, self._client.exists_async(f"{self._answers}/{write_id}")) for write_id in ids]
        old = [write_id for write_id, look in looks
               if (stat := await self._await(look)) is not None and stat.ctime < cut_ms]
        for write_id in old:
            await self._ignore(NoNodeError, self._client.delete_async(f"{self._answers}/{write_id}"))
        return len(old)
