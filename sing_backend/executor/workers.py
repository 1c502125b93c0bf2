"""A small pool of daemon threads for slow work off the launch path (artifact fetches, pre-kill
commands, log compression and upload).

Not concurrent.futures: its threads are joined when the interpreter exits, so one stalled download
would hold up a backend's shutdown for the whole download timeout.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Workers:
    """Up to ``count`` threads, started as work arrives: an idle agent costs none."""

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._count = count
        self._name = name
        self._threads: list[threading.Thread] = []

    def submit(self, job: Job) -> None:
        with self._idle:
            self._outstanding += 1
            if len(self._threads) < min(self._count, self._outstanding):
                thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put(job)

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted job has run; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        with self._idle:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("background job failed")
            finally:
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()
