"""Measures how late the event loop wakes up: the scheduler's responsiveness as one number."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopLagMonitor:
    def __init__(self, interval: float = 0.05, keep: int = 400) -> None:
        self._interval = interval
        self._samples: deque[float] = deque(maxlen=keep)
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._runner:
            self._runner.cancel()

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self._interval)
            self._samples.append((time.perf_counter() - start - self._interval) * 1000)

    def summary(self) -> dict[str, float]:
        """p50/p99/max lag in ms over the last 20 s or so."""
        if not self._samples:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self._samples)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]  # noqa: E731
        return {"p50": round(pick(0.5), 2), "p99": round(pick(0.99), 2), "max": round(ordered[-1], 2)}
