"""Wires the pieces of a backend together and starts/stops them in order."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from .cluster import EmbeddedCluster, default_agents
from .history import HistoryStore
from .loadbalancer import BaragonClient, NginxConfigurator, create_baragon_app
from .local_backend import free_port
from .loop_lag import LoopLagMonitor
from .scheduler.core import Scheduler
from .scheduler.entities import TaskEntry
from .scheduler.framework import DriverGateway
from .scheduler.healthchecker import HealthChecker
from .scheduler.history_sink import HistorySink
from .scheduler.lb_driver import LbDriver
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
        self.nginx: NginxConfigurator | None = None
        self._baragon_server: uvicorn.Server | None = None
        self._baragon_task: asyncio.Task[None] | None = None
        self.loop_lag = LoopLagMonitor()
        self.scheduler: Scheduler
        self.list_cache: ListCache
        self.http = httpx.AsyncClient(timeout=10.0)
        self.scheduler_started = False

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
        self.scheduler_started = True
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
        await self._start_load_balancer()
        self.health = HealthChecker(self.scheduler, self._result_file, s.max_concurrent_health_checks)
        self.health.start()
        self.gateway.start()
        log.info("local cluster master at %s with %d agents", self.cluster.master_address, len(specs))

    async def _start_load_balancer(self) -> None:
        mode = self.settings.load_balancer
        if mode == "none":
            return
        base_url = mode
        if mode == "nginx":
            # The built-in adapter: Baragon's request API in front of a private nginx.
            self.nginx = NginxConfigurator(self.settings.nginx_port, prefix=self.settings.data_dir / "nginx")
            await self.nginx.start()
            port = free_port()
            config = uvicorn.Config(create_baragon_app(self.nginx), host="127.0.0.1", port=port, log_level="warning",
                                    access_log=False, lifespan="off")
            self._baragon_server = uvicorn.Server(config)
            self._baragon_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            self._baragon_task = asyncio.get_running_loop().create_task(self._baragon_server.serve())
            while not self._baragon_server.started:
                await asyncio.sleep(0.01)
            base_url = f"http://127.0.0.1:{port}/baragon/v2"
            log.info("load balancer: nginx on port %d", self.settings.nginx_port)
        self.scheduler.lb = LbDriver(BaragonClient(base_url), self.scheduler.on_lb_result)

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
        if self.scheduler_started:
            await self.scheduler.stop()
        if self.scheduler_started and self.scheduler.lb is not None:
            await self.scheduler.lb.stop()
        if self._baragon_server is not None:
            self._baragon_server.should_exit = True
            if self._baragon_task is not None:
                await self._baragon_task
        if self.nginx is not None:
            await self.nginx.stop()
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
