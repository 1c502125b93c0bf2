"""The history store: Singularity's request, deploy and task history in SQL.

Writes are handed to a writer process of the store's own (writer.py), which commits them many per
transaction, so neither the scheduler nor the API ever waits on a commit. Queries run in query
processes (readers.py) and do not wait for the writer either: each reads the database in one snapshot,
which also says up to which write this store's writer has committed, and lays the writes still queued
after that on top (pending.py), so a query sees every write made before it. Opening, purging and closing
go through SQLAlchemy's asyncio engine here (aiosqlite locally; see db.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache, partial
from typing import Any, TypeVar, TypeVarTuple
from uuid import uuid4

import orjson
from sqlalchemy import Connection, Select, asc, bindparam, delete, desc, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..ids import TaskId
from ..models.common import TERMINAL_TASK_STATES
from . import db
from .db import make_engine, migrate_engine
from .frames import frame, read_frame
from .models import (
    DeployHistoryRow,
    HistoryWriterRow,
    RequestHistoryRow,
    TaskHealthcheckRow,
    TaskHistoryRow,
    TaskUpdateRow,
)
from .pending import Kind, PendingTask, PendingWrites, Row, Write, merge_page
from .readers import QueryProcesses
from .writer import (
    ID_CHUNK,
    MAX_BATCH_ROWS,
    RETRY_SECONDS,
    STATUS_MOVES_TABLE,
    UPDATES_OF_TASKS,
    chunks,
    collect_updates,
    follow_update,
    follow_updates,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_COUNT = 1000  # page size cap, as Singularity's API
MAX_QUEUED = 100_000  # writes not yet committed; beyond that callers wait rather than grow memory without bound
_AFTER_COMMITTED = 2**63  # sorts a queued row after committed rows of the same time
_STALE_WRITER_MS = 7 * 24 * 3600 * 1000
_READERS = 2  # queries at once, each in a process and connection of its own
_RESTART_SECONDS = 1.0  # before starting a writer process again after one died
_FORGET_ROWS = 200
UNENDED_SLICE = 5000  # tasks read per statement by the search for unended tasks: some ms each


class HistoryStore:
    def __init__(
        self, engine: AsyncEngine, url: str, writer_id: str, process: asyncio.subprocess.Process,
        readers: QueryProcesses,
    ) -> None:
        """Use `HistoryStore.open`, which also brings the schema up to date."""
        self._engine = engine
        self._write_engine = db.writer(engine)
        self._url = url
        self._writer_id = writer_id
        self._seq = 0  # of the last write queued
        self._done_seq = 0  # every write up to this one is committed or dropped
        self._pending = PendingWrites()
        self._outbox: list[Write] = []  # not yet sent to the writer process
        self._sent: deque[Write] = deque()  # sent, not yet reported committed: sent again to a new writer
        self._forgetting: deque[Write] = deque()  # committed, still in the queued-writes index
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._room = asyncio.Event()  # fewer than MAX_QUEUED writes outstanding
        self._room.set()
        self._dropped = 0
        self._commits = 0
        self._closing = False
        self._closed = asyncio.Event()
        self._readers = readers
        self._queries = 0  # queries (and purges) started and not finished; close() waits for them
        self._no_queries = asyncio.Event()
        self._no_queries.set()
        self._process: asyncio.subprocess.Process | None = process
        self._writer_task = asyncio.get_running_loop().create_task(self._run_writer(process),
                                                                   name="sing-history-writer")

    @classmethod
    async def open(cls, url: str, *, query_timeout_seconds: float | None = None) -> HistoryStore:
        """Connect to `url` and upgrade its schema: ``sqlite+aiosqlite:////abs/history.db`` or
        ``mysql+aiomysql://user:pw@host/db`` (plain driver names map to the asyncio driver).

        `query_timeout_seconds`: how long a MySQL server may run one statement of a query. A caller that
        stops waiting abandons the query process, but not the statement the server is running."""
        engine = make_engine(url)
        writer_id = uuid4().hex
        now = int(time.time() * 1000)
        try:
            await migrate_engine(engine)
            if db.is_mysql(engine):
                # What the writer does on each connection, tried now: a user without the CREATE TEMPORARY
                # TABLES privilege fails the start, not every batch that moves a task's status.
                async with engine.connect() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.exec_driver_sql(STATUS_MOVES_TABLE)
            async with db.writer(engine).begin() as conn:
                mine = {"writer_id": writer_id, "committed_seq": 0, "updated_at": now}
                await conn.execute(insert(HistoryWriterRow).values(mine))
            await _forget_stale_writers(engine, now)
            # Started here rather than by a task of the store: a start cancelled half-way (the backend
            # failing to start for another reason) would leave asyncio waiting for it at shutdown.
            process = await _start_writer(url, writer_id)
        except BaseException:
            await engine.dispose()
            raise
        readers = QueryProcesses(
            {**_process_config(url, writer_id), "query_timeout_seconds": query_timeout_seconds}, _READERS
        )
        try:
            await readers.prestart()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            await engine.dispose()
            raise
        return cls(engine, url, writer_id, process, readers)

    async def close(self) -> None:
        """Commit everything queued, then release the database."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._send()
        process = self._process
        if process is not None and process.stdin is not None:
            process.stdin.close()  # the writer commits what it has, reports it, and exits
        await self._writer_task
        # Queries in flight still finish, and give their connections back before the pool is closed.
        await self._no_queries.wait()
        try:
            async with self._write_engine.begin() as conn:
                await conn.execute(delete(HistoryWriterRow).where(HistoryWriterRow.writer_id == self._writer_id))
        except DBAPIError as exc:
            log.warning("history: could not remove this store's writer row (%s)", exc.orig)
        await self._engine.dispose()
        await self._readers.close()
        self._closed.set()

    @property
    def dropped_writes(self) -> int:
        """Writes lost because the database refused them or stayed unreachable (each is logged)."""
        return self._dropped

    @property
    def commits(self) -> int:
        """Transactions the writer has committed."""
        return self._commits

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed (or dropped)."""
        target = self._seq
        if self._done_seq >= target:
            return
        if self._writer_task.done():
            return  # closed: whatever was not committed by then never will be
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((target, done))
        await done

    # Writes ------------------------------------------------------------------------------------------

    async def add_request_event(self, event: Doc) -> None:
        """Record a RequestHistory object {request, eventType, createdAt, user?, message?}."""
        row = {
            "request_id": event["request"]["id"],
            "created_at": event["createdAt"],
            "event_type": event["eventType"],
            "user": event.get("user"),
            "message": event.get("message"),
            "body": _dump(event),
        }
        await self._enqueue(Kind.REQUEST_EVENT, [row])

    async def save_deploy(
        self,
        request_id: str,
        deploy_id: str,
        deploy_history: Doc,
        *,
        deploy_state: str | None,
        timestamp: int,
        user: str | None = None,
        message: str | None = None,
    ) -> None:
        """Insert or replace the DeployHistory of a deploy. `timestamp` orders deploy_history()."""
        row = {
            "request_id": request_id,
            "deploy_id": deploy_id,
            "deploy_state": deploy_state,
            "timestamp": timestamp,
            "user": user,
            "message": message,
            "body": _dump(deploy_history),
        }
        await self._enqueue(Kind.DEPLOY, [row])

    async def save_task(
        self,
        task: Doc,
        *,
        task_id: str,
        request_id: str,
        deploy_id: str,
        run_id: str | None,
        host: str,
        started_at: int,
    ) -> None:
        """Record a SingularityTask; saving it again replaces the document but keeps its status. The other
        arguments are the task's identity: its id says its request, deploy and start, which must agree
        with it (ValueError), and the host must be its taskId's. Its run is its pending task's, which a
        later save may give if an earlier one did not; a save that changes a run id still queued is
        refused (ValueError), and one that changes a committed run id is not seen: the task keeps the
        run id first saved (listings show the other only while that save is queued)."""
        _check_identity(task, task_id=task_id, request_id=request_id, deploy_id=deploy_id, host=host,
                        started_at=started_at)
        row = {
            "task_id": task_id,
            "request_id": request_id,
            "deploy_id": deploy_id,
            "run_id": run_id,
            "host": host,
            "started_at": started_at,
            "task_id_body": _dump(task["taskId"]),
            "body": _dump(task),
        }
        await self._enqueue(Kind.TASK, [row])

    async def add_task_updates(self, updates: Sequence[Doc]) -> None:
        """Record TaskHistoryUpdates; `taskId` may be the id string or Singularity's taskId object.

        Each task's lastTaskStatus/updatedAt follow its newest update (by timestamp, then call order).
        """
        rows = [
            {
                "task_id": _task_id_string(update_["taskId"]),
                "timestamp": update_["timestamp"],
                "task_state": update_["taskState"],
                "status_message": update_.get("statusMessage"),
                "status_reason": update_.get("statusReason"),
                "body": _dump(update_),
                # Not a column: tells the queued-writes index which request's listings this update moves.
                "request_id": update_["taskId"].get("requestId") if isinstance(update_["taskId"], dict) else None,
            }
            for update_ in updates
        ]
        if rows:
            await self._enqueue(Kind.TASK_UPDATE, rows)

    async def add_healthcheck_result(self, task_id: str, result: Doc) -> None:
        row = {"task_id": task_id, "timestamp": result["timestamp"], "body": _dump(result)}
        await self._enqueue(Kind.HEALTHCHECK, [row])

    # Queries -----------------------------------------------------------------------------------------

    async def request_history(
        self,
        request_id: str,
        *,
        count: int = 100,
        page: int = 1,
        order_desc: bool = True,
        created_before: int | None = None,
        created_after: int | None = None,
    ) -> list[Doc]:
        """RequestHistory objects by createdAt; the time bounds are exclusive, as Singularity's."""
        offset, count = _page(count, page)
        return await self._read(partial(
            _request_history_query, request_id=request_id, queued=self._pending.request_events(request_id),
            created_before=created_before, created_after=created_after, order_desc=order_desc, offset=offset,
            count=count,
        ))

    async def deploy_history(self, request_id: str, *, count: int = 100, page: int = 1) -> list[Doc]:
        """DeployHistory objects of a request, newest timestamp first."""
        offset, count = _page(count, page)
        queued = self._pending.deploys(request_id)
        return await self._read(partial(
            _deploy_history_query, request_id=request_id, queued=queued, offset=offset, count=count,
        ))

    async def get_deploy(self, request_id: str, deploy_id: str) -> Doc | None:
        entries = self._pending.deploys(request_id).get(deploy_id, [])
        return await self._read(partial(
            _get_deploy_query, request_id=request_id, deploy_id=deploy_id, entries=entries,
        ))

    async def task_history(self, task_id: str) -> Doc | None:
        """The TaskHistory of a task: its document with its updates and health-check results."""
        return await self._read(partial(_task_history_query, task_id=task_id, queued=self._pending.task(task_id)))

    async def request_task_ids(
        self,
        request_id: str | None,
        *,
        deploy_id: str | None = None,
        run_id: str | None = None,
        host: str | None = None,
        last_task_status: str | None = None,
        started_before: int | None = None,
        started_after: int | None = None,
        updated_before: int | None = None,
        updated_after: int | None = None,
        order_desc: bool = True,
        count: int = 100,
        page: int = 1,
    ) -> list[Doc]:
        """TaskIdHistory objects of a request (or, with None, of every request) by startedAt; the time bounds
        are exclusive."""
        offset, count = _page(count, page)
        equal = {"request_id": request_id, "deploy_id": deploy_id, "run_id": run_id, "host": host,
                 "last_task_status": last_task_status}
        equal = {column: value for column, value in equal.items() if value is not None}
        below = {"started_at": started_before, "updated_at": updated_before}
        above = {"started_at": started_after, "updated_at": updated_after}
        first = None
        if last_task_status is None and updated_before is None and updated_after is None:
            # Only a task's status and updatedAt depend on writes other than its save: with no filter
            # on them, the queued saves alone tell which tasks are listed and where.
            first = offset + count
        listed = None
        if equal or started_before is not None or started_after is not None:
            listed = partial(_listed, equal=equal, below=below, above=above)
        queued = self._pending.tasks(request_id, first=first, descending=order_desc, listed=listed)
        return await self._read(partial(
            _task_ids_query, queued=queued, equal=equal, below=below, above=above,
            order_desc=order_desc, offset=offset, count=count,
        ))

    async def task_by_run_id(self, request_id: str, run_id: str) -> Doc | None:
        """TaskIdHistory of the newest task of a run (retries of a run share its runId)."""
        found = await self.request_task_ids(request_id, run_id=run_id, count=1)
        return found[0] if found else None

    async def unended_task_ids(self) -> list[str]:
        """Ids of the tasks whose history has no end: saved, never given a terminal status. Every write
        handed over so far is committed first, so a task whose end is only queued is not among them."""
        await self.flush()
        return await self._read(_unended_task_ids)

    async def purge(self, *, older_than_ms: int | None, keep_per_request: int | None) -> int:
        """Delete tasks (with their updates and health checks) last updated before `older_than_ms`
        (epoch ms) or beyond the `keep_per_request` most recently updated of their request; None
        disables a rule. Deletes in short transactions so writers keep going. Returns tasks deleted."""
        if keep_per_request is not None and keep_per_request < 0:
            raise ValueError(f"keep_per_request must be >= 0, got {keep_per_request}")
        # Queued writes first: a task finishing now must not escape a purge that runs after it.
        await self.flush()
        return await self._tracked(lambda: self._purge(older_than_ms, keep_per_request))

    # Writer ------------------------------------------------------------------------------------------

    @property
    def backed_up(self) -> bool:
        """MAX_QUEUED writes are not committed yet (the database away for long): writers wait for room."""
        return not self._room.is_set()

    async def _enqueue(self, kind: Kind, rows: list[dict[str, Any]]) -> None:
        if self._closing:
            raise RuntimeError("the history store is closed")
        while not self._room.is_set():
            await self._room.wait()
            if self._closing:
                raise RuntimeError("the history store is closed")
        if kind is Kind.TASK:
            self._pending.check_saves(rows)
        self._seq += 1
        write = Write(self._seq, kind, rows)
        self._pending.add(write)
        if not self._outbox:
            # Everything handed over in this turn of the event loop goes in one message.
            asyncio.get_running_loop().call_soon(self._send)
        self._outbox.append(write)
        if self._seq - self._done_seq >= MAX_QUEUED:
            self._room.clear()

    def _send(self) -> None:
        if not self._outbox:
            return
        writes, self._outbox = self._outbox, []
        self._sent.extend(writes)
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(frame([(w.seq, w.kind.value, w.rows) for w in writes]))
        # Otherwise the writer process is (re)starting, and it gets everything in _sent.

    async def _run_writer(self, process: asyncio.subprocess.Process) -> None:
        """Keep a writer process running until the store closes and the writer has finished."""
        while True:
            assert process.stdin is not None and process.stdout is not None
            self._process = process
            if self._sent:
                process.stdin.write(frame([(w.seq, w.kind.value, w.rows) for w in self._sent]))
            if self._closing:
                process.stdin.close()
            while (message := await read_frame(process.stdout)) is not None:
                self._on_message(message)
            code = await process.wait()
            self._process = None
            if self._closing and not self._sent and not self._outbox:
                break
            log.error("history: the writer process exited (%s) with %d writes outstanding; starting another",
                      code, len(self._sent) + len(self._outbox))
            self._sent.extend(self._outbox)
            self._outbox.clear()
            await asyncio.sleep(_RESTART_SECONDS)
            process = await _start_writer(self._url, self._writer_id)
        for _, done in self._flushes:
            if not done.done():
                done.set_result(None)
        self._room.set()

    def _on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "ready":
            upto, dropped = message[1], 0
        else:
            _, upto, dropped, commits = message
            self._commits = commits
        self._dropped += dropped
        if self._sent and self._sent[0].seq <= upto and not self._forgetting:
            asyncio.get_running_loop().call_soon(self._forget_some)
        while self._sent and self._sent[0].seq <= upto:
            self._forgetting.append(self._sent.popleft())
        self._done_seq = max(self._done_seq, upto)
        waiting = []
        for target, done in self._flushes:
            if target <= self._done_seq:
                if not done.done():
                    done.set_result(None)
            else:
                waiting.append((target, done))
        self._flushes = waiting
        if self._seq - self._done_seq < MAX_QUEUED:
            self._room.set()

    def _forget_some(self) -> None:
        """Drop committed writes from the queued-writes index, _FORGET_ROWS rows per turn of the event loop:
        a commit reports thousands, and dropping them in one go held API calls for several milliseconds.
        Queries skip those still there, as their snapshot holds them."""
        rows = 0
        while self._forgetting and rows < _FORGET_ROWS:
            write = self._forgetting.popleft()
            self._pending.forget(write)
            rows += len(write.rows)
        if self._forgetting:
            asyncio.get_running_loop().call_soon(self._forget_some)

    # Queries -----------------------------------------------------------------------------------------

    async def _read(self, query: Callable[[Connection, int], T]) -> T:
        """Run `query(conn, committed)` in a query process (readers.py), in one snapshot of the database
        which holds this store's writes up to `committed`."""
        return await self._tracked(lambda: self._readers.run(query))

    async def _tracked(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run a query or purge; close() waits for those in flight before releasing the database."""
        if self._closing:
            raise RuntimeError("the history store is closed")
        self._queries += 1
        self._no_queries.clear()
        try:
            return await work()
        finally:
            self._queries -= 1
            if self._queries == 0:
                self._no_queries.set()

    async def _purge(self, older_than_ms: int | None, keep_per_request: int | None) -> int:
        row = TaskHistoryRow
        # Only finished tasks go: a long-running task's history stays however old it is.
        finished = row.last_task_status.in_(TERMINAL_TASK_STATES)
        deleted = 0
        if older_than_ms is not None:
            # started_at first: it is indexed, and no task updated before the cut started after it.
            old = select(row.task_id).where(row.started_at < older_than_ms, row.updated_at < older_than_ms, finished)
            old = old.limit(ID_CHUNK)
            deleted += await self._delete_tasks_while(old)
        if keep_per_request is not None:
            async with self._engine.connect() as conn:
                crowded = (
                    await conn.scalars(
                        select(row.request_id).where(finished).group_by(row.request_id)
                        .having(func.count() > keep_per_request)
                    )
                ).all()
            for request_id in crowded:
                surplus = (
                    select(row.task_id)
                    .where(row.request_id == request_id, finished)
                    .order_by(row.updated_at.desc(), row.task_id.desc())
                    .offset(keep_per_request)
                    .limit(ID_CHUNK)
                )
                deleted += await self._delete_tasks_while(surplus)
        return deleted

    async def _delete_tasks_while(self, chosen: Select[str]) -> int:
        """Delete the tasks `chosen` selects, a chunk per transaction, until it selects none."""
        deleted = 0
        while True:
            async with self._write_engine.begin() as conn:
                task_ids = (await conn.scalars(chosen)).all()
                if not task_ids:
                    return deleted
                await conn.execute(delete(TaskUpdateRow).where(TaskUpdateRow.task_id.in_(task_ids)))
                await conn.execute(delete(TaskHealthcheckRow).where(TaskHealthcheckRow.task_id.in_(task_ids)))
                result = await conn.execute(delete(TaskHistoryRow).where(TaskHistoryRow.task_id.in_(task_ids)))
                deleted += result.rowcount


def _unended_task_ids(conn: Connection, _committed: int) -> list[str]:
    """No index has a task's status (each status change would move it, see migration 0004), so this reads
    the whole table: in slices of UNENDED_SLICE tasks, one statement each. In one statement, a history of
    some million tasks outlasted the query timeout, and the search failed at every try."""
    row = TaskHistoryRow
    status = row.last_task_status
    unended = status.is_(None) | status.not_in(TERMINAL_TASK_STATES)
    found: list[str] = []
    after = ""  # every task id sorts after it
    while True:
        last = conn.scalar(select(row.task_id).where(row.task_id > after).order_by(row.task_id)
                           .offset(UNENDED_SLICE - 1).limit(1))
        within = row.task_id > after if last is None else (row.task_id > after) & (row.task_id <= last)
        found += conn.scalars(select(row.task_id).where(within & unended))
        if last is None:
            return found
        after = last


def _check_identity(task: Doc, *, task_id: str, request_id: str, deploy_id: str, host: str, started_at: int) -> None:
    """A task's listing columns must be what its id says (see pending.IDENTITY): no save can change them."""
    said = TaskId.parse(task_id)
    wrong = [name for name, given, expected in (
        ("request_id", request_id, said.requestId), ("deploy_id", deploy_id, said.deployId),
        ("started_at", started_at, said.startedAt), ("host", host, task["taskId"].get("host")),
        ("taskId.id", task["taskId"].get("id"), task_id),
        ("taskId.sanitizedHost", task["taskId"].get("sanitizedHost"), said.sanitizedHost),
    ) if given != expected]
    if wrong:
        raise ValueError(f"task {task_id}: {', '.join(wrong)} disagree with the task's id")


# Queries (they run in the query processes: see readers.py) ----------------------------------------


def _request_history_query(
    conn: Connection,
    committed: int,
    *,
    request_id: str,
    queued: list[tuple[int, Row]],
    created_before: int | None,
    created_after: int | None,
    order_desc: bool,
    offset: int,
    count: int,
) -> list[Doc]:
    def wanted(created_at: int) -> bool:
        return (created_before is None or created_at < created_before) and (
            created_after is None or created_at > created_after
        )

    # A queued event will get a larger id than every committed one: it sorts after them.
    overlay = [
        {"key": (r["created_at"], _AFTER_COMMITTED, seq), "body": r["body"]}
        for seq, r in queued
        if seq > committed and wanted(r["created_at"])
    ]
    row = RequestHistoryRow
    order = desc if order_desc else asc
    stmt = select(row.body, row.created_at, row.id).where(row.request_id == request_id)
    if created_before is not None:
        stmt = stmt.where(row.created_at < created_before)
    if created_after is not None:
        stmt = stmt.where(row.created_at > created_after)
    stmt = stmt.order_by(order(row.created_at), order(row.id))
    return _documents_page(conn, stmt, overlay, lambda created_at, id_: (created_at, id_, 0),
                           descending=order_desc, offset=offset, count=count)


def _deploy_history_query(
    conn: Connection,
    committed: int,
    *,
    request_id: str,
    queued: dict[str, list[tuple[int, Row]]],
    offset: int,
    count: int,
) -> list[Doc]:
    overlay = [
        {"key": (r["timestamp"], deploy_id), "body": r["body"]}
        for deploy_id, entries in queued.items()
        if (r := _newest(entries, committed)) is not None
    ]
    row = DeployHistoryRow
    stmt = select(row.body, row.timestamp, row.deploy_id).where(row.request_id == request_id)
    if overlay:
        stmt = stmt.where(row.deploy_id.not_in([r["key"][1] for r in overlay]))
    stmt = stmt.order_by(row.timestamp.desc(), row.deploy_id.desc())
    return _documents_page(conn, stmt, overlay, lambda timestamp, deploy_id: (timestamp, deploy_id),
                           descending=True, offset=offset, count=count)


def _documents_page(
    conn: Connection,
    stmt: Select[Any],
    overlay: list[Row],
    key: Callable[..., tuple[Any, ...]],
    *,
    descending: bool,
    offset: int,
    count: int,
) -> list[Doc]:
    """A page of documents: the database's (`stmt` selects the body, then the columns `key` makes the
    sort key of) and the queued ones in `overlay` ({"key", "body"}), merged in order."""
    found = [{"key": key(*rest), "body": body} for body, *rest in _window(conn, stmt, offset, count, len(overlay))]
    page_rows = merge_page(found, max(0, offset - len(overlay)), overlay, _by_key, descending=descending,
                           offset=offset, count=count)
    return [orjson.loads(r["body"]) for r in page_rows]


def _get_deploy_query(
    conn: Connection,
    committed: int,
    *,
    request_id: str,
    deploy_id: str,
    entries: list[tuple[int, Row]],
) -> Doc | None:
    queued = _newest(entries, committed)
    if queued is not None:
        return orjson.loads(queued["body"])
    row = DeployHistoryRow
    body = conn.scalar(select(row.body).where(row.request_id == request_id, row.deploy_id == deploy_id))
    return orjson.loads(body) if body is not None else None


def _task_history_query(
    conn: Connection,
    committed: int,
    *,
    task_id: str,
    queued: PendingTask | None,
) -> Doc | None:
    view = queued.after(committed) if queued else None
    body = conn.scalar(select(TaskHistoryRow.body).where(TaskHistoryRow.task_id == task_id))
    if view and view.saves:
        body = view.saves[-1][1]["body"]
    if body is None:
        return None
    updates = _timed_bodies(conn, TaskUpdateRow, task_id)
    checks = _timed_bodies(conn, TaskHealthcheckRow, task_id)
    if view:
        # Queued rows will get larger ids: after committed ones of the same timestamp (the sort
        # is stable).
        updates = sorted([*updates, *((r["timestamp"], r["body"]) for _, r in view.updates)], key=_first)
        checks = sorted([*checks, *((r["timestamp"], r["body"]) for _, r in view.checks)], key=_first)
    task = orjson.loads(body)
    # Saved with the task when it ended; Singularity's TaskHistory has it beside the task.
    directory = task.pop("directory", None)
    return {
        "task": task,
        **({"directory": directory} if directory else {}),
        "taskUpdates": [orjson.loads(update_) for _, update_ in updates],
        "healthcheckResults": [orjson.loads(check) for _, check in checks],
        # Not recorded by Sing yet; present because Singularity's clients expect the lists.
        "loadBalancerUpdates": [],
        "shellCommandHistory": [],
        "taskMetadata": [],
    }


def _listed(
    task: Row, *, equal: dict[str, str], below: dict[str, int | None], above: dict[str, int | None]
) -> bool:
    """Whether a task_history row passes a listing's filters (those on columns the row has)."""
    return (
        all(task[column] == value for column, value in equal.items() if column in task)
        and all(task[column] < bound for column, bound in below.items() if bound is not None and column in task)
        and all(task[column] > bound for column, bound in above.items() if bound is not None and column in task)
    )


def _task_ids_query(
    conn: Connection,
    committed: int,
    *,
    queued: dict[str, PendingTask],
    equal: dict[str, str],
    below: dict[str, int | None],
    above: dict[str, int | None],
    order_desc: bool,
    offset: int,
    count: int,
) -> list[Doc]:
    """A page of task listing. `queued` are the queued writes of the tasks that can reach the page (see
    PendingWrites.tasks)."""
    wanted = partial(_listed, equal=equal, below=below, above=above)
    views = {task_id: view for task_id, q in queued.items() if (view := q.after(committed))}
    # Overlay rows after the first offset + count cannot reach the page: as many rows precede each.
    overlay = sorted((task for task in _tasks_with(conn, views) if wanted(task)), key=_by_start,
                     reverse=order_desc)[: offset + count]
    # Their rows, as the queued writes change them, are the overlay's (or beyond the page).
    excluded = list(views)
    bounds = {f"below_{column}": bound for column, bound in below.items() if bound is not None}
    bounds.update((f"above_{column}", bound) for column, bound in above.items() if bound is not None)
    stmt = _task_ids_statement(tuple(equal), tuple(bounds), order_desc, bool(excluded))
    params = {f"equal_{column}": value for column, value in equal.items()} | bounds
    if excluded:
        params["excluded"] = excluded
    found = [
        {"task_id_body": body, "updated_at": updated_at, "last_task_status": status, "run_id": run,
         "started_at": started_at, "task_id": task_id}
        for body, updated_at, status, run, started_at, task_id in conn.execute(stmt, {
            **params, "offset": max(0, offset - len(overlay)), "limit": count + len(overlay),
        })
    ]
    page_rows = merge_page(found, max(0, offset - len(overlay)), overlay, _by_start,
                           descending=order_desc, offset=offset, count=count)
    return [
        _task_id_history(r["task_id_body"], r["updated_at"], r["last_task_status"], r["run_id"])
        for r in page_rows
    ]


@lru_cache(maxsize=256)
def _task_ids_statement(
    equal: tuple[str, ...], bounds: tuple[str, ...], order_desc: bool, excluding: bool
) -> Select[bytes, int, str | None, str | None, int, str]:
    """The listing's statement for one combination of filters, with the values (and the page's window, see
    merge_page) as parameters: built once, as building it took longer than most listings take to run."""
    row = TaskHistoryRow
    stmt = _task_id_history_query().add_columns(row.started_at, row.task_id)
    for column in equal:
        stmt = stmt.where(getattr(row, column) == bindparam(f"equal_{column}"))
    for name in bounds:
        side, column = name.split("_", 1)
        bound = bindparam(name)
        stmt = stmt.where(getattr(row, column) < bound if side == "below" else getattr(row, column) > bound)
    if excluding:
        stmt = stmt.where(row.task_id.not_in(bindparam("excluded", expanding=True)))
    order = desc if order_desc else asc
    return (stmt.order_by(order(row.started_at), order(row.task_id))
            .offset(bindparam("offset")).limit(bindparam("limit")))


# The writer process ----------------------------------------------------------------------------------


async def _forget_stale_writers(engine: AsyncEngine, now: int) -> None:
    """Delete the rows of stores that stopped without removing theirs (a crash): they serve no one.
    Best effort, in a transaction of its own: on MySQL, backends opening together can deadlock on the
    range this deletes, and the next start cleans up as well."""
    try:
        async with db.writer(engine).begin() as conn:
            await conn.execute(delete(HistoryWriterRow).where(HistoryWriterRow.updated_at < now - _STALE_WRITER_MS))
    except DBAPIError as exc:
        log.warning("history: old writer rows not removed this time (%s)", exc.orig)


async def _start_writer(url: str, writer_id: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from sing_backend.history.writer import main; main()",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "SING_LOG_LEVEL": logging.getLevelName(log.getEffectiveLevel()).lower()},
        # A group of its own: Ctrl-C in a terminal reaches the backend's whole process group, and this
        # process, interrupted (even while still importing), would die with a traceback (the writer with
        # the writes it holds). The backend ends it by closing its input, once it has what it needs.
        process_group=0,
    )
    assert process.stdin is not None
    process.stdin.write(frame({
        **_process_config(url, writer_id), "max_batch_rows": MAX_BATCH_ROWS, "retry_seconds": RETRY_SECONDS,
    }))
    return process


def _process_config(url: str, writer_id: str) -> dict[str, Any]:
    return {"url": url, "writer_id": writer_id, "sqlite_busy_timeout_ms": db.SQLITE_BUSY_TIMEOUT_MS}


# Helpers ---------------------------------------------------------------------------------------------


def _dump(document: Doc) -> bytes:
    data = orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
    # Most documents hold no None: finding no null in the JSON text spares walking the document in Python
    # (which was a third of the scheduler's cost of handing history over). "null" inside a string only
    # takes the long way.
    if b"null" not in data:
        return data
    return orjson.dumps(_without_none(document), option=orjson.OPT_NON_STR_KEYS)


def _without_none(value: Any) -> Any:
    """Singularity leaves absent fields out; a None anywhere in a document would come back as null."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


def _task_id_string(task_id: str | Doc) -> str:
    return task_id if isinstance(task_id, str) else task_id["id"]


def _task_id_history_query() -> Select[bytes, int, str | None, str | None]:
    row = TaskHistoryRow
    return select(row.task_id_body, row.updated_at, row.last_task_status, row.run_id)


def _task_id_history(task_id_body: bytes, updated_at: int, last_task_status: str | None, run_id: str | None) -> Doc:
    history: Doc = {"taskId": orjson.loads(task_id_body), "updatedAt": updated_at}
    if last_task_status is not None:
        history["lastTaskStatus"] = last_task_status
    if run_id is not None:
        history["runId"] = run_id
    return history


def _page(count: int, page: int) -> tuple[int, int]:
    """(offset, count) of a page; the count is capped as Singularity's."""
    if count < 1 or page < 1:
        raise ValueError(f"count and page start at 1, got count={count} page={page}")
    count = min(count, MAX_COUNT)
    return (page - 1) * count, count


def _window(conn: Connection, stmt: Select[*Ts], offset: int, count: int, queued: int) -> list[Any]:
    """The database rows that a page at `offset` can hold once `queued` queued rows are merged in
    (see merge_page)."""
    return list(conn.execute(stmt.offset(max(0, offset - queued)).limit(count + queued)))


def _newest(entries: list[tuple[int, Row]], committed: int) -> Row | None:
    """The last of the queued rows `entries` that the snapshot lacks."""
    return entries[-1][1] if entries and entries[-1][0] > committed else None


_TASK_COLUMNS = (
    TaskHistoryRow.task_id, TaskHistoryRow.request_id, TaskHistoryRow.deploy_id, TaskHistoryRow.run_id,
    TaskHistoryRow.host, TaskHistoryRow.started_at, TaskHistoryRow.updated_at, TaskHistoryRow.last_task_status,
    TaskHistoryRow.task_id_body,
)
# Built once, run with each chunk of ids: while writes are queued every listing runs it, and building it
# took longer than the database took to answer it.
_TASKS_BY_ID = select(*_TASK_COLUMNS).where(TaskHistoryRow.task_id.in_(bindparam("ids", expanding=True)))


def _tasks_with(conn: Connection, views: dict[str, PendingTask]) -> list[Row]:
    """The task_history rows of tasks with queued writes, as those writes will leave them."""
    stored: dict[str, Row] = {}
    for chunk in chunks(list(views)):
        for found in conn.execute(_TASKS_BY_ID, {"ids": chunk}):
            stored[found.task_id] = dict(found._mapping)
    # A task saved for the first time takes its status from the updates written before it.
    first_saves = [task_id for task_id, view in views.items() if view.saves and task_id not in stored]
    earlier = collect_updates(conn.execute(UPDATES_OF_TASKS, {"ids": chunk}) for chunk in chunks(first_saves))
    tasks = []
    for task_id, view in views.items():
        task = stored.get(task_id)
        if view.saves:
            saved = view.saves[-1][1]
            status, updated_at = (
                (task["last_task_status"], task["updated_at"]) if task
                else follow_updates(saved["started_at"], earlier.get(task_id, []))
            )
            task = {column.key: saved[column.key] for column in _TASK_COLUMNS if column.key in saved}
            task.update(last_task_status=status, updated_at=updated_at)
        elif task is None:
            continue  # updates of a task not saved yet: not listed, as in the database
        for _, update_ in view.updates:
            task["last_task_status"], task["updated_at"] = follow_update(
                task["last_task_status"], task["updated_at"], update_["timestamp"], update_["task_state"])
        tasks.append(task)
    return tasks


def _timed_bodies(
    conn: Connection, model: type[TaskUpdateRow] | type[TaskHealthcheckRow], task_id: str
) -> list[tuple[int, bytes]]:
    """(timestamp, body) of a task's updates or health checks, in the order they were written."""
    stmt = select(model.timestamp, model.body).where(model.task_id == task_id).order_by(model.timestamp, model.id)
    return [(timestamp, body) for timestamp, body in conn.execute(stmt)]


def _by_key(row: Row) -> Any:
    return row["key"]


def _by_start(row: Row) -> tuple[int, str]:
    return row["started_at"], row["task_id"]


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]
