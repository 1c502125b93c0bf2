"""Queries do not wait for the writer: while it is held up (the database locked by another client), they
answer at once and show every queued write, paged and filtered exactly as the same query answers once
everything is committed."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from sing_backend.history import HistoryStore

from .helpers import make_task, save, update

STATES = ["TASK_LAUNCHED", "TASK_RUNNING", "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED"]


@contextmanager
def writer_held(history_db: str) -> Iterator[None]:
    """Another client holds what the writer needs, so nothing the store queues now is committed until the
    block ends; readers are not blocked (SQLite WAL, InnoDB consistent reads)."""
    url = make_url(history_db)
    if url.get_backend_name() == "sqlite":
        raw = sqlite3.connect(url.database, isolation_level=None, timeout=30)
        raw.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            raw.execute("COMMIT")
            raw.close()
        return
    # Every commit ends by moving the store's row in history_writers: lock the table's rows.
    raw_mysql = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, database=url.database)
    try:
        with raw_mysql.cursor() as cursor:
            cursor.execute("SELECT * FROM history_writers FOR UPDATE")
        yield
    finally:
        raw_mysql.rollback()
        raw_mysql.close()


@asynccontextmanager
async def queued(store: HistoryStore, history_db: str) -> AsyncIterator[None]:
    with writer_held(history_db):
        yield
        await asyncio.sleep(0.05)  # let the writer start its (blocked) batch: a commit in flight
    await store.flush()


async def timed(query: Any) -> Any:
    # A query that waited for the held writer would wait until the test lets it go: fail instead. The
    # bound is generous: a loaded machine may still be starting the store's query process.
    try:
        return await asyncio.wait_for(query, 10)
    except TimeoutError:
        raise AssertionError("a query waited for the writer") from None


async def test_queued_writes_are_shown_while_the_writer_is_held(store: HistoryStore, history_db: str) -> None:
    committed = await save(store, make_task("billing", "v1", 1000))
    await store.add_task_updates([update(committed, 1001, "TASK_RUNNING")])
    await store.flush()
    with writer_held(history_db):
        await store.add_request_event({"request": {"id": "billing"}, "eventType": "SCALED", "createdAt": 5})
        await store.save_deploy("billing", "v2", {"deploy": {"id": "v2"}}, deploy_state="SUCCEEDED", timestamp=7)
        new = await save(store, make_task("billing", "v2", 2000))
        await store.add_task_updates([update(new, 2001, "TASK_RUNNING")])
        await store.add_task_updates([update(committed, 1500, "TASK_FINISHED")])
        await store.add_healthcheck_result(new, {"timestamp": 2002, "statusCode": 200})
        await asyncio.sleep(0.05)

        (event,) = await timed(store.request_history("billing"))
        assert event["eventType"] == "SCALED"
        assert (await timed(store.get_deploy("billing", "v2"))) == {"deploy": {"id": "v2"}}
        assert [d["deploy"]["id"] for d in await timed(store.deploy_history("billing"))] == ["v2"]
        listed = await timed(store.request_task_ids("billing"))
        assert [(t["taskId"]["id"], t["lastTaskStatus"], t["updatedAt"]) for t in listed] == [
            (new, "TASK_RUNNING", 2001),
            (committed, "TASK_FINISHED", 1500),
        ]
        history = await timed(store.task_history(new))
        assert history is not None
        assert [u["taskState"] for u in history["taskUpdates"]] == ["TASK_RUNNING"]
        assert history["healthcheckResults"] == [{"timestamp": 2002, "statusCode": 200}]
        finished = await timed(store.task_history(committed))
        assert finished is not None
        assert [u["taskState"] for u in finished["taskUpdates"]] == ["TASK_RUNNING", "TASK_FINISHED"]
        done = await timed(store.request_task_ids(None, last_task_status="TASK_FINISHED"))
        assert [t["taskId"]["id"] for t in done] == [committed]
    await store.flush()
    assert [t["taskId"]["id"] for t in await store.request_task_ids("billing")] == [new, committed]


Query = Callable[[], Any]


def task_queries(store: HistoryStore, rng: random.Random) -> list[Query]:
    queries: list[Query] = []
    for request_id in ("a", "b", None):
        for count in (1, 4, 7, 50):
            for page in (1, 2, 3, 9, 20):
                for desc in (True, False):
                    queries.append(lambda r=request_id, c=count, p=page, d=desc: store.request_task_ids(
                        r, count=c, page=p, order_desc=d))
    for _ in range(30):
        filters: dict[str, Any] = {
            rng.choice(["last_task_status", "deploy_id", "updated_after", "started_before", "updated_before"]):
            None
        }
        key = next(iter(filters))
        filters[key] = {"last_task_status": rng.choice(STATES), "deploy_id": rng.choice(["v1", "v2"])}.get(
            key, rng.randrange(1000, 1400))
        queries.append(lambda f=filters, r=rng.choice(["a", "b", None]), c=rng.choice([3, 10]),
                       p=rng.choice([1, 2, 4]): store.request_task_ids(r, count=c, page=p, **f))
    return queries


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_task_listings_with_queued_writes_equal_the_committed_ones(
    store: HistoryStore, history_db: str, seed: int
) -> None:
    rng = random.Random(seed)
    tasks: list[str] = []
    documents: dict[str, dict[str, Any]] = {}

    async def some_writes(n: int) -> None:
        for _ in range(n):
            roll = rng.random()
            if roll < 0.4 or not tasks:
                task = make_task(rng.choice("ab"), rng.choice(["v1", "v2"]), 1000 + len(tasks) * 10 + rng.randrange(5),
                                 instance_no=len(tasks))
                tasks.append(await save(store, task))
                documents[tasks[-1]] = task
            elif roll < 0.5:
                # Saved again (a task's last save, when it ends): a new document, the same identity. While
                # it is queued, the task's committed row is out of date.
                again = rng.choice(tasks)
                await store.save_task(
                    {**documents[again], "again": roll}, task_id=again, request_id=documents[again]["taskId"][
                        "requestId"], deploy_id=documents[again]["taskId"]["deployId"], run_id=None,
                    host=documents[again]["taskId"]["host"], started_at=documents[again]["taskId"]["startedAt"])
            elif roll < 0.9:
                # Status changes, some stamped older than what the task has (delivered out of order).
                await store.add_task_updates([update(rng.choice(tasks), rng.randrange(1000, 1400), rng.choice(STATES))])
            else:
                # An update for a task that is only saved later, by id alone (its request unknown until then).
                task = make_task(rng.choice("ab"), "v1", 1000 + len(tasks) * 10, instance_no=len(tasks))
                await store.add_task_updates([update(task["taskId"]["id"], 1350, "TASK_RUNNING")])
                tasks.append(await save(store, task))
                documents[tasks[-1]] = task

    await some_writes(200)
    await store.flush()
    queries = task_queries(store, rng)
    async with queued(store, history_db):
        await some_writes(40)
        while_queued = [await timed(query()) for query in queries]
    assert [await query() for query in queries] == while_queued


async def test_request_and_deploy_history_with_queued_writes_equal_the_committed_ones(
    store: HistoryStore, history_db: str
) -> None:
    rng = random.Random(7)

    async def some_writes(how_many: int) -> None:
        for n in range(how_many):
            await store.add_request_event(
                {"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": rng.randrange(20), "message": f"{n}"}
            )
            deploy = f"d{rng.randrange(12)}"
            await store.save_deploy("r", deploy, {"deploy": {"id": deploy}, "n": n}, deploy_state="SUCCEEDED",
                                    timestamp=rng.randrange(20))

    await some_writes(30)
    await store.flush()
    queries: list[Query] = []
    for count in (1, 3, 10, 100):
        for page in (1, 2, 5):
            queries.append(lambda c=count, p=page: store.deploy_history("r", count=c, page=p))
            for desc in (True, False):
                queries.append(lambda c=count, p=page, d=desc: store.request_history("r", count=c, page=p,
                                                                                   order_desc=d))
            queries.append(lambda c=count, p=page: store.request_history("r", count=c, page=p, created_after=5,
                                                                       created_before=15))
    queries += [lambda d=deploy: store.get_deploy("r", f"d{d}") for deploy in range(12)]
    async with queued(store, history_db):
        await some_writes(30)
        while_queued = [await timed(query()) for query in queries]
    assert [await query() for query in queries] == while_queued


async def test_a_save_replaces_the_document_and_never_the_identity_of_a_task(
    store: HistoryStore, history_db: str
) -> None:
    """A task's request, deploy, host and start are its identity (its id says them) and its run is its
    pending task's: listings place a task whose save is queued by that save, and its database row, left
    in the listing, must list the same. A save that disagrees with the task's id is refused, whether the
    task's earlier save is queued or committed; a run id may come with a later save, and then stays."""
    first = await save(store, make_task("r", "v1", 250, host="a"))
    await store.flush()
    with writer_held(history_db):
        queued_first = await save(store, make_task("r", "v1", 100, host="a"), run_id="run-1")
        for task_id in (first, queued_first):
            moved = make_task("r", "v1", 50, host="b")  # another start and host, under the same task id
            moved["taskId"]["id"] = task_id
            with pytest.raises(ValueError, match="started_at, taskId.sanitizedHost"):
                await store.save_task(moved, task_id=task_id, request_id="r", deploy_id="v1", run_id=None,
                                      host="b", started_at=50)
        with pytest.raises(ValueError, match="run_id"):
            await save(store, make_task("r", "v1", 100, host="a"), run_id="run-2")
        await save(store, {**make_task("r", "v1", 250, host="a"), "note": "saved again"}, run_id="run-3")
        await asyncio.sleep(0.05)
        while_queued = [await timed(store.request_task_ids("r", run_id=run)) for run in (None, "run-1", "run-3")]
    committed = [await store.request_task_ids("r", run_id=run) for run in (None, "run-1", "run-3")]
    assert committed == while_queued
    assert [(t["taskId"]["id"], t["taskId"]["host"], t["taskId"]["startedAt"], t.get("runId"))
            for t in committed[0]] == [(first, "a", 250, "run-3"), (queued_first, "a", 100, "run-1")]
    history = await store.task_history(first)
    assert history is not None and history["task"]["note"] == "saved again"


async def test_queries_racing_commits_see_each_write_once(store: HistoryStore) -> None:
    # Commits land between a query's look at the queue and its database snapshot: each write must come
    # from exactly one of the two.
    added = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal added
        while not stop.is_set():
            await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": added})
            added += 1
            await asyncio.sleep(0)

    writing = asyncio.create_task(writer())
    try:
        for _ in range(30):
            before = added
            seen = [event["createdAt"] for event in await store.request_history("r", count=1000, order_desc=False)]
            assert seen == list(range(len(seen)))  # each once, in order
            assert len(seen) >= min(before, 1000)
    finally:
        stop.set()
        await writing
    assert added > 100
