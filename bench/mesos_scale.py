"""Mesos mode at scale: 1,000 requests x 10 instances of `sleep`, real task processes on a `sing cluster`,
state in a real ZooKeeper, history in MariaDB, one backend leading.

Prints: time from the first request created to every task RUNNING (seen through the API), with the time
to create them all and to have them all launched; the scheduler's event-loop lag (`schedulerLoopLagMs`
on /api/state) idle, during the launch and with every task running; and the bytes the state takes in
ZooKeeper. Baseline, measured in the same run: spawning as many `sleep` processes directly.

Before anything starts, the memory one task process takes is measured, and the run shrinks to what
this machine can hold (said so in the output): memory, pids, and open files, since the one cluster
process holds five per task (pipes, log files, pidfd), so a hard limit of 20,000 that cannot be raised
(no CAP_SYS_RESOURCE) caps it at about 3,800 tasks. `--one-round` freezes the agents while the requests are
created, so that a single scheduling round then launches every task. The deploys allow an hour for
their tasks to run (`deployHealthTimeoutSeconds`): with the default 120 s, on a 2-core machine, the
later deploys fail as overdue while thousands of earlier tasks are still being started, and their
tasks are killed.
Usage: python -m bench.mesos_scale [--requests 1000] [--instances 10] [--agents 4] [--one-round]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sing_backend.local_backend import Backend, wait_for
from tests.ha.test_scale import (
    FILES_PER_TASK,
    FILES_SPARE,
    RACK,
    ScaleCluster,
    create_requests,
    leading_and_connected,
    mesos_backend,
    open_files_limit,
    running_tasks,
    zookeeper_bytes,
)
from tests.servers import ZooKeeperServer, mysql_database

MB = 1024 * 1024
# What the machine keeps for everything else: the run uses at most this share of the available memory.
MEMORY_SHARE = 0.5
# Per task, beyond its process: the cluster's and the backend's bookkeeping. At 2,000 tasks everything
# together took 433 KB a task; the run prints what it really was.
BOOKKEEPING_BYTES = MB // 2
STEADY_SECONDS = 25.0
IDLE_SECONDS = 5.0


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0]) * 1024
    return out


def mem_available() -> int:
    return meminfo()["MemAvailable"]


def pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def spawn_sleeps(count: int, measure: bool = False) -> tuple[float, int]:
    """Spawn `count` `sleep` processes as the cluster does (own session, no shell), then kill them.
    Returns the seconds the spawns took and, if `measure`, the memory one process takes: its share of
    its pages (PSS) plus what the kernel keeps for it (stack, page tables). The drop of MemAvailable
    would say the same, but other processes on the machine move it too."""
    before = meminfo()
    started = time.perf_counter()
    procs = [subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL, start_new_session=True)
             for _ in range(count)]
    took = time.perf_counter() - started
    per_process = 0
    if measure:
        # Once each has exec'd `sleep`: before that, it is still a copy of this process.
        wait_for(lambda: all(os.readlink(f"/proc/{p.pid}/exe").endswith("/sleep") for p in procs), timeout=30,
                 what="every sleep started")
        after = meminfo()
        kernel = sum(after[k] - before[k] for k in ("KernelStack", "PageTables"))
        per_process = (sum(pss(p.pid) for p in procs) + max(kernel, 0)) // count
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()
    return took, per_process


def feasible_tasks(wanted: int) -> tuple[int, list[str]]:
    """How many task processes this machine can take, and what limits it."""
    _, per_process = spawn_sleeps(500, measure=True)
    notes = [f"one `sleep` task process takes {per_process / 1024:.0f} KB (PSS, kernel stack and page tables; "
             f"500 spawned)"]
    limits = {"memory": int(mem_available() * MEMORY_SHARE / (per_process + BOOKKEEPING_BYTES))}
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    limits["pids"] = int((pid_max - running) * 0.8)
    # Every task's pipes, logs and pidfd are held by the one cluster process.
    limits["open files"] = (open_files_limit() - FILES_SPARE) // FILES_PER_TASK
    notes.append("room for " + ", ".join(f"{n:,} by {what}" for what, n in limits.items()) +
                 f" ({FILES_PER_TASK} files a task in the cluster process, which may open {open_files_limit():,})")
    return min(wanted, *limits.values()), notes


class LagSampler:
    """Samples /api/state's loop lag every `interval` s on a thread of its own; keeps the worst seen."""

    def __init__(self, backend: Backend, interval: float = 2.0) -> None:
        self.backend = backend
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.backend.get("/api/state", timeout=30)["schedulerLoopLagMs"])
            except Exception:  # a slow answer is what is being measured; the next sample follows
                continue

    def worst(self) -> dict[str, float]:
        return {k: max((s[k] for s in self.samples), default=0.0) for k in ("p50", "p99", "max")}


def fmt_lag(lag: dict[str, float]) -> str:
    return f"p50 {lag['p50']:8.1f} ms   p99 {lag['p99']:8.1f} ms   max {lag['max']:8.1f} ms"


