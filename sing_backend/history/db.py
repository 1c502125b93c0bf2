"""Engine creation and schema migrations for the history database.

The store runs on SQLAlchemy's asyncio engine: ``sqlite+aiosqlite`` locally, ``mysql+aiomysql`` for
MySQL/MariaDB. Plain driver names (``sqlite://``, ``mysql://``, ``mysql+pymysql://``) are mapped to the
asyncio driver of the same database.

The command-line helpers (`upgrade`, the alembic CLI) stay synchronous and map the other way, so a
synchronous driver such as pymysql is only ever used there, never by the running backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "sing_history_version"  # not alembic_version: the database may hold other schemas too
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
SQLITE_BUSY_TIMEOUT_MS = 5000
WRITE_OPTION = "sing_history_write"
MIGRATION_LOCK = "sing_history_migration"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
    "mariadb+pymysql": "mariadb+aiomysql",
}

_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    # SQLAlchemy's default MySQL driver is mysqlclient, a C extension Sing does not install.
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mysql+aiomysql": "mysql+pymysql",
    "mysql+asyncmy": "mysql+pymysql",
    "mariadb+aiomysql": "mariadb+pymysql",
    "mariadb+asyncmy": "mariadb+pymysql",
}


def async_url(url: str | URL) -> URL:
    """`url` with an asyncio driver: the one it names, or the asyncio driver of its database."""
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def sync_url(url: str | URL) -> URL:
    """`url` with a synchronous driver, for the command-line helpers only."""
    parsed = make_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def make_engine(url: str | URL) -> AsyncEngine:
    """The asyncio engine of the history store."""
    parsed = async_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Servers drop idle connections (MySQL wait_timeout): test and recycle them rather than fail a write.
        return create_async_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
    _require_file(parsed, url)
    engine = create_async_engine(parsed)
    # Events are synchronous: they go on the sync engine the asyncio engine wraps.
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    # The driver starts no transaction before a SELECT, so two queries would see two states of the
    # database; Sing begins every transaction itself (SQLAlchemy's documented recipe), writers with
    # BEGIN IMMEDIATE so that a transaction that reads first never fails to upgrade to a write.
    event.listen(engine.sync_engine, "connect", _take_over_sqlite_transactions)
    event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
    return engine


def is_mysql(bind: Any) -> bool:
    """Whether an engine or connection (synchronous or asyncio) talks to MySQL or MariaDB."""
    return bind.dialect.name in ("mysql", "mariadb")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """`engine` for transactions that write (same pool)."""
    return engine.execution_options(**{WRITE_OPTION: True})


def make_sync_engine(url: str | URL, pool_size: int = 5) -> Engine:
    """A synchronous engine: for the history store's queries (run on threads), `upgrade` and the alembic
    command line."""
    parsed = sync_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=3600, pool_size=pool_size)
    _require_file(parsed, url)
    engine = create_engine(parsed, pool_size=pool_size)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "connect", _take_over_sqlite_transactions)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _require_file(parsed: URL, given: str | URL) -> None:
    if parsed.database in (None, "", ":memory:"):
        # Every pooled connection would get its own empty in-memory database.
        raise ValueError(f"the history database needs a file, got {given!s}")


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers and the writer do not block each other. NORMAL: with WAL, a crash of the process
        # loses nothing; only an OS crash can lose the last commits, which is acceptable for history.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Purges and other processes (a CLI) also write; wait for their lock rather than fail.
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        # 32 MiB of page cache (SQLite's default is 2 MiB): the task table's seven indexes outgrow 2 MiB
        # after some 10,000 tasks, and every insert then reads index pages back from the file.
        cursor.execute("PRAGMA cache_size=-32768")
    finally:
        cursor.close()


def _take_over_sqlite_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin_sqlite_transaction(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config() -> Config:
    # Imported here: the history writer process never migrates, and starts faster without alembic.
    from alembic.config import Config

    return Config(str(ALEMBIC_INI))


def migrate(connection: Connection) -> None:
    """Upgrade the schema to the newest revision on `connection` (a no-op when already there).

    `connection` is synchronous: from the asyncio engine, call it as ``await conn.run_sync(migrate)``."""
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    # MySQL commits each DDL statement at once, so the transaction does not keep two backends starting
    # on an empty database from creating the same tables; a named lock does.
    locked = is_mysql(connection)
    if locked and connection.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATION_LOCK}', 60)").scalar() != 1:
        raise TimeoutError("another process has been upgrading the history schema for 60 s")
    try:
        command.upgrade(config, "head")
    finally:
        if locked:
            connection.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATION_LOCK}')")


async def migrate_engine(engine: AsyncEngine) -> None:
    """Upgrade the schema through the asyncio engine, in one transaction."""
    async with writer(engine).begin() as connection:
        await connection.run_sync(migrate)


def upgrade(url: str | URL) -> None:
    """Synchronous schema upgrade, for the command line."""
    engine = make_sync_engine(url)
    try:
        with engine.begin() as connection:
            migrate(connection)
    finally:
        engine.dispose()
