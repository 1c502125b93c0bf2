"""The leader election against a real ZooKeeper: a backend whose connection is suspended by the time it
has won the election node takes up nothing (its step-down signal must not be lost)."""

from __future__ import annotations

import threading
import time

from kazoo.client import KazooClient, KazooState

from sing_backend.leader import LeaderElection
from tests.servers import ZooKeeperServer


def test_a_win_that_lands_after_the_connection_was_suspended_is_not_taken_up(server: ZooKeeperServer) -> None:
    client = KazooClient(hosts=server.hosts, timeout=2.0)
    client.start(timeout=10)
    calls: list[str] = []
    election = LeaderElection(client, "/sing-test/leader", "http://a", lambda: calls.append("elected"),
                              lambda: calls.append("demoted"))
    try:
        server.stop()  # the connection is suspended: the election thread has been told to step down
        deadline = time.monotonic() + 10
        while client.state != KazooState.SUSPENDED:
            assert time.monotonic() < deadline, "the connection was not suspended"
            time.sleep(0.02)
        # What the election recipe runs once this backend's node is first, had it just won the lock.
        lead = threading.Thread(target=election._lead, daemon=True)
        lead.start()
        lead.join(5)
        assert not lead.is_alive(), "took up a lead it cannot hold, and waits for a step-down already signalled"
        assert calls == [] and election.leader() is None
    finally:
        election.stop()
        client.stop()
        client.close()
