"""The history store: Singularity's request, deploy and task history in SQL.

Writes are queued and committed by one background writer, many per transaction, so the scheduler
never waits on the database. Queries do not wait for the writer either: each reads the database in one
snapshot, which also says up to which write this store has committed, and lays the writes still queued
after that on top (pending.py), so a query sees every write made before it. Database I/O goes through
SQLAlchemy's asyncio engine (aiosqlite locally; see db.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from itertools import count as counter
from typing import Any, TypeVar, TypeVarTuple
from uuid import uuid4

import orjson
from sqlalchemy import (
    Select,
    asc,
    bindparam,
    delete,
    desc,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from ..models.common import TERMINAL_TASK_STATES
from .db import make_engine, migrate_engine, writer
from .models import (
    DeployHistoryRow,
    HistoryWriterRow,
    RequestHistoryRow,
    TaskHealthcheckRow,
    TaskHistoryRow,
    TaskUpdateRow,
)
from .pending import Kind, PendingTask, PendingWrites, Row, Write, merge_page

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_COUNT = 1000  # page size cap, as Singularity's API
MAX_BATCH_ROWS = 2000  # rows per transaction: bounds how long it holds the write lock (purge, a CLI wait)
MAX_QUEUED = 100_000  # queued writes; beyond that callers wait rather than grow memory without bound
RETRY_SECONDS = 60.0  # how long a batch is retried while the database is locked or unreachable
_ID_CHUNK = 500  # ids per IN (…) list, well under every driver's parameter limit
_STATEMENT_ROWS = 250  # rows per statement: tasks per status update (4 parameters each), rows per insert
_AFTER_COMMITTED = 2**63  # sorts a queued row after committed rows of the same time
_STALE_WRITER_MS = 7 * 24 * 3600 * 1000
_READERS = 4  # concurrent queries; the rest of the connection pool stays free for the writer and purges


_QueueItem = Write | asyncio.Future[None] | None  # a future asks to be told once written; None stops


class HistoryStore:
    def __init__(self, engine: AsyncEngine, writer_id: str) -> None:
        """Use `HistoryStore.open`, which also brings the schema up to date."""
        self._engine = engine
        self._write_engine = writer(engine)
        self._writer_id = writer_id
        self._seq = 0  # of the last write queued
        self._pending = PendingWrites()
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue(MAX_QUEUED)
        self._unflushed = 0  # writes handed to add_*/save_* and not yet committed (or dropped)
        self._dropped = 0
        self._closing = False
        # One writer task keeps commits in call order; queries use their own pooled connections, so a
        # long commit or purge never delays them.
        self._readers = asyncio.Semaphore(_READERS)
        self._queries = 0  # queries (and purges) started and not finished; close() waits for them
        self._no_queries = asyncio.Event()
        self._no_queries.set()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="sing-history-writer")

    @classmethod
    async def open(cls, url: str) -> HistoryStore:
        """Connect to `url` and upgrade its schema: ``sqlite+aiosqlite:////abs/history.db`` or
        ``mysql+aiomysql://user:pw@host/db`` (plain driver names map to the asyncio driver)."""
        engine = make_engine(url)
        writer_id = uuid4().hex
        now = int(time.time() * 1000)
        try:
            await migrate_engine(engine)
            async with writer(engine).begin() as conn:
                # Rows of stores that stopped without removing theirs (a crash) serve no one.
                stale = HistoryWriterRow.updated_at < now - _STALE_WRITER_MS
                await conn.execute(delete(HistoryWriterRow).where(stale))
                mine = {"writer_id": writer_id, "committed_seq": 0, "updated_at": now}
                await conn.execute(insert(HistoryWriterRow).values(mine))
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, writer_id)

    async def close(self) -> None:
        """Commit everything queued, then release the database."""
        if self._closing:
            await asyncio.shield(self._writer)
            return
        self._closing = True
        await self._queue.put(None)
        await self._writer
        # Queries in flight still finish, and give their connections back before the pool is closed.
        await self._no_queries.wait()
        try:
            async with self._write_engine.begin() as conn:
                await conn.execute(delete(HistoryWriterRow).where(HistoryWriterRow.writer_id == self._writer_id))
        except DBAPIError as exc:
            log.warning("history: could not remove this store's writer row (%s)", exc.orig)
        await self._engine.dispose()

    @property
    def dropped_writes(self) -> int:
        """Writes lost because the database refused them or stayed unreachable (each is logged)."""
        return self._dropped

    async def flush(self) -> None:
        """Wait until every write queued before this call is committed."""
        if self._unflushed == 0:
            return
        if self._closing:
            await asyncio.shield(self._writer)
            return
        written = asyncio.get_running_loop().create_future()
        await self._queue.put(written)
        await written

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
        """Record a SingularityTask; saving it again replaces the document but keeps its status."""
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
        queued = self._pending.request_events(request_id)

        def wanted(created_at: int) -> bool:
            return (created_before is None or created_at < created_before) and (
                created_after is None or created_at > created_after
            )

        async def query(conn: AsyncConnection, committed: int) -> list[Doc]:
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
            found = [
                {"key": (created_at, id_, 0), "body": body}
                for body, created_at, id_ in await _window(conn, stmt, offset, count, len(overlay))
            ]
            page_rows = merge_page(found, max(0, offset - len(overlay)), overlay, _by_key, descending=order_desc,
                                   offset=offset, count=count)
            return [orjson.loads(r["body"]) for r in page_rows]

        return await self._read(query)

    async def deploy_history(self, request_id: str, *, count: int = 100, page: int = 1) -> list[Doc]:
        """DeployHistory objects of a request, newest timestamp first."""
        offset, count = _page(count, page)
        queued = self._pending.deploys(request_id)

        async def query(conn: AsyncConnection, committed: int) -> list[Doc]:
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
            found = [
                {"key": (timestamp, deploy_id), "body": body}
                for body, timestamp, deploy_id in await _window(conn, stmt, offset, count, len(overlay))
            ]
            page_rows = merge_page(found, max(0, offset - len(overlay)), overlay, _by_key, descending=True,
                                   offset=offset, count=count)
            return [orjson.loads(r["body"]) for r in page_rows]

        return await self._read(query)

    async def get_deploy(self, request_id: str, deploy_id: str) -> Doc | None:
        entries = self._pending.deploys(request_id).get(deploy_id, [])

        async def query(conn: AsyncConnection, committed: int) -> Doc | None:
            queued = _newest(entries, committed)
            if queued is not None:
                return orjson.loads(queued["body"])
            row = DeployHistoryRow
            body = await conn.scalar(select(row.body).where(row.request_id == request_id, row.deploy_id == deploy_id))
            return orjson.loads(body) if body is not None else None

        return await self._read(query)

    async def task_history(self, task_id: str) -> Doc | None:
        """The TaskHistory of a task: its document with its updates and health-check results."""
        queued = self._pending.task(task_id)

        async def query(conn: AsyncConnection, committed: int) -> Doc | None:
            view = queued.after(committed) if queued else None
            body = await conn.scalar(select(TaskHistoryRow.body).where(TaskHistoryRow.task_id == task_id))
            if view and view.saves:
                body = view.saves[-1][1]["body"]
            if body is None:
                return None
            updates = [
                (timestamp, update_)
                for update_, timestamp in await conn.execute(
                    select(TaskUpdateRow.body, TaskUpdateRow.timestamp)
                    .where(TaskUpdateRow.task_id == task_id)
                    .order_by(TaskUpdateRow.timestamp, TaskUpdateRow.id)
                )
            ]
            checks = [
                (timestamp, check)
                for check, timestamp in await conn.execute(
                    select(TaskHealthcheckRow.body, TaskHealthcheckRow.timestamp)
                    .where(TaskHealthcheckRow.task_id == task_id)
                    .order_by(TaskHealthcheckRow.timestamp, TaskHealthcheckRow.id)
                )
            ]
            if view:
                # Queued rows will get larger ids: after committed ones of the same timestamp (the sort
                # is stable).
                updates = sorted([*updates, *((r["timestamp"], r["body"]) for _, r in view.updates)], key=_first)
                checks = sorted([*checks, *((r["timestamp"], r["body"]) for _, r in view.checks)], key=_first)
            return {
                "task": orjson.loads(body),
                "taskUpdates": [orjson.loads(update_) for _, update_ in updates],
                "healthcheckResults": [orjson.loads(check) for _, check in checks],
                # Not recorded by Sing yet; present because Singularity's clients expect the lists.
                "loadBalancerUpdates": [],
                "shellCommandHistory": [],
                "taskMetadata": [],
            }

        return await self._read(query)

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
        queued = self._pending.tasks(request_id)
        equal = {"request_id": request_id, "deploy_id": deploy_id, "run_id": run_id, "host": host,
                 "last_task_status": last_task_status}
        equal = {column: value for column, value in equal.items() if value is not None}
        below = {"started_at": started_before, "updated_at": updated_before}
        above = {"started_at": started_after, "updated_at": updated_after}

        def wanted(task: Row) -> bool:
            return (
                all(task[column] == value for column, value in equal.items())
                and all(task[column] < bound for column, bound in below.items() if bound is not None)
                and all(task[column] > bound for column, bound in above.items() if bound is not None)
            )

        async def query(conn: AsyncConnection, committed: int) -> list[Doc]:
            views = {task_id: view for task_id, q in queued.items() if (view := q.after(committed))}
            overlay = [task for task in await _tasks_with(conn, views) if wanted(task)]
            row = TaskHistoryRow
            stmt = _task_id_history_query().add_columns(row.started_at, row.task_id)
            for column, value in equal.items():
                stmt = stmt.where(getattr(row, column) == value)
            for column, bound in below.items():
                if bound is not None:
                    stmt = stmt.where(getattr(row, column) < bound)
            for column, bound in above.items():
                if bound is not None:
                    stmt = stmt.where(getattr(row, column) > bound)
            if views:
                # Their rows, as the queued writes change them, are the overlay's.
                stmt = stmt.where(row.task_id.not_in(list(views)))
            order = desc if order_desc else asc
            stmt = stmt.order_by(order(row.started_at), order(row.task_id))
            found = [
                {"task_id_body": body, "updated_at": updated_at, "last_task_status": status, "run_id": run,
                 "started_at": started_at, "task_id": task_id}
                for body, updated_at, status, run, started_at, task_id in await _window(
                    conn, stmt, offset, count, len(overlay)
                )
            ]
            page_rows = merge_page(found, max(0, offset - len(overlay)), overlay, _by_start,
                                   descending=order_desc, offset=offset, count=count)
            return [
                _task_id_history(r["task_id_body"], r["updated_at"], r["last_task_status"], r["run_id"])
                for r in page_rows
            ]

        return await self._read(query)

    async def task_by_run_id(self, request_id: str, run_id: str) -> Doc | None:
        """TaskIdHistory of the newest task of a run (retries of a run share its runId)."""
        found = await self.request_task_ids(request_id, run_id=run_id, count=1)
        return found[0] if found else None

    async def purge(self, *, older_than_ms: int | None, keep_per_request: int | None) -> int:
        """Delete tasks (with their updates and health checks) last updated before `older_than_ms`
        (epoch ms) or beyond the `keep_per_request` most recently updated of their request; None
        disables a rule. Deletes in short transactions so writers keep going. Returns tasks deleted."""
        if keep_per_request is not None and keep_per_request < 0:
            raise ValueError(f"keep_per_request must be >= 0, got {keep_per_request}")
        # Queued writes first: a task finishing now must not escape a purge that runs after it.
        await self.flush()
        return await self._read(lambda _conn, _committed: self._purge(older_than_ms, keep_per_request))

    # Writer ------------------------------------------------------------------------------------------

    async def _enqueue(self, kind: Kind, rows: list[dict[str, Any]]) -> None:
        if self._closing:
            raise RuntimeError("the history store is closed")
        self._unflushed += 1
        self._seq += 1
        write = Write(self._seq, kind, rows)
        try:
            await self._queue.put(write)
        except BaseException:
            self._unflushed -= 1
            raise
        # No await since the put: the writer cannot have taken it yet, and writes enter the index in
        # queue order, the order the writer forgets them in.
        self._pending.add(write)

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Write] = []
            waiters: list[asyncio.Future[None]] = []
            rows = 0
            item = await self._queue.get()
            # Take whatever else is already queued: a burst of calls becomes one transaction.
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, Write):
                    batch.append(item)
                    rows += len(item.rows)
                else:
                    waiters.append(item)
                if stopping or rows >= MAX_BATCH_ROWS or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._commit(batch)
                self._unflushed -= len(batch)
                for write in batch:
                    self._pending.forget(write)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _commit(self, batch: list[Write]) -> None:
        """Commit a batch in one transaction; never raises, so the writer cannot die."""
        deadline = time.monotonic() + RETRY_SECONDS
        for attempt in counter():
            try:
                await self._apply(batch)
                return
            except DBAPIError as exc:
                # An unreachable database is waited for as long as the backend runs: history is never
                # dropped for an outage (only on shutdown, after RETRY_SECONDS, or for refused rows).
                if not _transient(exc) or (self._closing and time.monotonic() >= deadline):
                    break
                delay = min(0.05 * 2**attempt, 5.0)
                log.warning(
                    "history: commit of %d writes failed (%s); retrying in %.2f s",
                    len(batch),
                    exc.orig,
                    delay,
                )
                await asyncio.sleep(delay)
            except Exception:
                break
        await self._commit_each(batch)

    async def _commit_each(self, batch: list[Write]) -> None:
        """Commit the writes of a failed batch one by one, so that only the culprits are lost."""
        for index, write in enumerate(batch):
            try:
                await self._apply([write])
            except DBAPIError as exc:
                if _transient(exc):
                    # Still unreachable after the retries: trying the rest would only add timeouts.
                    self._dropped += len(batch) - index
                    log.error("history: database unavailable; dropped %d writes (%s)", len(batch) - index, exc.orig)
                    return
                self._dropped += 1
                log.error("history: database refused a %s; dropped it (%s)", write.kind.value, exc.orig)
            except Exception:
                self._dropped += 1
                log.exception("history: could not write a %s; dropped it", write.kind.value)

    async def _apply(self, batch: list[Write]) -> None:
        # One statement per kind for the whole batch, however the calls interleaved.
        rows_by_kind: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in Kind}
        for write in batch:
            rows_by_kind[write.kind].extend(write.rows)
        updates = rows_by_kind[Kind.TASK_UPDATE]
        async with self._write_engine.begin() as conn:
            if rows_by_kind[Kind.REQUEST_EVENT]:
                await _execute_chunked(conn, insert(RequestHistoryRow), rows_by_kind[Kind.REQUEST_EVENT])
            if rows_by_kind[Kind.DEPLOY]:
                await _upsert_deploys(conn, rows_by_kind[Kind.DEPLOY])
            # A task inserted by this batch takes the status its updates in this batch give it, so
            # only the tasks written before need their status columns moved.
            inserted = await _upsert_tasks(conn, rows_by_kind[Kind.TASK], updates)
            if updates:
                await _execute_chunked(conn, insert(TaskUpdateRow), updates)
                await _move_task_status(conn, [row for row in updates if row["task_id"] not in inserted])
            if rows_by_kind[Kind.HEALTHCHECK]:
                await _execute_chunked(conn, insert(TaskHealthcheckRow), rows_by_kind[Kind.HEALTHCHECK])
            await conn.execute(
                update(HistoryWriterRow)
                .where(HistoryWriterRow.writer_id == self._writer_id)
                .values(committed_seq=batch[-1].seq, updated_at=int(time.time() * 1000))
            )

    # Queries -----------------------------------------------------------------------------------------

    async def _read(self, query: Callable[[AsyncConnection, int], Awaitable[T]]) -> T:
        """Run `query` in one snapshot of the database, with the seq of the last write of this store
        that the snapshot holds."""
        if self._closing:
            raise RuntimeError("the history store is closed")
        self._queries += 1
        self._no_queries.clear()
        try:
            async with self._readers, self._engine.connect() as conn:
                # The first read fixes the snapshot (a transaction on both databases), so the later ones
                # agree with this number.
                committed = await conn.scalar(
                    select(HistoryWriterRow.committed_seq).where(HistoryWriterRow.writer_id == self._writer_id)
                )
                return await query(conn, committed or 0)
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
            old = select(row.task_id).where(finished, row.updated_at < older_than_ms).limit(_ID_CHUNK)
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
                    .limit(_ID_CHUNK)
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


