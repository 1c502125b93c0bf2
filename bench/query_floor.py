"""A history query that lists nothing, for measuring the floor of the query path: sent to a query process
by name, so it lives in a module the process can import (a benchmark runs as __main__, which it cannot)."""

from __future__ import annotations

from sqlalchemy import Connection


def nothing(_conn: Connection, _committed: int) -> None:
    """A query process's work minus any listing: only the snapshot's own SELECT runs."""
