"""An agent's HTTP server: Mesos' files API over the agent's sandboxes, a small /state,
/monitor/statistics, and the v1 executor API (/api/v1/executor) for custom executors."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .calls import CallError, id_value
from .httpserver import TrackingHTTPServer
from .sandbox import AgentLayout
from .stream import pump, start_stream

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)

MAX_READ_LENGTH = 1024 * 1024
_DOWNLOAD_BLOCK = 64 * 1024
_MAX_CALL_BODY = 16 * 1024 * 1024
EXECUTOR_PATH = "/api/v1/executor"
# Executors ignore heartbeats; they only keep an idle stream's connection checked.
_EXECUTOR_HEARTBEAT_SECONDS = 15.0


class AgentHTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], *, agent: Agent) -> None:
        super().__init__(address, _AgentHandler)
        self.agent = agent

    @property
    def layout(self) -> AgentLayout:
        return self.agent.layout


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _AgentHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; don't wait 40 ms between
    server: AgentHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("agent %s: " + format, self.server.server_address, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        routes = {
            "/files/browse": self._browse,
            "/files/browse.json": self._browse,
            "/files/read": self._read,
            "/files/read.json": self._read,
            "/files/download": self._download,
            "/files/download.json": self._download,
            "/state": self._state,
            "/state.json": self._state,
            "/slave(1)/state": self._state,
            "/monitor/statistics": self._statistics,
            "/monitor/statistics.json": self._statistics,
            "/health": lambda _q: self._send_json(200, {"ok": True}),
        }
        route = routes.get(url.path)
        self._responded = False
        try:
            if route is None:
                raise _HTTPError(404, f"no such endpoint: {url.path}")
            route(query)
        except _HTTPError as exc:
            self._send_json(exc.status, {"message": exc.message})
        except FileNotFoundError as exc:  # deleted between the check and the open
            self._fail(404, f"{exc.filename} does not exist")
        except OSError as exc:
            self._fail(500, str(exc))

    def send_response(self, code: int, message: str | None = None) -> None:
        self._responded = True
        super().send_response(code, message)

    def _fail(self, status: int, message: str) -> None:
        if self._responded:
            raise ConnectionAbortedError(message)  # mid-body: all we can do is drop the connection
        self._send_json(status, {"message": message})

    # -- endpoints -----------------------------------------------------------------------------

    def _browse(self, query: dict[str, str]) -> None:
        raw, path = self._served_path(query)
        if path.is_dir():
            base = raw.rstrip("/")
            with os.scandir(path) as entries:
                listing = [_entry_json(f"{base}/{e.name}", e.stat(follow_symlinks=False)) for e in entries]
            listing.sort(key=lambda item: item["path"])
        else:
            listing = [_entry_json(raw, path.stat())]
        self._send_json(200, listing)

    def _read(self, query: dict[str, str]) -> None:
        raw, path = self._served_path(query)
        if path.is_dir():
            raise _HTTPError(400, f"{raw} is a directory")
        offset = _int_param(query, "offset", -1)
        length = _int_param(query, "length", MAX_READ_LENGTH)
        if offset < -1 or length < 0:
            raise _HTTPError(400, "offset must be >= -1 and length >= 0")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset == -1:
                # Mesos' way of asking "how big is it?": no data, offset = size.
                self._send_json(200, {"data": "", "offset": size})
                return
            f.seek(offset)
            chunk = f.read(min(length, MAX_READ_LENGTH))
        chunk = _trim_partial_utf8(chunk)
        self._send_json(
            200,
            {"data": chunk.decode("utf-8", errors="replace"), "offset": offset, "next_offset": offset + len(chunk)},
        )

    def _download(self, query: dict[str, str]) -> None:
        raw, path = self._served_path(query)
        if path.is_dir():
            raise _HTTPError(400, f"{raw} is a directory")
        with open(path, "rb") as f:
            # Serve the size seen now: a log still being written must not break Content-Length.
            remaining = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(remaining))
            self.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.end_headers()
            while remaining > 0:
                block = f.read(min(_DOWNLOAD_BLOCK, remaining))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)
        if remaining:
            self.close_connection = True  # the file shrank: we promised more bytes than we sent

    def _state(self, _query: dict[str, str]) -> None:
        self._send_json(200, self.server.agent.state_json())

    def _statistics(self, _query: dict[str, str]) -> None:
        self._send_json(200, self.server.agent.statistics_json())

    # -- the v1 executor API -------------------------------------------------------------------

    def do_POST(self) -> None:
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)  # exactly: the connection is kept alive for the next call
        if urlsplit(self.path).path != EXECUTOR_PATH:
            self._send_text(404, f"No such endpoint: {self.path}")
            return
        try:
            call = orjson.loads(body)
            if not isinstance(call, dict):
                raise CallError(400, "Expecting a JSON object")
            self._executor_call(call)
        except orjson.JSONDecodeError as exc:
            self._send_text(400, f"Failed to parse body as JSON: {exc}")
        except CallError as exc:
            self._send_text(exc.status, exc.message)

    def _executor_call(self, call: dict[str, Any]) -> None:
        agent = self.server.agent
        framework_id = id_value(call.get("framework_id"))
        executor_id = id_value(call.get("executor_id"))
        if not framework_id or not executor_id:
            raise CallError(400, "Expecting 'framework_id' and 'executor_id' to be present")
        kind = call.get("type")
        if kind == "SUBSCRIBE":
            subscription = agent.executor_subscribe(framework_id, executor_id)
            start_stream(self, {})
            try:
                pump(self, subscription, _EXECUTOR_HEARTBEAT_SECONDS)
            except OSError:
                log.debug("executor %s went away", executor_id)
            return
        if kind == "UPDATE":
            status = (call.get("update") or {}).get("status")
            if not isinstance(status, dict):
                raise CallError(400, "Expecting 'update.status' to be present")
            agent.executor_update(framework_id, executor_id, status)
        elif kind == "MESSAGE":
            data = (call.get("message") or {}).get("data")
            if not isinstance(data, str):
                raise CallError(400, "Expecting 'message.data' to be present")
            agent.executor_message(framework_id, executor_id, data)
        else:
            raise CallError(400, f"Unsupported executor call type {kind!r}")
        # Like Mesos: 202 and an empty body, on a connection pymesos keeps for its next call.
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_CALL_BODY:
            self.close_connection = True
            self._send_text(411 if length < 0 else 413, "A Content-Length within limits is required")
            return None
        return length

    def _send_text(self, status: int, message: str) -> None:
        data = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- helpers -------------------------------------------------------------------------------

    def _served_path(self, query: dict[str, str]) -> tuple[str, Path]:
        raw = query.get("path")
        if not raw:
            raise _HTTPError(400, "missing query parameter 'path'")
        try:
            path = self.server.layout.resolve_served_path(raw)
        except PermissionError as exc:
            raise _HTTPError(403, f"{raw}: {exc}") from None
        except ValueError as exc:
            raise _HTTPError(400, f"{raw}: {exc}") from None
        if not path.exists():
            raise _HTTPError(404, f"{raw} does not exist")
        return raw, path

    def _send_json(self, status: int, body: Any) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _HTTPError(400, f"{name} must be an integer") from None


def _trim_partial_utf8(chunk: bytes) -> bytes:
    """Drop a multi-byte UTF-8 character cut off at the end of the chunk.

    The caller then advances by exactly the bytes returned (``next_offset``) and reads the whole
    character next time, instead of getting replacement characters at every chunk boundary.
    """
    for back in range(1, min(4, len(chunk)) + 1):
        byte = chunk[-back]
        if byte & 0xC0 != 0x80:  # found the last lead (or ASCII) byte
            needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            if needed > back and len(chunk) > back:
                return chunk[:-back]
            return chunk
    return chunk


def _entry_json(path: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": path,
        "size": st.st_size,
        "mtime": int(st.st_mtime),
        "mode": stat.filemode(st.st_mode),
        "nlink": st.st_nlink,
        "uid": _user_name(st.st_uid),
        "gid": _group_name(st.st_gid),
    }


@lru_cache(maxsize=64)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@lru_cache(maxsize=64)
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
