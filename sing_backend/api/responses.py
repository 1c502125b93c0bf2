"""JSON responses: orjson bytes, `Content-Type: application/json` exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request, Response

from ..errors import ApiError


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


# Below this a compressed body is not worth the CPU.
_GZIP_MIN_BYTES = 4096


async def cached_list(request: Request, key: object, build: Callable[[], Any]) -> Response:
    """A list endpoint's body, serialised once per state version (and gzipped once, if asked for)."""
    cache = request.app.state.runtime.list_cache
    body = cache.body(key, lambda: orjson.dumps(build()))
    if len(body.raw) >= _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(await cache.gzipped(body), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(body.raw, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    return json_response({"code": exc.status, "message": exc.message}, exc.status)
