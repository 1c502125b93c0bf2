"""History listings during a backlog: while the database is away (here: locked by another client, as the
writer sees an outage), finished tasks queue in the history store, and every task listing lays the queued
ones over what the database holds. Figures: time of a listing of all tasks and of one request's tasks,
page 1 of 50, with N tasks queued (each a save and a status update), on SQLite; the baseline is the same
listing with nothing queued, same run. A listing runs on the event loop until it is sent to the query
process, so the time it takes is also time the backend's API and scheduler wait.
Usage: python -m bench.history_backlog [--queued 5000,20000,35000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from sing_backend.history import HistoryStore
from sing_backend.latency import freeze_heap, tune_interpreter

from .history_offload import task_doc
from .stats import percentile


async def timings(store: HistoryStore, request_id: str | None, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await store.request_task_ids(request_id, count=50, page=1)
        times.append((time.perf_counter() - start) * 1000)
    return times


async def queue_tasks(store: HistoryStore, first: int, n: int, now: int) -> None:
    for i in range(first, first + n):
        tid, task = task_doc(i, now)
        await store.save_task(task, task_id=tid["id"], request_id=tid["requestId"], deploy_id="v1", run_id=None,
                              host="host", started_at=tid["startedAt"])
        await store.add_task_updates([{"taskId": tid, "timestamp": now + i, "taskState": "TASK_FINISHED"}])


async def run(path: Path, backlogs: list[int], repeat: int) -> None:
    tune_interpreter()
    store = await HistoryStore.open(f"sqlite+aiosqlite:///{path}")
    freeze_heap()
    now = int(time.time() * 1000)
    try:
        await queue_tasks(store, 0, 2000, now)  # a committed history under the queued one
        await store.flush()
        base = {who: await timings(store, request_id, repeat) for who, request_id in (("all", None), ("one", "req-7"))}
        lock = sqlite3.connect(path, isolation_level=None, timeout=30)
        lock.execute("BEGIN EXCLUSIVE")  # the writer now waits, as for a database that is away
        queued = 0
        try:
            for backlog in backlogs:
                await queue_tasks(store, 2000 + queued, backlog - queued, now)
                queued = backlog
                # The store sends what was handed over in this turn of the event loop to its writer at the
                # next one: in a single message here, as the whole backlog came in one turn (the scheduler's
                # hand-over lets the loop turn every 100 writes). The listings are timed after it.
                await asyncio.sleep(0)
                for who, request_id in (("all", None), ("one", "req-7")):
                    times = await timings(store, request_id, repeat)
                    label = "all tasks     " if who == "all" else "one request's "
                    print(f"  {backlog:6d} queued, {label} p50 {statistics.median(times):7.2f} ms "
                          f"p99 {percentile(times, 99):7.2f} ms   (nothing queued: "
                          f"p50 {statistics.median(base[who]):5.2f} ms, "
                          f"{statistics.median(times) / statistics.median(base[who]):5.1f}x)")
        finally:
            lock.execute("COMMIT")
            lock.close()
        await store.flush()
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queued", default="5000,20000,35000", help="backlog sizes, in tasks, increasing")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    backlogs = sorted(int(n) for n in args.queued.split(","))
    print(f"History listings (page of 50) with finished tasks queued while the database is away, SQLite, "
          f"{args.repeat} listings each")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "h.db", backlogs, args.repeat))


if __name__ == "__main__":
    main()
