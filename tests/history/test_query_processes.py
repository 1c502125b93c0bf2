"""History queries run in processes of the store's own: one that dies is replaced, an abandoned query
never hands its answer to the next one, and closing the store leaves no process behind."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from functools import partial
from pathlib import Path

import pytest

from sing_backend.errors import ApiError
from sing_backend.history import HistoryStore
from sing_backend.history import store as store_module
from sing_backend.history.readers import QueryProcesses
from sing_backend.runtime import Runtime
from sing_backend.settings import Settings

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


def slow_query(conn: object, committed: int, *, seconds: float) -> int:
    """A query that holds its process (run in the query process: module-level, so it can be sent)."""
    time.sleep(seconds)
    return committed


async def test_a_query_waiting_for_a_process_that_cannot_start_fails_at_once(
    history_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_READERS", 1)
    store = await HistoryStore.open(history_db)
    try:
        await add_events(store, "r", 1)
        busy = asyncio.create_task(store._read(partial(slow_query, seconds=30)))
        await asyncio.sleep(0.5)
        waiting = asyncio.create_task(store.request_history("r"))
        await asyncio.sleep(0.1)
        start = QueryProcesses._start

        async def out_of_files(self: QueryProcesses) -> object:
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(QueryProcesses, "_start", out_of_files)
        busy.cancel()  # its process goes with it; the waiting query needs a new one, which cannot start
        with pytest.raises(OSError) as failed:
            await asyncio.wait_for(waiting, 10)
        assert failed.value.errno == errno.EMFILE  # not a TimeoutError (also an OSError): it did not wait
        monkeypatch.setattr(QueryProcesses, "_start", start)
        assert len(await store.request_history("r")) == 1
    finally:
        await store.close()


def noisy_query(conn: object, committed: int) -> str:
    """A query whose code writes to fd 1, as a C library printing a warning would."""
    os.write(1, b"a warning printed by a library\n")
    print("and one by Python")
    return "the answer"


async def test_output_printed_by_a_query_does_not_garble_the_answers(store: HistoryStore) -> None:
    await add_events(store, "r", 2)
    assert await store._read(noisy_query) == "the answer"
    assert len(await store.request_history("r")) == 2
    assert await store._read(noisy_query) == "the answer"


def exits_at_once(conn: object, committed: int) -> None:
    """A query whose process dies under it (as one killed by the OOM killer would)."""
    os._exit(3)


async def test_a_query_whose_process_dies_each_time_answers_503(history_db: str, tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path))
    runtime.history = await HistoryStore.open(history_db)
    try:
        with pytest.raises(ApiError) as refused:
            await runtime.history_call("_read", exits_at_once)
        assert refused.value.status == 503 and "history database is not answering" in refused.value.message
        await add_events(runtime.history, "r", 2)
        assert len(await runtime.history_call("request_history", "r")) == 2  # new processes serve the rest
    finally:
        await runtime.history.close()
        await runtime.http.aclose()
