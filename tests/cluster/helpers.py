"""A recording pymesos scheduler and small polling helpers for the cluster tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pymesos import MesosSchedulerDriver, Scheduler

T = TypeVar("T")

DEADLINE = 10.0


def wait_on(cond: threading.Condition, predicate: Callable[[], T | None], timeout: float,
            what: Callable[[], str]) -> T:
    """The first true value of `predicate`, evaluated under `cond` each time it is notified."""
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what()}")
            cond.wait(remaining)


def eventually(check: Callable[[], T | None], timeout: float = DEADLINE, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Recorder(Scheduler):
    """Collects every callback; all methods are safe to call from the test thread.

    Callbacks never raise: an exception in one would abort the pymesos driver.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []
        self.offers: dict[str, dict[str, Any]] = {}  # outstanding, by offer id
        self.updates: list[dict[str, Any]] = []
        self.update_times: list[float] = []  # time.monotonic() each update came, in the same order
        self.framework_id: str | None = None

    def _add(self, kind: str, payload: Any) -> None:
        with self._cond:
            self.events.append((kind, payload))
            self._cond.notify_all()

    # -- pymesos callbacks ---------------------------------------------------------------------

    def registered(self, driver: Any, framework_id: dict[str, str], master_info: Any) -> None:
        with self._cond:
            self.framework_id = framework_id["value"]
        self._add("registered", framework_id["value"])

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._add("reregistered", master_info)

    def disconnected(self, driver: Any) -> None:
        self._add("disconnected", None)

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:
        with self._cond:
            for offer in offers:
                self.offers[offer["id"]["value"]] = offer
        self._add("offers", offers)

    def offerRescinded(self, driver: Any, offer_id: dict[str, str]) -> None:
        with self._cond:
            self.offers.pop(offer_id["value"], None)
        self._add("rescind", offer_id["value"])

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:
        with self._cond:
            self.updates.append(status)
            self.update_times.append(time.monotonic())
        self._add("update", status)

    def slaveLost(self, driver: Any, agent_id: dict[str, str]) -> None:
        self._add("agent_lost", agent_id["value"])

    def error(self, driver: Any, message: str) -> None:
        self._add("error", message)

    def forget(self, offer: dict[str, Any]) -> None:
        with self._cond:
            self.offers.pop(offer["id"]["value"], None)

    # -- queries -------------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], T | None], timeout: float = DEADLINE, what: str = "event") -> T:
        return wait_on(self._cond, predicate, timeout, lambda: f"{what}; events: {self.events}")

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for k, _ in self.events if k == kind)

    def wait_event(self, kind: str, after: int = 0, timeout: float = DEADLINE) -> Any:
        """The first ``kind`` event beyond the first ``after`` ones."""

        def find() -> list[Any] | None:
            found = [p for k, p in self.events if k == kind]
            return [found[after]] if len(found) > after else None

        return self.wait(find, timeout, what=kind)[0]

    def offer_for(self, agent_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((o for o in self.offers.values() if o["agent_id"]["value"] == agent_id), None)

        return self.wait(find, timeout, what=f"an offer from {agent_id}")

    def status(self, task_id: str, state: str, timeout: float = DEADLINE, **match: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next(
                (
                    u
                    for u in self.updates
                    if u["task_id"]["value"] == task_id
                    and u["state"] == state
                    and all(u.get(k) == v for k, v in match.items())
                ),
                None,
            )

        return self.wait(find, timeout, what=f"{state} for {task_id} {match or ''}")

    def states(self, task_id: str) -> list[str]:
        with self._cond:
            return [u["state"] for u in self.updates if u["task_id"]["value"] == task_id]


def start_driver(master: str, recorder: Recorder, **kwargs: Any) -> MesosSchedulerDriver:
    framework = {"user": "root", "name": "sing-cluster-test", "failover_timeout": 60.0}
    framework.update(kwargs.pop("framework", {}))
    driver = MesosSchedulerDriver(recorder, framework, master, **kwargs)
    driver.start()
    recorder.wait_event("registered")
    return driver


def scalar(offer: dict[str, Any], name: str) -> float:
    return next((r["scalar"]["value"] for r in offer["resources"] if r["name"] == name), 0.0)


def port_ranges(offer: dict[str, Any]) -> list[tuple[int, int]]:
    for r in offer["resources"]:
        if r["name"] == "ports":
            return [(x["begin"], x["end"]) for x in r["ranges"]["range"]]
    return []


def task_info(
    task_id: str,
    offer: dict[str, Any],
    command: str | dict[str, Any],
    *,
    cpus: float = 0.1,
    mem: float = 32.0,
    ports: list[int] | None = None,
    env: dict[str, str] | None = None,
    grace_seconds: float | None = None,
) -> dict[str, Any]:
    """A TaskInfo for ``offer``; ports are set as PORT0.. like Sing's scheduler does."""
    resources: list[dict[str, Any]] = [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]
    variables = [{"name": "TASK_ID", "value": task_id}]
    if ports:
        resources.append(
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": p, "end": p} for p in ports]}}
        )
        variables += [{"name": f"PORT{i}", "value": str(p)} for i, p in enumerate(ports)]
    variables += [{"name": k, "value": v} for k, v in (env or {}).items()]
    cmd = {"value": command, "shell": True} if isinstance(command, str) else dict(command)
    cmd["environment"] = {"variables": variables}
    info: dict[str, Any] = {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "resources": resources,
        "command": cmd,
    }
    if grace_seconds is not None:
        info["kill_policy"] = {"grace_period": {"nanoseconds": int(grace_seconds * 1e9)}}
    return info


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in process group ``pgid`` (orphans may linger as zombies
    when PID 1 does not reap)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :].split()[0] != b"Z"
