from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from sing_backend.state.sqlite import SqliteStateStore
from sing_backend.state.store import StateStore
from sing_backend.state.zookeeper import ZkStateStore
from tests.servers import ZooKeeperServer, require_zookeeper
from tests.servers import zookeeper as zookeeper  # the session's ZooKeeper server, a fixture

OpenStore = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "zookeeper"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one backend of the test's own (a SQLite file, or a ZooKeeper root): each call
    is a new handle on the same data, as after a restart or from a second backend instance."""
    opened: list[StateStore] = []
    if request.param == "zookeeper":
        server: ZooKeeperServer = request.getfixturevalue("zookeeper")
        root = f"/sing-test-{uuid4().hex[:12]}"

    def open_one() -> StateStore:
        store: StateStore
        if request.param == "sqlite":
            store = SqliteStateStore(tmp_path / "state.db")
        else:
            store = ZkStateStore(server.hosts, root=root)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> StateStore:
    return open_store()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server of the test's own, to stop, freeze and restart."""
    require_zookeeper()
    server = ZooKeeperServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
