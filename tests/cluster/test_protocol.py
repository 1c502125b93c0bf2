"""The v1 scheduler API at the HTTP level: what pymesos relies on, and what real Mesos refuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from sing_backend.cluster import EmbeddedCluster, default_agents

FRAMEWORK = {"user": "root", "name": "raw"}


@pytest.fixture
def fast_cluster(tmp_path) -> Iterator[EmbeddedCluster]:  # type: ignore[no-untyped-def]
    c = EmbeddedCluster(tmp_path / "c", default_agents(2), heartbeat_interval=0.2)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _records(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """RecordIO events from a streaming response."""
    buffer = b""
    for data in response.iter_bytes():
        buffer += data
        while b"\n" in buffer:
            length_text, rest = buffer.split(b"\n", 1)
            length = int(length_text)
            if len(rest) < length:
                break
            yield orjson.loads(rest[:length])
            buffer = rest[length:]


def test_version_is_plain_numeric(fast_cluster: EmbeddedCluster) -> None:
    version = httpx.get(f"http://{fast_cluster.master_address}/version").json()["version"]
    assert tuple(int(n) for n in version.split(".")) == (1, 11, 0)


def test_subscribe_stream_and_call_validation(fast_cluster: EmbeddedCluster) -> None:
    url = f"http://{fast_cluster.master_address}/api/v1/scheduler"
    subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": FRAMEWORK}}
    with httpx.Client(timeout=5) as client, client.stream("POST", url, json=subscribe) as stream:
        assert stream.status_code == 200
        assert stream.headers["transfer-encoding"] == "chunked"
        stream_id = stream.headers["mesos-stream-id"]
        events = _records(stream)
        subscribed = next(events)
        assert subscribed["type"] == "SUBSCRIBED"
        framework_id = subscribed["subscribed"]["framework_id"]["value"]
        assert subscribed["subscribed"]["heartbeat_interval_seconds"] == 0.2
        offers = next(events)
        assert offers["type"] == "OFFERS" and len(offers["offers"]["offers"]) == 2
        started = time.monotonic()
        assert next(events) == {"type": "HEARTBEAT"}
        assert time.monotonic() - started < 1.0

        with httpx.Client(timeout=5) as calls:
            call = {"type": "REVIVE", "framework_id": {"value": framework_id}}
            ok = calls.post(url, json=call, headers={"Mesos-Stream-Id": stream_id})
            assert ok.status_code == 202 and ok.content == b""
            assert calls.post(url, json=call).status_code == 400  # no stream id
            assert calls.post(url, json=call, headers={"Mesos-Stream-Id": "bogus"}).status_code == 400
            unknown = {"type": "REVIVE", "framework_id": {"value": "nope"}}
            assert calls.post(url, json=unknown, headers={"Mesos-Stream-Id": stream_id}).status_code == 400
            weird = {"type": "FROBNICATE", "framework_id": {"value": framework_id}}
            assert calls.post(url, json=weird, headers={"Mesos-Stream-Id": stream_id}).status_code == 400
            garbage = calls.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
            assert garbage.status_code == 400 and garbage.headers["content-type"] == "text/plain"
            bad_accept = {"type": "ACCEPT", "framework_id": {"value": framework_id}, "accept": "x"}
            assert calls.post(url, json=bad_accept, headers={"Mesos-Stream-Id": stream_id}).status_code == 400
            # The keep-alive connection survived all of that.
            assert calls.post(url, json=call, headers={"Mesos-Stream-Id": stream_id}).status_code == 202


@pytest.mark.parametrize("missing", ["user", "name"])
def test_subscribe_requires_user_and_name(fast_cluster: EmbeddedCluster, missing: str) -> None:
    info = {k: v for k, v in FRAMEWORK.items() if k != missing}
    response = httpx.post(
        f"http://{fast_cluster.master_address}/api/v1/scheduler",
        json={"type": "SUBSCRIBE", "subscribe": {"framework_info": info}},
    )
    assert response.status_code == 400
    assert missing in response.text


def test_simulated_mode_runs_no_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Benchmark-only mode: RUNNING without a process, KILLED on kill.
    from .helpers import Recorder, start_driver, task_info

    cluster = EmbeddedCluster(tmp_path / "sim", default_agents(2), simulated=True)
    cluster.start()
    sched = Recorder()
    driver = start_driver(cluster.master_address, sched)
    try:
        offer = sched.offer_for("agent-1")
        sched.forget(offer)
        driver.launchTasks(offer["id"], [task_info("sim", offer, "/definitely/not/a/binary")])
        sched.status("sim", "TASK_RUNNING")
        assert cluster.sandbox_dir("sim") is None
        assert not list((tmp_path / "sim/agents/agent-1/running").iterdir())
        driver.killTask({"value": "sim"})
        sched.status("sim", "TASK_KILLED")
        assert sched.states("sim") == ["TASK_RUNNING", "TASK_KILLED"]
    finally:
        driver.stop(failover=True)
        driver.join()
        cluster.stop()
