"""The queue of writes made on standbys, in a real ZooKeeper: order, answers, and the leader's side of
"applied once" (Runtime.change takes the queued write in the change's own multi)."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from fastapi.routing import APIRoute

from sing_backend.api.app import create_app
from sing_backend.runtime import Runtime
from sing_backend.settings import Settings
from sing_backend.state.store import StateUnavailable
from sing_backend.state.write_queue import APPLYING, QUEUE, Applying, WriteQueue
from sing_backend.state.zookeeper import ZkStateStore
from tests.servers import ZooKeeperServer


@pytest.fixture
def store(zookeeper: ZooKeeperServer) -> Iterator[ZkStateStore]:
    opened = ZkStateStore(zookeeper.hosts, root=f"/sing-test-{uuid4().hex[:12]}")
    yield opened
    opened.close()


@pytest.fixture
def queue(store: ZkStateStore) -> WriteQueue:
    return WriteQueue(store.client, store._root, timeout=5.0)


def test_writes_come_out_in_the_order_queued_and_are_answered(queue: WriteQueue) -> None:
    names = [queue.put({"method": "POST", "n": i}) for i in range(12)]
    assert queue.names() == names  # sequence numbers sort as queued, past 10 as well
    assert [queue.read(n)["n"] for n in names] == list(range(12))  # type: ignore[index]
    assert queue.is_queued(names[0]) and queue.answer(names[0]) is None
    queue.finish(names[0], {"status": 200, "body": "{}"})
    assert queue.answer(names[0]) == {"status": 200, "body": "{}"}
    assert not queue.is_queued(names[0]) and queue.read(names[0]) is None
    assert queue.names() == names[1:]


def test_a_write_answered_before_a_crash_keeps_its_first_answer(queue: WriteQueue, store: ZkStateStore) -> None:
    """A leader stored the answer and died before the write left the queue: the next one applies it
    (a refused write changes nothing) and finishes it without replacing the answer the caller may have."""
    name = queue.put({"method": "POST"})
    queue.finish(name, {"status": 400, "by": "first"})
    store.client.create(f"{store._root}/writeQueue/{name}", b"{}")  # as the crash left it
    queue.finish(name, {"status": 400, "by": "second"})
    assert queue.answer(name) == {"status": 400, "by": "first"} and not queue.is_queued(name)
    # And a write its change already removed gets its answer all the same.
    other = queue.put({"method": "POST"})
    store.client.delete(f"{store._root}/writeQueue/{other}")
    queue.finish(other, {"status": 200})
    assert queue.answer(other) == {"status": 200}


def test_a_waiting_standby_gets_the_answer_as_soon_as_it_is_stored(queue: WriteQueue) -> None:
    name = queue.put({"method": "POST"})
    assert queue.wait_answer(name, 0.2) is None  # nobody answers: it gives up after the wait
    answered_at: list[float] = []

    def leader() -> None:
        time.sleep(0.3)
        answered_at.append(time.monotonic())
        queue.finish(name, {"status": 201})
    threading.Thread(target=leader).start()
    assert queue.wait_answer(name, 10.0) == {"status": 201}
    assert time.monotonic() - answered_at[0] < 1.0  # woken by the watch, not at the end of the wait


def test_old_answers_are_forgotten(queue: WriteQueue) -> None:
    name = queue.put({"method": "POST"})
    queue.finish(name, {"status": 200})
    assert queue.forget_answers(older_than_seconds=3600) == 0 and queue.answer(name) is not None
    time.sleep(0.05)
    assert queue.forget_answers(older_than_seconds=0.01) == 1 and queue.answer(name) is None


class ElectionRecorder:
    """Stands in for the leader election (which needs a whole backend): records a resignation."""

    def __init__(self) -> None:
        self.resigned = False

    def resign(self) -> None:
        self.resigned = True


def leading_runtime(store: ZkStateStore, tmp_path: Path) -> tuple[Runtime, ElectionRecorder]:
    rt = Runtime(Settings(data_dir=tmp_path))
    rt.store = store
    rt.leading = True
    election = ElectionRecorder()
    rt.election = election  # type: ignore[assignment]
    return rt, election


def test_a_queued_write_lands_with_its_removal(store: ZkStateStore, queue: WriteQueue, tmp_path: Path) -> None:
    rt, election = leading_runtime(store, tmp_path)
    name = queue.put({"method": "POST"})
    applying = Applying(name)
    token = APPLYING.set(applying)
    try:
        rt.change(lambda: store.put("requests", "made", {"v": 1}))
    finally:
        APPLYING.reset(token)
    assert applying.changed and not applying.abandoned and not election.resigned
    assert store.load("requests") == {"made": {"v": 1}} and store.load(QUEUE) == {}


def test_a_queued_write_another_leader_applied_changes_nothing(store: ZkStateStore, queue: WriteQueue,
                                                                tmp_path: Path) -> None:
    """The write is gone from the queue when this leader commits its change (another leader applied it
    first): the change is refused whole, and this backend gives up the lead to reload what is saved."""
    rt, election = leading_runtime(store, tmp_path)
    name = queue.put({"method": "POST"})
    queue.finish(name, {"status": 200})  # applied and removed elsewhere
    applying = Applying(name)
    token = APPLYING.set(applying)
    try:
        with pytest.raises(StateUnavailable):
            rt.change(lambda: store.put("requests", "twice", {"v": 1}))
    finally:
        APPLYING.reset(token)
    assert store.load("requests") == {}
    assert applying.abandoned and not applying.changed and election.resigned


def test_a_backend_that_stopped_leading_leaves_the_write_queued(store: ZkStateStore, queue: WriteQueue,
                                                                 tmp_path: Path) -> None:
    rt, _ = leading_runtime(store, tmp_path)
    rt.leading = False
    name = queue.put({"method": "POST"})
    applying = Applying(name)
    token = APPLYING.set(applying)
    try:
        with pytest.raises(Exception, match="stopped leading"):
            rt.change(lambda: store.put("requests", "late", {"v": 1}))
    finally:
        APPLYING.reset(token)
    assert store.load("requests") == {} and queue.is_queued(name) and applying.abandoned


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from api_routes(route.original_router.routes)


def test_every_write_endpoint_makes_its_change_through_runtime_change(tmp_path: Path) -> None:
    """A write endpoint that changed state without Runtime.change would apply a queued write again if the
    leader died between the change and the write's removal."""
    local_only = {"lose_agent"}  # fault injection on the embedded cluster: no standbys in local mode
    writes = {r.endpoint.__name__: r.endpoint for r in api_routes(create_app(Settings(data_dir=tmp_path)).routes)
              if r.methods - {"GET", "HEAD"}}
    assert len(writes) >= 20
    missing = [name for name, endpoint in writes.items()
               if name not in local_only and "rt.change(" not in inspect.getsource(endpoint)
               and "_change(rt" not in inspect.getsource(endpoint)]
    assert missing == []
