"""Production-mode faults: bad settings fail fast naming the setting; ZooKeeper going away stops
scheduling, keeps reads and refuses writes, and everything resumes when it returns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kazoo.client import KazooClient

from sing_backend.local_backend import Backend, free_port, wait_for
from sing_tui.app import SingApp
from sing_tui.config import TuiConfig
from tests.servers import ZooKeeperServer, mysql_database, require_zookeeper
from tests.tui.conftest import screen_text, top_right, until


def _start_fails(tmp_path: Path, *args: str) -> str:
    """What `sing backend` says when it refuses to start: one line, and no traceback."""
    proc = subprocess.run([sys.executable, "-m", "sing_backend.cli", "backend", "--port", str(free_port()),
                           "--data-dir", str(tmp_path), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SING_LOG_LEVEL": "error"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sing: "), proc.stderr[-2000:]
    return lines[0]


def test_bad_settings_fail_fast_naming_the_setting(tmp_path: Path, ha: dict):
    zk = ha["zookeeper"].hosts
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", ha["cluster"].address, "--zk", zk)
    assert "db_url: required in mesos mode" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", "zk://nohost", "--zk", zk, "--db", ha["db_url"])
    assert "mesos_master" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", f"http://127.0.0.1:{free_port()}", "--zk", zk,
                       "--db", ha["db_url"])
    assert "mesos_master: no Mesos master answers" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", f"zk://127.0.0.1:{free_port()}/mesos", "--zk", zk,
                       "--db", ha["db_url"])
    assert "mesos_master: cannot reach ZooKeeper at 127.0.0.1:" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", f"zk://{zk}/no-mesos-here", "--zk", zk,
                       "--db", ha["db_url"])
    assert "mesos_master: no Mesos master is registered in ZooKeeper" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", ha["cluster"].address,
                       "--zk", f"127.0.0.1:{free_port()}", "--db", ha["db_url"], "--zk-session-timeout", "2")
    assert "zk_hosts: cannot reach ZooKeeper" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", ha["cluster"].address, "--zk", zk,
                       "--db", f"mysql://nobody@127.0.0.1:{free_port()}/x")
    assert "db_url: cannot open the history database" in out
    out = _start_fails(tmp_path, "--mode", "mesos", "--master", ha["cluster"].address, "--zk", zk,
                       "--db", ha["db_url"], "--advertise-url", "not a url")
    assert "advertise_url" in out


def test_a_master_found_through_zookeeper(ha: dict):
    """--master zk://hosts/path: pymesos finds the leading master as Mesos registers it (the lowest
    json.info_ node); the backend checks it there first, and then leads through it."""
    path = f"{ha['root']}-mesos"
    client = KazooClient(hosts=ha["zookeeper"].hosts)
    client.start(timeout=10)
    try:
        host, port = ha["cluster"].address.split(":")
        info = {"address": {"ip": host, "port": int(port), "hostname": host}, "hostname": host, "id": "master-1"}
        client.create(f"{path}/json.info_0000000007", json.dumps(info).encode(), makepath=True)
        client.create(f"{path}/log_replicas", b"", makepath=True)
    finally:
        client.stop()
        client.close()
    b = ha["backend"]("z", SING_MESOS_MASTER=f"zk://{ha['zookeeper'].hosts}{path}")
    wait_for(lambda: b.get("/api/state")["leader"] == b.url and b.get("/api/state")["activeAgents"] > 0,
             timeout=30, what="leading through the master found in ZooKeeper, with its agents")
    b.post("/api/requests", {"id": "via-zk", "requestType": "WORKER", "instances": 1})
    b.post("/api/deploys", {"deploy": {"requestId": "via-zk", "id": "v1", "command": "sleep 1000",
                                       "resources": {"cpus": 0.01, "memoryMb": 8}}})
    wait_for(lambda: b.active_tasks("via-zk"), timeout=30, what="a task launched through that master")


@contextmanager
def leader_on_its_own_zookeeper(tmp_path: Path, ha: dict) -> Iterator[tuple[ZooKeeperServer, Backend]]:
    """A backend in mesos mode, leading, with a ZooKeeper server of the test's own (to stop or freeze)
    and a 2 s session; it has created the request "keep"."""
    require_zookeeper()
    (tmp_path / "zk").mkdir()
    zk = ZooKeeperServer(tmp_path / "zk")
    zk.start()
    try:
        with mysql_database() as db_url:
            port = free_port()
            b = Backend(tmp_path / "b", port=port, env={
                "SING_MODE": "mesos", "SING_MESOS_MASTER": ha["cluster"].address, "SING_ZK_HOSTS": zk.hosts,
                "SING_DB_URL": db_url, "SING_ZK_SESSION_TIMEOUT": "2", "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}"})
            try:
                b.start(wait_connected=False)
                wait_for(lambda: b.get("/api/state")["hostStates"][0]["master"], what="leader")
                b.post("/api/requests", {"id": "keep", "requestType": "WORKER"})
                yield zk, b
            finally:
                b.close()
    finally:
        zk.stop()


def test_zookeeper_outage_stops_scheduling_and_resumes(tmp_path: Path, ha: dict):
    with leader_on_its_own_zookeeper(tmp_path, ha) as (zk, b):
        zk.stop()
        state = wait_for(lambda: (s := b.get("/api/state"))["zookeeperConnected"] is False and s,
                         what="ZooKeeper loss reported")
        assert state["hostStates"][0]["master"] is False
        r = b.client.get("/api/requests/request/keep")
        assert r.status_code == 200 and r.headers["x-sing-stale"] == "true"
        r = b.client.post("/api/requests", json={"id": "lost", "requestType": "WORKER"})
        assert r.status_code == 503, r.text
        assert "lost ZooKeeper" in r.json()["message"] and "nothing was changed" in r.json()["message"]
        zk.start(port=zk.port)
        wait_for(lambda: b.get("/api/state")["hostStates"][0]["master"], timeout=30, what="leads again")
        b.post("/api/requests", {"id": "after", "requestType": "WORKER"})
        ids = {r["request"]["id"] for r in b.get("/api/requests")}
        assert ids == {"keep", "after"}


async def test_the_tui_says_when_zookeeper_is_away_and_when_it_is_back(tmp_path: Path, ha: dict) -> None:
    with leader_on_its_own_zookeeper(tmp_path, ha) as (zk, b):
        app = SingApp(TuiConfig(url=b.url, refresh_seconds=0.3), start_view="requests")
        async with app.run_test(size=(110, 24)) as pilot:
            await until(pilot, lambda: "keep" in screen_text(pilot), what="the request listed")
            zk.stop()
            await until(pilot, lambda: "ZOOKEEPER DOWN" in top_right(app) and "NO LEADER" in top_right(app),
                        timeout=30, what="the outage shown")
            assert "keep" in screen_text(pilot)  # what the backend last knew is still shown
            zk.start(port=zk.port)
            await until(pilot, lambda: top_right(app).endswith("● live") and "DOWN" not in top_right(app)
                        and "NO LEADER" not in top_right(app), timeout=30, what="the outage over")


def test_a_write_caught_by_a_silent_zookeeper_answers_503_saying_so(tmp_path: Path, ha: dict):
    """ZooKeeper stops answering (frozen: the connection stays open) while the leader saves a change: the
    caller learns that the change may not have been made (503), not of an internal error (500)."""
    with leader_on_its_own_zookeeper(tmp_path, ha) as (zk, b):
        assert zk._process is not None
        os.kill(zk._process.pid, signal.SIGSTOP)
        try:
            r = b.client.post("/api/requests", json={"id": "frozen", "requestType": "WORKER"}, timeout=30)
        finally:
            os.kill(zk._process.pid, signal.SIGCONT)
        assert r.status_code == 503, f"{r.status_code} {r.text}"
        assert "may or may not have been saved" in r.json()["message"]
        wait_for(lambda: b.get("/api/state")["hostStates"][0]["master"], timeout=30, what="leads again")
        b.post("/api/requests", {"id": "after", "requestType": "WORKER"})
        assert {"keep", "after"} <= {r["request"]["id"] for r in b.get("/api/requests")}
