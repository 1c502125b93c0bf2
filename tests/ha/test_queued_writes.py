"""Writes sent to a standby are queued in ZooKeeper and applied by the leader, once: the caller gets
the leader's own answer, or 202 while no leader can apply it, and nothing is applied twice when the
leader changes."""

from __future__ import annotations

import base64
import itertools
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from kazoo.client import KazooClient

from sing_backend.local_backend import Backend, wait_for
from tests.ha.test_db_outage import history_rows
from tests.ha.test_failover import deployed_job, one_leader

RES = {"cpus": 0.01, "memoryMb": 8}


def queued(ha: dict) -> list[str]:
    """The writes waiting in ZooKeeper, read by a client of the test's own."""
    client = KazooClient(hosts=ha["zookeeper"].hosts)
    client.start(timeout=10)
    try:
        return client.get_children(f"{ha['root']}/writeQueue") if client.exists(f"{ha['root']}/writeQueue") else []
    finally:
        client.stop()
        client.close()


def runs(b: Backend, request_id: str) -> list[str]:
    """The runIds of a request's tasks, active and pending (one entry per task)."""
    active = [t["taskRequest"]["pendingTask"].get("runId") for t in b.get("/api/tasks/active")
              if t["taskId"]["requestId"] == request_id]
    pending = [p["pendingTask"].get("runId") for p in b.get("/api/tasks/scheduled")
               if p["pendingTask"]["pendingTaskId"]["requestId"] == request_id]
    return active + pending


