"""Async client for Sing's (Singularity-compatible) REST API.

This module is the TUI's only door to the backend and deliberately imports nothing from Textual, so
it can be tested, benchmarked and reused on its own (a test enforces that). Every call either returns
decoded JSON or raises `ApiError` (the server answered with an error; its message is kept) or
`Unreachable` (no answer at all).

It may be given several backends (a leader and its standbys, which forward to the leader): it uses one
at a time, and when that one does not answer it moves on to the next (see `SingClient.failover`).
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

DEFAULT_URL = "http://127.0.0.1:7099"
# Bodies larger than this are decompressed and parsed in a thread, so typing stays responsive.
_OFF_LOOP_BYTES = 256 * 1024

Json = Any
T = TypeVar("T")
# What the dashboard counts as a failure. TASK_KILLED is left out: the history does not say why a task
# was killed (an operator, a scale-down, a bounce or a failed health check all look alike).
FAILURE_STATUSES = ("TASK_FAILED", "TASK_LOST", "TASK_ERROR")


class ClientError(Exception):
    """Base of the errors the client raises; `str()` is what an operator should read."""


class Unreachable(ClientError):
    """The backend did not answer (refused, timed out, connection dropped). `connected` is False when no
    connection was made at all, so the request surely did not reach it."""

    def __init__(self, url: str, reason: str, *, connected: bool = True, message: str = "") -> None:
        super().__init__(message or f"backend unreachable at {url}: {reason}")
        self.url = url
        self.reason = reason
        self.connected = connected

    @classmethod
    def everywhere(cls, failures: dict[str, Unreachable]) -> Unreachable:
        """None of several backends (the keys) answered: one error naming each and why."""
        reasons = "; ".join(f"{host_port(base)} {f.reason}" for base, f in failures.items())
        first = next(iter(failures.values()))
        return cls(first.url, reasons, connected=any(f.connected for f in failures.values()),
                   message=f"every backend is unreachable: {reasons}")


@dataclass(frozen=True)
class Failover:
    """The client stopped using `from_url` (it did not answer: `reason`) and uses `to_url` instead."""

    from_url: str
    to_url: str
    reason: str


class Queued(ClientError):
    """A standby queued the write for the leader (202: no leader applied it in time); the next leader
    applies it once. Not an error, and not to be sent again."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ApiError(ClientError):
    """The backend answered with an error; `message` is the server's own message."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.method = method
        self.path = path

    @property
    def not_found(self) -> bool:
        return self.status == 404


def _q(part: str) -> str:
    """One path segment, escaped (ids are validated by the backend, but never trust them in a URL)."""
    return quote(part, safe="")


def _decode(raw: bytes, encoding: str) -> Any:
    if encoding == "gzip":
        raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")  # not JSON (a proxy's error page): keep the text


def _error_message(status: int, body: Any) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return f"HTTP {status}"


def host_port(url: str) -> str:
    """A backend's URL as the top bar shows it."""
    return url.removeprefix("http://").removeprefix("https://")


