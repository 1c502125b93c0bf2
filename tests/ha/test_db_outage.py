"""Production mode under load while its servers go away: with MariaDB down, live state is unaffected,
history answers 503 and its writes wait and are retried, so nothing is lost once the database is back;
with ZooKeeper stopped and restarted, running tasks are neither lost nor launched twice."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sing_backend.local_backend import Backend, free_port, wait_for
from tests.ha.conftest import SharedCluster
from tests.servers import MariaDBServer, ZooKeeperServer, require_zookeeper
from tests.servers import mariadb as mariadb  # a MariaDB server of the test's own, a fixture

RES = {"cpus": 0.01, "memoryMb": 8}
JOB = "jobs"
# Short-lived runs, at most this many at once: the on-demand cap turns extra runs into 429s, so the load
# keeps a steady trickle of finished tasks whatever the machine's speed.
JOB_CONCURRENCY = 3
# A history read gives up on the database after this long and answers 503; short, so that a read during the
# outage does not wait the default 10 s.
HISTORY_READ_TIMEOUT = "2"
OUTAGE_MESSAGE = "the history database is not answering"
# Enough runs finished during the outage that their history is a real backlog, not one lucky batch.
RUNS_FINISHED_IN_OUTAGE = 6


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SharedCluster]:
    shared = SharedCluster(tmp_path)
    try:
        yield shared
    finally:
        shared.stop()


def mesos_backend(data_dir: Path, cluster: SharedCluster, zk_hosts: str, db_url: str) -> Backend:
    port = free_port()
    backend = Backend(data_dir, port=port, env={
        "SING_MODE": "mesos", "SING_MESOS_MASTER": cluster.address, "SING_ZK_HOSTS": zk_hosts,
        "SING_ZK_ROOT": f"/sing-outage-{port}", "SING_DB_URL": db_url, "SING_ZK_SESSION_TIMEOUT": "2",
        "SING_ADVERTISE_URL": f"http://127.0.0.1:{port}", "SING_HISTORY_READ_TIMEOUT_SECONDS": HISTORY_READ_TIMEOUT})
    return backend


def is_leader(b: Backend) -> bool:
    state = b.get("/api/state")
    return bool(state["hostStates"][0]["master"] and state["hostStates"][0]["mesosConnected"])


def running_ids(b: Backend, request_id: str) -> set[str]:
    return {t["taskId"]["id"] for t in b.active_tasks(request_id)}


def live_run_ids(b: Backend, request_id: str) -> set[str]:
    """Runs the live state still holds (pending or active): every other acknowledged run has finished."""
    active = {t["taskRequest"]["pendingTask"].get("runId") for t in b.get("/api/tasks/active")
              if t["taskId"]["requestId"] == request_id}
    pending = {p["pendingTask"].get("runId") for p in b.get("/api/tasks/scheduled")
               if p["pendingTask"]["pendingTaskId"]["requestId"] == request_id}
    return (active | pending) - {None}


def master_task_count(cluster: SharedCluster) -> int:
    """Tasks the Mesos master holds as active: what its operator sees, whoever leads the framework."""
    state = httpx.get(f"http://{cluster.address}/state", timeout=5).json()
    return sum(framework["tasks"] for framework in state["frameworks"])


def task_pid(cluster_dir: Path, task_id: str) -> int:
    """The OS pid of a task's process, from the record its agent keeps under the cluster's data dir."""
    for record in cluster_dir.glob(f"cluster/agents/*/running/{task_id}.json"):
        return int(json.loads(record.read_text())["pid"])
    raise AssertionError(f"no process record for {task_id}")


def holds_for(check: Callable[[], Any], seconds: float, what: str) -> None:
    """Assert `check` stays true for `seconds`: a wrong replacement or a doubled task would show up in it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.1)


