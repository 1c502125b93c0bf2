"""Turn a Mesos CommandInfo into a running process inside its task directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def command_of(task_info: dict[str, Any]) -> dict[str, Any]:
    """The task's CommandInfo; ValueError when it cannot be run by this cluster."""
    if "executor" in task_info:
        raise ValueError("custom executors are not supported; give the task a command")
    command = task_info.get("command")
    if not isinstance(command, dict):
        raise ValueError("task has no command")
    value = command.get("value")
    if not isinstance(value, str) or not value:
        raise ValueError("command.value must be a non-empty string")
    arguments = command.get("arguments", [])
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise ValueError("command.arguments must be a list of strings")
    _user_variables(command)  # validated now so a bad task is TASK_ERROR, not a failed launch
    return command


def _argv(command: dict[str, Any]) -> tuple[str, list[str]]:
    """Executable and argv. Mesos semantics: with shell=false, ``arguments`` includes argv[0]."""
    value: str = command["value"]
    if command.get("shell", True):
        return "/bin/sh", ["/bin/sh", "-c", value]
    return value, list(command.get("arguments") or [value])


def _user_variables(command: dict[str, Any]) -> dict[str, str]:
    variables = (command.get("environment") or {}).get("variables") or []
    if not isinstance(variables, list):
        raise ValueError("command.environment.variables must be a list")
    env = {}
    for var in variables:
        name, value = (var or {}).get("name"), (var or {}).get("value")
        if not isinstance(name, str) or not name or "=" in name or not isinstance(value, str):
            raise ValueError("each environment variable needs a string name (no '=') and a string value")
        env[name] = value
    return env


def task_environment(command: dict[str, Any], task_id: str, task_dir: Path) -> dict[str, str]:
    """A small, predictable base (not the backend's whole environment) plus the task's own variables."""
    env = {
        "PATH": os.environ.get("PATH", _DEFAULT_PATH),
        "HOME": os.environ.get("HOME", str(task_dir)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "MESOS_SANDBOX": str(task_dir),
        "MESOS_DIRECTORY": str(task_dir),
        "MESOS_TASK_ID": task_id,
    }
    env.update(_user_variables(command))
    return env


def prepare_task_dir(task_dir: Path) -> None:
    """What the process needs before it starts: ``app/``, its cwd.

    Each directory or file creation can cost most of a millisecond on a VM disk, so everything
    else waits until the task is reported running (see ``finish_task_dir``).
    """
    os.makedirs(task_dir / "app", exist_ok=True)


def finish_task_dir(task_dir: Path, task_info: dict[str, Any]) -> None:
    os.makedirs(task_dir / "logs", exist_ok=True)
    (task_dir / "task.json").write_bytes(orjson.dumps(task_info, option=orjson.OPT_INDENT_2))


def spawn(command: dict[str, Any], task_id: str, task_dir: Path) -> subprocess.Popen[bytes]:
    """Start the command in its own session (so its whole process group can be signalled).

    Raises OSError when the executable cannot be started.
    """
    executable, argv = _argv(command)
    with open(task_dir / "stdout.log", "ab") as out, open(task_dir / "stderr.log", "ab") as err:
        return subprocess.Popen(
            argv,
            executable=executable,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=task_dir / "app",
            env=task_environment(command, task_id, task_dir),
            start_new_session=True,
            close_fds=True,
        )
