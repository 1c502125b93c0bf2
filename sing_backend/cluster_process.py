"""`sing cluster`: the embedded local cluster as a process of its own (a Mesos v1 master and agents).

Several backends in mesos mode (`--master 127.0.0.1:PORT`) can share it: the way to run and test
leader fail-over on one machine.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import replace
from pathlib import Path

from .cluster import EmbeddedCluster, default_agents
from .executor.settings import ExecutorSettings
from .settings import LocalAgentSettings

log = logging.getLogger(__name__)


def run_cluster(port: int, data_dir: Path, agents: LocalAgentSettings, kill_grace_seconds: float,
                executor: ExecutorSettings, heartbeat_interval: float = 15.0) -> None:
    specs = [replace(spec, cpus=agents.cpus, mem_mb=agents.mem_mb, disk_mb=agents.disk_mb,
                     ports=(agents.first_port + i * agents.ports_per_agent,
                            agents.first_port + (i + 1) * agents.ports_per_agent - 1))
             for i, spec in enumerate(default_agents(agents.count, agents.racks))]
    cluster = EmbeddedCluster(data_dir / "cluster", specs, port=port, kill_grace_seconds=kill_grace_seconds,
                              heartbeat_interval=heartbeat_interval, executor=executor, data_dir=data_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cluster.start()
    print(f"Sing local cluster: Mesos master at {cluster.master_address} with {len(specs)} agents", flush=True)
    try:
        stop.wait()
    finally:
        cluster.stop()
