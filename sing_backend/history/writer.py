"""The history writer: a process of its own that commits the history store's writes.

The store (store.py) hands writes over a pipe; committing them here, on the other core, keeps the work
of a burst (parameters prepared for thousands of rows, a full garbage collection over them) from holding
the backend's event loop and GIL, which made every API call wait.

Protocol, both ways frames.py's messages: the store sends a config dict first, then lists of (seq,
kind, rows); the writer answers ("ready", committed_seq) once connected, then ("done", seq, dropped,
commits) after each batch: every write up to seq is committed or dropped. At end of input it commits
what is left and exits, so a backend killed with SIGKILL loses nothing it had handed over.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import count as counter
from typing import Any

from pymysql.constants import SERVER_STATUS
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from ..models.common import NOTE_STATES
from . import db
from .frames import frame, read_frame
from .models import (
    Base,
    DeployHistoryRow,
    HistoryWriterRow,
    RequestHistoryRow,
    TaskHealthcheckRow,
    TaskHistoryRow,
    TaskUpdateRow,
)
from .pending import Kind, Write

log = logging.getLogger(__name__)

MAX_BATCH_ROWS = 2000  # rows per transaction: bounds how long it holds the write lock (purge, a CLI wait)
RETRY_SECONDS = 60.0  # how long a batch is retried at shutdown while the database is locked or unreachable
ID_CHUNK = 500  # ids per IN (…) list, well under every driver's parameter limit
_STATEMENT_ROWS = 250  # rows per statement: tasks per status update (4 parameters each), rows per insert
# Characters of SQL text per MySQL INSERT: at most 2 MB of UTF-8, under the smallest max_allowed_packet (4 MB).
_STATEMENT_CHARS = 500_000
_UPDATES_BY_TASK = "ix_task_updates_task_timestamp"
_KINDS = {kind.value: kind for kind in Kind}  # a dict lookup: calling Kind(value) per write took 2% of the writer


def make_writer_engine(url: str) -> AsyncEngine:
    """The writer's engine: the store's, with the status-move table made on each MySQL connection."""
    engine = db.make_engine(url)
    if db.is_mysql(engine):
        event.listen(engine.sync_engine, "connect", _create_status_moves_table)
    return engine


# Made once per connection, outside any transaction: MySQL with GTID consistency enforced refuses
# CREATE TEMPORARY TABLE inside one (and with autocommit off, every statement is inside one).
STATUS_MOVES_TABLE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS task_status_moves (task_id VARCHAR(200) COLLATE utf8mb4_bin "
    "PRIMARY KEY, newest BIGINT NOT NULL, state VARCHAR(32) NOT NULL, first_state VARCHAR(32) NOT NULL) "
    "ENGINE=MEMORY DEFAULT CHARSET=utf8mb4"
)


def _create_status_moves_table(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.autocommit(True)
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(STATUS_MOVES_TABLE)
        finally:
            cursor.close()
    finally:
        dbapi_connection.autocommit(False)


class BatchWriter:
    def __init__(self, engine: AsyncEngine, writer_id: str, retry_seconds: float) -> None:
        self._reads = engine
        self._engine = db.writer(engine)
        self.writer_id = writer_id
        self.retry_seconds = retry_seconds
        self.closing = False  # no more input: a database still unreachable after the retries is given up
        self.commits = 0

    async def committed_seq(self) -> int:
        async with self._reads.connect() as conn:
            seq = await conn.scalar(
                select(HistoryWriterRow.committed_seq).where(HistoryWriterRow.writer_id == self.writer_id)
            )
        return int(seq or 0)

    async def commit(self, batch: list[Write]) -> int:
        """Commit a batch in one transaction; never raises, so the writer cannot die. Returns the writes
        dropped (refused by the database, or still unreachable at shutdown after the retries)."""
        deadline = time.monotonic() + self.retry_seconds
        for attempt in counter():
            try:
                await self._apply(batch)
                self.commits += 1
                return 0
            except DBAPIError as exc:
                # An unreachable database is waited for as long as the backend runs: history is never
                # dropped for an outage (only on shutdown, after RETRY_SECONDS, or for refused rows).
                if not _transient(exc) or (self.closing and time.monotonic() >= deadline):
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
        return await self._commit_each(batch)

    async def _commit_each(self, batch: list[Write]) -> int:
        """Commit the writes of a failed batch one by one, so that only the culprits are lost."""
        dropped = 0
        for index, write in enumerate(batch):
            try:
                await self._apply([write])
                self.commits += 1
            except DBAPIError as exc:
                if _transient(exc):
                    # Still unreachable after the retries: trying the rest would only add timeouts.
                    log.error("history: database unavailable; dropped %d writes (%s)", len(batch) - index, exc.orig)
                    return dropped + len(batch) - index
                dropped += 1
                log.error("history: database refused a %s; dropped it (%s)", write.kind.value, exc.orig)
            except Exception:
                dropped += 1
                log.exception("history: could not write a %s; dropped it", write.kind.value)
        return dropped

    async def _apply(self, batch: list[Write]) -> None:
        # One statement per kind for the whole batch, however the calls interleaved.
        rows_by_kind: dict[Kind, list[dict[str, Any]]] = {kind: [] for kind in Kind}
        for write in batch:
            rows_by_kind[write.kind].extend(write.rows)
        updates = rows_by_kind[Kind.TASK_UPDATE]
        async with self._engine.begin() as conn:
            if rows_by_kind[Kind.REQUEST_EVENT]:
                await _insert(conn, RequestHistoryRow, rows_by_kind[Kind.REQUEST_EVENT])
            if rows_by_kind[Kind.DEPLOY]:
                await _upsert_deploys(conn, rows_by_kind[Kind.DEPLOY])
            # A task inserted by this batch takes the status its updates in this batch give it, so
            # only the tasks written before need their status columns moved.
            inserted = await _upsert_tasks(conn, rows_by_kind[Kind.TASK], updates)
            if updates:
                await _insert(conn, TaskUpdateRow, updates)
                await _move_task_status(conn, [row for row in updates if row["task_id"] not in inserted])
            if rows_by_kind[Kind.HEALTHCHECK]:
                await _insert(conn, TaskHealthcheckRow, rows_by_kind[Kind.HEALTHCHECK])
            await conn.execute(
                update(HistoryWriterRow)
                .where(HistoryWriterRow.writer_id == self.writer_id)
                .values(committed_seq=batch[-1].seq, updated_at=int(time.time() * 1000))
            )



# Row writers ---------------------------------------------------------------------------------------


async def _execute_chunked(conn: AsyncConnection, stmt: Executable, rows: list[dict[str, Any]]) -> None:
    # Preparing a statement's parameters runs on the event loop in one go: a few hundred rows at a time
    # keep that short for the queries waiting to run.
    for start in range(0, len(rows), _STATEMENT_ROWS):
        await conn.execute(stmt, rows[start : start + _STATEMENT_ROWS])


async def _insert(conn: AsyncConnection, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys; keys that are not columns are left out)."""
    columns = [column.name for column in model.__table__.columns if column.name in rows[0]]
    if not db.is_mysql(conn):
        # In the driver's own parameter style, as tuples: SQLAlchemy preparing each row's parameters
        # (a bind processor per value) cost the writer more CPU than SQLite's inserting them.
        sql = f"INSERT INTO {model.__tablename__} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        await conn.exec_driver_sql(sql, [tuple([row[name] for name in columns]) for row in rows])
        return
    # MySQL drivers in Python escape each value of each row in turn (a function call per value, most of
    # the writer's time); here each row becomes SQL text in a few string operations, and the rows of up
    # to _STATEMENT_CHARS go in one multi-row INSERT.
    head = f"INSERT INTO {model.__tablename__} ({', '.join(f'`{name}`' for name in columns)}) VALUES "
    literal = await _literal_for(conn)
    values: list[str] = []
    size = 0
    for row in rows:
        text = "(" + ",".join([literal(row[name]) for name in columns]) + ")"
        values.append(text)
        size += len(text)
        if size >= _STATEMENT_CHARS:
            await _execute_text(conn, head + ",".join(values))
            values, size = [], 0
    if values:
        await _execute_text(conn, head + ",".join(values))


