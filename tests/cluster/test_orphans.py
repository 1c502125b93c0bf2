"""No task process survives a backend killed with -9: the next start kills what the records name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sing_backend.cluster import EmbeddedCluster, default_agents
from sing_backend.executor.records import RunningRecord, read_proc_stat, write_record

from .helpers import eventually, group_alive, pid_alive

REPO = Path(__file__).resolve().parents[2]


def test_orphans_of_a_killed_backend_are_killed_on_next_start(tmp_path: Path) -> None:
    work_dir = tmp_path / "cluster"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.orphan_child", str(work_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, child.kill)  # never hang on a child that did not get ready
    watchdog.start()
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        record_path = work_dir / "agents/agent-1/running/orphan.json"
        record = json.loads(record_path.read_text())
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    pgid = record["pgid"]
    assert group_alive(pgid), "the task outlives its backend (it has its own session)"

    cluster = EmbeddedCluster(work_dir, default_agents(1))
    cluster.start()
    try:
        eventually(lambda: not group_alive(pgid), timeout=3, what="the orphans to be killed")
        assert not record_path.exists()
    finally:
        cluster.stop()


def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    work_dir = tmp_path / "cluster"
    running = work_dir / "agents/agent-1/running"
    running.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        stat = read_proc_stat(bystander.pid)
        assert stat is not None
        # A record from "an earlier run" whose pid now belongs to someone else (older start time).
        write_record(
            running / "old.json",
            RunningRecord("old", "fw", bystander.pid, bystander.pid, stat.start_time - 1, "/nowhere"),
        )
        cluster = EmbeddedCluster(work_dir, default_agents(1))
        cluster.start()
        cluster.stop()
        assert pid_alive(bystander.pid)
        assert not (running / "old.json").exists()
    finally:
        os.kill(bystander.pid, signal.SIGKILL)
        bystander.wait()
