"""Subscribe, offers, launching real processes, exit codes, sandbox layout, HTTP reachability."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import httpx

from sing_backend.cluster import EmbeddedCluster

from .conftest import Harness
from .helpers import Recorder, eventually, port_ranges, scalar, start_driver, task_info


def test_subscribe_offers_one_offer_per_agent_with_racks_and_ports(harness: Harness) -> None:
    sched, cluster = harness.sched, harness.cluster
    offers = {a: sched.offer_for(a) for a in ("agent-1", "agent-2", "agent-3")}
    assert sched.count("registered") == 1
    ranges = []
    for i, (agent_id, offer) in enumerate(sorted(offers.items()), start=1):
        assert offer["hostname"] == f"127.0.0.{i + 1}"
        assert scalar(offer, "cpus") == 4.0
        assert scalar(offer, "mem") == 4096.0
        assert scalar(offer, "disk") == 20480.0
        attrs = {a["name"]: a["text"]["value"] for a in offer["attributes"] if a["type"] == "TEXT"}
        assert attrs == {"rackid": "rack-1" if i % 2 else "rack-2"}
        address = offer["url"]["address"]
        assert f"http://{address['hostname']}:{address['port']}" == cluster.agent_url(agent_id)
        (begin, end), = port_ranges(offer)
        assert end - begin + 1 == 1000
        ranges.append((begin, end))
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    # Nothing is offered twice while those offers are outstanding.
    assert len(sched.offers) == 3


def test_task_serves_http_on_its_agent_host_and_port(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-2")
    low, high = port_ranges(offer)[0]
    port = random.randint(low, high)  # other clusters may run on this machine at the same time
    info = task_info("web-1", offer, "exec python3 -m http.server $PORT0", ports=[port])
    started = time.monotonic()
    harness.launch(offer, [info])
    running = sched.status("web-1", "TASK_RUNNING")
    assert time.monotonic() - started < 1.0
    assert running["agent_id"] == {"value": "agent-2"}
    assert running["source"] == "SOURCE_EXECUTOR"
    assert running["executor_id"] == {"value": "web-1"}
    assert "uuid" in running

    def get() -> bool:
        try:
            return httpx.get(f"http://{offer['hostname']}:{port}/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(get, what="the task's HTTP server")
    harness.driver.killTask({"value": "web-1"})
    sched.status("web-1", "TASK_KILLED")
    assert sched.states("web-1") == ["TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]


def test_output_and_sandbox_layout(harness: Harness) -> None:
    sched, cluster = harness.sched, harness.cluster
    offer = sched.offer_for("agent-1")
    command = 'echo "out $MESOS_TASK_ID $GREETING"; echo err >&2; pwd; echo "$MESOS_SANDBOX"'
    harness.launch(offer, [task_info("files-1", offer, command, env={"GREETING": "hi"})])
    finished = sched.status("files-1", "TASK_FINISHED")
    assert finished["message"] == "Exited with status 0"
    sandbox = cluster.sandbox_dir("files-1")
    assert sandbox == cluster.work_dir / "agents" / "agent-1" / "sandboxes" / "files-1"
    task_dir = sandbox / "files-1"
    stdout = (task_dir / "stdout.log").read_text().splitlines()
    assert stdout == ["out files-1 hi", str(task_dir / "app"), str(task_dir)]
    assert (task_dir / "stderr.log").read_text() == "err\n"
    assert (task_dir / "app").is_dir() and (task_dir / "logs").is_dir()
    assert json.loads((task_dir / "task.json").read_text())["task_id"] == {"value": "files-1"}
    assert not (cluster.work_dir / "agents" / "agent-1" / "running" / "files-1.json").exists()


def test_exit_statuses(harness: Harness) -> None:
    sched = harness.sched
    offer = sched.offer_for("agent-3")
    tasks = [
        task_info("ok", offer, "true"),
        task_info("three", offer, "exit 3"),
        task_info("segv", offer, "kill -SEGV $$"),
        task_info("argv", offer, {"shell": False, "value": "/bin/echo", "arguments": ["echo", "a b"]}),
        task_info("missing", offer, {"shell": False, "value": "/nonexistent/binary"}),
    ]
    harness.launch(offer, tasks)
    assert sched.status("ok", "TASK_FINISHED")["message"] == "Exited with status 0"
    failed = sched.status("three", "TASK_FAILED")
    assert failed["message"] == "Exited with status 3"
    assert sched.status("segv", "TASK_FAILED")["message"] == "Terminated by signal SIGSEGV"
    sched.status("argv", "TASK_FINISHED")
    argv_out = harness.cluster.sandbox_dir("argv") / "argv" / "stdout.log"  # type: ignore[operator]
    assert argv_out.read_text() == "a b\n"
    assert sched.status("missing", "TASK_FAILED")["message"].startswith("Failed to launch")


class _LaunchOnOffer(Recorder):
    """Launches pending tasks from inside resourceOffers, on pymesos' IO thread, as a real scheduler does."""

    def __init__(self, pending: list[str]) -> None:
        super().__init__()
        self.pending = pending

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:
        super().resourceOffers(driver, offers)
        try:
            for offer in offers:
                if self.pending:
                    self.forget(offer)
                    driver.launchTasks(offer["id"], [task_info(self.pending.pop(), offer, "true")])
        except Exception as exc:  # never let an exception abort the driver
            self._add("error", repr(exc))


def test_launching_from_the_offer_callback_chains_quickly(cluster: EmbeddedCluster) -> None:
    names = [f"chain-{i}" for i in range(30)]
    sched = _LaunchOnOffer(list(names))
    started = time.monotonic()
    driver = start_driver(cluster.master_address, sched)
    try:
        for name in names:
            sched.status(name, "TASK_FINISHED")
        # Each launch's leftover comes back as a new offer at once, which launches the next task.
        assert time.monotonic() - started < 5
        assert sched.count("error") == 0
    finally:
        driver.stop(failover=True)
        driver.join()