class RunLoad:
    """Starts runs of an on-demand request from a thread of its own, as a busy client would.

    Every acknowledged run is recorded with the time it was acknowledged; any answer but 200, or 429
    (the on-demand cap: try again later), is recorded as an error for the test to report.
    """

    def __init__(self, base_url: str, request_id: str) -> None:
        self.request_id = request_id
        self.client = httpx.Client(base_url=base_url, timeout=10.0)
        self.acknowledged: dict[str, float] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-load", daemon=True)

    def start(self) -> RunLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.close()

    def acknowledged_since(self, since: float) -> set[str]:
        with self._lock:
            return {run for run, at in self.acknowledged.items() if at >= since}

    def all_acknowledged(self) -> set[str]:
        with self._lock:
            return set(self.acknowledged)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            run_id = f"run-{number}"
            try:
                r = self.client.post(f"/api/requests/request/{self.request_id}/run", json={"runId": run_id})
            except httpx.HTTPError as exc:
                self.errors.append(f"{run_id}: {exc!r}")
            else:
                if r.status_code == 200:
                    with self._lock:
                        self.acknowledged[run_id] = time.monotonic()
                    number += 1
                elif r.status_code != 429:
                    self.errors.append(f"{run_id}: {r.status_code} {r.text}")
            self._stop.wait(0.1)


def history_rows(b: Backend, request_id: str) -> list[dict[str, Any]]:
    r = b.client.get(f"/api/history/request/{request_id}/tasks", params={"count": 1000})
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    rows: list[dict[str, Any]] = r.json()
    return rows


