"""A lean HTTP/1.1 keep-alive load generator (asyncio streams), so the client costs little CPU.

Run as its own process: python -m bench.loadgen HOST PORT PATH CONNECTIONS SECONDS
Prints one JSON line: {"requests": n, "seconds": s, "latencies_ms": [...]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _worker(host: str, port: int, path: str, deadline: float, latencies: list[float],
                  accept_gzip: bool) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    extra = "Accept-Encoding: gzip\r\n" if accept_gzip else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"{path}: {status!r}")
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
    finally:
        writer.close()


async def run(host: str, port: int, path: str, connections: int, seconds: float, accept_gzip: bool) -> dict:
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_worker(host, port, path, deadline, latencies, accept_gzip) for _ in range(connections)))
    return {"requests": len(latencies), "seconds": time.perf_counter() - start, "latencies_ms": latencies}


if __name__ == "__main__":
    host, port, path, conns, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    gzip = len(sys.argv) > 6 and sys.argv[6] == "gzip"  # else identity
    print(json.dumps(asyncio.run(run(host, port, path, conns, secs, gzip))))
