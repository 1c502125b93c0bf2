"""Leader fail-over: SIGKILL the leader, time until the standby has launched a new task (seen RUNNING
through the API); tasks lost or launched twice across the fail-over (must be 0). Real ZooKeeper and
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
from pathlib import Path

import httpx

from sing_backend.local_backend import Backend, free_port, wait_for
from tests.ha.conftest import SharedCluster
from tests.servers import ZooKeeperServer, mysql_database

from .stats import percentile

RES = {"cpus": 0.01, "memoryMb": 16}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--session-timeout", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, mysql_database() as db_url:
        tmp = Path(tmp_name)
        (tmp / "zk").mkdir()
        zk = ZooKeeperServer(tmp / "zk")
        zk.start()
        cluster = SharedCluster(tmp)
        made: list[Backend] = []

        def backend(name: str) -> Backend:
            port = free_port()
            b = Backend(tmp / name, port=port, env={
                "SING_MODE": "mesos", "SING_MESOS_MASTER": cluster.address, "SING_ZK_HOSTS": zk.hosts,
                "SING_DB_URL": db_url, "SING_ZK_SESSION_TIMEOUT": str(args.session_timeout),
                "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}"})
            made.append(b)
            return b.start(wait_connected=False)

        def leader_of(backends: list[Backend]) -> Backend:
            def find() -> Backend | None:
                for b in backends:
                    try:
                        r = b.client.get("/api/state", timeout=2)
                    except httpx.HTTPError:
                        continue
                    if "x-sing-leader" not in r.headers and r.json()["hostStates"][0]["master"]:
                        return b
                return None
            return wait_for(find, timeout=30, what="a leader")

        times: list[float] = []
        lost = doubled = 0
        try:
            backends = [backend("b0"), backend("b1")]
            leader = leader_of(backends)
            leader.create({"id": "steady", "requestType": "WORKER", "instances": 3},
                          {"id": "v1", "command": "sleep 100000", "resources": RES,
                           "considerHealthyAfterRunningForSeconds": 0})
            leader.create({"id": "probe", "requestType": "ON_DEMAND"},
                          {"id": "v1", "command": "sleep 100000", "resources": RES})
            steady = wait_for(lambda: len(ids := {t["taskId"]["id"] for t in leader.active_tasks("steady")}) == 3
                              and ids, timeout=30, what="3 steady tasks")
            for run in range(args.runs):
                leader = leader_of(backends)
                standby = next(b for b in backends if b is not leader)
                started = time.monotonic()
                leader.stop(signal.SIGKILL)
                run_id = f"probe-{run}"
                wait_for(lambda run_id=run_id, standby=standby: standby.client.post(
                    "/api/requests/request/probe/run", json={"runId": run_id}, timeout=2).status_code == 200,
                    timeout=60, interval=0.02, what="a leader accepting the run")
                wait_for(lambda run_id=run_id, standby=standby: standby.get(f"/api/track/run/probe/{run_id}")
                         .get("currentState")
                         == "TASK_RUNNING", timeout=30, interval=0.02, what="the new task running")
                times.append(time.monotonic() - started)
                now = {t["taskId"]["id"] for t in standby.active_tasks("steady", state=None)}
                lost += len(steady - now)
                doubled += max(0, len(now) - 3)
                backends = [standby, backend(f"b{run + 2}")]
        finally:
            for b in made:
                b.close()
            cluster.stop()
            zk.stop()
    print(f"Leader fail-over over {len(times)} SIGKILLs (ZooKeeper session timeout {args.session_timeout:g} s)")
    print(f"  SIGKILL -> new task RUNNING on the new leader   p50 {statistics.median(times):6.2f} s   "
          f"p99 {percentile(times, 99):6.2f} s   max {max(times):6.2f} s")
    met = statistics.median(times) <= args.session_timeout + 1
    print(f"  baseline: the session timeout                  {args.session_timeout:6.2f} s "
          f"(target <= {args.session_timeout + 1:g} s at p50: {'MET' if met else 'NOT MET'})")
    print(f"  steady tasks lost: {lost}, launched twice: {doubled} (must be 0)")


if __name__ == "__main__":
    main()
