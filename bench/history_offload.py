"""History at volume: 100,000 finished tasks (each a task row and 3 status updates) written to the history
store on SQLite and on MySQL/MariaDB, as the scheduler hands them over: a task is saved when it launches,
and its RUNNING and FINISHED updates come in later rounds, so most commits both insert tasks and move the
status of tasks written before. Figures: rows/s, and the p99 of a paged history query during the writes
against the same query idle (the baseline, same run). Beside it, the floor of that query's path: a round
trip to a query process that lists nothing (its snapshot's one SELECT), idle and during the writes: no
listing built on that path can be faster than it.
Targets: >= 30,000 rows/s; query p99 during the writes <= 1.2x idle.

With --rate, the scheduler's hand-over is paced to that many rows/s (a round no sooner than its share of
the time): whether the query's p99 during the writes depends on how fast they come.

MariaDB runs twice: on the machine's shared server (127.0.0.1:3306, whatever its configuration; Debian's
default buffer pool is 128 MiB, less than the history of 100,000 tasks), and on a server of the
benchmark's own with the buffer pool and redo log a production server would have for this data
(1 GiB, 512 MiB).
Usage: python -m bench.history_offload [--tasks 100000] [--runs 1] [--db sqlite|shared|sized ...] [--rate ROWS]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sing_backend.history import HistoryStore
from sing_backend.latency import freeze_heap, tune_interpreter
from tests.servers import MariaDBServer, mysql_database

from .query_floor import nothing
from .stats import percentile

REQUESTS = 100
SIZED_SERVER = ("--innodb-buffer-pool-size=1G", "--innodb-log-file-size=512M")
# As long as the writes take, about: a p99 of the ~180 queries of 2 s idle was nearly their maximum, and
# it moved by 2x from run to run.
IDLE_SECONDS = 10


def task_doc(i: int, now: int, requests: int = REQUESTS) -> tuple[dict, dict]:
    rid = f"req-{i % requests}"
    tid = {"id": f"{rid}-v1-{now + i}-1-host-rack", "requestId": rid, "deployId": "v1", "startedAt": now + i,
           "instanceNo": 1, "host": "host", "sanitizedHost": "host", "rackId": "rack", "sanitizedRackId": "rack"}
    return tid, {"taskId": tid, "taskRequest": {"request": {"id": rid, "requestType": "WORKER"},
                                                "deploy": {"requestId": rid, "id": "v1", "command": "true"},
                                                "pendingTask": {"pendingTaskId": {"requestId": rid}}}}


async def query_times(store: HistoryStore, stop: asyncio.Event, out: list[float], floor: list[float]) -> None:
    """A listing every 10 ms, and half-way between two, the floor's round trip."""
    while not stop.is_set():
        start = time.perf_counter()
        await store.request_task_ids("req-7", count=50, page=1)
        out.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.005)
        start = time.perf_counter()
        await store._read(nothing)  # the path every listing takes, with nothing to list
        floor.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.005)


