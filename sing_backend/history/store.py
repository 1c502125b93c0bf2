"""The history store: Singularity's request, deploy and task history in SQL.

Writes are queued and committed by one background writer, many per transaction, so the scheduler
never waits on the database; every query first waits for the writes queued before it. Database I/O
goes through SQLAlchemy's asyncio engine (aiosqlite locally; see db.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import count as counter
from typing import Any, TypeVar, TypeVarTuple

import orjson
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Select,
    asc,
    bindparam,
    case,
    delete,
    desc,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..models.common import TERMINAL_TASK_STATES
from .db import make_engine, migrate_engine
from .models import DeployHistoryRow, RequestHistoryRow, TaskHealthcheckRow, TaskHistoryRow, TaskUpdateRow

log = logging.getLogger(__name__)

Doc = dict[str, Any]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MAX_COUNT = 1000  # page size cap, as Singularity's API
MAX_BATCH_ROWS = 2000  # rows per transaction: bounds how long it holds the write lock (purge, a CLI wait)
MAX_QUEUED = 100_000  # queued writes; beyond that callers wait rather than grow memory without bound
RETRY_SECONDS = 60.0  # how long a batch is retried while the database is locked or unreachable
_ID_CHUNK = 500  # ids per IN (…) list, well under every driver's parameter limit
_READERS = 4  # concurrent queries; the rest of the connection pool stays free for the writer and purges


class _Kind(Enum):
    """What a write records. A batch applies its writes kind by kind, each kind in call order. That
    equals call order: kinds write different tables, except that task updates move their task's status
    columns, and a new task row takes its status from the updates already written."""

    REQUEST_EVENT = "request event"
    DEPLOY = "deploy"
    TASK = "task"
    TASK_UPDATE = "task update"
    HEALTHCHECK = "health-check result"


@dataclass(frozen=True, slots=True)
class _Write:
    """One write call; its rows are committed or dropped together."""

    kind: _Kind
    rows: list[dict[str, Any]]


_QueueItem = _Write | asyncio.Future[None] | None  # a future asks to be told once written; None stops


class HistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        """Use `HistoryStore.open`, which also brings the schema up to date."""
        self._engine = engine
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
        try:
            await migrate_engine(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

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
        await self._enqueue(_Kind.REQUEST_EVENT, [row])

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
        await self._enqueue(_Kind.DEPLOY, [row])

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
        await self._enqueue(_Kind.TASK, [row])

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
            }
            for update_ in updates
        ]
        if rows:
            await self._enqueue(_Kind.TASK_UPDATE, rows)

    async def add_healthcheck_result(self, task_id: str, result: Doc) -> None:
        row = {"task_id": task_id, "timestamp": result["timestamp"], "body": _dump(result)}
        await self._enqueue(_Kind.HEALTHCHECK, [row])

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
        row = RequestHistoryRow
        order = desc if order_desc else asc
        stmt = select(row.body).where(row.request_id == request_id)
        if created_before is not None:
            stmt = stmt.where(row.created_at < created_before)
        if created_after is not None:
            stmt = stmt.where(row.created_at > created_after)
        stmt = _paged(stmt.order_by(order(row.created_at), order(row.id)), count, page)
        return await self._after_writes(self._documents, stmt)

    async def deploy_history(self, request_id: str, *, count: int = 100, page: int = 1) -> list[Doc]:
        """DeployHistory objects of a request, newest timestamp first."""
        row = DeployHistoryRow
        stmt = select(row.body).where(row.request_id == request_id)
        stmt = _paged(stmt.order_by(row.timestamp.desc(), row.deploy_id.desc()), count, page)
        return await self._after_writes(self._documents, stmt)

    async def get_deploy(self, request_id: str, deploy_id: str) -> Doc | None:
        row = DeployHistoryRow
        stmt = select(row.body).where(row.request_id == request_id, row.deploy_id == deploy_id)
        found = await self._after_writes(self._documents, stmt)
        return found[0] if found else None

    async def task_history(self, task_id: str) -> Doc | None:
        """The TaskHistory of a task: its document with its updates and health-check results."""
        return await self._after_writes(self._task_history, task_id)

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
        row = TaskHistoryRow
        stmt = _task_id_history_query()
        if request_id is not None:
            stmt = stmt.where(row.request_id == request_id)
        for column, value in (
            (row.deploy_id, deploy_id),
            (row.run_id, run_id),
            (row.host, host),
            (row.last_task_status, last_task_status),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if started_before is not None:
            stmt = stmt.where(row.started_at < started_before)
        if started_after is not None:
            stmt = stmt.where(row.started_at > started_after)
        if updated_before is not None:
            stmt = stmt.where(row.updated_at < updated_before)
        if updated_after is not None:
            stmt = stmt.where(row.updated_at > updated_after)
        order = desc if order_desc else asc
        stmt = _paged(stmt.order_by(order(row.started_at), order(row.task_id)), count, page)
        return await self._after_writes(self._task_id_histories, stmt)

    async def task_by_run_id(self, request_id: str, run_id: str) -> Doc | None:
        """TaskIdHistory of the newest task of a run (retries of a run share its runId)."""
        row = TaskHistoryRow
        stmt = (
            _task_id_history_query()
            .where(row.request_id == request_id, row.run_id == run_id)
            .order_by(row.started_at.desc(), row.task_id.desc())
            .limit(1)
        )
        found = await self._after_writes(self._task_id_histories, stmt)
        return found[0] if found else None

    async def purge(self, *, older_than_ms: int | None, keep_per_request: int | None) -> int:
        """Delete tasks (with their updates and health checks) last updated before `older_than_ms`
        (epoch ms) or beyond the `keep_per_request` most recently updated of their request; None
        disables a rule. Deletes in short transactions so writers keep going. Returns tasks deleted."""
        if keep_per_request is not None and keep_per_request < 0:
            raise ValueError(f"keep_per_request must be >= 0, got {keep_per_request}")
        return await self._after_writes(self._purge, older_than_ms, keep_per_request)

    # Writer ------------------------------------------------------------------------------------------

    async def _enqueue(self, kind: _Kind, rows: list[dict[str, Any]]) -> None:
        if self._closing:
            raise RuntimeError("the history store is closed")
        self._unflushed += 1
        try:
            await self._queue.put(_Write(kind, rows))
        except BaseException:
            self._unflushed -= 1
            raise

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Write] = []
            waiters: list[asyncio.Future[None]] = []
            rows = 0
            item = await self._queue.get()
            # Take whatever else is already queued: a burst of calls becomes one transaction.
            while True:
                if item is None:
                    stopping = True
                elif isinstance(item, _Write):
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
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _commit(self, batch: list[_Write]) -> None:
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

    async def _commit_each(self, batch: list[_Write]) -> None:
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

    async def _apply(self, batch: list[_Write]) -> None:
        # One statement per kind for the whole batch, however the calls interleaved.
        rows_by_kind: dict[_Kind, list[dict[str, Any]]] = {kind: [] for kind in _Kind}
        for write in batch:
            rows_by_kind[write.kind].extend(write.rows)
        async with self._engine.begin() as conn:
            for kind, rows in rows_by_kind.items():
                if rows:
                    await _APPLY[kind](conn, rows)

    # Queries -----------------------------------------------------------------------------------------

    async def _after_writes(self, query: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run `query` once every write queued before it is committed."""
        if self._closing:
            raise RuntimeError("the history store is closed")
        self._queries += 1
        self._no_queries.clear()
        try:
            await self.flush()
            async with self._readers:
                return await query(*args)
        finally:
            self._queries -= 1
            if self._queries == 0:
                self._no_queries.set()

    async def _documents(self, stmt: Select[bytes]) -> list[Doc]:
        async with self._engine.connect() as conn:
            return [orjson.loads(body) for body in await conn.scalars(stmt)]

    async def _task_id_histories(self, stmt: Select[bytes, int, str | None, str | None]) -> list[Doc]:
        async with self._engine.connect() as conn:
            return [_task_id_history(*found) for found in await conn.execute(stmt)]

    async def _task_history(self, task_id: str) -> Doc | None:
        async with self._engine.connect() as conn:
            body = await conn.scalar(select(TaskHistoryRow.body).where(TaskHistoryRow.task_id == task_id))
            if body is None:
                return None
            updates = (
                await conn.scalars(
                    select(TaskUpdateRow.body)
                    .where(TaskUpdateRow.task_id == task_id)
                    .order_by(TaskUpdateRow.timestamp, TaskUpdateRow.id)
                )
            ).all()
            checks = (
                await conn.scalars(
                    select(TaskHealthcheckRow.body)
                    .where(TaskHealthcheckRow.task_id == task_id)
                    .order_by(TaskHealthcheckRow.timestamp, TaskHealthcheckRow.id)
                )
            ).all()
        return {
            "task": orjson.loads(body),
            "taskUpdates": [orjson.loads(update_) for update_ in updates],
            "healthcheckResults": [orjson.loads(check) for check in checks],
            # Not recorded by Sing yet; present because Singularity's clients expect the lists.
            "loadBalancerUpdates": [],
            "shellCommandHistory": [],
            "taskMetadata": [],
        }

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
            async with self._engine.begin() as conn:
                task_ids = (await conn.scalars(chosen)).all()
                if not task_ids:
                    return deleted
                await conn.execute(delete(TaskUpdateRow).where(TaskUpdateRow.task_id.in_(task_ids)))
                await conn.execute(delete(TaskHealthcheckRow).where(TaskHealthcheckRow.task_id.in_(task_ids)))
                result = await conn.execute(delete(TaskHistoryRow).where(TaskHistoryRow.task_id.in_(task_ids)))
                deleted += result.rowcount


