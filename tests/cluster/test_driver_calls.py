"""Sing's pymesos driver bounds each HTTP call to the master: a master that accepts connections but
never answers (hung, or frozen) must not hold the driver for pymesos' default of a day."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from sing_backend.cluster import EmbeddedCluster
from sing_backend.scheduler import framework

from .helpers import Recorder, task_info


@pytest.fixture
def hung_master() -> Iterator[str]:
    """A listening socket that never answers: connections complete (the kernel's backlog), replies never come."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_version_request_to_a_hung_master_gives_up(hung_master: str) -> None:
    driver = framework.BoundedCallsDriver(None, {"user": "sing", "name": "sing"}, hung_master, use_addict=False,
                                          call_timeout=0.5)
    started = time.monotonic()
    assert driver._get_version(hung_master) is None
    assert time.monotonic() - started < 5


def test_calls_to_a_hung_master_give_up(hung_master: str, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = framework.BoundedCallsDriver(None, {"user": "sing", "name": "sing"}, hung_master, use_addict=False,
                                          call_timeout=0.5)
    driver._master = hung_master  # as pymesos sets it once subscribed
    driver.stream_id = "stream"
    monkeypatch.setattr(type(driver), "connected", property(lambda _self: True))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        driver._send({"type": "RECONCILE"})
    assert time.monotonic() - started < 5


def test_an_update_whose_acknowledgement_the_master_refuses_leaves_the_driver_running(
    cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # A backend frozen while it led, then thawed: its stream still holds updates, and another backend has
    # subscribed with the same framework id since, so the master refuses the acknowledgements sent with
    # the old stream id (400). pymesos raising that on its IO thread would abort the driver and interrupt
    # the main thread, stopping the backend.
    sched = Recorder()
    driver = framework.BoundedCallsDriver(sched, {"user": "root", "name": "sing", "failover_timeout": 60.0},
                                          cluster.master_address, use_addict=False, implicit_acknowledgements=True,
                                          failover=True)
    driver.start()
    try:
        sched.wait_event("registered")
        offer = sched.offer_for("agent-1")
        sched.forget(offer)
        driver.launchTasks(offer["id"], [task_info("kept", offer, "sleep 1000")])
        running = sched.status("kept", "TASK_RUNNING")
        current, driver.stream_id = driver.stream_id, "a-stream-replaced-by-a-newer-subscription"
        driver.on_event({"type": "UPDATE", "update": {"status": running}})  # as its IO thread does
        assert sched.states("kept") == ["TASK_RUNNING", "TASK_RUNNING"]
        assert "the master refused the acknowledgement of an update of task kept" in caplog.text
        assert "does not match framework" in caplog.text
        driver.stream_id = current
        # (Its first acknowledgement may have gone out after the swap, and been refused too: the master
        # holds the task's next update until one is taken.)
        driver.acknowledgeStatusUpdate(running)
        driver.killTask({"value": "kept"})
        sched.status("kept", "TASK_KILLED")
    finally:
        driver.stop(failover=True)
        driver.join()
