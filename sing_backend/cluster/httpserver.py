"""Threaded stdlib HTTP servers that can all be served by one acceptor thread and closed at once.

The cluster runs one server per agent (hundreds in benchmarks). ``serve_forever`` would cost a thread
and a 0.5 s shutdown poll per server; one selector over every listening socket costs neither.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..wake_pipe import WakePipe

log = logging.getLogger(__name__)

_OUT_OF_FILES_PAUSE = 0.05  # seconds between accept attempts while the process has no file descriptor left


class TrackingHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that remembers open connections so ``close`` can end keep-alive ones."""

    daemon_threads = True
    # Handler threads may sit in a keep-alive read or a long event stream; we end them ourselves.
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        # Readiness comes from the acceptor's selector; a client that resets before accept() must not
        # block it. Accepted sockets are still blocking (they inherit the default timeout).
        self.socket.setblocking(False)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) for every server, which can
        # take 50 ms each: far too slow for hundreds of agents. Nothing here uses the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        # Clients vanishing mid-request is routine here (drivers stop, streams end); keep it quiet.
        log.debug("HTTP handler error for %s", client_address, exc_info=True)

    def close(self) -> None:
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Acceptor:
    """Accepts connections for many servers on one thread; each connection then gets its own thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._wake_pipe = WakePipe(self._selector)
        self._pending_add: list[TrackingHTTPServer] = []
        self._pending_remove: list[tuple[TrackingHTTPServer, threading.Event]] = []
        self._stopping = False
        self._out_of_files = False
        self._thread = threading.Thread(target=self._run, name="sing-cluster-acceptor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, server: TrackingHTTPServer) -> None:
        with self._lock:
            self._pending_add.append(server)
        self._wake()

    def remove(self, server: TrackingHTTPServer) -> None:
        """Stop accepting for ``server`` and close it (returns once the acceptor let go of it)."""
        done = threading.Event()
        with self._lock:
            running = self._thread.is_alive() and not self._stopping
            if running:
                self._pending_remove.append((server, done))
        if running:
            self._wake()
            done.wait(timeout=5)
        server.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._selector.close()
        self._wake_pipe.close()

    def _wake(self) -> None:
        self._wake_pipe.wake()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                adds, self._pending_add = self._pending_add, []
                removes, self._pending_remove = self._pending_remove, []
            for server in adds:
                self._selector.register(server.socket, selectors.EVENT_READ, server)
            for server, done in removes:
                try:
                    self._selector.unregister(server.socket)
                except (KeyError, ValueError):
                    pass
                done.set()
            out_of_files = False
            for key, _ in self._selector.select():
                server = key.data
                if server is None:
                    self._wake_pipe.drain()
                    continue
                out_of_files |= self._accept(server)
            if out_of_files:
                # The connection stays queued and its socket readable: selecting again at once would
                # spin a core until some other thread closes a file. Wait a little instead.
                if not self._out_of_files:
                    log.warning("out of file descriptors: connections wait until some are closed")
                self._out_of_files = True
                time.sleep(_OUT_OF_FILES_PAUSE)
            else:
                self._out_of_files = False

    @staticmethod
    def _accept(server: TrackingHTTPServer) -> bool:
        """Accept and start serving one connection; True if that failed for want of file descriptors."""
        # The public pieces of socketserver's own accept path.
        try:
            request, client_address = server.get_request()
        except OSError as exc:
            return exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
        if not server.verify_request(request, client_address):
            server.shutdown_request(request)
            return
        try:
            server.process_request(request, client_address)
        except Exception:
            server.handle_error(request, client_address)
            server.shutdown_request(request)
        return False
