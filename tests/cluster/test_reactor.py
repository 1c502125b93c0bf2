"""The reactor: child exits via pidfd (or polling when no pidfd can be had), and timers."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from sing_backend.executor.reactor import Reactor


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _exit_seen(reactor: Reactor) -> None:
    proc = subprocess.Popen(["sh", "-c", "exit 7"])
    seen = threading.Event()
    codes: list[int | None] = []

    def on_exit() -> None:
        codes.append(proc.poll())  # still reapable: the reactor only looked
        seen.set()

    reactor.watch_exit(proc.pid, on_exit)
    assert seen.wait(5)
    assert codes == [7]


def test_child_exit_is_reported_before_reaping(reactor: Reactor) -> None:
    _exit_seen(reactor)


def test_child_exit_is_polled_without_pidfds(reactor: Reactor, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fds(pid: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", no_fds)
    _exit_seen(reactor)


def test_timers_run_in_order_and_can_be_cancelled(reactor: Reactor) -> None:
    order: list[str] = []
    done = threading.Event()
    reactor.call_later(0.05, lambda: order.append("second"))
    reactor.call_later(0.0, lambda: order.append("first"))
    reactor.call_later(0.02, lambda: order.append("cancelled")).cancel()
    reactor.call_later(0.03, lambda: 1 / 0)  # a failing callback does not stop the loop
    reactor.call_later(0.1, done.set)
    assert done.wait(5)
    assert order == ["first", "second"]
