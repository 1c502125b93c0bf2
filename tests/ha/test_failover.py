"""Leader election and fail-over: several backends against a real ZooKeeper, MariaDB and a shared
`sing cluster`. Exactly one schedules, all serve the API, and killing the leader loses nothing."""

from __future__ import annotations

import signal
import socket
import time

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for

RES = {"cpus": 0.01, "memoryMb": 8}


def leaders(backends: list[Backend]) -> list[Backend]:
    out = []
    for b in backends:
        try:
            state = b.client.get("/api/state", timeout=3)
        except httpx.HTTPError:
            continue
        if state.status_code == 200 and state.headers.get("x-sing-leader") is None \
                and state.json()["hostStates"][0]["master"]:
            out.append(b)
    return out


def deployed_job(b: Backend, command: str = "sleep 1000") -> None:
    """An ON_DEMAND request "job", its deploy running `command` active."""
    b.post("/api/requests", {"id": "job", "requestType": "ON_DEMAND"})
    b.post("/api/deploys", {"deploy": {"requestId": "job", "id": "v1", "command": command, "resources": RES}})
    wait_for(lambda: b.get("/api/requests/request/job")["activeDeploy"], what="job deployed")


def one_leader(backends: list[Backend]) -> Backend:
    return wait_for(lambda: len(ls := leaders(backends)) == 1 and ls[0], timeout=20, what="exactly one leader")


def running_ids(b: Backend, request_id: str) -> set[str]:
    return {t["taskId"]["id"] for t in b.active_tasks(request_id)}


def test_a_backend_that_cannot_take_up_the_lead_gives_it_up(ha: dict):
    """Backend a wins the election but cannot start scheduling (the port of its nginx is taken): it gives
    the lead up instead of holding it while scheduling nothing, so b leads and applies the writes queued
    on a. Once the port is free, a takes over when b dies."""
    nginx_port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", nginx_port))
        squatter.listen()
        a = ha["backend"]("a", SING_LOAD_BALANCER="nginx", SING_NGINX_PORT=str(nginx_port))
        wait_for(lambda: "could not take up the lead" in a.log_path.read_text(), timeout=30, what="a failing to lead")
        b = ha["backend"]("b")
        assert one_leader([a, b]) is b
        r = a.client.post("/api/requests", json={"id": "svc", "requestType": "WORKER"}, timeout=30)
        assert r.status_code == 200 and r.headers["x-sing-leader"] == b.url, r.text
    b.stop(signal.SIGKILL)
    assert one_leader([a]) is a
    assert [x["request"]["id"] for x in a.get("/api/requests")] == ["svc"]


def test_one_leader_standbys_forward_and_failover_keeps_tasks(ha: dict):
    backends = [ha["backend"]("a"), ha["backend"]("b")]
    leader = one_leader(backends)
    standby = next(b for b in backends if b is not leader)
    # A write through the standby reaches the leader and is acknowledged by it.
    r = standby.client.post("/api/requests", json={"id": "svc", "requestType": "WORKER", "instances": 2})
    assert r.status_code == 200 and r.headers["x-sing-leader"] == leader.url
    standby.post("/api/deploys", {"deploy": {"requestId": "svc", "id": "v1", "command": "sleep 1000",
                                             "resources": RES, "considerHealthyAfterRunningForSeconds": 0}})
    before = wait_for(lambda: len(ids := running_ids(standby, "svc")) == 2 and ids, what="2 tasks")
    assert standby.get("/api/state")["leader"] == leader.url
    # A read the standby forwards comes back with the leader's body and one set of the standby's own headers.
    r = standby.client.get("/api/requests/request/svc")
    assert r.headers["x-sing-leader"] == leader.url and r.json() == leader.get("/api/requests/request/svc")
    assert len(r.headers.get_list("date")) == 1 and len(r.headers.get_list("server")) == 1
    # Every backend is listed, as Singularity lists every scheduler host; only the leader drives Mesos.
    hosts = {h["url"]: (h["hostname"], h["master"], h["mesosConnected"])
             for h in standby.get("/api/state")["hostStates"]}
    assert hosts == {leader.url: ("127.0.0.1", True, True), standby.url: ("127.0.0.1", False, False)}

    started = time.monotonic()
    leader.stop(signal.SIGKILL)
    new_leader = one_leader([standby])
    took = time.monotonic() - started
    assert took < 2 + 1 + 5, f"fail-over took {took:.1f} s"
    # Same framework, reconciled: the same two tasks, none lost, none doubled.
    wait_for(lambda: new_leader.get("/api/state")["hostStates"][0]["mesosConnected"], what="re-registered")
    time.sleep(1.5)  # give a wrong reconciliation the time to show up as a replacement
    assert running_ids(new_leader, "svc") == before
    assert len(new_leader.active_tasks("svc", state=None)) == 2
    # And it schedules: a scale-up launches a new task.
    new_leader.put("/api/requests/request/svc/scale", {"instances": 3})
    wait_for(lambda: len(running_ids(new_leader, "svc")) == 3, what="scaled after fail-over")


