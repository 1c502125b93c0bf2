from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sing_backend.history import HistoryStore
from tests.servers import mysql_database

from .helpers import history_url

SQLITE_FILE = "history.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test of the store's behaviour on SQLite and on MySQL/MariaDB.

    Tests that open the SQLite file themselves (they ask for `db_path`) and the migration tests, which
    read SQLite's catalogue, stay on SQLite; test_mysql.py checks the schema on MySQL."""
    if "history_backend" not in metafunc.fixturenames:
        return
    sqlite_only = "db_path" in metafunc.fixturenames or metafunc.module.__name__.endswith(".test_migrations")
    metafunc.parametrize("history_backend", ["sqlite"] if sqlite_only else ["sqlite", "mysql"])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / SQLITE_FILE


@pytest.fixture
def history_db(history_backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty history database of the test's own."""
    if history_backend == "sqlite":
        yield history_url(tmp_path / SQLITE_FILE)
        return
    with mysql_database() as url:
        yield url


@pytest.fixture
async def store(history_db: str) -> AsyncIterator[HistoryStore]:
    opened = await HistoryStore.open(history_db)
    yield opened
    await opened.close()
