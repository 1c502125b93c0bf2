from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sing_backend.history import HistoryStore

from .helpers import history_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[HistoryStore]:
    opened = await HistoryStore.open(history_url(db_path))
    yield opened
    await opened.close()
