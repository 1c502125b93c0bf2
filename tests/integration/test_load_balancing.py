"""Load-balanced services through the built-in adapter and a real nginx: traffic is balanced, and a deploy
(good or failing) switches or keeps traffic without a single failed request. Each test has a service
of its own, so any one of them runs alone."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for

APP = f"{sys.executable} {Path(__file__).parent.parent / 'apps' / 'webapp.py'}"
RES = {"cpus": 0.05, "memoryMb": 32, "numPorts": 1}
HC = {"uri": "/health", "startupIntervalSeconds": 1, "intervalSeconds": 1, "responseTimeoutSeconds": 1,
      "startupTimeoutSeconds": 10}


@pytest.fixture(scope="module")
def lb_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backend, str]]:
    nginx_port = free_port()
    b = Backend(tmp_path_factory.mktemp("sing"), env={"SING_LOAD_BALANCER": "nginx",
                                                      "SING_NGINX_PORT": str(nginx_port)}).start()
    try:
        yield b, f"http://127.0.0.1:{nginx_port}"
    finally:
        b.close()


class Traffic:
    """A client loop through nginx counting answers by task and failures, until stopped.

    Like browsers and most HTTP libraries, it sends a GET again when the server closed a kept-alive
    connection just as the request went out (RFC 9112 9.3.1): nginx closes idle kept-alive connections
    when it reloads its configuration, which every upstream change does, and that race is nginx's, not a
    lost request. The close shows as the connection ended before an answer, or, when the request reached
    the socket after the close, as a reset (seen once in a full run under load). Any other error, and a
    second failure, counts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: Counter[str] = Counter()
        self.failures: list[str] = []
        self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    try:
                        r = client.get(self.url)
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        if isinstance(exc, httpx.ReadError) and not _reset(exc):
                            raise
                        self.retried += 1
                        r = client.get(self.url)
                    if r.status_code == 200:
                        self.seen[r.text] += 1
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:80]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.005)


def _reset(exc: BaseException | None) -> bool:
    """Whether a connection reset is behind `exc` (httpx wraps httpcore's error, which holds the OS one)."""
    while exc is not None:
        if isinstance(exc, ConnectionResetError) or any(isinstance(arg, ConnectionResetError) for arg in exc.args):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _result(backend: Backend, request_id: str, deploy_id: str) -> dict:
    return wait_for(lambda: (d := backend.get(f"/api/history/request/{request_id}/deploy/{deploy_id}")).get(
        "deployResult") and d["deployResult"], timeout=40, what=f"{deploy_id} result")


_services = itertools.count(1)


@pytest.fixture
def lb_service(lb_backend: tuple[Backend, str]) -> tuple[Backend, str, str]:
    """A load-balanced service of its own, two instances of v1 serving: (backend, its URL through nginx, id)."""
    backend, nginx = lb_backend
    rid = f"lbweb{next(_services)}"
    backend.create({"id": rid, "requestType": "SERVICE", "instances": 2, "loadBalanced": True},
                   {"id": "v1", "command": f"{APP} ok", "resources": RES, "healthcheck": HC,
                    "serviceBasePath": f"/{rid}"})
    assert _result(backend, rid, "v1")["deployState"] == "SUCCEEDED"
    return backend, f"{nginx}/{rid}/", rid


def _deploy(backend: Backend, rid: str, deploy_id: str, command: str, **extra: object) -> None:
    backend.post("/api/deploys", {"deploy": {"requestId": rid, "id": deploy_id, "command": command, "resources": RES,
                                             "healthcheck": HC, "serviceBasePath": f"/{rid}", **extra}})


def test_traffic_is_balanced_across_instances(lb_service: tuple[Backend, str, str]):
    backend, url, rid = lb_service
    seen = Counter(httpx.get(url, timeout=5).text for _ in range(20))
    assert set(seen) == {t["taskId"]["id"] for t in backend.active_tasks(rid)}


