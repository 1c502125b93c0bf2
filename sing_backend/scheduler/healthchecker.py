"""Runs the HTTP (and result-file) health checks the scheduler asks for, and reports the results.

Checks run concurrently with a cap, each bounded by its response timeout, without following
redirects and reading at most a few KB of the body, so a hanging, resetting, looping or chatty
endpoint costs one slot for `responseTimeoutSeconds` and never stalls the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

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


class HealthChecker:
    def __init__(self, scheduler: Scheduler, read_sandbox_file: Callable[[TaskEntry, str], bool | None],
                 max_concurrent: int = 200, poll_seconds: float = 0.1) -> None:
        self._scheduler = scheduler
        self._file_exists = read_sandbox_file
        self._slots = asyncio.Semaphore(max_concurrent)
        self._poll = poll_seconds
        self._in_flight: set[str] = set()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(follow_redirects=False, verify=False,
                                       limits=httpx.Limits(max_connections=max_concurrent))

    def start(self) -> None:
        self._scheduler.on_health_tracked = self._wakeup.set
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="health-checker")

    async def stop(self) -> None:
        if self._runner:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        await self._http.aclose()

    async def _run(self) -> None:
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
                        asyncio.get_running_loop().create_task(self._check(task))
            except Exception:
                log.exception("health-check round failed")

    async def _check(self, task: TaskEntry) -> None:
        try:
            async with self._slots:
                hc = self._scheduler.healthcheck_for(task)
                if hc is None or task.health is None:
                    return
                if hc.uri is None and hc.healthcheckResultFilePath:
                    result = await self._check_file(task, hc.healthcheckResultFilePath)
                else:
                    result = await self._check_http(task)
            self._scheduler.on_health_result(task.id, result)
        except Exception:
            log.exception("health check of %s failed unexpectedly", task.id)
        finally:
            self._in_flight.discard(task.id)

    async def _check_file(self, task: TaskEntry, path: str) -> CheckResult:
        now = self._scheduler.clock()
        found = await asyncio.to_thread(self._file_exists, task, path)
        if found:
            return CheckResult(now, status_code=200, duration_ms=0)
        # Not there yet behaves like a refused connection: it only fails once startup is over.
        return CheckResult(now, error=f"{path} does not exist yet", refused=True, startup=True)

    async def _check_http(self, task: TaskEntry) -> CheckResult:
        hc = self._scheduler.healthcheck_for(task)
        assert hc is not None and task.health is not None
        port = hc.portNumber
        if port is None:
            ports = _ports(task)
            index = hc.portIndex or 0
            if index >= len(ports):
                return CheckResult(self._scheduler.clock(), error=f"task has no port at index {index}")
            port = ports[index]
        scheme = "https" if (hc.protocol or "HTTP").startswith("HTTPS") else "http"
        url = f"{scheme}://{task.tid.host}:{port}{hc.uri or '/'}"
        timeout = response_timeout_s(hc)
        startup = not task.health.results or all(r.refused for r in task.health.results)
        start = time.perf_counter()
        now = self._scheduler.clock()
        try:
            async with asyncio.timeout(timeout):
                async with self._http.stream(hc.method or "GET", url, timeout=timeout) as resp:
                    body = b""
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) >= BODY_BYTES_KEPT:
                            break
            return CheckResult(now, status_code=resp.status_code, duration_ms=int((time.perf_counter() - start) * 1000),
                               body=body[:BODY_BYTES_KEPT].decode("utf-8", "replace"), startup=startup)
        except httpx.ConnectError as exc:
            return CheckResult(now, error=f"connection refused: {exc}", refused=True, startup=startup,
                               duration_ms=int((time.perf_counter() - start) * 1000))
        except (TimeoutError, httpx.TimeoutException):
            return CheckResult(now, error=f"no response within {timeout:g} s", startup=startup,
                               duration_ms=int((time.perf_counter() - start) * 1000))
        except httpx.HTTPError as exc:
            return CheckResult(now, error=f"{type(exc).__name__}: {exc}", startup=startup,
                               duration_ms=int((time.perf_counter() - start) * 1000))