# Row writers (writer task) ---------------------------------------------------------------------------


async def _insert_request_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(RequestHistoryRow), rows)


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


async def _upsert_tasks(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    latest = {row["task_id"]: row for row in rows}  # the same task saved twice in a batch: last wins
    existing: set[str] = set()
    for chunk in _chunks(list(latest)):
        existing.update(await conn.scalars(select(TaskHistoryRow.task_id).where(TaskHistoryRow.task_id.in_(chunk))))
    new = [task_id for task_id in latest if task_id not in existing]
    if new:
        earlier = await _updates_of(conn, new)
        inserts = []
        for task_id in new:
            row = latest[task_id]
            status, updated_at = _follow_updates(row["started_at"], earlier.get(task_id, []))
            inserts.append({**row, "last_task_status": status, "updated_at": updated_at})
        await conn.execute(insert(TaskHistoryRow), inserts)
    # A second save replaces the document; the status columns belong to the updates.
    again = [{**row, "b_task_id": row["task_id"]} for task_id, row in latest.items() if task_id in existing]
    if again:
        await conn.execute(update(TaskHistoryRow).where(TaskHistoryRow.task_id == bindparam("b_task_id")), again)


async def _insert_task_updates(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(TaskUpdateRow), rows)
    row = TaskHistoryRow
    timestamp: BindParameter[int] = bindparam("b_timestamp", type_=BigInteger())
    # The rule of _follow_updates, in SQL.
    await conn.execute(
        update(row)
        .where(
            row.task_id == bindparam("b_task_id"),
            or_(row.last_task_status.is_(None), row.updated_at <= timestamp),
        )
        .values(
            last_task_status=bindparam("b_state"),
            updated_at=case((row.updated_at > timestamp, row.updated_at), else_=timestamp),
        ),
        [{"b_task_id": r["task_id"], "b_timestamp": r["timestamp"], "b_state": r["task_state"]} for r in rows],
    )


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


async def _insert_healthchecks(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(TaskHealthcheckRow), rows)


_APPLY: dict[_Kind, Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]] = {
    _Kind.REQUEST_EVENT: _insert_request_events,
    _Kind.DEPLOY: _upsert_deploys,
    _Kind.TASK: _upsert_tasks,
    _Kind.TASK_UPDATE: _insert_task_updates,
    _Kind.HEALTHCHECK: _insert_healthchecks,
}


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


def _paged(stmt: Select[*Ts], count: int, page: int) -> Select[*Ts]:
    if count < 1 or page < 1:
        raise ValueError(f"count and page start at 1, got count={count} page={page}")
    count = min(count, MAX_COUNT)
    return stmt.limit(count).offset((page - 1) * count)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _ID_CHUNK):
        yield items[start : start + _ID_CHUNK]
