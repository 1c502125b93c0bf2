"""A tiny web service for tests: `/` answers with its task id, `/health` as the mode says.

Usage: webapp.py MODE   (MODE: ok | 500 | hang | flaky-after-N, read from argv; port from $PORT0)
"""

from __future__ import annotations

import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"
NAME = os.environ.get("TASK_ID", "local").encode()
STARTED = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's API)
        if self.path == "/health":
            if MODE == "hang":
                time.sleep(3600)
            if MODE == "500" or (MODE.startswith("sick-after-") and time.monotonic() - STARTED > float(MODE[11:])):
                self._send(500, b"unhealthy")
                return
        self._send(200, NAME)

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # many health checks may connect at once

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a checker that gave up and hung up is not worth a traceback
Server(("0.0.0.0", int(os.environ["PORT0"])), Handler).serve_forever()
