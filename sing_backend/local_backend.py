"""Run `sing backend` as a subprocess on a free port (tests, benchmarks), and poll with a deadline."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, AssertionError, KeyError, IndexError) as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})"
                                                                            if last_exc else ""))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Backend:
    """`sing backend` in a subprocess with its own data dir and port."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Agents' port ranges at a random base, so backends running side by side (or a demo left
        # running) do not hand out the same ports.
        self.env = {**os.environ, "SING_KILL_GRACE_SECONDS": "2", "SING_TICK_SECONDS": "0.2",
                    "SING_LOG_LEVEL": "warning", "SING_AGENTS__PORTS_PER_AGENT": "100",
                    "SING_AGENTS__FIRST_PORT": str(random.randrange(10000, 19000, 100)), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "backend.log"
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def start(self, wait_connected: bool = True) -> Backend:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sing_backend.cli", "backend", "--port", str(self.port), "--data-dir",
             str(self.data_dir)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._up, timeout=30, what=f"backend on {self.url} (log: {self.log_path})")
        if wait_connected:
            wait_for(lambda: self.get("/api/state")["hostStates"][0]["mesosConnected"], timeout=20,
                     what="scheduler connected to the cluster")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"backend exited with {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
        try:
            return self.client.get("/api/state").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.client.close()

    def get(self, path: str, **kw: Any) -> Any:
        r = self.client.get(path, **kw)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.post(path, json=body)
        assert r.status_code == expect, f"POST {path} -> {r.status_code}: {r.text}"
        return r.json()

    def put(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.put(path, json=body)
        assert r.status_code == expect, f"PUT {path} -> {r.status_code}: {r.text}"
        return r.json()

    def delete(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.request("DELETE", path, json=body)
        assert r.status_code == expect, f"DELETE {path} -> {r.status_code}: {r.text}"
        return r.json()

    # ---- conveniences
    def active_tasks(self, request_id: str, state: str | None = "TASK_RUNNING") -> list[dict[str, Any]]:
        states = {t["taskId"]["id"]: t["taskState"] for t in self.get("/api/tasks/active/states")}
        return [t for t in self.get("/api/tasks/active") if t["taskId"]["requestId"] == request_id
                and (state is None or states.get(t["taskId"]["id"]) == state)]

    def create(self, request: dict[str, Any], deploy: dict[str, Any] | None = None) -> None:
        self.post("/api/requests", request)
        if deploy is not None:
            self.post("/api/deploys", {"deploy": {"requestId": request["id"], **deploy}})

    def task_pid(self, task_id: str) -> int:
        """The OS pid of a task's process, from the embedded cluster's records."""
        for rec in self.data_dir.glob(f"cluster/agents/*/running/{task_id}.json"):
            import json
            return int(json.loads(rec.read_text())["pid"])
        raise AssertionError(f"no process record for {task_id}")