def test_database_outage_keeps_live_state_and_loses_no_history(tmp_path: Path, zookeeper: ZooKeeperServer,
                                                                mariadb: MariaDBServer, cluster: SharedCluster):
    db_url = mariadb.create_database()
    b = mesos_backend(tmp_path / "b", cluster, zookeeper.hosts, db_url)
    load: RunLoad | None = None
    try:
        b.start(wait_connected=False)
        wait_for(lambda: is_leader(b), timeout=30, what="leader connected to the cluster")
        b.create({"id": "steady", "requestType": "WORKER", "instances": 2},
                 {"id": "v1", "command": "sleep 1000", "resources": RES, "considerHealthyAfterRunningForSeconds": 0})
        b.create({"id": JOB, "requestType": "ON_DEMAND", "instances": JOB_CONCURRENCY},
                 {"id": "v1", "command": "sleep 0.3", "resources": RES})
        steady = wait_for(lambda: len(ids := running_ids(b, "steady")) == 2 and ids, timeout=30, what="2 workers")
        load = RunLoad(b.url, JOB).start()
        # History works before the outage: the first runs are recorded.
        wait_for(lambda: len(history_rows(b, JOB)) >= 2, timeout=30, what="first runs in history")

        mariadb.stop()
        outage_began = time.monotonic()

        # The live API carries on: new requests, scaling and launches need no database.
        b.create({"id": "born-in-outage", "requestType": "WORKER", "instances": 1},
                 {"id": "v1", "command": "sleep 1000", "resources": RES, "considerHealthyAfterRunningForSeconds": 0})
        b.put("/api/requests/request/steady/scale", {"instances": 3})
        scaled = wait_for(lambda: len(ids := running_ids(b, "steady")) == 3 and ids, timeout=30,
                          what="scaled to 3 during the outage")
        assert steady < scaled, "a running worker was lost while the database was down"
        born = wait_for(lambda: running_ids(b, "born-in-outage"), timeout=30, what="new request's task running")
        state = b.get("/api/state")
        assert state["activeRequests"] >= 3 and state["activeTasks"] >= 4

        # History says why it cannot answer, rather than failing obscurely (500) or hanging.
        r = b.client.get(f"/api/history/request/{JOB}/tasks")
        assert r.status_code == 503 and OUTAGE_MESSAGE in r.json()["message"], f"{r.status_code} {r.text}"
        r = b.client.get("/api/history/request/steady/requests")
        assert r.status_code == 503 and OUTAGE_MESSAGE in r.json()["message"], f"{r.status_code} {r.text}"

        # Short tasks keep launching and finishing: their history is the backlog that must not be lost.
        def finished_in_outage() -> set[str]:
            return load.acknowledged_since(outage_began) - live_run_ids(b, JOB) if load else set()

        wait_for(lambda: len(finished_in_outage()) >= RUNS_FINISHED_IN_OUTAGE, timeout=45,
                 what=f"{RUNS_FINISHED_IN_OUTAGE} runs finished while the database was down")
        outage_runs = finished_in_outage()
        # "Where is my run?" for a finished one is a history question: 503 as well, never a wrong 404.
        r = b.client.get(f"/api/track/run/{JOB}/{min(outage_runs)}")
        assert r.status_code == 503 and OUTAGE_MESSAGE in r.json()["message"], f"{r.status_code} {r.text}"
        assert b.get("/api/state")["hostStates"][0]["master"], "leadership lost while the database was down"

        mariadb.start(port=mariadb.port)
        load.stop()
        acknowledged = load.all_acknowledged()
        assert not load.errors, f"the live API failed during the outage: {load.errors[:5]}"
        wait_for(lambda: not live_run_ids(b, JOB), timeout=30, what="the last runs finished")

        # Every run is in history once, finished: the queued writes were retried, none dropped or doubled.
        rows = wait_for(lambda: len(rows := history_rows(b, JOB)) >= len(acknowledged) and rows, timeout=45,
                        what="history caught up after the database returned")
        run_counts = Counter(row.get("runId") for row in rows)
        assert set(run_counts) == acknowledged, f"missing: {acknowledged - set(run_counts)}, " \
                                                f"unknown: {set(run_counts) - acknowledged}"
        assert all(n == 1 for n in run_counts.values()), f"runs recorded twice: {run_counts.most_common(3)}"
        assert len({row["taskId"]["id"] for row in rows}) == len(rows)
        assert {row["lastTaskStatus"] for row in rows} == {"TASK_FINISHED"}
        # Committed to the database itself, not only shown from the backend's queue of writes.

        def committed_runs() -> Counter[str]:
            rows = mariadb.query(db_url.rsplit("/", 1)[1],
                                 "SELECT run_id, COUNT(*) FROM task_history WHERE request_id = %s GROUP BY run_id", JOB)
            return Counter({str(run): int(str(n)) for run, n in rows})

        committed = wait_for(lambda: set(c := committed_runs()) == acknowledged and c, timeout=45,
                             what="every run committed to the database")
        assert all(n == 1 for n in committed.values()), f"runs stored twice: {committed.most_common(3)}"
        # And each outage task's own history has every status update it went through, each once.
        for row in rows:
            if row["runId"] not in outage_runs:
                continue
            task = b.get(f"/api/history/task/{row['taskId']['id']}")
            states = [u["taskState"] for u in task["taskUpdates"]]
            assert states[-1] == "TASK_FINISHED" and "TASK_RUNNING" in states, states
            assert len(states) == len(set(states)), f"status updates recorded twice: {states}"
        # Request history written during the outage is there too: the creation and the scale.
        events = [e["eventType"] for e in b.get("/api/history/request/born-in-outage/requests")]
        assert events.count("CREATED") == 1, events
        events = [e["eventType"] for e in b.get("/api/history/request/steady/requests")]
        assert events.count("SCALED") == 1, events
        # The workers ran through all of it untouched.
        assert running_ids(b, "steady") == scaled and running_ids(b, "born-in-outage") == born
    finally:
        if load is not None:
            load.stop()
        b.close()


def test_history_read_with_nothing_queued_answers_503(tmp_path: Path, zookeeper: ZooKeeperServer,
                                                      mariadb: MariaDBServer, cluster: SharedCluster):
    """An idle backend (no history write waiting) asked for history while the database is down."""
    db_url = mariadb.create_database()
    b = mesos_backend(tmp_path / "b", cluster, zookeeper.hosts, db_url)
    try:
        b.start(wait_connected=False)
        wait_for(lambda: is_leader(b), timeout=30, what="leader connected to the cluster")
        b.post("/api/requests", {"id": "idle", "requestType": "WORKER"})
        # Committed, so that nothing is queued when the database goes.
        count = "SELECT COUNT(*) FROM request_history WHERE request_id = %s"
        wait_for(lambda: mariadb.query(db_url.rsplit("/", 1)[1], count, "idle")[0][0], timeout=30,
                 what="creation committed")
        mariadb.stop()
        r = b.client.get("/api/history/request/idle/requests")
        assert r.status_code == 503 and OUTAGE_MESSAGE in r.json()["message"], f"{r.status_code} {r.text}"
    finally:
        b.close()


