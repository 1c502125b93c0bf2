"""Sandboxes after their task: retention, and what a crashed agent left behind.

Singularity's ExecutorCleanup, per agent: a finished task's sandbox keeps everything for
``sandbox_retention_seconds`` (``failed_sandbox_retention_seconds`` when it did not finish
cleanly), then is pruned to ``tail_of_finished_<stream>.log`` (the last ``tail_lines`` lines),
``task.json`` and ``finished.json`` once its logs are archived, and is deleted after
``sandbox_delete_after_seconds`` (twice that if its logs could not be archived meanwhile).
``preserveTaskSandboxAfterFinish`` skips the pruning.

On start (``recover``), before any task runs: processes carrying this agent's marker and task
cgroups of a previous run are killed, and sandboxes that never got a ``finished.json`` (their agent
died with them) have their output archived and are marked TASK_LOST, so retention applies to them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .host import FINISHED_FILE, ExecutorHost
from .logs import ArchiveTarget, archived_names
from .logstore import parse_segment, segment_name, task_prefix
from .payload import PayloadError, TaskSpec
from .procs import signal_procs

log = logging.getLogger(__name__)

_KEPT = {FINISHED_FILE, "task.json"}
_TAIL_READ_BYTES = 4 * 1024 * 1024


def tail_lines(path: Path, lines: int) -> bytes:
    """The last ``lines`` lines of a file (reading at most the last few MiB)."""
    if lines <= 0:
        return b""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - _TAIL_READ_BYTES))
            data = f.read()
    except FileNotFoundError:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


class Janitor:
    def __init__(self, host: ExecutorHost, sandboxes: Path, live: Callable[[], set[str]]) -> None:
        self.host = host
        self.sandboxes = sandboxes
        self._live = live

    # -- after a crash -------------------------------------------------------------------------

    def recover(self) -> None:
        """Kill what an earlier run of this agent left running and settle its sandboxes."""
        snapshot = self.host.processes.snapshot()
        prefix = f"{self.host.scope}/"
        leftovers = [p for value, procs in snapshot.by_marker.items() if value.startswith(prefix) for p in procs]
        if leftovers:
            log.warning("killing %d processes left by an earlier run of this agent", len(leftovers))
            signal_procs(leftovers, signal.SIGKILL)
        if self.host.cgroups is not None:
            self.host.cgroups.remove(None)
        if not self.sandboxes.is_dir():
            return
        for entry in os.scandir(self.sandboxes):
            task_dir = Path(entry.path) / entry.name
            if entry.is_dir() and task_dir.is_dir() and not (task_dir / FINISHED_FILE).exists():
                self._settle_lost(entry.name, task_dir)

    def _settle_lost(self, task_id: str, task_dir: Path) -> None:
        spec = _spec_of(task_dir)
        request_id, deploy_id = (spec.request_id, spec.deploy_id) if spec else (task_id, "unknown")
        target = ArchiveTarget(self.host.store, task_prefix(request_id, deploy_id, task_id))
        policy = self.host.policy(spec) if spec else None
        logs_dir = task_dir / "logs"
        if policy is not None:
            logs_dir.mkdir(exist_ok=True)
            done = archived_names(logs_dir)
            for name in sorted(os.listdir(logs_dir)):
                if parse_segment(name) is not None and name not in done and not name.startswith("."):
                    self.host.archiver.submit(logs_dir / name, target, policy)
            for stream in ("stdout", "stderr"):
                self._archive_unrotated(task_dir, logs_dir, stream, target, policy)
        body = {"taskId": task_id, "state": "TASK_LOST", "finishedAt": int(time.time() * 1000),
                "requestId": request_id, "deployId": deploy_id, "archived": False,
                "preserve": bool(spec and spec.preserve_sandbox), "message": "the agent stopped while it ran"}
        _write_json(task_dir / FINISHED_FILE, body)
        self.host.archiver.when_settled(
            target.prefix, lambda ok: _write_json(task_dir / FINISHED_FILE, {**body, "archived": ok}))

    def _archive_unrotated(self, task_dir: Path, logs_dir: Path, stream: str, target: ArchiveTarget,
                           policy: Any) -> None:
        path = task_dir / f"{stream}.log"
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        if st.st_size == 0:
            return
        seqs = [s.seq for s in (parse_segment(n) for n in os.listdir(logs_dir)) if s and s.stream == stream]
        name = segment_name(stream, max(seqs, default=0) + 1, int(st.st_ctime * 1000), int(st.st_mtime * 1000))
        self.host.archiver.submit(path, target, policy, copy_as=name)

    # -- retention -----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Prune or delete the sandboxes of finished tasks whose time has come; remove the cgroups
        of tasks that are gone."""
        live = self._live()
        if self.host.cgroups is not None:
            for task_id, group in self.host.cgroups.existing().items():
                if task_id not in live:
                    group.remove()
        if not self.sandboxes.is_dir():
            return
        settings = self.host.settings
        now_ms = time.time() * 1000
        for entry in os.scandir(self.sandboxes):
            task_id = entry.name
            if task_id in live or not entry.is_dir():
                continue
            task_dir = Path(entry.path) / task_id
            finished = _read_json(task_dir / FINISHED_FILE)
            if finished is None:
                continue  # being launched, or settled by recover() at the next start
            age = (now_ms - int(finished.get("finishedAt", now_ms))) / 1000
            if age >= settings.sandbox_delete_after_seconds:
                # Logs the store never took are kept for a second period while the archive retries.
                if finished.get("archived") or age >= 2 * settings.sandbox_delete_after_seconds:
                    shutil.rmtree(entry.path, ignore_errors=True)
                continue
            failed = finished.get("state") != "TASK_FINISHED"
            retention = settings.failed_sandbox_retention_seconds if failed else settings.sandbox_retention_seconds
            if age < retention or finished.get("pruned") or finished.get("preserve"):
                continue
            if not finished.get("archived"):
                if not self._archive_complete(task_dir, finished):
                    continue  # its logs are not all stored yet (the archiver retries them)
                finished = {**finished, "archived": True}
            self._prune(task_dir, finished)

    def _archive_complete(self, task_dir: Path, finished: dict[str, Any]) -> bool:
        """Whether every segment in logs/ reached the store (after retries of a failed archive)."""
        prefix = task_prefix(str(finished.get("requestId")), str(finished.get("deployId")), task_dir.name)
        if not self.host.archiver.settled(prefix):
            return False
        logs_dir = task_dir / "logs"
        done = archived_names(logs_dir) if logs_dir.is_dir() else set()
        names = os.listdir(logs_dir) if logs_dir.is_dir() else []
        return all(name in done for name in names if parse_segment(name) is not None)

    def _prune(self, task_dir: Path, finished: dict[str, Any]) -> None:
        lines = self.host.settings.tail_lines
        for stream in ("stdout", "stderr"):
            tail = tail_lines(task_dir / f"{stream}.log", lines)
            (task_dir / f"tail_of_finished_{stream}.log").write_bytes(tail)
        keep = _KEPT | {"tail_of_finished_stdout.log", "tail_of_finished_stderr.log"}
        for entry in os.scandir(task_dir):
            if entry.name in keep:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        _write_json(task_dir / FINISHED_FILE, {**finished, "pruned": int(time.time() * 1000)})


def _spec_of(task_dir: Path) -> TaskSpec | None:
    info = _read_json(task_dir / "task.json")
    if info is None:
        return None
    try:
        return TaskSpec.from_task_info(info)
    except PayloadError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, path)

