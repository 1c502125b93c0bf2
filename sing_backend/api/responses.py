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
    """A list endpoint's body, serialised once per state version (and gzipped once, if asked for). It
    carries an ETag of its content: a client sending it back in If-None-Match gets a 304 while the list
    is unchanged, even across state changes that leave it as it was."""
    cache = request.app.state.runtime.list_cache
    body = cache.body(key, lambda: orjson.dumps(build()))
    headers = {"ETag": await cache.etag(body), "Vary": "Accept-Encoding"}
    if _matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    if len(body.raw) >= _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(await cache.gzipped(body), media_type="application/json",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(body.raw, media_type="application/json", headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2): any listed tag, W/ or not, or `*`."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


def error_response(exc: ApiError) -> Response:
    return json_response({"code": exc.status, "message": exc.message}, exc.status)
