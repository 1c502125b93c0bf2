"""A task that cannot be started fails on its own, and the cluster raises its open-files limit.

The cluster runs as `sing cluster` in a process of its own whose RLIMIT_NOFILE is set low, so that an
ACCEPT with more tasks than the limit allows runs out of descriptors for real (EMFILE). The scheduler
speaks the v1 API over plain HTTP/1.1 connections opened before that happens: a cluster out of
descriptors cannot accept new connections until some are freed.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from sing_backend.cluster import EmbeddedCluster, default_agents
from sing_backend.executor.host import FDS_PER_TASK
from sing_backend.executor.records import kill_orphans

from .helpers import eventually, pid_alive, wait_on

T = TypeVar("T")

SCHEDULER_PATH = "/api/v1/scheduler"
# Sets the open-files limit (soft, hard) of the process, then runs the `sing` command line: the same
# as starting `sing cluster` from a shell where `ulimit -n` is low.
_WITH_NOFILE = ("import resource, sys\n"
                "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))\n"
                "from sing_backend.cli import main\n"
                "sys.exit(main(sys.argv[3:]))\n")
_BANNER = re.compile(r"Mesos master at (\S+) with")
# Starting a Python process that imports the whole backend takes a few seconds on a loaded machine.
_START_DEADLINE = 60.0
_DEADLINE = 30.0


class ClusterProcess:
    """`sing cluster` with one agent, started with the given RLIMIT_NOFILE."""

    def __init__(self, data_dir: Path, soft: int, hard: int) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.out_path = data_dir / "cluster.out"
        self.log_path = data_dir / "cluster.log"
        env = {**os.environ, "SING_AGENTS__COUNT": "1", "SING_AGENTS__RACKS": "1", "SING_AGENTS__CPUS": "64",
               "SING_AGENTS__MEM_MB": "65536", "SING_KILL_GRACE_SECONDS": "1", "SING_LOG_LEVEL": "info"}
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WITH_NOFILE, str(soft), str(hard), "cluster", "--port", "0",
                 "--data-dir", str(data_dir), "--heartbeat-seconds", "1"],
                stdout=out, stderr=err, env=env,
            )
        try:
            self.address = eventually(self._banner, timeout=_START_DEADLINE, what="sing cluster up")
        except BaseException:
            self.stop()
            raise

    def _banner(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"sing cluster exited with {self.proc.returncode}: {self.log()}")
        found = _BANNER.search(self.out_path.read_text())
        return found.group(1) if found else None

    def log(self) -> str:
        return self.log_path.read_text()

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def running_dir(self) -> Path:
        return self.data_dir / "cluster" / "agents" / "agent-1" / "running"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Whatever a cluster that did not stop cleanly left running.
        if self.running_dir().is_dir():
            kill_orphans(self.running_dir())


class RawScheduler:
    """A v1 scheduler on two connections made up front: the event stream and one for calls."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self.offers: dict[str, dict[str, Any]] = {}  # outstanding, by id
        self._client = httpx.Client(timeout=_DEADLINE)
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "fd-limits"}}}
        self._stream = self._client.stream("POST", f"http://{address}{SCHEDULER_PATH}", json=subscribe)
        response = self._stream.__enter__()
        assert response.status_code == 200, response.read()
        self.stream_id = response.headers["Mesos-Stream-Id"]
        self._reader = threading.Thread(target=self._read_events, args=(response,), daemon=True)
        self._reader.start()
        subscribed = self.wait(lambda: self._first("SUBSCRIBED"), "SUBSCRIBED")
        self.framework_id: str = subscribed["subscribed"]["framework_id"]["value"]
        self.calls = http.client.HTTPConnection(host, int(port), timeout=_DEADLINE)
        self.calls.connect()

    def _read_events(self, response: httpx.Response) -> None:
        """RecordIO: a decimal length, a newline, then that many bytes of JSON."""
        buffer = b""
        try:
            for data in response.iter_bytes():
                buffer += data
                while b"\n" in buffer:
                    length, rest = buffer.split(b"\n", 1)
                    if len(rest) < int(length):
                        break
                    event = orjson.loads(rest[:int(length)])
                    buffer = rest[int(length):]
                    with self._cond:
                        self.events.append(event)
                        if event["type"] == "OFFERS":
                            self.offers.update((o["id"]["value"], o) for o in event["offers"]["offers"])
                        elif event["type"] == "RESCIND":
                            self.offers.pop(event["rescind"]["offer_id"]["value"], None)
                        self._cond.notify_all()
        except httpx.HTTPError:
            return  # the stream ended (the cluster stopped, or the test closed it)

    def close(self) -> None:
        self.calls.close()
        self._stream.__exit__(None, None, None)
        self._client.close()

    def wait(self, predicate: Callable[[], T | None], what: str, timeout: float = _DEADLINE) -> T:
        return wait_on(self._cond, predicate, timeout, lambda: what)

    def _first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["type"] == kind), None)

    def call(self, kind: str, **body: Any) -> tuple[int, bytes]:
        payload = {"type": kind, "framework_id": {"value": self.framework_id}, **body}
        self.calls.request("POST", SCHEDULER_PATH, orjson.dumps(payload),
                           {"Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id})
        response = self.calls.getresponse()
        return response.status, response.read()

    def offer(self) -> dict[str, Any]:
        """An outstanding offer, no longer outstanding once returned (it is about to be used)."""
        with self._cond:
            offer = self.wait(lambda: next(iter(self.offers.values()), None), "an offer")
            del self.offers[offer["id"]["value"]]
        return offer

    def statuses(self) -> list[dict[str, Any]]:
        with self._cond:
            return [e["update"]["status"] for e in self.events if e["type"] == "UPDATE"]

    def acknowledge(self, status: dict[str, Any]) -> None:
        if "uuid" in status:
            code, _ = self.call("ACKNOWLEDGE", acknowledge={
                "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]})
            assert code == 202


def _get_json(conn: http.client.HTTPConnection, path: str) -> Any:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    return orjson.loads(body)


def _task(task_id: str, offer: dict[str, Any], command: str) -> dict[str, Any]:
    return {
        "name": task_id,
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32.0}}],
        "command": {"value": command, "shell": True},
    }


def _launch(sched: RawScheduler, offer: dict[str, Any], tasks: list[dict[str, Any]]) -> tuple[int, bytes]:
    return sched.call("ACCEPT", accept={
        "offer_ids": [offer["id"]],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
    })


def _nofile_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line[26:].split()[:2]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


@pytest.fixture
def tight_cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    # Enough for the cluster itself and a dozen or so tasks, far from enough for the launch below.
    cluster = ClusterProcess(tmp_path / "tight", 160, 160)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_tasks_over_the_open_files_limit_fail_alone(tight_cluster: ClusterProcess) -> None:
    cluster = tight_cluster
    sched = RawScheduler(cluster.address)
    host, port = cluster.address.rsplit(":", 1)
    master = http.client.HTTPConnection(host, int(port), timeout=_DEADLINE)
    try:
        offer = sched.offer()
        agent_address = offer["url"]["address"]
        agent = http.client.HTTPConnection(agent_address["ip"], agent_address["port"], timeout=_DEADLINE)
        # Both made before the descriptors run out: the cluster could not accept them afterwards.
        _get_json(master, "/state")
        _get_json(agent, "/state")

        free = 160 - cluster.open_files()
        count = free // (FDS_PER_TASK - 1) + 10  # even at 4 descriptors a task, some cannot start
        ids = [f"fd-{i:03d}" for i in range(count)]
        code, body = _launch(sched, offer, [_task(t, offer, "echo up; exec sleep 600") for t in ids])
        assert (code, body) == (202, b"")  # Mesos semantics: failures come back as updates, not as an error

        def settled() -> dict[str, dict[str, Any]] | None:
            latest = {s["task_id"]["value"]: s for s in sched.statuses()}
            done = all(t in latest and latest[t]["state"] in ("TASK_RUNNING", "TASK_FAILED") for t in ids)
            return latest if done else None

        latest = sched.wait(settled, f"a status for each of {count} tasks")
        running = sorted(t for t in ids if latest[t]["state"] == "TASK_RUNNING")
        failed = sorted(t for t in ids if latest[t]["state"] == "TASK_FAILED")
        assert running and failed, f"{len(running)} running, {len(failed)} failed: the limit was not reached"

        for task_id in failed:
            status = latest[task_id]
            assert status["message"].startswith("Failed to launch: [Errno 24] Too many open files"), status
            assert "at its limit of 160 open files" in status["message"]
            assert status["reason"] == "REASON_COMMAND_EXECUTOR_FAILED"
            assert status["source"] == "SOURCE_EXECUTOR"
            assert [s["state"] for s in sched.statuses() if s["task_id"]["value"] == task_id] == ["TASK_FAILED"]
            assert not (cluster.running_dir() / f"{task_id}.json").exists()

        pids = {}
        for task_id in running:
            record = orjson.loads((cluster.running_dir() / f"{task_id}.json").read_bytes())
            assert pid_alive(record["pid"]), f"{task_id} is reported running but has no process"
            pids[task_id] = record["pid"]
        sandbox = cluster.data_dir / "cluster" / "agents" / "agent-1" / "sandboxes"
        outputs = [next(sandbox.glob(f"*/{task_id}/stdout.log")) for task_id in running]
        eventually(lambda: all(out.read_text() == "up\n" for out in outputs), timeout=_DEADLINE,
                   what="the output of every running task")

        # The master keeps exactly the tasks that run. Implicit reconciliation lists its live tasks;
        # the explicit one after it marks the end of that list (events keep their order).
        before = len(sched.statuses())
        assert sched.call("RECONCILE", reconcile={"tasks": []})[0] == 202
        marker = {"task_id": {"value": "end-of-reconciliation"}}
        assert sched.call("RECONCILE", reconcile={"tasks": [marker]})[0] == 202
        sched.wait(lambda: any(s["task_id"]["value"] == "end-of-reconciliation" for s in sched.statuses()[before:]),
                   "the reconciliation")
        reconciled = [s for s in sched.statuses()[before:] if s["task_id"]["value"] != "end-of-reconciliation"]
        assert sorted(s["task_id"]["value"] for s in reconciled) == running
        assert {s["state"] for s in reconciled} == {"TASK_RUNNING"}
        frameworks = _get_json(master, "/state")["frameworks"]
        assert [f["tasks"] for f in frameworks] == [len(running)]
        # So does the agent; it remembers the ones that failed as completed.
        executors = _get_json(agent, "/state")["frameworks"][0]
        assert sorted(e["id"] for e in executors["executors"]) == running
        completed = {e["id"]: e["completed_tasks"][0]["state"] for e in executors["completed_executors"]}
        assert completed == {t: "TASK_FAILED" for t in failed}

        # Killing the running tasks gives their descriptors back, and the agent launches again.
        for task_id in running:
            assert sched.call("KILL", kill={"task_id": {"value": task_id}})[0] == 202
        acknowledged: set[str] = set()

        def acknowledging(predicate: Callable[[], bool]) -> Callable[[], bool]:
            """`predicate`, once every update come so far is acknowledged: the master holds a task's
            next update until then, as Mesos does."""
            def check() -> bool:
                for status in sched.statuses():
                    if "uuid" in status and status["uuid"] not in acknowledged:
                        sched.acknowledge(status)
                        acknowledged.add(status["uuid"])
                return predicate()
            return check

        def all_killed() -> bool:
            killed = {s["task_id"]["value"] for s in sched.statuses() if s["state"] == "TASK_KILLED"}
            return killed >= set(running)

        eventually(acknowledging(all_killed), timeout=_DEADLINE, what="TASK_KILLED for every running task")
        assert not any(pid_alive(pid) for pid in pids.values())
        eventually(lambda: _get_json(master, "/state")["frameworks"][0]["tasks"] == 0, timeout=_DEADLINE,
                   what="no live task left in the master")
        offer = sched.offer()
        assert _launch(sched, offer, [_task("afterwards", offer, "echo fine")]) == (202, b"")
        eventually(acknowledging(lambda: any(s["task_id"]["value"] == "afterwards" and s["state"] == "TASK_FINISHED"
                                             for s in sched.statuses())),
                   timeout=_DEADLINE, what="the task launched afterwards to finish")
        assert "Too many open files" in cluster.log()  # the agent says why, too
    finally:
        sched.close()
        master.close()


def test_sing_cluster_raises_its_soft_open_files_limit_and_tasks_keep_the_original(tmp_path: Path) -> None:
    hard = _nofile_limits(os.getpid())[1]
    if hard <= 256:
        pytest.skip(f"the hard open-files limit here is only {hard}")
    cluster = ClusterProcess(tmp_path / "raised", 256, hard)
    try:
        assert _nofile_limits(cluster.proc.pid) == (hard, hard)
        assert f"soft limit raised from 256 to the hard limit {hard}" in cluster.log()
        sched = RawScheduler(cluster.address)
        try:
            offer = sched.offer()
            assert _launch(sched, offer, [_task("child", offer, "exec sleep 600")]) == (202, b"")
            sched.wait(lambda: any(s["task_id"]["value"] == "child" and s["state"] == "TASK_RUNNING"
                                   for s in sched.statuses()), "the task to run")
            pid = orjson.loads((cluster.running_dir() / "child.json").read_bytes())["pid"]
            # A task sees the limit the cluster was started with, as it did before the cluster raised its own.
            assert _nofile_limits(pid) == (256, hard)
        finally:
            sched.close()
    finally:
        cluster.stop()


_EMBEDDED = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[2])))
from sing_backend.cluster import EmbeddedCluster, default_agents
with EmbeddedCluster(Path(sys.argv[1]), default_agents(1)):
    print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_embedded_cluster_raises_its_soft_open_files_limit(tmp_path: Path) -> None:
    # The backend's local mode runs the cluster in its own process, as EmbeddedCluster.
    hard = _nofile_limits(os.getpid())[1]
    if hard <= 256:
        pytest.skip(f"the hard open-files limit here is only {hard}")
    done = subprocess.run([sys.executable, "-c", _EMBEDDED, str(tmp_path / "embedded"), str(hard)],
                          capture_output=True, text=True, timeout=_START_DEADLINE, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(hard), str(hard)]


