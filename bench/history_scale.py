"""History at scale: 1,000,000 finished tasks in the history database (200 requests of 5,000 tasks, each
task a row and its TASK_FINISHED update, 1 in 20 TASK_FAILED), on SQLite and on MariaDB.

Figures: p50 and p99 of paged task listings through the history store (a request's page 1, 10 and 100
of 50; the same page 1 filtered on TASK_FAILED; every request's page 1 and 100); the baseline is the
same SELECT run straight through the database driver, same run. Then the time of a keep-N purge (keep
the newest 4,000 of each request: 200,000 tasks deleted).
Usage: python -m bench.history_scale [--tasks 1000000] [--repeat 50] [--db sqlite|shared|sized ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from sing_backend.history import HistoryStore
from sing_backend.latency import freeze_heap, tune_interpreter
from tests.servers import MariaDBServer, mysql_database

from .history_offload import SIZED_SERVER, task_doc
from .stats import percentile

REQUESTS = 200
PAGE = 50
KEEP = 4000
LISTING = ("SELECT task_id_body, updated_at, last_task_status, run_id, started_at, task_id FROM task_history "
           "WHERE {where} ORDER BY started_at DESC, task_id DESC LIMIT {count} OFFSET {offset}")


async def fill(store: HistoryStore, tasks: int, now: int) -> float:
    start = time.perf_counter()
    for i in range(tasks):
        tid, task = task_doc(i, now, REQUESTS)
        await store.save_task(task, task_id=tid["id"], request_id=tid["requestId"], deploy_id="v1", run_id=None,
                              host="host", started_at=tid["startedAt"])
        state = "TASK_FAILED" if i % 20 == 7 else "TASK_FINISHED"
        await store.add_task_updates([{"taskId": tid, "timestamp": now + i + 1000, "taskState": state}])
        if i % 100 == 0:
            await asyncio.sleep(0)
    await store.flush()
    return time.perf_counter() - start


def raw_runner(url: str) -> tuple[Callable[[str, tuple[Any, ...]], list[Any]], Callable[[], None]]:
    """Run a SELECT straight through the database driver: the baseline."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "")
        conn.execute("PRAGMA cache_size=-32768")  # the store's page cache (db.py), for a like-for-like baseline
        return (lambda sql, args: conn.execute(sql, args).fetchall()), conn.close
    mysql = pymysql.connect(host=parsed.host, port=parsed.port or 3306, user=parsed.username,
                            password=parsed.password or "", database=parsed.database, autocommit=True)

    def run(sql: str, args: tuple[Any, ...]) -> list[Any]:
        with mysql.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), args)
            return list(cursor.fetchall())

    return run, mysql.close


async def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        if asyncio.iscoroutine(result):
            result = await result
        assert result, "the listing came back empty"
        times.append((time.perf_counter() - start) * 1000)
    return times


async def run(url: str, tasks: int, repeat: int) -> None:
    tune_interpreter()
    store = await HistoryStore.open(url)
    freeze_heap()
    try:
        now = int(time.time() * 1000)
        seconds = await fill(store, tasks, now)
        print(f"    filled: {tasks} tasks ({2 * tasks} rows) in {seconds:.0f} s")
        raw, close_raw = raw_runner(url)
        try:
            cases: list[tuple[str, dict[str, Any], str, tuple[Any, ...]]] = [
                (f"request, page {page:3d}", {"request_id": "req-7", "page": page},
                 LISTING.format(where="request_id = ?", count=PAGE, offset=(page - 1) * PAGE), ("req-7",))
                for page in (1, 10, 100)
            ]
            cases.append(("request, TASK_FAILED", {"request_id": "req-7", "last_task_status": "TASK_FAILED"},
                          LISTING.format(where="request_id = ? AND last_task_status = ?", count=PAGE, offset=0),
                          ("req-7", "TASK_FAILED")))
            cases += [
                (f"all tasks, page {page:3d}", {"request_id": None, "page": page},
                 LISTING.format(where="1 = 1", count=PAGE, offset=(page - 1) * PAGE), ())
                for page in (1, 100)
            ]
            for name, kwargs, sql, args in cases:
                request_id = kwargs.pop("request_id")
                ours = await timed(lambda r=request_id, k=kwargs: store.request_task_ids(r, count=PAGE, **k), repeat)
                bare = await timed(lambda s=sql, a=args: raw(s, a), repeat)
                print(f"    {name:22s} p50 {statistics.median(ours):6.2f} ms  p99 {percentile(ours, 99):6.2f} ms   "
                      f"bare SELECT p50 {statistics.median(bare):6.2f} ms "
                      f"({statistics.median(ours) / statistics.median(bare):4.1f}x)")
        finally:
            close_raw()
        start = time.perf_counter()
        deleted = await store.purge(older_than_ms=None, keep_per_request=KEEP)
        print(f"    purge keeping {KEEP} per request: {deleted} tasks deleted in {time.perf_counter() - start:.1f} s")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--db", choices=("sqlite", "shared", "sized"), action="append",
                        help="only these databases (repeatable; default: all three)")
    args = parser.parse_args()
    dbs = args.db or ["sqlite", "shared", "sized"]
    print(f"History at scale: {args.tasks} finished tasks in {REQUESTS} requests, {args.repeat} listings each")
    if "sqlite" in dbs:
        print("  SQLite")
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'h.db'}", args.tasks, args.repeat))
    if "shared" in dbs:
        print("  MariaDB, shared server")
        with mysql_database() as url:
            asyncio.run(run(url, args.tasks, args.repeat))
    if "sized" in dbs:
        print("  MariaDB, sized server (1 GiB buffer pool)")
        with tempfile.TemporaryDirectory() as tmp:
            server = MariaDBServer(Path(tmp), options=SIZED_SERVER)
            server.start()
            try:
                asyncio.run(run(server.create_database(), args.tasks, args.repeat))
            finally:
                server.close()


if __name__ == "__main__":
    main()
