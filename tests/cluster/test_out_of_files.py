"""A cluster process out of file descriptors keeps working: connections it cannot accept yet wait in
the queue, the acceptor does not spin a core meanwhile, and they are served once files are closed."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from sing_backend.local_backend import wait_for

FILES = 64
SERVER = textwrap.dedent(f"""
    import resource, sys, time
    from http.server import BaseHTTPRequestHandler
    from sing_backend.cluster.httpserver import Acceptor, TrackingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    resource.setrlimit(resource.RLIMIT_NOFILE, ({FILES}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    server = TrackingHTTPServer(("127.0.0.1", 0), Hello)
    acceptor = Acceptor()
    acceptor.start()
    acceptor.add(server)
    print(server.port, flush=True)
    for line in sys.stdin:  # each line: report the CPU this process uses over the next second
        start = time.process_time()
        time.sleep(1.0)
        print(time.process_time() - start, flush=True)
""")


def test_out_of_file_descriptors_the_acceptor_waits_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with log.open("w") as err:
        child = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=err, text=True)
    silent: list[socket.socket] = []
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        # Connections that send nothing: each holds a descriptor and a handler thread in the server.
        for _ in range(FILES + 20):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))

        def cpu_over_a_second() -> float:
            child.stdin.write("measure\n")
            child.stdin.flush()
            return float(child.stdout.readline())

        wait_for(lambda: "out of file descriptors" in log.read_text(), timeout=10,
                 what="the server running out of descriptors")
        # Waiting, the acceptor uses next to nothing (a few milliseconds); spinning, it took a third of
        # a core here.
        assert cpu_over_a_second() < 0.1
        for conn in silent:
            conn.close()
        silent.clear()
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == "ok"
        assert time.monotonic() - started < 5
    finally:
        for conn in silent:
            conn.close()
        child.kill()
        child.wait()
