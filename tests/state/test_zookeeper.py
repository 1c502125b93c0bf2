"""What the ZooKeeper store does beyond the contract: its znode layout, size limits, races with other
clients, and a server that goes away."""

from __future__ import annotations

import base64
import gzip
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import orjson
import pytest
from kazoo.client import KazooClient

from sing_backend.state import zookeeper
from sing_backend.state.store import StateUnavailable
from sing_backend.state.zookeeper import COMPRESS_OVER, MAX_REQUEST_BYTES, Fenced, ZkStateStore
from tests.servers import ZooKeeperServer

from .test_store_contract import large_doc


def incompressible(size: int) -> dict[str, Any]:
    """A document that gzips to about 3/4 of `size` bytes."""
    return {"blob": base64.b64encode(os.urandom(size)).decode()}


@pytest.fixture
def root() -> str:
    return f"/sing-test-{uuid4().hex[:12]}"


@pytest.fixture
def raw(zookeeper: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def store(zookeeper: ZooKeeperServer, root: str) -> Iterator[ZkStateStore]:
    opened = ZkStateStore(zookeeper.hosts, root=root)
    yield opened
    opened.close()


def test_one_znode_per_document_with_encoded_keys(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    store.put("deploys", "billing/v1", {"id": "v1"})
    store.put("deploys", "..", {"id": "dots"})
    store.put("requests", "ü", {"id": "u"})
    assert sorted(raw.get_children(root)) == ["deploys", "requests"]
    assert sorted(raw.get_children(f"{root}/deploys")) == ["%2E%2E", "billing%2Fv1"]
    assert raw.get_children(f"{root}/requests") == ["%C3%BC"]
    data, _stat = raw.get(f"{root}/deploys/billing%2Fv1")
    assert orjson.loads(data) == {"id": "v1"}


def test_large_documents_are_gzipped(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    small, big = large_doc(COMPRESS_OVER // 2), large_doc(COMPRESS_OVER * 4)
    store.put("tasks", "small", small)
    store.put("tasks", "big", big)
    small_data, _stat = raw.get(f"{root}/tasks/small")
    big_data, _stat = raw.get(f"{root}/tasks/big")
    assert orjson.loads(small_data) == small
    assert big_data[:2] == b"\x1f\x8b" and len(big_data) < COMPRESS_OVER * 4
    assert orjson.loads(gzip.decompress(big_data)) == big
    assert store.load("tasks") == {"small": small, "big": big}


def test_reads_documents_written_by_other_tools(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    raw.create(f"{root}/requests/plain", b'{"id": "plain"}', makepath=True)
    raw.create(f"{root}/requests/zipped", gzip.compress(b'{"id": "zipped"}'))
    assert store.load("requests") == {"plain": {"id": "plain"}, "zipped": {"id": "zipped"}}


def test_a_document_too_large_for_a_znode_is_refused(store: ZkStateStore) -> None:
    huge = incompressible(2 * MAX_REQUEST_BYTES)
    with pytest.raises(ValueError, match="more than ZooKeeper takes"):
        store.put("tasks", "huge", huge)
    store.put("tasks", "fine", {"v": 1})
    assert store.load("tasks") == {"fine": {"v": 1}}


def test_a_batch_too_large_for_one_multi_writes_nothing(store: ZkStateStore) -> None:
    store.put("tasks", "kept", {"v": 1})
    doc = incompressible(COMPRESS_OVER)
    with pytest.raises(ValueError, match="too large for one ZooKeeper multi"), store.batch():
        store.put("tasks", "kept", {"v": 2})
        for n in range(20):
            store.put("tasks", f"t{n}", doc)
    assert store.load("tasks") == {"kept": {"v": 1}}
    with store.batch():
        store.put("tasks", "after", {"v": 1})
    assert set(store.load("tasks")) == {"kept", "after"}


def test_a_batch_too_large_for_one_multi_can_be_saved_in_parts(store: ZkStateStore, raw: KazooClient,
                                                                 root: str) -> None:
    """What a leader's API change does when it touches too much for one multi (killing hundreds of
    tasks): saved in parts rather than refused."""
    store.put("tasks", "kept", {"v": 1})
    doc = incompressible(COMPRESS_OVER)
    with store.batch(split_if_too_large=True):
        store.put("tasks", "kept", {"v": 2})
        for n in range(20):
            store.put("tasks", f"t{n}", doc)
        store.delete("tasks", "t3")
    tasks = store.load("tasks")
    assert set(tasks) == {"kept"} | {f"t{n}" for n in range(20)} - {"t3"}
    assert tasks["kept"] == {"v": 2} and tasks["t19"] == doc
    assert len(raw.get_children(f"{root}/tasks")) == 20  # a second client sees the same


def test_empty_keys_and_bad_roots_are_refused(store: ZkStateStore, zookeeper: ZooKeeperServer) -> None:
    with pytest.raises(ValueError):
        store.put("requests", "", {})
    for root in ("sing", "/", ""):
        with pytest.raises(ValueError):
            ZkStateStore(zookeeper.hosts, root=root)


def test_puts_follow_changes_made_by_other_clients(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    store.put("tasks", "deleted-by-other", {"v": 1})
    raw.delete(f"{root}/tasks/deleted-by-other")
    store.put("tasks", "deleted-by-other", {"v": 2})
    raw.create(f"{root}/tasks/created-by-other", b'{"v": 1}')
    store.put("tasks", "created-by-other", {"v": 2})
    assert store.load("tasks") == {"deleted-by-other": {"v": 2}, "created-by-other": {"v": 2}}
    raw.delete(f"{root}/tasks", recursive=True)
    store.put("tasks", "collection-deleted-by-other", {"v": 1})
    assert store.load("tasks") == {"collection-deleted-by-other": {"v": 1}}
    with store.batch():
        store.put("tasks", "in-a-batch", {"v": 1})
    raw.delete(f"{root}/tasks", recursive=True)
    with store.batch():
        store.put("tasks", "in-a-batch", {"v": 2})
    assert store.load("tasks") == {"in-a-batch": {"v": 2}}
    raw.create(f"{root}/tasks/never-seen", b"{}")
    with store.batch():
        store.delete("tasks", "never-seen")
        store.put("tasks", "in-a-batch", {"v": 3})
    assert store.load("tasks") == {"in-a-batch": {"v": 3}}


def _interfere_before_commit(store: ZkStateStore, interference: Any) -> list[int]:
    """Make `interference()` run between the batch's look at its znodes and its commit, once."""
    client = store._client
    make = client.transaction
    calls: list[int] = []

    def transaction() -> Any:
        made = make()
        if not calls:
            commit = made.commit_async

            def commit_after_interference() -> Any:
                interference()
                return commit()

            made.commit_async = commit_after_interference
        calls.append(1)
        return made

    client.transaction = transaction  # type: ignore[method-assign]
    return calls


def test_batch_racing_a_create_is_retried(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    calls = _interfere_before_commit(store, lambda: raw.create(f"{root}/tasks/t1", b'{"by": "other"}', makepath=True))
    with store.batch():
        store.put("tasks", "t1", {"by": "batch"})
        store.put("tasks", "t2", {"by": "batch"})
    assert len(calls) == 2
    assert store.load("tasks") == {"t1": {"by": "batch"}, "t2": {"by": "batch"}}


def test_batch_racing_a_delete_is_retried(store: ZkStateStore, raw: KazooClient, root: str) -> None:
    store.put("tasks", "t1", {"v": 1})
    store.put("tasks", "t2", {"v": 1})
    calls = _interfere_before_commit(store, lambda: raw.delete(f"{root}/tasks/t1"))
    with store.batch():
        store.put("tasks", "t1", {"v": 2})
        store.delete("tasks", "t2")
    assert len(calls) == 2
    assert store.load("tasks") == {"t1": {"v": 2}}


def test_writes_wait_out_a_server_restart(server: ZooKeeperServer) -> None:
    store = ZkStateStore(server.hosts, timeout=20)
    try:
        store.put("requests", "before", {})
        server.stop()
        restart = threading.Timer(1.0, server.start, kwargs={"port": server.port})
        restart.start()
        store.put("requests", "during", {})  # returns only once the restarted server has it
        with store.batch():
            store.put("requests", "batched", {})
        restart.join()
        assert store.load("requests") == {"before": {}, "during": {}, "batched": {}}
    finally:
        store.close()


def test_a_write_with_no_server_fails_within_the_timeout(server: ZooKeeperServer) -> None:
    store = ZkStateStore(server.hosts, timeout=2)
    try:
        server.stop()
        for write in (lambda: store.put("requests", "lost", {}), lambda: store.delete("requests", "lost")):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                write()
            assert time.monotonic() - started < 3
        with pytest.raises(TimeoutError):
            store.load("requests")
    finally:
        store.close()


def test_backends_reconnect_within_a_second_or_two_after_a_long_outage(server: ZooKeeperServer) -> None:
    """However long ZooKeeper was away, every backend is back on it soon after it returns. (kazoo's own
    back-off grew to about the outage's length again, jittered: each backend came back at a random
    time, some of them a whole outage later.)"""
    stores = [ZkStateStore(server.hosts, timeout=2) for _ in range(3)]
    try:
        server.stop()
        time.sleep(30)  # the outage; the clients keep trying to reconnect meanwhile
        server.start(port=server.port)
        back = time.monotonic()
        deadline = back + 15
        while not all(store.client.connected for store in stores) and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - back
        assert all(store.client.connected for store in stores), "not all reconnected 15 s after the outage"
        assert took < 3
        stores[0].put("requests", "after", {})
        assert stores[2].load("requests") == {"after": {}}
    finally:
        for store in stores:
            store.close()


def test_a_store_fenced_off_fails_writes_at_once_while_zookeeper_is_silent(server: ZooKeeperServer) -> None:
    """A leader fences its store off as its connection is suspended, and its scheduler may still write
    before it stops: each such write fails at once, instead of holding the event loop for the timeout."""
    store = ZkStateStore(server.hosts, timeout=5)
    try:
        store.put("requests", "r", {"v": 1})
        store.fence_off()
        assert server._process is not None
        os.kill(server._process.pid, signal.SIGSTOP)  # silent: the connection stays open
        try:
            for write in (lambda: store.put("requests", "r", {"v": 2}), lambda: store.delete("requests", "r"),
                          lambda: store.take("requests", "r")):
                started = time.monotonic()
                with pytest.raises(Fenced):
                    write()
                assert time.monotonic() - started < 0.5
            started = time.monotonic()
            with pytest.raises(Fenced), store.batch():
                store.put("requests", "s", {})
            assert time.monotonic() - started < 0.5
        finally:
            os.kill(server._process.pid, signal.SIGCONT)
        assert store.load("requests") == {"r": {"v": 1}}
    finally:
        store.close()


def test_a_write_from_another_thread_does_not_join_an_open_batch(
    store: ZkStateStore, raw: KazooClient, root: str
) -> None:
    """A batch belongs to the thread that opened it: a write made meanwhile on another thread is saved
    (and acknowledged) on its own, not held back with a batch that may still fail."""
    with store.batch():
        store.put("requests", "batched", {})
        other = threading.Thread(target=store.put, args=("requests", "alone", {}))
        other.start()
        other.join(10)
        # In ZooKeeper already, while the batch is still open; the batch's own write is not.
        assert raw.get_children(f"{root}/requests") == ["alone"]
    assert set(store.load("requests")) == {"batched", "alone"}


def test_writes_fenced_by_a_gone_node_fail_and_write_nothing(store: ZkStateStore, raw: KazooClient,
                                                             root: str) -> None:
    """A leader's writes hold only while its election node (an ephemeral of its session) exists: one
    that outlives its leadership fails, and nothing of it lands after another leader has taken over."""
    lock = raw.create(f"{root}-leader/node-", b"", ephemeral=True, sequence=True, makepath=True)
    store.fence(lock)
    store.put("requests", "r", {"v": 1})
    store.put("requests", "r", {"v": 2})
    with store.batch():
        store.put("requests", "s", {"v": 1})
    store.put("writeQueue", "w", {})
    raw.delete(lock)  # the session that held it is gone
    with pytest.raises(Fenced):
        store.put("requests", "r", {"v": 3})
    with pytest.raises(Fenced):
        store.put("requests", "new", {"v": 1})
    with pytest.raises(Fenced):
        store.delete("requests", "s")
    with pytest.raises(Fenced), store.batch():
        store.put("requests", "t", {"v": 1})
        store.delete("requests", "r")
    with pytest.raises(Fenced):
        store.take("writeQueue", "w")
    assert store.load("requests") == {"r": {"v": 2}, "s": {"v": 1}} and store.load("writeQueue") == {"w": {}}
    store.fence(None)  # a store that leads no more writes unconditionally (as a tool would)
    store.put("requests", "r", {"v": 4})
    assert store.load("requests")["r"] == {"v": 4}


def test_a_store_fenced_off_writes_nothing_until_fenced_again(store: ZkStateStore, raw: KazooClient,
                                                              root: str) -> None:
    """A leader that is stepping down fences its store off at once: what its scheduler still writes
    before it stops fails, until a new leadership fences the store with its own election node."""
    store.put("requests", "r", {"v": 1})
    store.fence_off()
    with pytest.raises(Fenced):
        store.put("requests", "r", {"v": 2})
    with pytest.raises(Fenced), store.batch():
        store.put("requests", "s", {"v": 1})
    with pytest.raises(Fenced):
        store.delete("requests", "r")
    assert store.load("requests") == {"r": {"v": 1}}
    store.fence(raw.create(f"{root}-leader/node-", b"", ephemeral=True, sequence=True, makepath=True))
    store.put("requests", "r", {"v": 3})
    assert store.load("requests") == {"r": {"v": 3}}



def test_the_store_remembers_a_bounded_number_of_znodes(store: ZkStateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """What it remembers of znodes is a hint for a write's first try; past a bound it starts again from
    nothing (znodes others remove would pile up otherwise), and writes go on as before."""
    monkeypatch.setattr(zookeeper, "_MAX_KNOWN", 3)
    for value in (1, 2):
        for i in range(10):
            store.put("requests", f"r{i}", {"v": value})
    assert store.load("requests") == {f"r{i}": {"v": 2} for i in range(10)}
    assert len(store._known) <= 3


def test_a_write_waiting_on_a_silent_zookeeper_gives_up_when_its_backend_steps_down(server: ZooKeeperServer) -> None:
    """A leader's write already waiting when ZooKeeper went silent held the event loop for the whole
    timeout, though its backend steps down (fences its store off) as soon as the connection is
    suspended: it now gives up then, saying it may or may not have been saved."""
    store = ZkStateStore(server.hosts, timeout=5)
    try:
        store.fence(store.client.create(f"{store._root}-leader/node-", b"", ephemeral=True, sequence=True,
                                        makepath=True))
        store.put("requests", "r", {"v": 1})
        assert server._process is not None
        os.kill(server._process.pid, signal.SIGSTOP)
        try:
            outcome: list[BaseException | None] = []

            def write() -> None:
                try:
                    store.put("requests", "r", {"v": 2})
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 (what the write raised is the result)
                    outcome.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(0.3)  # the write is waiting for an answer by now
            assert writer.is_alive()
            stepped_down = time.monotonic()
            store.fence_off()  # as the election thread does when the connection is suspended
            writer.join(5)
            assert time.monotonic() - stepped_down < 0.5
            [raised] = outcome
            assert isinstance(raised, StateUnavailable) and not isinstance(raised, Fenced)
            assert "may or may not have been saved" in str(raised)
        finally:
            os.kill(server._process.pid, signal.SIGCONT)
    finally:
        store.close()
