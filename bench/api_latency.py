"""API latency and throughput at scale: 1,000 requests and 5,000 active tasks.

The embedded cluster runs in its benchmark-only *simulated-agent* mode (tasks report RUNNING without a
process), so 5,000 tasks fit on this machine. 32 concurrent keep-alive clients hit each endpoint; the
baseline is a bare FastAPI/uvicorn endpoint returning the same bytes, measured in the same run. Each endpoint is
measured twice: plain, and with `Accept-Encoding: gzip` as httpx, curl --compressed and browsers send it.
Usage: python -m bench.api_latency [--requests 1000] [--instances 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sing_backend.local_backend import Backend, free_port, wait_for

from .stats import percentile


def populate(backend: Backend, requests: int, instances: int) -> None:
    with httpx.Client(base_url=backend.url, timeout=30) as c:
        for i in range(requests):
            rid = f"svc-{i:05d}"
            c.post("/api/requests", json={"id": rid, "requestType": "WORKER", "instances": instances,
                                          "owners": ["team@example.com"]}).raise_for_status()
            c.post("/api/deploys", json={"deploy": {
                "requestId": rid, "id": "v1", "command": "sleep 1000", "env": {"SERVICE": rid},
                "resources": {"cpus": 0.01, "memoryMb": 1}, "considerHealthyAfterRunningForSeconds": 0}}
            ).raise_for_status()
    want = requests * instances
    wait_for(lambda: backend.get("/api/state")["activeTasks"] >= want and
             backend.get("/api/state")["scheduledTasks"] == 0, timeout=300, interval=0.5,
             what=f"{want} active tasks")


def load(port: int, path: str, connections: int, seconds: float, encoding: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", "127.0.0.1", str(port), path, str(connections),
                          str(seconds), encoding], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def report(name: str, result: dict) -> tuple[float, float]:
    rps = result["requests"] / result["seconds"]
    p99 = percentile(result["latencies_ms"], 99)
    p50 = percentile(result["latencies_ms"], 50)
    print(f"  {name:32s} {rps:8.1f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    return rps, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    env = {"SING_SIMULATED_AGENTS": "true", "SING_AGENTS__COUNT": "20", "SING_AGENTS__CPUS": "1000",
           "SING_AGENTS__MEM_MB": "1000000", "SING_LIMITS__MAX_INSTANCES": "1000"}
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp) / "data", env=env).start()
        bare_proc = None
        try:
            t0 = time.perf_counter()
            populate(backend, args.requests, args.instances)
            print(f"populated {args.requests} requests x {args.instances} instances in "
                  f"{time.perf_counter() - t0:.1f} s (simulated agents)")
            print(f"API latency, {args.connections} concurrent clients, {args.seconds:g} s each")
            for path, encoding in [(p, e) for p in ("/api/requests", "/api/tasks/active")
                                   for e in ("identity", "gzip")]:
                with backend.client.stream("GET", path, headers={"Accept-Encoding": encoding}) as r:
                    body = b"".join(r.iter_raw())
                body_file = Path(tmp) / "body.json"
                body_file.write_bytes(body)
                bare_port = free_port()
                bare_proc = subprocess.Popen([sys.executable, "-m", "bench.bare_server", str(bare_port),
                                              str(body_file), encoding])
                wait_for(lambda port=bare_port: httpx.get(f"http://127.0.0.1:{port}/bare").status_code == 200,
                         what="bare server")
                sing_rps, sing_p99 = report(f"{path} [{encoding}, {len(body) / 1e6:.2f} MB]",
                                            load(backend.port, path, args.connections, args.seconds, encoding))
                bare_rps, _ = report("  baseline: bare same body",
                                     load(bare_port, "/bare", args.connections, args.seconds, encoding))
                bare_proc.terminate()
                bare_proc.wait()
                bare_proc = None
                ok = sing_rps / bare_rps >= 0.5 and sing_p99 <= 50
                print(f"  {'':32s} ratio {sing_rps / bare_rps:.2f} of the baseline's throughput; target ratio >= 0.5,"
                      f" p99 <= 50 ms -> {'MET' if ok else 'NOT MET'}")
        finally:
            if bare_proc is not None:
                bare_proc.terminate()
            backend.close()


if __name__ == "__main__":
    main()
