"""One thread per agent (or executor) that measures tasks and enforces memory and disk limits.

Memory: the RSS of every process of the task (its session, its SING_TASK marker, its cgroup),
summed. RSS counts pages shared by a forked tree once per process, so before a kill the sum is
confirmed with PSS, which splits shared pages between their users. Where the task has a cgroup v2
memory controller, a kernel OOM kill in it is reported the same way.
Disk: the sandbox's allocated blocks, walked every ``disk_check_seconds``, and sooner when the file
system's free space drops fast; when free space falls under ``min_free_disk_mb`` the task with the
biggest sandbox is killed, so one task cannot fill the machine.
CPU: user and system seconds, for the statistics endpoint (shares are set through cgroups only).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .procs import CLOCK_TICKS, Proc, ProcessTable, pss_bytes
from .settings import ExecutorSettings

if TYPE_CHECKING:
    from .host import TaskRunner

log = logging.getLogger(__name__)

MB = 1024 * 1024
# A drop in free space this large since the last disk walk triggers a walk now.
_FAST_DROP = 256 * MB


@dataclass(frozen=True)
class Usage:
    at: float
    rss_bytes: int
    user_seconds: float
    system_seconds: float
    processes: int
    threads: int


def usage_of(procs: Iterable[Proc]) -> Usage:
    rss = user = system = threads = count = 0
    for p in procs:
        rss += p.rss_bytes
        user += p.user_ticks
        system += p.system_ticks
        threads += p.threads
        count += 1
    return Usage(time.time(), rss, user / CLOCK_TICKS, system / CLOCK_TICKS, count, threads)


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (each inode once: rotated logs are hard links of stdout.log)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_blocks * 512
    return total


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class Monitor:
    def __init__(self, settings: ExecutorSettings, processes: ProcessTable, runners: Callable[[], list[TaskRunner]],
                 disk_root: Path, periodic: Callable[[], None]) -> None:
        self._settings = settings
        self._processes = processes
        self._runners = runners
        self._disk_root = disk_root
        self._periodic = periodic
        self._wake = threading.Event()
        self._stopping = False
        self._last_disk_walk = 0.0
        self._free_at_walk: int | None = None
        self._last_periodic = 0.0
        self._thread = threading.Thread(target=self._run, name="sing-task-monitor", daemon=True)
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Idempotent: the thread starts with the first task (or when housekeeping is set)."""
        with self._start_lock:
            if not self._thread.is_alive() and not self._stopping:
                self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            try:
                self.check()
            except Exception:
                log.exception("task monitor pass failed")
            now = time.monotonic()
            if now - self._last_periodic >= self._settings.cleanup_interval_seconds:
                self._last_periodic = now
                try:
                    self._periodic()
                except Exception:
                    log.exception("periodic executor housekeeping failed")
            self._wake.wait(min(self._settings.memory_check_seconds, self._settings.cleanup_interval_seconds))
            self._wake.clear()

    def check(self) -> None:
        runners = [r for r in self._runners() if r.is_running()]
        if not runners:
            return
        snapshot = self._processes.snapshot(max_age=self._settings.memory_check_seconds / 2)
        for runner in runners:
            procs = runner.members(snapshot, measuring=True)
            usage = usage_of(procs)
            runner.usage = usage
            self._check_memory(runner, procs, usage)
        self._check_disk(runners)

    def _check_memory(self, runner: TaskRunner, procs: list[Proc], usage: Usage) -> None:
        limit = runner.mem_limit_bytes
        if not self._settings.enforce_memory or limit is None:
            return
        if runner.cgroup is not None and runner.cgroup.oom_kills() > 0:
            runner.limit_exceeded("memory", runner.cgroup.memory_peak() or limit, limit)
            return
        if usage.rss_bytes <= limit:
            return
        pss = sum(pss_bytes(p.pid) or p.rss_bytes for p in procs)
        if pss > limit:
            runner.limit_exceeded("memory", pss, limit)

    def _check_disk(self, runners: list[TaskRunner]) -> None:
        now = time.monotonic()
        free = free_bytes(self._disk_root)
        dropped = free is not None and self._free_at_walk is not None and self._free_at_walk - free > _FAST_DROP
        low = free is not None and free < self._settings.min_free_disk_mb * MB
        if now - self._last_disk_walk < self._settings.disk_check_seconds and not dropped and not low:
            return
        self._last_disk_walk = now
        self._free_at_walk = free
        for runner in runners:
            runner.disk_used = disk_usage(runner.task_dir)
            limit = runner.disk_limit_bytes
            if self._settings.enforce_disk and limit is not None and runner.disk_used > limit:
                runner.limit_exceeded("disk", runner.disk_used, limit)
        if low and self._settings.enforce_disk:
            candidates = [r for r in runners if r.is_running()]
            if candidates:
                victim = max(candidates, key=lambda r: r.disk_used)
                assert free is not None
                victim.limit_exceeded("machine-disk", victim.disk_used, free)
