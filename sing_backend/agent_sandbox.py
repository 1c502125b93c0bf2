"""Where a task's sandbox is on its agent, asked of the agent as Singularity does.

Mesos never tells a scheduler a task's sandbox directory: the agent's `/state` lists it, per executor
(`frameworks[].executors[].directory`, and `completed_executors` once the task has ended). The embedded
cluster knows it without asking; in mesos mode the backend asks the agent.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import httpx

STATE_TIMEOUT_SECONDS = 5.0


def sandbox_in_state(state: dict[str, Any], task_id: str) -> str | None:
    """The directory of the executor that runs (or ran) `task_id`, in an agent's /state."""
    for framework in [*state.get("frameworks", ()), *state.get("completed_frameworks", ())]:
        for executor in [*framework.get("executors", ()), *framework.get("completed_executors", ())]:
            tasks = [*executor.get("tasks", ()), *executor.get("queued_tasks", ()),
                     *executor.get("completed_tasks", ())]
            if executor.get("id") == task_id or any(task.get("id") == task_id for task in tasks):
                return executor.get("directory") or None
    return None


async def find_sandbox(http: httpx.AsyncClient, agent_url: str, task_id: str) -> str | None:
    """The task's sandbox directory, from its agent's /state; None if the agent does not list it (yet)
    or does not answer."""
    try:
        resp = await http.get(f"{agent_url}/state", timeout=STATE_TIMEOUT_SECONDS)
        resp.raise_for_status()
        return sandbox_in_state(resp.json(), task_id)
    except (httpx.HTTPError, ValueError):
        return None


def inside(relative: str) -> bool:
    """Whether a path given relative to a directory stays inside it."""
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts and "\x00" not in relative
