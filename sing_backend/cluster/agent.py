"""One embedded agent: runs tasks in Singularity's sandbox layout and reports their fate. It knows
nothing about frameworks or offers; the master tells it what to launch and kill.

A command task is run in-process by the executor library (``sing_backend.executor``): artifacts,
logs, limits, kills. A task with an ``executor`` is given to that custom executor, started as its
own process (``sing executor`` for Sing's) and spoken to over the v1 executor API, as a Mesos
agent does.

Threading: every public method runs with the cluster lock held (callers take it); callbacks from
the executor library, the executor API handlers and the reactor take the same lock.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..executor.cleanup import Janitor
from ..executor.host import ExecutorHost, statistics_json
from ..executor.monitor import MB, disk_usage, usage_of
from ..executor.payload import scalar_resources
from ..executor.procs import marker, signal_group, signal_procs
from ..executor.reactor import Reactor, TimerHandle
from ..executor.records import kill_orphans
from ..executor.settings import ExecutorPaths, ExecutorSettings
from .calls import CallError
from .files_http import AgentHTTPServer
from .framework import Subscription
from .launcher import SHUTDOWN_MARGIN_SECONDS, executor_id_of, spawn_executor
from .sandbox import AgentLayout
from .spec import AgentSpec
from .updates import TERMINAL_STATES

log = logging.getLogger(__name__)

_COMPLETED_KEPT = 1000


class AgentEvents(Protocol):
    """What an agent tells the master (implemented by Master)."""

    def task_status(self, agent_id: str, task_id: str, state: str, message: str | None, reason: str | None, *,
                    executor_id: str | None = None, uuid: str | None = None, data: str | None = None) -> None: ...

    def executor_message(self, agent_id: str, framework_id: str, executor_id: str, data: str) -> None: ...

    def executor_lost(self, agent_id: str, framework_id: str, executor_id: str, status: int) -> None: ...


@dataclass
class _Task:
    task_id: str
    framework_id: str
    name: str
    sandbox: Path | None
    kind: str  # "simulated", "library" (run in-process) or "executor" (a custom executor process)
    kill_requested: bool = False
    # Set when nobody should hear about the task any more (agent removed, cluster stopping).
    silenced: bool = False
    # Custom executor tasks only:
    info: dict[str, Any] | None = None
    executor_id: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    subscription: Subscription | None = None
    launched: bool = False
    terminal_uuid: str | None = None
    state: str = "TASK_STAGING"
    kill_timer: TimerHandle | None = None
    kill_deadline: float | None = None  # when kill_timer fires (monotonic)


@dataclass(frozen=True)
class _Completed:
    task_id: str
    framework_id: str
    name: str
    state: str
    sandbox: Path | None
    executor_id: str


class Agent:
    def __init__(
        self,
        spec: AgentSpec,
        agent_dir: Path,
        *,
        lock: threading.RLock,
        reactor: Reactor,
        events: AgentEvents,
        simulated: bool,
        executor: ExecutorSettings,
        paths: ExecutorPaths,
        kill_grace_seconds: float,
    ) -> None:
        self.spec = spec
        self.layout = AgentLayout(agent_dir)
        self._lock = lock
        self._exited = threading.Condition(lock)
        self._reactor = reactor
        self._events = events
        self._simulated = simulated
        self._executor_settings = executor
        self._paths = paths
        self._grace = kill_grace_seconds
        # Names this agent's processes (SING_TASK=<scope>/<task>): stable across restarts, distinct
        # between agents and between clusters on one machine.
        self.scope = hashlib.sha1(str(agent_dir.resolve()).encode()).hexdigest()[:12]
        self._tasks: dict[str, _Task] = {}
        self._completed: deque[_Completed] = deque(maxlen=_COMPLETED_KEPT)
        self.server: AgentHTTPServer | None = None
        self.host: ExecutorHost | None = None

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
        # Bound first: a host that cannot be bound leaves no executor threads behind.
        self.server = AgentHTTPServer((self.spec.hostname, 0), agent=self)
        if not self._simulated:
            self.host = ExecutorHost(
                self._executor_settings, self._paths, self.layout, scope=self.scope, reactor=self._reactor,
                disk_root=self.layout.sandboxes, default_grace=self._grace,
            )
            janitor = Janitor(self.host, self.layout.sandboxes, self._live_ids)
            janitor.recover()
            self.host.set_housekeeping(janitor.sweep)

    def _live_ids(self) -> set[str]:
        with self._lock:
            return set(self._tasks)

    # -- launching -----------------------------------------------------------------------------

    def launch(self, framework_id: str, task_info: dict[str, Any]) -> None:
        """Start the task; its states come back through the master's task_status."""
        task_id: str = task_info["task_id"]["value"]
        name = str(task_info.get("name", task_id))
        if self._simulated:
            # Benchmark-only mode: no process, the task simply "runs" until killed.
            self._tasks[task_id] = _Task(task_id, framework_id, name, None, "simulated")
            self._events.task_status(self.agent_id, task_id, "TASK_RUNNING", None, None)
            return
        sandbox = self.layout.sandbox(task_id)
        if "executor" in task_info:
            self._launch_executor(framework_id, task_info, _Task(task_id, framework_id, name, sandbox, "executor"))
            return
        assert self.host is not None
        self._tasks[task_id] = _Task(task_id, framework_id, name, sandbox, "library")
        self.host.launch(task_info, self._library_report, framework_id)

    def _library_report(self, task_id: str, state: str, message: str | None, reason: str | None) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            if state in TERMINAL_STATES:
                self._finished(task, state)
            if not task.silenced:
                self._events.task_status(self.agent_id, task_id, state, message, reason)

    def _finished(self, task: _Task, state: str) -> None:
        if self._tasks.get(task.task_id) is task:
            del self._tasks[task.task_id]
        self._completed.append(_Completed(task.task_id, task.framework_id, task.name, state, task.sandbox,
                                          task.executor_id or task.task_id))
        self._exited.notify_all()

    # -- custom executors ----------------------------------------------------------------------

    def _launch_executor(self, framework_id: str, info: dict[str, Any], task: _Task) -> None:
        assert task.sandbox is not None and self.server is not None
        task.info = info
        task.executor_id = executor_id_of(info)
        paths = self._paths
        settings = self._executor_settings.model_copy(update={"cache_dir": paths.cache_dir,
                                                               "log_dir": paths.log_dir})
        try:
            task.proc = spawn_executor(
                info, sandbox=task.sandbox, framework_id=framework_id, agent_id=self.agent_id,
                endpoint=f"{self.spec.hostname}:{self.port}", marker=marker(self.scope, task.task_id),
                scope=self.scope, settings_json=settings.model_dump_json(), grace_seconds=self._grace,
            )
        except OSError as exc:
            self._completed.append(_Completed(task.task_id, framework_id, task.name, "TASK_FAILED", task.sandbox,
                                              task.executor_id))
            self._events.task_status(self.agent_id, task.task_id, "TASK_FAILED", f"Failed to launch executor: {exc}",
                                     "REASON_EXECUTOR_TERMINATED", executor_id=task.executor_id)
            return
        self._tasks[task.task_id] = task
        proc = task.proc
        self._reactor.watch_exit(proc.pid, lambda: self._on_executor_exit(task))

    def _executor_task(self, framework_id: str, executor_id: str) -> _Task:
        for task in self._tasks.values():
            if task.kind == "executor" and task.executor_id == executor_id and task.framework_id == framework_id:
                return task
        raise CallError(400, f"Executor {executor_id} of framework {framework_id} is not known to this agent")

    def executor_subscribe(self, framework_id: str, executor_id: str) -> Subscription:
        """SUBSCRIBE from an executor we started: SUBSCRIBED, then its task (once)."""
        with self._lock:
            task = self._executor_task(framework_id, executor_id)
            assert task.info is not None
            if task.subscription is not None:
                task.subscription.end()
            subscription = Subscription(str(uuid.uuid4()))
            task.subscription = subscription
            executor_info = {**task.info["executor"], "executor_id": {"value": executor_id},
                             "framework_id": {"value": framework_id}}
            subscription.send({"type": "SUBSCRIBED", "subscribed": {
                "executor_info": executor_info,
                # pymesos compares framework_info.id with its MESOS_FRAMEWORK_ID, nothing else.
                "framework_info": {"id": {"value": framework_id}, "user": "", "name": ""},
                "agent_info": {"id": {"value": self.agent_id}, "hostname": self.spec.hostname, "port": self.port},
            }})
            if not task.launched:
                task.launched = True
                subscription.send({"type": "LAUNCH", "launch": {"task": task.info}})
            if task.kill_requested and task.terminal_uuid is None:
                subscription.send(self._kill_event(task, self._grace))
            return subscription

    def executor_update(self, framework_id: str, executor_id: str, status: dict[str, Any]) -> None:
        with self._lock:
            task = self._executor_task(framework_id, executor_id)
            task_id = (status.get("task_id") or {}).get("value")
            state = status.get("state")
            if task_id != task.task_id or not isinstance(state, str):
                raise CallError(400, "update.status must name this executor's task and a state")
            uuid_value = status.get("uuid") if isinstance(status.get("uuid"), str) else None
            task.state = state
            if state in TERMINAL_STATES:
                task.terminal_uuid = uuid_value or ""
            if not task.silenced:
                self._events.task_status(self.agent_id, task_id, state, status.get("message"), status.get("reason"),
                                         executor_id=executor_id, uuid=uuid_value, data=status.get("data"))

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None:
        with self._lock:
            task = self._executor_task(framework_id, executor_id)
            if not task.silenced:
                self._events.executor_message(self.agent_id, framework_id, executor_id, data)

    def acknowledged(self, task_id: str, uuid_value: str) -> None:
        """The scheduler acknowledged an executor's update: pass it on; after the last one, shut it down."""
        task = self._tasks.get(task_id)
        if task is None or task.kind != "executor" or task.subscription is None:
            return
        task.subscription.send({"type": "ACKNOWLEDGED",
                                "acknowledged": {"task_id": {"value": task_id}, "uuid": uuid_value}})
        if task.terminal_uuid == uuid_value:
            task.subscription.send({"type": "SHUTDOWN"})

    def framework_message(self, executor_id: str, data: str) -> None:
        """A scheduler's MESSAGE to an executor (for a command task, the executor id is the task id)."""
        for task in self._tasks.values():
            if task.kind == "executor" and task.executor_id == executor_id and task.subscription is not None:
                task.subscription.send({"type": "MESSAGE", "message": {"data": data}})
                return
        library = self._tasks.get(executor_id)
        if library is not None and library.kind == "library" and self.host is not None:
            self.host.message(executor_id, data)

    def shutdown_executor(self, executor_id: str) -> None:
        for task in list(self._tasks.values()):
            if task.kind == "executor" and task.executor_id == executor_id:
                self.kill(task.task_id, 0.0)

    def _kill_event(self, task: _Task, grace: float) -> dict[str, Any]:
        return {"type": "KILL", "kill": {"task_id": {"value": task.task_id},
                                         "kill_policy": {"grace_period": {"nanoseconds": int(grace * 1e9)}}}}

    def _kill_executor_tree(self, task: _Task, sig: signal.Signals) -> None:
        """The executor's group and everything carrying the task's marker (the task's processes)."""
        assert task.proc is not None and self.host is not None
        if task.proc.returncode is None:
            signal_group(task.proc.pid, sig)
        snapshot = self.host.processes.snapshot(measure=False)
        signal_procs(snapshot.members(marker(self.scope, task.task_id)), sig)

    def _on_executor_exit(self, task: _Task) -> None:
        with self._lock:
            assert task.proc is not None
            self._kill_executor_tree(task, signal.SIGKILL)
            returncode = task.proc.wait()
            if task.kill_timer is not None:
                task.kill_timer.cancel()
            if task.subscription is not None:
                task.subscription.end()
                task.subscription = None
            assert task.executor_id is not None
            if task.terminal_uuid is None:
                how = f"exited with status {returncode}" if returncode >= 0 else f"was killed by signal {-returncode}"
                state = "TASK_KILLED" if task.kill_requested else "TASK_FAILED"
                self._finished(task, state)
                if not task.silenced:
                    self._events.task_status(self.agent_id, task.task_id, state, f"Executor {how}",
                                             "REASON_EXECUTOR_TERMINATED", executor_id=task.executor_id)
            else:
                self._finished(task, task.state)
            if not task.silenced:
                self._events.executor_lost(self.agent_id, task.framework_id, task.executor_id, returncode)

    # -- killing -------------------------------------------------------------------------------

    def has_task(self, task_id: str) -> bool:
        return task_id in self._tasks

    def kill(self, task_id: str, grace_seconds: float) -> None:
        """SIGTERM the task's processes, SIGKILL them after the grace period. No-op if gone."""
        task = self._tasks.get(task_id)
        if task is None:
            return
        if task.kill_requested:
            self._kill_again(task, grace_seconds)
            return
        task.kill_requested = True
        if task.kind == "simulated":
            del self._tasks[task_id]
            self._completed.append(_Completed(task_id, task.framework_id, task.name, "TASK_KILLED", None, task_id))
            self._events.task_status(self.agent_id, task_id, "TASK_KILLED", "Killed", None)
            return
        if task.kind == "library":
            assert self.host is not None
            self.host.kill(task_id, grace_seconds)
            return
        if task.terminal_uuid is not None:
            return
        if task.subscription is not None and task.launched:
            task.subscription.send(self._kill_event(task, grace_seconds))
            self._escalate_after(task, grace_seconds)
        else:
            self._kill_executor_tree(task, signal.SIGKILL)

    def _kill_again(self, task: _Task, grace_seconds: float) -> None:
        """A kill of a task being killed: passed on to its executor, which brings the SIGKILL forward if
        this grace is shorter (a destroy), as Mesos passes a kill policy override on."""
        if task.kind == "library":
            assert self.host is not None
            self.host.kill(task.task_id, grace_seconds)
        elif task.subscription is not None and task.launched and task.terminal_uuid is None \
                and task.kill_deadline is not None \
                and time.monotonic() + grace_seconds + SHUTDOWN_MARGIN_SECONDS < task.kill_deadline:
            task.subscription.send(self._kill_event(task, grace_seconds))
            if task.kill_timer is not None:
                task.kill_timer.cancel()
            self._escalate_after(task, grace_seconds)

    def _escalate_after(self, task: _Task, grace_seconds: float) -> None:
        # An executor that does not act on the kill is stopped the hard way, task and all.
        task.kill_deadline = time.monotonic() + grace_seconds + SHUTDOWN_MARGIN_SECONDS
        task.kill_timer = self._reactor.call_later(grace_seconds + SHUTDOWN_MARGIN_SECONDS,
                                                   lambda: self._escalate(task))

    def _escalate(self, task: _Task) -> None:
        with self._lock:
            if self._tasks.get(task.task_id) is task:
                self._kill_executor_tree(task, signal.SIGKILL)

    def silence_and_signal(self, sig: signal.Signals) -> list[str]:
        """Signal every task's processes and stop reporting on them; returns their ids.

        Used when the agent is removed (SIGKILL) and when the cluster stops (SIGTERM, then SIGKILL).
        """
        ids = list(self._tasks)
        for task_id, task in list(self._tasks.items()):
            task.silenced = True
            task.kill_requested = True
            if task.kind == "simulated":
                del self._tasks[task_id]
            elif task.kind == "executor":
                self._kill_executor_tree(task, sig)
        if self.host is not None:
            self.host.terminate_all(sig)
        return ids

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait (releasing the cluster lock) until no task process is left; True if none is."""
        return self._exited.wait_for(lambda: not self._tasks, timeout=timeout)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.host is not None:
            self.host.stop()

    # -- introspection -------------------------------------------------------------------------

    def statistics_json(self) -> list[dict[str, Any]]:
        """Mesos' agent /monitor/statistics: one entry per live executor (per task here)."""
        with self._lock:
            tasks = [t for t in self._tasks.values() if t.kind != "simulated"]
        if self.host is None:
            return []
        library = self.host.statistics()
        out = []
        for task in tasks:
            if task.kind == "library":
                stats = library.get(task.task_id)
            else:
                stats = self._executor_statistics(task)
            if stats is not None:
                out.append({"executor_id": task.executor_id or task.task_id, "executor_name": task.name,
                            "framework_id": task.framework_id, "source": task.task_id, "statistics": stats})
        return out

    def _executor_statistics(self, task: _Task) -> dict[str, Any] | None:
        assert self.host is not None and task.sandbox is not None
        if task.proc is None or task.info is None:
            return None
        snapshot = self.host.processes.snapshot(max_age=0.5)
        usage = usage_of(snapshot.members(marker(self.scope, task.task_id)))
        resources = scalar_resources(task.info.get("resources"))
        cpus, mem, disk = resources.get("cpus"), resources.get("mem"), resources.get("disk")
        return statistics_json(usage, disk_usage(task.sandbox), cpus, int(mem * MB) if mem else None,
                               int(disk * MB) if disk else None)

    def state_json(self) -> dict[str, Any]:
        """Enough of Mesos' agent /state for a scheduler to find a task's sandbox."""
        with self._lock:
            live = list(self._tasks.values())
            done = list(self._completed)
        frameworks: dict[str, dict[str, Any]] = {}

        def framework(fid: str) -> dict[str, Any]:
            return frameworks.setdefault(fid, {"id": fid, "executors": [], "completed_executors": []})

        for task in live:
            state = "TASK_KILLING" if task.kill_requested else task.state if task.kind == "executor" else \
                "TASK_RUNNING"
            framework(task.framework_id)["executors"].append(self._executor_json(
                task.task_id, task.executor_id or task.task_id, task.name, task.framework_id, state, task.sandbox))
        for item in done:
            framework(item.framework_id)["completed_executors"].append(self._executor_json(
                item.task_id, item.executor_id, item.name, item.framework_id, item.state, item.sandbox))
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

    def _executor_json(self, task_id: str, executor_id: str, name: str, framework_id: str, state: str,
                       sandbox: Path | None) -> dict[str, Any]:
        task = {"id": task_id, "name": name, "state": state, "framework_id": framework_id,
                "executor_id": executor_id, "slave_id": self.agent_id}
        terminal = state in TERMINAL_STATES
        return {
            "id": executor_id,
            "name": name,
            "framework_id": framework_id,
            "directory": str(sandbox) if sandbox else "",
            "tasks": [] if terminal else [task],
            "completed_tasks": [task] if terminal else [],
        }
