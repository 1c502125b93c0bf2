"""A read sent to a standby while the leader is frozen (SIGSTOP) is answered by the next leader as soon as
it leads, not after the standby's HTTP timeout (10 s) on the frozen one."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from sing_backend.local_backend import Backend
from tests.ha.test_failover import one_leader

SESSION_TIMEOUT = 2.0  # SING_ZK_SESSION_TIMEOUT of the `ha` fixture
# The session's expiry, the election and the take-up of the lead, with room for a loaded machine: well
# under the 10 s the standby would otherwise wait on the frozen leader.
MARGIN = 4.0


def timed_get(b: Backend, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = b.client.get(path, timeout=20)
    return r, time.monotonic() - started


def frozen(b: Backend) -> int:
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)
    return b.proc.pid


def test_a_read_on_the_standby_is_answered_once_it_leads(ha: dict):
    old = ha["backend"]("a")
    one_leader([old])
    standby = ha["backend"]("b")
    assert one_leader([old, standby]) is old
    old.post("/api/requests", {"id": "svc", "requestType": "WORKER"})
    pid = frozen(old)
    try:
        # Sent at once: the standby still takes the frozen backend for the leader, and forwards it there.
        r, took = timed_get(standby, "/api/requests")
        assert took < SESSION_TIMEOUT + MARGIN, f"the read took {took:.1f} s"
        assert r.status_code == 200, r.text
        assert "x-sing-stale" not in r.headers and "x-sing-leader" not in r.headers, r.headers
        assert [x["request"]["id"] for x in r.json()] == ["svc"]
        assert one_leader([standby]) is standby
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_read_on_the_other_standby_goes_to_the_new_leader(ha: dict):
    """Three backends: of the two standbys, the one elected answers its read itself, the other forwards
    its read to the new leader instead of waiting on the frozen one. (Reached while it is still taking up
    the lead, the new leader answers from the snapshot it had as a standby, marked stale: the forwarded
    answer's content is checked only when it is not so marked.)"""
    old = ha["backend"]("a")
    one_leader([old])
    standbys = [ha["backend"]("b"), ha["backend"]("c")]
    assert one_leader([old, *standbys]) is old
    old.post("/api/requests", {"id": "svc", "requestType": "WORKER"})
    pid = frozen(old)
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda b: timed_get(b, "/api/requests"), standbys))
        new = one_leader(standbys)
        for b, (r, took) in zip(standbys, answers, strict=True):
            assert took < SESSION_TIMEOUT + MARGIN, f"the read on {b.url} took {took:.1f} s"
            assert r.status_code == 200, r.text
            assert r.headers.get("x-sing-leader") == (None if b is new else new.url), (b.url, r.headers)
            assert b is not new or "x-sing-stale" not in r.headers, r.headers
            if "x-sing-stale" not in r.headers:
                assert [x["request"]["id"] for x in r.json()] == ["svc"]
    finally:
        os.kill(pid, signal.SIGCONT)
