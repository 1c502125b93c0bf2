"""An HTTP proxy in front of a Mesos master that can refuse one scheduler call of a given type without
passing it on: the call fails (503) and the master never hears of it, as when a load balancer or a
master fail-over loses a request. Everything else goes through unchanged, the SUBSCRIBE event stream
included."""

from __future__ import annotations

import json
import socket
import threading


class RefusingProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._refuse: str | None = None
        self.refused: list[dict] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def refuse_next(self, call_type: str) -> None:
        with self._lock:
            self._refuse = call_type

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        self._sockets.append(upstream)
        client_in = client.makefile("rb")
        upstream_in = upstream.makefile("rb")
        try:
            while True:
                request = _read_message(client_in)
                if request is None:
                    return
                head, body = request
                call = _call(head, body)
                if call is not None and self._take(call):
                    client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    continue
                upstream.sendall(head + body)
                if call is not None and call.get("type") == "SUBSCRIBE":
                    # An endless event stream: from here on, bytes flow as they come.
                    threading.Thread(target=_pipe, args=(client_in, upstream), daemon=True).start()
                    _pipe(upstream_in, client)
                    return
                response = _read_message(upstream_in)
                if response is None:
                    return
                client.sendall(response[0] + response[1])
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def _take(self, call: dict) -> bool:
        with self._lock:
            if self._refuse is None or call.get("type") != self._refuse:
                return False
            self._refuse = None
            self.refused.append(call)
            return True


def _read_message(stream) -> tuple[bytes, bytes] | None:  # noqa: ANN001 (a binary file object)
    """One HTTP/1.1 request or response with a Content-Length body (or none); None at end of stream."""
    lines = []
    while True:
        line = stream.readline()
        if not line:
            return None
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            break
    head = b"".join(lines)
    length = 0
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return head, stream.read(length) if length else b""


def _call(head: bytes, body: bytes) -> dict | None:
    if not head.startswith(b"POST /api/v1/scheduler"):
        return None
    try:
        call = json.loads(body)
    except ValueError:
        return None
    return call if isinstance(call, dict) else None


def _pipe(source, sink: socket.socket) -> None:  # noqa: ANN001 (a binary file object)
    try:
        while chunk := source.read1(65536):
            sink.sendall(chunk)
    except (OSError, ValueError):
        pass
