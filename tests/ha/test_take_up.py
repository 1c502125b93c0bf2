"""A backend demoted while it is still taking up the lead must stop there: it must not go on to
subscribe to the Mesos master after the backend elected in its place has (the master would then hold
a framework nobody schedules for, or hand the new leader's framework to the demoted one)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sing_backend.api.app import create_app
from sing_backend.local_backend import Backend, free_port
from sing_backend.runtime import Runtime
from sing_backend.settings import Settings
from sing_backend.state.zookeeper import Fenced

from .test_master_watchdog import frameworks, host_state


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def first_take_up_held(tmp_path: Path, ha: dict) -> tuple[Runtime, asyncio.Event, asyncio.Event]:
    """A backend in mesos mode (not started) whose first take-up of the lead stops half-way, its state
    loaded but not yet subscribed to the master, until `gate` is set; `reached` is set when it gets there."""
    port = free_port()
    settings = Settings(mode="mesos", mesos_master=ha["cluster"].address, zk_hosts=ha["zookeeper"].hosts,
                        zk_root=ha["root"], zk_session_timeout=2, db_url=ha["db_url"], data_dir=tmp_path / "a",
                        port=port, advertise_url=f"http://127.0.0.1:{port}")
    rt = Runtime(settings)
    reached, gate = asyncio.Event(), asyncio.Event()
    find_master = rt._find_master

    async def first_held() -> None:
        if not reached.is_set():
            reached.set()
            await gate.wait()
        await find_master()

    rt._find_master = first_held  # type: ignore[method-assign]
    return rt, reached, gate


async def test_a_backend_demoted_while_taking_up_the_lead_never_subscribes(tmp_path: Path, ha: dict) -> None:
    cluster = ha["cluster"]
    a, reached, gate = first_take_up_held(tmp_path, ha)
    await a.start()
    try:
        await asyncio.wait_for(reached.wait(), 30)
        b: Backend = await asyncio.to_thread(ha["backend"], "b")
        assert a.election is not None
        a.election.resign()  # as a suspended ZooKeeper connection would: a steps down, b is elected
        await until(lambda: host_state(b)["master"] and host_state(b)["mesosConnected"], 30,
                    "b leading and subscribed")
        [framework] = frameworks(cluster.address)
        assert framework["active"]

        gate.set()  # a's take-up goes on, after its lead has ended
        await until(lambda: not a._transition.locked() and a.gateway is None and not a.leading, 30,
                    "a's take-up stopped")
        # a never subscribed: the master knows b's framework alone, and it is still b's, active.
        assert [(f["id"], f["active"]) for f in frameworks(cluster.address)] == [(framework["id"], True)]
        assert host_state(b)["mesosConnected"]
        assert a.election.leader() == b.url
        with pytest.raises(Fenced):  # and a saves nothing
            a.store.put("scratch", "late", {"v": 1})  # type: ignore[union-attr]
        # b schedules on: a request made now gets its task.
        b.create({"id": "after", "requestType": "WORKER", "instances": 1},
                 {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.01, "memoryMb": 8}})
        await until(lambda: len(b.active_tasks("after")) == 1, 30, "b's new task running")
    finally:
        gate.set()
        await a.stop()


async def test_a_backend_elected_again_while_taking_up_the_lead_leads_once_it_is_done(tmp_path: Path,
                                                                                       ha: dict) -> None:
    """Demoted half-way through taking up the lead, and elected again at once (the only backend): the
    first take-up is undone before the second runs, not after it (which stopped the second one's
    scheduler and fenced its store off, leaving a backend that held the lead and could save nothing)."""
    cluster = ha["cluster"]
    a, reached, gate = first_take_up_held(tmp_path, ha)
    app = create_app(a.settings, a)
    await a.start()
    try:
        await asyncio.wait_for(reached.wait(), 30)
        assert a.election is not None
        first = a.election.lock_path()
        a.election.resign()
        await until(lambda: a.election.lock_path() not in (None, first), 30, "a elected again")
        gate.set()
        await until(lambda: a.leading and not a._transition.locked(), 30, "a leading")
        await until(lambda: [f["active"] for f in frameworks(cluster.address)] == [True], 30,
                    "a's framework subscribed, and no other")
        # It schedules, and saves what it does: a request made through its API gets its task.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a/singularity",
                                     timeout=30) as api:
            for path, body in (("/api/requests", {"id": "after", "requestType": "WORKER", "instances": 1}),
                               ("/api/deploys", {"deploy": {"requestId": "after", "id": "v1", "command": "sleep 1000",
                                                            "resources": {"cpus": 0.01, "memoryMb": 8}}})):
                r = await api.post(path, json=body)
                assert r.status_code == 200, r.text

            async def running() -> int:
                r = await api.get("/api/tasks/active")
                return sum(t["taskId"]["requestId"] == "after" for t in r.json())

            deadline = time.monotonic() + 30
            while await running() != 1:
                assert time.monotonic() < deadline, "the task of the request made after the take-up never ran"
                await asyncio.sleep(0.1)
    finally:
        gate.set()
        await a.stop()
