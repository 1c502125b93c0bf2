"""Deploy turnover: a 10-instance service with an HTTP health check gets a new deploy; time until every
new task is healthy and every old one is gone, against the sum of the tasks' own start-up times
(each measured in the same run by starting the same web app directly and waiting for its first 200).
Usage: python -m bench.deploy_turnover [--instances 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sing_backend.local_backend import Backend, free_port, wait_for

APP = Path(__file__).resolve().parent.parent / "tests" / "apps" / "webapp.py"
HC = {"uri": "/health", "startupIntervalSeconds": 1, "intervalSeconds": 1, "responseTimeoutSeconds": 2,
      "startupTimeoutSeconds": 30}


def own_startup_ms() -> float:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(APP), "ok"], env={**os.environ, "PORT0": str(port)})
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return (time.perf_counter() - start) * 1000
            except httpx.HTTPError:
                time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    res = {"cpus": 0.05, "memoryMb": 32, "numPorts": 1}
    walls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp)).start()
        try:
            backend.create({"id": "turnover", "requestType": "SERVICE", "instances": args.instances},
                           {"id": "v0", "command": f"{sys.executable} {APP} ok", "resources": res, "healthcheck": HC})
            wait_for(lambda: backend.get("/api/requests/request/turnover")["requestDeployState"].get("activeDeploy"),
                     timeout=60, what="first deploy")
            for r in range(1, args.rounds + 1):
                start = time.perf_counter()
                backend.post("/api/deploys", {"deploy": {"requestId": "turnover", "id": f"v{r}", "resources": res,
                                                         "command": f"{sys.executable} {APP} ok", "healthcheck": HC}})
                wait_for(lambda r=r: {t["taskId"]["deployId"] for t in backend.get("/api/tasks/active")
                                      if t["taskId"]["requestId"] == "turnover"} == {f"v{r}"}
                         and len(backend.get("/api/tasks/ids/request/turnover")["healthy"]) == args.instances,
                         timeout=120, interval=0.01, what=f"deploy v{r} turned over")
                walls.append((time.perf_counter() - start) * 1000)
        finally:
            backend.close()
    startups = [own_startup_ms() for _ in range(args.instances)]
    wall = statistics.median(walls)
    print(f"Deploy turnover: {args.instances} instances, HTTP health check every 1 s ({args.rounds} rounds)")
    print(f"  new deploy -> all new healthy, all old gone   median {wall:8.0f} ms  (runs: "
          f"{', '.join(f'{w:.0f}' for w in walls)})")
    print(f"  baseline: sum of the tasks' own start-up times    {sum(startups):8.0f} ms  "
          f"(one start-up: median {statistics.median(startups):.0f} ms)")
    print(f"  ratio wall / sum of start-ups                     {wall / sum(startups):8.2f}")


if __name__ == "__main__":
    main()