def test_a_task_its_agent_cannot_launch_fails_alone(tmp_path: Path) -> None:
    """The master's backstop, for a failure the agent does not turn into a status itself: an executor
    whose environment holds a NUL byte (Popen refuses it with ValueError)."""
    cluster = EmbeddedCluster(tmp_path / "c", default_agents(1), heartbeat_interval=1.0)
    cluster.start()
    sched: RawScheduler | None = None
    try:
        sched = RawScheduler(cluster.master_address)
        offer = sched.offer()
        broken = {
            "name": "broken", "task_id": {"value": "broken"}, "agent_id": offer["agent_id"],
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.01}}],
            "executor": {"executor_id": {"value": "broken-executor"}, "command": {
                "value": "true", "environment": {"variables": [{"name": "BAD", "value": "a\0b"}]}}},
        }
        tasks = [_task("before", offer, "exec sleep 600"), broken, _task("after", offer, "exec sleep 600")]
        assert _launch(sched, offer, tasks) == (202, b"")

        def all_reported() -> dict[str, dict[str, Any]] | None:
            latest = {s["task_id"]["value"]: s for s in sched.statuses()}  # type: ignore[union-attr]
            return latest if {"before", "broken", "after"} <= latest.keys() else None

        latest = sched.wait(all_reported, "a status for each task")
        assert latest["before"]["state"] == latest["after"]["state"] == "TASK_RUNNING"
        failed = latest["broken"]
        assert failed["state"] == "TASK_FAILED" and failed["message"] == "Failed to launch: embedded null byte"
        assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED" and failed["source"] == "SOURCE_AGENT"
        sched.acknowledge(failed)
        host, port = cluster.master_address.rsplit(":", 1)
        master = http.client.HTTPConnection(host, int(port), timeout=_DEADLINE)
        try:
            assert [f["tasks"] for f in _get_json(master, "/state")["frameworks"]] == [2]
        finally:
            master.close()
        # The master remembers it as failed.
        before = len(sched.statuses())
        assert sched.call("RECONCILE", reconcile={"tasks": [{"task_id": {"value": "broken"}}]})[0] == 202
        reconciled = sched.wait(lambda: next((s for s in sched.statuses()[before:]  # type: ignore[union-attr]
                                              if s["task_id"]["value"] == "broken"), None), "reconciliation")
        assert reconciled["state"] == "TASK_FAILED" and reconciled["reason"] == "REASON_RECONCILIATION"
    finally:
        if sched is not None:
            sched.close()
        cluster.stop()
