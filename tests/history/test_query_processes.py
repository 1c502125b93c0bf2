"""History queries run in processes of the store's own: one that dies is replaced, an abandoned query
never hands its answer to the next one, and closing the store leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from sing_backend.history import HistoryStore

from .helpers import make_task, save


async def add_events(store: HistoryStore, request_id: str, n: int) -> None:
    for i in range(n):
        await store.add_request_event({"request": {"id": request_id}, "eventType": "UPDATED", "createdAt": i})


def query_pids(store: HistoryStore) -> list[int]:
    return [process.pid for process in store._readers._idle]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_query_process_is_replaced(store: HistoryStore) -> None:
    await add_events(store, "r", 3)
    assert len(await store.request_history("r")) == 3
    pids = query_pids(store)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # The next query finds its process gone, starts another and asks again.
    assert len(await store.request_history("r")) == 3
    assert not set(query_pids(store)) & set(pids)


async def test_an_abandoned_query_does_not_answer_the_next(store: HistoryStore) -> None:
    await add_events(store, "three", 3)
    await add_events(store, "five", 5)
    await save(store, make_task("five", "v1", 1000))
    await store.flush()
    for delay in (0.0, 0.001, 0.005, 0.02):
        abandoned = asyncio.create_task(store.request_history("three"))
        await asyncio.sleep(delay)
        abandoned.cancel()
        # Each answer belongs to its own question.
        assert len(await store.request_history("five")) == 5
        assert len(await store.request_task_ids("five")) == 1
        assert len(await store.request_history("three")) == 3


async def test_queries_at_once_beyond_the_processes_wait_their_turn(store: HistoryStore) -> None:
    for n in range(1, 7):
        await add_events(store, f"r{n}", n)
    answers = await asyncio.gather(*(store.request_history(f"r{n}") for n in range(1, 7)))
    assert [len(answer) for answer in answers] == list(range(1, 7))


async def test_closing_stops_the_query_processes(history_db: str) -> None:
    store = await HistoryStore.open(history_db)
    await add_events(store, "r", 1)
    await asyncio.gather(*(store.request_history("r") for _ in range(4)))
    pids = query_pids(store)
    assert pids
    await store.close()
    assert not [pid for pid in pids if alive(pid)]
    with pytest.raises(RuntimeError):
        await store.request_history("r")
