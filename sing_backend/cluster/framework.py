"""A subscribed framework and its event stream."""

from __future__ import annotations

import queue
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..executor.reactor import TimerHandle

# Unacknowledged updates are kept for retransmission on re-subscribe, up to this many.
_UNACKED_KEPT = 100_000


class Subscription:
    """One SUBSCRIBE stream. Callers only enqueue; the HTTP handler thread owning the socket writes.

    So a call's 202 never waits on a slow stream, and events keep their order.
    """

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def send(self, event: dict[str, Any]) -> None:
        self._queue.put(orjson.dumps(event))

    def end(self) -> None:
        """Ask the writer to finish the stream (it then closes the connection)."""
        self._queue.put(None)

    def next(self, timeout: float) -> bytes | None:
        """The next encoded event or None for end-of-stream; raises queue.Empty on timeout."""
        return self._queue.get(timeout=timeout)

    def next_nowait(self) -> bytes | None:
        return self._queue.get_nowait()


@dataclass
class Framework:
    framework_id: str
    info: dict[str, Any]
    subscription: Subscription | None = None
    # The id of the stream the master last ended: see Master.handle_call.
    previous_stream_id: str | None = None
    suppressed: bool = False
    # agent_id -> time.monotonic() until which this framework declined that agent
    filters: dict[str, float] = field(default_factory=dict)
    # uuid -> UPDATE event, in send order
    unacked: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    failover_timer: TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.subscription is not None

    def send(self, event: dict[str, Any]) -> None:
        if self.subscription is not None:
            self.subscription.send(event)

    def send_reliably(self, uuid: str, event: dict[str, Any]) -> None:
        """Send now if connected, and keep it until acknowledged (re-sent on re-subscribe)."""
        self.unacked[uuid] = event
        while len(self.unacked) > _UNACKED_KEPT:
            self.unacked.popitem(last=False)
        self.send(event)

    def failover_timeout(self) -> float:
        try:
            return max(0.0, float(self.info.get("failover_timeout", 0) or 0))
        except (TypeError, ValueError):
            return 0.0
