"""Engine creation and schema migrations for the history database.

The store drives a synchronous SQLAlchemy engine from worker threads: SQLAlchemy's asyncio layer needs
greenlet, which the project does not ship, and the production driver (pymysql) is synchronous anyway.
Configured URLs may still name an asyncio driver (`sqlite+aiosqlite://…`); it is mapped to the
synchronous driver of the same database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

VERSION_TABLE = "sing_history_version"  # not alembic_version: the database may hold other schemas too
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
SQLITE_BUSY_TIMEOUT_MS = 5000

_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "mysql+aiomysql": "mysql+pymysql",
    "mysql+asyncmy": "mysql+pymysql",
    "mariadb+aiomysql": "mariadb+pymysql",
    "mariadb+asyncmy": "mariadb+pymysql",
}


def sync_url(url: str | URL) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def make_engine(url: str | URL) -> Engine:
    parsed = sync_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Servers drop idle connections (MySQL wait_timeout): test and recycle them rather than fail a write.
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=3600)
    if parsed.database in (None, "", ":memory:"):
        # Every pooled connection would get its own empty in-memory database.
        raise ValueError(f"the history database needs a file, got {url!s}")
    engine = create_engine(parsed)
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers and the writer do not block each other. NORMAL: with WAL, a crash of the process
        # loses nothing; only an OS crash can lose the last commits, which is acceptable for history.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Purges and other processes (a CLI) also write; wait for their lock rather than fail.
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    finally:
        cursor.close()


def alembic_config() -> Config:
    return Config(str(ALEMBIC_INI))


def migrate(connection: Connection) -> None:
    """Upgrade the schema to the newest revision on `connection` (a no-op when already there)."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade(url: str | URL) -> None:
    """Synchronous schema upgrade, for the command line."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            migrate(connection)
    finally:
        engine.dispose()
