"""Real servers for the tests: a ZooKeeper server of their own, a throwaway database on MariaDB/MySQL,
and a MariaDB server of their own for the tests that stop and restart the database.

A server that is not installed, or not answering, skips the tests that need it; under CI (CI=true) it
fails them instead, so that a green CI run has really run them. `scripts/ensure-services.sh` installs
both servers.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, Self
from uuid import uuid4

import pymysql
import pytest
from kazoo.client import KazooClient
from sqlalchemy.engine import make_url

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/*"
ZOOKEEPER_START_SECONDS = 30.0
MYSQL_SERVER = "mysql://root@127.0.0.1:3306"
MARIADB_SERVER_BINARY = Path("/usr/sbin/mariadbd")
MARIADB_INSTALL_DB = Path("/usr/bin/mariadb-install-db")
MARIADB_START_SECONDS = 30.0
# Small buffers and no binary log: a test server holds a few megabytes, and starts in a fraction of a second.
_MARIADB_OPTIONS = (
    "--no-defaults",  # the machine's my.cnf (its port, socket, datadir) must not leak in
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--skip-log-bin",
    "--skip-name-resolve",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_bin",
)
# A Unix socket path longer than this does not fit in sockaddr_un (108 bytes with its terminator).
_MAX_SOCKET_PATH = 100

# The start-up probe's connections fail while ZooKeeper starts; kazoo would warn about each one.
_probe_log = logging.getLogger(f"{__name__}.zookeeper_probe")
_probe_log.setLevel(logging.CRITICAL)


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
    pytest.skip(reason)


class LocalServer:
    """A server process of the tests' own on a free loopback port; subclasses say how to run it."""

    name = "server"
    stop_seconds = 10.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, port: int | None = None) -> None:
        """Start on `port` (a restart keeps its port and data), or on a free port."""
        self._prepare()
        # A free port is found by binding and releasing it, so another process can take it before the
        # server binds it; the server then exits, and another port is tried.
        for _attempt in range(1 if port else 3):
            self.port = port or _free_port()
            self._launch()
            if self._wait_until_serving():
                return
            self.stop()
        raise RuntimeError(f"{self.name} did not start on port {self.port}; its output:\n{self._log_tail()}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop, and remove what the server leaves behind (nothing, unless a subclass says)."""
        self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=self.stop_seconds)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _prepare(self) -> None:
        """Before the first start: nothing, unless the server needs its files made."""

    def _launch(self) -> None:
        raise NotImplementedError

    def _wait_until_serving(self) -> bool:
        raise NotImplementedError

    def _log_tail(self) -> str:
        raise NotImplementedError


