from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from sing_backend.history import HistoryStore, db
from sing_backend.history.frames import frame
from sing_backend.history.pending import Kind

from .helpers import history_url, make_task, save, update


async def test_burst_of_updates_is_one_transaction(store: HistoryStore) -> None:
    tid = await save(store, make_task("billing", "v1", 1000))
    await store.flush()
    commits = store.commits

    for n in range(1000):
        await store.add_task_updates([update(tid, 1001 + n, "TASK_RUNNING", statusMessage=f"beat {n}")])
    # Queries show queued writes without waiting for them.
    for _queued_then_committed in range(2):
        history = await store.task_history(tid)
        assert history is not None
        assert [u["statusMessage"] for u in history["taskUpdates"]] == [f"beat {n}" for n in range(1000)]
        (listed,) = await store.request_task_ids("billing")
        assert listed["updatedAt"] == 2000
        await store.flush()
    assert store.commits == commits + 1


async def test_big_bursts_are_split_into_bounded_transactions(
    history_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sing_backend.history.store.MAX_BATCH_ROWS", 100)
    store = await HistoryStore.open(history_db)  # its writer takes the limit when it starts
    try:
        for n in range(1000):
            await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n})
        await store.flush()
        assert store.commits == 10
        assert len(await store.request_history("r", count=1000)) == 1000
    finally:
        await store.close()


async def test_writes_are_committed_in_call_order_across_kinds(store: HistoryStore) -> None:
    # Task row, then its updates, then a second save, all in one batch.
    task = make_task("billing", "v1", 1000)
    tid = await save(store, task)
    await store.add_task_updates([update(tid, 1001, "TASK_RUNNING")])
    task["rackId"] = "rack-z"
    await save(store, task)
    (listed,) = await store.request_task_ids("billing")
    assert listed["lastTaskStatus"] == "TASK_RUNNING"
    history = await store.task_history(tid)
    assert history is not None and history["task"]["rackId"] == "rack-z"


async def test_flush_waits_for_concurrent_writers(store: HistoryStore) -> None:
    async def writer(request_id: str) -> None:
        for n in range(200):
            await store.add_request_event({"request": {"id": request_id}, "eventType": "SCALED", "createdAt": n})
            if n % 50 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(f"r{i}") for i in range(5)))
    await store.flush()
    await store.flush()  # nothing pending: returns at once
    for i in range(5):
        assert len(await store.request_history(f"r{i}", count=1000)) == 200


async def test_a_refused_write_is_dropped_alone(store: HistoryStore, db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON request_history WHEN NEW.message = 'refuse me'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    for n, message in enumerate(["a", "refuse me", "b"]):
        await store.add_request_event(
            {"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n, "message": message}
        )
    await store.flush()
    kept = await store.request_history("r", order_desc=False)
    assert [e["message"] for e in kept] == ["a", "b"]
    assert store.dropped_writes == 1


async def test_a_locked_database_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 20)
    path = tmp_path / "history.db"
    store = await HistoryStore.open(history_url(path))
    try:
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        await store.add_request_event({"request": {"id": "r"}, "eventType": "CREATED", "createdAt": 1})
        assert len(await store.request_history("r")) == 1  # queued, shown while the database is locked
        # The lock is held until the writer has found it and said it retries (it logs to stderr), however
        # long the writer process takes to start.
        logged = ""
        deadline = time.monotonic() + 60
        while "retrying" not in logged:
            assert time.monotonic() < deadline, f"the writer never reported a retry: {logged!r}"
            await asyncio.sleep(0.05)
            logged += capfd.readouterr().err
        raw.execute("COMMIT")
        await store.flush()
        assert len(await store.request_history("r")) == 1
        assert store.dropped_writes == 0
        raw.close()
    finally:
        await store.close()


async def test_bad_input_fails_at_the_call(store: HistoryStore) -> None:
    with pytest.raises(KeyError):
        await store.add_request_event({"eventType": "CREATED", "createdAt": 1})
    with pytest.raises(TypeError):
        await store.add_healthcheck_result("t", {"timestamp": 1, "body": object()})
    await store.add_task_updates([])
    await store.flush()


async def test_close_commits_queued_writes_then_refuses(db_path: Path) -> None:
    store = await HistoryStore.open(history_url(db_path))
    for n in range(100):
        await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n})
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError):
        await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": 1})
    with pytest.raises(RuntimeError):
        await store.request_history("r")

    reopened = await HistoryStore.open(history_url(db_path))
    try:
        assert len(await reopened.request_history("r", count=1000)) == 100
    finally:
        await reopened.close()


async def test_a_writer_process_that_dies_is_replaced_and_nothing_is_lost_or_doubled(store: HistoryStore) -> None:
    for n in range(300):
        await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n})
    await store.flush()
    first = store._process
    assert first is not None
    # Killed mid-stream: some of these are committed, some not, and the store cannot tell which.
    for n in range(300, 3000):
        await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n})
        if n == 1500:
            await asyncio.sleep(0.01)
            first.kill()
    await asyncio.wait_for(store.flush(), timeout=30)
    assert store._process is not first
    seen = [e["createdAt"] for e in await store.request_history("r", count=1000, page=1, order_desc=False)]
    seen += [e["createdAt"] for e in await store.request_history("r", count=1000, page=2, order_desc=False)]
    seen += [e["createdAt"] for e in await store.request_history("r", count=1000, page=3, order_desc=False)]
    assert seen == list(range(3000))
    assert store.dropped_writes == 0


async def test_a_writer_whose_backend_is_gone_commits_everything_handed_to_it(db_path: Path) -> None:
    # A backend killed with SIGKILL: nobody reads the writer's answers any more, and its input ends. What
    # it had handed over is still committed, batch after batch, though no answer can be sent.
    store = await HistoryStore.open(history_url(db_path))  # the schema
    await store.close()
    writer = subprocess.Popen([sys.executable, "-c", "from sing_backend.history.writer import main; main()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdin is not None and writer.stdout is not None
    writer.stdout.close()  # before the writer's first answer: every answer finds the reader gone
    writer.stdin.write(frame({"url": history_url(db_path), "writer_id": "gone", "sqlite_busy_timeout_ms": 5000,
                              "max_batch_rows": 10, "retry_seconds": 5.0}))
    for start in range(0, 500, 50):
        writer.stdin.write(frame([(n + 1, Kind.REQUEST_EVENT.value, [{
            "request_id": "r", "created_at": n, "event_type": "UPDATED", "user": None, "message": None,
            "body": orjson.dumps({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n})}])
            for n in range(start, start + 50)]))
    writer.stdin.close()
    assert await asyncio.to_thread(writer.wait, 60) == 0
    assert writer.stderr is not None and writer.stderr.read() == b""  # and no traceback
    reopened = await HistoryStore.open(history_url(db_path))
    try:
        events = await reopened.request_history("r", count=1000, order_desc=False)
        assert [e["createdAt"] for e in events] == list(range(500))
    finally:
        await reopened.close()
