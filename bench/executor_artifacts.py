"""Artifact cache: tasks sharing one big artifact download it once; a cached launch vs an uncached one.

1. Launch (TaskInfo sent -> TASK_RUNNING) of a task with one 50 MB external artifact (md5 and size
   given), with the cache emptied before each run (uncached) and right after (cached); a task with
   no artifact is the baseline.
2. 100 such tasks in one ACCEPT with an empty cache: how often the artifact server is asked for it,
   and how long until every task runs.
Usage: python -m bench.executor_artifacts [--tasks 100] [--size-mb 50] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pymesos import MesosSchedulerDriver

from sing_backend.executor.settings import ExecutorSettings
from tests.executor.helpers import ArtifactServer

from .executor_cluster import StatusRecorder, cluster, task
from .stats import summary


def _launch(driver: MesosSchedulerDriver, sched: StatusRecorder, infos: list[dict[str, Any]]) -> float:
    offer = sched.take_offer()
    for info in infos:
        info["agent_id"] = offer["agent_id"]
    started = time.perf_counter()
    driver.launchTasks(offer["id"], infos)
    return started


def _run_one(driver: MesosSchedulerDriver, sched: StatusRecorder, task_id: str, deploy: dict[str, Any] | None,
             sandboxes: Path) -> float:
    started = _launch(driver, sched, [task(task_id, "true", deploy)])
    state, at = sched.wait(task_id, ("TASK_RUNNING", "TASK_FAILED"))
    if state != "TASK_RUNNING":
        raise RuntimeError(f"{task_id}: {sched.messages.get(task_id)}")
    sched.wait(task_id, ("TASK_FINISHED",))
    shutil.rmtree(sandboxes / task_id, ignore_errors=True)
    return (at - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    body = os.urandom(args.size_mb * 1024 * 1024)
    server = ArtifactServer()
    server.files["/big.bin"] = body
    deploy = {"executorData": {"externalArtifacts": [{
        "name": "big", "url": server.url("/big.bin"), "filename": "big.bin",
        "md5sum": hashlib.md5(body).hexdigest(), "filesize": len(body)}]}}
    try:
        with tempfile.TemporaryDirectory() as tmp, cluster(Path(tmp), ExecutorSettings()) as (driver, sched):
            cache = Path(tmp) / "cluster" / "cache"
            sandboxes = Path(tmp) / "cluster" / "agents" / "agent-1" / "sandboxes"
            bare, uncached, cached = [], [], []
            for run in range(args.runs):
                bare.append(_run_one(driver, sched, f"bare-{run}", None, sandboxes))
                shutil.rmtree(cache, ignore_errors=True)
                uncached.append(_run_one(driver, sched, f"cold-{run}", deploy, sandboxes))
                cached.append(_run_one(driver, sched, f"warm-{run}", deploy, sandboxes))
            shutil.rmtree(cache, ignore_errors=True)
            before = server.count("/big.bin")
            ids = [f"burst-{n}" for n in range(args.tasks)]
            started = _launch(driver, sched, [task(t, "sleep 60", deploy) for t in ids])
            states = [sched.wait(t, ("TASK_RUNNING", "TASK_FAILED"), timeout=600) for t in ids]
            all_running = (max(at for _, at in states) - started) * 1000
            failed = sum(1 for state, _ in states if state != "TASK_RUNNING")
            fetches = server.count("/big.bin") - before
            for t in ids:
                driver.killTask({"value": t})
            for t in ids:
                sched.wait(t, ("TASK_KILLED", "TASK_FAILED"))
    finally:
        server.close()
    print(f"Artifact cache ({args.size_mb} MB artifact, md5 and size checked)")
    print(f"  launch, no artifact      {summary(bare)}")
    print(f"  launch, uncached         {summary(uncached)}")
    print(f"  launch, cached           {summary(cached)}")
    print(f"  ratio (p50)              cached is {statistics.median(uncached) / statistics.median(cached):.1f}x "
          f"faster than uncached; {statistics.median(cached) / statistics.median(bare):.1f}x a task without "
          "artifacts")
    print(f"  {args.tasks} tasks at once       artifact fetched {fetches} time(s); all running after "
          f"{all_running:.0f} ms; {failed} failed")


if __name__ == "__main__":
    main()
