"""Runs the HTTP (and result-file) health checks the scheduler asks for, and reports the results.

Checks run concurrently with a cap, each bounded by its response timeout, without following
redirects and reading at most a few KB of the body, so a hanging, resetting, looping or chatty
endpoint costs one slot for `responseTimeoutSeconds` and never stalls the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .core import Scheduler
from .entities import TaskEntry
from .health import BODY_BYTES_KEPT, CheckResult, response_timeout_s

log = logging.getLogger(__name__)


def _ports(task: TaskEntry) -> list[int]:
    for r in task.task["mesosTask"]["resources"]:
        if r["name"] == "ports":
            return [x["begin"] for x in r["ranges"]["range"]]
    return []


@dataclass(frozen=True, slots=True)
class CheckJob:
    """One check to run, as plain data: the checker thread never touches scheduler state."""

    task_id: str
    url: str | None  # HTTP check
    method: str
    timeout: float
    startup: bool
    # Process-level check: this file must exist (on this machine, or read through the task's agent).
    result_file: Path | httpx.URL | None = None
    error: str | None = None  # the check cannot even be attempted (e.g. no such port)


class HealthChecker:
    """Dispatches due checks from the scheduler's loop to a checker thread with its own event loop.

    HTTP work (connections, TLS, parsing) then costs the scheduler's loop nothing but the hand-off,
    so thousands of checks a second do not delay offers and status updates.
    """

    def __init__(self, scheduler: Scheduler, locate_result_file: Callable[[TaskEntry, str], Path | httpx.URL | None],
                 max_concurrent: int = 200, poll_seconds: float = 0.25) -> None:
        self._scheduler = scheduler
        self._locate = locate_result_file
        self._max_concurrent = max_concurrent
        self._poll = poll_seconds
        self._in_flight: set[str] = set()
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name="health-checks", daemon=True)
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._scheduler.on_health_tracked = self._wakeup.set
        self._thread.start()
        self._runner = self._loop.create_task(self._dispatch_forever(), name="health-dispatch")

    async def stop(self) -> None:
        # Results still in flight are dropped: a check cut short by shutdown says nothing about the task.
        self._stopping = True
        if self._runner:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_http(), self._thread_loop).result(timeout=5)
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            await asyncio.to_thread(self._thread.join, 5)

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._thread_loop)
        self._http = httpx.AsyncClient(follow_redirects=False, verify=False,
                                       limits=httpx.Limits(max_connections=self._max_concurrent))
        self._slots = asyncio.Semaphore(self._max_concurrent)
        self._thread_loop.run_forever()
        self._thread_loop.close()

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # ---- scheduler loop side

    async def _dispatch_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._poll)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                for task in self._scheduler.due_health_checks(self._scheduler.clock()):
                    if task.id not in self._in_flight:
                        self._in_flight.add(task.id)
                        job = self._job(task)
                        asyncio.run_coroutine_threadsafe(self._run_job(job), self._thread_loop)
            except Exception:
                log.exception("health-check round failed")

    def _job(self, task: TaskEntry) -> CheckJob:
        hc = self._scheduler.healthcheck_for(task)
        assert hc is not None and task.health is not None
        startup = not task.health.results or all(r.refused for r in task.health.results)
        timeout = response_timeout_s(hc)
        if hc.uri is None and hc.healthcheckResultFilePath:
            return CheckJob(task.id, None, "GET", timeout, startup,
                            result_file=self._locate(task, hc.healthcheckResultFilePath))
        port = hc.portNumber
        if port is None:
            ports = _ports(task)
            index = hc.portIndex or 0
            if index >= len(ports):
                return CheckJob(task.id, None, "GET", timeout, startup, error=f"task has no port at index {index}")
            port = ports[index]
        scheme = "https" if (hc.protocol or "HTTP").startswith("HTTPS") else "http"
        return CheckJob(task.id, f"{scheme}://{task.tid.host}:{port}{hc.uri or '/'}", hc.method or "GET", timeout,
                        startup)

    def _deliver(self, task_id: str, result: CheckResult) -> None:
        self._in_flight.discard(task_id)
        if not self._stopping:
            self._scheduler.on_health_result(task_id, result)

    # ---- checker thread side

    async def _run_job(self, job: CheckJob) -> None:
        try:
            assert self._slots is not None
            async with self._slots:
                result = await self._execute(job)
        except Exception as exc:  # a check must always report back, or the task would never be checked again
            result = CheckResult(self._scheduler.clock(), error=f"{type(exc).__name__}: {exc}", startup=job.startup)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, job.task_id, result)

    async def _execute(self, job: CheckJob) -> CheckResult:
        now = self._scheduler.clock()
        if job.error:
            return CheckResult(now, error=job.error, startup=job.startup)
        if job.url is None:
            if await self._exists(job.result_file, job.timeout):
                return CheckResult(now, status_code=200, duration_ms=0, startup=job.startup)
            # Not there yet behaves like a refused connection: it only fails once startup is over.
            return CheckResult(now, error="the result file does not exist yet", refused=True, startup=job.startup)
        assert self._http is not None
        start = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout):
                async with self._http.stream(job.method, job.url, timeout=job.timeout) as resp:
                    body = b""
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) >= BODY_BYTES_KEPT:
                            break
            return CheckResult(now, status_code=resp.status_code, duration_ms=_ms_since(start),
                               body=body[:BODY_BYTES_KEPT].decode("utf-8", "replace"), startup=job.startup)
        except httpx.ConnectError as exc:
            return CheckResult(now, error=f"connection refused: {exc}", refused=True, startup=job.startup,
                               duration_ms=_ms_since(start))
        except (TimeoutError, httpx.TimeoutException):
            return CheckResult(now, error=f"no response within {job.timeout:g} s", startup=job.startup,
                               duration_ms=_ms_since(start))
        except httpx.HTTPError as exc:
            return CheckResult(now, error=f"{type(exc).__name__}: {exc}", startup=job.startup,
                               duration_ms=_ms_since(start))


    async def _exists(self, result_file: Path | httpx.URL | None, timeout: float) -> bool:
        """Whether a process-level check's file is there: on this machine, or asked of the task's agent
        (its files API answers 404 for a file that does not exist)."""
        if result_file is None or isinstance(result_file, Path):
            return result_file is not None and result_file.exists()
        assert self._http is not None
        resp = await self._http.get(result_file, timeout=timeout)
        if resp.status_code == 404:
            return False
        resp.raise_for_status()  # the agent's error is the check's (see _run_job)
        return True


def _ms_since(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)
