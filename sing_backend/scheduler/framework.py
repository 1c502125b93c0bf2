"""The pymesos side: callbacks from the driver's IO thread in, calls to the master out.

pymesos runs every callback on its own IO thread and kills the driver when one raises, so the
callbacks only hand events to the asyncio loop. Calls go out on one worker thread, in order, so a
slow HTTP call to the master never stalls the event loop.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from typing import Any

from pymesos import MesosSchedulerDriver, Scheduler

from .core import Scheduler as SingScheduler

log = logging.getLogger(__name__)



class FrameworkCallbacks(Scheduler):  # type: ignore[misc]
    def __init__(self, scheduler: SingScheduler, loop: Any) -> None:
        self._scheduler = scheduler
        self._loop = loop
        # pymesos never checks heartbeats: any event (a heartbeat included) proves the master is alive.
        self.last_event_at = time.monotonic()

    def processHeartBeat(self, driver: Any) -> None:  # noqa: N802 (pymesos API)
        self.last_event_at = time.monotonic()

    def _post(self, fn: Any, *args: Any) -> None:
        self.last_event_at = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closing: the backend is shutting down
            pass

    def registered(self, driver: Any, framework_id: dict[str, str], master_info: Any) -> None:
        log.info("registered with the cluster as framework %s", framework_id["value"])
        self._post(self._scheduler.on_registered, framework_id["value"])

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._post(self._scheduler.on_registered, driver.framework_id)

    def disconnected(self, driver: Any) -> None:
        self._post(self._scheduler.on_disconnected)

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802 (pymesos API)
        self._post(self._scheduler.on_offers, offers)

    def offerRescinded(self, driver: Any, offer_id: dict[str, str]) -> None:  # noqa: N802
        self._post(self._scheduler.on_rescind, offer_id["value"])

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:  # noqa: N802
        self._post(self._scheduler.on_status, status)

    def slaveLost(self, driver: Any, agent_id: dict[str, str]) -> None:  # noqa: N802
        self._post(self._scheduler.on_agent_lost, agent_id["value"])

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:  # noqa: N802
        pass

    def error(self, driver: Any, message: str) -> None:
        log.error("cluster error: %s", message)


class BoundedCallsDriver(MesosSchedulerDriver):
    """pymesos' driver with each HTTP call to the master bounded by `call_timeout` seconds.

    pymesos means 10 s (its class attribute `_timeout`), but its base class's constructor shadows that
    with the connection deadline (a day), so a hung master held a call, and the driver's lock with every
    call queued behind it, for a day. The connection deadline itself stays as pymesos has it."""

    def __init__(self, *args: Any, call_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.call_timeout = call_timeout

    def _get_conn(self) -> Any:
        conn = super()._get_conn()
        if conn is not None and conn.sock is None:
            conn.timeout = self.call_timeout  # used when it connects
        return conn

    def acknowledgeStatusUpdate(self, status: dict[str, Any]) -> None:  # noqa: N802 (pymesos API)
        # A master refuses the acknowledgement when another scheduler has subscribed with this framework
        # id since (a backend frozen while it led, then thawed, still holds the updates its old stream had
        # delivered). The update stays unacknowledged, so the master sends it again to the scheduler that
        # now leads: a warning, not the error DriverGateway._submit would log as a failed call.
        try:
            super().acknowledgeStatusUpdate(status)
        except RuntimeError as exc:
            log.warning("the master refused the acknowledgement of an update of task %s: %s",
                        status.get("task_id", {}).get("value"), exc)

    def _get_version(self, master: str | None) -> str | None:
        if master is None:
            return None
        host, port = master.split(":", 2)
        conn = HTTPConnection(host, int(port), timeout=self.call_timeout)
        try:
            conn.request("GET", "/version")
            resp = conn.getresponse()
            if not 200 <= resp.status < 300:
                return None
            version: str = json.loads(resp.read().decode("utf-8"))["version"]
            return version
        except (OSError, ValueError, KeyError) as exc:
            log.warning("Mesos master %s: no version (%s)", master, exc)
            return None
        finally:
            conn.close()


class DriverGateway:
    """`ClusterGateway` over a pymesos driver; every call is queued on one thread."""

    def __init__(self, scheduler: SingScheduler, master: str, loop: Any, framework_name: str = "Sing",
                 role: str = "*", principal: str | None = None, secret: str | None = None,
                 failover_timeout: float = 7 * 24 * 3600.0, call_timeout: float = 10.0) -> None:
        framework: dict[str, Any] = {
            "user": getpass.getuser(),
            "name": framework_name,
            "hostname": socket.gethostname(),
            # Keep tasks running while the scheduler is away (restart, fail-over).
            "failover_timeout": failover_timeout,
            "checkpoint": True,
        }
        if role != "*":
            framework["roles"] = [role]
            framework["capabilities"] = [{"type": "MULTI_ROLE"}]
        if principal:
            framework["principal"] = principal
        # False once this backend is no longer the leader: nothing more may reach the cluster.
        self.enabled = True
        if scheduler.framework_id:
            framework["id"] = {"value": scheduler.framework_id}
        self._callbacks = FrameworkCallbacks(scheduler, loop)
        self.driver = BoundedCallsDriver(self._callbacks, framework, master, use_addict=False,
                                         implicit_acknowledgements=False, failover=True,
                                         principal=principal, secret=secret, call_timeout=call_timeout)
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesos-calls")

    def start(self) -> None:
        if not self.enabled:
            return  # disabled by a demotion before it could subscribe
        self.driver.start()
        # The master's silence counts from the subscription attempt: start() itself can take a while
        # (pymesos first asks a possibly frozen master for /version).
        self._callbacks.last_event_at = time.monotonic()

    def disable(self) -> None:
        """Let nothing more reach the master, from any thread: calls are dropped, and the driver is told
        to stop, so that a subscription still being set up is not made (start() may be waiting for the
        master's /version: its driver thread then ends before it subscribes). `stop` still waits for it."""
        self.enabled = False
        # failover=True: the framework stays registered, so its tasks survive (False would tear it down).
        self.driver.stop(failover=True)

    def silent_for(self) -> float:
        """Seconds since the master last sent anything (events or heartbeats)."""
        return time.monotonic() - self._callbacks.last_event_at

    def stop(self) -> None:
        self._calls.shutdown(wait=True, cancel_futures=False)
        # failover=True: the framework stays registered, so its tasks survive a scheduler restart.
        self.driver.stop(failover=True)
        self.driver.join()

    def _submit(self, fn: Any, *args: Any) -> None:
        if not self.enabled:
            return

        def call() -> None:
            if not self.enabled:
                return
            try:
                fn(*args)
            except Exception:
                log.exception("call to the cluster failed: %s", getattr(fn, "__name__", fn))
        try:
            self._calls.submit(call)
        except RuntimeError:
            pass  # shutting down

    def launch(self, offer_id: str, task_infos: list[dict[str, Any]]) -> None:
        task_ids = [info["task_id"]["value"] for info in task_infos]

        def launch_or_ask() -> None:
            try:
                self.driver.launchTasks([{"value": offer_id}], task_infos)
            except Exception:
                # Whether the master took them (an error answer, a lost one, a timeout) is unknown: ask it.
                # Tasks it never got come back TASK_LOST and are replaced; the others report as they run.
                log.exception("launch of %d tasks failed; reconciling them", len(task_ids))
                self.driver.reconcileTasks([{"task_id": {"value": t}} for t in task_ids])

        self._submit(launch_or_ask)

    def decline(self, offer_ids: list[str], refuse_seconds: float) -> None:
        self._submit(self.driver.declineOffer, [{"value": o} for o in offer_ids],
                     {"refuse_seconds": refuse_seconds})

    def kill(self, task_id: str, grace_seconds: float | None) -> None:
        if grace_seconds is None:
            self._submit(self.driver.killTask, {"value": task_id})
            return
        # pymesos' killTask cannot carry a kill policy; a destroy needs a zero grace period.
        body = {"type": "KILL", "kill": {"task_id": {"value": task_id},
                                         "kill_policy": {"grace_period": {"nanoseconds": int(grace_seconds * 1e9)}}}}
        self._submit(self._send_with_framework, body)

    def message(self, task_id: str, agent_id: str, data: str) -> None:
        """A framework message to a task's executor (the command executor's id is the task id)."""
        self._submit(self.driver.sendFrameworkMessage, {"value": task_id}, {"value": agent_id}, data)

    def reconcile(self, task_ids: list[str]) -> None:
        self._submit(self.driver.reconcileTasks, [{"task_id": {"value": t}} for t in task_ids])

    def acknowledge(self, status: dict[str, Any]) -> None:
        """Acknowledge a status update (the scheduler does, once it has recorded it: acknowledgements
        are explicit). Dropped once this backend no longer leads: the master then sends the update
        again to the scheduler that does."""
        self._submit(self.driver.acknowledgeStatusUpdate, status)

    def _send_with_framework(self, body: dict[str, Any]) -> None:
        if not self.driver.connected:
            return
        body["framework_id"] = {"value": self.driver.framework_id}
        self.driver._send(body)
