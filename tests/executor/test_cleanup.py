"""Sandbox retention (failed tasks kept longer, the tail of the logs kept), and what a crashed agent
left behind: processes found by their marker, cgroups, sandboxes whose logs were never archived."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import orjson

from sing_backend.cluster import EmbeddedCluster, default_agents
from sing_backend.executor.cgroups import Cgroups
from sing_backend.executor.procs import MARKER_VAR
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import eventually, pid_alive

from .helpers import deploy_task, running_cluster

TEN_LINES = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; done"


def _finished(task_dir: Path) -> dict:
    path = task_dir / "finished.json"
    return orjson.loads(path.read_bytes()) if path.exists() else {}


def test_finished_sandboxes_are_pruned_to_their_tail_and_failed_ones_kept_longer(tmp_path: Path) -> None:
    settings = ExecutorSettings(sandbox_retention_seconds=0, failed_sandbox_retention_seconds=3600,
                                cleanup_interval_seconds=0.1, tail_lines=3)
    with running_cluster(tmp_path, settings) as h:
        h.launch([deploy_task("ok", TEN_LINES), deploy_task("bad", f"{TEN_LINES}; exit 1")])
        h.sched.status("ok", "TASK_FINISHED")
        h.sched.status("bad", "TASK_FAILED")
        ok = h.task_dir("ok")
        eventually(lambda: _finished(ok).get("pruned"), what="the finished sandbox to be pruned")
        assert sorted(p.name for p in ok.iterdir()) == [
            "finished.json", "tail_of_finished_stderr.log", "tail_of_finished_stdout.log", "task.json"]
        assert (ok / "tail_of_finished_stdout.log").read_text() == "line 8\nline 9\nline 10\n"
        (archived,) = (h.log_store / "req/dep1/ok").glob("stdout-*.gz")
        assert gzip.decompress(archived.read_bytes()).decode().count("line") == 10
        bad = h.task_dir("bad")
        assert not _finished(bad).get("pruned")
        assert (bad / "app").is_dir() and (bad / "stdout.log").exists()


def test_sandboxes_are_deleted_after_their_time(tmp_path: Path) -> None:
    settings = ExecutorSettings(sandbox_delete_after_seconds=0, cleanup_interval_seconds=0.1)
    with running_cluster(tmp_path, settings) as h:
        h.launch(deploy_task("gone", "echo bye"))
        h.sched.status("gone", "TASK_FINISHED")
        eventually(lambda: h.cluster.sandbox_dir("gone") is None, what="the sandbox to be deleted")
        assert list((h.log_store / "req/dep1/gone").glob("stdout-*.gz")), "archived before it went"


def test_a_restarted_agent_kills_leftovers_and_archives_their_logs(tmp_path: Path) -> None:
    agent_dir = tmp_path / "cluster/agents/agent-1"
    scope = hashlib.sha1(str(agent_dir.resolve()).encode()).hexdigest()[:12]
    task_dir = agent_dir / "sandboxes/lost-1/lost-1"
    (task_dir / "app").mkdir(parents=True)
    (task_dir / "stdout.log").write_text("before the crash\n")
    (task_dir / "task.json").write_bytes(orjson.dumps(deploy_task("lost-1", "sleep 1000")))
    # A process of that task that left its session: no record names it, its marker does.
    env = {**os.environ, MARKER_VAR: f"{scope}/lost-1"}
    orphan = subprocess.Popen(["sleep", "1000"], env=env, start_new_session=True)
    stale_cgroup = None
    cgroups = Cgroups.detect(scope)
    if cgroups is not None:
        stale_cgroup = cgroups.create("stale-task", cpus=None, mem_bytes=None, max_threads=None)
    try:
        cluster = EmbeddedCluster(tmp_path / "cluster", default_agents(1))
        cluster.start()
        try:
            eventually(lambda: not pid_alive(orphan.pid), timeout=5, what="the orphan to be killed")
            finished = _finished(task_dir)
            assert finished["state"] == "TASK_LOST" and finished["requestId"] == "req"
            stored = eventually(lambda: list((tmp_path / "logs/req/dep1/lost-1").glob("stdout-*.gz")),
                                what="the lost task's output to be archived")
            assert gzip.decompress(stored[0].read_bytes()) == b"before the crash\n"
            if stale_cgroup is not None:
                assert all(not path.exists() for _, path in stale_cgroup.dirs)
        finally:
            cluster.stop()
    finally:
        orphan.kill()
        orphan.wait()
