"""JSON responses: orjson bytes, `Content-Type: application/json` exactly."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from ..errors import ApiError


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def raw_json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    return json_response({"code": exc.status, "message": exc.message}, exc.status)
