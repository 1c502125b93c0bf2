"""Child process for the orphan test: runs a cluster with a task, then waits to be killed -9.

Usage: python -m tests.cluster.orphan_child WORK_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pymesos  # noqa: F401  (imported in the main thread, as pymesos requires)

from sing_backend.cluster import EmbeddedCluster, default_agents

from .helpers import Recorder, start_driver, task_info


def main() -> None:
    cluster = EmbeddedCluster(Path(sys.argv[1]), default_agents(1))
    cluster.start()
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched)
    offer = sched.offer_for("agent-1")
    driver.launchTasks(offer["id"], [task_info("orphan", offer, "sleep 1000 & sleep 1000")])
    sched.status("orphan", "TASK_RUNNING")
    print("READY", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
