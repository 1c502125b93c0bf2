"""The executor library: runs tasks in sandboxes on this machine and reports their fate.

One ``ExecutorHost`` per embedded agent (tasks run in-process, no extra Python process per task)
or per ``sing executor`` process. It shares, across its tasks: the reactor thread (child exits and
timers), the log pump thread, the monitor thread (limits, statistics, housekeeping), the artifact
cache and a few worker threads. A task without artifacts is spawned on the caller's thread in about
a millisecond; artifacts are fetched on a worker, the task reporting TASK_STARTING meanwhile.

Threading: ``report`` is never called with a runner's lock held, so a caller may hold its own lock
around launch/kill and take it again inside ``report``.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import resource
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from .artifacts import ArtifactCache, ArtifactError, Cancelled
from .cgroups import Cgroups, TaskCgroup
from .logs import Archiver, ArchiveTarget, LogPump, LogStream, RotationPolicy, final_segment, make_pipe
from .logstore import LogStore, S3LogStore, open_store, task_prefix
from .monitor import MB, Monitor, Usage, disk_usage, usage_of
from .payload import PayloadError, TaskSpec, read_message
from .procs import MARKER_VAR, Proc, ProcessTable, Snapshot, marker, signal_group, signal_procs
from .reactor import Reactor, TimerHandle
from .records import RunningRecord, read_proc_stat, remove_record, write_record
from .settings import ROTATE_PERIODS, ExecutorPaths, ExecutorSettings
from .workers import Workers

log = logging.getLogger(__name__)

# (task_id, state, message, reason) -> None
Reporter = Callable[[str, str, str | None, str | None], None]

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# After the task's main process exits, how long its output pipes may stay open (held by something
# that escaped every kill) before the task is reported anyway.
_EOF_GRACE_SECONDS = 2.0
FINISHED_FILE = "finished.json"
ENV_FILE = "deploy.env"
# What a running task holds open in the process that runs it: the read ends of its two output
# pipes, its two log files and the pidfd its exit is watched with.
FDS_PER_TASK = 5
_LAUNCH_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
# How soon a running pre-kill command notices that a destroy wants the task dead now.
_BEFORE_KILL_CHECK_SECONDS = 0.1


# The soft RLIMIT_NOFILE this process started with, before raise_open_files_limit: tasks get it back
# (see ExecutorHost.give_inherited_nofile).
_inherited_soft_nofile: int | None = None
_nofile_lock = threading.Lock()


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the (soft, hard) in force.

    Every running task holds FDS_PER_TASK descriptors here: at the usual soft limit of 1024 a cluster
    could run only about 200 tasks. Idempotent, and logged once.
    """
    global _inherited_soft_nofile
    with _nofile_lock:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if _inherited_soft_nofile is not None:
            return soft, hard
        _inherited_soft_nofile = soft
        target = hard if hard != resource.RLIM_INFINITY else _nr_open()
        if soft == resource.RLIM_INFINITY or soft >= target:
            log.info("open files: the limit is %d, room for about %d running tasks", soft, soft // FDS_PER_TASK)
            return soft, hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files: cannot raise the soft limit %d to the hard limit %d (%s); room for about "
                        "%d running tasks", soft, target, exc, soft // FDS_PER_TASK)
            return soft, hard
        log.info("open files: soft limit raised from %d to the hard limit %d, room for about %d running tasks",
                 soft, target, target // FDS_PER_TASK)
        return target, hard


def _nr_open() -> int:
    """The kernel's ceiling for RLIMIT_NOFILE, for a hard limit of 'unlimited'."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


def launch_failure(exc: BaseException) -> str:
    """The TASK_FAILED message of a task that could not be started."""
    message = f"Failed to launch: {exc}"
    if isinstance(exc, OSError) and exc.errno == errno.EMFILE:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        message += f" (the agent is at its limit of {soft} open files, about {FDS_PER_TASK} per running task)"
    elif isinstance(exc, OSError) and exc.errno == errno.ENFILE:
        message += " (the machine's table of open files is full)"
    return message


class Layout(Protocol):
    def sandbox(self, task_id: str) -> Path: ...

    def task_dir(self, task_id: str) -> Path: ...

    def running_record(self, task_id: str) -> Path: ...


@dataclass(frozen=True)
class Violation:
    message: str
    reason: str


def classify_exit(returncode: int, killed: bool, violation: Violation | None,
                  successful: frozenset[int]) -> tuple[str, str, str | None]:
    if violation is not None:
        return "TASK_FAILED", violation.message, violation.reason
    if returncode < 0:
        name = _signal_name(-returncode)
        if killed:
            return "TASK_KILLED", f"Killed (terminated by signal {name})", None
        return "TASK_FAILED", f"Terminated by signal {name}", "REASON_COMMAND_EXECUTOR_FAILED"
    if killed:
        return "TASK_KILLED", f"Killed (exited with status {returncode})", None
    if returncode in successful:
        return "TASK_FINISHED", f"Exited with status {returncode}", None
    return "TASK_FAILED", f"Exited with status {returncode}", "REASON_COMMAND_EXECUTOR_FAILED"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class TaskRunner:
    """One task: fetch, spawn, watch, kill, finish."""

    def __init__(self, host: ExecutorHost, spec: TaskSpec, info: dict[str, Any], report: Reporter,
                 framework_id: str) -> None:
        self.host = host
        self.spec = spec
        self.info = info
        self.framework_id = framework_id
        self._report = report
        self.task_id = spec.task_id
        self.sandbox = host.layout.sandbox(spec.task_id)
        self.task_dir = host.layout.task_dir(spec.task_id)
        self.marker = marker(host.scope, spec.task_id)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroup: TaskCgroup | None = None
        self.streams: list[LogStream] = []
        self.usage: Usage | None = None
        self.disk_used = 0
        self._lock = threading.Lock()
        self._kill_requested = False
        self._cancelled = False
        self._kill_timer: TimerHandle | None = None
        self._sigkill_at: float | None = None  # when the kill under way sends SIGKILL (monotonic)
        self._sigkill_cap: float | None = None  # a later kill's deadline, asked before the SIGTERM went out
        self._violation: Violation | None = None
        self._returncode: int | None = None
        self._open_streams = 0
        self._settled = False  # _settle_in has run
        self._settle_queued = False  # _settle_in was submitted (or run): it must not run twice
        self._done = False
        self._finished_at: int | None = None
        self._before_kill: str | None = None
        self._env: dict[str, str] = {}
        self.mem_limit_bytes = int(spec.mem_mb * MB) if spec.mem_mb else None
        self.disk_limit_bytes = int(spec.disk_mb * MB) if spec.disk_mb else None

    # -- queries -------------------------------------------------------------------------------

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None  # start_new_session: its own group

    def is_running(self) -> bool:
        with self._lock:
            return self.proc is not None and self._returncode is None

    def members(self, snapshot: Snapshot, *, measuring: bool = False) -> list[Proc]:
        """The task's processes; with ``measuring``, only those surely running its programs."""
        pgid = self.pgid
        procs = snapshot.members(self.marker, [pgid] if pgid is not None and not measuring else [])
        if self.cgroup is not None:
            known = {p.pid for p in procs}
            procs += [snapshot.by_pid[pid] for pid in self.cgroup.pids() - known if pid in snapshot.by_pid]
        return procs

    # -- launching -----------------------------------------------------------------------------

    def begin(self) -> None:
        try:
            if self.spec.artifacts:
                self._report(self.task_id, "TASK_STARTING", "Fetching artifacts", None)
                self.host.workers.submit(self._fetch_then_start)
            else:
                self._start()
        except Exception as exc:
            self._start_crashed(exc)

    def _start_crashed(self, exc: Exception) -> None:
        """Backstop for a failure ``_start`` does not expect: the task still ends with a status, and
        the caller (an agent launching the rest of an ACCEPT's tasks) goes on."""
        log.exception("launching task %s failed", self.task_id)
        with self._lock:
            spawned = self.proc is not None
            if spawned and self._violation is None:
                self._violation = Violation(launch_failure(exc), _LAUNCH_FAILED)
            settle = spawned and not self._settle_queued
            self._settle_queued = True
        if not spawned:
            self._fail_early("TASK_FAILED", launch_failure(exc), _LAUNCH_FAILED)
            return
        # The process runs but its bookkeeping broke off: stop it. Its exit is watched from the
        # moment it exists, and settling in lets that exit be reported.
        self.signal_all(signal.SIGKILL)
        if settle:
            self._settle_in()

    def _fetch_then_start(self) -> None:
        try:
            self.task_dir.mkdir(parents=True, exist_ok=True)
            for artifact in self.spec.artifacts:
                self.host.cache.materialize(artifact, self.task_dir, lambda: self._cancelled)
        except Cancelled:
            self._fail_early("TASK_KILLED", "Killed while fetching artifacts", None)
            return
        except ArtifactError as exc:
            self._fail_early("TASK_FAILED", str(exc), "REASON_CONTAINER_LAUNCH_FAILED")
            return
        except OSError as exc:
            self._fail_early("TASK_FAILED", f"Cannot place artifacts in the sandbox: {exc}",
                             "REASON_CONTAINER_LAUNCH_FAILED")
            return
        if self._cancelled:
            self._fail_early("TASK_KILLED", "Killed while fetching artifacts", None)
            return
        try:
            self._start()
        except Exception as exc:
            self._start_crashed(exc)

    def _start(self) -> None:
        spec = self.spec
        # Every descriptor made for the task until its process runs: closed if the launch fails.
        fds: list[int] = []
        streams: list[LogStream] = []
        try:
            user = self._resolve_user()
            app = self.task_dir / "app"
            os.makedirs(app, exist_ok=True)
            if user is not None:
                _chown_tree(app, user)
            self._env = self._environment(user)
            executable, argv = spec.argv()
            prelude = self._shell_prelude()
            if prelude:
                argv = ["/bin/sh", "-c", f"{prelude}\n{spec.command}"]
            kwargs: dict[str, Any] = {}
            if user is not None:
                kwargs.update(user=user.pw_uid, group=user.pw_gid,
                              extra_groups=os.getgrouplist(user.pw_name, user.pw_gid))
            # Out of descriptors (EMFILE with thousands of tasks) fails here, as a status of this
            # task alone: the agent goes on launching the others.
            out_r, out_w = make_pipe()
            fds += (out_r, out_w)
            err_r, err_w = make_pipe()
            fds += (err_r, err_w)
            policy = self.host.policy(spec)
            target = ArchiveTarget(self.host.store, task_prefix(spec.request_id, spec.deploy_id, spec.task_id))
            streams = [LogStream("stdout", out_r, self.task_dir, policy, target, self._stream_ended),
                       LogStream("stderr", err_r, self.task_dir, policy, target, self._stream_ended)]
            for stream in streams:
                # Opened before the spawn, as a Mesos agent opens a sandbox's stdout and stderr: a
                # task whose output could not be kept fails to launch instead of running unlogged.
                # The files also exist once the task is running (readers tail them at once).
                _open_log(stream)
                fds.append(stream.file_fd)
            # No preexec_fn: it turns the spawn's vfork into a fork, which copies this process's page
            # tables and costs tens of milliseconds in a big backend.
            proc = subprocess.Popen(
                argv, executable=executable, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, cwd=app,
                env=self._env, start_new_session=True, close_fds=True, **kwargs,
            )
        except Exception as exc:
            # No process: whatever went wrong is this task's failure to launch, and nothing of it stays open.
            for fd in fds:
                os.close(fd)
            for stream in streams:
                stream.file_fd = -1
            message = launch_failure(exc)
            if isinstance(exc, (OSError, subprocess.SubprocessError, ValueError)):
                log.warning("task %s: %s", self.task_id, message)
            else:
                log.exception("task %s: %s", self.task_id, message)
            self._fail_early("TASK_FAILED", message, _LAUNCH_FAILED)
            return
        self.streams = streams
        with self._lock:
            self.proc = proc
            self._open_streams = 2
            kill_now = self._kill_requested
        # Watched at once: from here on, whatever goes wrong, the exit is seen and the task can end.
        self.host.reactor.watch_exit(proc.pid, self._on_exit)
        os.close(out_w)
        os.close(err_w)
        if not spec.shell:
            self._set_rlimits(proc.pid)
        if spec.max_open_files is None:
            self.host.give_inherited_nofile(proc.pid)
        self._report(self.task_id, "TASK_RUNNING", None, None)
        self._write_record()
        if kill_now:  # killed while its artifacts were placed: the kill found no process yet
            self._terminate(self._grace(None))
        self.host.settling.submit(self._settle_in)
        with self._lock:
            self._settle_queued = True

    def _limits(self) -> list[tuple[int, int]]:
        """maxOpenFiles and maxTaskThreads as rlimits. (With a pids cgroup, pids.max caps the threads
        too; the rlimit stays, since the cgroup is joined only after the start.)"""
        limits = []
        if self.spec.max_open_files is not None:
            limits.append((resource.RLIMIT_NOFILE, self.spec.max_open_files))
        if self.spec.max_task_threads is not None:
            limits.append((resource.RLIMIT_NPROC, self.spec.max_task_threads))
        return limits

    def _shell_prelude(self) -> str:
        """A shell task sets its own rlimits before anything else, so nothing it forks escapes them."""
        if not self.spec.shell:
            return ""
        lines = []
        for which, value in self._limits():
            if which == resource.RLIMIT_NOFILE:
                lines.append(f"ulimit -n {value}")
            else:
                # bash calls it -u, dash -p.
                lines.append(f"ulimit -u {value} 2>/dev/null || ulimit -p {value}")
        return "\n".join(lines)

    def _join_cgroups(self) -> None:
        """Make the task's cgroups and move its processes in.

        Off the launch path: moving a process between cgroups waits for an RCU grace period, 10 ms
        or more per hierarchy on many kernels. Until then the task is tracked by its marker.
        """
        assert self.host.cgroups is not None
        with self._lock:
            if self._done or self._returncode is not None:
                return
        group = self.host.cgroups.create(self.task_id, cpus=self.spec.cpus, mem_bytes=self.mem_limit_bytes,
                                         max_threads=self.spec.max_task_threads)
        self.host.note_cgroup(self.task_id, made=True)
        for proc in self.members(self.host.processes.snapshot(measure=False)):
            group.add(proc.pid)
        with self._lock:
            ended = self._done or self._returncode is not None
            if not ended:
                self.cgroup = group
        if ended:
            group.kill()
            group.remove()

    def _set_rlimits(self, pid: int) -> None:
        """An argv task's rlimits, set just after its exec: what it forks from then on inherits them."""
        for which, value in self._limits():
            try:
                resource.prlimit(pid, which, (value, value))
            except (ProcessLookupError, PermissionError, ValueError) as exc:
                log.warning("cannot set rlimit %s of %s: %s", which, self.task_id, exc)

    def _write_record(self) -> None:
        """The record that lets the next start kill this task if the agent dies (see records.py)."""
        assert self.proc is not None
        stat = read_proc_stat(self.proc.pid)
        record = RunningRecord(task_id=self.task_id, framework_id=self.framework_id,
                               pid=self.proc.pid, pgid=self.proc.pid, start_time=stat.start_time if stat else 0,
                               sandbox=str(self.sandbox))
        try:
            write_record(self.host.layout.running_record(self.task_id), record)
        except OSError:
            log.exception("cannot record task %s; it would survive a crash of this process", self.task_id)

    def _settle_in(self) -> None:
        """Worker thread: what can wait until the task is reported running, off the caller's lock.

        The task's output waits in its pipes meanwhile; the task is not reported finished before
        this is done, so its sandbox is complete by then.
        """
        try:
            for stream in self.streams:
                self.host.pump.add(stream)
            try:
                os.makedirs(self.task_dir / "logs", exist_ok=True)
                (self.task_dir / "task.json").write_bytes(orjson.dumps(self.info, option=orjson.OPT_INDENT_2))
                lines = [f"export {k}={shlex.quote(v)}" for k, v in self._env.items()]
                (self.task_dir / ENV_FILE).write_text("\n".join(lines) + "\n")
            except OSError:
                log.exception("cannot finish the sandbox of %s", self.task_id)
            self.host.monitor.start()
            if self.host.cgroups is not None:
                self._join_cgroups()
        finally:
            # Whatever failed above, the task must still be able to end.
            with self._lock:
                self._settled = True
            self._maybe_complete()

    def _resolve_user(self) -> pwd.struct_passwd | None:
        name = self.spec.user
        if not name:
            return None
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"user {name!r} does not exist on this host") from None
        if user.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise ValueError(f"cannot run as user {name!r}: the agent does not run as root")
        return user if user.pw_uid != os.geteuid() else None

    def _environment(self, user: pwd.struct_passwd | None) -> dict[str, str]:
        """A small, predictable base (not the agent's whole environment) plus the task's variables."""
        env = {
            "PATH": os.environ.get("PATH", _DEFAULT_PATH),
            "HOME": os.environ.get("HOME", str(self.task_dir)),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "MESOS_SANDBOX": str(self.task_dir),
            "MESOS_DIRECTORY": str(self.task_dir),
            "MESOS_TASK_ID": self.task_id,
        }
        if user is not None:
            env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
        env.update(self.spec.env)
        env[MARKER_VAR] = self.marker  # last: the task cannot opt out of being tracked
        return env

    def _fail_early(self, state: str, message: str, reason: str | None) -> None:
        """The task ends before (or instead of) running: no process to wait for."""
        with self._lock:
            if self._done:
                return
            self._done = True
        self._write_finished(state)
        self.host.forget(self)
        self._report(self.task_id, state, message, reason)

    # -- killing -------------------------------------------------------------------------------

    def set_before_kill(self, command: str) -> None:
        with self._lock:
            self._before_kill = command

    def kill(self, grace: float | None) -> None:
        with self._lock:
            if self._done:
                return
            again = self._kill_requested
            # Killed again while being killed: a shorter grace (a destroy) brings the SIGKILL forward, as
            # Mesos' command executor does; a longer one changes nothing.
            due_now = again and self._bring_forward(grace)
            if not again:
                self._kill_requested = True
                if self.proc is None:
                    self._cancelled = True  # the fetch stops and reports TASK_KILLED
                    return
                command = self._before_kill
        if again:
            if due_now:
                self.signal_all(signal.SIGKILL)
            return
        self._report(self.task_id, "TASK_KILLING", None, None)
        seconds = self._grace(grace)
        if command:
            def run_then_terminate() -> None:
                self._run_before_kill(command)
                self._terminate(seconds)

            self.host.workers.submit(run_then_terminate)
        else:
            self._terminate(seconds)

    def _grace(self, grace: float | None) -> float:
        if grace is not None:
            return grace
        if self.spec.kill_grace_seconds is not None:
            return self.spec.kill_grace_seconds
        return self.host.default_grace

    def _run_before_kill(self, command: str) -> None:
        """Singularity's runShellCommandBeforeKill: in the sandbox, with the task's environment. A destroy
        that comes meanwhile cuts it short: it is stopped when the SIGKILL asked for is due."""
        out = self.task_dir / "before_kill.log"
        try:
            with open(out, "ab") as f:
                proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=self.task_dir / "app", env=self._env,
                                        stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        except OSError as exc:
            log.warning("pre-kill command of %s failed: %s", self.task_id, exc)
            return
        deadline = time.monotonic() + self.host.settings.before_kill_timeout_seconds
        while True:
            with self._lock:
                cap = self._sigkill_cap  # set by a destroy (_bring_forward) while this runs
            until = deadline if cap is None else min(deadline, cap)
            remaining = until - time.monotonic()
            if remaining <= 0:
                if until == deadline:
                    log.warning("pre-kill command of %s timed out", self.task_id)
                signal_group(proc.pid, signal.SIGKILL)  # its session: whatever it started goes too
                proc.wait()
                return
            try:
                # In slices: a destroy may bring the cap forward at any moment.
                proc.wait(timeout=min(remaining, _BEFORE_KILL_CHECK_SECONDS))
                return
            except subprocess.TimeoutExpired:
                continue

    def _bring_forward(self, grace: float | None) -> bool:
        """With the lock held: make the SIGKILL of the kill under way come no later than `grace` from now;
        True when it is due at once."""
        if grace is None:
            return False
        deadline = time.monotonic() + grace
        if self._sigkill_at is None:  # the SIGTERM is not sent yet (the pre-kill command runs)
            self._sigkill_cap = deadline if self._sigkill_cap is None else min(self._sigkill_cap, deadline)
            return False
        if deadline >= self._sigkill_at:
            return False
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self._sigkill_at = deadline
        if grace <= 0:
            return True
        self._kill_timer = self.host.reactor.call_later(grace, lambda: self.signal_all(signal.SIGKILL))
        return False

    def _terminate(self, grace: float) -> None:
        with self._lock:
            if self._sigkill_cap is not None:
                grace = min(grace, max(0.0, self._sigkill_cap - time.monotonic()))
            self._sigkill_at = time.monotonic() + grace
        self.signal_all(signal.SIGTERM)
        if grace <= 0:
            self.signal_all(signal.SIGKILL)
            return
        timer = self.host.reactor.call_later(grace, lambda: self.signal_all(signal.SIGKILL))
        with self._lock:
            self._kill_timer = timer

    def terminate_now(self, sig: signal.Signals, snapshot: Snapshot | None = None) -> None:
        """The agent is going away: no grace, no pre-kill command, nothing more to fetch."""
        with self._lock:
            self._kill_requested = True
            self._cancelled = True
        self.signal_all(sig, snapshot)

    def limit_exceeded(self, kind: str, used: int, limit: int) -> None:
        if kind == "machine-disk":
            message = (f"disk limit exceeded: the machine has only {limit / MB:.0f} MB free and this task's "
                       f"sandbox is the biggest ({used / MB:.0f} MB)")
            reason = "REASON_CONTAINER_LIMITATION_DISK"
        else:
            message = f"{kind} limit exceeded (used {used / MB:.0f} MB of {limit / MB:.0f} MB)"
            reason = f"REASON_CONTAINER_LIMITATION_{kind.upper()}"
        with self._lock:
            if self._violation is not None or self._done or self._returncode is not None:
                return
            self._violation = Violation(message, reason)
        log.warning("task %s: %s", self.task_id, message)
        self.signal_all(signal.SIGKILL)

    def signal_all(self, sig: signal.Signals, snapshot: Snapshot | None = None) -> None:
        """Signal every process of the task: its group, its cgroup, and whatever carries its marker (in
        `snapshot`, or in one taken now)."""
        pgid = self.pgid
        if pgid is None:
            return
        with self._lock:
            reaped = self._returncode is not None
        if reaped and sig != signal.SIGKILL:
            return
        if not reaped:
            signal_group(pgid, sig)  # the unreaped leader pins the group id
        if self.cgroup is not None and sig == signal.SIGKILL:
            self.cgroup.kill()
        signal_procs(self.members(snapshot or self.host.processes.snapshot(measure=False)), sig)

    # -- ending --------------------------------------------------------------------------------

    def _on_exit(self) -> None:
        """Reactor thread: the main process has exited (not yet reaped)."""
        proc = self.proc
        assert proc is not None
        try:
            # Nothing of a finished task survives it: detached children and all.
            self.signal_all(signal.SIGKILL)
        except Exception:  # the task must still be reaped and reported
            log.exception("cannot sweep the processes of %s", self.task_id)
        returncode = proc.wait()
        with self._lock:
            self._returncode = returncode
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            waiting = self._open_streams > 0
        if waiting:
            self.host.reactor.call_later(_EOF_GRACE_SECONDS, self._eof_overdue)
        self._maybe_complete()

    def _stream_ended(self, _stream: LogStream) -> None:
        with self._lock:
            self._open_streams -= 1
        self._maybe_complete()

    def _eof_overdue(self) -> None:
        with self._lock:
            if self._open_streams == 0:
                return
            if not self._settled:  # its pipes are not even being read yet
                self.host.reactor.call_later(_EOF_GRACE_SECONDS, self._eof_overdue)
                return
        log.warning("output of task %s is still held open after it exited; closing it", self.task_id)
        self.signal_all(signal.SIGKILL)
        for stream in self.streams:
            self.host.pump.close_stream(stream)

    def _maybe_complete(self) -> None:
        with self._lock:
            if self._done or self._returncode is None or self._open_streams > 0 or not self._settled:
                return
            self._done = True
            returncode = self._returncode
            killed = self._kill_requested
            violation = self._violation
        state, message, reason = classify_exit(returncode, killed, violation, self.spec.successful_exit_codes)
        # Written before the settle-in job was queued, so never after this.
        remove_record(self.host.layout.running_record(self.task_id))
        self.host.forget(self)
        # Recorded and queued before the report: once the report is out, a `sing executor` may be
        # told to shut down, and it waits only for archive jobs already queued.
        self._write_finished(state)
        self._archive_last_segments(state)
        self._report(self.task_id, state, message, reason)
        if self.cgroup is not None:
            self._remove_cgroup(self.cgroup, attempts=10)

    def _remove_cgroup(self, group: TaskCgroup, attempts: int) -> None:
        """rmdir fails while the kernel still counts killed processes as members: retry a little
        later (and the janitor sweeps what is left)."""
        if group.remove():
            self.host.note_cgroup(self.task_id, made=False)
        elif attempts > 1:
            self.host.reactor.call_later(0.2, lambda: self._remove_cgroup(group, attempts - 1))

    def _archive_last_segments(self, state: str) -> None:
        """Archive what the streams wrote since their last rotation; once every segment of the task
        is stored, record it (the janitor prunes only archived sandboxes)."""
        prefix = ""
        for stream in self.streams:
            prefix = stream.target.prefix
            name = final_segment(stream)
            if name is not None:
                self.host.archiver.submit(stream.path, stream.target, stream.policy, copy_as=name)
        if not prefix:
            self._write_finished(state, archived=True)
            return
        self.host.archiver.when_settled(prefix, lambda ok: self._write_finished(state, archived=ok))

    def _write_finished(self, state: str, archived: bool = False) -> None:
        """``finished.json`` tells the janitor (also after a restart) what ended and when."""
        if self._finished_at is None:
            self._finished_at = int(time.time() * 1000)
        body = {"taskId": self.task_id, "state": state, "finishedAt": self._finished_at,
                "requestId": self.spec.request_id, "deployId": self.spec.deploy_id, "archived": archived,
                "preserve": self.spec.preserve_sandbox}
        path = self.task_dir / FINISHED_FILE
        try:
            self.task_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{FINISHED_FILE}.tmp")
            tmp.write_bytes(orjson.dumps(body))
            os.replace(tmp, path)
        except OSError:
            log.exception("cannot record the end of %s", self.task_id)

    # -- statistics ----------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """Mesos' ResourceStatistics for this task."""
        usage = self.usage
        if usage is None or time.time() - usage.at > 1.0:
            usage = usage_of(self.members(self.host.processes.snapshot(max_age=0.5), measuring=True))
        if not self.disk_used:
            self.disk_used = disk_usage(self.task_dir)
        return statistics_json(usage, self.disk_used, self.spec.cpus, self.mem_limit_bytes, self.disk_limit_bytes)


def statistics_json(usage: Usage, disk_used: int, cpus: float | None, mem_limit: int | None,
                    disk_limit: int | None) -> dict[str, Any]:
    """Mesos' ResourceStatistics JSON (as an agent's /monitor/statistics reports it)."""
    stats: dict[str, Any] = {
        "timestamp": usage.at,
        "cpus_user_time_secs": round(usage.user_seconds, 3),
        "cpus_system_time_secs": round(usage.system_seconds, 3),
        "mem_rss_bytes": usage.rss_bytes,
        "mem_total_bytes": usage.rss_bytes,
        "disk_used_bytes": disk_used,
        "processes": usage.processes,
        "threads": usage.threads,
    }
    if cpus:
        stats["cpus_limit"] = cpus
    if mem_limit:
        stats["mem_limit_bytes"] = mem_limit
    if disk_limit:
        stats["disk_limit_bytes"] = disk_limit
    return stats


def _open_log(stream: LogStream) -> None:
    """Open the stream's log file; raise if that fails (with thousands of tasks, usually EMFILE)."""
    error = stream.open_file()
    if error is not None:
        raise error


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


class ExecutorHost:
    def __init__(
        self,
        settings: ExecutorSettings,
        paths: ExecutorPaths,
        layout: Layout,
        *,
        scope: str,
        reactor: Reactor,
        disk_root: Path,
        default_grace: float | None = None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.scope = scope
        self.reactor = reactor
        self.default_grace = settings.kill_grace_seconds if default_grace is None else default_grace
        self.processes = ProcessTable()
        self.store: LogStore = open_store(settings.s3, paths.log_dir)
        opener = self.store.open if isinstance(self.store, S3LogStore) else None
        self.cache = ArtifactCache(paths.cache_dir, timeout=settings.download_timeout_seconds, s3_opener=opener)
        self.archiver = Archiver()
        self.pump = LogPump(self.archiver)
        # Slow work (artifact fetches, pre-kill commands) and the quick bookkeeping after each start
        # have pools of their own: a start must never wait behind a download.
        self.workers = Workers(8, "sing-executor")
        self.settling = Workers(2, "sing-task-setup")
        self.cgroups = Cgroups.detect(scope) if settings.cgroups == "auto" else None
        # Each task holds descriptors here until it ends: thousands of tasks need more than the
        # usual soft limit.
        raise_open_files_limit()
        self._housekeeping: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._runners: dict[str, TaskRunner] = {}
        self._cgroups_made: set[str] = set()
        self.monitor = Monitor(settings, self.processes, self.runners, disk_root, self._periodic)

    def note_cgroup(self, task_id: str, *, made: bool) -> None:
        """Which task cgroups this host made and has not removed yet (removed on stop)."""
        with self._lock:
            if made:
                self._cgroups_made.add(task_id)
            else:
                self._cgroups_made.discard(task_id)

    def give_inherited_nofile(self, pid: int) -> None:
        """Give a task the soft open-files limit this process started with, not the one raised for
        its own sake: a task behaves as it did before (a program that closes every possible
        descriptor, or one using select(), would suffer from a huge limit). Set just after the exec,
        like an argv task's own rlimits."""
        inherited = _inherited_soft_nofile
        if inherited is None:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft <= inherited:
            return  # not raised: the task has inherited the right one
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (inherited, hard))
        except (ProcessLookupError, PermissionError, ValueError) as exc:
            log.debug("cannot give pid %d its inherited open-files limit: %s", pid, exc)

    def set_housekeeping(self, job: Callable[[], None]) -> None:
        """Run ``job`` (e.g. the sandbox janitor) every cleanup interval on the monitor thread."""
        self._housekeeping = job
        self.monitor.start()

    def policy(self, spec: TaskSpec) -> RotationPolicy:
        s = self.settings
        return RotationPolicy(
            size_bytes=int(s.rotate_size_mb * MB),
            period_seconds=ROTATE_PERIODS[spec.rotate_frequency or s.rotate_frequency],
            keep=s.rotate_keep,
            max_age_seconds=s.rotate_max_age_days * 86400,
            compress_level=s.compress_level,
            rotate_while_running=not spec.skip_logrotate,
        )

    # -- tasks ---------------------------------------------------------------------------------

    def launch(self, info: dict[str, Any], report: Reporter, framework_id: str = "") -> None:
        """Start the task described by the TaskInfo; every outcome goes through ``report``."""
        task_id = str((info.get("task_id") or {}).get("value") or "")
        try:
            spec = TaskSpec.from_task_info(info)
        except PayloadError as exc:
            report(task_id, "TASK_FAILED", f"Failed to launch: {exc}", "REASON_TASK_INVALID")
            return
        runner = TaskRunner(self, spec, info, report, framework_id)
        with self._lock:
            self._runners[task_id] = runner
        runner.begin()  # a task that cannot start is reported TASK_FAILED, the caller goes on

    def forget(self, runner: TaskRunner) -> None:
        with self._lock:
            if self._runners.get(runner.task_id) is runner:
                del self._runners[runner.task_id]

    def runners(self) -> list[TaskRunner]:
        with self._lock:
            return list(self._runners.values())

    def runner(self, task_id: str) -> TaskRunner | None:
        with self._lock:
            return self._runners.get(task_id)

    def kill(self, task_id: str, grace: float | None) -> None:
        runner = self.runner(task_id)
        if runner is not None:
            runner.kill(grace)

    def message(self, task_id: str, data: Any) -> None:
        """A framework message: so far, the shell command to run before the task's next kill."""
        command = read_message(data)
        runner = self.runner(task_id)
        if command is not None and runner is not None:
            runner.set_before_kill(command)

    def terminate_all(self, sig: signal.Signals) -> None:
        # One look at the process table for all of them: one per task made stopping thousands of tasks
        # take minutes.
        snapshot = self.processes.snapshot(measure=False)
        for runner in self.runners():
            runner.terminate_now(sig, snapshot)

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {r.task_id: r.statistics() for r in self.runners() if r.is_running()}

    def _periodic(self) -> None:
        self.archiver.retry_failed()
        if self._housekeeping is not None:
            self._housekeeping()

    def stop(self) -> None:
        """After every task ended: stop the threads, letting queued archive uploads finish."""
        self.monitor.stop()
        self.pump.stop()
        self.workers.stop()
        self.settling.stop()
        self.archiver.close()
        if self.cgroups is not None:
            # Only ours: a `sing executor` shares its agent's scope with the agent's other tasks.
            self.cgroups.remove(self._cgroups_made)
