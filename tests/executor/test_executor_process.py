"""`sing executor` as a Mesos custom executor: the embedded cluster starts it as its own process for a
TaskInfo with an ``executor``, and it speaks the v1 executor API through pymesos' MesosExecutorDriver."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from sing_backend.executor.payload import default_executor_command
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import eventually, pid_alive

from .helpers import deploy_task, running_cluster

EXECUTOR = default_executor_command()
SLOW_START = 30.0  # a fresh Python process importing pymesos, pydantic and httpx on a busy machine


def test_a_task_runs_through_sing_executor(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("via-exec", "echo from-executor; echo oops >&2; sleep 0.3",
                             executor_command=EXECUTOR))
        running = h.sched.status("via-exec", "TASK_RUNNING", timeout=SLOW_START)
        assert running["source"] == "SOURCE_EXECUTOR"
        assert running["executor_id"] == {"value": "via-exec"} and running["agent_id"] == {"value": "agent-1"}
        stats = httpx.get(f"{h.cluster.agent_url('agent-1')}/monitor/statistics").json()
        assert [e["executor_id"] for e in stats] == ["via-exec"]
        assert stats[0]["statistics"]["mem_limit_bytes"] == 64 << 20
        finished = h.sched.status("via-exec", "TASK_FINISHED", timeout=SLOW_START)
        assert finished["message"] == "Exited with status 0"
        assert h.sched.wait_event("executor_lost", timeout=SLOW_START) == ("via-exec", 0)
        task_dir = h.task_dir("via-exec")
        assert (task_dir / "stdout.log").read_text() == "from-executor\n"
        assert (task_dir / "stderr.log").read_text() == "oops\n"
        assert (task_dir.parent / "executor.log").exists()
        assert sorted(p.name.split("-")[0] for p in (h.log_store / "req/dep1/via-exec").iterdir()) == [
            "stderr", "stdout"]
        assert h.sched.states("via-exec") == ["TASK_RUNNING", "TASK_FINISHED"]


def test_a_kill_reaches_the_task_through_its_executor(tmp_path: Path) -> None:
    script = "trap '' TERM; sleep 1000 & echo $! > child.pid; while :; do sleep 0.05; done"
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("exec-kill", script, grace_seconds=0.5, executor_command=EXECUTOR))
        h.sched.status("exec-kill", "TASK_RUNNING", timeout=SLOW_START)
        pid_file = h.task_dir("exec-kill") / "app/child.pid"
        child = int(eventually(lambda: pid_file.read_text().strip() if pid_file.exists() else "", what="the child"))
        h.driver.killTask({"value": "exec-kill"})
        killed = h.sched.status("exec-kill", "TASK_KILLED", timeout=SLOW_START)
        assert killed["message"] == "Killed (terminated by signal SIGKILL)"
        assert "TASK_KILLING" in h.sched.states("exec-kill")
        eventually(lambda: not pid_alive(child), timeout=5, what="the task's child to die")
        h.sched.wait_event("executor_lost", timeout=SLOW_START)


def test_limits_apply_inside_the_executor_too(tmp_path: Path) -> None:
    hog = f"{sys.executable} -c \"import time; x = b'x' * (300 << 20); time.sleep(60)\""
    with running_cluster(tmp_path, ExecutorSettings(memory_check_seconds=0.1)) as h:
        h.launch(deploy_task("exec-hog", hog, mem=64, executor_command=EXECUTOR))
        failed = h.sched.status("exec-hog", "TASK_FAILED", timeout=SLOW_START)
        assert failed["message"].startswith("memory limit exceeded (used ")
        assert failed["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"


def test_an_executor_that_dies_fails_its_task(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("broken", "true", executor_command="echo no executor here; exit 7"))
        failed = h.sched.status("broken", "TASK_FAILED", timeout=SLOW_START)
        assert failed["message"] == "Executor exited with status 7"
        assert failed["reason"] == "REASON_EXECUTOR_TERMINATED"
        assert h.sched.wait_event("executor_lost") == ("broken", 7)