async def _execute_text(conn: AsyncConnection, sql: str) -> None:
    # Through SQLAlchemy all the same, for its error translation and its handling of lost connections;
    # no_parameters, or the driver would read each % in the data as a parameter marker.
    await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


async def _literal_for(conn: AsyncConnection) -> Callable[[Any], str]:
    """The function that writes a value as a MySQL literal on this connection."""
    raw = await conn.get_raw_connection()
    status = raw.driver_connection.server_status  # type: ignore[union-attr]
    return _quote_only_literal if status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES else _literal


def _literal(value: Any) -> str:
    """`value` as a MySQL literal. Only the backslash and the quote need escaping inside quotes; NUL is
    escaped as well, as MySQL's own escaping does. Bytes keep their exact value: bytes above 127 become
    surrogates, which the driver encodes back to the same bytes (surrogateescape), as pymysql does."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        text = value.decode("ascii", "surrogateescape")
        return "_binary'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0") + "'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0") + "'"
    if isinstance(value, int):
        return str(int(value))  # a bool as 0 or 1
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise TypeError(f"no MySQL literal for {value!r}")


def _quote_only_literal(value: Any) -> str:
    """`value` as a literal on a server in NO_BACKSLASH_ESCAPES mode: a quote is doubled, nothing else."""
    if isinstance(value, bytes):
        return "_binary'" + value.decode("ascii", "surrogateescape").replace("'", "''") + "'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return _literal(value)


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
    for chunk in chunks(list(latest)):
        existing.update(await conn.scalars(select(TaskHistoryRow.task_id).where(TaskHistoryRow.task_id.in_(chunk))))
    new = [task_id for task_id in latest if task_id not in existing]
    if new:
        status_updates = await updates_of(conn, new)
        for update_ in updates:
            if update_["task_id"] in latest and update_["task_id"] not in existing:
                status_updates.setdefault(update_["task_id"], []).append((update_["timestamp"], update_["task_state"]))
        inserts = []
        for task_id in new:
            row = latest[task_id]
            status, updated_at = follow_updates(row["started_at"], status_updates.get(task_id, []))
            inserts.append({**row, "last_task_status": status, "updated_at": updated_at})
        await _insert(conn, TaskHistoryRow, inserts)
    # A second save replaces the document, and gives the run id if the task had none: the status columns
    # belong to the updates, and the others are the task's identity, which no save changes (pending.py).
    again = [{"b_body": row["body"], "b_run_id": row["run_id"], "b_task_id": task_id}
             for task_id, row in latest.items() if task_id in existing]
    if again:
        replace = (
            update(TaskHistoryRow)
            .where(TaskHistoryRow.task_id == bindparam("b_task_id"))
            .values(body=bindparam("b_body"), run_id=func.coalesce(TaskHistoryRow.run_id, bindparam("b_run_id")))
        )
        await _execute_chunked(conn, replace, again)
    return set(new)


async def _move_task_status(conn: AsyncConnection, updates: list[dict[str, Any]]) -> None:
    """Apply `updates` (in call order) to the status columns of their tasks, by the rule of
    follow_updates, with one statement per chunk of tasks rather than one per update."""
    folded: dict[str, tuple[int, str, str]] = {}  # task id: (newest timestamp, its last state, first state)
    for row in updates:
        timestamp, state = row["timestamp"], row["task_state"]
        if state in NOTE_STATES:
            continue
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
    items = list(folded.items())
    if db.is_mysql(conn):
        # The moves go into a temporary table of the connection first: a derived table of a few hundred
        # SELECTs joined by UNION ALL cost the server more than the update itself.
        literal = await _literal_for(conn)
        # (The connection made the table when it opened: see make_writer_engine.) Emptied first: a MEMORY
        # table ignores rollbacks, so a batch that failed after filling it left its rows there for the next
        # batch (or its retry) on this connection. (An InnoDB table would not, but it doubled the server's
        # work for the whole batch.)
        await _execute_text(conn, "DELETE FROM task_status_moves")
        for start in range(0, len(items), _STATEMENT_ROWS * 4):
            values = ",".join(
                [
                    f"({literal(task_id_value)},{int(newest)},{literal(state)},{literal(first_state)})"
                    for task_id_value, (newest, state, first_state) in items[start : start + _STATEMENT_ROWS * 4]
                ]
            )
            await _execute_text(conn, f"INSERT INTO task_status_moves VALUES {values}")
        await _execute_text(
            conn,
            f"UPDATE task_history AS t JOIN task_status_moves AS u ON t.task_id = u.task_id "
            f"SET t.last_task_status = {status}, t.updated_at = {updated_at}",
        )
        return
    # In the driver's own parameter style: SQLAlchemy parsing a thousand named parameters out of the text
    # cost more than the statement.
    first_row = "SELECT ? AS task_id, ? AS newest, ? AS state, ? AS first_state"
    for start in range(0, len(items), _STATEMENT_ROWS):
        chunk = items[start : start + _STATEMENT_ROWS]
        params: list[Any] = []
        for task_id_value, (newest, state, first_state) in chunk:
            params += (task_id_value, newest, state, first_state)
        derived = " UNION ALL ".join([first_row, *["SELECT ?, ?, ?, ?"] * (len(chunk) - 1)])
        await conn.exec_driver_sql(
            f"UPDATE task_history AS t SET last_task_status = {status}, updated_at = {updated_at} "
            f"FROM ({derived}) AS u WHERE t.task_id = u.task_id",
            tuple(params),
        )


async def updates_of(conn: AsyncConnection, task_ids: list[str]) -> dict[str, list[tuple[int, str]]]:
    """(timestamp, taskState) of the updates already written for these tasks, in the order written."""
    return collect_updates([await conn.execute(UPDATES_OF_TASKS, {"ids": chunk}) for chunk in chunks(task_ids)])


# Built once, run with each chunk of ids: building the statement cost more than running it.
# MariaDB's estimate for hundreds of ids (most of them with no update yet) came out as a scan of the whole
# table, each time: 35 ms per batch at 100,000 tasks, the largest part of a commit; hence the index hint.
UPDATES_OF_TASKS = (
    select(TaskUpdateRow.task_id, TaskUpdateRow.timestamp, TaskUpdateRow.id, TaskUpdateRow.task_state)
    .with_hint(TaskUpdateRow, f"FORCE INDEX ({_UPDATES_BY_TASK})", "mysql")
    .with_hint(TaskUpdateRow, f"FORCE INDEX ({_UPDATES_BY_TASK})", "mariadb")
    .where(TaskUpdateRow.task_id.in_(bindparam("ids", expanding=True)))
)


def collect_updates(results: Iterable[Iterable[Any]]) -> dict[str, list[tuple[int, str]]]:
    """(timestamp, taskState) of each task's updates, in the order they were written (their row ids):
    the order in which a batch's own and queued updates apply too, so that a task's status does not
    depend on which batch its row and its updates landed in. Sorted here, not by the database: an ORDER
    BY made the optimizer weigh a sort of the whole table against the index."""
    found: dict[str, list[tuple[int, int, str]]] = {}
    for result in results:
        for task_id, timestamp, id_, state in result:
            found.setdefault(task_id, []).append((id_, timestamp, state))
    return {task_id: [(timestamp, state) for _, timestamp, state in sorted(rows)] for task_id, rows in found.items()}


def follow_update(status: str | None, updated_at: int, timestamp: int, state: str) -> tuple[str | None, int]:
    """A task's (lastTaskStatus, updatedAt) after one more update. Updates can arrive out of order, and
    an older one must not replace a newer status; the first always sets one, even if a skewed clock
    stamped it before startedAt, and updatedAt never goes back. Notes (NOTE_STATES) are left out."""
    if state in NOTE_STATES or (status is not None and timestamp < updated_at):
        return status, updated_at
    return state, max(updated_at, timestamp)


def follow_updates(started_at: int, updates: list[tuple[int, str]]) -> tuple[str | None, int]:
    """A task's (lastTaskStatus, updatedAt) after `updates`, from its start (see follow_update)."""
    status: str | None = None
    updated_at = started_at
    for timestamp, state in updates:
        status, updated_at = follow_update(status, updated_at, timestamp, state)
    return status, updated_at


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




def chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), ID_CHUNK):
        yield items[start : start + ID_CHUNK]


async def serve(reader: asyncio.StreamReader, out: asyncio.StreamWriter) -> None:
    config = await read_frame(reader)
    if config is None:
        return
    db.SQLITE_BUSY_TIMEOUT_MS = config["sqlite_busy_timeout_ms"]
    engine = make_writer_engine(config["url"])
    try:
        writer = BatchWriter(engine, config["writer_id"], config["retry_seconds"])
        # Writes up to here were committed by an earlier writer of this store (it died before saying so):
        # the store sends them again, and they are skipped, not written twice.
        done = await _committed_seq_when_reachable(writer)
        heard = True  # the store still reads the answers

        async def answer(message: tuple[Any, ...]) -> None:
            nonlocal heard
            if not heard:
                return
            out.write(frame(message))
            try:
                await out.drain()
            except ConnectionResetError:
                # The backend is gone (killed): what it handed over is committed all the same, unheard.
                heard = False

        await answer(("ready", done))
        queued: deque[Write] = deque()
        arrived = asyncio.Event()

        async def receive() -> None:
            while (message := await read_frame(reader)) is not None:
                queued.extend(Write(seq, _KINDS[kind], rows) for seq, kind, rows in message if seq > done)
                arrived.set()
            writer.closing = True
            arrived.set()

        receiving = asyncio.get_running_loop().create_task(receive())
        max_rows = config["max_batch_rows"]
        while True:
            await arrived.wait()
            arrived.clear()
            while queued:
                # Whatever has arrived, up to max_rows: a burst of calls becomes one transaction.
                batch = [queued.popleft()]
                rows = len(batch[0].rows)
                while queued and rows < max_rows:
                    rows += len(queued[0].rows)
                    batch.append(queued.popleft())
                dropped = await writer.commit(batch)
                await answer(("done", batch[-1].seq, dropped, writer.commits))
            if writer.closing and not queued:
                break
        await receiving
    finally:
        await engine.dispose()


async def _committed_seq_when_reachable(writer: BatchWriter) -> int:
    for attempt in counter():
        try:
            return await writer.committed_seq()
        except DBAPIError as exc:
            if not _transient(exc):
                raise
            log.warning("history writer: database unreachable (%s); retrying", exc.orig)
            await asyncio.sleep(min(0.05 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


async def _main(answers_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**31)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), os.fdopen(answers_fd, "wb", buffering=0)
    )
    out = asyncio.StreamWriter(transport, protocol, None, loop)
    await serve(reader, out)
    transport.close()


def main() -> None:
    # The answers go on a copy of fd 1; fd 1 itself then points at stderr, so that nothing printed (by
    # Python or by a C library) can slip into the protocol.
    answers_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Background work: when the cores are busy, the backend's API and scheduler go first. And one core
    # at most (the last): the writer cannot use more, and moving between cores it competed for every
    # one of them with the backend's threads (a history query during a burst waited 10x longer).
    os.nice(10)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})
    logging.basicConfig(level=os.environ.get("SING_LOG_LEVEL", "warning").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(answers_fd))

