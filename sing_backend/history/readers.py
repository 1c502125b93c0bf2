"""History queries in processes of their own.

A query on a thread of the backend took the GIL in turns with the event loop: each row the database
driver fetched released it and waited for it again, so while the scheduler was busy (a burst of task
updates) a 1 ms history query took 15-25 ms. In a process of its own a query runs at its own pace, and
the backend only sends the query (a module-level function and its arguments) and reads back its
result, both on the event loop.

Protocol, both ways frames.py's messages: the store sends a config dict, then queries (a module-level
function with its arguments bound); the process answers each with ("ok", result), ("database",
message) for a database error, or ("failed", message) for any other error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, BinaryIO, TypeVar

from sqlalchemy import Connection, event, select
from sqlalchemy.exc import DBAPIError

from . import db
from .frames import frame, read_frame, read_frame_blocking
from .models import HistoryWriterRow

log = logging.getLogger(__name__)

T = TypeVar("T")
Query = Callable[[Connection, int], T]

class QueryProcessDied(RuntimeError):
    """The query process exited (or was stopped) before it answered."""


class QueryProcesses:
    """Up to `size` query processes, started as queries need them and kept for the next ones."""

    def __init__(self, config: dict[str, Any], size: int) -> None:
        self._config = config
        self._size = size
        self._idle: deque[asyncio.subprocess.Process] = deque()
        self._started = 0
        self._waiting: deque[asyncio.Future[asyncio.subprocess.Process]] = deque()
        self._closed = False
        self._chores: set[asyncio.Task[None]] = set()  # reaping, stopping and starting processes

    async def prestart(self) -> None:
        """Start one process now, so that the first query does not wait for it to import."""
        self._started += 1
        self._idle.append(await self._start())

    async def run(self, query: Query[T]) -> T:
        """Run `query(conn, committed_seq)` in one database snapshot in a query process. A process that
        dies mid-query is replaced and the query run again, once (a read can be repeated)."""
        for attempt in (1, 2):
            process = await self._acquire()
            try:
                answer = await _ask(process, query)
            except BaseException:
                # Cancelled (a timeout) or failed mid-exchange: its answer would reach the next query.
                self._discard(process)
                raise
            if answer is None:
                self._discard(process)
                if attempt == 2:
                    raise QueryProcessDied("the history query process exited twice while answering")
                log.error("history: a query process exited while answering; starting another")
                continue
            self._release(process)
            status, value = answer
            if status == "ok":
                return value
            if status == "database":
                raise DBAPIError(None, None, RuntimeError(value))
            raise RuntimeError(f"history query failed: {value}")
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Stop every process (none is answering: the store waits for queries in flight first)."""
        self._closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the history store is closed"))
        processes, self._idle = list(self._idle), deque()
        for process in processes:
            await _stop(process)
        # A chore may leave another behind (a process started for a query is stopped once it is up).
        while self._chores:
            await asyncio.gather(*list(self._chores), return_exceptions=True)

    async def _acquire(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise RuntimeError("the history store is closed")
        if self._idle:
            return self._idle.popleft()
        if self._started < self._size:
            self._started += 1
            try:
                return await self._start()
            except BaseException:
                self._started -= 1
                raise
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over just as the wait was cancelled
            raise

    def _release(self, process: asyncio.subprocess.Process) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(process)
                return
        if self._closed:
            self._chore(_stop(process))
        else:
            self._idle.append(process)

    def _discard(self, process: asyncio.subprocess.Process) -> None:
        self._started -= 1
        self._chore(_stop(process))
        if self._waiting and not self._closed:
            # A query waiting for a process gets a new one rather than waiting for a release.
            self._chore(self._start_for_waiter())

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._chores.add(task)  # the loop holds tasks only weakly
        task.add_done_callback(self._chores.discard)

    async def _start_for_waiter(self) -> None:
        if not self._waiting or self._started >= self._size:
            return
        self._started += 1
        try:
            process = await self._start()
        except Exception as exc:
            self._started -= 1
            log.exception("history: could not start a query process")
            # No process is running to be released to it: the query waiting for one fails now.
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    break
            return
        self._release(process)

    async def _start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from sing_backend.history.readers import main; main()",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SING_LOG_LEVEL": logging.getLevelName(log.getEffectiveLevel()).lower()},
            # A group of its own: Ctrl-C in a terminal reaches the backend's whole process group, and this
            # process, interrupted (even while still importing), would die with a traceback (the writer with
            # the writes it holds). The backend ends it by closing its input, once it has what it needs.
            process_group=0,
        )
        assert process.stdin is not None
        process.stdin.write(frame(self._config))
        return process


async def _ask(process: asyncio.subprocess.Process, query: Query[Any]) -> tuple[str, Any] | None:
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(frame(query))
        await process.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return None
    return await read_frame(process.stdout)


async def _stop(process: asyncio.subprocess.Process) -> None:
    # A query process holds nothing but a read-only connection (and may still be importing): no need
    # to let it finish.
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


# The query process ----------------------------------------------------------------------------------


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    config = read_frame_blocking(requests)
    if config is None:
        return
    db.SQLITE_BUSY_TIMEOUT_MS = config["sqlite_busy_timeout_ms"]
    engine = db.make_sync_engine(config["url"], pool_size=1)
    if config.get("query_timeout_seconds") and db.is_mysql(engine):
        event.listen(engine, "connect", partial(_limit_statement_time, seconds=config["query_timeout_seconds"]))
    committed_seq = select(HistoryWriterRow.committed_seq).where(HistoryWriterRow.writer_id == config["writer_id"])
    try:
        while (query := read_frame_blocking(requests)) is not None:
            try:
                with engine.connect() as conn:
                    # The first read fixes the snapshot (a transaction on both databases), so the later
                    # ones agree with this number.
                    committed = conn.scalar(committed_seq)
                    answer: tuple[str, Any] = ("ok", query(conn, committed or 0))
            except DBAPIError as exc:
                answer = ("database", str(exc.orig if exc.orig is not None else exc))
            except Exception as exc:
                log.exception("history query failed")
                answer = ("failed", f"{type(exc).__name__}: {exc}")
            answers.write(frame(answer))
            answers.flush()
    finally:
        engine.dispose()


def _limit_statement_time(dbapi_connection: Any, _record: Any, *, seconds: float) -> None:
    """Have the server stop a statement that runs longer than the API waits for its answer: the query
    process is abandoned then, and the statement would go on loading the server for no one."""
    mariadb = "MariaDB" in dbapi_connection.get_server_info()
    cursor = dbapi_connection.cursor()
    try:
        if mariadb:
            cursor.execute(f"SET SESSION max_statement_time = {float(seconds):.3f}")
        else:  # MySQL: milliseconds, for SELECTs (all a query process runs)
            cursor.execute(f"SET SESSION max_execution_time = {max(1, round(seconds * 1000))}")
    finally:
        cursor.close()


def main() -> None:
    # The answers go on a copy of fd 1; fd 1 itself then points at stderr, so that nothing printed (by
    # Python or by a C library) can slip into the protocol.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=os.environ.get("SING_LOG_LEVEL", "warning").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(os.fdopen(0, "rb"), answers)
