"""Wires the pieces of a backend together and starts/stops them in order."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import httpx

from .cluster import EmbeddedCluster, default_agents
from .history import HistoryStore
from .loop_lag import LoopLagMonitor
from .scheduler.core import Scheduler
from .scheduler.entities import TaskEntry
from .scheduler.framework import DriverGateway
from .scheduler.healthchecker import HealthChecker
from .scheduler.history_sink import HistorySink
from .scheduler.views_cache import ListCache
from .settings import Settings
from .state.sqlite import SqliteStateStore

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: SqliteStateStore | None = None
        self.history: HistoryStore | None = None
        self.sink = HistorySink()
        self.cluster: EmbeddedCluster | None = None
        self.gateway: DriverGateway | None = None
        self.health: HealthChecker | None = None
        self.loop_lag = LoopLagMonitor()
        self.scheduler: Scheduler
        self.list_cache: ListCache
        self.http = httpx.AsyncClient(timeout=10.0)

    async def start(self) -> None:
        s = self.settings
        # Helper threads (health checks, the Mesos driver, the cluster) take the GIL in turns with the
        # event loop; a short switch interval keeps the loop from waiting 5 ms at every hand-back.
        sys.setswitchinterval(0.0005)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStateStore(s.state_path)
        self.history = await HistoryStore.open(s.history_url)
        self.sink.start()
        self.scheduler = Scheduler(s, self.store, self.history, self.sink)
        self.scheduler.load()
        self.list_cache = ListCache(self.scheduler)
        a = s.agents
        specs = default_agents(a.count, a.racks)
        specs = [spec.__class__(agent_id=spec.agent_id, hostname=spec.hostname, rack_id=spec.rack_id, cpus=a.cpus,
                                mem_mb=a.mem_mb, disk_mb=a.disk_mb,
                                ports=(a.first_port + i * a.ports_per_agent,
                                       a.first_port + (i + 1) * a.ports_per_agent - 1))
                 for i, spec in enumerate(specs)]
        self.cluster = EmbeddedCluster(s.cluster_dir, specs, simulated=s.simulated_agents,
                                       kill_grace_seconds=s.kill_grace_seconds)
        await asyncio.to_thread(self.cluster.start)
        self.scheduler.sandbox_locator = self._sandbox_dir
        loop = asyncio.get_running_loop()
        self.gateway = DriverGateway(self.scheduler, self.cluster.master_address, loop)
        self.scheduler.gateway = self.gateway
        self.scheduler.start()
        self.loop_lag.start()
        self.health = HealthChecker(self.scheduler, self._result_file, s.max_concurrent_health_checks)
        self.health.start()
        self.gateway.start()
        log.info("local cluster master at %s with %d agents", self.cluster.master_address, len(specs))

    def _sandbox_dir(self, task_id: str) -> str | None:
        if self.cluster is None:
            return None
        found = self.cluster.sandbox_dir(task_id)
        return str(found) if found else None

    def _result_file(self, task: TaskEntry, path: str) -> Path | None:
        """Where a task's process-level health-check file appears (under its app/ directory)."""
        directory = task.directory or self._sandbox_dir(task.id)
        if directory is None:
            return None
        app = Path(directory) / task.id / "app"
        target = (app / path).resolve()
        return target if target.is_relative_to(app.resolve()) else None

    def agent_url(self, agent_id: str) -> str | None:
        if self.cluster is not None:
            try:
                return self.cluster.agent_url(agent_id)
            except KeyError:
                return None
        return self.scheduler.agent_urls.get(agent_id)

    async def history_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Read from the history store after every queued write has landed."""
        await self.sink.drain()
        assert self.history is not None
        return await getattr(self.history, name)(*args, **kwargs)

    async def task_history(self, task_id: str) -> dict[str, Any] | None:
        from .api.views import task_history_live

        task = self.scheduler.tasks.get(task_id)
        if task is not None:
            return task_history_live(task)
        return await self.history_call("task_history", task_id)

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self.health is not None:
            await self.health.stop()
        if hasattr(self, "scheduler"):
            await self.scheduler.stop()
        if self.gateway is not None:
            await asyncio.to_thread(self.gateway.stop)
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        await self.sink.close()
        if self.history is not None:
            await self.history.close()
        if self.store is not None:
            self.store.close()
        await self.http.aclose()
