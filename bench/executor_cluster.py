"""What the executor benchmarks share: an embedded cluster driven by pymesos, TaskInfos with the
executor payload, and a counting HTTP file server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymesos  # noqa: F401  (pymesos must first be imported in the main thread)
from pymesos import MesosSchedulerDriver, Scheduler

from sing_backend.cluster import EmbeddedCluster, default_agents
from sing_backend.executor.payload import attach_payload, task_payload
from sing_backend.executor.settings import ExecutorSettings


class StatusRecorder(Scheduler):  # type: ignore[misc]
    """Keeps offers and the time each task reached each state."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.offers: list[dict[str, Any]] = []
        self.seen: dict[tuple[str, str], float] = {}
        self.messages: dict[str, str] = {}

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802
        with self.cond:
            self.offers.extend(offers)
            self.cond.notify_all()

    def offerRescinded(self, driver: Any, offer_id: dict[str, str]) -> None:  # noqa: N802
        with self.cond:
            self.offers = [o for o in self.offers if o["id"] != offer_id]

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:  # noqa: N802
        with self.cond:
            key = (status["task_id"]["value"], status["state"])
            self.seen.setdefault(key, time.perf_counter())
            if status.get("message"):
                self.messages[key[0]] = status["message"]
            self.cond.notify_all()

    def take_offer(self, timeout: float = 30.0) -> dict[str, Any]:
        with self.cond:
            if not self.cond.wait_for(lambda: self.offers, timeout):
                raise TimeoutError("no offer")
            return self.offers.pop(0)

    def wait(self, task_id: str, states: tuple[str, ...], timeout: float = 120.0) -> tuple[str, float]:
        def found() -> tuple[str, float] | None:
            return next(((s, self.seen[(task_id, s)]) for s in states if (task_id, s) in self.seen), None)

        with self.cond:
            result = self.cond.wait_for(found, timeout)
            if not result:
                raise TimeoutError(f"{task_id} reached none of {states}")
            return result


@contextmanager
def cluster(data_dir: Path, settings: ExecutorSettings) -> Iterator[tuple[MesosSchedulerDriver, StatusRecorder]]:
    spec = default_agents(1)[0]
    big = spec.__class__(agent_id=spec.agent_id, hostname=spec.hostname, rack_id=spec.rack_id, cpus=64,
                         mem_mb=256 * 1024, disk_mb=1024 * 1024, ports=spec.ports)
    embedded = EmbeddedCluster(data_dir / "cluster", [big], executor=settings, kill_grace_seconds=1.0)
    embedded.start()
    sched = StatusRecorder()
    driver = MesosSchedulerDriver(sched, {"user": "root", "name": "sing-bench"}, embedded.master_address)
    driver.start()
    try:
        yield driver, sched
    finally:
        driver.stop()
        driver.join()
        embedded.stop()


def task(task_id: str, command: str, deploy: dict[str, Any] | None = None, *, mem: float = 32.0) -> dict[str, Any]:
    info = {
        "name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": "agent-1"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
        "command": {"value": command, "shell": True},
    }
    return attach_payload(info, task_payload({"requestId": "bench", "id": "v1", **(deploy or {})}))
