"""Records of live task processes on disk, and killing the ones a crashed run left behind.

Tasks run in their own session (``start_new_session``), so they outlive a backend killed with -9.
Each live task has ``running/<T>.json``; the next start kills what those records describe and forgets
them, so the scheduler's reconciliation sees TASK_LOST and replaces the tasks instead of racing orphans.
A pid is only trusted while its start time (``/proc/<pid>/stat`` field 22) matches the record, so a
reused pid is never hit.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningRecord:
    task_id: str
    framework_id: str
    pid: int
    pgid: int
    start_time: int
    sandbox: str


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    session: int
    start_time: int


def read_proc_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcStat(pid=pid, pgrp=int(rest[2]), session=int(rest[3]), start_time=int(rest[19]))
    except (IndexError, ValueError):
        return None


def write_record(path: Path, record: RunningRecord) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(asdict(record)))
    os.replace(tmp, path)


def remove_record(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _load(path: Path) -> RunningRecord | None:
    try:
        data = orjson.loads(path.read_bytes())
        return RunningRecord(**data)
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None


def _all_processes() -> list[ProcStat]:
    stats = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_proc_stat(int(entry.name))
            if stat is not None:
                stats.append(stat)
    return stats


def kill_orphans(running_dir: Path) -> list[RunningRecord]:
    """SIGKILL what the records in ``running_dir`` describe, delete the records, return them.

    Members of a record's session are killed when the leader is still the recorded process, or when
    the leader is gone and they started no earlier than it (a session id cannot be reused while any
    member lives). A process that reused the pid is never hit, nor is a session it started.
    """
    paths = [p for p in running_dir.glob("*.json")] if running_dir.is_dir() else []
    for tmp in running_dir.glob("*.json.tmp") if running_dir.is_dir() else []:
        remove_record(tmp)
    if not paths:
        return []
    processes = _all_processes()
    killed = []
    for path in paths:
        record = _load(path)
        if record is not None:
            victims = _victims(record, processes)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if victims:
                log.warning("killed orphaned task %s (pids %s)", record.task_id, victims)
            killed.append(record)
        remove_record(path)
    return killed


def _victims(record: RunningRecord, processes: list[ProcStat]) -> list[int]:
    holder = next((p for p in processes if p.pid == record.pid), None)
    if holder is not None and holder.start_time != record.start_time and holder.session == record.pgid:
        return []  # the pid was reused by a process that started its own session: none of ours
    return [p.pid for p in processes if p.session == record.pgid and p.start_time >= record.start_time]
