"""What the operator writes as the Mesos master becomes one address pymesos can use: the first of a list
that answers as a Mesos master does, found without waiting on the dead or hung ones in turn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sing_backend.settings import SettingsError
from sing_backend.startup import resolve_mesos_master


class VersionHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        body = b'{"version": "1.11.0"}'
        self.send_response(200 if self.path == "/version" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def master() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), VersionHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def raw_server(on_connect: Callable[[socket.socket], None]) -> Iterator[str]:
    """Accepts connections and hands each to `on_connect` (which may say nothing at all)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            on_connect(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def hung() -> Callable[[socket.socket], None]:
    return lambda conn: None  # connected, then silence: a frozen master


def not_http() -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" * 3)


def dead() -> str:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        return f"127.0.0.1:{bound.getsockname()[1]}"


def test_the_first_answering_master_of_a_list_is_picked_without_waiting_in_turn() -> None:
    with raw_server(hung()) as frozen, raw_server(not_http()) as other, master() as good, master() as later:
        started = time.monotonic()
        assert resolve_mesos_master(f"{frozen},{other},{dead()},http://{good},{later}", probe_timeout=1.0) == good
        # One timeout for the frozen one, not one per bad entry.
        assert time.monotonic() - started < 1.8


def test_a_list_where_no_master_answers_names_the_setting() -> None:
    with raw_server(hung()) as frozen, raw_server(not_http()) as other:
        with pytest.raises(SettingsError, match="mesos_master: no Mesos master answers"):
            resolve_mesos_master(f"{frozen},{other},{dead()}", probe_timeout=0.5)


def test_a_single_master_must_answer_too() -> None:
    with master() as good:
        assert resolve_mesos_master(good) == good
    with raw_server(hung()) as frozen, pytest.raises(SettingsError, match="mesos_master"):
        resolve_mesos_master(frozen, probe_timeout=0.5)


def test_zookeeper_urls_are_left_to_pymesos_and_bad_entries_refused() -> None:
    assert resolve_mesos_master(" zk://h1:2181,h2:2181/mesos ") == "zk://h1:2181,h2:2181/mesos"
    with pytest.raises(SettingsError, match="mesos_master"):
        resolve_mesos_master("zk://h1:2181")
    with pytest.raises(SettingsError, match="mesos_master: 'a b' is not host:port"):
        resolve_mesos_master("h1:5050,a b")
