"""Which processes belong to which task, from /proc, and signalling them safely.

Every task process gets ``SING_TASK=<scope>/<task id>`` in its environment and inherits it into its
children, including ones that leave the task's session (``setsid``, double forks): the process group
alone would miss those. A process's environment is read once (when first seen) and the answer is
cached by (pid, start time), so a scan costs one read of ``/proc/<pid>/stat`` per process. A task
that rewrites its children's environment can still hide them; cgroups (see cgroups.py), where the
machine allows them, close that gap.

Signals go through pidfds after re-checking the start time, so a recycled pid is never hit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_VAR = "SING_TASK"
_MARKER_BYTES = MARKER_VAR.encode() + b"="
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def marker(scope: str, task_id: str) -> str:
    return f"{scope}/{task_id}"


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    session: int
    start_time: int  # clock ticks after boot: with the pid, identifies the process
    state: str
    user_ticks: int  # utime + cutime: its own CPU and that of its reaped children
    system_ticks: int
    threads: int
    rss_bytes: int

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.start_time


def read_proc(pid: int) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    rest = raw[raw.rfind(b")") + 2:].split()
    try:
        return Proc(
            pid=pid, state=rest[0].decode(), ppid=int(rest[1]), pgrp=int(rest[2]), session=int(rest[3]),
            user_ticks=int(rest[11]) + int(rest[13]), system_ticks=int(rest[12]) + int(rest[14]),
            threads=int(rest[17]), start_time=int(rest[19]), rss_bytes=int(rest[21]) * PAGE_SIZE,
        )
    except (IndexError, ValueError):
        return None


def read_marker(pid: int) -> str | None:
    """The SING_TASK value in the environment a process started with (None if absent or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    if raw.startswith(_MARKER_BYTES):
        start = len(_MARKER_BYTES)
    else:
        at = raw.find(b"\0" + _MARKER_BYTES)
        if at < 0:
            return None
        start = at + 1 + len(_MARKER_BYTES)
    end = raw.find(b"\0", start)
    return raw[start:end if end >= 0 else len(raw)].decode(errors="replace")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size: shared pages split between their users, so a forked tree is not counted
    several times over. Costlier than RSS (the kernel walks the page tables), so only used to confirm."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    by_pid: dict[int, Proc]
    by_marker: dict[str, list[Proc]]
    by_session: dict[int, list[Proc]]

    def members(self, marker_value: str, sessions: Iterable[int] = ()) -> list[Proc]:
        """Live (non-zombie) processes carrying the marker or in one of ``sessions``.

        Only marked processes are sure to be the task's own program: a session member without the
        marker may be a child between fork and exec, still a copy of its parent (whose memory it
        appears to use). Measure with ``sessions`` left out; kill with them.
        """
        seen: dict[int, Proc] = {}
        for proc in self.by_marker.get(marker_value, ()):
            seen[proc.pid] = proc
        for sid in sessions:
            for proc in self.by_session.get(sid, ()):
                seen.setdefault(proc.pid, proc)
        return [p for p in seen.values() if p.state != "Z"]


class ProcessTable:
    """Scans /proc on demand; several callers within ``max_age`` share one scan.

    A measuring scan reads every process's stat (about 30 us each). A membership scan, all a kill
    needs, reads only processes it has not seen before and reuses what it knew of the others: a
    task's launch or exit then costs a directory listing, not a scan of the machine.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[tuple[int, int], str | None] = {}
        self._known: dict[int, Proc] = {}
        self._measured: Snapshot | None = None

    def snapshot(self, max_age: float = 0.0, *, measure: bool = True) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._measured is not None and now - self._measured.taken_at <= max_age:
                return self._measured
            by_pid: dict[int, Proc] = {}
            by_marker: dict[str, list[Proc]] = {}
            by_session: dict[int, list[Proc]] = {}
            owners: dict[tuple[int, int], str | None] = {}
            ours = _self_and_ancestors()
            known = self._known
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                proc = known.get(pid) if not measure else None
                if proc is None:
                    proc = read_proc(pid)
                if proc is None or pid in ours:
                    continue
                key = proc.key
                owner = self._owners[key] if key in self._owners else read_marker(pid)
                owners[key] = owner
                by_pid[pid] = proc
                if owner is not None:
                    by_marker.setdefault(owner, []).append(proc)
                by_session.setdefault(proc.session, []).append(proc)
            self._owners = owners  # forget the dead
            self._known = by_pid
            snapshot = Snapshot(time.monotonic(), by_pid, by_marker, by_session)
            if measure:
                self._measured = snapshot
            return snapshot


def _self_and_ancestors() -> set[int]:
    """This process and its ancestors: never one of a task's, even when they carry its marker (a
    `sing executor` and the shell that started it do)."""
    found = set()
    pid = os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        proc = read_proc(pid)
        if proc is None:
            break
        pid = proc.ppid
    return found


def signal_procs(procs: Iterable[Proc], sig: signal.Signals) -> int:
    """Send ``sig`` to each process that is still the one described; returns how many were signalled."""
    sent = 0
    for proc in procs:
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:
            continue  # gone
        try:
            # The pidfd pins the process: if its start time still matches, this is the one we meant.
            now = read_proc(proc.pid)
            if now is not None and now.start_time == proc.start_time:
                signal.pidfd_send_signal(fd, sig)
                sent += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return sent


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
