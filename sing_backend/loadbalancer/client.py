"""Async client for Baragon's request API, as Singularity's scheduler uses it.

`base_url` is Baragon's API root (e.g. `http://lb:8080/baragon/v2`). Every call is bounded:
each attempt gets `timeout` seconds end to end, and a call makes at most `retries + 1` attempts,
so the worst case is `(retries + 1) * timeout + retries * retry_delay`. Retrying is safe because
Baragon treats a re-posted request id as the same request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from .models import ALREADY_ENQUEUED, BaragonRequest, BaragonRequestState, BaragonResponse


class LoadBalancerError(Exception):
    """The load balancer could not be reached or gave no usable answer.

    `status_code` is the HTTP status when there was one (None for timeouts and connection errors);
    a 4xx means the request itself was refused, anything else may succeed when tried again.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class BaragonClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 2.0,
        retries: int = 1,
        retry_delay: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def __aenter__(self) -> BaragonClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(self, request: BaragonRequest | Mapping[str, Any]) -> dict[str, Any]:
        """POST a BaragonRequest; returns its BaragonResponse (usually WAITING at first).

        Re-posting a known id returns that request's state. If the id is known with different
        content Baragon answers FAILED "already enqueued"; like Singularity, this then returns the
        state of the request that owns the id rather than a failure that never happened.
        """
        body = request.wire() if isinstance(request, BaragonRequest) else dict(request)
        response = await self._send("POST", "/request", json=body)
        if response.status_code != 200:
            raise _http_error("POST", response)
        result = _parse(response)
        if result["loadBalancerState"] == BaragonRequestState.FAILED and ALREADY_ENQUEUED in result.get("message", ""):
            existing = await self.status(result["loadBalancerRequestId"])
            if existing is not None:
                return existing
        return result

    async def status(self, lb_request_id: str) -> dict[str, Any] | None:
        """The request's BaragonResponse, or None if the load balancer does not know the id."""
        response = await self._send("GET", f"/request/{lb_request_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _http_error("GET", response)
        return _parse(response)

    async def cancel(self, lb_request_id: str) -> dict[str, Any]:
        """Cancel a queued request; returns its state afterwards (CANCELED for an unknown id, as Baragon does)."""
        response = await self._send("DELETE", f"/request/{lb_request_id}")
        if response.status_code == 404:
            return BaragonResponse(
                loadBalancerRequestId=lb_request_id,
                loadBalancerState=BaragonRequestState.CANCELED,
                message=f"Request {lb_request_id} does not exist",
            ).wire()
        if response.status_code != 200:
            raise _http_error("DELETE", response)
        return _parse(response)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last: LoadBalancerError | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._retry_delay)
            try:
                # httpx's timeout bounds each phase (connect, each read); this bounds the whole attempt.
                async with asyncio.timeout(self._timeout):
                    response = await self._http.request(method, path, **kwargs)
            except (TimeoutError, httpx.TimeoutException):
                last = LoadBalancerError(f"{method} {path} timed out after {self._timeout:g}s")
                continue
            except httpx.HTTPError as exc:
                last = LoadBalancerError(f"{method} {path} failed: {type(exc).__name__}: {exc}")
                continue
            if response.status_code >= 500:
                last = _http_error(method, response)
                continue
            return response
        assert last is not None
        raise last


def _http_error(method: str, response: httpx.Response) -> LoadBalancerError:
    return LoadBalancerError(
        f"{method} {response.request.url.path} returned {response.status_code}: {response.text[:500]}",
        status_code=response.status_code,
    )


def _parse(response: httpx.Response) -> dict[str, Any]:
    try:
        return BaragonResponse.model_validate_json(response.content).wire()
    except ValidationError as exc:
        raise LoadBalancerError(
            f"{response.request.method} {response.request.url.path} returned no BaragonResponse: "
            f"{response.text[:200]!r}",
            status_code=response.status_code,
        ) from exc