async def loop_lags(stop: asyncio.Event, out: list[float]) -> None:
    """How late the event loop wakes a 1 ms timer: what every API call on the backend waits for at least."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        out.append((time.perf_counter() - start) * 1000 - 1)


async def run(url: str, tasks: int, rate: float | None = None) -> tuple[float, float, float, float, float, float]:
    tune_interpreter()  # as the backend runs
    store = await HistoryStore.open(url)
    freeze_heap()
    try:
        now = int(time.time() * 1000)
        # Warm the table a little so the idle baseline queries real rows.
        for i in range(2000):
            tid, task = task_doc(i, now)
            await store.save_task(task, task_id=tid["id"], request_id=tid["requestId"], deploy_id="v1", run_id=None,
                                  host="host", started_at=tid["startedAt"])
        await store.flush()
        idle: list[float] = []
        idle_floor: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(query_times(store, stop, idle, idle_floor))
        await asyncio.sleep(IDLE_SECONDS)
        stop.set()
        await prober
        busy: list[float] = []
        busy_floor: list[float] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(query_times(store, stop, busy, busy_floor))
        lags: list[float] = []
        lagger = asyncio.create_task(loop_lags(stop, lags))
        start = time.perf_counter()
        rows = 0
        chunk = 500
        first, last = 2000, 2000 + tasks
        committing: asyncio.Task[None] | None = None
        for wave in range(first, last + 2 * chunk, chunk):
            # One round: launches of this wave, RUNNING of the previous one, FINISHED of the one before.
            for i in range(wave, min(wave + chunk, last)):
                tid, task = task_doc(i, now)
                await store.save_task(task, task_id=tid["id"], request_id=tid["requestId"], deploy_id="v1",
                                      run_id=None, host="host", started_at=tid["startedAt"])
                await store.add_task_updates([{"taskId": tid, "timestamp": now + i, "taskState": "TASK_LAUNCHED"}])
                rows += 2
                if i % 10 == 0:
                    await asyncio.sleep(0)  # the scheduler hands over status by status, not in one block
            for k, state in ((1, "TASK_RUNNING"), (2, "TASK_FINISHED")):
                for i in range(max(first, wave - k * chunk), min(wave - (k - 1) * chunk, last)):
                    tid, _ = task_doc(i, now)
                    await store.add_task_updates([{"taskId": tid, "timestamp": now + i + k, "taskState": state}])
                    rows += 1
                    if i % 10 == 0:
                        await asyncio.sleep(0)
            # The scheduler does not wait for history, but it does not run 100,000 tasks ahead of it either:
            # a round is handed over while the previous one is committed.
            if committing is not None:
                await committing
            if rate is not None:
                await asyncio.sleep(start + rows / rate - time.perf_counter())  # no-op when behind
            committing = asyncio.create_task(store.flush())
        await store.flush()
        elapsed = time.perf_counter() - start
        stop.set()
        await prober
        await lagger
        return (rows / elapsed, percentile(idle, 99), percentile(busy, 99), percentile(lags, 99),
                percentile(idle_floor, 99), percentile(busy_floor, 99))
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1, help="runs per database; the figures are their medians")
    parser.add_argument("--rate", type=float, help="hand the rows over at this many per second at most")
    parser.add_argument("--db", choices=("sqlite", "shared", "sized"), action="append",
                        help="only these databases (repeatable; default: all three)")
    args = parser.parse_args()
    dbs = set(args.db or ("sqlite", "shared", "sized"))
    paced = f", handed over at {args.rate:.0f} rows/s at most" if args.rate else ""
    print(f"History volume: {args.tasks} finished tasks (1 task row + 3 updates each){paced}, "
          f"median of {args.runs} run(s)")
    results: dict[str, list[tuple[float, float, float, float, float, float]]] = {}
    for _ in range(args.runs):
        if "sqlite" in dbs:
            with tempfile.TemporaryDirectory() as tmp:
                results.setdefault("SQLite", []).append(
                    asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'h.db'}", args.tasks, args.rate)))
        if "shared" in dbs:
            with mysql_database() as url:
                results.setdefault("MariaDB, shared server", []).append(asyncio.run(run(url, args.tasks, args.rate)))
        if "sized" not in dbs:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            server = MariaDBServer(Path(tmp), options=SIZED_SERVER)
            server.start()
            try:
                results.setdefault("MariaDB, sized server", []).append(
                    asyncio.run(run(server.create_database(), args.tasks, args.rate)))
            finally:
                server.close()
    for name, runs in results.items():
        rate, idle, busy, lag, idle_floor, busy_floor = (statistics.median(run_[i] for run_ in runs) for i in range(6))
        ratio = statistics.median(run_[2] / run_[1] for run_ in runs)
        print(f"  {name:22s} {rate:9.0f} rows/s   query p99 idle {idle:6.2f} ms, during writes {busy:6.2f} ms "
              f"({ratio:.2f}x), loop lag p99 {lag:5.2f} ms   targets >= 30000 rows/s, <= 1.2x -> "
              f"rows/s {'MET' if rate >= 30000 else 'NOT MET'}, p99 {'MET' if ratio <= 1.2 else 'NOT MET'}")
        print(f"  {'':22s} floor (a round trip listing nothing) p99 idle {idle_floor:6.2f} ms, during writes "
              f"{busy_floor:6.2f} ms ({busy_floor / idle:.2f}x the idle listing's p99)")


if __name__ == "__main__":
    main()
