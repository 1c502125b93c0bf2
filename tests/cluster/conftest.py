from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymesos  # noqa: F401  (pymesos must first be imported in the main thread)
import pytest

from sing_backend.cluster import EmbeddedCluster, default_agents

from .helpers import Recorder, start_driver


@dataclass
class Harness:
    cluster: EmbeddedCluster
    driver: pymesos.MesosSchedulerDriver
    sched: Recorder

    def launch(self, offer: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        """Launch on ``offer`` and forget it (the recorder only keeps offers still usable)."""
        self.sched.forget(offer)
        self.driver.launchTasks(offer["id"], tasks)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    c = EmbeddedCluster(tmp_path / "cluster", default_agents(3), heartbeat_interval=1.0, kill_grace_seconds=1.0)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def harness(cluster: EmbeddedCluster) -> Iterator[Harness]:
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched)
    try:
        yield Harness(cluster, driver, sched)
    finally:
        driver.stop(failover=True)
        driver.join()
