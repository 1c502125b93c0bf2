"""``sing executor``: Sing's executor as a Mesos custom executor (pymesos MesosExecutorDriver, v1 API).

A Mesos agent (or the embedded cluster's) starts it with the MESOS_* environment; it subscribes,
runs the task it is given with the same executor library the embedded agents use, and stops once
the task's last update was acknowledged (or when the agent shuts it down).

Settings: ``--settings FILE`` (JSON or TOML, the ``[executor]`` table of Sing's settings), else the
SING_EXECUTOR_SETTINGS variable (JSON), else defaults with the cache and log store under
``--data-dir`` (default: the sandbox).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

# pymesos installs a SIGINT handler when imported, which only works in the main thread.
from pymesos import Executor, MesosExecutorDriver

from .host import ExecutorHost
from .reactor import Reactor
from .settings import SCOPE_ENV, SETTINGS_ENV, ExecutorPaths, ExecutorSettings

log = logging.getLogger("sing.executor")
# After its last update, how long the executor waits for the acknowledgement before it stops anyway.
_ACK_WAIT_SECONDS = 10.0


class SandboxLayout:
    """A custom executor's sandbox holds one task: ``<sandbox>/<taskId>/`` as on an embedded agent."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def sandbox(self, task_id: str) -> Path:
        return self.root

    def task_dir(self, task_id: str) -> Path:
        return self.root / task_id

    def running_record(self, task_id: str) -> Path:
        return self.root / f".{task_id}.running.json"


class KillPolicyDriver(MesosExecutorDriver):  # type: ignore[misc]
    """pymesos' driver, passing on a KILL event's kill_policy, which its own on_kill drops: a destroy of a
    task being killed (a grace of 0) must bring the SIGKILL forward, as Mesos' executors do."""

    def on_kill(self, event: dict[str, Any]) -> None:
        nanos = ((event.get("kill_policy") or {}).get("grace_period") or {}).get("nanoseconds")
        grace = max(0.0, int(nanos) / 1e9) if isinstance(nanos, int | float) else None
        self.executor.killTask(self, self._dict_cls(event["task_id"]), grace)


class SingExecutor(Executor):  # type: ignore[misc]
    """pymesos callbacks, which run on the driver's IO thread: none may raise (that aborts it)."""

    def __init__(self, host: ExecutorHost) -> None:
        self.host = host
        self.driver: MesosExecutorDriver | None = None
        self._done = threading.Event()
        self._task_id: str | None = None

    def registered(self, driver: Any, executor_info: Any, framework_info: Any, agent_info: Any) -> None:
        log.info("registered with agent %s", (agent_info or {}).get("hostname"))

    def launchTask(self, driver: Any, task: dict[str, Any]) -> None:  # noqa: N802 (pymesos API)
        try:
            self._task_id = task["task_id"]["value"]
            self.host.launch(task, self._report)
        except Exception:
            log.exception("cannot launch the task")

    def killTask(self, driver: Any, task_id: dict[str, str], grace: float | None = None) -> None:  # noqa: N802
        try:
            self.host.kill(task_id["value"], grace)
        except Exception:
            log.exception("cannot kill the task")

    def frameworkMessage(self, driver: Any, message: str) -> None:  # noqa: N802
        try:
            if self._task_id is not None:
                self.host.message(self._task_id, message)
        except Exception:
            log.exception("cannot handle a framework message")

    def shutdown(self, driver: Any) -> None:
        # pymesos SIGKILLs our process group after the shutdown grace period: stop the task first.
        try:
            self.host.terminate_all(signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            while self.host.runners() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.host.terminate_all(signal.SIGKILL)
        except Exception:
            log.exception("shutdown failed")
        self._done.set()

    def error(self, driver: Any, message: str) -> None:
        log.error("agent error: %s", message)

    def _report(self, task_id: str, state: str, message: str | None, reason: str | None) -> None:
        status: dict[str, Any] = {"task_id": {"value": task_id}, "state": state}
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        try:
            assert self.driver is not None
            self.driver.sendStatusUpdate(status)
        except Exception:
            log.exception("cannot send %s for %s", state, task_id)
        if state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED"):
            threading.Thread(target=self._stop_when_acknowledged, args=(task_id,), daemon=True).start()

    def _stop_when_acknowledged(self, task_id: str) -> None:
        """The agent may also shut us down first; either way the executor then exits."""
        driver = self.driver
        assert driver is not None
        deadline = time.monotonic() + _ACK_WAIT_SECONDS
        while task_id in driver.tasks and time.monotonic() < deadline and not self._done.is_set():
            time.sleep(0.05)
        # Let the final segments of its logs reach the store before the process goes.
        self.host.archiver.drain(30.0)
        self._done.set()
        driver.stop()


def load_settings(path: Path | None) -> ExecutorSettings:
    if path is not None:
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
            return ExecutorSettings.model_validate(data.get("executor", data))
        return ExecutorSettings.model_validate_json(text)
    raw = os.environ.get(SETTINGS_ENV)
    return ExecutorSettings.model_validate_json(raw) if raw else ExecutorSettings()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sing executor", description="Sing's Mesos custom executor")
    parser.add_argument("--settings", type=Path, help="executor settings (JSON, or TOML with an [executor] table)")
    parser.add_argument("--data-dir", type=Path, help="where the artifact cache and local log store go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sandbox = Path(os.environ.get("MESOS_SANDBOX") or os.environ.get("MESOS_DIRECTORY") or os.getcwd())
    settings = load_settings(args.settings)
    paths = ExecutorPaths.resolve(settings, args.data_dir or sandbox)
    scope = os.environ.get(SCOPE_ENV) or hashlib.sha1(str(sandbox).encode()).hexdigest()[:12]
    reactor = Reactor("sing-executor-reactor")
    reactor.start()
    host = ExecutorHost(settings, paths, SandboxLayout(sandbox), scope=scope, reactor=reactor, disk_root=sandbox)
    executor = SingExecutor(host)
    driver = KillPolicyDriver(executor)
    executor.driver = driver
    try:
        driver.run()
    finally:
        host.terminate_all(signal.SIGKILL)
        host.stop()
        reactor.stop()
    return 0
