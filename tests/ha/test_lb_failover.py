"""Load balancing across a fail-over: with the built-in nginx adapter each leader runs its own nginx,
which starts empty, so a new leader must put the running healthy tasks back into it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for

from .test_failover import one_leader

APP = f"{sys.executable} {Path(__file__).parent.parent / 'apps' / 'webapp.py'}"
RES = {"cpus": 0.05, "memoryMb": 32, "numPorts": 1}
HC = {"uri": "/health", "startupIntervalSeconds": 1, "intervalSeconds": 1, "responseTimeoutSeconds": 1,
      "startupTimeoutSeconds": 20}


def answers(url: str, tries: int = 20) -> set[str]:
    """Task ids that answered through a load balancer (webapp.py answers with its task id)."""
    seen = set()
    with httpx.Client(timeout=3) as client:
        for _ in range(tries):
            try:
                r = client.get(url)
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                seen.add(r.text)
    return seen


@pytest.fixture
def lb_backends(tmp_path: Path, ha: dict) -> Iterator[list[tuple[Backend, str]]]:
    """Two backends of the `ha` servers, each with the nginx adapter: (backend, its nginx's URL)."""
    made: list[tuple[Backend, str]] = []
    try:
        for name in ("a", "b"):
            nginx_port = free_port()
            made.append((ha["backend"](name, SING_LOAD_BALANCER="nginx", SING_NGINX_PORT=str(nginx_port)),
                         f"http://127.0.0.1:{nginx_port}"))
        yield made
    finally:
        for b, _ in made:
            b.close()
        # nginx runs in a session of its own, so a backend killed with SIGKILL leaves its nginx behind.
        found = subprocess.run(["pgrep", "-f", f"nginx.*{tmp_path}"], capture_output=True, text=True)
        for pid in found.stdout.split():
            os.kill(int(pid), signal.SIGKILL)


def test_new_leader_puts_running_tasks_into_its_load_balancer(lb_backends: list[tuple[Backend, str]]):
    by_backend = dict(lb_backends)
    leader = one_leader(list(by_backend))
    leader.create({"id": "lbweb", "requestType": "SERVICE", "instances": 2, "loadBalanced": True},
                  {"id": "v1", "command": f"{APP} ok", "resources": RES, "healthcheck": HC,
                   "serviceBasePath": "/lbweb"})
    tasks = wait_for(lambda: len(ids := {t["taskId"]["id"] for t in leader.active_tasks("lbweb")}) == 2 and ids,
                     timeout=60, what="2 tasks")
    wait_for(lambda: answers(f"{by_backend[leader]}/lbweb/") == tasks, timeout=60,
             what="both tasks behind the leader's nginx")

    leader.stop(signal.SIGKILL)
    survivor = next(b for b in by_backend if b is not leader)
    new_leader = one_leader([survivor])
    wait_for(lambda: answers(f"{by_backend[new_leader]}/lbweb/") == tasks, timeout=60,
             what="the same tasks behind the new leader's nginx")
    assert {t["taskId"]["id"] for t in new_leader.active_tasks("lbweb")} == tasks
