"""Writes through a standby: a scale sent to the standby is queued in ZooKeeper, applied by the leader
and answered with the leader's answer. Latency of the same scale sent to the leader itself is the
baseline, measured in the same run against the same servers (real ZooKeeper, MariaDB, a shared
`sing cluster`, two backends in mesos mode).
Usage: python -m bench.standby_writes [--writes 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sing_backend.local_backend import Backend, wait_for
from tests.ha.conftest import ha_servers
from tests.servers import ZooKeeperServer

from .stats import percentile


def timed_scales(b: Backend, request_id: str, writes: int) -> list[float]:
    out = []
    for i in range(writes):
        started = time.perf_counter()
        r = b.client.put(f"/api/requests/request/{request_id}/scale", json={"instances": 1 + i % 3})
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return out


def leader_and_standby_scales(backend: Callable[[str], Backend], writes: int) -> tuple[list[float], list[float]]:
    leader = backend("a")
    wait_for(lambda: leader.get("/api/state")["hostStates"][0]["master"], what="a leader")
    standby = backend("b")
    wait_for(lambda: standby.get("/api/state")["leader"] == leader.url, what="the standby")
    # No deploy, so that the scales change the request but launch nothing: the figures are the API's.
    leader.post("/api/requests", {"id": "bench", "requestType": "WORKER", "instances": 1})
    timed_scales(leader, "bench", 20)  # warm both paths up
    timed_scales(standby, "bench", 20)
    direct: list[float] = []
    queued: list[float] = []
    for _ in range(3):  # interleaved, so drift on the machine hits both alike
        direct += timed_scales(leader, "bench", writes // 3)
        queued += timed_scales(standby, "bench", writes // 3)
    return direct, queued


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, ZooKeeperServer(Path(tmp_name)) as zk, \
            ha_servers(Path(tmp_name), zk) as ha:
        direct, queued = leader_and_standby_scales(ha["backend"], args.writes)
    d50, q50 = statistics.median(direct), statistics.median(queued)
    d99, q99 = percentile(direct, 99), percentile(queued, 99)
    print(f"scale sent to the leader (baseline): p50 {d50:.2f} ms  p99 {d99:.2f} ms  ({len(direct)} writes)")
    print(f"scale sent to a standby (queued):    p50 {q50:.2f} ms  p99 {q99:.2f} ms  ({len(queued)} writes)")
    print(f"ratio standby / leader: p50 {q50 / d50:.1f}x  p99 {q99 / d99:.1f}x")


if __name__ == "__main__":
    main()
