"""The queue of writes made on standbys, in a real ZooKeeper: order, answers, and the leader's side of
"applied once" (Runtime.change takes the queued write in the change's own multi)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi.routing import APIRoute

from sing_backend.api.app import create_app
from sing_backend.api.queued_writes import QueuedWriteApplier
from sing_backend.errors import ApiError
from sing_backend.history import HistoryStore
from sing_backend.runtime import Runtime
from sing_backend.scheduler.core import Scheduler
from sing_backend.scheduler.history_sink import HistorySink
from sing_backend.settings import Settings
from sing_backend.state.store import StateUnavailable
from sing_backend.state.write_queue import (
    ANSWERS,
    APPLYING,
    PROVISIONAL,
    QUEUE,
    Applying,
    WriteQueue,
    new_write_id,
    provisional_answer,
    write_id_of,
)
from sing_backend.state.zookeeper import Fenced, ZkStateStore
from tests.servers import ZooKeeperServer


@pytest.fixture
def store(zookeeper: ZooKeeperServer) -> Iterator[ZkStateStore]:
    opened = ZkStateStore(zookeeper.hosts, root=f"/sing-test-{uuid4().hex[:12]}")
    yield opened
    opened.close()


@pytest.fixture
def queue(store: ZkStateStore) -> WriteQueue:
    return WriteQueue(store.client, store._root, timeout=5.0)


async def test_writes_come_out_in_the_order_queued_and_are_answered(queue: WriteQueue) -> None:
    ids = [new_write_id() for _ in range(12)]
    names = [await queue.put(write_id, {"method": "POST", "n": i}) for i, write_id in enumerate(ids)]
    assert await queue.names() == names  # in the order queued (the ids are random), past 10 as well
    assert [(await queue.read(n))["n"] for n in names] == list(range(12))  # type: ignore[index]
    assert await queue.find(names[0]) == (names[0], None) and await queue.find(ids[0]) == (names[0], None)
    assert await queue.answer(names[0]) is None
    await queue.finish(names[0], {"status": 400, "body": "{}"}, changed=False)
    assert await queue.answer(names[0]) == {"status": 400, "body": "{}", "name": names[0]}
    assert await queue.find(ids[0]) == (names[0], {"status": 400, "body": "{}", "name": names[0]})
    assert await queue.read(names[0]) is None
    assert await queue.names() == names[1:]
    assert await queue.find(new_write_id()) == (None, None)


async def test_a_write_sent_again_is_found_answered_while_its_repeat_waits(queue: WriteQueue) -> None:
    """Two writes with one id: once the first is answered, the id (and the repeat's name) look up that
    answer, though the repeat is still queued until the leader removes it."""
    write_id = new_write_id()
    first, repeat = [await queue.put(write_id, {"method": "POST"}) for _ in range(2)]
    assert await queue.find(write_id) == (first, None)
    await queue.finish(first, {"status": 200}, changed=False)
    assert await queue.names() == [repeat]
    answered = {"status": 200, "name": first}
    assert await queue.find(write_id) == (first, answered) and await queue.find(repeat) == (first, answered)
    assert await queue.wait_answer(repeat, 0.1) == {"status": 200, "name": first}


async def test_a_waiting_standby_gets_the_answer_as_soon_as_it_is_stored(queue: WriteQueue) -> None:
    name = await queue.put(new_write_id(), {"method": "POST"})
    assert await queue.wait_answer(name, 0.2) is None  # nobody answers: it gives up after the wait
    answered_at: list[float] = []

    async def leader() -> None:
        await asyncio.sleep(0.3)
        answered_at.append(time.monotonic())
        await queue.finish(name, {"status": 201}, changed=False)
    answering = asyncio.create_task(leader())
    assert await queue.wait_answer(name, 10.0) == {"status": 201, "name": name}
    assert time.monotonic() - answered_at[0] < 1.0  # woken by the watch, not at the end of the wait
    await answering


async def test_a_standby_waits_past_the_provisional_answer(queue: WriteQueue, store: ZkStateStore) -> None:
    """The change stores "APPLIED" with itself; the standby waits for the answer that replaces it, and
    at the end of its wait says the write was applied if that is all there is."""
    name = await queue.put(new_write_id(), {"method": "POST"})
    store.put(ANSWERS, write_id_of(name), provisional_answer(Applying(name), "http://leader"))
    store.delete(QUEUE, name)

    async def leader() -> None:
        await asyncio.sleep(0.3)
        await queue.finish(name, {"status": 200}, changed=True)
    answering = asyncio.create_task(leader())
    assert await queue.wait_answer(name, 10.0) == {"status": 200, "name": name}
    await answering
    lost = await queue.put(new_write_id(), {"method": "POST"})
    store.put(ANSWERS, write_id_of(lost), provisional_answer(Applying(lost), "http://leader"))  # its leader died here
    assert (await queue.wait_answer(lost, 0.3))["state"] == PROVISIONAL  # type: ignore[index]


async def test_a_write_answered_before_a_crash_keeps_its_first_answer(queue: WriteQueue,
                                                                       store: ZkStateStore) -> None:
    """A leader stored the answer and died before the write left the queue: the next one applies it
    (a refused write changes nothing) and finishes it without replacing the answer the caller may have."""
    name = await queue.put(new_write_id(), {"method": "POST"})
    await queue.finish(name, {"status": 400, "by": "first"}, changed=False)
    store.client.create(f"{store._root}/writeQueue/{name}", b"{}")  # as the crash left it
    await queue.finish(name, {"status": 400, "by": "second"}, changed=False)
    assert await queue.answer(name) == {"status": 400, "by": "first", "name": name} and await queue.read(name) is None
    # And a refused write removed meanwhile gets its answer all the same.
    other = await queue.put(new_write_id(), {"method": "POST"})
    store.client.delete(f"{store._root}/writeQueue/{other}")
    await queue.finish(other, {"status": 409}, changed=False)
    assert await queue.answer(other) == {"status": 409, "name": other}


async def test_an_answer_too_large_for_a_znode_is_kept_without_its_body(queue: WriteQueue,
                                                                        store: ZkStateStore) -> None:
    """ZooKeeper drops the connection of a client that sends more than it takes in one request: stored as it
    is, such an answer would cost the leader its connection (and its lead) each time a leader tried. It is
    stored with its status and a message in place of its body, and the write leaves the queue."""
    name = await queue.put(new_write_id(), {"method": "POST"})
    body = os.urandom(1_200_000).decode("latin-1")  # does not compress
    await queue.finish(name, {"status": 200, "headers": {"content-type": "application/json"}, "body": body},
                       changed=False)
    answer = await queue.answer(name)
    assert answer is not None and answer["status"] == 200 and await queue.names() == []
    message = json.loads(answer["body"])["message"]
    assert "too large to keep" in message and "read the object through the API" in message
    assert store.client.connected
    small = await queue.put(new_write_id(), {"method": "POST"})  # small answers are kept whole
    await queue.finish(small, {"status": 201, "body": '{"ok": true}'}, changed=False)
    assert (await queue.answer(small))["body"] == '{"ok": true}'  # type: ignore[index]


async def test_old_answers_are_forgotten(queue: WriteQueue) -> None:
    name = await queue.put(new_write_id(), {"method": "POST"})
    await queue.finish(name, {"status": 200}, changed=False)
    assert await queue.forget_answers(older_than_seconds=3600) == 0 and await queue.answer(name) is not None
    await asyncio.sleep(0.05)
    assert await queue.forget_answers(older_than_seconds=0.01) == 1 and await queue.answer(name) is None


async def test_a_leader_that_lost_its_election_node_answers_nothing(store: ZkStateStore) -> None:
    """A refusal is answered and the write removed in one multi that checks the leader's election node:
    once that is gone, the write stays queued for the next leader, whose checks may answer otherwise."""
    lock = store.client.create(f"{store._root}-leader/node-", b"", ephemeral=True, sequence=True, makepath=True)
    queue = WriteQueue(store.client, store._root, timeout=5.0, fence=lambda: lock)
    first, second = [await queue.put(new_write_id(), {"method": "POST"}) for _ in range(2)]
    await queue.finish(first, {"status": 404, "body": "{}"}, changed=False)
    store.client.delete(lock)
    with pytest.raises(Fenced):
        await queue.finish(second, {"status": 404, "body": "{}"}, changed=False)
    assert await queue.answer(first) is not None and await queue.names() == [second]
    assert await queue.answer(second) is None


class ElectionRecorder:
    """Stands in for the leader election (which needs a whole backend): records a resignation."""

    def __init__(self) -> None:
        self.resigned = False

    def resign(self) -> None:
        self.resigned = True


def leading_runtime(store: ZkStateStore, queue: WriteQueue, tmp_path: Path) -> tuple[Runtime, ElectionRecorder]:
    settings = Settings(data_dir=tmp_path)
    rt = Runtime(settings)
    rt.store = store
    rt.write_queue = queue
    rt.scheduler = Scheduler(settings, store, None, HistorySink())
    rt.leading = True
    election = ElectionRecorder()
    rt.election = election  # type: ignore[assignment]
    return rt, election


def change_as(rt: Runtime, applying: Applying, action: Callable[[], None]) -> None:
    """`rt.change(action)` as the leader's replay of the queued write `applying` makes it."""
    token = APPLYING.set(applying)
    try:
        rt.change(action)
    finally:
        APPLYING.reset(token)


async def test_a_queued_write_lands_with_its_removal(store: ZkStateStore, queue: WriteQueue,
                                                     tmp_path: Path) -> None:
    rt, election = leading_runtime(store, queue, tmp_path)
    name = await queue.put(new_write_id(), {"method": "POST"})
    applying = Applying(name)
    change_as(rt, applying, lambda: store.put("requests", "made", {"v": 1}))
    assert applying.changed and not applying.abandoned and not election.resigned
    assert store.load("requests") == {"made": {"v": 1}} and store.load(QUEUE) == {}
    # With a provisional answer, replaced by the real one.
    assert (await queue.answer(name))["token"] == applying.token  # type: ignore[index]


async def test_a_queued_write_another_leader_applied_changes_nothing(store: ZkStateStore, queue: WriteQueue,
                                                                tmp_path: Path) -> None:
    """The write is gone from the queue when this leader commits its change (another leader applied it
    first): the change is refused whole, and this backend gives up the lead to reload what is saved."""
    rt, election = leading_runtime(store, queue, tmp_path)
    name = await queue.put(new_write_id(), {"method": "POST"})
    other = Applying(name)
    # Applied and removed elsewhere:
    store.put(ANSWERS, write_id_of(name), provisional_answer(other, "http://other-leader"))
    store.delete(QUEUE, name)
    applying = Applying(name)
    with pytest.raises(StateUnavailable):
        change_as(rt, applying, lambda: store.put("requests", "twice", {"v": 1}))
    assert store.load("requests") == {}
    assert applying.abandoned and not applying.changed and election.resigned


async def test_a_commit_retried_after_its_answer_was_lost_counts_as_done(store: ZkStateStore, queue: WriteQueue,
                                                                          tmp_path: Path) -> None:
    """The first commit landed but its answer was lost; the retry finds the write already taken. The
    provisional answer carries this attempt's token: the change is done, not refused."""
    rt, election = leading_runtime(store, queue, tmp_path)
    name = await queue.put(new_write_id(), {"method": "POST"})
    applying = Applying(name)
    # What the first, landed, commit left.
    store.put("requests", "made", {"v": 1})
    store.put(ANSWERS, write_id_of(name), provisional_answer(applying, rt.advertise_url))
    store.delete(QUEUE, name)
    change_as(rt, applying, lambda: store.put("requests", "made", {"v": 1}))
    assert applying.changed and not applying.abandoned and not election.resigned
    assert store.load("requests") == {"made": {"v": 1}}


async def test_a_backend_that_stopped_leading_leaves_the_write_queued(store: ZkStateStore, queue: WriteQueue,
                                                                 tmp_path: Path) -> None:
    rt, _ = leading_runtime(store, queue, tmp_path)
    rt.leading = False
    name = await queue.put(new_write_id(), {"method": "POST"})
    applying = Applying(name)
    with pytest.raises(Exception, match="stopped leading"):
        change_as(rt, applying, lambda: store.put("requests", "late", {"v": 1}))
    assert store.load("requests") == {} and await queue.read(name) is not None and applying.abandoned


async def test_a_demoted_leader_saves_nothing_its_scheduler_still_does(store: ZkStateStore, queue: WriteQueue,
                                                                        tmp_path: Path) -> None:
    """Told it no longer leads (on the election's thread), the backend fences its store off before its
    scheduler stops: a write made in between is refused, not saved over what a new leader does."""
    rt, _ = leading_runtime(store, queue, tmp_path)
    rt._loop = asyncio.get_running_loop()
    store.fence(store.client.create(f"{store._root}-leader/node-", b"", ephemeral=True, sequence=True,
                                    makepath=True))
    scheduler = rt.scheduler
    store.put("scratch", "before", {"v": 1})
    await asyncio.to_thread(rt._demoted_from_thread)
    with pytest.raises(Fenced):
        store.put("scratch", "stale", {"v": 1})  # as the old scheduler would, before it has stopped
    deadline = time.monotonic() + 10
    while rt.leading or rt.scheduler is scheduler:
        assert time.monotonic() < deadline, "the backend did not step down"
        await asyncio.sleep(0.01)
    assert store.load("scratch") == {"before": {"v": 1}}


async def test_a_change_cut_off_by_the_end_of_the_lead_saves_none_of_its_writes(store: ZkStateStore,
                                                                               queue: WriteQueue,
                                                                               tmp_path: Path) -> None:
    """A leader's change commits as one multi with its election node's check: if the lead ends (the node
    is gone) part-way, the writes made before that are not saved either, for a new leader to find half
    done."""
    rt, election = leading_runtime(store, queue, tmp_path)
    lock = store.client.create(f"{store._root}-leader/node-", b"", ephemeral=True, sequence=True, makepath=True)
    store.fence(lock)

    def action() -> None:
        store.put("requests", "first", {"v": 1})
        store.client.delete(lock)  # the session expires here
        store.put("requests", "second", {"v": 1})

    with pytest.raises(Fenced):
        rt.change(action)
    assert store.load("requests") == {}


async def test_a_change_refused_by_a_leader_stepping_down_answers_503_saying_nothing_was_saved(
        store: ZkStateStore, queue: WriteQueue, tmp_path: Path) -> None:
    """...and nothing of it was saved: not in ZooKeeper, not in history either (a request event recorded
    there would be recorded twice once the caller sends the change again)."""
    rt, _ = leading_runtime(store, queue, tmp_path)
    rt.history = await HistoryStore.open(rt.settings.history_url)
    rt.sink.start()
    rt.scheduler = Scheduler(rt.settings, store, rt.history, rt.sink)
    app = create_app(rt.settings, rt)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sing/singularity") as api:
            r = await api.post("/api/requests", json={"id": "saved", "requestType": "WORKER"})
            assert r.status_code == 200, r.text
            store.fence_off()  # as the election thread does the moment the connection is suspended
            r = await api.post("/api/requests", json={"id": "late", "requestType": "WORKER"})
            assert r.status_code == 503, r.text
            assert "nothing of this change was saved; send it again" in r.json()["message"]
            assert set(store.load("requests")) == {"saved"}
            for request_id, events in (("saved", 1), ("late", 0)):
                r = await api.get(f"/api/history/request/{request_id}/requests")
                assert r.status_code == 200 and len(r.json()) == events, (request_id, r.text)
    finally:
        await rt.sink.close()
        await rt.history.close()


async def test_a_queued_write_too_large_for_one_multi_is_answered_and_not_applied_again(
        store: ZkStateStore, queue: WriteQueue, tmp_path: Path) -> None:
    """A queued write's change commits in one multi with the write's removal. One too large for that is
    refused whole; the write is removed with its answer (else every next leader would apply it again and
    fail the same way), and this backend gives up the lead, its memory being ahead of what is saved."""
    rt, election = leading_runtime(store, queue, tmp_path)
    name = await queue.put(new_write_id(), {"method": "POST"})
    applying = Applying(name)

    def large() -> None:
        for n in range(20):
            store.put("scratch", f"d{n}", {"blob": base64.b64encode(os.urandom(60_000)).decode()})

    with pytest.raises(ApiError, match="too large to be made as a write queued by a standby") as refused:
        change_as(rt, applying, large)
    assert refused.value.status == 413
    assert store.load("scratch") == {} and await queue.names() == []
    assert applying.changed and not applying.abandoned and election.resigned
    await queue.finish(name, {"status": 413, "body": "{}"}, changed=True)
    assert (await queue.answer(name))["status"] == 413  # type: ignore[index]


async def test_a_write_that_queued_on_the_new_leader_is_not_overtaken_by_one_sent_after_it(
        store: ZkStateStore, queue: WriteQueue, tmp_path: Path, zookeeper: ZooKeeperServer) -> None:
    """A new leader first applies the writes queued before it was elected; a write sent to it meanwhile
    queues behind them, and may be answered 202 while it waits. A write sent after that one must not be
    applied before it: the last write sent holds (here, the last scale)."""
    settings = Settings(data_dir=tmp_path, mode="mesos", mesos_master="127.0.0.1:5050", zk_hosts=zookeeper.hosts,
                        db_url=f"sqlite+aiosqlite:///{tmp_path / 'history.db'}", standby_write_wait_seconds=0.2)
    rt = Runtime(settings)
    rt.store, rt.write_queue = store, queue
    rt.scheduler = Scheduler(settings, store, None, HistorySink())
    rt._loop = asyncio.get_running_loop()
    await asyncio.to_thread(queue.watch, rt._write_queue_changed_from_thread)  # wakes the applier
    app = create_app(settings, rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sing/singularity",
                                 timeout=30) as api:
        # Queued on a standby before the election: "svc" is created with 1 instance.
        r = await api.post("/api/requests", json={"id": "svc", "requestType": "WORKER", "instances": 1})
        assert r.status_code == 202, r.text
        # Elected: the applier's first pass is held before it applies the write it found.
        rt.leading = True
        applier = QueuedWriteApplier(rt, app)
        apply = applier._apply
        in_first_pass, first_pass, scale_held, release = (asyncio.Event() for _ in range(4))

        async def held(client: httpx.AsyncClient, name: str) -> bool:
            if write_id_of(name) == "scale5":
                scale_held.set()
                await release.wait()
            elif not first_pass.is_set():
                in_first_pass.set()
                await first_pass.wait()
            return await apply(client, name)

        applier._apply = held  # type: ignore[method-assign]
        rt._applier = applier
        applier.start()
        try:
            await asyncio.wait_for(in_first_pass.wait(), 10)  # the queue is listed: svc's creation is next
            # Sent to the leader during that first pass: it queues, and is answered 202 before it is applied.
            r = await api.put("/api/requests/request/svc/scale", json={"instances": 5},
                              headers={"X-Sing-Write-Id": "scale5"})
            assert r.status_code == 202, r.text
            first_pass.set()
            await asyncio.wait_for(scale_held.wait(), 10)  # the first pass is done; scale5 is next
            # Sent after the 202: it must not overtake scale5.
            r = await api.put("/api/requests/request/svc/scale", json={"instances": 3})
            assert r.status_code in (200, 202), r.text  # 202: queued behind scale5, not applied yet
            release.set()
            deadline = time.monotonic() + 10
            while await queue.names():
                assert time.monotonic() < deadline, "the queued writes were not applied"
                await asyncio.sleep(0.05)
            r = await api.get("/api/requests/request/svc")
            assert r.json()["request"]["instances"] == 3
        finally:
            release.set()
            first_pass.set()
            await applier.stop()


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
