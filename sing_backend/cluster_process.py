"""`sing cluster`: the embedded local cluster as a process of its own (a Mesos v1 master and agents).

Several backends in mesos mode (`--master 127.0.0.1:PORT`) can share it: the way to run and test
leader fail-over on one machine.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import replace
from pathlib import Path

from .cluster import EmbeddedCluster, default_agents
from .executor.host import raise_open_files_limit
from .executor.settings import ExecutorSettings
from .settings import LocalAgentSettings

log = logging.getLogger(__name__)


def run_cluster(port: int, data_dir: Path, agents: LocalAgentSettings, kill_grace_seconds: float,
                executor: ExecutorSettings, heartbeat_interval: float = 15.0) -> None:
    # First thing: the tasks' pipes, log files and pidfds are all held by this process, so its
    # open-files limit caps how many tasks the cluster can run (the agents raise it too; here it is
    # done before anything else opens a file).
    raise_open_files_limit()
    specs = [replace(spec, cpus=agents.cpus, mem_mb=agents.mem_mb, disk_mb=agents.disk_mb,
                     ports=(agents.first_port + i * agents.ports_per_agent,
                            agents.first_port + (i + 1) * agents.ports_per_agent - 1))
             for i, spec in enumerate(default_agents(agents.count, agents.racks))]
    cluster = EmbeddedCluster(data_dir / "cluster", specs, port=port, kill_grace_seconds=kill_grace_seconds,
                              heartbeat_interval=heartbeat_interval, executor=executor, data_dir=data_dir)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # A plain list, not an Event: the handler runs on the main thread between two bytecodes, and
        # Event.set would deadlock if that thread were inside Event.wait, holding the Event's lock.
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    cluster.start()
    print(f"Sing local cluster: Mesos master at {cluster.master_address} with {len(specs)} agents", flush=True)
    try:
        # Short sleeps, not one long wait: a signal the kernel hands to another thread only sets a flag
        # that the main thread checks once it wakes; blocked in a wait without end, it never would.
        while not stopping:
            time.sleep(0.2)
    finally:
        cluster.stop()
