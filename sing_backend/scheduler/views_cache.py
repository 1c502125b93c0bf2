"""Cache of serialised list responses, dropped whenever the scheduler's state changes."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol


class Versioned(Protocol):
    version: int


class ListCache:
    def __init__(self, source: Versioned) -> None:
        self._source = source
        self._version = -1
        self._items: dict[Hashable, bytes] = {}

    def get(self, key: Hashable) -> bytes | None:
        if self._source.version != self._version:
            self._items.clear()
            self._version = self._source.version
        return self._items.get(key)

    def put(self, key: Hashable, body: bytes) -> None:
        self._items[key] = body
