"""Per-task cgroups, where this process may create them.

Used, in order of preference, for:
- tracking: every process of a task, however it detached, is in the task's cgroup (v2), and
  ``cgroup.kill`` ends them all at once;
- CPU shares: ``cpu.weight`` (v2) or ``cpu.shares`` (v1's cpu controller);
- memory: ``memory.max`` with ``memory.oom.group`` (v2 only; v1's memory controller charges page cache
  and is left alone). The /proc RSS poller in monitor.py applies everywhere, this is the backstop;
- ``maxTaskThreads``: ``pids.max`` (v2 or v1's pids controller).
Controllers that are missing or not delegated to us are skipped; /proc-based tracking (procs.py)
and polling cover the rest. A task is moved into its cgroups by a worker shortly after it starts:
Python's subprocess cannot clone into a cgroup, a preexec_fn would make every spawn a full fork, and
a move waits for an RCU grace period (often over 10 ms per hierarchy). Until then, and for what it
forks in that time, the SING_TASK marker tracks it.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from .procs import read_proc, signal_procs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    base: Path  # our directory in it: <mount>/<this process's cgroup>/sing-<scope>
    controllers: frozenset[str]


@dataclass
class TaskCgroup:
    name: str
    dirs: list[tuple[Hierarchy, Path]] = field(default_factory=list)
    memory_limited: bool = False

    def add(self, pid: int) -> None:
        for _, path in self.dirs:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                if exc.errno != errno.ESRCH:  # it already exited: nothing to track
                    log.warning("cannot move pid %d into %s: %s", pid, path, exc)

    def pids(self) -> set[int]:
        out: set[int] = set()
        for _, path in self.dirs:
            try:
                out.update(int(line) for line in (path / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return out

    def kill(self) -> None:
        """SIGKILL every process in the cgroups (cgroup.kill where the kernel has it)."""
        for hierarchy, path in self.dirs:
            if hierarchy.version == 2 and (path / "cgroup.kill").exists():
                try:
                    (path / "cgroup.kill").write_text("1")
                    continue
                except OSError:
                    pass
            procs = [p for p in (read_proc(pid) for pid in self._procs(path)) if p is not None]
            signal_procs(procs, signal.SIGKILL)

    @staticmethod
    def _procs(path: Path) -> list[int]:
        try:
            return [int(line) for line in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding memory.max (v2)."""
        for hierarchy, path in self.dirs:
            if hierarchy.version == 2 and self.memory_limited:
                try:
                    for line in (path / "memory.events").read_text().splitlines():
                        name, _, value = line.partition(" ")
                        if name == "oom_kill":
                            return int(value)
                except (OSError, ValueError):
                    return 0
        return 0

    def memory_peak(self) -> int | None:
        for hierarchy, path in self.dirs:
            if hierarchy.version == 2 and self.memory_limited:
                for name in ("memory.peak", "memory.current"):
                    try:
                        return int((path / name).read_text().split()[0])
                    except (OSError, ValueError, IndexError):
                        continue
        return None

    def remove(self) -> bool:
        """rmdir every directory; False while some still has processes (try again later)."""
        done = True
        for _, path in self.dirs:
            try:
                path.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                done = False
        return done


class Cgroups:
    def __init__(self, hierarchies: list[Hierarchy]) -> None:
        self.hierarchies = hierarchies

    @classmethod
    def detect(cls, scope: str) -> Cgroups | None:
        """What this process may use; None when it can create no cgroup at all."""
        found: list[Hierarchy] = []
        own = _own_cgroups()
        v2_controllers: frozenset[str] = frozenset()
        for mount, fstype, _options in _cgroup_mounts():
            if fstype == "cgroup2":
                relative = own.get("")
                if relative is None:
                    continue
                base = Path(mount) / relative.lstrip("/") / f"sing-{scope}"
                if not _make_dir(base):
                    continue
                v2_controllers = _enable_controllers(base.parent, base, ("cpu", "memory", "pids"))
                found.insert(0, Hierarchy(2, base, v2_controllers))
        for mount, fstype, options in _cgroup_mounts():
            if fstype != "cgroup":
                continue
            wanted = {c for c in options if c in ("cpu", "pids")} - v2_controllers
            if not wanted:
                continue
            key = next((k for k in own if k and set(k.split(",")) & wanted), None)
            if key is None:
                continue
            base = Path(mount) / own[key].lstrip("/") / f"sing-{scope}"
            if _make_dir(base):
                found.append(Hierarchy(1, base, frozenset(wanted)))
        return cls(found) if found else None

    def create(self, task_id: str, *, cpus: float | None, mem_bytes: int | None,
               max_threads: int | None) -> TaskCgroup:
        group = TaskCgroup(task_id)
        for hierarchy in self.hierarchies:
            path = hierarchy.base / task_id
            # The base too: a `sing executor` sharing this agent's scope may have removed it, empty.
            if not (_make_dir(hierarchy.base) and _make_dir(path)):
                continue
            group.dirs.append((hierarchy, path))
            have = hierarchy.controllers
            if cpus and "cpu" in have:
                shares = max(2, int(cpus * 1024))
                if hierarchy.version == 2:
                    # cgroup v2's mapping of v1 shares to weights (as runc does).
                    _write(path / "cpu.weight", str(1 + ((shares - 2) * 9999) // 262142))
                else:
                    _write(path / "cpu.shares", str(shares))
            if mem_bytes and "memory" in have and hierarchy.version == 2:
                # The whole group dies together, as the poller would have killed it.
                _write(path / "memory.oom.group", "1")
                _write(path / "memory.swap.max", "0")
                group.memory_limited = _write(path / "memory.max", str(mem_bytes))
            if max_threads and "pids" in have:
                _write(path / "pids.max", str(max_threads))
        return group

    def remove(self, task_ids: set[str] | None) -> None:
        """Remove these task cgroups (None: every one of this scope), killing what is left in them,
        then the base directories if nothing else is in them."""
        for task_id, group in self.existing().items():
            if task_ids is None or task_id in task_ids:
                group.kill()
                group.remove()
        for hierarchy in self.hierarchies:
            try:
                hierarchy.base.rmdir()
            except OSError:
                pass  # still in use (by a live task, or another executor of this agent)

    def existing(self) -> dict[str, TaskCgroup]:
        """Task cgroups already present (a crashed run's), by task id."""
        out: dict[str, TaskCgroup] = {}
        for hierarchy in self.hierarchies:
            try:
                entries = list(os.scandir(hierarchy.base))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    out.setdefault(entry.name, TaskCgroup(entry.name)).dirs.append((hierarchy, Path(entry.path)))
        return out


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy: "" for v2, else the v1 controller list ("cpu,cpuacct")."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _cgroup_mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fstype, super options) of cgroup file systems, from mountinfo."""
    out: list[tuple[str, str, list[str]]] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mount = fields[4].replace("\\040", " ")
            out.append((mount, tail[0], tail[2].split(",")))
    return out


def _make_dir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        return os.access(path / "cgroup.procs", os.W_OK)
    except OSError:
        return False


def _enable_controllers(parent: Path, base: Path, wanted: tuple[str, ...]) -> frozenset[str]:
    """Enable what we can for our children: in the parent's subtree (fails if the parent holds
    processes and is not the root, cgroup v2's no-internal-processes rule) and in ours."""
    enabled: set[str] = set()
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return frozenset()
    for name in wanted:
        if name not in available:
            continue
        if _write(parent / "cgroup.subtree_control", f"+{name}") and _write(base / "cgroup.subtree_control",
                                                                              f"+{name}"):
            enabled.add(name)
    return frozenset(enabled)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False
