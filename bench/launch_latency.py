"""Launch latency: run-now of an ON_DEMAND request running `true` -> task RUNNING seen through the API.

Baseline, measured in the same run: spawning `true` with subprocess directly.
Usage: python -m bench.launch_latency [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sing_backend.local_backend import Backend, wait_for

from .stats import percentile, summary


def baseline(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        out.append((time.perf_counter() - start) * 1000)
    return out


def launch(backend: Backend, runs: int) -> list[float]:
    backend.create({"id": "bench-true", "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": "true", "resources": {"cpus": 0.01, "memoryMb": 1}})
    wait_for(lambda: backend.get("/api/requests/request/bench-true")["requestDeployState"].get("activeDeploy"),
             what="deploy")
    client = backend.client
    out = []
    for i in range(runs):
        run_id = f"r{i}"
        start = time.perf_counter()
        r = client.post("/api/requests/request/bench-true/run", json={"runId": run_id})
        r.raise_for_status()
        while True:
            t = client.get(f"/api/track/run/bench-true/{run_id}")
            if t.status_code == 200:
                body = t.json()
                states = [u["taskState"] for u in body.get("taskHistory", [])]
                if "TASK_RUNNING" in states or body.get("currentState") in ("TASK_RUNNING", "TASK_FINISHED"):
                    break
            time.sleep(0.0005)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp)).start()
        try:
            sing = launch(backend, args.runs + 10)[10:]  # the first runs warm up the caches
        finally:
            backend.close()
    base = baseline(args.runs)
    print("Launch latency (run-now -> TASK_RUNNING seen through the API)")
    print(f"  sing run-now      {summary(sing)}")
    print(f"  subprocess true   {summary(base)}")
    print(f"  ratio (p50)       {statistics.median(sing) / statistics.median(base):.1f}x the bare spawn")
    print(f"  target: p50 <= 50 ms, p99 <= 150 ms -> "
          f"{'MET' if statistics.median(sing) <= 50 and percentile(sing, 99) <= 150 else 'NOT MET'}")


if __name__ == "__main__":
    main()
