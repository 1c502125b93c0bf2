"""Where an agent keeps things on disk, and which paths the files API may serve.

Layout under ``work_dir/agents/<agent_id>/``::

    sandboxes/<T>/            the task's sandbox root (Mesos' executor "directory"; executor.log of a
                              custom executor)
    sandboxes/<T>/<T>/        the task directory: stdout.log, stderr.log, task.json, deploy.env,
                              finished.json, app/ (cwd, artifacts), logs/ (rotated, gzipped output)
    running/<T>.json          a record per live process, used to kill orphans after a crash
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_TASK_ID_LENGTH = 255


def task_id_problem(task_id: object) -> str | None:
    """Why ``task_id`` cannot name a directory, or None when it is fine."""
    if not isinstance(task_id, str) or not task_id:
        return "task_id.value must be a non-empty string"
    if len(task_id) > MAX_TASK_ID_LENGTH:
        return f"task_id is longer than {MAX_TASK_ID_LENGTH} characters"
    if task_id in (".", "..") or "/" in task_id or "\0" in task_id:
        return "task_id must not contain '/' or NUL, nor be '.' or '..'"
    return None


class AgentLayout:
    def __init__(self, agent_dir: Path) -> None:
        self.root = agent_dir
        self.sandboxes = agent_dir / "sandboxes"
        self.running = agent_dir / "running"

    def create(self) -> None:
        self.sandboxes.mkdir(parents=True, exist_ok=True)
        self.running.mkdir(parents=True, exist_ok=True)

    def sandbox(self, task_id: str) -> Path:
        return self.sandboxes / task_id

    def task_dir(self, task_id: str) -> Path:
        return self.sandboxes / task_id / task_id

    def running_record(self, task_id: str) -> Path:
        return self.running / f"{task_id}.json"

    def resolve_served_path(self, raw: str) -> Path:
        """The real path the files API may serve for ``raw``.

        Raises PermissionError for anything outside ``sandboxes/`` (``..`` segments, symlinks pointing
        out) and ValueError for a path that is not absolute. Existence is the caller's business.
        """
        if not raw or not raw.startswith("/"):
            raise ValueError("path must be an absolute path")
        if "\0" in raw or ".." in raw.split("/"):
            raise PermissionError("path must not contain '..'")
        root = os.path.realpath(self.sandboxes)
        real = os.path.realpath(raw)
        if real != root and not real.startswith(root + os.sep):
            raise PermissionError("path is outside this agent's sandboxes")
        return Path(real)
