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


def sandboxes_in_state(state: dict[str, Any]) -> dict[str, str]:
    """Task id -> sandbox directory, for every task an agent's /state lists (running, queued or ended)."""
    found: dict[str, str] = {}
    for framework in [*state.get("frameworks", ()), *state.get("completed_frameworks", ())]:
        for executor in [*framework.get("executors", ()), *framework.get("completed_executors", ())]:
            directory = executor.get("directory")
            if not directory:
                continue
            tasks = [*executor.get("tasks", ()), *executor.get("queued_tasks", ()),
                     *executor.get("completed_tasks", ())]
            # The command executor runs one task under its own id; a custom one lists its tasks.
            for task_id in [executor.get("id"), *(task.get("id") for task in tasks)]:
                if task_id:
                    found.setdefault(task_id, directory)
    return found


def agent_address(url: dict[str, Any]) -> str:
    """The base address of an agent's HTTP API, from the `url` (a Mesos URL) of its offers."""
    addr = url.get("address", {})
    return f"{url.get('scheme', 'http')}://{addr.get('ip') or addr.get('hostname')}:{addr.get('port')}"


def offered_url(task: dict[str, Any]) -> dict[str, Any] | None:
    """The `url` of the offer a task was launched on (a SingularityTask's `offers`): its agent's address,
    for a backend that has had no offer from that agent yet."""
    url: dict[str, Any] | None = (task.get("offers") or [{}])[0].get("url")
    return url


def offered_agent_address(task: dict[str, Any]) -> str | None:
    """The base address of a task's agent as the offer it was launched on gave it."""
    url = offered_url(task)
    return agent_address(url) if url else None


async def agent_sandboxes(http: httpx.AsyncClient, agent_url: str) -> dict[str, str]:
    """The sandboxes an agent lists in its /state (see sandboxes_in_state); none if it does not answer."""
    try:
        resp = await http.get(f"{agent_url}/state", timeout=STATE_TIMEOUT_SECONDS)
        resp.raise_for_status()
        return sandboxes_in_state(resp.json())
    except (httpx.HTTPError, ValueError):
        return {}


def leaves(relative: str) -> str | None:
    """Why a path given relative to a task's sandbox could lead out of it, or None if it cannot."""
    if "\x00" in relative:
        return "contains a NUL byte"
    path = PurePosixPath(relative)
    if path.is_absolute():
        return "must be relative to the task's sandbox, not absolute"
    if ".." in path.parts:
        return "must not contain '..'"
    return None


def inside(relative: str) -> bool:
    """Whether a path given relative to a task's sandbox names something inside it."""
    return bool(relative) and leaves(relative) is None
