"""A subscribed framework and its event stream."""

from __future__ import annotations

import queue
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..executor.reactor import TimerHandle

# Unacknowledged updates are kept for retransmission, up to this many.
_UNACKED_KEPT = 100_000
# Mesos sends an unacknowledged status update again after 10 s, then doubling, up to 10 minutes.
FIRST_RETRY_SECONDS = 10.0
MAX_RETRY_SECONDS = 600.0


@dataclass
class Unacked:
    task_id: str
    event: dict[str, Any]
    due: float  # time.monotonic() of the next retransmission
    backoff: float


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
    # uuid -> a task's UPDATE sent and not acknowledged yet, in send order: one per task, as a Mesos
    # agent holds a task's next status update until the scheduler has acknowledged the one before (so a
    # scheduler never hears a task's updates out of order, even when they are sent again).
    unacked: OrderedDict[str, Unacked] = field(default_factory=OrderedDict)
    unacked_of_task: dict[str, str] = field(default_factory=dict)  # task id -> its uuid in unacked
    # task id -> its updates held behind the unacknowledged one, in order: (uuid, event)
    held: dict[str, deque[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    failover_timer: TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.subscription is not None

    def send(self, event: dict[str, Any]) -> None:
        if self.subscription is not None:
            self.subscription.send(event)

    def send_reliably(self, uuid: str, task_id: str, event: dict[str, Any], now: float, first_retry: float) -> None:
        """Send a task's update now if connected and none of the task's is unacknowledged (else hold it
        until they are), and keep it until acknowledged: sent again on re-subscribe, and after
        `first_retry` seconds without an acknowledgement, then after twice that, and so on."""
        if task_id in self.unacked_of_task:
            self.held.setdefault(task_id, deque()).append((uuid, event))
            return
        self.unacked_of_task[task_id] = uuid
        self.unacked[uuid] = Unacked(task_id, event, now + first_retry, first_retry)
        while len(self.unacked) > _UNACKED_KEPT:
            _, dropped = self.unacked.popitem(last=False)
            del self.unacked_of_task[dropped.task_id]
            self.held.pop(dropped.task_id, None)
        self.send(event)

    def acknowledged(self, uuid: str, now: float, first_retry: float) -> None:
        """The scheduler acknowledged an update: forget it, and send the task's next held one, if any."""
        item = self.unacked.pop(uuid, None)
        if item is None:
            return  # acknowledged twice, or never sent
        del self.unacked_of_task[item.task_id]
        waiting = self.held.get(item.task_id)
        if waiting:
            next_uuid, event = waiting.popleft()
            if not waiting:
                del self.held[item.task_id]
            self.send_reliably(next_uuid, item.task_id, event, now, first_retry)

    def send_unacked(self, now: float, first_retry: float, *, due_only: bool) -> int:
        """Send again the unacknowledged updates (only those due, or all of them, as on re-subscribe),
        in their order; returns how many were sent."""
        if self.subscription is None:
            return 0
        sent = 0
        for item in self.unacked.values():
            if due_only and item.due > now:
                continue
            self.subscription.send(item.event)
            item.backoff = min(item.backoff * 2, MAX_RETRY_SECONDS) if due_only else first_retry
            item.due = now + item.backoff
            sent += 1
        return sent

    def failover_timeout(self) -> float:
        try:
            return max(0.0, float(self.info.get("failover_timeout", 0) or 0))
        except (TypeError, ValueError):
            return 0.0
