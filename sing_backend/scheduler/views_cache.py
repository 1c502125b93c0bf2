"""Cache of serialised list responses, built again whenever the scheduler's state changes (and kept, compressed
and tagged, when built again to the same bytes)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

_HASH_OFF_LOOP_BYTES = 256 * 1024


class Versioned(Protocol):
    version: int


@dataclass(slots=True)
class CachedBody:
    raw: bytes
    gzipped: bytes | None = None
    etag: str | None = None


class ListCache:
    def __init__(self, source: Versioned) -> None:
        self._source = source
        self._version = -1
        self._items: dict[Hashable, CachedBody] = {}
        self._previous: dict[Hashable, CachedBody] = {}  # the bodies of the version before

    def body(self, key: Hashable, build: Callable[[], bytes]) -> CachedBody:
        if self._source.version != self._version:
            self._previous, self._items = self._items, {}
            self._version = self._source.version
        found = self._items.get(key)
        if found is None:
            raw = build()
            # The version moves far more often than a given list (an offer is enough): a list built again
            # to the same bytes keeps its body, compressed and tagged already.
            old = self._previous.get(key)
            found = self._items[key] = old if old is not None and old.raw == raw else CachedBody(raw)
        return found

    async def gzipped(self, body: CachedBody) -> bytes:
        """Compressed once per content; zlib releases the GIL, so the event loop keeps going."""
        if body.gzipped is None:
            # mtime=0: the same list gives the same bytes on every backend and after a restart too.
            body.gzipped = await asyncio.to_thread(gzip.compress, body.raw, 1, mtime=0)
        return body.gzipped

    async def etag(self, body: CachedBody) -> str:
        """A weak ETag of the body's content (the same for both encodings), hashed once per content."""
        if body.etag is None:
            def digest() -> str:
                return hashlib.blake2b(body.raw, digest_size=16).hexdigest()
            # A big list off the loop (hashlib releases the GIL); a small one is quicker hashed here.
            hexdigest = await asyncio.to_thread(digest) if len(body.raw) > _HASH_OFF_LOOP_BYTES else digest()
            body.etag = f'W/"{hexdigest}"'
        return body.etag
