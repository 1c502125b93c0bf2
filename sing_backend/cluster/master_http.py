"""The master's HTTP face: GET /version, the v1 scheduler API, and the RecordIO event stream."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from .calls import CallError
from .framework import Subscription
from .httpserver import TrackingHTTPServer
from .master import VERSION, Master
from .stream import pump, start_stream

log = logging.getLogger(__name__)

SCHEDULER_PATH = "/api/v1/scheduler"
_MAX_BODY = 64 * 1024 * 1024


class MasterHTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], master: Master) -> None:
        super().__init__(address, _MasterHandler)
        self.master = master
        self._streams: set[threading.Thread] = set()
        self._streams_lock = threading.Lock()

    def stream_started(self) -> None:
        with self._streams_lock:
            self._streams.add(threading.current_thread())

    def stream_finished(self) -> None:
        with self._streams_lock:
            self._streams.discard(threading.current_thread())

    def join_streams(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._streams_lock:
            threads = list(self._streams)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _MasterHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # pymesos keeps one connection alive for all its calls
    # Events are small separate writes; with Nagle each would wait for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: MasterHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("master: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/version":
            # Plain numeric: pymesos parses it with int() per dot-separated part.
            self._reply(200, orjson.dumps({"version": VERSION}), "application/json")
        elif path in ("/state", "/master/state", "/state.json", "/master/state.json"):
            self._reply(200, orjson.dumps(self.server.master.state_json()), "application/json")
        elif path == "/health":
            self._reply(200, b"", "text/plain")
        else:
            self._reply(404, f"No such endpoint: {path}".encode(), "text/plain")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != SCHEDULER_PATH:
            self._drain_body()
            self._reply(404, f"No such endpoint: {self.path}".encode(), "text/plain")
            return
        body = self._read_body()
        if body is None:
            return
        content_type = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if content_type != "application/json":
            self._reply(415, b"Only application/json calls are supported", "text/plain")
            return
        try:
            call = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self._reply(400, f"Failed to parse body as JSON: {exc}".encode(), "text/plain")
            return
        if not isinstance(call, dict) or not isinstance(call.get("type"), str):
            self._reply(400, b"Expecting 'type' to be present", "text/plain")
            return
        master = self.server.master
        try:
            if call["type"] == "SUBSCRIBE":
                self._stream(master.subscribe(call))
                return
            master.handle_call(call, self.headers.get("Mesos-Stream-Id"))
        except CallError as exc:
            self._reply(exc.status, exc.message.encode(), "text/plain")
            return
        except Exception as exc:  # a bug here must not kill the server thread silently
            log.exception("scheduler call %s failed", call.get("type"))
            self._reply(500, f"Internal error: {exc}".encode(), "text/plain")
            return
        self._reply(202, b"", None)

    # -- plumbing ------------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            self._reply(411, b"Content-Length is required", "text/plain")
            return None
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._reply(413 if length > 0 else 400, b"Bad Content-Length", "text/plain")
            return None
        # Exactly Content-Length bytes: reading more would eat the next keep-alive request.
        return self.rfile.read(length)

    def _drain_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= _MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _reply(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _stream(self, subscription: Subscription) -> None:
        """Own this connection until the stream ends: write queued events as RecordIO in chunks."""
        start_stream(self, {"Mesos-Stream-Id": subscription.stream_id})
        self.server.stream_started()
        try:
            pump(self, subscription, self.server.master.heartbeat_interval)
        except OSError:
            log.debug("stream %s: client went away", subscription.stream_id)
        finally:
            self.server.stream_finished()
            self.server.master.stream_ended(subscription)
