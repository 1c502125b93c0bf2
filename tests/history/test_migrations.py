from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from sing_backend.history import HistoryStore, db, upgrade
from sing_backend.history.models import Base

from .helpers import history_url

TABLES = {"request_history", "deploy_history", "task_history", "task_updates", "task_healthchecks", "history_writers"}


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as raw:
        return {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def versions(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        return [v for (v,) in raw.execute(f"SELECT version_num FROM {db.VERSION_TABLE}")]


async def test_open_creates_schema_and_reopen_is_a_no_op(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "..")  # alembic files are found from the package, not the cwd
    store = await HistoryStore.open(history_url(db_path))
    await store.add_request_event({"request": {"id": "r"}, "eventType": "CREATED", "createdAt": 1})
    await store.close()
    assert table_names(db_path) == TABLES | {db.VERSION_TABLE}
    assert versions(db_path) == ["0004"]

    again = await HistoryStore.open(history_url(db_path))
    try:
        assert len(await again.request_history("r")) == 1
    finally:
        await again.close()
    assert versions(db_path) == ["0004"]


def test_sync_upgrade_helper(db_path: Path) -> None:
    upgrade(history_url(db_path))
    upgrade(f"sqlite:///{db_path}")
    assert table_names(db_path) == TABLES | {db.VERSION_TABLE}
    assert versions(db_path) == ["0004"]


def test_migration_matches_the_models(db_path: Path) -> None:
    upgrade(history_url(db_path))
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


async def test_sqlite_settings(db_path: Path) -> None:
    engine = db.make_engine(history_url(db_path))
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        await engine.dispose()


def test_sync_engine_sqlite_settings(db_path: Path) -> None:
    engine = db.make_sync_engine(history_url(db_path))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


async def test_store_uses_the_asyncio_driver(store: HistoryStore) -> None:
    assert isinstance(store._engine, AsyncEngine)
    assert store._engine.url.drivername == "sqlite+aiosqlite"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError):
        db.make_engine("sqlite+aiosqlite://")
    with pytest.raises(ValueError):
        db.make_sync_engine("sqlite://")


def test_async_driver_names_map_to_sync_drivers() -> None:
    assert db.sync_url("sqlite+aiosqlite:////x/h.db").drivername == "sqlite+pysqlite"
    assert db.sync_url("mysql+aiomysql://u@h/sing").drivername == "mysql+pymysql"
    assert db.sync_url("mysql+pymysql://u@h/sing").drivername == "mysql+pymysql"


def test_plain_driver_names_map_to_asyncio_drivers() -> None:
    assert db.async_url("sqlite:////x/h.db").drivername == "sqlite+aiosqlite"
    assert db.async_url("sqlite+aiosqlite:////x/h.db").drivername == "sqlite+aiosqlite"
    assert db.async_url("mysql+pymysql://u@h/sing").drivername == "mysql+aiomysql"
    assert db.async_url("mysql+asyncmy://u@h/sing").drivername == "mysql+asyncmy"


def test_mysql_ddl_is_generated() -> None:
    # Offline mode renders the MySQL DDL without a server or driver: a check that the schema is portable.
    out = io.StringIO()
    config = db.alembic_config()
    config.output_buffer = out
    config.set_main_option("sqlalchemy.url", "mysql+pymysql://sing@localhost/sing")
    command.upgrade(config, "head", sql=True)
    ddl = out.getvalue()
    for table in TABLES:
        assert f"CREATE TABLE {table}" in ddl
    assert "MEDIUMBLOB" in ddl
    assert "BIGINT NOT NULL AUTO_INCREMENT" in ddl
    assert f"CREATE TABLE {db.VERSION_TABLE}" in ddl
    assert ddl.count("COLLATE utf8mb4_bin") == len(TABLES)


def test_package_ships_alembic_files() -> None:
    here = db.ALEMBIC_INI.parent
    assert db.ALEMBIC_INI.is_file()
    for path in ("migrations/__init__.py", "migrations/env.py", "migrations/script.py.mako"):
        assert (here / path).is_file()
    assert (here / "migrations/versions/__init__.py").is_file()
    assert list((here / "migrations/versions").glob("0001_*.py"))
