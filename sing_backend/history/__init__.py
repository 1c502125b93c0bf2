"""History of requests, deploys and tasks in SQL (SQLite locally, MySQL/MariaDB in production)."""

from __future__ import annotations

from .db import upgrade
from .store import MAX_COUNT, HistoryStore

__all__ = ["MAX_COUNT", "HistoryStore", "upgrade"]
