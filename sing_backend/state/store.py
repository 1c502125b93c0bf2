"""The state-store contract: live state as JSON documents in named collections.

Collections map to ZooKeeper paths in production (`/{collection}/{key}`) and to one SQLite table in
local mode. Writes inside `batch()` land together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

Doc = dict[str, Any]


class StateUnavailable(TimeoutError):
    """The state store could not be reached in time. A write that raises this may or may not have been
    saved (its answer was lost, or it is still queued for a server that comes back)."""


class TooLarge(ValueError):
    """A batch too large for the store to save at once (see `batch`): nothing of it was saved."""


class Gone(LookupError):
    """`take` found no document to remove: another writer removed it first."""


class StateStore(Protocol):
    def load(self, collection: str) -> dict[str, Doc]: ...

    def put(self, collection: str, key: str, doc: Doc) -> None: ...

    def delete(self, collection: str, key: str) -> None: ...

    def take(self, collection: str, key: str) -> None:
        """Delete a document that must be there: if it is gone, raise Gone, and a batch that took it
        writes nothing. Two writers that each take the same document in a batch never both commit."""
        ...

    @contextmanager
    def batch(self, split_if_too_large: bool = False) -> Iterator[None]:
        """Writes inside land together or not at all. A batch too large for the store to take at once
        is refused (TooLarge), unless `split_if_too_large`: it is then saved in parts, in order, and
        a failure part-way leaves the parts before it saved (the error says so)."""
        ...

    def close(self) -> None: ...
