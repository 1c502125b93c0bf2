"""Health-check load: 2,000 tasks checked every 5 s, while the scheduler's event-loop lag is sampled.

Benchmark-only simulated agents; every check hits one real, deliberately cheap HTTP server
(bench/tiny_http.py) through `portNumber`. Target: loop p99 <= 100 ms. Baseline: the same backend
idle, before the fleet exists, measured in the same run.
Usage: python -m bench.healthcheck_load [--tasks 2000] [--seconds 25]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sing_backend.local_backend import Backend, free_port, wait_for


def lag(backend: Backend) -> dict:
    return backend.get("/api/state")["schedulerLoopLagMs"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=25)
    args = parser.parse_args()
    port = free_port()
    target = subprocess.Popen([sys.executable, "-m", "bench.tiny_http", str(port)])
    env = {"SING_SIMULATED_AGENTS": "true", "SING_AGENTS__COUNT": "20", "SING_AGENTS__CPUS": "1000",
           "SING_AGENTS__MEM_MB": "1000000", "SING_LIMITS__MAX_INSTANCES": "1000"}
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200, what="target server")
        with tempfile.TemporaryDirectory() as tmp:
            backend = Backend(Path(tmp), env=env).start()
            try:
                time.sleep(3)  # sample the idle loop (the monitor keeps the last minute)
                idle = lag(backend)
                per_request = 100
                for i in range(args.tasks // per_request):
                    backend.create({"id": f"fleet-{i}", "requestType": "SERVICE", "instances": per_request},
                                   {"id": "v1", "command": "serve", "resources": {"cpus": 0.01, "memoryMb": 1},
                                    "healthcheck": {"uri": "/health", "portNumber": port, "intervalSeconds": 5,
                                                    "livenessIntervalSeconds": 5, "responseTimeoutSeconds": 5,
                                                    "maxRetries": 3, "startupTimeoutSeconds": 120}})
                wait_for(lambda: sum(len(backend.get(f"/api/tasks/ids/request/fleet-{i}")["healthy"])
                                     for i in range(args.tasks // per_request)) >= args.tasks,
                         timeout=300, interval=1, what=f"{args.tasks} healthy tasks")
                # Steady state: every task checked every 5 s; the lag window (~20 s) no longer holds the launch.
                time.sleep(max(args.seconds, 25))
                loaded = lag(backend)
                checks = len(backend.get(f"/api/history/task/{backend.active_tasks('fleet-0')[0]['taskId']['id']}")
                             ["healthcheckResults"])
            finally:
                backend.close()
    finally:
        target.terminate()
    print(f"Health-check load: {args.tasks} tasks checked every 5 s (simulated agents, one real HTTP target)")
    print(f"  scheduler loop lag, idle baseline   p50 {idle['p50']:7.2f} ms   p99 {idle['p99']:7.2f} ms")
    print(f"  scheduler loop lag, under checks    p50 {loaded['p50']:7.2f} ms   p99 {loaded['p99']:7.2f} ms   "
          f"max {loaded['max']:.1f} ms")
    print(f"  checks recorded for one task: {checks}; target p99 <= 100 ms -> "
          f"{'MET' if loaded['p99'] <= 100 else 'NOT MET'}")


if __name__ == "__main__":
    main()
