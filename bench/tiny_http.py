"""A minimal HTTP responder (asyncio protocol, 200 "ok" to anything) used as a cheap check target, so
the machine's CPU goes to the system under test rather than to the target.
Run: python -m bench.tiny_http PORT
"""

from __future__ import annotations

import asyncio
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class Responder(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # One response per request head received (keep-alive clients send one at a time).
        for _ in range(max(1, data.count(b"\r\n\r\n"))):
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Responder, "0.0.0.0", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
