from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for
from tests.servers import ZooKeeperServer, mysql_database
from tests.servers import zookeeper as zookeeper  # the session's ZooKeeper server, a fixture


class SharedCluster:
    """`sing cluster` in its own process: the Mesos master that several backends share."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        log = open(data_dir / "cluster.log", "ab")
        env = {**os.environ, "SING_AGENTS__FIRST_PORT": "15000", "SING_AGENTS__PORTS_PER_AGENT": "200",
               "SING_KILL_GRACE_SECONDS": "2"}
        self.proc = subprocess.Popen([sys.executable, "-m", "sing_backend.cli", "cluster", "--port", str(self.port),
                                      "--data-dir", str(data_dir), "--heartbeat-seconds", "1"],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: httpx.get(f"http://{self.address}/version", timeout=1).status_code == 200, timeout=30,
                 what="sing cluster up")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@contextmanager
def ha_servers(tmp_path: Path, zookeeper: ZooKeeperServer, **defaults: str) -> Iterator[dict]:
    """A database on the local MariaDB, a shared `sing cluster` and a ZooKeeper root of their own; yields
    `backend(name, **env)`, which starts a backend in mesos mode against them (env: `SING_*` settings
    over `defaults`), and the servers. Every backend started is closed at the end."""
    with mysql_database() as db_url:
        cluster = SharedCluster(tmp_path)
        root = f"/sing-ha-{uuid4().hex[:8]}"
        made: list[Backend] = []

        def backend(name: str, **env: str) -> Backend:
            port = free_port()
            b = Backend(tmp_path / name, port=port, env={
                "SING_MODE": "mesos", "SING_MESOS_MASTER": cluster.address, "SING_ZK_HOSTS": zookeeper.hosts,
                "SING_ZK_ROOT": root, "SING_DB_URL": db_url, "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}",
                **defaults, **env})
            made.append(b)
            return b.start(wait_connected=False)

        try:
            yield {"backend": backend, "cluster": cluster, "zookeeper": zookeeper, "db_url": db_url, "root": root}
        finally:
            for b in made:
                b.close()
            cluster.stop()


@pytest.fixture
def ha(tmp_path: Path, zookeeper: ZooKeeperServer) -> Iterator[dict]:
    with ha_servers(tmp_path, zookeeper, SING_ZK_SESSION_TIMEOUT="2") as servers:
        yield servers