# Row writers (writer task) ---------------------------------------------------------------------------


async def _execute_chunked(conn: AsyncConnection, stmt: Executable, rows: list[dict[str, Any]]) -> None:
    # Preparing a statement's parameters runs on the event loop in one go: a few hundred rows at a time
    # keep that short for the queries waiting to run.
    for start in range(0, len(rows), _STATEMENT_ROWS):
        await conn.execute(stmt, rows[start : start + _STATEMENT_ROWS])


async def _upsert_deploys(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    # UPDATE, then INSERT if nothing matched: portable, and only this writer writes deploys.
    for row in rows:
        result = await conn.execute(
            update(DeployHistoryRow)
            .where(
                DeployHistoryRow.request_id == row["request_id"],
                DeployHistoryRow.deploy_id == row["deploy_id"],
            )
            .values(row)
        )
        if not result.rowcount:
            await conn.execute(insert(DeployHistoryRow).values(row))


async def _upsert_tasks(conn: AsyncConnection, rows: list[dict[str, Any]], updates: list[dict[str, Any]]) -> set[str]:
    """Insert new tasks with the status their updates (written before, and in `updates`) give them;
    replace the document of known ones. Returns the ids inserted."""
    if not rows:
        return set()
    latest = {row["task_id"]: row for row in rows}  # the same task saved twice in a batch: last wins
    existing: set[str] = set()
    for chunk in _chunks(list(latest)):
        existing.update(await conn.scalars(select(TaskHistoryRow.task_id).where(TaskHistoryRow.task_id.in_(chunk))))
    new = [task_id for task_id in latest if task_id not in existing]
    if new:
        status_updates = await _updates_of(conn, new)
        for update_ in updates:
            if update_["task_id"] in latest and update_["task_id"] not in existing:
                status_updates.setdefault(update_["task_id"], []).append((update_["timestamp"], update_["task_state"]))
        inserts = []
        for task_id in new:
            row = latest[task_id]
            status, updated_at = _follow_updates(row["started_at"], status_updates.get(task_id, []))
            inserts.append({**row, "last_task_status": status, "updated_at": updated_at})
        await _execute_chunked(conn, insert(TaskHistoryRow), inserts)
    # A second save replaces the document; the status columns belong to the updates.
    again = [{**row, "b_task_id": row["task_id"]} for task_id, row in latest.items() if task_id in existing]
    if again:
        replace = update(TaskHistoryRow).where(TaskHistoryRow.task_id == bindparam("b_task_id"))
        await _execute_chunked(conn, replace, again)
    return set(new)


async def _move_task_status(conn: AsyncConnection, updates: list[dict[str, Any]]) -> None:
    """Apply `updates` (in call order) to the status columns of their tasks, by the rule of
    _follow_updates, with one statement per chunk of tasks rather than one per update."""
    folded: dict[str, tuple[int, str, str]] = {}  # task id: (newest timestamp, its last state, first state)
    for row in updates:
        timestamp, state = row["timestamp"], row["task_state"]
        seen = folded.get(row["task_id"])
        if seen is None:
            folded[row["task_id"]] = (timestamp, state, state)
        elif timestamp >= seen[0]:
            folded[row["task_id"]] = (timestamp, state, seen[2])
    # Applied one by one, the updates of a task leave the state of its last update with the newest
    # timestamp, if that is not older than updated_at; a task without a status takes its first update's
    # state anyway. Neither expression depends on the other's result, so the order MySQL assigns them in
    # (unspecified for multi-table updates) does not matter.
    status = (
        "CASE WHEN t.updated_at <= u.newest THEN u.state WHEN t.last_task_status IS NULL THEN u.first_state "
        "ELSE t.last_task_status END"
    )
    updated_at = "CASE WHEN t.updated_at > u.newest THEN t.updated_at ELSE u.newest END"
    mysql = conn.dialect.name in ("mysql", "mariadb")
    # MySQL compares the derived ids with the column's binary collation only when told to.
    task_id = "CAST(:i{n} AS CHAR) COLLATE utf8mb4_bin" if mysql else ":i{n}"
    items = list(folded.items())
    for start in range(0, len(items), _STATEMENT_ROWS):
        chunk = items[start : start + _STATEMENT_ROWS]
        params: dict[str, Any] = {}
        selects = []
        for n, (task_id_value, (newest, state, first_state)) in enumerate(chunk):
            params.update({f"i{n}": task_id_value, f"m{n}": newest, f"s{n}": state, f"f{n}": first_state})
            selects.append(
                f"SELECT {task_id.format(n=n)} AS task_id, :m{n} AS newest, :s{n} AS state, :f{n} AS first_state"
            )
        derived = " UNION ALL ".join(selects)
        if mysql:
            sql = (
                f"UPDATE task_history AS t JOIN ({derived}) AS u ON t.task_id = u.task_id "
                f"SET t.last_task_status = {status}, t.updated_at = {updated_at}"
            )
        else:
            sql = (
                f"UPDATE task_history AS t SET last_task_status = {status}, updated_at = {updated_at} "
                f"FROM ({derived}) AS u WHERE t.task_id = u.task_id"
            )
        await conn.execute(text(sql), params)


async def _updates_of(conn: AsyncConnection, task_ids: list[str]) -> dict[str, list[tuple[int, str]]]:
    """(timestamp, taskState) of the updates already written for these tasks, oldest first."""
    found: dict[str, list[tuple[int, str]]] = {}
    for chunk in _chunks(task_ids):
        stmt = (
            select(TaskUpdateRow.task_id, TaskUpdateRow.timestamp, TaskUpdateRow.task_state)
            .where(TaskUpdateRow.task_id.in_(chunk))
            .order_by(TaskUpdateRow.timestamp, TaskUpdateRow.id)
        )
        for task_id, timestamp, state in await conn.execute(stmt):
            found.setdefault(task_id, []).append((timestamp, state))
    return found


def _follow_updates(started_at: int, updates: list[tuple[int, str]]) -> tuple[str | None, int]:
    """A task's (lastTaskStatus, updatedAt) after `updates`. Updates can arrive out of order, and an
    older one must not replace a newer status; the first always sets one, even if a skewed clock
    stamped it before startedAt, and updatedAt never goes back."""
    status: str | None = None
    updated_at = started_at
    for timestamp, state in updates:
        if status is None or updated_at <= timestamp:
            status, updated_at = state, max(updated_at, timestamp)
    return status, updated_at


# Helpers ---------------------------------------------------------------------------------------------


# MySQL/MariaDB errors after which the same write can succeed: a lost, refused or killed connection,
# a server shutting down or read-only during a fail-over, a lock wait timeout or a deadlock.
_MYSQL_TRANSIENT = frozenset(
    {1040, 1053, 1158, 1159, 1160, 1161, 1205, 1213, 1290, 1317, 1927, 2002, 2003, 2005, 2006, 2013, 2055, 4031}
)


def _transient(exc: DBAPIError) -> bool:
    """Locked or unreachable database: the same write can succeed later."""
    if exc.connection_invalidated:
        return True
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    if isinstance(code, int):
        # pymysql (and aiomysql) errors carry the server's error code first. They raise OperationalError
        # for every code they do not know, a trigger's SIGNAL among them, so on MySQL the class alone
        # would retry a refused write for RETRY_SECONDS and then drop every write queued behind it.
        return code in _MYSQL_TRANSIENT
    return isinstance(exc, OperationalError)


def _dump(document: Doc) -> bytes:
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


async def _window(conn: AsyncConnection, stmt: Select[*Ts], offset: int, count: int, queued: int) -> list[Any]:
    """The database rows that a page at `offset` can hold once `queued` queued rows are merged in
    (see merge_page)."""
    return list(await conn.execute(stmt.offset(max(0, offset - queued)).limit(count + queued)))


def _newest(entries: list[tuple[int, Row]], committed: int) -> Row | None:
    """The last of the queued rows `entries` that the snapshot lacks."""
    return entries[-1][1] if entries and entries[-1][0] > committed else None


async def _tasks_with(conn: AsyncConnection, views: dict[str, PendingTask]) -> list[Row]:
    """The task_history rows of tasks with queued writes, as those writes will leave them."""
    row = TaskHistoryRow
    columns = (row.task_id, row.request_id, row.deploy_id, row.run_id, row.host, row.started_at, row.updated_at,
               row.last_task_status, row.task_id_body)
    stored: dict[str, Row] = {}
    for chunk in _chunks(list(views)):
        for found in await conn.execute(select(*columns).where(row.task_id.in_(chunk))):
            stored[found.task_id] = dict(found._mapping)
    # A task saved for the first time takes its status from the updates written before it.
    first_saves = [task_id for task_id, view in views.items() if view.saves and task_id not in stored]
    earlier = await _updates_of(conn, first_saves)
    tasks = []
    for task_id, view in views.items():
        task = stored.get(task_id)
        if view.saves:
            saved = view.saves[-1][1]
            status, updated_at = (
                (task["last_task_status"], task["updated_at"]) if task
                else _follow_updates(saved["started_at"], earlier.get(task_id, []))
            )
            task = {column.key: saved[column.key] for column in columns if column.key in saved}
            task.update(last_task_status=status, updated_at=updated_at)
        elif task is None:
            continue  # updates of a task not saved yet: not listed, as in the database
        for _, update_ in view.updates:
            if task["last_task_status"] is None or task["updated_at"] <= update_["timestamp"]:
                task["last_task_status"] = update_["task_state"]
                task["updated_at"] = max(task["updated_at"], update_["timestamp"])
        tasks.append(task)
    return tasks


def _by_key(row: Row) -> Any:
    return row["key"]


def _by_start(row: Row) -> tuple[int, str]:
    return row["started_at"], row["task_id"]


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _ID_CHUNK):
        yield items[start : start + _ID_CHUNK]