def _reason(exc: httpx.HTTPError) -> str:
    """A short cause an operator recognises, from the OS error under httpx's wrappers."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection dropped"
    return str(exc) or type(exc).__name__


class SingClient:
    """A keep-alive connection pool to one or several Sing backends; all methods are coroutines.

    With several backends, requests go to one (`base_url`) until it stops answering (refused, timed out,
    dropped: not an HTTP error, which is an answer); then the same request goes to the next ones in turn,
    and the first that answers is used from then on (`failover` says from which and why). A write is sent
    to another backend only if it surely did not reach the silent one (no connection was made): sent twice,
    a run or a deploy would happen twice."""

    def __init__(self, base_url: str | Sequence[str] = DEFAULT_URL, *, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("SingClient needs at least one backend URL")
        self.backends = tuple(url.rstrip("/") for url in urls)
        self._current = 0
        self.failover: Failover | None = None  # the last move to another backend
        # One pool for every backend (httpx keeps connections per host), so requests name the full URL.
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport,
                                       headers={"Accept-Encoding": "gzip", "User-Agent": "sing-tui"})
        self._etags: dict[str, tuple[str, Json]] = {}
        self._bodies: dict[str, tuple[bytes, Json]] = {}

    @property
    def base_url(self) -> str:
        """The backend in use."""
        return self.backends[self._current]

    def serves(self, url: str) -> bool:
        """Whether `url` is on one of the backends (not, say, a presigned URL of the log store)."""
        return any(url == base or url.startswith(f"{base}/") for base in self.backends)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> SingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- fail-over
    async def _on_any(self, method: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(base_url)` on the backend in use, and while backends do not answer, on the next ones
        in turn. When none answers, the one in use stays in use (the next poll starts there again)."""
        start = self._current
        failures: dict[str, Unreachable] = {}  # by backend
        for step in range(len(self.backends)):
            index = (start + step) % len(self.backends)
            base = self.backends[index]
            try:
                result = await attempt(base)
            except Unreachable as exc:
                failures[base] = exc
                if method != "GET" and exc.connected:
                    raise  # it may have reached the backend: not sent again
                # Another backend's ETags are its own: a 304 against them would hand back this one's data.
                self._etags.clear()
                continue
            if index != self._current:
                self._move_to(index, failures)
            return result
        if len(failures) == 1:
            raise next(iter(failures.values()))
        raise Unreachable.everywhere(failures)

    def _move_to(self, index: int, failures: dict[str, Unreachable]) -> None:
        old = self.base_url
        self._current = index
        reason = failures[old].reason if old in failures else "it did not answer"
        self.failover = Failover(old, self.base_url, reason)

    # ---- transport
    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   body: Json = None, cache: bool = False) -> Json:
        """One API call. `cache=True` sends the last ETag so an unchanged list costs a 304, not a body."""
        data, _ = await self._call(method, path, params=params, body=body, cache=cache)
        return data

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Json = None, cache: bool = False) -> tuple[Json, httpx.Headers]:
        return await self._on_any(method, lambda base: self._call_at(base, method, path, params=params,
                                                                      body=body, cache=cache))

    async def _call_at(self, base: str, method: str, path: str, *, params: dict[str, Any] | None,
                       body: Json, cache: bool) -> tuple[Json, httpx.Headers]:
        headers: dict[str, str] = {}
        key = f"{path}?{sorted((params or {}).items())}"
        if cache and key in self._etags:
            headers["If-None-Match"] = self._etags[key][0]
        content = orjson.dumps(body) if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            # Read the raw (maybe gzipped) bytes: a big list is decompressed and parsed off the UI's loop.
            async with self._http.stream(method, f"{base}/api{path}", params=_clean(params), content=content,
                                         headers=headers) as resp:
                try:
                    raw = b"".join([chunk async for chunk in resp.aiter_raw()])
                    encoding = resp.headers.get("content-encoding", "")
                except httpx.StreamConsumed:  # a response built in memory (httpx.MockTransport): decoded
                    raw, encoding = resp.content, ""
        except httpx.HTTPError as exc:
            raise _unreachable(base, exc) from exc
        if resp.status_code == 304 and key in self._etags:
            return self._etags[key][1], resp.headers
        if cache and resp.status_code == 200 and key in self._bodies and self._bodies[key][0] == raw:
            # The backend serves an unchanged list as the very same bytes: skip the parse, and hand back
            # the same object so the caller can tell nothing changed (`is`).
            return self._bodies[key][1], resp.headers
        if len(raw) > _OFF_LOOP_BYTES:
            data = await asyncio.to_thread(_decode, raw, encoding)
        else:
            data = _decode(raw, encoding)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, _error_message(resp.status_code, data), method, path)
        if resp.status_code == 202 and isinstance(data, dict) and "queuedWrite" in data:
            raise Queued(data["queuedWrite"], f"queued for the leader as {data['queuedWrite']} (no leader right now); "
                                              "it is applied once a leader is elected")
        if cache:
            etag = resp.headers.get("etag")
            if etag:
                self._etags[key] = (etag, data)
            self._bodies[key] = (raw, data)
        return data, resp.headers

    async def get(self, route: str, /, **params: Any) -> Json:
        return await self.call("GET", route, params=params)

    # ---- cluster
    async def state(self) -> Json:
        return await self.get("/state")

    async def state_and_staleness(self) -> tuple[Json, bool]:
        """/api/state, and whether it is a standby's last snapshot: with no leader reachable, a standby
        answers reads itself and marks them stale (X-Sing-Stale)."""
        data, headers = await self._call("GET", "/state")
        return data, headers.get("x-sing-stale") == "true"

    async def agents(self) -> list[Json]:
        return await self.get("/agents")

    async def racks(self) -> list[Json]:
        return await self.get("/racks")

    async def agent_action(self, agent_id: str, action: str, message: str | None = None,
                           duration_ms: int | None = None) -> Json:
        """decommission | freeze | activate an agent (Singularity's MachineChangeRequest body)."""
        return await self.call("POST", f"/agents/agent/{_q(agent_id)}/{_machine_action(action)}",
                               body=_machine_change(message, duration_ms))

    async def rack_action(self, rack_id: str, action: str, message: str | None = None,
                          duration_ms: int | None = None) -> Json:
        return await self.call("POST", f"/racks/rack/{_q(rack_id)}/{_machine_action(action)}",
                               body=_machine_change(message, duration_ms))

    # ---- requests
    async def requests(self) -> list[Json]:
        return await self.call("GET", "/requests", cache=True)

    async def request(self, request_id: str) -> Json:
        return await self.get(f"/requests/request/{_q(request_id)}")

    async def save_request(self, request: Json) -> Json:
        return await self.call("POST", "/requests", body=request)

    async def scale(self, request_id: str, instances: int, message: str | None = None) -> Json:
        return await self.call("PUT", f"/requests/request/{_q(request_id)}/scale",
                               body=_action({"instances": instances}, message))

    async def pause(self, request_id: str, kill_tasks: bool = True, message: str | None = None) -> Json:
        return await self.call("POST", f"/requests/request/{_q(request_id)}/pause",
                               body=_action({"killTasks": kill_tasks}, message))

    async def unpause(self, request_id: str, message: str | None = None) -> Json:
        return await self.call("POST", f"/requests/request/{_q(request_id)}/unpause", body=_action({}, message))

    async def bounce(self, request_id: str, message: str | None = None) -> Json:
        return await self.call("POST", f"/requests/request/{_q(request_id)}/bounce", body=_action({}, message))

    async def exit_cooldown(self, request_id: str, message: str | None = None) -> Json:
        return await self.call("POST", f"/requests/request/{_q(request_id)}/exit-cooldown",
                               body=_action({}, message))

    async def run_now(self, request_id: str, args: list[str] | None = None, env: dict[str, str] | None = None,
                      run_id: str | None = None, message: str | None = None) -> Json:
        body: dict[str, Any] = {}
        if args:
            body["commandLineArgs"] = args
        if env:
            body["envOverrides"] = env
        if run_id:
            body["runId"] = run_id
        return await self.call("POST", f"/requests/request/{_q(request_id)}/run", body=_action(body, message))

    async def delete_request(self, request_id: str, message: str | None = None) -> Json:
        return await self.call("DELETE", f"/requests/request/{_q(request_id)}", body=_action({}, message))

    # ---- deploys
    async def deploy(self, deploy: Json, message: str | None = None) -> Json:
        return await self.call("POST", "/deploys", body=_action({"deploy": deploy}, message))

    async def cancel_deploy(self, request_id: str, deploy_id: str) -> Json:
        return await self.call("DELETE", f"/deploys/deploy/{_q(deploy_id)}/request/{_q(request_id)}")

    async def pending_deploys(self) -> list[Json]:
        return await self.get("/deploys/pending")

    # ---- tasks
    async def active_tasks(self) -> list[Json]:
        return await self.call("GET", "/tasks/active", cache=True)

    async def active_task_states(self) -> list[Json]:
        return await self.call("GET", "/tasks/active/states", cache=True)

    async def scheduled_tasks(self) -> list[Json]:
        return await self.get("/tasks/scheduled")

    async def scheduled_for_request(self, request_id: str) -> list[Json]:
        return await self.get(f"/tasks/scheduled/request/{_q(request_id)}")

    async def cleaning_tasks(self) -> list[Json]:
        return await self.get("/tasks/cleaning")

    async def task(self, task_id: str) -> Json:
        return await self.get(f"/tasks/task/{_q(task_id)}")

    async def kill_task(self, task_id: str, message: str | None = None) -> Json:
        return await self.call("DELETE", f"/tasks/task/{_q(task_id)}", body=_action({}, message))

    # ---- history
    async def task_history(self, task_id: str) -> Json:
        return await self.get(f"/history/task/{_q(task_id)}")

    async def request_task_history(self, request_id: str, *, count: int = 50, page: int = 1,
                                   last_task_status: str | None = None) -> list[Json]:
        return await self.get(f"/history/request/{_q(request_id)}/tasks", count=count, page=page,
                              lastTaskStatus=last_task_status)

    async def request_active_task_history(self, request_id: str) -> list[Json]:
        return await self.get(f"/history/request/{_q(request_id)}/tasks/active")

    async def deploy_history(self, request_id: str, *, count: int = 50) -> list[Json]:
        return await self.get(f"/history/request/{_q(request_id)}/deploys", count=count)

    async def request_history(self, request_id: str, *, count: int = 50) -> list[Json]:
        return await self.get(f"/history/request/{_q(request_id)}/requests", count=count)

    async def search_tasks(self, *, last_task_status: str | None = None, request_id: str | None = None,
                           count: int = 50, page: int = 1, order_direction: str = "DESC") -> list[Json]:
        """Singularity's global task search (`GET /api/history/tasks`): task id rows, newest first."""
        return await self.get("/history/tasks", lastTaskStatus=last_task_status, requestId=request_id,
                              count=count, page=page, orderDirection=order_direction)

    async def recent_failures(self, *, count: int = 20,
                              statuses: tuple[str, ...] = FAILURE_STATUSES) -> list[Json] | None:
        """Recently failed tasks across all requests, newest first, or None if the backend has no
        global task search (Singularity's `GET /api/history/tasks`). The search takes one status at a
        time, so this asks once per status, all at once, and merges by when each task last changed."""
        try:
            found = await asyncio.gather(*(self.search_tasks(last_task_status=status, count=count)
                                           for status in statuses))
        except ApiError as exc:
            if exc.status in (404, 405):
                return None
            raise
        seen: dict[str, Json] = {}
        for row in (r for rows in found for r in rows or ()):
            seen.setdefault(row.get("taskId", {}).get("id", ""), row)
        out = sorted(seen.values(), key=lambda t: t.get("updatedAt", 0), reverse=True)
        return out[:count]

    async def last_failed_task(self, request_id: str) -> Json | None:
        """The most recently failed (lost, errored) task of a request, from its task history."""
        found: list[Json] = []
        for status in FAILURE_STATUSES:
            found += await self.request_task_history(request_id, count=1, last_task_status=status)
        found.sort(key=lambda t: t.get("updatedAt", 0), reverse=True)
        return found[0] if found else None

    # ---- archived logs (Singularity's S3 log API)
    async def task_logs(self, task_id: str) -> list[Json]:
        """The archived (rotated, gzipped) log files of a task, newest first:
        `[{key, size, lastModified, getUrl, downloadUrl, startTime?, endTime?}]`."""
        return await self.get(f"/logs/task/{_q(task_id)}")

    async def download(self, url: str) -> bytes:
        """The bytes of one archived log file, as stored (usually gzip), from its `downloadUrl`: an
        absolute URL (the backend's `/api/logs/download?key=...`, which may redirect, or a presigned S3
        URL) or one relative to the backend (any of them). A `Content-Encoding` the server added is undone."""
        if not url.startswith(("http://", "https://")):
            return await self._on_any("GET", lambda base: self._download(f"{base}/{url.lstrip('/')}"))
        return await self._download(url)

    async def _download(self, url: str) -> bytes:
        try:
            async with self._http.stream("GET", url, follow_redirects=True) as resp:
                try:
                    raw = b"".join([chunk async for chunk in resp.aiter_raw()])
                    encoding = resp.headers.get("content-encoding", "")
                except httpx.StreamConsumed:  # a response built in memory (httpx.MockTransport): decoded
                    raw, encoding = resp.content, ""
        except httpx.HTTPError as exc:
            raise _unreachable(url.split("?", 1)[0], exc) from exc
        if resp.status_code >= 400:
            body: Any = raw.decode("utf-8", "replace")
            if resp.headers.get("content-type", "").startswith("application/json"):
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    pass
            raise ApiError(resp.status_code, _error_message(resp.status_code, body), "GET", url.split("?", 1)[0])
        if encoding == "gzip" and len(raw) > _OFF_LOOP_BYTES:
            return await asyncio.to_thread(zlib.decompress, raw, 16 + zlib.MAX_WBITS)
        if encoding == "gzip":
            return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        return raw

    # ---- sandbox
    async def browse(self, task_id: str, path: str | None = None) -> Json:
        return await self.get(f"/sandbox/{_q(task_id)}/browse", path=path)

    async def read(self, task_id: str, path: str, offset: int | None = None, length: int | None = None) -> Json:
        """Mesos-style read: without `offset` the answer is `{data: "", offset: <file size>}`."""
        return await self.get(f"/sandbox/{_q(task_id)}/read", path=path, offset=offset, length=length)


def _unreachable(url: str, exc: httpx.HTTPError) -> Unreachable:
    # Refused, unknown host, or no connection in time: the request never left this machine.
    connected = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    return Unreachable(url, _reason(exc), connected=connected)


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _action(body: dict[str, Any], message: str | None) -> dict[str, Any]:
    if message:
        body["message"] = message
    return body


MACHINE_ACTIONS = ("decommission", "freeze", "activate")


def _machine_action(action: str) -> str:
    if action not in MACHINE_ACTIONS:
        raise ValueError(f"unknown machine action {action!r}; one of {', '.join(MACHINE_ACTIONS)}")
    return action


def _machine_change(message: str | None, duration_ms: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if message:
        body["message"] = message
    if duration_ms:
        body["durationMillis"] = duration_ms
    return body