@pytest.mark.timeout(600)
def test_repeated_leader_kills_lose_no_write_and_no_task(ha: dict):
    """20 times: create and deploy a request through a standby, kill the leader (SIGKILL), and at once,
    during the fail-over, scale it and run an on-demand job through a standby (those writes are queued
    until the new leader applies them). Every acknowledged write lands, once."""
    names = iter(f"n{i}" for i in range(100))
    backends = [ha["backend"](next(names)) for _ in range(3)]
    first = one_leader(backends)
    deployed_job(first)
    acknowledged: list[str] = []
    run_ids: list[str] = []
    for round_no in range(20):
        leader = one_leader(backends)
        survivors = [b for b in backends if b is not leader]
        rid = f"r{round_no}"
        b = survivors[round_no % 2]
        r = b.client.post("/api/requests", json={"id": rid, "requestType": "WORKER", "instances": 1})
        assert r.status_code == 200, r.text
        acknowledged.append(rid)
        r = b.client.post("/api/deploys", json={"deploy": {"requestId": rid, "id": "v1", "command": "sleep 1000",
                                                           "resources": RES,
                                                           "considerHealthyAfterRunningForSeconds": 0}})
        assert r.status_code == 200, r.text
        leader.stop(signal.SIGKILL)
        # No leader now: answered by the next one once elected (200), or acknowledged as queued (202).
        r = b.client.put(f"/api/requests/request/{rid}/scale", json={"instances": 2})
        assert r.status_code in (200, 202), r.text
        r = b.client.post("/api/requests/request/job/run", json={"runId": f"run{round_no}"})
        assert r.status_code in (200, 202), r.text
        run_ids.append(f"run{round_no}")
        backends = survivors + [ha["backend"](next(names))]
    final = one_leader(backends)
    ids = {r["request"]["id"] for r in final.get("/api/requests")}
    assert set(acknowledged) <= ids, f"lost writes: {set(acknowledged) - ids}"
    for rid in acknowledged:
        wait_for(lambda rid=rid: len(final.active_tasks(rid)) == 2, timeout=30, what=f"{rid} scaled to 2, running")
    wait_for(lambda: len(final.active_tasks("job")) == len(run_ids), timeout=30, what="every run running")
    tasks = final.get("/api/tasks/active")
    per_request: dict[str, int] = {}
    for t in tasks:
        per_request[t["taskId"]["requestId"]] = per_request.get(t["taskId"]["requestId"], 0) + 1
    expected = {**{rid: 2 for rid in acknowledged}, "job": len(run_ids)}
    assert per_request == expected, f"tasks launched twice: {per_request}"
    runs = sorted(t["taskRequest"]["pendingTask"].get("runId") for t in tasks if t["taskId"]["requestId"] == "job")
    assert runs == sorted(run_ids), "a run-now applied twice or lost"
    assert final.get("/api/state")["queuedWrites"] == 0
