"""One daemon thread that waits for child-process exits (pidfds) and timers.

A thread per task would not scale to hundreds of tasks; a pidfd per child in one selector does, and the
same loop runs kill escalations, offer-filter expiries and fail-over timeouts. If a pidfd cannot be
had (out of descriptors), that child is polled with waitid(WNOWAIT) instead.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

from ..wake_pipe import WakePipe

log = logging.getLogger(__name__)

Callback = Callable[[], None]

_POLL_SECONDS = 0.05


class TimerHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    def __init__(self, name: str = "sing-reactor") -> None:
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_pipe = WakePipe(self._selector)
        self._lock = threading.Lock()
        # Registrations are handed to the loop thread rather than touching the selector from callers.
        self._pending: list[tuple[int, Callback]] = []
        self._timers: list[tuple[float, int, TimerHandle, Callback]] = []
        self._polled: dict[int, Callback] = {}  # children without a pidfd; loop thread only
        self._seq = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            if key.fd != self._wake_pipe.fd:
                os.close(key.fd)
        self._selector.close()
        self._wake_pipe.close()

    def watch_exit(self, pid: int, on_exit: Callback) -> None:
        """Call ``on_exit`` (on the reactor thread) once process ``pid`` has exited, before it is reaped."""
        with self._lock:
            self._pending.append((pid, on_exit))
        self._wake()

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        handle = TimerHandle()
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), handle, callback))
        self._wake()
        return handle

    def _wake(self) -> None:
        self._wake_pipe.wake()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                pending, self._pending = self._pending, []
            for pid, on_exit in pending:
                self._register_pid(pid, on_exit)
            for key, _ in self._selector.select(self._timeout()):
                if key.data is None:
                    self._wake_pipe.drain()
                    continue
                self._selector.unregister(key.fd)
                os.close(key.fd)
                self._invoke(key.data)
            if self._polled:
                self._check_polled()
            self._run_due_timers()

    def _timeout(self) -> float | None:
        timeout = _POLL_SECONDS if self._polled else None
        with self._lock:
            if self._timers:
                until_timer = max(0.0, self._timers[0][0] - time.monotonic())
                timeout = until_timer if timeout is None else min(timeout, until_timer)
        return timeout

    def _register_pid(self, pid: int, on_exit: Callback) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            # Already reaped by someone else: still let the owner clean up.
            self._invoke(on_exit)
            return
        except OSError as exc:
            log.warning("no pidfd for pid %d (%s); polling it instead", pid, exc)
            self._polled[pid] = on_exit
            return
        self._selector.register(fd, selectors.EVENT_READ, on_exit)

    def _check_polled(self) -> None:
        for pid, on_exit in list(self._polled.items()):
            try:
                # WNOWAIT: only look; the owner reaps (and may signal the group first).
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                exited = True
            if exited:
                del self._polled[pid]
                self._invoke(on_exit)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        due: list[Callback] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                _, _, handle, callback = heapq.heappop(self._timers)
                if not handle.cancelled:
                    due.append(callback)
        for callback in due:
            self._invoke(callback)

    @staticmethod
    def _invoke(callback: Callback) -> None:
        # A failing callback must not take the loop (and with it every task's exit handling) down.
        try:
            callback()
        except Exception:
            log.exception("reactor callback failed")
