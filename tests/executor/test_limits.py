"""Limits with real processes: memory (the whole tree), disk (task and machine), rlimits, cgroups,
and the statistics an agent reports."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from sing_backend.executor.cgroups import Cgroups
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import eventually, group_alive

from .helpers import deploy_task, running_cluster

PY = sys.executable
FAST_CHECKS = ExecutorSettings(memory_check_seconds=0.1, disk_check_seconds=0.1)


def _pgid(h: object, task_id: str) -> int:
    import json

    record = h.cluster.work_dir / "agents/agent-1/running" / f"{task_id}.json"  # type: ignore[attr-defined]
    return int(eventually(lambda: record.exists() and json.loads(record.read_text())["pgid"]))


def test_a_task_over_its_memory_is_killed_and_says_how_much_it_used(tmp_path: Path) -> None:
    hog = f"{PY} -c \"import time; x = b'x' * (200 << 20); time.sleep(60)\""
    with running_cluster(tmp_path, FAST_CHECKS) as h:
        h.launch(deploy_task("hog", hog, mem=64))
        failed = h.sched.status("hog", "TASK_FAILED", timeout=20)
        assert failed["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
        used = int(failed["message"].split("used ")[1].split(" MB")[0])
        assert failed["message"] == f"memory limit exceeded (used {used} MB of 64 MB)"
        assert used > 64


def test_memory_counts_the_whole_process_tree(tmp_path: Path) -> None:
    # Three children of 30 MB each: none is over 64 MB alone, together they are.
    child = f"{PY} -c \"import time; x = b'y' * (30 << 20); print('up', flush=True); time.sleep(60)\""
    tree = f"for i in 1 2 3; do {child} & done; wait"
    with running_cluster(tmp_path, FAST_CHECKS) as h:
        h.launch(deploy_task("tree", tree, mem=64))
        h.sched.status("tree", "TASK_RUNNING")
        pgid = _pgid(h, "tree")
        failed = h.sched.status("tree", "TASK_FAILED", timeout=20)
        assert failed["message"].startswith("memory limit exceeded (used ")
        eventually(lambda: not group_alive(pgid), timeout=5, what="every process of the tree to die")


def test_a_task_under_its_memory_runs_to_the_end(tmp_path: Path) -> None:
    with running_cluster(tmp_path, FAST_CHECKS) as h:
        h.launch(deploy_task("small", f"{PY} -c \"x = b'x' * (8 << 20); import time; time.sleep(0.5)\"", mem=64))
        assert h.sched.status("small", "TASK_FINISHED", timeout=20)["message"] == "Exited with status 0"


def test_a_task_over_its_disk_is_killed(tmp_path: Path) -> None:
    writer = "while true; do head -c 5000000 /dev/zero >> big; sleep 0.02; done"
    with running_cluster(tmp_path, FAST_CHECKS) as h:
        h.launch(deploy_task("filler", writer, disk=20))
        failed = h.sched.status("filler", "TASK_FAILED", timeout=20)
        assert failed["reason"] == "REASON_CONTAINER_LIMITATION_DISK"
        assert failed["message"].startswith("disk limit exceeded (used ")
        assert failed["message"].endswith(" MB of 20 MB)")


def test_a_task_filling_the_machine_is_stopped_before_the_disk_is_full(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // (1 << 20)
    # Leave the task about 150 MB before the guard: it has no disk limit of its own.
    settings = ExecutorSettings(memory_check_seconds=0.1, disk_check_seconds=0.1, min_free_disk_mb=free_mb - 150)
    writer = "while true; do head -c 10000000 /dev/zero >> big; sleep 0.02; done"
    with running_cluster(tmp_path, settings) as h:
        h.launch(deploy_task("greedy", writer))
        failed = h.sched.status("greedy", "TASK_FAILED", timeout=30)
        assert failed["reason"] == "REASON_CONTAINER_LIMITATION_DISK"
        assert "the machine has only" in failed["message"] and "this task's sandbox is the biggest" in failed["message"]
        assert (h.task_dir("greedy") / "app/big").stat().st_size < 600 * (1 << 20)


def test_rlimits_for_open_files_and_threads(tmp_path: Path) -> None:
    deploy = {"executorData": {"maxOpenFiles": 123, "maxTaskThreads": 77}}
    with running_cluster(tmp_path, ExecutorSettings(cgroups="off")) as h:
        h.launch(deploy_task("ulimits", "cat /proc/self/limits", deploy=deploy))
        h.sched.status("ulimits", "TASK_FINISHED")
        limits = {line[:26].strip(): line[26:].split()[:2]
                  for line in (h.task_dir("ulimits") / "stdout.log").read_text().splitlines()}
        assert limits["Max open files"] == ["123", "123"]
        assert limits["Max processes"] == ["77", "77"]


def _cgroups() -> Cgroups | None:
    found = Cgroups.detect("probe-tests")
    if found is not None:
        for hierarchy in found.hierarchies:
            os.rmdir(hierarchy.base)
    return found


def test_cpu_shares_and_thread_cap_through_cgroups(tmp_path: Path) -> None:
    available = _cgroups()
    controllers = set().union(*(h.controllers for h in available.hierarchies)) if available else set()
    if not {"cpu", "pids"} <= controllers:
        pytest.skip("this machine gives this process no cpu and pids cgroup controllers")
    deploy = {"executorData": {"maxTaskThreads": 40}}
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("shares", "sleep 60", deploy=deploy, cpus=0.5))
        h.sched.status("shares", "TASK_RUNNING")
        host = h.cluster._master.agents["agent-1"].host
        assert host is not None and host.cgroups is not None
        groups = eventually(lambda: host.cgroups.existing().get("shares"), what="the task's cgroups")  # type: ignore
        eventually(groups.pids, what="the task to be moved into its cgroups")
        files = {p.name: p.read_text().strip() for _, d in groups.dirs for p in d.iterdir()
                 if p.name in ("cpu.shares", "cpu.weight", "pids.max")}
        assert files.get("cpu.shares") == "512" or files.get("cpu.weight") == str(1 + (510 * 9999) // 262142)
        assert files["pids.max"] == "40"
        h.driver.killTask({"value": "shares"})
        h.sched.status("shares", "TASK_KILLED")
        eventually(lambda: "shares" not in host.cgroups.existing(), what="the cgroups to be removed")  # type: ignore


def test_agent_reports_task_statistics(tmp_path: Path) -> None:
    busy = f"head -c 3000000 /dev/urandom > data; {PY} -c \"x = b'z' * (20 << 20); import time; time.sleep(60)\""
    with running_cluster(tmp_path, FAST_CHECKS) as h:
        h.launch(deploy_task("stats", busy, mem=128, cpus=0.5, disk=100))
        h.sched.status("stats", "TASK_RUNNING")
        url = h.cluster.agent_url("agent-1")

        def entry() -> dict | None:
            found = [e for e in httpx.get(f"{url}/monitor/statistics").json() if e["executor_id"] == "stats"]
            stats = found[0]["statistics"] if found else {}
            measured = stats.get("mem_rss_bytes", 0) > 20 << 20 and stats.get("disk_used_bytes", 0) >= 3_000_000
            return found[0] if measured else None

        found = eventually(entry, what="statistics with the task's memory and disk")
        stats = found["statistics"]
        assert found["framework_id"] == h.sched.framework_id and found["source"] == "stats"
        assert stats["cpus_limit"] == 0.5
        assert stats["mem_limit_bytes"] == 128 << 20
        assert stats["disk_limit_bytes"] == 100 << 20
        assert stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"] > 0
        assert stats["processes"] >= 1 and stats["threads"] >= 1
