"""Starting a custom executor (a TaskInfo with ``executor``) as its own process, as a Mesos agent does.

The executor gets the v1 executor API environment (MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID,
MESOS_EXECUTOR_ID...) and talks back to this agent's ``/api/v1/executor``. It runs in its own
session: pymesos' executor driver SIGKILLs its whole process group when it shuts down.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from typing import Any

from ..executor.procs import MARKER_VAR
from ..executor.settings import SCOPE_ENV, SETTINGS_ENV

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The executor may take this long beyond the task's kill grace to shut down before it is SIGKILLed.
SHUTDOWN_MARGIN_SECONDS = 5.0


def executor_problem(info: dict[str, Any]) -> str | None:
    """Why the TaskInfo's ExecutorInfo cannot be launched, or None."""
    executor = info.get("executor")
    if not isinstance(executor, dict):
        return "executor must be an object"
    if "command" in info:
        return "a task has either a command or an executor, not both"
    eid = (executor.get("executor_id") or {}).get("value") if isinstance(executor.get("executor_id"), dict) else None
    if not isinstance(eid, str) or not eid or "/" in eid:
        return "executor.executor_id.value must be a non-empty string without '/'"
    command = executor.get("command")
    if not isinstance(command, dict) or not isinstance(command.get("value"), str) or not command["value"]:
        return "executor.command.value must be a non-empty string"
    return None


def executor_id_of(info: dict[str, Any]) -> str:
    return str(info["executor"]["executor_id"]["value"])


def spawn_executor(
    info: dict[str, Any],
    *,
    sandbox: Path,
    framework_id: str,
    agent_id: str,
    endpoint: str,
    marker: str,
    scope: str,
    settings_json: str,
    grace_seconds: float,
) -> subprocess.Popen[bytes]:
    """Start the executor in ``sandbox`` (its output goes to executor.log there). Raises OSError."""
    executor = info["executor"]
    command = executor["command"]
    env = {
        "PATH": os.environ.get("PATH", _DEFAULT_PATH),
        "HOME": os.environ.get("HOME", str(sandbox)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    # An editable install or a source checkout must be importable by `python -m sing_backend.executor`.
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    for var in (command.get("environment") or {}).get("variables") or []:
        if isinstance(var, dict) and isinstance(var.get("name"), str) and isinstance(var.get("value"), str):
            env[var["name"]] = var["value"]
    env.update({
        "MESOS_AGENT_ENDPOINT": endpoint,
        "MESOS_FRAMEWORK_ID": framework_id,
        "MESOS_EXECUTOR_ID": executor_id_of(info),
        "MESOS_SLAVE_ID": agent_id,
        "MESOS_AGENT_ID": agent_id,
        "MESOS_DIRECTORY": str(sandbox),
        "MESOS_SANDBOX": str(sandbox),
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{math.ceil(grace_seconds + SHUTDOWN_MARGIN_SECONDS)}secs",
        SETTINGS_ENV: settings_json,
        SCOPE_ENV: scope,
        # Inherited by the executor and by the task it starts: the agent can always find both.
        MARKER_VAR: marker,
    })
    sandbox.mkdir(parents=True, exist_ok=True)
    shell = command.get("shell", True)
    argv = ["/bin/sh", "-c", command["value"]] if shell else list(command.get("arguments") or [command["value"]])
    with open(sandbox / "executor.log", "ab") as log:
        return subprocess.Popen(argv, executable=argv[0] if shell else command["value"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, cwd=sandbox, env=env, start_new_session=True,
                                close_fds=True)
