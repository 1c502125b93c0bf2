"""`make demo-ha` (scripts/demo-ha.sh --no-tui) as an operator runs it: two backends come up with one
leader, the samples run, killing the leader hands over to the other without losing a task, and
stopping the script leaves no process of it behind."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pymysql
import pytest

from sing_backend.local_backend import free_port, wait_for
from tests.servers import require_zookeeper, unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo-ha.sh"
BACKENDS_LINE = re.compile(r"backends (http://\S+) \(pid (\d+)\) and (http://\S+) \(pid (\d+)\)")
OTHERS_LINE = re.compile(r"ZooKeeper \S+ \(pid (\d+)\); Mesos master (\S+) \(pid (\d+)\)")
# Sample requests that keep tasks running (demo.SAMPLES), and how many each runs.
LONG_RUNNING = {"demo-web": 2, "demo-worker": 1}


class Script:
    """The running script, its output collected line by line so it can be waited on with a deadline."""

    def __init__(self, env: dict[str, str]) -> None:
        # Its own process group, as a terminal gives a command: Ctrl-C can be sent to the group, and a
        # test that fails half-way can still take the whole group down.
        self.proc = subprocess.Popen(["bash", str(SCRIPT), "--no-tui"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise RuntimeError(f"demo-ha.sh exited with {self.proc.returncode}:\n" + "\n".join(self.lines))
            return next((m for line in list(self.lines) if (m := pattern.search(line))), None)
        match: re.Match[str] = wait_for(found, timeout=timeout, interval=0.1, what=f"demo-ha.sh to print {pattern}")
        return match


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(root: int) -> dict[int, int]:
    """Every process under `root` now, as pid -> start time (so a reused pid is not mistaken for it)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[1]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def still_running(procs: dict[int, int]) -> dict[int, str]:
    """Those of `procs` still alive (zombies count as gone), with their command lines."""
    out: dict[int, str] = {}
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[1] == start and st[2] != "Z":
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                continue
    return out


def state(url: str) -> tuple[str | None, dict[str, Any]]:
    """/api/state as the backend at `url` answers it, and the leader it forwarded the call to (a
    standby serves the API by forwarding to the leader; None when it answered itself)."""
    r = httpx.get(f"{url}/api/state", timeout=5)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return r.headers.get("x-sing-leader"), body


def leads(url: str) -> bool:
    """The backend at `url` schedules: it answers itself, as the leader, connected to the master."""
    forwarded_to, body = state(url)
    return forwarded_to is None and body.get("leader") == url and body["hostStates"][0]["master"] \
        and body["hostStates"][0]["mesosConnected"]


def running(url: str, request_id: str) -> set[str]:
    """Ids of the request's tasks in TASK_RUNNING, as the backend at `url` lists them."""
    states = {t["taskId"]["id"]: t["taskState"] for t in httpx.get(f"{url}/api/tasks/active/states", timeout=5).json()}
    return {t["taskId"]["id"] for t in httpx.get(f"{url}/api/tasks/active", timeout=5).json()
            if t["taskId"]["requestId"] == request_id and states.get(t["taskId"]["id"]) == "TASK_RUNNING"}


def frameworks(master: str) -> list[tuple[str, bool]]:
    """(id, connected) of every framework the master knows, from its /state."""
    found = httpx.get(f"http://{master}/state", timeout=5).json()["frameworks"]
    return [(f["id"], f["active"]) for f in found]


def samples_running(url: str) -> dict[str, set[str]] | None:
    tasks = {rid: running(url, rid) for rid in LONG_RUNNING}
    return tasks if all(len(tasks[rid]) == n for rid, n in LONG_RUNNING.items()) else None


@pytest.fixture
def demo_database() -> Iterator[str]:
    """A database name of this test's own on the machine's MariaDB, dropped afterwards."""
    try:
        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5, autocommit=True)
    except pymysql.err.OperationalError as exc:
        unavailable(f"MySQL/MariaDB is not answering at 127.0.0.1:3306 ({exc})")
    name = f"sing_test_demo_ha_{uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl-c"])
