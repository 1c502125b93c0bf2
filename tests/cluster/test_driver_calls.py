"""Sing's pymesos driver bounds each HTTP call to the master: a master that accepts connections but
never answers (hung, or frozen) must not hold the driver for pymesos' default of a day."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from sing_backend.scheduler import framework


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
