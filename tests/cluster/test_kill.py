"""Graceful kills: SIGTERM to the process group, SIGKILL after the grace period."""

from __future__ import annotations

import json
import time

from .conftest import Harness
from .helpers import eventually, group_alive, pid_alive, task_info


def _pgid(harness: Harness, agent_id: str, task_id: str) -> int:
    record = harness.cluster.work_dir / "agents" / agent_id / "running" / f"{task_id}.json"
    return int(eventually(lambda: record.exists() and json.loads(record.read_text())["pgid"]))


def test_task_trapping_term_exits_within_grace_and_is_killed(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-1")
    script = "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done"
    harness.launch(offer, [task_info("trap", offer, script, grace_seconds=5)])
    sched.status("trap", "TASK_RUNNING")
    stdout = harness.cluster.sandbox_dir("trap") / "trap" / "stdout.log"  # type: ignore[operator]
    eventually(lambda: "ready" in stdout.read_text(), what="the trap to be installed")
    started = time.monotonic()
    harness.driver.killTask({"value": "trap"})
    sched.status("trap", "TASK_KILLING")
    killed = sched.status("trap", "TASK_KILLED")
    assert time.monotonic() - started < 3.0  # well before the 5 s grace
    assert "exited with status 0" in killed["message"]
    assert "got TERM" in stdout.read_text()


def test_task_ignoring_term_is_sigkilled_after_grace_from_kill_call(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-1")
    script = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
    # TaskInfo says 30 s; the KILL call's own policy (0.3 s) wins.
    harness.launch(offer, [task_info("stubborn", offer, script, grace_seconds=30)])
    sched.status("stubborn", "TASK_RUNNING")
    stdout = harness.cluster.sandbox_dir("stubborn") / "stubborn" / "stdout.log"  # type: ignore[operator]
    eventually(lambda: "ready" in stdout.read_text(), what="the trap to be installed")
    pgid = _pgid(harness, "agent-1", "stubborn")
    started = time.monotonic()
    harness.driver._send(  # pymesos' killTask cannot pass a kill_policy
        {
            "type": "KILL",
            "framework_id": {"value": sched.framework_id},
            "kill": {"task_id": {"value": "stubborn"}, "kill_policy": {"grace_period": {"nanoseconds": 300_000_000}}},
        }
    )
    killed = sched.status("stubborn", "TASK_KILLED")
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 5.0
    assert "SIGKILL" in killed["message"]
    assert not group_alive(pgid)


def test_kill_takes_the_whole_process_group(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-2")
    harness.launch(offer, [task_info("group", offer, "sleep 1000 & sleep 1000")])
    sched.status("group", "TASK_RUNNING")
    pgid = _pgid(harness, "agent-2", "group")
    harness.driver.killTask({"value": "group"})
    sched.status("group", "TASK_KILLED")
    eventually(lambda: not group_alive(pgid), timeout=3, what="the process group to die")


def test_leftover_children_die_with_a_finished_task(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-2")
    harness.launch(offer, [task_info("daemonizes", offer, "sleep 1000 & echo $! > child.pid")])
    sched.status("daemonizes", "TASK_FINISHED")
    pid_file = harness.cluster.sandbox_dir("daemonizes") / "daemonizes" / "app" / "child.pid"  # type: ignore[operator]
    child = int(pid_file.read_text())
    eventually(lambda: not pid_alive(child), timeout=3, what="the background child to die")


def test_default_grace_comes_from_the_cluster(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-3")
    harness.launch(offer, [task_info("default", offer, "trap '' TERM; echo ready; sleep 1000")])
    sched.status("default", "TASK_RUNNING")
    stdout = harness.cluster.sandbox_dir("default") / "default" / "stdout.log"  # type: ignore[operator]
    eventually(lambda: "ready" in stdout.read_text(), what="the trap to be installed")
    started = time.monotonic()
    harness.driver.killTask({"value": "default"})
    sched.status("default", "TASK_KILLED")
    assert 0.9 < time.monotonic() - started < 5.0  # the fixture's kill_grace_seconds=1.0


def test_kill_of_finished_or_unknown_task_is_answered_by_reconciliation(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-3")
    harness.launch(offer, [task_info("done", offer, "true")])
    sched.status("done", "TASK_FINISHED")
    harness.driver.killTask({"value": "done"})
    again = sched.status("done", "TASK_FINISHED", reason="REASON_RECONCILIATION")
    assert "uuid" not in again
    harness.driver.killTask({"value": "never-launched"})
    lost = sched.status("never-launched", "TASK_LOST")
    assert lost["reason"] == "REASON_RECONCILIATION" and "uuid" not in lost
    assert sched.states("done") == ["TASK_RUNNING", "TASK_FINISHED", "TASK_FINISHED"]
