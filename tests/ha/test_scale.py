"""Mesos mode at scale: one scheduling round launches thousands of real task processes, and its state,
far more than ZooKeeper takes in one 1 MB request, is persisted whole: after a SIGKILL of the leader,
a new backend on the same ZooKeeper root takes over exactly the same tasks.

The cluster here is a `sing cluster` of its own, sized for the tasks (the shared one of `conftest.py` has
three small agents). Its agents share one rack, so that freezing that rack holds every pending task back
while the requests are created, and activating it lets a single round place them all.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from kazoo.client import KazooClient

from sing_backend.executor.records import kill_orphans
from sing_backend.local_backend import Backend, free_port, wait_for
from tests.servers import ZooKeeperServer, mysql_database

REQUESTS = 200
INSTANCES = 10
TASKS = REQUESTS * INSTANCES
AGENTS = 4
RACK = "rack-1"
# Tiny reservations, so that thousands fit; `sleep` stays far below its memory limit.
RESOURCES = {"cpus": 0.01, "memoryMb": 16}
# ZooKeeper's default jute.maxbuffer: the largest request (one transaction) it accepts.
ZK_MAX_REQUEST = 1024 * 1024
# Open files the cluster process needs per task: two pipe read ends, two log files, one pidfd; and
# for everything else (sockets, its own logs, files opened for a moment).
FILES_PER_TASK = 5
FILES_SPARE = 1024


def open_files_limit() -> int:
    """The most files a process started from here may open: the hard limit, or the kernel's ceiling
    where this process may raise hard limits (CAP_SYS_RESOURCE, which root does not always have)."""
    with open("/proc/self/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    if caps & (1 << 24):
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


class ScaleCluster:
    """`sing cluster` in its own process, with `agents` agents in one rack and room for `tasks` tasks."""

    def __init__(self, data_dir: Path, agents: int, tasks: int) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        per_agent = -(-tasks // agents)
        env = {**os.environ, "SING_AGENTS__COUNT": str(agents), "SING_AGENTS__RACKS": "1",
               # Twice what the tasks reserve: placement never runs short however it spreads them.
               "SING_AGENTS__CPUS": str(max(4.0, 2 * per_agent * RESOURCES["cpus"])),
               "SING_AGENTS__MEM_MB": str(max(4096.0, 2 * per_agent * RESOURCES["memoryMb"])),
               "SING_AGENTS__DISK_MB": str(1024.0 * 1024), "SING_AGENTS__FIRST_PORT": "15000",
               "SING_AGENTS__PORTS_PER_AGENT": "100", "SING_KILL_GRACE_SECONDS": "2", "SING_LOG_LEVEL": "warning"}
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(data_dir / "cluster.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "sing_backend.cli", "cluster", "--port", str(self.port),
                                          "--data-dir", str(data_dir), "--heartbeat-seconds", "1"],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._raise_open_files(tasks * FILES_PER_TASK + FILES_SPARE)
            wait_for(lambda: httpx.get(f"http://{self.address}/version", timeout=1).status_code == 200, timeout=30,
                     what="sing cluster up")
        except BaseException:
            self.stop()
            raise

    def _raise_open_files(self, needed: int) -> None:
        # The task processes' pipes, logs and pidfds are all held by the cluster process: past its limit
        # of open files, every launch fails.
        available = open_files_limit()
        if needed > available:
            raise ValueError(f"{needed} open files needed, {available} possible: too many tasks for one cluster")
        soft, hard = resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE)
        if soft < needed:
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (needed, max(hard, needed)))

    def framework_tasks(self) -> dict[str, int]:
        """Tasks per framework, as the master counts them."""
        state = httpx.get(f"http://{self.address}/state", timeout=10).json()
        return {f["id"]: f["tasks"] for f in state["frameworks"]}

    def stop(self) -> None:
        # SIGKILL, not the cluster's own graceful stop: that signals the tasks one at a time, each after
        # a scan of all of /proc, which takes the better part of a minute with thousands of tasks.
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        # What a restarted cluster would do: kill what the running records describe...
        for running in (self.data_dir / "cluster" / "agents").glob("*/running"):
            kill_orphans(running)
        # ...and anything else still working in one of its sandboxes (a task spawned just before the
        # kill, whose record was not written yet).
        wait_for(lambda: not self._kill_left_over(), timeout=30, interval=0.2, what="every task process gone")

    def _kill_left_over(self) -> list[int]:
        """SIGKILL the processes whose working directory is under the data dir; returns their pids."""
        root = str(self.data_dir.resolve()) + os.sep
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/cwd").startswith(root):
                    os.kill(int(entry.name), signal.SIGKILL)
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # gone meanwhile, or not ours to look at
        return found


def mesos_backend(data_dir: Path, cluster_address: str, zk_hosts: str, zk_root: str, db_url: str) -> Backend:
    port = free_port()
    return Backend(data_dir, port=port, env={
        "SING_MODE": "mesos", "SING_MESOS_MASTER": cluster_address, "SING_ZK_HOSTS": zk_hosts,
        "SING_ZK_ROOT": zk_root, "SING_DB_URL": db_url, "SING_ZK_SESSION_TIMEOUT": "2",
        "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}"})


def leading_and_connected(b: Backend) -> bool:
    state = b.get("/api/state", timeout=10)
    return bool(state["hostStates"][0]["master"] and state["hostStates"][0]["mesosConnected"])


def create_requests(url: str, ids: list[str], instances: int, concurrency: int = 16,
                    health_timeout: int = 600) -> None:
    """Create each request and its first deploy (`sleep` as a plain argv: one process per task), many at
    a time: the API has no bulk call, and one after the other would take most of the time allowed.

    The deploys allow `health_timeout` seconds, not the default 120, for their tasks to run: on a busy
    machine thousands of processes can take longer to start than that, and a deploy that timed out
    would kill its tasks."""

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, request_id: str) -> None:
        async with gate:
            r = await client.post("/api/requests", json={"id": request_id, "requestType": "WORKER",
                                                         "instances": instances})
            assert r.status_code == 200, f"{request_id}: {r.status_code} {r.text}"
            r = await client.post("/api/deploys", json={"deploy": {
                "requestId": request_id, "id": "v1", "command": "sleep", "arguments": ["100000"],
                "resources": RESOURCES, "considerHealthyAfterRunningForSeconds": 0,
                "deployHealthTimeoutSeconds": health_timeout}})
            assert r.status_code == 200, f"{request_id} deploy: {r.status_code} {r.text}"

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            await asyncio.gather(*(one(client, gate, request_id) for request_id in ids))

    asyncio.run(run())


def running_tasks(b: Backend) -> dict[str, dict[str, Any]]:
    """Active tasks that are TASK_RUNNING, by id (their Singularity task id objects)."""
    return {t["taskId"]["id"]: t["taskId"] for t in b.get("/api/tasks/active/states", timeout=30)
            if t["taskState"] == "TASK_RUNNING"}


def zookeeper_bytes(hosts: str, root: str) -> dict[str, int]:
    """Bytes stored under each collection znode of `root` (documents as written, gzipped or not)."""
    client = KazooClient(hosts=hosts, timeout=10)
    client.start(timeout=10)
    try:
        sizes: dict[str, int] = {}
        for collection in client.get_children(root):
            parent = f"{root}/{collection}"
            # Pipelined reads: one round trip per collection instead of one per znode.
            reads = [client.get_async(f"{parent}/{name}") for name in client.get_children(parent)]
            sizes[collection] = sum(len(read.get(timeout=30)[0]) for read in reads)
        return sizes
    finally:
        client.stop()
        client.close()


def assert_one_task_per_instance(tasks: dict[str, dict[str, Any]], request_ids: list[str], instances: int) -> None:
    per_instance = Counter((t["requestId"], t["instanceNo"]) for t in tasks.values())
    expected = {(r, i) for r in request_ids for i in range(1, instances + 1)}
    assert set(per_instance) == expected, f"missing {len(expected - set(per_instance))} instances, " \
                                          f"unexpected {sorted(set(per_instance) - expected)[:5]}"
    doubled = [k for k, n in per_instance.items() if n > 1]
    assert not doubled, f"instances running twice: {doubled[:5]}"


@pytest.fixture
def scale_cluster(tmp_path: Path) -> Iterator[ScaleCluster]:
    cluster = ScaleCluster(tmp_path / "cluster", AGENTS, TASKS + INSTANCES)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(300)
def test_one_round_of_thousands_of_launches_is_persisted_and_taken_over(
        tmp_path: Path, zookeeper: ZooKeeperServer, scale_cluster: ScaleCluster) -> None:
    started = time.monotonic()
    root = f"/sing-scale-{uuid4().hex[:8]}"
    made: list[Backend] = []
    with mysql_database() as db_url:
        def backend(name: str) -> Backend:
            b = mesos_backend(tmp_path / name, scale_cluster.address, zookeeper.hosts, root, db_url)
            made.append(b)
            return b.start(wait_connected=False)

        try:
            first = backend("first")
            wait_for(lambda: leading_and_connected(first), timeout=60, what="the first backend leading")
            wait_for(lambda: len(first.get("/api/agents")) == AGENTS, timeout=30, what="every agent offered")
            first.post(f"/api/racks/rack/{RACK}/freeze", {"message": "hold launches until every request exists"})

            request_ids = [f"scale-{i:04d}" for i in range(REQUESTS)]
            create_requests(first.url, request_ids, INSTANCES)
            wait_for(lambda: len(first.get("/api/tasks/scheduled/ids", timeout=30)) == TASKS, timeout=60,
                     what=f"{TASKS} pending tasks")
            assert first.get("/api/tasks/active/ids", timeout=30) == [], "a task launched on a frozen agent"
            created = time.monotonic()

            # Every agent's offer is held while tasks are pending, so the round that this activation
            # starts places all of them.
            first.post(f"/api/racks/rack/{RACK}/activate")
            before = wait_for(lambda: len(r := running_tasks(first)) == TASKS and r, timeout=120, interval=0.5,
                              what=f"{TASKS} tasks running")
            running = time.monotonic()
            assert_one_task_per_instance(before, request_ids, INSTANCES)
            assert first.get("/api/tasks/scheduled/ids", timeout=30) == []
            framework_id = next(iter(scale_cluster.framework_tasks()))
            assert scale_cluster.framework_tasks() == {framework_id: TASKS}

            # What the round persisted: one task document each, together far over one transaction's limit.
            sizes = zookeeper_bytes(zookeeper.hosts, root)
            assert sizes["tasks"] > ZK_MAX_REQUEST, f"task state is only {sizes['tasks']} bytes: not a big round"

            first.stop(signal.SIGKILL)
            second = backend("second")
            wait_for(lambda: leading_and_connected(second), timeout=60, what="the second backend taking over")
            # Ordering proves reconciliation is over: the second backend reconciles every task on
            # registering, before it launches anything, and the master answers in call order. So once a
            # task launched after the take-over runs, every reconciliation answer has been handled (a task
            # found lost would have been replaced by then).
            second.put(f"/api/requests/request/{request_ids[0]}/scale", {"instances": INSTANCES + 1})
            after = wait_for(lambda: len(r := running_tasks(second)) == TASKS + 1 and r, timeout=60, interval=0.5,
                             what="the scaled-up task running after the take-over")
            taken_over = time.monotonic()
            assert set(after) - set(before) and all(after[t]["requestId"] == request_ids[0]
                                                    for t in set(after) - set(before))
            assert set(before) <= set(after), f"{len(set(before) - set(after))} tasks lost in the take-over"
            assert second.get("/api/tasks/scheduled/ids", timeout=30) == []
            assert scale_cluster.framework_tasks() == {framework_id: TASKS + 1}, "tasks launched twice"
            print(f"\n{TASKS} tasks: created in {created - started:.1f} s, one round to all running in "
                  f"{running - created:.1f} s, taken over in {taken_over - running:.1f} s; "
                  f"ZooKeeper bytes {sizes}")
        finally:
            for b in made:
                b.close()
