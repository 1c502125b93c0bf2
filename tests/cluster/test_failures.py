"""Reconciliation, re-subscription, at-least-once delivery, agent loss, teardown."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sing_backend.cluster import AgentSpec, EmbeddedCluster, default_agents

from .conftest import Harness
from .helpers import Recorder, eventually, group_alive, scalar, start_driver, task_info


def _running(harness: Harness, agent_id: str, task_id: str) -> dict:
    offer = harness.sched.offer_for(agent_id)
    harness.launch(offer, [task_info(task_id, offer, "sleep 1000")])
    return harness.sched.status(task_id, "TASK_RUNNING")


def test_explicit_and_implicit_reconciliation(harness: Harness) -> None:
    sched = harness.sched
    _running(harness, "agent-1", "alive")
    offer = sched.offer_for("agent-2")
    harness.launch(offer, [task_info("gone", offer, "exit 4")])
    sched.status("gone", "TASK_FAILED")

    harness.driver.reconcileTasks([{"task_id": {"value": t}} for t in ("alive", "gone", "unknown")])
    alive = sched.status("alive", "TASK_RUNNING", reason="REASON_RECONCILIATION")
    assert alive["source"] == "SOURCE_MASTER" and alive["agent_id"] == {"value": "agent-1"}
    assert "uuid" not in alive
    gone = sched.status("gone", "TASK_FAILED", reason="REASON_RECONCILIATION")
    assert gone["message"] == "Exited with status 4"
    sched.status("unknown", "TASK_LOST", reason="REASON_RECONCILIATION")

    before = len(sched.updates)
    harness.driver.reconcileTasks([])
    sched.wait(lambda: len(sched.updates) > before)
    harness.driver.reconcileTasks([{"task_id": {"value": "alive"}}])  # a marker: implicit answers came first
    sched.wait(lambda: sum(1 for u in sched.updates if u["task_id"]["value"] == "alive") >= 4)
    implicit = [u["task_id"]["value"] for u in sched.updates[before:]]
    assert implicit == ["alive", "alive"]  # only live tasks in an implicit reconciliation


def test_driver_resubscribes_after_master_ends_stream_and_tasks_survive(harness: Harness) -> None:
    sched, cluster = harness.sched, harness.cluster
    _running(harness, "agent-3", "survivor")
    record = json.loads((cluster.work_dir / "agents/agent-3/running/survivor.json").read_text())
    cluster.end_streams()
    sched.wait_event("reregistered")
    assert sched.count("registered") == 1
    assert group_alive(record["pgid"])
    harness.driver.killTask({"value": "survivor"})
    sched.status("survivor", "TASK_KILLED")


def reliable_states(sched: Recorder, task_id: str) -> list[str]:
    """The task's updates that take an acknowledgement (not the master's answers to reconciliation)."""
    with sched._cond:
        return [u["state"] for u in sched.updates if u["task_id"]["value"] == task_id and "uuid" in u]


def test_a_tasks_next_update_waits_for_the_acknowledgement_of_the_one_before(cluster: EmbeddedCluster) -> None:
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched, implicit_acknowledgements=False)
    try:
        offer = sched.offer_for("agent-1")
        sched.forget(offer)
        driver.launchTasks(offer["id"], [task_info("unacked", offer, "true"), task_info("acked", offer, "true")])
        running = sched.status("unacked", "TASK_RUNNING")
        driver.acknowledgeStatusUpdate(sched.status("acked", "TASK_RUNNING"))
        driver.acknowledgeStatusUpdate(sched.status("acked", "TASK_FINISHED"))
        # The master knows the task finished (its answer to reconciliation is not held)...
        driver.reconcileTasks([{"task_id": {"value": "unacked"}}])
        sched.status("unacked", "TASK_FINISHED", reason="REASON_RECONCILIATION")
        # ...but holds its FINISHED until the RUNNING is acknowledged, as a Mesos agent does.
        assert reliable_states(sched, "unacked") == ["TASK_RUNNING"]

        cluster.end_streams()  # whatever was not acknowledged is sent again on re-subscribe
        sched.wait_event("reregistered")
        sched.wait(lambda: sum(u.get("uuid") == running["uuid"] for u in sched.updates) == 2, what="RUNNING again")
        assert reliable_states(sched, "unacked") == ["TASK_RUNNING", "TASK_RUNNING"]
        driver.acknowledgeStatusUpdate(running)
        finished = sched.wait(lambda: next((u for u in sched.updates if u["task_id"]["value"] == "unacked"
                                            and u["state"] == "TASK_FINISHED" and "uuid" in u), None),
                              what="the held TASK_FINISHED")
        driver.acknowledgeStatusUpdate(finished)
        assert reliable_states(sched, "unacked") == ["TASK_RUNNING", "TASK_RUNNING", "TASK_FINISHED"]
        assert reliable_states(sched, "acked") == ["TASK_RUNNING", "TASK_FINISHED"]
    finally:
        driver.stop(failover=True)
        driver.join()


def test_unacknowledged_updates_are_sent_again_with_backoff_until_acknowledged(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "cluster", default_agents(1), heartbeat_interval=1.0, status_retry_seconds=1.0)
    cluster.start()
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched, implicit_acknowledgements=False)
    try:
        offer = sched.offer_for("agent-1")
        sched.forget(offer)
        driver.launchTasks(offer["id"], [task_info("unacked", offer, "sleep 1000")])
        running = sched.status("unacked", "TASK_RUNNING")

        def copies(uuid: str) -> list[float]:
            """When each copy of an update came."""
            with sched._cond:
                return [t for u, t in zip(sched.updates, sched.update_times, strict=True) if u.get("uuid") == uuid]

        sched.wait(lambda: len(copies(running["uuid"])) >= 3, what="the unacknowledged RUNNING sent again twice")
        first, second, third = copies(running["uuid"])[:3]
        # 1 s, then twice that (each at most half an interval late: the master looks every 0.5 s).
        assert second - first >= 0.8 and third - second >= 1.6, (second - first, third - second)

        driver.acknowledgeStatusUpdate(running)
        # Another unacknowledged update, sent again after 1, 3 and 7 s: the acknowledged one was due 4 s
        # after its last copy, in that time.
        offer = sched.offer_for("agent-1")
        sched.forget(offer)
        driver.launchTasks(offer["id"], [task_info("marker", offer, "sleep 1000")])
        marker = sched.status("marker", "TASK_RUNNING")
        sched.wait(lambda: len(copies(marker["uuid"])) >= 4, timeout=15, what="the marker sent again three times")
        assert len(copies(running["uuid"])) == 3
    finally:
        driver.stop(failover=True)
        driver.join()
        cluster.stop()


def test_remove_agent_loses_its_tasks_and_add_agent_brings_offers(harness: Harness) -> None:
    sched, cluster = harness.sched, harness.cluster
    _running(harness, "agent-2", "doomed")
    leftover = sched.offer_for("agent-2")
    pgid = json.loads((cluster.work_dir / "agents/agent-2/running/doomed.json").read_text())["pgid"]

    cluster.remove_agent("agent-2")
    lost = sched.status("doomed", "TASK_LOST")
    assert lost["reason"] == "REASON_AGENT_REMOVED" and lost["source"] == "SOURCE_MASTER"
    assert "uuid" not in lost
    assert sched.wait_event("agent_lost") == "agent-2"
    sched.wait(lambda: leftover["id"]["value"] not in sched.offers, what="the rescind")
    eventually(lambda: not group_alive(pgid), timeout=3, what="the lost task's processes to die")
    assert "agent-2" not in cluster.agent_ids

    cluster.add_agent(AgentSpec("agent-9", "127.0.0.9", "rack-3", cpus=2, ports=(40000, 40099)))
    joined = sched.offer_for("agent-9")
    assert scalar(joined, "cpus") == 2.0
    assert joined["attributes"] == [{"name": "rackid", "type": "TEXT", "text": {"value": "rack-3"}}]


def test_teardown_kills_the_frameworks_tasks(cluster: EmbeddedCluster) -> None:
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched)
    offer = sched.offer_for("agent-1")
    sched.forget(offer)
    driver.launchTasks(offer["id"], [task_info("torn", offer, "sleep 1000")])
    sched.status("torn", "TASK_RUNNING")
    pgid = json.loads((cluster.work_dir / "agents/agent-1/running/torn.json").read_text())["pgid"]
    driver.stop()  # no failover: TEARDOWN
    driver.join()
    eventually(lambda: not group_alive(pgid), timeout=3, what="teardown to kill the task")


def test_framework_gone_past_failover_timeout_is_torn_down(cluster: EmbeddedCluster) -> None:
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched, framework={"failover_timeout": 0.2})
    offer = sched.offer_for("agent-1")
    sched.forget(offer)
    driver.launchTasks(offer["id"], [task_info("abandoned", offer, "sleep 1000")])
    sched.status("abandoned", "TASK_RUNNING")
    pgid = json.loads((cluster.work_dir / "agents/agent-1/running/abandoned.json").read_text())["pgid"]
    driver.stop(failover=True)
    driver.join()
    eventually(lambda: not group_alive(pgid), timeout=3, what="the failover timeout to kill the task")


def test_agent_ids_and_hosts_must_be_unique(cluster: EmbeddedCluster) -> None:
    with pytest.raises(ValueError):
        cluster.add_agent(AgentSpec("agent-1", "127.0.0.50", "rack-1"))
    with pytest.raises(ValueError):
        cluster.add_agent(AgentSpec("agent-50", "127.0.0.2", "rack-1"))
    with pytest.raises(ValueError):
        EmbeddedCluster(cluster.work_dir, [AgentSpec("a", "127.0.0.2", "r"), AgentSpec("a", "127.0.0.3", "r")])


def test_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    specs = [AgentSpec("agent-1", "127.0.0.2", "r"), AgentSpec("agent-2", "192.0.2.1", "r")]  # not ours to bind
    cluster = EmbeddedCluster(tmp_path / "c", specs)
    with pytest.raises(OSError):
        cluster.start()
    eventually(lambda: set(threading.enumerate()) <= threads_before, timeout=3, what="threads to end")
