from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from sing_backend.loadbalancer import BaragonClient, BaragonRequestState


class NamedUpstream:
    """A tiny HTTP server that answers every request with its own name; `stop` kills it outright."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = self.name.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def lb_request(
    request_id: str,
    service_id: str = "web",
    base_path: str = "/web",
    add: list[str] | None = None,
    remove: list[str] | None = None,
    action: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "loadBalancerRequestId": request_id,
        "loadBalancerService": {
            "serviceId": service_id,
            "owners": ["team@example.com"],
            "serviceBasePath": base_path,
            "loadBalancerGroups": ["default"],
        },
        "addUpstreams": [{"upstream": u, "requestId": service_id} for u in add or []],
        "removeUpstreams": [{"upstream": u, "requestId": service_id} for u in remove or []],
    }
    if action:
        body["action"] = action
    return body


async def wait_done(client: BaragonClient, lb_request_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """Poll until the request leaves WAITING; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        state = await client.status(lb_request_id)
        assert state is not None, f"{lb_request_id} is unknown"
        if not BaragonRequestState(state["loadBalancerState"]).in_progress:
            return state
        assert time.monotonic() < deadline, f"{lb_request_id} still {state} after {timeout}s"
        await asyncio.sleep(0.02)


async def apply(client: BaragonClient, body: dict[str, Any]) -> dict[str, Any]:
    await client.submit(body)
    return await wait_done(client, body["loadBalancerRequestId"])


def plain_http() -> httpx.AsyncClient:
    # A new connection per request, like curl: keep-alive would tie a client to one nginx worker.
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), timeout=5.0)


async def fetch_names(url: str, count: int) -> list[str]:
    async with plain_http() as http:
        names = []
        for _ in range(count):
            response = await http.get(url)
            assert response.status_code == 200, response.text
            names.append(response.text)
        return names
