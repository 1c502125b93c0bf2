"""The agent's Mesos-style files API and /state."""

from __future__ import annotations

import os

import httpx

from .conftest import Harness
from .helpers import task_info

CONTENT = "héllo wörld\n".encode() + b"x" * 100 + b"\n"


def _finished_task(harness: Harness, task_id: str) -> tuple[str, str]:
    """Run a task that writes CONTENT to stdout; returns (agent url, task dir)."""
    offer = harness.sched.offer_for("agent-1")
    script = "printf 'h\\303\\251llo w\\303\\266rld\\n'; printf 'x%.0s' $(seq 100); echo"
    harness.launch(offer, [task_info(task_id, offer, script)])
    harness.sched.status(task_id, "TASK_FINISHED")
    sandbox = harness.cluster.sandbox_dir(task_id)
    assert sandbox is not None
    return harness.cluster.agent_url("agent-1"), str(sandbox / task_id)


def test_browse_read_download(harness: Harness) -> None:
    url, task_dir = _finished_task(harness, "files")
    stdout = f"{task_dir}/stdout.log"
    assert open(stdout, "rb").read() == CONTENT

    listing = httpx.get(f"{url}/files/browse", params={"path": task_dir}).json()
    by_path = {e["path"]: e for e in listing}
    names = ("app", "deploy.env", "finished.json", "logs", "stderr.log", "stdout.log", "task.json")
    assert set(by_path) == {f"{task_dir}/{n}" for n in names}
    entry = by_path[stdout]
    assert entry["size"] == len(CONTENT)
    assert entry["mode"] == "-rw-r--r--" or entry["mode"].startswith("-rw")
    assert by_path[f"{task_dir}/app"]["mode"].startswith("d")
    assert isinstance(entry["mtime"], int) and entry["nlink"] == 1 and entry["uid"] and entry["gid"]

    read = httpx.get(f"{url}/files/read", params={"path": stdout, "offset": -1}).json()
    assert read == {"data": "", "offset": len(CONTENT)}
    assert httpx.get(f"{url}/files/read", params={"path": stdout}).json()["offset"] == len(CONTENT)
    chunk = httpx.get(f"{url}/files/read", params={"path": stdout, "offset": 1, "length": 4}).json()
    assert chunk == {"data": "éll", "offset": 1, "next_offset": 5}  # byte offsets: é is two bytes
    chunk = httpx.get(f"{url}/files/read", params={"path": stdout, "offset": 0, "length": 2}).json()
    assert chunk == {"data": "h", "offset": 0, "next_offset": 1}  # a character cut in two waits for next read
    whole = httpx.get(f"{url}/files/read", params={"path": stdout, "offset": 0, "length": 10**9}).json()
    assert whole["data"].encode() == CONTENT
    tail = httpx.get(f"{url}/files/read", params={"path": stdout, "offset": len(CONTENT) - 3, "length": 10}).json()
    assert tail == {"data": "xx\n", "offset": len(CONTENT) - 3, "next_offset": len(CONTENT)}

    download = httpx.get(f"{url}/files/download", params={"path": stdout})
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.content == CONTENT


def test_paths_outside_the_sandboxes_are_refused(harness: Harness) -> None:
    url, task_dir = _finished_task(harness, "escape")
    os.symlink("/etc", f"{task_dir}/app/etc-link")
    os.symlink("../../../../..", f"{task_dir}/app/up-link")
    refused = [
        f"{task_dir}/../../../running",
        "/etc/passwd",
        f"{task_dir}/app/etc-link/passwd",
        f"{task_dir}/app/up-link",
        str(harness.cluster.work_dir),
    ]
    for endpoint in ("browse", "read", "download"):
        for path in refused:
            response = httpx.get(f"{url}/files/{endpoint}", params={"path": path, "offset": 0})
            assert response.status_code == 403, (endpoint, path)
            assert "message" in response.json()
    assert httpx.get(f"{url}/files/read", params={"path": f"{task_dir}/nope", "offset": 0}).status_code == 404
    assert httpx.get(f"{url}/files/browse", params={"path": "relative/path"}).status_code == 400
    assert httpx.get(f"{url}/files/browse").status_code == 400
    # Another agent's server does not serve this agent's sandboxes.
    other = harness.cluster.agent_url("agent-2")
    assert httpx.get(f"{other}/files/browse", params={"path": task_dir}).status_code == 403


def test_state_finds_sandbox_directories(harness: Harness) -> None:
    _finished_task(harness, "done-task")
    offer = harness.sched.offer_for("agent-1")
    harness.launch(offer, [task_info("live-task", offer, "sleep 1000")])
    harness.sched.status("live-task", "TASK_RUNNING")
    state = httpx.get(f"{harness.cluster.agent_url('agent-1')}/state").json()
    assert state["id"] == "agent-1" and state["hostname"] == "127.0.0.2"
    (framework,) = state["frameworks"]
    assert framework["id"] == harness.sched.framework_id
    (live,) = framework["executors"]
    assert live["id"] == "live-task"
    assert live["directory"] == str(harness.cluster.sandbox_dir("live-task"))
    assert live["tasks"][0]["state"] == "TASK_RUNNING"
    (done,) = framework["completed_executors"]
    assert done["directory"] == str(harness.cluster.sandbox_dir("done-task"))
    assert done["completed_tasks"][0]["state"] == "TASK_FINISHED"
