from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from sing_backend.loadbalancer import BaragonClient, NginxConfigurator, create_baragon_app

from .helpers import NamedUpstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def nginx(tmp_path: Any) -> AsyncIterator[NginxConfigurator]:
    configurator = NginxConfigurator(free_port(), tmp_path / "nginx")
    await configurator.start()
    try:
        yield configurator
    finally:
        await configurator.stop()


class BaragonServer:
    """The Baragon-compatible app served by uvicorn on a real port, in the test's event loop."""

    def __init__(self, nginx: NginxConfigurator) -> None:
        self.app = create_baragon_app(nginx)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/baragon/v2"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert not self._task.done(), "uvicorn exited during startup"
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)


@pytest.fixture
async def baragon(nginx: NginxConfigurator) -> AsyncIterator[BaragonServer]:
    server = BaragonServer(nginx)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(baragon: BaragonServer) -> AsyncIterator[BaragonClient]:
    async with BaragonClient(baragon.api_url, timeout=5.0) as c:
        yield c


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[str], Awaitable[NamedUpstream]]]:
    started: list[NamedUpstream] = []

    async def start(name: str) -> NamedUpstream:
        upstream = NamedUpstream(name)
        await upstream.start()
        started.append(upstream)
        return upstream

    try:
        yield start
    finally:
        for upstream in started:
            await upstream.stop()
