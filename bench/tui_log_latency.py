"""Log line written by a task -> visible in the TUI's log view (real processes, local mode).

A task prints its wall-clock time 20 times a second (flushing each line); the real app follows its stdout
through the sandbox `read` API, and each line's latency is taken when the frame that shows it has been
rendered (target p50 <= 300 ms). The default poll interval is 0.25 s; --poll changes it.
Usage: python -m bench.tui_log_latency [--seconds 20] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from sing_backend.local_backend import Backend, wait_for
from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from sing_tui.screens.logs import LogScreen
from sing_tui.widgets.log_view import LogView

from .stats import summary

PRINTER = (f"{sys.executable} -u -c 'import time\nwhile True:\n    print(\"ts %.6f\" % time.time(), flush=True)\n"
           "    time.sleep(0.05)'")


async def measure(url: str, task_id: str, seconds: float, poll: float) -> list[float]:
    app = SingApp(TuiConfig(url=url, log_poll_seconds=poll), start_view="requests")
    latencies: list[float] = []
    original = LogView.write_batch

    def timed(self: LogView, batch: list[tuple[int, str]]) -> None:
        original(self, batch)
        stamps = [float(line.split()[1]) for _, line in batch if line.startswith("ts ")]

        def shown() -> None:  # runs once the frame with these lines has been rendered
            now = time.time()
            latencies.extend((now - ts) * 1000 for ts in stamps)
        self.call_after_refresh(shown)

    LogView.write_batch = timed  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            app.push_screen(LogScreen.for_task_ids([task_id]))
            await pilot.pause(2.0)  # skip the initial tail (old lines)
            latencies.clear()
            await pilot.pause(seconds)
    finally:
        LogView.write_batch = original  # type: ignore[method-assign]
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--poll", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(Path(tmp) / "data").start()
        try:
            backend.create({"id": "printer", "requestType": "WORKER"},
                           {"id": "v1", "command": PRINTER, "resources": {"cpus": 0.1, "memoryMb": 64}})
            wait_for(lambda: backend.active_tasks("printer"), timeout=30, what="the printer task")
            task_id = backend.active_tasks("printer")[0]["taskId"]["id"]
            lat = asyncio.run(measure(backend.url, task_id, args.seconds, args.poll))
            print(f"log line written -> visible in the log view (poll {args.poll:g} s, {len(lat)} lines): "
                  f"{summary(lat)}; target p50 <= 300 ms")
        finally:
            backend.close()


if __name__ == "__main__":
    main()
