"""Writes made on standbys, queued in ZooKeeper for the leader, as Singularity's standbys queue theirs.

A standby stores each API write it gets (method, path, query, body, headers) as a sequential znode
under `{root}/writeQueue`; the leader applies them in order, through its own API, and leaves each
answer under `{root}/writeAnswers/{name}`, where the standby that queued the write waits for it.

Applied once: the leader removes a queued write (`StateStore.take`) in the same ZooKeeper multi as
the change it makes, so a leader that dies half-way leaves either both or neither, and a write that
another leader already applied makes the multi fail. A write that changes nothing (refused by the
leader's checks) is removed after its answer is stored.

`APPLYING` names the queued write being applied, for the code that makes the change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from .store import Doc, StateUnavailable
from .zookeeper import decode_doc, encode_doc

QUEUE = "writeQueue"
ANSWERS = "writeAnswers"
# Sequential znodes are named prefix + a 10-digit counter, so names sort in the order queued.
_PREFIX = "w-"



@dataclass
class Applying:
    """The queued write being applied, and what became of it (set by the code that makes the change)."""

    name: str
    changed: bool = False
    # The change's commit failed, or this backend stopped leading: whether it landed is not known here,
    # so the write is left for the next leader, whose take of it fails if it did land.
    abandoned: bool = False


APPLYING: ContextVar[Applying | None] = ContextVar("applying_queued_write", default=None)


def _setter(event: threading.Event) -> Callable[[Any], None]:
    return lambda _watched: event.set()


class WriteQueue:
    def __init__(self, client: KazooClient, root: str, timeout: float) -> None:
        self._client = client
        self._queue = f"{root.rstrip('/')}/{QUEUE}"
        self._answers = f"{root.rstrip('/')}/{ANSWERS}"
        self._timeout = timeout
        self._parents_made = False

    def _get(self, result: Any) -> Any:
        # kazoo's blocking calls wait for as long as ZooKeeper is away; these wait at most the timeout.
        try:
            return result.get(timeout=self._timeout)
        except self._client.handler.timeout_exception:
            raise StateUnavailable(f"ZooKeeper did not answer within {self._timeout:g} s") from None

    # Standby side ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def put(self, write: Doc) -> str:
        """Queue a write; its name once ZooKeeper has it (a quorum has logged it)."""
        path = self._get(self._client.create_async(f"{self._queue}/{_PREFIX}", encode_doc(write), sequence=True,
                                                   makepath=True))
        return str(path).rsplit("/", 1)[1]

    def wait_answer(self, name: str, timeout: float) -> Doc | None:
        """The leader's answer to a queued write, waiting up to `timeout` seconds for it."""
        path = f"{self._answers}/{name}"
        deadline = time.monotonic() + timeout
        while True:
            arrived = threading.Event()
            # A watch on a znode that does not exist yet fires when it is created.
            if self._get(self._client.exists_async(path, watch=_setter(arrived))) is not None:
                return self.answer(name)
            if not arrived.wait(max(deadline - time.monotonic(), 0.0)):
                return None

    def answer(self, name: str) -> Doc | None:
        try:
            data, _ = self._get(self._client.get_async(f"{self._answers}/{name}"))
        except NoNodeError:
            return None
        return decode_doc(data)

    def is_queued(self, name: str) -> bool:
        return self._get(self._client.exists_async(f"{self._queue}/{name}")) is not None

    # Leader side ----------------------------------------------------------------------------------

    def watch(self, changed: Callable[[int], None]) -> None:
        """Call `changed(number queued)` now and on every change of the queue (on kazoo's thread)."""
        self._ensure_parents()
        ChildrenWatch(self._client, self._queue, lambda children: changed(len(children)))

    def names(self) -> list[str]:
        try:
            names: list[str] = self._get(self._client.get_children_async(self._queue))
        except NoNodeError:
            return []
        return sorted(names)

    def read(self, name: str) -> Doc | None:
        try:
            data, _ = self._get(self._client.get_async(f"{self._queue}/{name}"))
        except NoNodeError:
            return None  # applied meanwhile
        return decode_doc(data)

    def finish(self, name: str, answer: Doc, *, removed: bool = False) -> None:
        """Store a queued write's answer and remove the write, unless its change `removed` it already:
        one multi, so that neither is done without the other."""
        answer_path, write_path = f"{self._answers}/{name}", f"{self._queue}/{name}"
        self._ensure_parents()
        transaction = self._client.transaction()
        transaction.create(answer_path, encode_doc(answer))
        if not removed:
            transaction.delete(write_path)
        results = self._get(transaction.commit_async())
        if isinstance(results[0], NodeExistsError):
            # Answered before a crash that left the write queued: the first answer stands.
            self._ignore(NoNodeError, self._client.delete_async(write_path))
        elif len(results) > 1 and isinstance(results[1], NoNodeError):
            self._ignore(NodeExistsError, self._client.create_async(answer_path, encode_doc(answer)))
        elif failed := [r for r in results if isinstance(r, Exception)]:
            raise failed[0]

    def _ignore(self, error: type[Exception], result: Any) -> None:
        try:
            self._get(result)
        except error:
            pass

    def _ensure_parents(self) -> None:
        if not self._parents_made:
            for path in (self._queue, self._answers):
                self._get(self._client.ensure_path_async(path))
            self._parents_made = True

    def forget_answers(self, older_than_seconds: float) -> int:
        """Remove answers stored more than `older_than_seconds` ago; how many were removed."""
        try:
            names: list[str] = self._get(self._client.get_children_async(self._answers))
        except NoNodeError:
            return 0
        cut_ms = (time.time() - older_than_seconds) * 1000
        looks = [(name, self._client.exists_async(f"{self._answers}/{name}")) for name in names]
        old = [name for name, look in looks if (stat := self._get(look)) is not None and stat.ctime < cut_ms]
        for name in old:
            try:
                self._get(self._client.delete_async(f"{self._answers}/{name}"))
            except NoNodeError:
                pass
        return len(old)