def test_demo_ha_elects_one_leader_fails_over_and_stops_cleanly(tmp_path: Path, demo_database: str,
                                                                 ctrl_c: bool) -> None:
    # The script would install missing servers (scripts/ensure-services.sh); a test only runs where they are.
    require_zookeeper()
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx is not installed (scripts/ensure-services.sh, run by the demo, would install it)")
    api_ports = f"{free_port()} {free_port()}"
    env = {**os.environ, "DEMO_HA_DIR": str(tmp_path / "demo"), "DEMO_HA_API_PORTS": api_ports,
           "DEMO_HA_DB": demo_database,
           # Agents' ports away from a demo or other tests running on this machine, and below the ephemeral
           # range (32768 on): a client socket holding a task's port made the sample service fail to bind.
           "SING_AGENTS__FIRST_PORT": str(random.randrange(24000, 32400, 100)), "SING_AGENTS__PORTS_PER_AGENT": "100",
           "SING_KILL_GRACE_SECONDS": "2"}
    script = Script(env)
    seen: dict[int, int] = {}
    try:
        m = script.wait_line(BACKENDS_LINE, timeout=90)
        urls = [m[1], m[3]]
        backend_pids = {m[1]: int(m[2]), m[3]: int(m[4])}
        assert sorted(u.rsplit(":", 1)[1] for u in urls) == sorted(api_ports.split())
        others = script.wait_line(OTHERS_LINE, timeout=5)
        zk_pid, master, cluster_pid = int(others[1]), others[2], int(others[3])
        script.wait_line(re.compile("sample requests created"), timeout=60)

        # Both answer, exactly one of them schedules, and both name it: the leader in its state, the
        # standby by forwarding to it (a backend that leads never forwards).
        [leader] = wait_for(lambda: [u for u in urls if leads(u)], timeout=30, what="a leader connected to the master")
        [standby] = [u for u in urls if u != leader]
        forwarded_to, standby_state = state(standby)
        assert forwarded_to == leader and standby_state["leader"] == leader, (forwarded_to, standby_state)

        before = wait_for(lambda: samples_running(leader), timeout=60, what="the samples' tasks running")
        assert samples_running(standby) == before, "the standby lists other tasks than the leader"
        [(framework_id, _)] = frameworks(master)
        seen.update(descendants(script.proc.pid))
        for pid in (zk_pid, cluster_pid, *backend_pids.values()):
            assert pid in seen, f"pid {pid} printed by the script is not one of its processes"
        # The tasks' processes are watched too: demo-web's two web servers.
        assert sum("-m http.server" in cmd for cmd in still_running(seen).values()) == 2, still_running(seen)

        # The leader dies without a word: the standby takes over the same framework and the same tasks.
        os.kill(backend_pids[leader], signal.SIGKILL)
        wait_for(lambda: leads(standby), timeout=60, what="the standby leading and connected to the master")
        after = wait_for(lambda: samples_running(standby), timeout=30, what="the tasks running after fail-over")
        assert after == before, f"tasks changed over the fail-over: before {before}, after {after}"
        assert frameworks(master) == [(framework_id, True)], "the new leader did not take over the same framework"
        assert script.proc.poll() is None, "a killed backend ended the demo"
        seen.update(descendants(script.proc.pid))

        # Stopping the script stops everything it started, the tasks included: SIGTERM to the script
        # alone (a supervisor, `kill`), or Ctrl-C, which the terminal sends to its whole process group.
        if ctrl_c:
            os.killpg(script.proc.pid, signal.SIGINT)
        else:
            script.proc.send_signal(signal.SIGTERM)
        script.proc.wait(timeout=90)
        expected = 128 + (signal.SIGINT if ctrl_c else signal.SIGTERM)
        assert script.proc.returncode == expected, "\n".join(script.lines)
        try:
            wait_for(lambda: not still_running(seen), timeout=15, interval=0.2, what="every process of the demo gone")
        except AssertionError:
            raise AssertionError(f"left running after the demo stopped: {still_running(seen)}") from None
    finally:
        if script.proc.poll() is None:
            os.killpg(script.proc.pid, signal.SIGKILL)
            script.proc.wait()
        for pid in still_running(seen):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