def test_zookeeper_restart_under_load_keeps_running_tasks(tmp_path: Path, mariadb: MariaDBServer,
                                                          cluster: SharedCluster):
    require_zookeeper()
    (tmp_path / "zk").mkdir()
    zk = ZooKeeperServer(tmp_path / "zk")
    zk.start()
    b = mesos_backend(tmp_path / "b", cluster, zk.hosts, mariadb.create_database())
    try:
        b.start(wait_connected=False)
        wait_for(lambda: is_leader(b), timeout=30, what="leader connected to the cluster")
        b.create({"id": "steady", "requestType": "WORKER", "instances": 3},
                 {"id": "v1", "command": "sleep 1000", "resources": RES, "considerHealthyAfterRunningForSeconds": 0})
        b.create({"id": JOB, "requestType": "ON_DEMAND"}, {"id": "v1", "command": "sleep 2", "resources": RES})
        steady = wait_for(lambda: len(ids := running_ids(b, "steady")) == 3 and ids, timeout=30, what="3 workers")
        # Runs that are running when ZooKeeper goes, and finish while no one leads.
        runs = {f"short-{n}" for n in range(3)}
        for run_id in sorted(runs):
            b.post(f"/api/requests/request/{JOB}/run", {"runId": run_id})
        wait_for(lambda: len(b.active_tasks(JOB)) == len(runs), timeout=30, what="short runs running")

        zk.stop()
        wait_for(lambda: b.get("/api/state")["zookeeperConnected"] is False, timeout=30, what="ZooKeeper loss seen")
        # Reads keep answering from the last snapshot while nobody leads; writes are refused, not lost.
        assert running_ids(b, "steady") == steady
        r = b.client.put("/api/requests/request/steady/scale", json={"instances": 4})
        assert r.status_code == 503, f"{r.status_code} {r.text}"
        # A worker crashes while nobody leads: it is to be replaced once, and only it.
        crashed = sorted(steady)[0]
        os.kill(task_pid(tmp_path, crashed), signal.SIGKILL)
        survivors = steady - {crashed}
        # Outlast the short runs and the crash, so that the scheduler hears of them only once it leads again.
        wait_for(lambda: master_task_count(cluster) == len(survivors), timeout=30,
                 what="short runs and the crashed worker gone during the outage")
        assert b.get("/api/state")["zookeeperConnected"] is False

        zk.start(port=zk.port)
        wait_for(lambda: is_leader(b), timeout=45, what="leading again after ZooKeeper returned")
        # Reconciled: the short runs finished, not relaunched; the crashed worker replaced by one new task.
        wait_for(lambda: not b.active_tasks(JOB, state=None), timeout=30, what="short runs reconciled as finished")
        after = wait_for(lambda: len(ids := running_ids(b, "steady")) == 3 and survivors < ids and ids, timeout=30,
                         what="the crashed worker replaced")

        def unchanged() -> bool:
            return running_ids(b, "steady") == after and len(b.active_tasks("steady", state=None)) == 3 \
                and master_task_count(cluster) == 3

        holds_for(unchanged, seconds=3, what="the workers that ran through the outage, one replacement, no others")
        rows = wait_for(lambda: len(rows := history_rows(b, JOB)) == len(runs) and rows, timeout=30,
                        what="short runs in history")
        assert {row["runId"] for row in rows} == runs
        assert {row["lastTaskStatus"] for row in rows} == {"TASK_FINISHED"}
        crash = b.get(f"/api/history/task/{crashed}")["taskUpdates"]
        assert crash[-1]["taskState"] in ("TASK_FAILED", "TASK_KILLED", "TASK_LOST"), crash[-1]
        # And it schedules again.
        b.put("/api/requests/request/steady/scale", {"instances": 4})
        wait_for(lambda: len(ids := running_ids(b, "steady")) == 4 and after < ids, timeout=30,
                 what="scaled after ZooKeeper returned")
    finally:
        b.close()
        zk.stop()
