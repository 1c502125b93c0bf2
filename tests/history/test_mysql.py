"""What only MySQL/MariaDB can show: its schema, drivers, collation and errors. The store's behaviour
runs there too: conftest.py runs the other history tests on both databases."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from sing_backend.history import HistoryStore, db, upgrade
from sing_backend.history.models import Base
from sing_backend.history.writer import _move_task_status, make_writer_engine
from sing_backend.local_backend import wait_for
from tests.servers import mysql_database

from .helpers import make_task, save, update

TABLES = {"request_history", "deploy_history", "task_history", "task_updates", "task_healthchecks", "history_writers"}


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening, so connections to it are refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def mysql_url() -> Iterator[str]:
    with mysql_database() as url:
        yield url


def connect(url: str) -> pymysql.Connection[pymysql.cursors.Cursor]:
    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username, database=parsed.database, autocommit=True
    )


def query(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def tables(url: str) -> dict[str, tuple[object, ...]]:
    rows = query(
        url,
        "SELECT table_name, engine, table_collation FROM information_schema.tables WHERE table_schema = %s",
        make_url(url).database,
    )
    return {str(name): (engine, collation) for name, engine, collation in rows}


@pytest.mark.parametrize("scheme", ["mysql", "mysql+pymysql", "mysql+aiomysql"])
async def test_open_creates_the_schema_on_the_asyncio_driver(mysql_url: str, scheme: str) -> None:
    url = make_url(mysql_url).set(drivername=scheme).render_as_string(hide_password=False)
    store = await HistoryStore.open(url)
    try:
        assert store._engine.url.drivername == "mysql+aiomysql"
        await store.add_request_event({"request": {"id": "r"}, "eventType": "CREATED", "createdAt": 1})
        assert len(await store.request_history("r")) == 1
    finally:
        await store.close()
    assert tables(mysql_url) == {name: ("InnoDB", "utf8mb4_bin") for name in TABLES} | {
        db.VERSION_TABLE: ("InnoDB", "utf8mb4_bin")
    }
    assert query(mysql_url, f"SELECT version_num FROM {db.VERSION_TABLE}") == [("0004",)]
    again = await HistoryStore.open(url)
    await again.close()
    assert query(mysql_url, f"SELECT version_num FROM {db.VERSION_TABLE}") == [("0004",)]


async def test_backends_starting_together_on_an_empty_database_both_open(mysql_url: str) -> None:
    # MySQL commits DDL at once: without a lock both would create the tables and one would fail.
    stores = await asyncio.gather(*(HistoryStore.open(mysql_url) for _ in range(3)))
    for store in stores:
        await store.close()
    assert query(mysql_url, f"SELECT version_num FROM {db.VERSION_TABLE}") == [("0004",)]


def test_sync_upgrade_runs_on_pymysql(mysql_url: str) -> None:
    assert db.make_sync_engine(mysql_url).url.drivername == "mysql+pymysql"
    upgrade(mysql_url)
    upgrade(mysql_url)  # already there: a no-op
    assert set(tables(mysql_url)) == TABLES | {db.VERSION_TABLE}


def test_migration_matches_the_models(mysql_url: str) -> None:
    upgrade(mysql_url)
    engine = db.make_sync_engine(mysql_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


async def test_ids_compare_exactly(mysql_url: str) -> None:
    store = await HistoryStore.open(mysql_url)
    try:
        for request_id in ("billing", "Billing", "BILLING"):
            await store.add_request_event({"request": {"id": request_id}, "eventType": "CREATED", "createdAt": 1})
        await save(store, make_task("billing", "v1", 1000))
        await save(store, make_task("Billing", "v1", 1000))
        assert [len(await store.request_history(r)) for r in ("billing", "Billing", "BILLING")] == [1, 1, 1]
        assert len(await store.request_task_ids("billing")) == 1
        assert len(await store.request_task_ids("Billing")) == 1
    finally:
        await store.close()


async def test_four_byte_characters_and_large_documents(mysql_url: str) -> None:
    store = await HistoryStore.open(mysql_url)
    try:
        message = "deployed 🚀 by ops — ünïcode"
        await store.add_request_event(
            {"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": 1, "message": message, "user": "😀"}
        )
        task = make_task("r", "v1", 1000)
        task["mesosTask"]["env"] = {f"VAR_{n}": "x" * 200 for n in range(2000)}  # ~450 KB: over BLOB's 64 KiB
        tid = await save(store, task)
        await store.add_task_updates([update(tid, 1001, "TASK_RUNNING", statusMessage="🟢 running")])
        (event,) = await store.request_history("r")
        assert (event["message"], event["user"]) == (message, "😀")
        history = await store.task_history(tid)
        assert history is not None and history["task"]["mesosTask"] == task["mesosTask"]
        assert history["taskUpdates"][0]["statusMessage"] == "🟢 running"
        await store.flush()
        assert query(mysql_url, "SELECT message FROM request_history") == [(message,)]
    finally:
        await store.close()


# Every character MySQL's own escaping treats specially, a % (a parameter marker to the driver), and
# characters outside ASCII: the writer builds its INSERTs as SQL text.
AWKWARD = "it's \\ 100% \"done\"\x00\n\r\x1a ünï 🎵 ''; DROP TABLE task_history; --"


@pytest.mark.parametrize("sql_mode", [None, "NO_BACKSLASH_ESCAPES"])
async def test_values_with_quotes_backslashes_and_nul_are_stored_exactly(mysql_url: str, sql_mode: str | None) -> None:
    url = make_url(mysql_url)
    if sql_mode is not None:  # a server where a backslash is an ordinary character
        url = url.update_query_dict({"init_command": f"SET SESSION sql_mode = '{sql_mode}'"})
    store = await HistoryStore.open(url.render_as_string(hide_password=False))
    try:
        await store.add_request_event(
            {"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": 1, "message": AWKWARD, "user": AWKWARD}
        )
        task = make_task("r", "v1", 1000)
        task["mesosTask"]["env"] = {"NOTE": AWKWARD}
        tid = await save(store, task)
        await store.flush()  # the update then moves the status of a stored task
        await store.add_task_updates([update(tid, 1001, "TASK_RUNNING", statusMessage=AWKWARD)])
        await store.flush()
        assert query(mysql_url, "SELECT message, user FROM request_history") == [(AWKWARD, AWKWARD)]
        assert query(mysql_url, "SELECT status_message FROM task_updates") == [(AWKWARD,)]
        history = await store.task_history(tid)
        assert history is not None and history["task"]["mesosTask"]["env"] == {"NOTE": AWKWARD}
        assert [u["statusMessage"] for u in history["taskUpdates"]] == [AWKWARD]
        assert [t["lastTaskStatus"] for t in await store.request_task_ids("r")] == ["TASK_RUNNING"]
        assert query(mysql_url, "SELECT COUNT(*) FROM task_history") == [(1,)]
        assert store.dropped_writes == 0
    finally:
        await store.close()


async def test_a_refused_write_is_dropped_alone_without_retrying(
    mysql_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    store = await HistoryStore.open(mysql_url)
    try:
        query(
            mysql_url,
            "CREATE TRIGGER refuse BEFORE INSERT ON request_history FOR EACH ROW"
            " IF NEW.message = 'refuse me' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF",
        )
        started = time.monotonic()
        for n, message in enumerate(["a", "refuse me", "b"]):
            await store.add_request_event(
                {"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": n, "message": message}
            )
        await store.flush()
        kept = await store.request_history("r", order_desc=False)
        assert [e["message"] for e in kept] == ["a", "b"]
        assert store.dropped_writes == 1
        # Refused is not unreachable: no retries, which would hold every later write for a minute.
        assert "retrying" not in capfd.readouterr().err  # the writer process logs to stderr
        assert time.monotonic() - started < 5
    finally:
        await store.close()


async def test_an_id_too_long_for_its_column_is_dropped_alone(mysql_url: str) -> None:
    store = await HistoryStore.open(mysql_url)
    try:
        for request_id in ("before", "x" * 101, "after"):
            await store.add_request_event({"request": {"id": request_id}, "eventType": "CREATED", "createdAt": 1})
        await store.flush()
        assert store.dropped_writes == 1
        assert len(await store.request_history("before")) == 1
        assert len(await store.request_history("after")) == 1
    finally:
        await store.close()


async def test_connections_killed_by_the_server_are_replaced(mysql_url: str) -> None:
    store = await HistoryStore.open(mysql_url)
    try:
        await store.add_request_event({"request": {"id": "r"}, "eventType": "CREATED", "createdAt": 1})
        tid = await save(store, make_task("r", "v1", 1000))
        assert len(await store.request_history("r")) == 1
        await store.flush()
        # As a server restart, a fail-over or wait_timeout would: the pooled connections die.
        database = make_url(mysql_url).database
        for (connection_id,) in query(
            mysql_url, "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()", database
        ):
            query(mysql_url, f"KILL {int(str(connection_id))}")
        await store.add_request_event({"request": {"id": "r"}, "eventType": "UPDATED", "createdAt": 2})
        # A status move of a task written before: it goes through a table each new connection makes.
        await store.add_task_updates([update(tid, 2000, "TASK_RUNNING")])
        await store.flush()
        assert len(await store.request_history("r")) == 2
        status = query(mysql_url, "SELECT last_task_status FROM task_history WHERE task_id = %s", tid)
        assert status == [("TASK_RUNNING",)]
        assert store.dropped_writes == 0
    finally:
        await store.close()


async def test_an_unreachable_server_fails_the_open() -> None:
    with refused_port() as port:
        started = time.monotonic()
        with pytest.raises(OperationalError):
            await HistoryStore.open(f"mysql://root@127.0.0.1:{port}/sing")
        assert time.monotonic() - started < 10


async def test_status_moves_retried_after_a_failed_transaction_are_applied_once(mysql_url: str) -> None:
    """Status moves go through a temporary MEMORY table, which a rollback does not empty: a batch retried
    on the same connection (after a lock wait timeout, say) must neither collide with its own earlier
    rows nor apply stale ones."""
    store = await HistoryStore.open(mysql_url)
    try:
        tids = [await save(store, make_task("r", "v1", 1000 + n)) for n in range(3)]
        await store.flush()
    finally:
        await store.close()
    moves = [{"task_id": tid, "timestamp": 2000, "task_state": "TASK_RUNNING"} for tid in tids]
    engine = make_writer_engine(mysql_url)
    blocker = connect(mysql_url)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            await conn.commit()
            with blocker.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute("SELECT * FROM task_history WHERE task_id = %s FOR UPDATE", (tids[1],))
            with pytest.raises(OperationalError):
                async with conn.begin():
                    await _move_task_status(conn, moves)  # the UPDATE waits for the blocker, then fails
            blocker.rollback()
            async with conn.begin():
                await _move_task_status(conn, moves)
            async with conn.begin():
                # A later batch on the same connection moves only its own task.
                await _move_task_status(conn, [{"task_id": tids[0], "timestamp": 3000, "task_state": "TASK_FINISHED"}])
    finally:
        blocker.close()
        await engine.dispose()
    rows = dict(query(mysql_url, "SELECT task_id, last_task_status FROM task_history"))
    assert rows == {tids[0]: "TASK_FINISHED", tids[1]: "TASK_RUNNING", tids[2]: "TASK_RUNNING"}


def sleeping_query(conn: Connection, _committed: int) -> object:
    """A history query that runs on the server for 5 s (module-level: query processes import it)."""
    return conn.exec_driver_sql("SELECT SLEEP(5)").scalar()


async def test_the_server_stops_a_query_running_past_the_query_timeout(mysql_url: str) -> None:
    """The API gives up on a history query after its timeout; the server must not go on running it."""
    store = await HistoryStore.open(mysql_url, query_timeout_seconds=0.5)
    try:
        await store.add_request_event({"request": {"id": "r"}, "eventType": "CREATED", "createdAt": 1})
        started = time.monotonic()
        with pytest.raises(DBAPIError, match="max_statement_time"):
            await store._read(sleeping_query)
        assert time.monotonic() - started < 4
        # Gone well before the 5 s it would run: a statement the server stopped can show for a moment more
        # while its thread winds down (seen under load).
        wait_for(lambda: query(mysql_url, "SELECT id FROM information_schema.processlist "
                                          "WHERE info LIKE 'SELECT SLEEP%%'") == [],
                 timeout=max(0.1, started + 3 - time.monotonic()), what="the query stopped on the server")
        # The query process and its connection serve the next query.
        assert len(await store.request_history("r")) == 1
    finally:
        await store.close()


async def test_a_user_who_may_not_make_temporary_tables_fails_the_open(mysql_url: str) -> None:
    """The writer moves task statuses through a temporary table: without that privilege the store must
    not start (and then drop every status change), but say why."""
    parsed = make_url(mysql_url)
    user = f"sing_limited_{parsed.database[-8:]}"
    query(mysql_url, f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'")
    try:
        query(mysql_url, f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES "
                         f"ON `{parsed.database}`.* TO '{user}'@'%%'")
        limited = parsed.set(username=user, password="pw").render_as_string(hide_password=False)
        with pytest.raises(OperationalError, match="(?i)access denied"):
            await HistoryStore.open(limited)
        query(mysql_url, f"GRANT CREATE TEMPORARY TABLES ON `{parsed.database}`.* TO '{user}'@'%%'")
        store = await HistoryStore.open(limited)
        await store.close()
    finally:
        query(mysql_url, f"DROP USER '{user}'@'%%'")


UNENDED_SCAN = ("SELECT task_id FROM task_history "
                "WHERE last_task_status IS NULL OR last_task_status NOT IN ('TASK_FINISHED', 'TASK_FAILED')")


def scan_in_one_statement(conn: Connection, _committed: int) -> list[str]:
    return list(conn.exec_driver_sql(UNENDED_SCAN).scalars())


async def test_the_search_for_unended_tasks_finishes_on_a_history_too_large_to_read_within_the_query_timeout(
    mysql_url: str,
) -> None:
    """A new leader looks for the tasks history shows unended by reading the whole task table. The query
    timeout bounds each statement: read in one, a large history would fail the search at every try, and
    the ends it waits for would never be completed."""
    await (await HistoryStore.open(mysql_url)).close()  # the schema
    tasks = 200_000
    query(mysql_url, "INSERT INTO task_history (task_id, request_id, deploy_id, host, started_at, updated_at, "
                     "last_task_status, task_id_body, body) "
                     "SELECT CONCAT('job-v1-', LPAD(seq, 7, '0'), '-1-host-rack'), 'job', 'v1', 'host', seq, seq, "
                     "CASE WHEN seq %% 1000 = 0 THEN 'TASK_RUNNING' WHEN seq %% 1000 = 1 THEN NULL "
                     "WHEN seq %% 2 = 0 THEN 'TASK_FAILED' ELSE 'TASK_FINISHED' END, '{}', REPEAT('x', 1500) "
                     f"FROM seq_1_to_{tasks}")
    # A timeout well under the time the whole table takes to read here, and well above a slice's.
    whole = []
    for _ in range(2):
        started = time.monotonic()
        query(mysql_url, UNENDED_SCAN)
        whole.append(time.monotonic() - started)
    timeout = min(whole) / 3
    store = await HistoryStore.open(mysql_url, query_timeout_seconds=timeout)
    try:
        with pytest.raises(DBAPIError, match="max_statement_time"):
            await store._read(scan_in_one_statement)
        unended = await store.unended_task_ids()
        assert sorted(unended) == [f"job-v1-{n:07d}-1-host-rack" for n in range(1, tasks + 1) if n % 1000 in (0, 1)]
    finally:
        await store.close()
