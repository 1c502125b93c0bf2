"""Kills: SIGTERM to everything of the task, SIGKILL after the grace, the pre-kill shell command, and
no process of a task surviving it, detached ones included."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from sing_backend.executor.cgroups import Cgroups
from sing_backend.executor.payload import kill_message
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import eventually, pid_alive

from .helpers import Harness, deploy_task, running_cluster

# Double fork + setsid: the grandchild leaves the task's session and process group, writes its pid.
DAEMONIZE = (
    f"{sys.executable} -c \"import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        open('daemon.pid', 'w').write(str(os.getpid()))\n"
    "        time.sleep(1000)\n"
    "    os._exit(0)\n"
    "os.wait()\""
)


def _pid_file(h: Harness, task_id: str, name: str) -> int:
    path = h.task_dir(task_id) / "app" / name
    return int(eventually(lambda: path.read_text().strip() if path.exists() else "", what=f"{name} to be written"))


def test_term_ignored_by_a_tree_is_followed_by_sigkill_after_the_grace(tmp_path: Path) -> None:
    script = "trap '' TERM; (trap '' TERM; sleep 1000) & echo $! > child.pid; echo ready; while :; do sleep 0.05; done"
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("stubborn", script, grace_seconds=0.5))
        h.sched.status("stubborn", "TASK_RUNNING")
        child = _pid_file(h, "stubborn", "child.pid")
        eventually(lambda: "ready" in (h.task_dir("stubborn") / "stdout.log").read_text(), what="the traps")
        started = time.monotonic()
        h.driver.killTask({"value": "stubborn"})
        killed = h.sched.status("stubborn", "TASK_KILLED")
        assert 0.4 < time.monotonic() - started < 5
        assert killed["message"] == "Killed (terminated by signal SIGKILL)"
        eventually(lambda: not pid_alive(child), timeout=3, what="the child to die")


def test_a_detached_daemon_dies_with_its_task(tmp_path: Path) -> None:
    with running_cluster(tmp_path, ExecutorSettings(cgroups="off")) as h:
        # Without cgroups: found by the SING_TASK variable it inherited.
        h.launch([deploy_task("leaves", DAEMONIZE), deploy_task("stays", f"{DAEMONIZE}; sleep 1000")])
        h.sched.status("leaves", "TASK_FINISHED")
        daemon = _pid_file(h, "leaves", "daemon.pid")
        eventually(lambda: not pid_alive(daemon), timeout=3, what="the finished task's daemon to die")
        h.sched.status("stays", "TASK_RUNNING")
        daemon = _pid_file(h, "stays", "daemon.pid")
        assert pid_alive(daemon)
        h.driver.killTask({"value": "stays"})
        h.sched.status("stays", "TASK_KILLED")
        eventually(lambda: not pid_alive(daemon), timeout=3, what="the killed task's daemon to die")


def test_a_daemon_that_also_drops_its_environment_is_caught_by_its_cgroup(tmp_path: Path) -> None:
    found = Cgroups.detect("probe-kill")
    if found is not None:
        for hierarchy in found.hierarchies:
            hierarchy.base.rmdir()
    if found is None or not any(h.version == 2 for h in found.hierarchies):
        pytest.skip("no cgroup v2 hierarchy this process may use: such a daemon is only found by its marker")
    # Once in its cgroup (joined shortly after the start), the task starts a daemon that leaves its
    # session and drops its environment, marker included.
    joined = "until grep -q sing- /proc/self/cgroup; do sleep 0.02; done"
    hidden = "setsid env -i sh -c 'echo $$ > hidden.pid; exec sleep 1000' < /dev/null > /dev/null 2>&1 &"
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("hides", f"{joined}; {hidden} sleep 1000"))
        h.sched.status("hides", "TASK_RUNNING")
        hidden_pid = _pid_file(h, "hides", "hidden.pid")
        h.driver.killTask({"value": "hides"})
        h.sched.status("hides", "TASK_KILLED")
        eventually(lambda: not pid_alive(hidden_pid), timeout=3, what="the hidden daemon to die")


def test_the_pre_kill_command_runs_before_the_sigterm(tmp_path: Path) -> None:
    script = "trap 'test -f drained && echo saw-drained; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    with running_cluster(tmp_path) as h:
        h.launch(deploy_task("drain", script, grace_seconds=5))
        running = h.sched.status("drain", "TASK_RUNNING")
        stdout = h.task_dir("drain") / "stdout.log"
        eventually(lambda: "ready" in stdout.read_text(), what="the trap")
        # Singularity's SingularityShellCommand form: a name and its options.
        h.driver.sendFrameworkMessage(running["executor_id"], running["agent_id"],
                                      kill_message({"name": "sh", "options": ["-c", "echo draining; touch drained"]}))
        h.driver.killTask({"value": "drain"})
        killed = h.sched.status("drain", "TASK_KILLED")
        assert killed["message"] == "Killed (exited with status 0)"
        assert "saw-drained" in stdout.read_text()
        assert (h.task_dir("drain") / "before_kill.log").read_text() == "draining\n"
