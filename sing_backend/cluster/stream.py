"""Writing a v1 API event stream: RecordIO records in HTTP chunks, with heartbeats.

Shared by the master's scheduler streams and the agents' executor streams. The writer owns the
connection until the stream ends; callers only enqueue events on the ``Subscription``.
"""

from __future__ import annotations

import queue
import select
import socket
import time
from http.server import BaseHTTPRequestHandler

import orjson

from .framework import Subscription
from .updates import HEARTBEAT_EVENT

# How often an idle stream checks that its client is still there.
_IDLE_POLL_SECONDS = 0.5


def start_stream(handler: BaseHTTPRequestHandler, headers: dict[str, str]) -> None:
    handler.close_connection = True
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Cache-Control", "no-cache")
    handler.end_headers()


def pump(handler: BaseHTTPRequestHandler, subscription: Subscription, heartbeat: float) -> None:
    """Write queued events until the subscription ends or the client goes; raises OSError when a
    write fails."""
    heartbeat_record = _record(orjson.dumps(HEARTBEAT_EVENT))
    next_heartbeat = time.monotonic() + heartbeat
    while True:
        now = time.monotonic()
        if now >= next_heartbeat:
            handler.wfile.write(_chunk(heartbeat_record))
            next_heartbeat = now + heartbeat
        try:
            item = subscription.next(timeout=min(_IDLE_POLL_SECONDS, max(0.0, next_heartbeat - now)))
        except queue.Empty:
            if _peer_closed(handler.connection):
                return
            continue
        # Send everything already queued in one write; each record is still complete.
        records: list[bytes] = []
        ended = item is None
        if item is not None:
            records.append(_record(item))
            while True:
                try:
                    more = subscription.next_nowait()
                except queue.Empty:
                    break
                if more is None:
                    ended = True
                    break
                records.append(_record(more))
        payload = b"".join(_chunk(r) for r in records)
        if ended:
            payload += b"0\r\n\r\n"
        if payload:
            handler.wfile.write(payload)
        if ended:
            return


def _record(event: bytes) -> bytes:
    return b"%d\n%s" % (len(event), event)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client hung up (pymesos never writes on its stream connection)."""
    try:
        # poll(), not select(): with hundreds of tasks (one pidfd each) descriptors pass FD_SETSIZE.
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (OSError, ValueError):
        return True
