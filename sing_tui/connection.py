"""The backend connection as the operator sees it: live, or stale with the reason and the next retry;
and, with several backends, which one is in use and which one it replaced."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Connection:
    url: str
    ok: bool | None = None  # None until the first answer (or failure)
    error: str = ""
    failures: int = 0
    last_ok_at: float | None = None  # wall clock of the last good answer (what the stale data is from)
    retry_in: float = 0.0
    failed_over_from: str = ""  # the backend that stopped answering, when `url` took over from it

    def up(self, now: float | None = None) -> Connection:
        return replace(self, ok=True, error="", failures=0, last_ok_at=now or time.time(), retry_in=0.0)

    def moved(self, url: str, from_url: str) -> Connection:
        return replace(self, url=url, failed_over_from=from_url)

    def down(self, error: str, interval: float, max_backoff: float) -> Connection:
        failures = self.failures + 1
        return replace(self, ok=False, error=error, failures=failures,
                       retry_in=backoff(failures, interval, max_backoff))


def backoff(failures: int, interval: float, max_backoff: float) -> float:
    """Seconds to the next poll: the refresh interval while healthy, doubling per failure, capped."""
    if failures <= 0:
        return interval
    return min(max_backoff, interval * 2 ** (failures - 1))
