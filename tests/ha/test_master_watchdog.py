"""A Mesos master that stays connected but says nothing: pymesos never checks heartbeats, so the
backend's own watchdog must notice the silence, report the master connection lost, keep answering
its API, re-subscribe as the same framework once the master speaks again, and reconcile, so the
tasks it had are kept (none lost, none launched twice) and new work is placed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for
from tests.servers import ZooKeeperServer, mysql_database

from .conftest import SharedCluster

RES = {"cpus": 0.01, "memoryMb": 8}
# The shared cluster sends a heartbeat every second; three silent seconds is clearly "gone quiet"
# and keeps the test short. Production uses 75 s against Mesos' 15 s heartbeats.
HEARTBEAT_TIMEOUT = 3.0
# pymesos' calls to a frozen master hang for much longer than this (its /version request, 10 s and
# more): a backend whose event loop waits on one fails the state check instead of merely answering late.
STATE_TIMEOUT = 5.0


def host_state(b: Backend) -> dict[str, Any]:
    r = b.client.get("/api/state", timeout=STATE_TIMEOUT)
    r.raise_for_status()
    state: dict[str, Any] = r.json()["hostStates"][0]
    return state


def running_ids(b: Backend, request_id: str) -> set[str]:
    return {t["taskId"]["id"] for t in b.active_tasks(request_id)}


def frameworks(master_address: str) -> list[dict[str, Any]]:
    """The frameworks the master knows, from its own /state (what a Mesos operator would look at)."""
    found: list[dict[str, Any]] = httpx.get(f"http://{master_address}/state", timeout=5).json()["frameworks"]
    return found


def test_silent_master_is_detected_resubscribed_and_reconciled(ha: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SING_MESOS_HEARTBEAT_TIMEOUT_SECONDS", str(HEARTBEAT_TIMEOUT))
    cluster = ha["cluster"]
    b: Backend = ha["backend"]("a")
    wait_for(lambda: host_state(b)["master"] and host_state(b)["mesosConnected"], timeout=30,
             what="leader connected to the master")
    b.create({"id": "svc", "requestType": "WORKER", "instances": 2},
             {"id": "v1", "command": "sleep 1000", "resources": RES, "considerHealthyAfterRunningForSeconds": 0})
    before = wait_for(lambda: len(ids := running_ids(b, "svc")) == 2 and ids, timeout=30, what="2 tasks running")
    [framework] = frameworks(cluster.address)
    assert framework["active"] and framework["tasks"] == 2

    # SIGSTOP freezes the master (and its agents) with every TCP connection left open: no heartbeat,
    # no event, no reply, and no close either, which is exactly what pymesos cannot see.
    os.kill(cluster.proc.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        wait_for(lambda: host_state(b)["mesosConnected"] is False, timeout=HEARTBEAT_TIMEOUT + 30,
                 what="the silent master reported as lost")
        # Not before the timeout (less the one heartbeat interval that may have passed unheard before
        # the freeze): a watchdog that fires early would drop healthy connections.
        noticed = time.monotonic() - stopped_at
        assert noticed >= HEARTBEAT_TIMEOUT - 1.5, f"lost after {noticed:.1f} s, before the heartbeat timeout"
        # Stay silent for two more timeouts: the watchdog's own re-subscriptions hang on the frozen
        # master too, and through all of that the API must keep answering, promptly and truthfully.
        until = time.monotonic() + 2 * HEARTBEAT_TIMEOUT + 1
        while time.monotonic() < until:
            state = host_state(b)
            assert state["master"] is True and state["mesosConnected"] is False, state
            time.sleep(0.2)
        # The tasks keep running while the master is away, and the backend still lists them.
        assert running_ids(b, "svc") == before
    finally:
        os.kill(cluster.proc.pid, signal.SIGCONT)

    wait_for(lambda: host_state(b)["mesosConnected"], timeout=60, what="re-subscribed after the master woke up")
    # The same framework came back (a new one would have orphaned the tasks), and it is the active one.
    wait_for(lambda: [(f["id"], f["active"]) for f in frameworks(cluster.address)] == [(framework["id"], True)],
             timeout=30, what=f"framework {framework['id']} active again, and no other")

    # New work is placed. Its TASK_RUNNING comes on the same ordered stream after the answers to the
    # reconciliation sent on re-subscribing, so once it is seen, a wrongly lost task would show.
    b.put("/api/requests/request/svc/scale", {"instances": 3})
    after = wait_for(lambda: len(ids := running_ids(b, "svc")) == 3 and ids, timeout=30, what="scaled to 3")
    assert before < after, f"tasks from before the silence were replaced: before {before}, after {after}"
    assert len(b.active_tasks("svc", state=None)) == 3
    history = b.get("/api/history/request/svc/tasks", params={"count": 50})
    assert {t["taskId"]["id"] for t in history} == after, "a task was lost or launched twice"
    assert [f["tasks"] for f in frameworks(cluster.address)] == [3]


def test_a_master_list_moves_on_to_the_next_master(
    tmp_path: Path, zookeeper: ZooKeeperServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `--master A,B`, a master that goes silent is left for the next one in the list: the watchdog
    asks the list again instead of re-subscribing to the same address for ever. (A and B are two
    clusters here, so the tasks A ran are unknown to B: B reports them lost and they run again on B.)"""
    monkeypatch.setenv("SING_MESOS_HEARTBEAT_TIMEOUT_SECONDS", str(HEARTBEAT_TIMEOUT))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = SharedCluster(tmp_path / "a"), SharedCluster(tmp_path / "b")
    try:
        with mysql_database() as db_url:
            port = free_port()
            b = Backend(tmp_path / "backend", port=port, env={
                "SING_MODE": "mesos", "SING_MESOS_MASTER": f"{first.address},{second.address}",
                "SING_ZK_HOSTS": zookeeper.hosts, "SING_ZK_ROOT": f"/sing-list-{port}", "SING_DB_URL": db_url,
                "SING_ZK_SESSION_TIMEOUT": "2", "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}"})
            try:
                b.start(wait_connected=False)
                wait_for(lambda: host_state(b)["master"] and host_state(b)["mesosConnected"], timeout=30,
                         what="leader connected to the first master")
                b.create({"id": "svc", "requestType": "WORKER", "instances": 2},
                         {"id": "v1", "command": "sleep 1000", "resources": RES,
                          "considerHealthyAfterRunningForSeconds": 0})
                before = wait_for(lambda: len(ids := running_ids(b, "svc")) == 2 and ids, timeout=30,
                                  what="2 tasks running")
                [framework] = frameworks(first.address)
                assert framework["tasks"] == 2 and frameworks(second.address) == []

                os.kill(first.proc.pid, signal.SIGSTOP)  # still accepts connections, answers nothing
                try:
                    wait_for(lambda: [(f["id"], f["active"]) for f in frameworks(second.address)]
                             == [(framework["id"], True)], timeout=HEARTBEAT_TIMEOUT + 30,
                             what="the same framework subscribed to the second master")
                    # Until the second master's reconciliation answers, the tasks the first ran still show
                    # as running: wait for two running tasks none of which is one of those.
                    wait_for(lambda: len(ids := running_ids(b, "svc")) == 2 and not ids & before, timeout=60,
                             what="2 new tasks running on the second master, the first master's ones lost")
                    assert [f["tasks"] for f in frameworks(second.address)] == [2]
                    assert host_state(b)["mesosConnected"] is True
                finally:
                    os.kill(first.proc.pid, signal.SIGCONT)
            finally:
                b.close()
    finally:
        first.stop()
        second.stop()