class ZooKeeperServer(LocalServer):
    """A standalone ZooKeeper on a free loopback port, its data in `workdir`."""

    name = "ZooKeeper"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _launch(self) -> None:
        data = self.workdir / f"data-{self.port}"
        data.mkdir(exist_ok=True)
        config = self.workdir / "zoo.cfg"
        config.write_text(
            # A session lasts at least 2 ticks: 500 ms ticks let backends ask for the short sessions
            # (a few seconds) that make fail-over fast; ZooKeeper's default 2 s tick would stretch them to 4 s.
            "tickTime=500\n"
            f"dataDir={data}\n"
            f"clientPort={self.port}\n"
            # Loopback only: nothing outside this machine is to reach a test server.
            "clientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
            "maxClientCnxns=0\n"
        )
        with (self.workdir / "zookeeper.log").open("ab") as log:
            self._process = subprocess.Popen(
                # A small heap: the default takes a quarter of the machine's memory.
                [
                    "java",
                    "-Xmx256m",
                    "-cp",
                    ZOOKEEPER_CLASSPATH,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    str(config),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_serving(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + ZOOKEEPER_START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            # Poll the port first: cheaper than a kazoo connection attempt.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            client = KazooClient(hosts=self.hosts, timeout=5.0, logger=_probe_log)
            try:
                client.start(timeout=max(deadline - time.monotonic(), 0.1))
                client.get_children("/")
                return True
            except Exception:
                time.sleep(0.1)
            finally:
                client.stop()
                client.close()
        return False

    def _log_tail(self) -> str:
        log = self.workdir / "zookeeper.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no output)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MariaDBServer(LocalServer):
    """A MariaDB server on a free loopback port, its data, socket and pid file in `workdir`.

    `stop()` and `start(port=server.port)` take it away and bring it back with its data, as an operator
    restarting the database would; root has no password and logs in over TCP, as on the shared server.
    """

    name = "MariaDB"
    stop_seconds = 30.0  # SIGTERM: InnoDB flushes, so that a restart finds every committed row

    def __init__(self, workdir: Path, options: tuple[str, ...] = ()) -> None:
        """`options` are server options in place of the small test defaults (a benchmark sizes its buffers)."""
        super().__init__(workdir)
        self.datadir = workdir / "data"
        self._socket_dir: Path | None = None
        replaced = {option.split("=", 1)[0] for option in options}
        self._options = (*options, *(o for o in _MARIADB_OPTIONS[1:] if o.split("=", 1)[0] not in replaced))

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        if not self.datadir.exists():
            self._install()

    def close(self) -> None:
        """Stop, and remove the data (tens of megabytes); the logs stay for a failed test's reader."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def create_database(self) -> str:
        """A new, empty database on this server: its URL (dropped with the server's data)."""
        name = f"sing_test_{uuid4().hex[:12]}"
        admin = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=5, autocommit=True)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        finally:
            admin.close()
        return f"{self.url}/{name}"

    def query(self, database: str, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Rows of one query on `database`, read straight from the server."""
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database, connect_timeout=5)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def _install(self) -> None:
        # `normal` authentication gives root a password login (empty) rather than unix_socket, which only
        # the operating system's root user could use, and not over TCP.
        args = [
            str(MARIADB_INSTALL_DB),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._options,  # --no-defaults is only accepted first, and is already there
            *self._user_option(),
        ]
        log = self.workdir / "install.log"
        with log.open("wb") as out:
            done = subprocess.run(args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db failed ({done.returncode}):\n{log.read_text(errors='replace')}")

    def _launch(self) -> None:
        with (self.workdir / "mariadbd.out").open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(MARIADB_SERVER_BINARY),
                    _MARIADB_OPTIONS[0],
                    *self._options,
                    f"--datadir={self.datadir}",
                    f"--port={self.port}",
                    # Loopback only: nothing outside this machine is to reach a test server.
                    "--bind-address=127.0.0.1",
                    f"--socket={self._socket_path()}",
                    f"--pid-file={self.workdir / 'mariadbd.pid'}",
                    f"--log-error={self.workdir / 'mariadbd.err'}",
                    *self._user_option(),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _socket_path(self) -> Path:
        path = self.workdir / "mariadbd.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        # A deep temporary directory: the socket goes to a short one instead (removed by close()).
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="sing-mariadb-"))
        return self._socket_dir / "mariadbd.sock"

    @staticmethod
    def _user_option() -> list[str]:
        # mariadbd refuses to run as root unless told to; as any other user the option is not needed.
        return ["--user=root"] if os.geteuid() == 0 else []

    def _wait_until_serving(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + MARIADB_START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        parts = []
        for name in ("mariadbd.err", "mariadbd.out"):
            log = self.workdir / name
            if log.exists():
                parts.append(log.read_text(errors="replace")[-3000:])
        return "\n".join(parts) or "(no output)"


def require_mariadb_server() -> None:
    if not MARIADB_SERVER_BINARY.is_file() or not MARIADB_INSTALL_DB.is_file():
        unavailable(f"MariaDB is not installed (no {MARIADB_SERVER_BINARY} or {MARIADB_INSTALL_DB})")


@pytest.fixture
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A MariaDB server of the test's own, which it may stop and restart; removed afterwards."""
    require_mariadb_server()
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    try:
        server.start()
        yield server
    finally:
        server.close()


def require_zookeeper() -> None:
    if shutil.which("java") is None or not ZOOKEEPER_JAR.is_file():
        unavailable(f"ZooKeeper is not installed (no java, or no {ZOOKEEPER_JAR})")


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One ZooKeeper server for the whole test run; tests keep apart by using roots of their own."""
    require_zookeeper()
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def mysql_database() -> Iterator[str]:
    """A new, empty database on the MariaDB/MySQL test server: yields its URL, then drops it."""
    server = make_url(MYSQL_SERVER)
    try:
        admin = pymysql.connect(
            host=server.host, port=server.port or 3306, user=server.username, connect_timeout=5, autocommit=True
        )
    except pymysql.err.OperationalError as exc:
        unavailable(f"MySQL/MariaDB is not answering at {MYSQL_SERVER} ({exc})")
    name = f"sing_test_{uuid4().hex[:12]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()