def test_deploy_switches_traffic_without_a_failed_request(lb_service: tuple[Backend, str, str]):
    backend, url, rid = lb_service
    with Traffic(url) as traffic:
        _deploy(backend, rid, "v2", f"{APP} ok")
        assert _result(backend, rid, "v2")["deployState"] == "SUCCEEDED"
        wait_for(lambda: {t["taskId"]["deployId"] for t in backend.active_tasks(rid, state=None)} == {"v2"},
                 what="old tasks gone")
        time.sleep(0.5)  # traffic goes on a moment after the switch: no request may fail then either
    assert traffic.failures == []
    assert any("-v1-" in k for k in traffic.seen) and any("-v2-" in k for k in traffic.seen)


def test_failing_deploy_keeps_old_tasks_serving(lb_service: tuple[Backend, str, str]):
    backend, url, rid = lb_service
    serving = {t["taskId"]["id"] for t in backend.active_tasks(rid)}
    with Traffic(url) as traffic:
        _deploy(backend, rid, "v3", f"{APP} 500", healthcheck={**HC, "maxRetries": 1})
        assert _result(backend, rid, "v3")["deployState"] == "FAILED"
    assert traffic.failures == []
    assert set(traffic.seen) == serving


def test_load_balanced_needs_a_base_path_and_a_port(lb_backend: tuple[Backend, str]):
    backend, _ = lb_backend
    backend.post("/api/requests", {"id": "lbcheck", "requestType": "SERVICE", "loadBalanced": True})
    r = backend.client.post("/api/deploys", json={"deploy": {"requestId": "lbcheck", "id": "v9", "command": "true",
                                                             "resources": RES}})
    assert r.status_code == 400 and "serviceBasePath" in r.json()["message"]
    r = backend.client.post("/api/deploys", json={"deploy": {"requestId": "lbcheck", "id": "v9", "command": "true",
                                                             "serviceBasePath": "/x", "resources": {"numPorts": 0}}})
    assert r.status_code == 400 and "loadBalancerPortIndex" in r.json()["message"]


def test_a_request_can_not_change_whether_it_is_load_balanced(lb_backend: tuple[Backend, str]):
    """Turned on, the running tasks (no ports, no base path) could never be registered, and would be
    killed and launched again in a loop; turned off, their upstreams would stay in the load balancer."""
    backend, _ = lb_backend
    backend.post("/api/requests", {"id": "plain", "requestType": "SERVICE", "instances": 1})
    backend.post("/api/requests", {"id": "balanced", "requestType": "SERVICE", "instances": 1, "loadBalanced": True})
    for rid, turned in (("plain", True), ("balanced", False)):
        before = backend.get(f"/api/requests/request/{rid}")
        r = backend.client.post("/api/requests", json={**before["request"], "loadBalanced": turned})
        assert r.status_code == 400, r.text
        was = "is not" if turned else "is"
        assert r.json()["message"] == (f"loadBalanced: request {rid} {was} load balanced, and a request can not "
                                       "change whether it is load balanced; delete it and create it again")
        assert backend.get(f"/api/requests/request/{rid}") == before
    # Nor through a deploy's updatedRequest.
    before = backend.get("/api/requests/request/balanced")
    r = backend.client.post("/api/deploys", json={
        "deploy": {"requestId": "balanced", "id": "unbalanced", "command": "true", "resources": RES,
                   "serviceBasePath": "/balanced"},
        "updatedRequest": {**before["request"], "loadBalanced": False}})
    assert r.status_code == 400 and r.json()["message"].startswith("updatedRequest.loadBalanced: request balanced "
                                                                   "is load balanced"), r.text
    assert backend.get("/api/requests/request/balanced") == before
    updated = backend.post("/api/requests", {"id": "plain", "requestType": "SERVICE", "instances": 2})
    assert updated["request"]["instances"] == 2  # any other change still goes through


def test_load_balanced_refused_without_a_load_balancer(backend: Backend):
    r = backend.client.post("/api/requests", json={"id": "nolb", "requestType": "SERVICE", "loadBalanced": True})
    assert r.status_code == 400 and "load balancer" in r.json()["message"]