def run(args: argparse.Namespace, requests: int, tmp: Path) -> dict[str, Any]:
    tasks = requests * args.instances
    out: dict[str, Any] = {}
    (tmp / "zk").mkdir()
    zk = ZooKeeperServer(tmp / "zk")
    zk.start()
    try:
        with mysql_database() as db_url:
            cluster = ScaleCluster(tmp / "cluster", args.agents, tasks)
            backend = mesos_backend(tmp / "backend", cluster.address, zk.hosts, "/sing-bench", db_url)
            try:
                backend.start(wait_connected=False)
                wait_for(lambda: leading_and_connected(backend), timeout=60, what="the backend leading")
                wait_for(lambda: len(backend.get("/api/agents")) == args.agents, timeout=30, what="every agent")
                # The idle loop, before anything exists, over a few seconds of samples.
                time.sleep(IDLE_SECONDS)
                out["idle_lag"] = backend.get("/api/state")["schedulerLoopLagMs"]
                mem_before = mem_available()
                if args.one_round:
                    backend.post(f"/api/racks/rack/{RACK}/freeze")
                ids = [f"bench-{i:05d}" for i in range(requests)]
                with LagSampler(backend) as sampler:
                    started = time.monotonic()
                    create_requests(backend.url, ids, args.instances, concurrency=args.concurrency,
                                    health_timeout=3600)
                    out["created"] = time.monotonic() - started
                    if args.one_round:
                        wait_for(lambda: len(backend.get("/api/tasks/scheduled/ids", timeout=60)) == tasks,
                                 timeout=600, interval=1, what="every task pending")
                        out["pending"] = time.monotonic() - started
                        backend.post(f"/api/racks/rack/{RACK}/activate")
                    wait_for(lambda: len(backend.get("/api/tasks/active/ids", timeout=60)) == tasks, timeout=1800,
                             interval=1, what=f"{tasks} tasks launched")
                    out["launched"] = time.monotonic() - started
                    wait_for(lambda: len(running_tasks(backend)) == tasks, timeout=1800, interval=1,
                             what=f"{tasks} tasks running")
                    out["running"] = time.monotonic() - started
                out["launch_lag"] = sampler.worst()
                out["lag_samples"] = len(sampler.samples)
                out["memory_per_task"] = (mem_before - mem_available()) / tasks
                # Steady state, every task running: read once the lag monitor's window (the last ~20 s)
                # holds none of the launch.
                time.sleep(STEADY_SECONDS)
                out["steady_lag"] = backend.get("/api/state", timeout=30)["schedulerLoopLagMs"]
                out["zk_bytes"] = zookeeper_bytes(zk.hosts, "/sing-bench")
            finally:
                backend.close()
                cluster.stop()
    finally:
        zk.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16, help="requests created at a time")
    parser.add_argument("--one-round", action="store_true", help="launch every task in one scheduling round")
    args = parser.parse_args()
    # Killing the tasks of the stopped cluster warns once per task: expected here, and not a figure.
    logging.getLogger("sing_backend.executor.records").setLevel(logging.ERROR)
    wanted = args.requests * args.instances
    possible, notes = feasible_tasks(wanted)
    requests = min(args.requests, possible // args.instances)
    tasks = requests * args.instances
    print(f"Mesos mode at scale: {requests:,} requests x {args.instances} instances = {tasks:,} task processes"
          f" on {args.agents} agents{', launched in one round' if args.one_round else ''}")
    for note in notes:
        print(f"  {note}")
    if tasks < wanted:
        print(f"  NOTE: {wanted:,} tasks do not fit on this machine; running the largest size that does")
    base_seconds, _ = spawn_sleeps(tasks)
    with tempfile.TemporaryDirectory() as tmp_name:
        out = run(args, requests, Path(tmp_name))
    row("requests + first deploys created through the API",
        f"{out['created']:8.1f} s  ({2 * requests / out['created']:.0f} POST/s, {args.concurrency} at a time)")
    if "pending" in out:
        row("every task pending (agents frozen)", f"{out['pending']:8.1f} s")
    row("every task launched (in /api/tasks/active)", f"{out['launched']:8.1f} s")
    row("creation -> every task RUNNING", f"{out['running']:8.1f} s  ({tasks / out['running']:.0f} tasks/s)")
    row(f"baseline: spawning {tasks:,} `sleep`s directly",
        f"{base_seconds:8.1f} s  (ratio {out['running'] / base_seconds:.0f}x)")
    row("scheduler loop lag, idle", fmt_lag(out["idle_lag"]))
    row(f"scheduler loop lag, launch (worst of {out['lag_samples']} samples)", fmt_lag(out["launch_lag"]))
    row(f"scheduler loop lag, all running (after {STEADY_SECONDS:.0f} s)", fmt_lag(out["steady_lag"]))
    zk_bytes = out["zk_bytes"]
    row("ZooKeeper bytes persisted",
        f"{sum(zk_bytes.values()) / MB:8.2f} MB (tasks {zk_bytes.get('tasks', 0) / MB:.2f} MB = "
        f"{zk_bytes.get('tasks', 0) / tasks:,.0f} B each, deploys {zk_bytes.get('deploys', 0) / MB:.2f} MB, "
        f"requests {zk_bytes.get('requests', 0) / MB:.2f} MB)")
    row("memory per task, all in (process, cluster, backend)", f"{out['memory_per_task'] / 1024:8.0f} KB")


def row(label: str, value: str) -> None:
    print(f"  {label:<54}{value}")

if __name__ == "__main__":
    main()
