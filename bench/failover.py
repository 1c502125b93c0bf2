"""Leader fail-over: SIGKILL the leader, time until the standby has launched a new task (seen RUNNING
through the API); tasks lost or launched twice across the fail-over (must be 0). The run is sent to the
standby as the leader dies, as a client would, and queued there for the next leader. Real ZooKeeper and
MariaDB, a shared `sing cluster`, two backends in mesos mode. Baseline: the ZooKeeper session timeout,
after which the standby can be elected at the earliest (target: <= session timeout + 1 s).
Usage: python -m bench.failover [--runs 20] [--session-timeout 2]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sing_backend.local_backend import Backend, wait_for
from tests.ha.conftest import ha_servers
from tests.ha.test_failover import one_leader
from tests.servers import ZooKeeperServer

from .stats import percentile

RES = {"cpus": 0.01, "memoryMb": 16}


def failovers(backend: Callable[[str], Backend], runs: int) -> tuple[list[float], int, int]:
    """Seconds from each SIGKILL to a new task RUNNING; steady tasks lost, and launched twice."""
    times: list[float] = []
    lost = doubled = 0
    backends = [backend("b0"), backend("b1")]
    leader = one_leader(backends)
    leader.create({"id": "steady", "requestType": "WORKER", "instances": 3},
                  {"id": "v1", "command": "sleep 100000", "resources": RES, "considerHealthyAfterRunningForSeconds": 0})
    leader.create({"id": "probe", "requestType": "ON_DEMAND"},
                  {"id": "v1", "command": "sleep 100000", "resources": RES})
    steady = wait_for(lambda: len(ids := {t["taskId"]["id"] for t in leader.active_tasks("steady")}) == 3 and ids,
                      timeout=30, what="3 steady tasks")
    for run in range(runs):
        leader = one_leader(backends)
        standby = next(b for b in backends if b is not leader)
        started = time.monotonic()
        leader.stop(signal.SIGKILL)
        # Sent once, at once, to the standby: it queues the run for the next leader (itself, once elected),
        # which applies it once. Sending it again would run it again.
        run_id = f"probe-{run}"
        r = standby.client.post("/api/requests/request/probe/run", json={"runId": run_id}, timeout=60)
        assert r.status_code in (200, 202), r.text
        wait_for(lambda run_id=run_id, standby=standby: standby.get(f"/api/track/run/probe/{run_id}")
                 .get("currentState") == "TASK_RUNNING", timeout=30, interval=0.02, what="the new task running")
        times.append(time.monotonic() - started)
        now = {t["taskId"]["id"] for t in standby.active_tasks("steady", state=None)}
        lost += len(steady - now)
        doubled += max(0, len(now) - 3)
        backends = [standby, backend(f"b{run + 2}")]
    return times, lost, doubled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, ZooKeeperServer(Path(tmp_name)) as zk, \
            ha_servers(Path(tmp_name), zk, SING_ZK_SESSION_TIMEOUT=str(args.session_timeout)) as ha:
        times, lost, doubled = failovers(ha["backend"], args.runs)
    print(f"Leader fail-over over {len(times)} SIGKILLs (ZooKeeper session timeout {args.session_timeout:g} s)")
    print(f"  SIGKILL -> new task RUNNING on the new leader   p50 {statistics.median(times):6.2f} s   "
          f"p99 {percentile(times, 99):6.2f} s   max {max(times):6.2f} s")
    met = statistics.median(times) <= args.session_timeout + 1
    print(f"  baseline: the session timeout                  {args.session_timeout:6.2f} s "
          f"(target <= {args.session_timeout + 1:g} s at p50: {'MET' if met else 'NOT MET'})")
    print(f"  steady tasks lost: {lost}, launched twice: {doubled} (must be 0)")


if __name__ == "__main__":
    main()
