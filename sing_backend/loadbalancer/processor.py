"""Baragon's request queue for one local nginx: requests are applied one at a time, in arrival order.

Like Baragon, a POST only enqueues (the response says WAITING) and callers poll by request id;
re-posting a known id returns that request's current state instead of applying it twice.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .models import (
    ALREADY_ENQUEUED,
    BaragonRequest,
    BaragonRequestState,
    BaragonResponse,
    BaragonService,
    RequestAction,
    UpstreamInfo,
)
from .nginx_adapter import NginxConfigurator, NginxError
from .render import ServiceFiles, render_service

# The service id names an nginx upstream and two files matched by a `*.conf` glob (which skips
# names starting with a dot), so it is held to a narrower set than Baragon's own id rule.
SERVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
SUPPORTED_ACTIONS = (RequestAction.UPDATE, RequestAction.DELETE, RequestAction.RELOAD)


@dataclass
class ServiceRecord:
    service: BaragonService
    upstreams: dict[str, UpstreamInfo] = field(default_factory=dict)


@dataclass
class _Entry:
    request: BaragonRequest
    response: BaragonResponse
    started: bool = False


class BaragonProcessor:
    def __init__(self, nginx: NginxConfigurator, max_history: int = 10_000) -> None:
        self._nginx = nginx
        self._max_history = max_history
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._queue: deque[_Entry] = deque()
        self._services: dict[str, ServiceRecord] = {}
        self._drainer: asyncio.Task[None] | None = None

    @property
    def services(self) -> Mapping[str, ServiceRecord]:
        """What nginx currently serves, by service id (committed only after a successful reload)."""
        return MappingProxyType(self._services)

    def submit(self, request: BaragonRequest) -> BaragonResponse:
        request_id = request.loadBalancerRequestId
        known = self._entries.get(request_id)
        if known is not None:
            if known.request.wire() == request.wire():
                return known.response
            return _response(request_id, BaragonRequestState.FAILED, f"Request {request_id} {ALREADY_ENQUEUED}")
        entry = _Entry(request, _response(request_id, BaragonRequestState.WAITING, "Queued"))
        self._entries[request_id] = entry
        self._queue.append(entry)
        self._forget_old()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return entry.response

    def response(self, request_id: str) -> BaragonResponse | None:
        entry = self._entries.get(request_id)
        return entry.response if entry else None

    def cancel(self, request_id: str) -> BaragonResponse | None:
        """Cancel a request that is still queued; one being applied or done keeps its state."""
        entry = self._entries.get(request_id)
        if entry is None:
            return None
        if not entry.started and entry.response.loadBalancerState == BaragonRequestState.WAITING:
            entry.response = _response(request_id, BaragonRequestState.CANCELED, "Canceled before it was applied")
        return entry.response

    async def close(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            try:
                await self._drainer
            except asyncio.CancelledError:
                pass

    async def _drain(self) -> None:
        while self._queue:
            entry = self._queue.popleft()
            if entry.response.loadBalancerState != BaragonRequestState.WAITING:
                continue  # canceled while queued
            entry.started = True
            try:
                entry.response = await self._apply(entry.request)
            except Exception as exc:  # a bug here must not leave the request WAITING forever
                entry.response = _response(
                    entry.request.loadBalancerRequestId, BaragonRequestState.FAILED, f"{type(exc).__name__}: {exc}"
                )

    async def _apply(self, request: BaragonRequest) -> BaragonResponse:
        request_id = request.loadBalancerRequestId
        service = request.loadBalancerService
        service_id = service.serviceId
        action = request.effective_action

        def result(state: BaragonRequestState, message: str) -> BaragonResponse:
            return _response(request_id, state, message)

        invalid = _invalid_reason(request, self._services)
        if invalid:
            return result(BaragonRequestState.INVALID_REQUEST_NOOP, invalid)

        changes: dict[str, ServiceFiles | None] = {}
        record: ServiceRecord | None = None
        if action == RequestAction.UPDATE:
            record = self._updated_record(request)
            changes[service_id] = render_service(service, record.upstreams.values())
        elif action == RequestAction.DELETE:
            if service_id not in self._services:
                return result(BaragonRequestState.SUCCESS, f"Service {service_id} is not registered; nothing to remove")
            changes[service_id] = None
        try:
            await self._nginx.apply(changes)
        except NginxError as exc:
            return result(BaragonRequestState.FAILED, str(exc))

        if action == RequestAction.UPDATE:
            assert record is not None
            self._services[service_id] = record
            return result(BaragonRequestState.SUCCESS, f"{service_id}: {len(record.upstreams)} upstream(s)")
        if action == RequestAction.DELETE:
            del self._services[service_id]
            return result(BaragonRequestState.SUCCESS, f"{service_id}: removed")
        return result(BaragonRequestState.SUCCESS, "Configuration reloaded")

    def _updated_record(self, request: BaragonRequest) -> ServiceRecord:
        current = self._services.get(request.loadBalancerService.serviceId)
        if request.replaceUpstreams:
            upstreams: dict[str, UpstreamInfo] = {}
        else:
            upstreams = dict(current.upstreams) if current else {}
            for gone in request.removeUpstreams:
                upstreams.pop(gone.upstream, None)  # removing an unknown upstream is not an error
        for added in request.replaceUpstreams or request.addUpstreams:
            # Baragon stamps upstreams that name no request with the request that added them.
            upstreams[added.upstream] = added.model_copy(
                update={"requestId": added.requestId or request.loadBalancerRequestId}
            )
        return ServiceRecord(service=request.loadBalancerService, upstreams=upstreams)

    def _forget_old(self) -> None:
        while len(self._entries) > self._max_history:
            oldest_id, oldest = next(iter(self._entries.items()))
            if oldest.response.loadBalancerState == BaragonRequestState.WAITING:
                return
            del self._entries[oldest_id]


def _invalid_reason(request: BaragonRequest, services: Mapping[str, ServiceRecord]) -> str | None:
    """Why a request cannot be applied at all (Baragon's INVALID_REQUEST_NOOP), or None."""
    service = request.loadBalancerService
    action = request.effective_action
    if action not in SUPPORTED_ACTIONS:
        return f"Action {action} is not supported by this load balancer"
    if not SERVICE_ID_PATTERN.match(service.serviceId):
        return f"Service id {service.serviceId!r} may only contain letters, digits, '_', '-' and '.'"
    if action != RequestAction.UPDATE:
        return None
    if request.replaceUpstreams and (request.addUpstreams or request.removeUpstreams):
        return "replaceUpstreams cannot be combined with addUpstreams or removeUpstreams"
    for path in service.all_paths:
        if not path.startswith("/"):
            return f"Base path {path!r} must start with '/'"
        for other_id, other in services.items():
            if other_id != service.serviceId and path in other.service.all_paths:
                return f"Base path {path} is already in use by service {other_id}"
    return None


def _response(request_id: str, state: BaragonRequestState, message: str) -> BaragonResponse:
    return BaragonResponse(loadBalancerRequestId=request_id, loadBalancerState=state, message=message)