def test_a_standby_queues_writes_and_answers_with_the_leaders_answer(ha: dict):
    leader = ha["backend"]("a")
    one_leader([leader])
    standby = ha["backend"]("b")
    one_leader([leader, standby])

    r = standby.client.post("/api/requests", json={"id": "svc", "requestType": "WORKER", "instances": 1})
    assert r.status_code == 200, r.text
    assert r.headers["x-sing-leader"] == leader.url and r.headers["x-sing-queued-write"]
    assert r.json()["request"]["id"] == "svc"
    assert [x["request"]["id"] for x in leader.get("/api/requests")] == ["svc"]

    # The leader's checks, and its messages naming the field, reach the caller unchanged.
    r = standby.client.put("/api/requests/request/svc/scale", json={"instances": -1})
    assert r.status_code == 400 and "instances" in r.json()["message"], r.text
    r = standby.client.post("/api/requests/request/nope/run", json={})
    assert r.status_code == 404 and "nope" in r.json()["message"], r.text
    r = standby.client.post("/api/requests", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"], r.text

    # The call is replayed as it was sent: query string, escaped path, any header.
    standby.put("/api/requests/request/svc/scale", {"instances": 15})
    r = standby.client.put("/api/requests/request/svc/scale", json={"instances": 1},
                           headers={"X-User": "Jösé".encode()})
    assert r.status_code == 400 and "largeScaleDownAcknowledged" in r.json()["message"], r.text
    r = standby.client.put("/api/requests/request/svc/scale?largeScaleDownAcknowledged=true", json={"instances": 1})
    assert r.status_code == 200 and r.json()["request"]["instances"] == 1, r.text
    for path in ("/api/agents/agent/a%2Fb/freeze", "/api/agents/agent/x%2541/freeze"):
        direct, through = leader.client.post(path, json={}), standby.client.post(path, json={})
        assert (through.status_code, through.json()) == (direct.status_code, direct.json()) == (404, direct.json())

    # A run-now through the standby: the leader's answer names the pending run.
    standby.post("/api/requests", {"id": "job", "requestType": "ON_DEMAND"})
    standby.post("/api/deploys", {"deploy": {"requestId": "job", "id": "v1", "command": "sleep 1000",
                                             "resources": RES}})
    r = standby.client.post("/api/requests/request/job/run", json={"runId": "first"})
    assert r.status_code == 200 and r.json()["pendingRequest"]["runId"] == "first", r.text
    name = r.headers["x-sing-queued-write"]
    # The answer is kept, and asked for on either backend.
    for b in (standby, leader):
        kept = b.get(f"/api/queued-writes/{name}")
        assert kept["state"] == "ANSWERED" and kept["status"] == 200 and kept["leader"] == leader.url
        assert kept["response"]["pendingRequest"]["runId"] == "first"
    assert standby.client.get("/api/queued-writes/w-nothing-0000000001").status_code == 404

    # Nothing is left queued, and the leader applied each write once.
    assert queued(ha) == [] and leader.get("/api/state")["queuedWrites"] == 0
    wait_for(lambda: runs(leader, "job") == ["first"], what="one task for the one run")


def test_writes_queued_while_the_leader_is_frozen_are_applied_once_by_the_next(ha: dict):
    """The leader stops answering (SIGSTOP): a write sent to the standby is acknowledged as queued (202),
    the standby takes over once the leader's session has expired, applies it, and the old leader, when
    it wakes up, applies nothing again."""
    old = ha["backend"]("a")
    one_leader([old])
    standby = ha["backend"]("b", SING_STANDBY_WRITE_WAIT_SECONDS="0.5")
    one_leader([old, standby])
    deployed_job(old)

    assert old.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        r = standby.client.post("/api/requests/request/job/run", json={"runId": "during"})
        assert r.status_code == 202, r.text
        name = r.json()["queuedWrite"]
        assert name in r.json()["message"] and name in queued(ha)
        # The session of the frozen leader expires (2 s) and the standby leads, then applies the write.
        wait_for(lambda: standby.get(f"/api/queued-writes/{name}")["state"] == "ANSWERED", timeout=30,
                 what="the queued write applied by the new leader")
        answer = standby.get(f"/api/queued-writes/{name}")
        assert answer["status"] == 200 and answer["leader"] == standby.url
        assert answer["response"]["pendingRequest"]["runId"] == "during"
    finally:
        os.kill(old.proc.pid, signal.SIGCONT)
    # The old leader wakes up, finds its session gone, and stands by.
    wait_for(lambda: old.client.get("/api/state").headers.get("x-sing-leader") == standby.url, timeout=30,
             what="the old leader standing by")
    # A second write through the old leader, now a standby, goes through the new leader.
    r = old.client.post("/api/requests/request/job/run", json={"runId": "after"})
    assert r.status_code == 200 and r.headers["x-sing-leader"] == standby.url, r.text
    wait_for(lambda: sorted(runs(standby, "job")) == ["after", "during"], what="each run once")
    assert queued(ha) == []


@pytest.mark.timeout(600)
def test_writes_streaming_through_every_backend_while_leaders_die_land_once(ha: dict):
    """Two clients keep sending run-nows (each with its own runId) to any backend, leader or standby, while
    the leader is killed (SIGKILL) again and again, so that leaders die in the middle of applying queued
    writes as well as between them. Every acknowledged run (200, or 202 queued) runs exactly once; a
    run whose answer was lost (the backend died under it) runs at most once; none runs twice."""
    names = iter(f"n{i}" for i in range(100))
    backends = [ha["backend"](next(names)) for _ in range(3)]
    first = one_leader(backends)
    deployed_job(first, "sleep 0.2")

    alive = list(backends)
    acknowledged: list[str] = []
    unknown: list[str] = []
    unexpected: list[str] = []
    stop = threading.Event()

    def client(name: str) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            run_id = f"{name}-{n}"
            target = alive[n % len(alive)]
            try:
                r = target.client.post("/api/requests/request/job/run", json={"runId": run_id}, timeout=30)
            except httpx.HTTPError:
                unknown.append(run_id)  # sent to a backend that died under it
                continue
            if r.status_code in (200, 202):
                acknowledged.append(run_id)
            elif r.status_code == 503:
                unknown.append(run_id)  # its backend lost ZooKeeper or the lead under it: may or may not run
            else:
                unexpected.append(f"{run_id}: {r.status_code} {r.text}")
            time.sleep(0.02)  # a client's pace, so that the tasks stay few

    writers = [threading.Thread(target=client, args=(name,)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    try:
        for _ in range(8):
            leader = one_leader(alive)
            # Writes flowing under this leader (queued ones included) before it dies.
            count = len(acknowledged)
            wait_for(lambda count=count: len(acknowledged) >= count + 10, timeout=30, what="writes under this leader")
            alive.remove(leader)
            leader.stop(signal.SIGKILL)
            alive.append(ha["backend"](next(names)))
    finally:
        stop.set()
        for writer in writers:
            writer.join(60)
    assert unexpected == []
    final = one_leader(alive)
    wait_for(lambda: final.get("/api/state")["queuedWrites"] == 0, timeout=30, what="the queue drained")
    wait_for(lambda: not runs(final, "job"), timeout=60, what="every run finished")
    ran = Counter(row["runId"] for row in history_rows(final, "job"))
    assert [run_id for run_id, n in ran.items() if n > 1] == [], "runs applied twice"
    assert set(acknowledged) <= set(ran), f"acknowledged runs lost: {set(acknowledged) - set(ran)}"
    assert set(ran) <= set(acknowledged) | set(unknown), "runs that no client sent"


def test_a_new_leader_applies_the_writes_queued_during_the_fail_over_before_its_own(ha: dict):
    """Writes queued on the standby while no leader could apply them (each answered 202) come before the
    writes sent to the new leader once it is elected: the last write sent is the one that holds."""
    old = ha["backend"]("a")
    one_leader([old])
    standby = ha["backend"]("b", SING_STANDBY_WRITE_WAIT_SECONDS="0.5")
    one_leader([old, standby])
    old.post("/api/requests", {"id": "svc", "requestType": "WORKER", "instances": 1})

    assert old.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)
    try:
        def scale(instances: int) -> int:
            r = standby.client.put("/api/requests/request/svc/scale", json={"instances": instances}, timeout=30)
            return r.status_code

        # All at once, well within the frozen leader's session (2 s), so that no leader applies any.
        with ThreadPoolExecutor(30) as pool:
            assert set(pool.map(scale, [1 + i % 6 for i in range(30)])) == {202}
    finally:
        old.stop(signal.SIGKILL)
    # The standby leads as soon as it can; the write sent to it then is the last.
    wait_for(lambda: standby.get("/api/state")["hostStates"][0]["master"], timeout=30, interval=0.01,
             what="the standby leading")
    r = standby.client.put("/api/requests/request/svc/scale", json={"instances": 9}, timeout=30)
    # Queued behind the 30 (202 if they take longer than this backend's 0.5 s wait to apply).
    assert r.status_code in (200, 202), r.text
    wait_for(lambda: standby.get("/api/state")["queuedWrites"] == 0, timeout=30, what="the queue applied")
    assert standby.get("/api/requests/request/svc")["request"]["instances"] == 9


def test_a_write_sent_again_with_its_id_is_applied_once(ha: dict):
    """A client that cannot tell whether its write went through (a 503 while it was being queued, an
    answer lost with a backend) sends it again with the same X-Sing-Write-Id, to any backend: it is
    applied once, and each repeat gets the first one's answer."""
    leader = ha["backend"]("a")
    one_leader([leader])
    standby = ha["backend"]("b")
    one_leader([leader, standby])
    deployed_job(leader)

    headers = {"X-Sing-Write-Id": "run_once_1"}
    answers = [b.client.post("/api/requests/request/job/run", json={"runId": "once"}, headers=headers)
               for b in (standby, standby, leader)]
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["pendingRequest"]["runId"] == "once"
    assert runs(leader, "job") == ["once"]
    kept = standby.get("/api/queued-writes/run_once_1")
    assert kept["state"] == "ANSWERED" and kept["name"] == answers[0].headers["x-sing-queued-write"]

    # Another write that reuses the id is refused, and not applied.
    for b in (standby, leader):
        r = b.client.post("/api/requests/request/job/run", json={"runId": "other"}, headers=headers)
        assert r.status_code == 409 and "used for another write" in r.json()["message"], r.text
        for bad in ("not/an-id", ""):
            r = b.client.post("/api/requests/request/job/run", json={}, headers={"X-Sing-Write-Id": bad})
            assert r.status_code == 400 and "X-Sing-Write-Id" in r.json()["message"], r.text
        for ref in ("w-", "w--", "run_once_1/x", "nothing_here"):
            assert b.client.get(f"/api/queued-writes/{ref}").status_code == 404
    wait_for(lambda: queued(ha) == [], what="the refused writes out of the queue")
    assert runs(leader, "job") == ["once"]


def test_a_write_too_large_for_zookeeper_is_refused_alike_by_leader_and_standby_and_changes_nothing(ha: dict):
    leader = ha["backend"]("a")
    one_leader([leader])
    standby = ha["backend"]("b")
    one_leader([leader, standby])
    leader.post("/api/requests", {"id": "svc", "requestType": "WORKER", "instances": 1})
    # 1.8 MB that compresses to 1.35 MB (under the 2 MiB body limit, over ZooKeeper's 1 MB per write).
    owners = [base64.b64encode(os.urandom(750)).decode() for _ in range(1800)]
    huge = {"id": "huge", "requestType": "WORKER", "instances": 1, "owners": owners}
    answers = [b.client.post("/api/requests", json=huge) for b in (leader, standby)]
    answers.append(leader.client.post("/api/deploys", json={"deploy": {
        "requestId": "svc", "id": "v1", "command": "sleep 1000", "resources": RES, "env": {"BIG": "".join(owners)}}}))
    for r in answers:
        assert r.status_code == 413 and r.json()["message"].startswith("body: too large to be saved in ZooKeeper"), \
            r.text[:300]
    assert leader.client.get("/api/requests/request/huge").status_code == 404
    assert "pendingDeploy" not in leader.get("/api/requests/request/svc")["requestDeployState"]
    # The leader kept the lead: a refused write is not a failure of the leader's.
    assert {b.get("/api/state")["leader"] for b in (leader, standby)} == {leader.url}
    assert leader.get("/api/state")["queuedWrites"] == 0 and queued(ha) == []

    # A body over the limit sent in chunks (no Content-Length) gets the same 413 as one that says its size.
    def chunks():
        for _ in range(40):
            yield b" " * 65536

    for b in (leader, standby):
        r = b.client.post("/api/requests", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["message"] == "body: larger than 2097152 bytes", r.text[:300]
    standby.put("/api/requests/request/svc/scale", {"instances": 2})
    assert leader.get("/api/requests/request/svc")["request"]["instances"] == 2
