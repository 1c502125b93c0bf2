"""Ordered, non-blocking hand-off of history writes from the scheduler to the history store.

The scheduler's decisions are synchronous; history I/O is async. Writes are queued in order and
drained by one background task, so the scheduling path never waits on the database, and readers
call `drain()` first to see every earlier write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

_WRITES_PER_TURN = 100

Write = Callable[[], Awaitable[None]]


class HistorySink:
    def __init__(self) -> None:
        self._queue: deque[Write] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="history-sink")

    def put(self, write: Write) -> None:
        self._queue.append(write)
        self._idle.clear()
        self._wakeup.set()

    async def drain(self) -> None:
        if self._runner is None:
            while self._queue:
                await self._queue.popleft()()
            return
        await self._idle.wait()

    async def close(self) -> None:
        await self.drain()
        if self._runner:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            handed = 0
            while self._queue:
                write = self._queue.popleft()
                try:
                    await write()
                except Exception:  # a failed history write must not stop the scheduler
                    log.exception("history write failed")
                handed += 1
                if handed % _WRITES_PER_TURN == 0:
                    # Handing over does not wait, so a burst (a big round's launches) would hold the
                    # event loop until the last write; let API calls in between.
                    await asyncio.sleep(0)
            self._idle.set()
