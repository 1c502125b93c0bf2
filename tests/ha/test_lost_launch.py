"""A launch whose call to the master fails leaves Sing not
knowing whether the master took it: Sing asks the master, and the task ends up running exactly once,
whichever way the master went (this master reads the request once it resumes; one that never got it
answers TASK_LOST and the task is replaced)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from sing_backend.local_backend import Backend, free_port, wait_for

from .refusing_proxy import RefusingProxy
from .test_failover import RES, one_leader, running_ids


def master_task_count(address: str) -> int:
    """Live tasks the master knows, over all frameworks (the test's backend is the only one)."""
    state = httpx.get(f"http://{address}/state", timeout=5).json()
    return sum(f["tasks"] for f in state["frameworks"])


@contextmanager
def leader_with_one_task(tmp_path: Path, ha: dict, master: str, **env: str) -> Iterator[tuple[Backend, set[str]]]:
    """A lone backend leading, against `master`, with the request "w" running one task."""
    port = free_port()
    b = Backend(tmp_path / "b", port=port, env={
        "SING_MODE": "mesos", "SING_MESOS_MASTER": master, "SING_ZK_HOSTS": ha["zookeeper"].hosts,
        "SING_ZK_ROOT": f"/sing-lost-{port}", "SING_DB_URL": ha["db_url"], "SING_ZK_SESSION_TIMEOUT": "2",
        "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}", "SING_LAUNCH_CONFIRM_TIMEOUT_SECONDS": "2",
        # Only the lost launch is under test: no re-subscription (which reconciles everything) meanwhile.
        "SING_MESOS_HEARTBEAT_TIMEOUT_SECONDS": "600", **env})
    try:
        b.start(wait_connected=False)
        leader = one_leader([b])
        leader.create({"id": "w", "requestType": "WORKER", "instances": 1},
                      {"id": "v1", "command": "sleep 1000", "resources": RES,
                       "considerHealthyAfterRunningForSeconds": 0})
        first = wait_for(lambda: len(ids := running_ids(leader, "w")) == 1 and ids, timeout=30, what="1 task")
        yield leader, first
    finally:
        b.close()


def test_a_launch_lost_to_a_hung_master_ends_up_running_once(tmp_path: Path, ha: dict):
    cluster = ha["cluster"]
    with leader_with_one_task(tmp_path, ha, cluster.address, SING_MESOS_CALL_TIMEOUT_SECONDS="1") as (leader, first):
        os.kill(cluster.proc.pid, signal.SIGSTOP)
        try:
            leader.put("/api/requests/request/w/scale", {"instances": 2})
            # Placed on an offer the backend holds; its ACCEPT (and the reconciliation after it) time out.
            wait_for(lambda: len(leader.active_tasks("w", state=None)) == 2, timeout=20, what="second task launched")
            wait_for(lambda: "launch of 1 tasks failed" in leader.log_path.read_text(), timeout=20,
                     what="the launch call timing out")
        finally:
            os.kill(cluster.proc.pid, signal.SIGCONT)

        both = wait_for(lambda: len(ids := running_ids(leader, "w")) == 2 and ids, timeout=40,
                        what="2 tasks running after the master answers again")
        assert first < both
        wait_for(lambda: master_task_count(cluster.address) == 2, timeout=20, what="the master runs 2 tasks")
        assert len(leader.active_tasks("w", state=None)) == 2


def test_a_launch_the_master_never_received_is_replaced(tmp_path: Path, ha: dict):
    """The ACCEPT call fails and the master never hears of it: asked, the master answers TASK_LOST, and
    Sing launches a replacement. Without that reconciliation the task would stay "launched" for ever."""
    cluster = ha["cluster"]
    proxy = RefusingProxy(cluster.address)
    try:
        with leader_with_one_task(tmp_path, ha, proxy.address) as (leader, first):
            proxy.refuse_next("ACCEPT")
            leader.put("/api/requests/request/w/scale", {"instances": 2})
            wait_for(lambda: proxy.refused, timeout=20, what="the launch refused on its way to the master")
            [operation] = proxy.refused[0]["accept"]["operations"]
            [lost] = [info["task_id"]["value"] for info in operation["launch"]["task_infos"]]

            both = wait_for(lambda: len(ids := running_ids(leader, "w")) == 2 and ids, timeout=40,
                            what="2 tasks running, the lost launch replaced")
            assert first < both and lost not in both
            assert master_task_count(cluster.address) == 2
            history = wait_for(lambda: leader.get(f"/api/history/task/{lost}"), what="the lost task's history")
            assert history["taskUpdates"][-1]["taskState"] == "TASK_LOST"
    finally:
        proxy.close()
