"""The HTTP API: Singularity's paths under /api and {base_path}/api, errors as {code, message}."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ApiError
from ..runtime import Runtime
from ..settings import Settings, SettingsError
from ..state.store import StateUnavailable, TooLarge
from ..state.zookeeper import Fenced
from . import cluster, deploys, history, logs, requests, sandbox, tasks
from .forwarding import LeaderForwarder
from .responses import error_response, json_response

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return f"body: malformed JSON ({err.get('ctx', {}).get('error', 'cannot parse')})"
        if kind == "missing" and not loc:
            return "body: a JSON body is required"
        # Drop pydantic's union branch names (e.g. "function-after[...]") from the location.
        loc = [p for p in loc if not p.startswith(("function-", "json-or-python", "nullable"))]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if ": " in msg and not loc:
            parts.append(msg)
        else:
            parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    return "; ".join(dict.fromkeys(parts))


def _not_json(request: Request, exc: RequestValidationError) -> ApiError | None:
    """415 for a body sent with a Content-Type other than JSON (curl -d sends a form's): it is never read
    as JSON, and the body's error would otherwise blame the body itself."""
    content_type = request.headers.get("content-type")
    if content_type is None or "json" in content_type.split(";")[0].lower():
        return None
    if not any(err.get("loc", ())[:1] == ("body",) for err in exc.errors()):
        return None
    return ApiError(415, f"Content-Type: the body must be JSON, sent with 'Content-Type: application/json' "
                         f"(this request says {content_type!r})")


class BodyLimit:
    """Refuse bodies over the configured size: at once when Content-Length says so, else (a chunked body)
    as soon as the bytes read pass the limit. The body is read here, whole, before the app sees it: an
    error raised while the app reads it would reach the caller as whatever that reader makes of it (a
    500, or FastAPI's "error parsing the body"), not as this 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before it finished sending
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()  # then only a disconnect, which streaming answers wait for

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(ApiError(413, f"body: larger than {self.limit} bytes"))(scope, receive, send)


class HeadAsGet:
    """HEAD on a GET resource answers as GET does, without the body (Singularity's Jersey does; FastAPI
    routes answer 405). Placed outside the forwarding, so a standby forwards it as the GET it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def api_router() -> APIRouter:
    router = APIRouter()
    for module in (requests, deploys, tasks, history, sandbox, logs, cluster):
        router.include_router(module.router)
    return router


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    rt = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await rt.start()
        except SettingsError as exc:
            app.state.settings_error = exc  # said in one line by `sing` once the server has stopped
            raise
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="Sing", version="0.1.0", lifespan=lifespan, openapi_url="/api/openapi.json",
                  docs_url="/api/docs", redoc_url=None,
                  description="Singularity-compatible API for requests, deploys, tasks and their history.")
    app.state.runtime = rt
    rt.app = app
    router = api_router()
    app.include_router(router, prefix="/api")
    if settings.base_path:
        app.include_router(router, prefix=f"{settings.base_path}/api", include_in_schema=False)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if (refused := _not_json(request, exc)) is not None:
            return error_response(refused)
        return error_response(ApiError(400, _validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return json_response({"code": exc.status_code, "message": message}, exc.status_code)

    # A middleware rather than an Exception handler: Starlette re-raises after such a handler's response,
    # and the server then drops the connection, which a keep-alive client sees as a reset on its next call.
    @app.middleware("http")
    async def _unexpected(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            return await call_next(request)
        except Fenced as exc:
            # Refused before it reached ZooKeeper, or by the fence's check in the change's one multi
            # (Runtime.change; when a large change is saved in parts, only a refusal of its first part
            # comes as Fenced): none of it was saved, so sending it again cannot make it twice.
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return json_response({"code": 503, "message": f"{exc}: nothing of this change was saved; send it again "
                                  "(it then goes to the leader)"}, 503)
        except TooLarge as exc:
            # An object too large for ZooKeeper, found as the change saved it: nothing of it was saved (the
            # scheduler's memory had it, and its leader gave up the lead to start again from what is saved).
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return json_response({"code": 413, "message": f"this change is too large to be saved ({exc}); nothing "
                                  "of it was saved"}, 413)
        except StateUnavailable as exc:
            # ZooKeeper went away during the call (this backend then stops leading): the caller must
            # learn that the change may not have been made, and that retrying is the way on.
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return json_response({"code": 503, "message": f"the state store is not answering ({exc}); this change "
                                  "may or may not have been saved: check, then retry"}, 503)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            return json_response({"code": 500, "message": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    app.middleware("http")(LeaderForwarder())
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(HeadAsGet)
    return app


