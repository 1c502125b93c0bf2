"""Sends load-balancer requests (Baragon's request API) and polls them to a result, off the decision path.

The scheduler hands over a plain `LbOperation`; this driver submits it, polls until SUCCESS or a final
failure, retries what can be retried, and reports back with `on_lb_result`. Operations for one
request run in order, so an ADD and a later REMOVE of the same upstream never cross.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..loadbalancer import BaragonClient, LoadBalancerError

log = logging.getLogger(__name__)

_FINAL_FAILURES = {"FAILED", "CANCELED", "INVALID_REQUEST_NOOP", "UNKNOWN"}


@dataclass(slots=True)
class LbOperation:
    kind: str  # ADD, REMOVE, DELETE
    request_id: str
    lb_request_id: str
    body: dict[str, Any]
    task_ids: list[str] = field(default_factory=list)
    # REMOVE must eventually succeed (the task's kill waits on it): retried until then.
    retry_forever: bool = False


class LbDriver:
    def __init__(self, client: BaragonClient, on_result: Callable[[LbOperation, str, str], None],
                 poll_seconds: float = 0.1, max_wait_seconds: float = 60.0) -> None:
        self._client = client
        self._on_result = on_result
        self._poll = poll_seconds
        self._max_wait = max_wait_seconds
        self._queues: dict[str, asyncio.Queue[LbOperation]] = defaultdict(asyncio.Queue)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def submit(self, op: LbOperation) -> None:
        self._queues[op.request_id].put_nowait(op)
        worker = self._workers.get(op.request_id)
        if worker is None or worker.done():
            self._workers[op.request_id] = asyncio.get_running_loop().create_task(self._drain(op.request_id))

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._client.aclose()

    async def _drain(self, request_id: str) -> None:
        queue = self._queues[request_id]
        while not queue.empty():
            op = queue.get_nowait()
            state, message = await self._run(op)
            if not self._stopping:
                self._on_result(op, state, message)

    async def _run(self, op: LbOperation) -> tuple[str, str]:
        attempt = 1
        delay = 0.5
        while True:
            try:
                state, message = await self._submit_and_wait(op)
            except LoadBalancerError as exc:
                state, message = "FAILED", f"load balancer unreachable or refused the request: {exc}"
            if state == "SUCCESS" or not op.retry_forever or self._stopping:
                return state, message
            log.warning("load balancer %s for %s failed (%s); retrying", op.kind, op.request_id, message)
            attempt += 1
            op.lb_request_id = op.lb_request_id.rsplit("-", 1)[0] + f"-{attempt}"
            op.body["loadBalancerRequestId"] = op.lb_request_id
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _submit_and_wait(self, op: LbOperation) -> tuple[str, str]:
        response = await self._client.submit(op.body)
        deadline = asyncio.get_running_loop().time() + self._max_wait
        while True:
            state = str(response.get("loadBalancerState", "UNKNOWN"))
            message = str(response.get("message", ""))
            if state == "SUCCESS" or state in _FINAL_FAILURES:
                return state, message or state
            if asyncio.get_running_loop().time() > deadline:
                await self._client.cancel(op.lb_request_id)
                return "FAILED", f"no result within {self._max_wait:g} s"
            await asyncio.sleep(self._poll)
            found = await self._client.status(op.lb_request_id)
            if found is None:
                return "FAILED", f"the load balancer forgot request {op.lb_request_id}"
            response = found
