"""BaragonClient against endpoints that hang, fail or talk nonsense."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from sing_backend.loadbalancer import BaragonClient, LoadBalancerError


class CannedServer:
    """Answers every request with a fixed raw HTTP response, or never answers when it is None."""

    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw
        self.requests = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CannedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/baragon/v2"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.raw is None:
                await reader.read()  # hang until the client gives up
                return
            writer.write(self.raw)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def http_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


@pytest.fixture
async def hanging() -> AsyncIterator[CannedServer]:
    async with CannedServer(None) as server:
        yield server


async def test_hanging_endpoint_is_bounded_by_the_timeout(hanging: CannedServer) -> None:
    async with BaragonClient(hanging.url, timeout=0.3, retries=1, retry_delay=0.05) as client:
        started = time.monotonic()
        with pytest.raises(LoadBalancerError, match="timed out") as info:
            await client.status("web-t1-ADD-1")
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 2.0
    assert info.value.status_code is None
    assert hanging.requests == 2


async def test_server_errors_are_retried_then_raised() -> None:
    async with CannedServer(http_response("503 Service Unavailable", b"overloaded", "text/plain")) as server:
        async with BaragonClient(server.url, timeout=1.0, retries=2, retry_delay=0.01) as client:
            with pytest.raises(LoadBalancerError, match="503") as info:
                await client.submit({"loadBalancerRequestId": "x"})
    assert info.value.status_code == 503
    assert server.requests == 3


async def test_garbage_is_an_error() -> None:
    async with CannedServer(http_response("200 OK", b"<html>not baragon</html>", "text/html")) as server:
        async with BaragonClient(server.url, timeout=1.0) as client:
            with pytest.raises(LoadBalancerError, match="no BaragonResponse"):
                await client.status("web-t1-ADD-1")


async def test_refused_request_is_not_retried() -> None:
    async with CannedServer(http_response("422 Unprocessable Entity", b'{"errors":["bad"]}')) as server:
        async with BaragonClient(server.url, timeout=1.0, retries=3) as client:
            with pytest.raises(LoadBalancerError) as info:
                await client.submit({"loadBalancerRequestId": "x"})
    assert info.value.status_code == 422
    assert server.requests == 1


async def test_nothing_listening_is_an_error() -> None:
    async with CannedServer(None) as server:
        url = server.url
    async with BaragonClient(url, timeout=1.0, retries=0) as client:
        with pytest.raises(LoadBalancerError, match="ConnectError"):
            await client.cancel("web-t1-ADD-1")
