"""Shared pieces of the executor tests: a cluster with executor settings, a pymesos scheduler that
also records executor events, TaskInfos that carry the executor payload, a real artifact server."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pymesos import MesosSchedulerDriver

from sing_backend.cluster import EmbeddedCluster, default_agents
from sing_backend.executor.logstore import parse_segment
from sing_backend.executor.payload import attach_payload, task_payload
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import Recorder, start_driver, task_info


class ExecutorRecorder(Recorder):
    """Also records executorLost and framework messages (the cluster tests' Recorder ignores them)."""

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:  # noqa: N802
        self._add("executor_lost", (executor_id["value"], status))

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:  # noqa: N802
        self._add("message", data)


@dataclass
class Harness:
    cluster: EmbeddedCluster
    driver: MesosSchedulerDriver
    sched: ExecutorRecorder
    data_dir: Path

    def launch(self, tasks: list[dict[str, Any]] | dict[str, Any], agent: str = "agent-1") -> None:
        offer = self.sched.offer_for(agent)
        self.sched.forget(offer)
        infos = tasks if isinstance(tasks, list) else [tasks]
        for info in infos:
            info["agent_id"] = offer["agent_id"]
        self.driver.launchTasks(offer["id"], infos)

    def task_dir(self, task_id: str) -> Path:
        sandbox = self.cluster.sandbox_dir(task_id)
        assert sandbox is not None, f"no sandbox for {task_id}"
        return sandbox / task_id

    @property
    def log_store(self) -> Path:
        return self.data_dir / "logs"


@contextmanager
def running_cluster(data_dir: Path, settings: ExecutorSettings | None = None, *, agents: int = 1,
                    kill_grace: float = 1.0) -> Iterator[Harness]:
    cluster = EmbeddedCluster(data_dir / "cluster", default_agents(agents), heartbeat_interval=1.0,
                              kill_grace_seconds=kill_grace, executor=settings or ExecutorSettings())
    cluster.start()
    sched = ExecutorRecorder()
    driver = start_driver(cluster.master_address, sched)
    try:
        yield Harness(cluster, driver, sched, data_dir)
    finally:
        driver.stop(failover=True)
        driver.join()
        cluster.stop()


def deploy_task(task_id: str, command: str | dict[str, Any], *, deploy: dict[str, Any] | None = None,
                mem: float = 64.0, cpus: float = 0.1, disk: float | None = None, env: dict[str, str] | None = None,
                grace_seconds: float | None = None, executor_command: str | None = None) -> dict[str, Any]:
    """A TaskInfo as Sing's scheduler builds it, with the executor payload of ``deploy``."""
    offer = {"agent_id": {"value": "agent-1"}, "id": {"value": "unused"}}
    info = task_info(task_id, offer, command, cpus=cpus, mem=mem, env=env, grace_seconds=grace_seconds)
    if disk is not None:
        info["resources"].append({"name": "disk", "type": "SCALAR", "scalar": {"value": disk}})
    wire = {"requestId": "req", "id": "dep1", **(deploy or {})}
    return attach_payload(info, task_payload(wire), executor_command=executor_command)


def segments(logs_dir: Path, stream: str = "stdout") -> list[Path]:
    """The compressed rotated segments of one stream, in order."""
    found = []
    for path in logs_dir.glob("*.gz"):
        seg = parse_segment(path.name)
        if seg is not None and seg.stream == stream:
            found.append((seg.seq, path))
    return [path for _, path in sorted(found)]


def read_segments(paths: list[Path]) -> bytes:
    return b"".join(gzip.decompress(p.read_bytes()) for p in paths)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class ArtifactServer:
    """A real HTTP server on loopback serving fixed bodies, counting GETs per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with server._lock:
                    server.hits[self.path] = server.hits.get(self.path, 0) + 1
                    body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits.get(path, 0)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
