"""Sing's built-in load balancer: Baragon's request API (`/baragon/v2/request`) in front of a local nginx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from .models import BaragonRequest, BaragonRequestState, BaragonResponse
from .nginx_adapter import NginxConfigurator
from .processor import BaragonProcessor

API_PREFIX = "/baragon/v2"


def create_baragon_app(nginx: NginxConfigurator) -> FastAPI:
    """The app only drives `nginx`; starting and stopping that nginx stays with the caller."""
    processor = BaragonProcessor(nginx)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await processor.close()

    app = FastAPI(title="Sing load balancer", lifespan=lifespan)
    app.state.processor = processor
    router = APIRouter(prefix=f"{API_PREFIX}/request")

    @router.post("")
    async def enqueue(request: BaragonRequest) -> dict[str, Any]:
        return processor.submit(request).wire()

    @router.get("/{lb_request_id}")
    async def get_response(lb_request_id: str) -> Any:
        response = processor.response(lb_request_id)
        return response.wire() if response else _not_found(lb_request_id)

    @router.delete("/{lb_request_id}")
    async def cancel(lb_request_id: str) -> Any:
        response = processor.cancel(lb_request_id)
        return response.wire() if response else _not_found(lb_request_id)

    app.include_router(router)
    return app


def _not_found(lb_request_id: str) -> JSONResponse:
    # 404 for an unknown id, with the body Baragon answers a cancel of an unknown id with.
    body = BaragonResponse(
        loadBalancerRequestId=lb_request_id,
        loadBalancerState=BaragonRequestState.CANCELED,
        message=f"Request {lb_request_id} does not exist",
    )
    return JSONResponse(body.wire(), status_code=404)
