"""One embedded agent: runs tasks as real processes in Singularity's sandbox layout and reports
their fate. It knows nothing about frameworks or offers; the master tells it what to launch and kill.

Threading: every public method runs with the cluster lock held (callers take it); the reactor thread
takes the same lock before touching a task, so a process is never reaped while it is being signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files_http import AgentHTTPServer
from .launcher import command_of, finish_task_dir, prepare_task_dir, spawn
from .reactor import Reactor, TimerHandle
from .records import RunningRecord, kill_orphans, read_proc_stat, remove_record, write_record
from .sandbox import AgentLayout
from .spec import AgentSpec

log = logging.getLogger(__name__)

# (task_id, state, message, reason) -> None
Reporter = Callable[[str, str, str | None, str | None], None]

_COMPLETED_KEPT = 1000


@dataclass
class _Task:
    task_id: str
    framework_id: str
    name: str
    sandbox: Path | None
    proc: subprocess.Popen[bytes] | None = None
    kill_requested: bool = False
    kill_timer: TimerHandle | None = None
    # Set when nobody should hear about the task any more (agent removed, cluster stopping).
    silenced: bool = False

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # start_new_session makes the child its own group leader


@dataclass(frozen=True)
class _Completed:
    task_id: str
    framework_id: str
    name: str
    state: str
    sandbox: Path | None


class Agent:
    def __init__(
        self,
        spec: AgentSpec,
        agent_dir: Path,
        *,
        lock: threading.RLock,
        reactor: Reactor,
        report: Reporter,
        simulated: bool,
    ) -> None:
        self.spec = spec
        self.layout = AgentLayout(agent_dir)
        self._lock = lock
        self._exited = threading.Condition(lock)
        self._reactor = reactor
        self._report = report
        self._simulated = simulated
        self._tasks: dict[str, _Task] = {}
        self._completed: deque[_Completed] = deque(maxlen=_COMPLETED_KEPT)
        self.server: AgentHTTPServer | None = None

    @property
    def agent_id(self) -> str:
        return self.spec.agent_id

    @property
    def port(self) -> int:
        assert self.server is not None, "agent not started"
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self.spec.hostname}:{self.port}"

    def start(self) -> None:
        """Create the layout, kill what a crashed previous run left behind, bind the HTTP server."""
        self.layout.create()
        kill_orphans(self.layout.running)
        self.server = AgentHTTPServer((self.spec.hostname, 0), layout=self.layout, state=self.state_json)

    # -- launching -----------------------------------------------------------------------------

    def launch(self, framework_id: str, task_info: dict[str, Any]) -> None:
        """Start the task and report TASK_RUNNING (or TASK_FAILED if it cannot start)."""
        task_id: str = task_info["task_id"]["value"]
        name = str(task_info.get("name", task_id))
        if self._simulated:
            # Benchmark-only mode: no process, the task simply "runs" until killed.
            self._tasks[task_id] = _Task(task_id, framework_id, name, sandbox=None)
            self._report(task_id, "TASK_RUNNING", None, None)
            return
        sandbox = self.layout.sandbox(task_id)
        task = _Task(task_id, framework_id, name, sandbox=sandbox)
        task_dir = self.layout.task_dir(task_id)
        try:
            command = command_of(task_info)
            prepare_task_dir(task_dir)
            task.proc = spawn(command, task_id, task_dir)
        except (OSError, ValueError) as exc:
            self._completed.append(_Completed(task_id, framework_id, name, "TASK_FAILED", sandbox))
            self._report(task_id, "TASK_FAILED", f"Failed to launch: {exc}", "REASON_COMMAND_EXECUTOR_FAILED")
            return
        self._tasks[task_id] = task
        self._reactor.watch_exit(task.proc.pid, lambda: self._on_exit(task))
        # Report first: the update is on its way to the scheduler while we write the bookkeeping
        # files (the lock is still held, so the exit handler cannot run before the record exists).
        self._report(task_id, "TASK_RUNNING", None, None)
        self._write_record(task)
        try:
            finish_task_dir(task_dir, task_info)
        except OSError:
            log.exception("cannot finish the sandbox of %s", task_id)

    def _write_record(self, task: _Task) -> None:
        assert task.proc is not None
        stat = read_proc_stat(task.proc.pid)
        record = RunningRecord(
            task_id=task.task_id,
            framework_id=task.framework_id,
            pid=task.proc.pid,
            pgid=task.pgid,
            start_time=stat.start_time if stat else 0,
            sandbox=str(task.sandbox),
        )
        try:
            write_record(self.layout.running_record(task.task_id), record)
        except OSError:
            log.exception("cannot record task %s; it would survive a crash of this process", task.task_id)

    # -- exits ---------------------------------------------------------------------------------

    def _on_exit(self, task: _Task) -> None:
        """Runs on the reactor thread once the group leader has exited (still unreaped)."""
        with self._lock:
            assert task.proc is not None
            # Whatever the leader left behind in its group goes with it. The unreaped leader pins
            # the group id, so this cannot hit a recycled group.
            _signal_group(task.pgid, signal.SIGKILL)
            returncode = task.proc.wait()
            if task.kill_timer is not None:
                task.kill_timer.cancel()
            remove_record(self.layout.running_record(task.task_id))
            if self._tasks.get(task.task_id) is task:
                del self._tasks[task.task_id]
            state, message, reason = _classify_exit(returncode, task.kill_requested)
            self._completed.append(_Completed(task.task_id, task.framework_id, task.name, state, task.sandbox))
            self._exited.notify_all()
            if not task.silenced:
                self._report(task.task_id, state, message, reason)

    # -- killing -------------------------------------------------------------------------------

    def has_task(self, task_id: str) -> bool:
        return task_id in self._tasks

    def kill(self, task_id: str, grace_seconds: float) -> None:
        """SIGTERM the task's process group, SIGKILL it after the grace period. No-op if gone."""
        task = self._tasks.get(task_id)
        if task is None or task.kill_requested:
            return
        task.kill_requested = True
        if task.proc is None:  # simulated
            del self._tasks[task_id]
            self._completed.append(_Completed(task_id, task.framework_id, task.name, "TASK_KILLED", None))
            self._report(task_id, "TASK_KILLED", "Killed", None)
            return
        _signal_group(task.pgid, signal.SIGTERM)
        self._report(task_id, "TASK_KILLING", None, None)
        if grace_seconds <= 0:
            _signal_group(task.pgid, signal.SIGKILL)
        else:
            task.kill_timer = self._reactor.call_later(grace_seconds, lambda: self._escalate(task))

    def _escalate(self, task: _Task) -> None:
        with self._lock:
            if self._tasks.get(task.task_id) is task:
                _signal_group(task.pgid, signal.SIGKILL)

    def silence_and_signal(self, sig: signal.Signals) -> list[str]:
        """Signal every task's group and stop reporting on them; returns their ids.

        Used when the agent is removed (SIGKILL) and when the cluster stops (SIGTERM, then SIGKILL).
        """
        ids = list(self._tasks)
        for task_id, task in list(self._tasks.items()):
            task.silenced = True
            task.kill_requested = True
            if task.proc is None:
                del self._tasks[task_id]
            else:
                _signal_group(task.pgid, sig)
        return ids

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait (releasing the cluster lock) until no task process is left; True if none is."""
        return self._exited.wait_for(lambda: not self._tasks, timeout=timeout)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    # -- introspection -------------------------------------------------------------------------

    def state_json(self) -> dict[str, Any]:
        """Enough of Mesos' agent /state for a scheduler to find a task's sandbox."""
        with self._lock:
            live = list(self._tasks.values())
            done = list(self._completed)
        frameworks: dict[str, dict[str, Any]] = {}

        def framework(fid: str) -> dict[str, Any]:
            return frameworks.setdefault(fid, {"id": fid, "executors": [], "completed_executors": []})

        for task in live:
            state = "TASK_KILLING" if task.kill_requested else "TASK_RUNNING"
            framework(task.framework_id)["executors"].append(
                self._executor_json(task.task_id, task.name, task.framework_id, state, task.sandbox)
            )
        for item in done:
            framework(item.framework_id)["completed_executors"].append(
                self._executor_json(item.task_id, item.name, item.framework_id, item.state, item.sandbox)
            )
        spec = self.spec
        return {
            "id": spec.agent_id,
            "hostname": spec.hostname,
            "port": self.port,
            "attributes": spec.all_attributes(),
            "resources": {"cpus": spec.cpus, "mem": spec.mem_mb, "disk": spec.disk_mb,
                          "ports": f"[{spec.ports[0]}-{spec.ports[1]}]"},
            "frameworks": list(frameworks.values()),
        }

    def _executor_json(
        self, task_id: str, name: str, framework_id: str, state: str, sandbox: Path | None
    ) -> dict[str, Any]:
        task = {"id": task_id, "name": name, "state": state, "framework_id": framework_id,
                "executor_id": task_id, "slave_id": self.agent_id}
        terminal = state not in ("TASK_RUNNING", "TASK_KILLING")
        return {
            "id": task_id,
            "name": name,
            "framework_id": framework_id,
            "directory": str(sandbox) if sandbox else "",
            "tasks": [] if terminal else [task],
            "completed_tasks": [task] if terminal else [],
        }


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _classify_exit(returncode: int, killed_by_us: bool) -> tuple[str, str, str | None]:
    if returncode < 0:
        name = _signal_name(-returncode)
        if killed_by_us:
            return "TASK_KILLED", f"Killed (terminated by signal {name})", None
        return "TASK_FAILED", f"Terminated by signal {name}", "REASON_COMMAND_EXECUTOR_FAILED"
    if killed_by_us:
        return "TASK_KILLED", f"Killed (exited with status {returncode})", None
    if returncode == 0:
        return "TASK_FINISHED", "Exited with status 0", None
    return "TASK_FAILED", f"Exited with status {returncode}", "REASON_COMMAND_EXECUTOR_FAILED"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
