"""Shared pieces of the routers: the runtime, JSON bodies, query checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from ..errors import bad_request

if TYPE_CHECKING:
    from ..runtime import Runtime


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def page_args(count: int | None, page: int | None) -> tuple[int, int]:
    count = 100 if count is None else count
    page = 1 if page is None else page
    if count < 1 or count > 1000:
        raise bad_request("count: must be between 1 and 1000")
    if page < 1:
        raise bad_request("page: must be 1 or more")
    return count, page
