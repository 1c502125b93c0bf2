"""The leader's scheduler: live state, the actions the API asks for, and the offer/status loop.

Everything here runs on the asyncio loop thread. Cluster callbacks arrive from pymesos' IO thread
through `call_soon_threadsafe`; calls to the cluster leave through the driver gateway's own thread.
Rules (what to launch, kill, when a deploy is done, where a task goes) live in `planning` and
`placement`; this module applies them and does the bookkeeping and persistence.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ..agent_sandbox import offered_url
from ..errors import bad_request, not_found
from ..executor.payload import attach_payload, default_executor_command, task_payload
from ..ids import PendingTaskId, TaskId, sanitize
from ..models.common import (
    NOTE_STATES,
    TERMINAL_TASK_STATES,
    AgentPlacement,
    PendingType,
    RequestState,
    RequestType,
    TaskCleanupType,
)
from ..models.deploy import SingularityDeploy
from ..settings import Settings
from ..state.store import StateStore, StateUnavailable
from .deploy_flow import DeployFlow
from .entities import DeployEntry, PendingDeployEntry, PendingTaskEntry, RequestEntry, TaskEntry
from .health import Health, HealthState, first_check_at
from .health_flow import HealthFlow
from .history_sink import HistorySink, Write
from .lb_driver import LbDriver
from .lb_flow import LoadBalancerFlow
from .machines import Machines
from .placement import Need, Occupant, OfferView, place
from .planning import (
    LiveTask,
    Pending,
    RequestView,
    healthy_count,
    is_healthy,
    next_healthy_at,
    plan_long_running,
    replaceable_now,
)
from .request_actions import GRACEFUL, REPLACED_FIRST, RequestActions
from .scheduled_flow import ScheduledFlow

log = logging.getLogger(__name__)

_PERSIST_CHUNK = 50


def now_ms() -> int:
    return int(time.time() * 1000)

class ClusterGateway(Protocol):
    """What the scheduler asks of the cluster (pymesos in practice)."""

    def launch(self, offer_id: str, task_infos: list[dict[str, Any]]) -> None: ...
    def decline(self, offer_ids: list[str], refuse_seconds: float) -> None: ...
    def kill(self, task_id: str, grace_seconds: float | None) -> None: ...
    def message(self, task_id: str, agent_id: str, data: str) -> None: ...
    def reconcile(self, task_ids: list[str]) -> None: ...
    def acknowledge(self, status: dict[str, Any]) -> None: ...

class Scheduler(RequestActions, DeployFlow, HealthFlow, ScheduledFlow, LoadBalancerFlow, Machines):
    def __init__(self, settings: Settings, store: StateStore, history: Any, sink: HistorySink,
                 clock: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        self.store = store
        self.history = history
        self.sink = sink
        self.clock = clock
        self.gateway: ClusterGateway | None = None
        self.lb: LbDriver | None = None
        self.sandbox_locator: Callable[[str], str | None] | None = None

        self.requests: dict[str, RequestEntry] = {}
        self.deploys: dict[tuple[str, str], DeployEntry] = {}
        self.pending_deploys: dict[str, PendingDeployEntry] = {}
        self.pending: dict[str, PendingTaskEntry] = {}
        self.tasks: dict[str, TaskEntry] = {}
        self.tasks_by_request: dict[str, set[str]] = defaultdict(set)
        self.pending_by_request: dict[str, set[str]] = defaultdict(set)
        self.request_cleanups: dict[str, dict[str, Any]] = {}
        self.offers: dict[str, tuple[OfferView, int]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        # Operator-set machine states (frozen, decommissioning...), by "agent/<id>" or "rack/<id>".
        self.machine_states: dict[str, dict[str, Any]] = {}
        self.machine_expiring: dict[str, dict[str, Any]] = {}  # timed changes, by the same keys
        self.machine_updates: dict[str, list[dict[str, Any]]] = {}  # state history, by the same keys
        self.agent_urls: dict[str, dict[str, Any]] = {}  # the `url` (a Mesos URL) of each agent's offers
        self.framework_id: str | None = None
        self.connected = False
        # Called when a task starts being health-checked (wakes the checker).
        self.on_health_tracked: Callable[[], None] | None = None
        # Called once subscribed to the cluster: the runtime asks history for tasks it shows unended.
        self.on_subscribed: Callable[[], None] | None = None
        # Called when a status changed this scheduler's memory but could not be saved: the runtime gives up
        # the lead unless that leadership has already ended, to start again from what is saved (the cluster
        # sends the unacknowledged status again, to the next leader). Otherwise a copy sent again would be
        # taken for a duplicate, acknowledged, and never saved.
        self.on_unsaved: Callable[[Exception], None] | None = None
        self.ended_unheard: set[str] = set()  # tasks asked about by ask_about_unended, not answered yet
        self.ended_here: set[str] | None = None  # tasks ended since on_subscribed, until ask_about_unended
        # Ends of tasks this scheduler does not run, heard in that same window: updates sent again because
        # the backend that led died before acknowledging them, perhaps before handing them to history.
        self.heard_ends: dict[str, dict[str, Any]] = {}
        self.last_offer_at: int | None = None
        self.started_at = clock()

        self._dirty: set[str] = set()
        self._schedules = {}
        # When each request's last one-off or scheduled run ended (for the next fire time and its wait).
        self._last_finished: dict[str, int] = {}
        self._kick_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._wakeups: dict[str, asyncio.TimerHandle] = {}
        # Bumped on every change a list endpoint shows; API caches key on it.
        self.version = 0
        # Until when some running task may still turn from not-yet-healthy to healthy.
        self._health_horizon = 0
        # Calls to the cluster and the load balancer held back until the change that makes them is saved.
        self._held_effects: list[Callable[[], None]] | None = None

    # ------------------------------------------------------------------ start-up

    def load(self) -> None:
        for doc in self.store.load("requests").values():
            entry = RequestEntry.from_doc(doc)
            self.requests[entry.id] = entry
        for key, doc in self.store.load("deploys").items():
            request_id, deploy_id = key.split("/", 1)
            self.deploys[(request_id, deploy_id)] = DeployEntry.from_doc(doc)
        for key, doc in self.store.load("pendingDeploys").items():
            self.pending_deploys[key] = PendingDeployEntry.from_doc(doc)
        for doc in self.store.load("pendingTasks").values():
            p = PendingTaskEntry.from_doc(doc)
            self._add_pending(p, persist=False)
        for doc in self.store.load("tasks").values():
            t = TaskEntry.from_doc(doc)
            self.tasks[t.id] = t
            self.tasks_by_request[t.tid.requestId].add(t.id)
            # Until the agent makes this backend an offer, its address is known from the task's own.
            if t.agent_id not in self.agent_urls and (url := offered_url(t.task)) is not None:
                self.agent_urls[t.agent_id] = url
        self.request_cleanups = self.store.load("requestCleanups")
        self._load_machines()
        meta = self.store.load("meta")
        self.framework_id = meta.get("framework", {}).get("id")
        self._recheck_running_tasks()
        self._dirty.update(self.requests)

    def _recheck_running_tasks(self) -> None:
        """Health checks of the tasks already running (a new leader taking over): what the previous leader's
        checks found is not saved, so each is checked again from now, at once, with a whole startup window:
        it counts as healthy once it passes, and is not failed for its leader's change."""
        now = self.clock()
        for task in self.tasks.values():
            if task.state == "TASK_RUNNING" and task.cleanup is None and self.healthcheck_for(task) is not None:
                task.health = HealthState(running_since=now, next_check_at=now)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ticker = self._loop.create_task(self._tick_forever(), name="scheduler-tick")
        self.kick()

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for handle in self._wakeups.values():
            handle.cancel()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            try:
                if self.clock() <= self._health_horizon:
                    self.version += 1  # "running long enough to be healthy" changes with time alone
                self._dirty.update(r for r in self.pending_deploys)
                self._dirty.update(t.tid.requestId for t in self.tasks.values()
                                   if t.cleanup and t.kill_sent_at is None)
                self._progress_machines()
                self._check_cooldowns()
                self._enforce_run_limits()
                self.kill_again()
                self._expire_actions()
                self._expire_machine_states()
                self._expire_offers()
                self.run_round()
            except Exception:
                log.exception("scheduler tick failed")

    def kick(self, request_id: str | None = None) -> None:
        """Ask for a scheduling round soon; many kicks in one loop iteration make one round."""
        if request_id:
            self._dirty.add(request_id)
        self.version += 1
        if self._kick_scheduled or self._loop is None:
            return
        self._kick_scheduled = True
        self._loop.call_soon(self._kicked)

    def _kicked(self) -> None:
        self._kick_scheduled = False
        try:
            self.run_round()
        except Exception:
            log.exception("scheduling round failed")

    def _wake_at(self, request_id: str, at_ms: int) -> None:
        if self._loop is None:
            return
        old = self._wakeups.pop(request_id, None)
        if old:
            old.cancel()
        delay = max(0.0, (at_ms - self.clock()) / 1000.0) + 0.01
        self._wakeups[request_id] = self._loop.call_later(delay, self.kick, request_id)

    # ------------------------------------------------------------------ persistence helpers

    def _save_request(self, entry: RequestEntry) -> None:
        self.store.put("requests", entry.id, entry.doc())

    def _save_task(self, task: TaskEntry) -> None:
        self.store.put("tasks", task.id, task.doc())

    def _request_event(self, entry: RequestEntry, event_type: str, user: str | None = None,
                       message: str | None = None) -> None:
        event: dict[str, Any] = {"request": entry.request.wire(), "eventType": event_type, "createdAt": self.clock()}
        if user:
            event["user"] = user
        if message:
            event["message"] = message
        self._to_history(lambda: self.history.add_request_event(event))

    def _deploy_history(self, request_id: str, deploy_id: str) -> None:
        entry = self.deploys[(request_id, deploy_id)]
        doc = entry.doc()
        state = entry.result["deployState"] if entry.result else None
        ts = entry.result["timestamp"] if entry.result else entry.marker["timestamp"]
        marker = entry.marker
        self._to_history(lambda: self.history.save_deploy(
            request_id, deploy_id, doc, deploy_state=state, timestamp=ts, user=marker.get("user"),
            message=marker.get("message")))

    # ------------------------------------------------------------------ lookups

    def get_request(self, request_id: str) -> RequestEntry:
        entry = self.requests.get(request_id)
        if entry is None:
            raise not_found(f"Couldn't find request with id {request_id}")
        return entry

    def active_deploy(self, entry: RequestEntry) -> DeployEntry | None:
        if not entry.active_deploy:
            return None
        return self.deploys.get((entry.id, entry.active_deploy["deployId"]))

    def pending_deploy(self, entry: RequestEntry) -> DeployEntry | None:
        if not entry.pending_deploy:
            return None
        return self.deploys.get((entry.id, entry.pending_deploy["deployId"]))

    def request_tasks(self, request_id: str) -> list[TaskEntry]:
        return [self.tasks[t] for t in self.tasks_by_request.get(request_id, ())]

    def request_pending(self, request_id: str) -> list[PendingTaskEntry]:
        return [self.pending[p] for p in self.pending_by_request.get(request_id, ())]

    def _check_resources(self, cpus: float, mem: float, disk: float, ports: int, field: str) -> None:
        lim = self.settings.limits
        if cpus > lim.max_cpus_per_task:
            raise bad_request(f"{field}.cpus: {cpus:g} is above the limit of {lim.max_cpus_per_task:g} per task")
        if mem > lim.max_memory_mb_per_task:
            raise bad_request(f"{field}.memoryMb: {mem:g} is above the limit of {lim.max_memory_mb_per_task:g} MB")
        if disk > lim.max_disk_mb_per_task:
            raise bad_request(f"{field}.diskMb: {disk:g} is above the limit of {lim.max_disk_mb_per_task:g} MB")
        if ports > lim.max_ports_per_task:
            raise bad_request(f"{field}.numPorts: {ports} is above the limit of {lim.max_ports_per_task}")

    # ------------------------------------------------------------------ tasks

    def _cleanup_task(self, task: TaskEntry, kind: TaskCleanupType, user: str | None = None,
                      message: str | None = None, force: bool = False) -> None:
        cleanup: dict[str, Any] = {"cleanupType": kind.value, "timestamp": self.clock(), "taskId": task.tid.wire()}
        if user:
            cleanup["user"] = user
        if message:
            cleanup["message"] = message
        if task.cleanup and not force and task.cleanup["cleanupType"] not in GRACEFUL:
            return  # already being killed for a stronger reason
        if task.cleanup is None or task.cleanup["cleanupType"] != kind.value:
            self._note_cleaning(task, cleanup)
        task.cleanup = cleanup
        if kind not in GRACEFUL and kind != TaskCleanupType.INCREMENTAL_BOUNCE:
            self._send_kill(task, destroy=kind == TaskCleanupType.USER_REQUESTED_DESTROY)
        self._save_task(task)
        self._dirty.add(task.tid.requestId)
        self.version += 1

    def _note_cleaning(self, task: TaskEntry, cleanup: dict[str, Any]) -> None:
        """A TASK_CLEANING update in the task's history saying why, by whom and with what message it is
        being stopped, worded as Singularity words it ("USER_REQUESTED by jo - wrong build")."""
        note = cleanup["cleanupType"] + (f" by {cleanup['user']}" if "user" in cleanup else "") + \
            (f" - {cleanup['message']}" if "message" in cleanup else "")
        update = self._update_doc(task.tid, cleanup["timestamp"], "TASK_CLEANING", note, None)
        task.updates.append(update)
        self._to_history(lambda: self.history.add_task_updates([update]))

    def _kill_grace(self, deploy: SingularityDeploy | None) -> float:
        data = deploy.executorData if deploy else None
        if data and isinstance(data.get("sigKillProcessesAfterMillis"), int | float):
            return float(data["sigKillProcessesAfterMillis"]) / 1000.0
        return self.settings.kill_grace_seconds

    def _send_kill(self, task: TaskEntry, destroy: bool = False) -> None:
        task.kill_sent_at = self.clock()
        # A load-balanced task leaves the load balancer first; its kill goes out when that succeeded.
        if self._lb_remove(task) and not destroy:
            return
        gateway = self.gateway
        if gateway is not None:
            self.effect(lambda: gateway.kill(task.id, 0.0 if destroy else None))

    def kill_again(self) -> None:
        """Send the kill again to tasks still running `kill_again_after_seconds` after it was sent. Only the
        sending is saved, not its delivery: a kill lost on the way (the master unreachable, or a leader
        stepping down as it sent it; the next one sees it as sent) would otherwise leave the task running
        for good."""
        if self.gateway is None:
            return
        now = self.clock()
        due = now - int(self.settings.kill_again_after_seconds * 1000)
        for task in self.tasks.values():
            if task.cleanup is None or task.kill_sent_at is None or task.kill_sent_at > due:
                continue
            if task.lb_state == "REMOVING":
                continue  # its kill goes out once the load balancer has let it go
            log.warning("task %s still runs %.0f s after its kill was sent; sending it again",
                        task.id, (now - task.kill_sent_at) / 1000)
            destroy = task.cleanup["cleanupType"] == TaskCleanupType.USER_REQUESTED_DESTROY.value
            with self.effects_after_commit():  # sent once saved as sent again
                task.kill_retries += 1
                self._send_kill(task, destroy=destroy)
                self._save_task(task)

    @contextmanager
    def effects_after_commit(self) -> Iterator[None]:
        """Hold back the calls to the cluster and the load balancer made inside the block until it ends
        without an error (its writes saved), and drop them if it fails: a change that was not saved must
        not have killed anything."""
        if self._held_effects is not None:
            yield
            return
        self._held_effects = []
        try:
            yield
            held = self._held_effects
        finally:
            self._held_effects = None
        for effect in held:
            effect()

    def effect(self, call: Callable[[], None]) -> None:
        if self._held_effects is None:
            call()
        else:
            self._held_effects.append(call)

    def _to_history(self, write: Write) -> None:
        # Held as the calls to the cluster are: history must not record a change that was not saved (its
        # caller, told so, sends it again).
        self.effect(lambda: self.sink.put(write))

    # ------------------------------------------------------------------ pending queue

    def _add_pending(self, p: PendingTaskEntry, persist: bool = True) -> None:
        self.pending[p.id] = p
        self.pending_by_request[p.pid.requestId].add(p.id)
        if persist:
            self.store.put("pendingTasks", p.id, p.doc())
        self.version += 1

    def _remove_pending(self, pending_id: str) -> PendingTaskEntry | None:
        p = self.pending.pop(pending_id, None)
        if p is not None:
            self.pending_by_request[p.pid.requestId].discard(pending_id)
            self.store.delete("pendingTasks", pending_id)
            self.version += 1
        return p

    def _drop_pending_of(self, request_id: str) -> None:
        for pending_id in list(self.pending_by_request.get(request_id, ())):
            self._remove_pending(pending_id)

    # ------------------------------------------------------------------ the scheduling round

    def run_round(self) -> None:
        dirty, self._dirty = self._dirty, set()
        # One transaction per request, not per round: a round over thousands of requests would pass
        # ZooKeeper's 1 MB request limit.
        for request_id in dirty:
            entry = self.requests.get(request_id)
            if entry is not None:
                with self.store.batch():
                    self._reconcile_request(entry)
        self._launch_pending()

    def _live_view(self, request_id: str, *, ignore_lb: bool = False) -> list[LiveTask]:
        """The request's tasks for the planning rules. A load-balanced task is healthy only once the
        load balancer has it (unless `ignore_lb`: then health alone)."""
        lb = self._is_lb(request_id) and not ignore_lb
        return [LiveTask(t.id, t.tid.deployId, t.tid.instanceNo, t.cleanup is not None, t.running_since,
                         (t.lb_state == "ADDED") if lb else
                         (None if t.health is None else t.health.status == Health.HEALTHY))
                for t in self.request_tasks(request_id)]

    def _reconcile_request(self, entry: RequestEntry) -> None:
        if entry.request.type == RequestType.SCHEDULED:
            self._plan_scheduled(entry)
        if self._is_lb(entry.id):
            self._register_healthy_with_lb(entry)
        live = self._live_view(entry.id)
        if entry.pending_deploy:
            self._evaluate_deploy(entry, live)
            live = self._live_view(entry.id)
        if entry.request.type.long_running:
            pend = [Pending(p.id, p.pid.deployId, p.pid.instanceNo) for p in self.request_pending(entry.id)]
            view = RequestView(entry.id, True, entry.state, entry.request.instance_count,
                               entry.active_deploy["deployId"] if entry.active_deploy else None,
                               entry.pending_deploy["deployId"] if entry.pending_deploy else None,
                               self.pending_target(entry),
                               PendingType(entry.relaunch_reason or PendingType.TASK_DONE))
            entry.relaunch_reason = None  # this round starts what it was for
            plan = plan_long_running(view, live, pend)
            for pending_id in plan.drop_pending:
                self._remove_pending(pending_id)
            now = self.clock()
            for deploy_id, instance_no, why in plan.launch:
                run_at = now
                if entry.state == RequestState.SYSTEM_COOLDOWN and why != PendingType.NEW_DEPLOY:
                    # Crash-looping: replacements wait (a new deploy is exempt, as in Singularity).
                    run_at = now + int(self.settings.cooldown_delay_seconds * 1000)
                    self._wake_at(entry.id, run_at)
                pid = PendingTaskId(entry.id, deploy_id, run_at, instance_no, why.value, now)
                self._add_pending(PendingTaskEntry(pid))
            for task_id, kind in plan.kill:
                self._cleanup_task(self.tasks[task_id], kind)
            if entry.active_deploy:
                self._progress_replacements(entry, live)

    def _progress_replacements(self, entry: RequestEntry, live: list[LiveTask]) -> None:
        """Tasks waiting for a replacement (bounce, decommission) die as healthy replacements allow."""
        waiting = sorted((t for t in self.request_tasks(entry.id)
                          if t.cleanup and t.cleanup["cleanupType"] in REPLACED_FIRST and t.kill_sent_at is None),
                         key=lambda t: t.tid.startedAt)
        if not waiting:
            if entry.bouncing:
                entry.bouncing = False
                entry.expiring.pop("bounce", None)
                self._save_request(entry)
            return
        dep = self.active_deploy(entry)
        after_ms = (dep.deploy.consider_healthy_after_s if dep else 5) * 1000
        deploy_id = entry.active_deploy["deployId"] if entry.active_deploy else ""
        healthy = healthy_count(live, deploy_id, self.clock(), after_ms)
        all_at_once = any(t.cleanup["cleanupType"] == TaskCleanupType.BOUNCING for t in waiting if t.cleanup)
        for task in waiting[:replaceable_now(len(waiting), healthy, entry.request.instance_count, all_at_once)]:
            self._send_kill(task)
            self._save_task(task)
        wake = next_healthy_at(live, deploy_id, after_ms)
        if wake is not None and wake > self.clock():
            self._wake_at(entry.id, wake)

    def _register_healthy_with_lb(self, entry: RequestEntry) -> None:
        now = self.clock()
        ready = []
        for task, view in zip(self.request_tasks(entry.id), self._live_view(entry.id, ignore_lb=True), strict=True):
            dep = self.deploys.get((entry.id, task.tid.deployId))
            after_ms = (dep.deploy.consider_healthy_after_s if dep else 5) * 1000
            if is_healthy(view, now, after_ms):
                ready.append(task)
            elif view.running_since is not None and view.healthy is None:
                self._wake_at(entry.id, view.running_since + after_ms)
        self._lb_register_ready(entry, ready)

    def _is_scheduled(self, request_id: str) -> bool:
        entry = self.requests.get(request_id)
        return entry is not None and entry.request.type == RequestType.SCHEDULED

    def _need_for(self, p: PendingTaskEntry) -> Need | None:
        entry = self.requests.get(p.pid.requestId)
        dep = self.deploys.get((p.pid.requestId, p.pid.deployId))
        if entry is None or dep is None:
            return None
        res = p.extras.get("resources") or (dep.deploy.resources.wire() if dep.deploy.resources else {})
        req = entry.request
        return Need(
            key=p.id, request_id=entry.id, deploy_id=dep.deploy.id,
            cpus=res.get("cpus", self.settings.default_cpus),
            mem_mb=res.get("memoryMb", self.settings.default_memory_mb),
            disk_mb=res.get("diskMb", 0.0),
            num_ports=res.get("numPorts", 0),
            placement=AgentPlacement(req.agentPlacement or AgentPlacement.GREEDY),
            rack_sensitive=bool(req.rackSensitive),
            instances=req.instance_count,
            required_attributes=tuple(sorted((req.requiredAgentAttributes or {}).items())),
        )

    def _launch_pending(self) -> None:
        now = self.clock()
        # A SCHEDULED request runs one task at a time: its next run waits while one is going.
        due = [p for p in self.pending.values() if p.pid.nextRunAt <= now
               and not (self.tasks_by_request.get(p.pid.requestId) and self._is_scheduled(p.pid.requestId))]
        if not due:
            return
        needs = []
        by_key = {}
        for p in sorted(due, key=lambda p: (p.pid.nextRunAt, p.pid.createdAt)):
            need = self._need_for(p)
            if need is None:
                self._remove_pending(p.id)
                continue
            if (problem := self.deploys[(p.pid.requestId, p.pid.deployId)].launch_problem()) is not None:
                # Not placed at all: it would hold resources other tasks could use, round after round.
                p.reason = f"cannot be launched: {problem}"
                continue
            needs.append(need)
            by_key[p.id] = p
        if not needs:
            return
        offer_copies = [OfferView(o.offer_id, o.agent_id, o.host, o.rack_id, o.cpus, o.mem_mb, o.disk_mb,
                                  list(o.ports), dict(o.attributes)) for o, _ in self.offers.values()]
        occupants = [Occupant(t.tid.requestId, t.tid.deployId, t.agent_id, t.tid.rackId)
                     for t in self.tasks.values() if t.cleanup is None]
        if not self.connected:
            for need in needs:
                by_key[need.key].reason = "the scheduler is not connected to the cluster yet"
            return
        unusable = {a["id"]: a["currentState"]["state"].lower() for a in self.agents.values()
                    if a["currentState"]["state"] != "ACTIVE"}
        result = place(needs, offer_copies, occupants, unusable,
                       known_racks=frozenset(a["rackId"] for a in self.agents.values()
                                             if a["currentState"]["state"] == "ACTIVE"))
        for key, reason in result.unplaced.items():
            by_key[key].reason = reason
        if not result.assignments:
            return
        launches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # Every task is persisted before its launch goes out; in chunks, so that one transaction stays
        # well under ZooKeeper's 1 MB limit (a task document is a few KB).
        for start in range(0, len(result.assignments), _PERSIST_CHUNK):
            with self.store.batch():
                for a in result.assignments[start:start + _PERSIST_CHUNK]:
                    p = by_key[a.need_key]
                    try:
                        info = self._start_task(p, a.agent_id, a.host, a.rack_id, list(a.ports), a.offer_id)
                    except Exception as exc:
                        # Anything this one task cannot be built with (its deploy's own problems are found
                        # before placement): it stays pending, saying why, and the others of the round go
                        # out. Nothing of it was changed yet (_start_task changes last).
                        p.reason = f"cannot be launched: {exc}"
                        log.exception("pending task %s cannot be launched", p.id)
                        continue
                    launches[a.offer_id].append(info)
        for offer_id, infos in launches.items():
            for info in infos:
                log.info("launching %s on %s", info["task_id"]["value"], info["agent_id"]["value"])
            self.offers.pop(offer_id, None)
            if self.gateway is not None:
                self.gateway.launch(offer_id, infos)

    def _offer_doc(self, offer_id: str, agent_id: str, host: str) -> dict[str, Any]:
        """The offer a task was launched on, as Singularity keeps it; its `url` (the agent's address) lets a
        later leader reach the task's sandbox before that agent has made it an offer."""
        offer: dict[str, Any] = {"id": {"value": offer_id}, "agentId": {"value": agent_id}, "hostname": host}
        if (url := self.agent_urls.get(agent_id)) is not None:
            offer["url"] = url
        return offer

    def _start_task(self, p: PendingTaskEntry, agent_id: str, host: str, rack_id: str, ports: list[int],
                    offer_id: str) -> dict[str, Any]:
        entry = self.requests[p.pid.requestId]
        dep = self.deploys[(p.pid.requestId, p.pid.deployId)].deploy
        now = self.clock()
        suffix = self.settings.common_hostname_suffix_to_omit
        tid = TaskId(entry.id, dep.id, now, p.pid.instanceNo, host, sanitize(host, suffix), rack_id,
                     sanitize(rack_id))
        while tid.id in self.tasks:  # two launches of one instance in the same millisecond
            now += 1
            tid = TaskId(entry.id, dep.id, now, p.pid.instanceNo, host, sanitize(host, suffix), rack_id,
                         sanitize(rack_id))
        res = p.extras.get("resources") or (dep.resources.wire() if dep.resources else {})
        cpus = res.get("cpus", self.settings.default_cpus)
        mem = res.get("memoryMb", self.settings.default_memory_mb)
        disk = res.get("diskMb", 0.0)
        env = {
            **(dep.env or {}),
            **((dep.taskEnv or {}).get(p.pid.instanceNo, {})),
            "TASK_ID": tid.id, "TASK_REQUEST_ID": entry.id, "TASK_DEPLOY_ID": dep.id,
            "INSTANCE_NO": str(p.pid.instanceNo), "TASK_HOST": host, "TASK_RACK_ID": rack_id,
            "ESTIMATED_INSTANCE_COUNT": str(entry.request.instance_count),
            **(p.extras.get("envOverrides") or {}),
        }
        for i, port in enumerate(ports):
            env[f"PORT{i}"] = str(port)
        if ports:
            env["PORT"] = str(ports[0])
        command = self._command(dep, p.extras.get("cmdLineArgsList") or [], env)
        resources: list[dict[str, Any]] = [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
        ]
        if disk:
            resources.append({"name": "disk", "type": "SCALAR", "scalar": {"value": disk}})
        if ports:
            resources.append({"name": "ports", "type": "RANGES",
                              "ranges": {"range": [{"begin": port, "end": port} for port in ports]}})
        grace_ns = int(self._kill_grace(dep) * 1e9)
        info: dict[str, Any] = {
            "name": entry.id,
            "task_id": {"value": tid.id},
            "agent_id": {"value": agent_id},
            "resources": resources,
            "command": command,
            "kill_policy": {"grace_period": {"nanoseconds": grace_ns}},
            "labels": {"labels": [{"key": k, "value": v} for k, v in (dep.labels or {}).items()]},
        }
        custom = dep.customExecutorCmd
        if custom and custom.strip() == "sing executor" and self.settings.mode == "local":
            custom = default_executor_command()  # `sing` may not be on the backend's PATH
        # Artifacts, limits, log rotation, user...: what the executor needs beyond the command.
        attach_payload(info, task_payload(dep.wire(), p.wire()), executor_command=custom)
        pending_wire = p.wire()
        task = {
            "taskId": tid.wire(),
            "taskRequest": {"request": entry.request.wire(), "deploy": dep.wire(), "pendingTask": pending_wire},
            "offers": [self._offer_doc(offer_id, agent_id, host)],
            "mesosTask": {"taskId": {"value": tid.id}, "name": entry.id, "agentId": {"value": agent_id},
                          "resources": resources, "command": command},
            "agentId": {"value": agent_id},
            "rackId": rack_id,
        }
        t = TaskEntry(tid, task, agent_id)
        t.updates.append(self._update_doc(tid, now, "TASK_LAUNCHED", None, None))
        self.tasks[t.id] = t
        self.tasks_by_request[entry.id].add(t.id)
        self._remove_pending(p.id)
        self._save_task(t)
        run_id = p.extras.get("runId")
        self._to_history(lambda: self.history.save_task(task, task_id=tid.id, request_id=entry.id, deploy_id=dep.id,
                                                     run_id=run_id, host=host, started_at=tid.startedAt))
        first = dict(t.updates[0])
        self._to_history(lambda: self.history.add_task_updates([first]))
        return info

    @staticmethod
    def _command(dep: SingularityDeploy, extra_args: list[str], env: dict[str, str]) -> dict[str, Any]:
        variables = [{"name": k, "value": v} for k, v in env.items()]
        if dep.uses_shell:
            # Run-now arguments are honoured with a shell too (Singularity drops them: its issue #1058).
            value = dep.command or ""
            args = list(dep.arguments or []) + extra_args
            if args:
                value = " ".join([value, *(shlex.quote(a) for a in args)])
            return {"value": value, "shell": True, "environment": {"variables": variables}}
        argv = [dep.command or "", *(dep.arguments or []), *extra_args]
        return {"value": dep.command, "shell": False, "arguments": argv, "environment": {"variables": variables}}

    @staticmethod
    def _update_doc(tid: TaskId, ts: int, state: str, message: str | None, reason: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {"taskId": tid.wire(), "timestamp": ts, "taskState": state, "previous": []}
        if message:
            doc["statusMessage"] = message
        if reason:
            doc["statusReason"] = reason
        return doc

    # ------------------------------------------------------------------ cluster events

    def on_registered(self, framework_id: str) -> None:
        self.framework_id = framework_id
        self.connected = True
        self.store.put("meta", "framework", {"id": framework_id})
        # Learn what the cluster still runs: tasks it does not know come back as lost and are replaced.
        if self.gateway is not None and self.tasks:
            self.gateway.reconcile(list(self.tasks))
        if self.on_subscribed is not None:
            # A new window (the ends noted in an earlier one that were not acknowledged come again).
            self.ended_here, self.heard_ends = set(), {}
            self.on_subscribed()
        self.kick()

    def ask_about_unended(self, task_ids: list[str]) -> None:
        """Complete the history of tasks it shows unended that this scheduler does not run: a leader killed
        after saving a task's end in the state store and before handing it to history left them so. Ends
        the cluster sent again since subscribing are recorded (and then acknowledged); the cluster is
        asked about the others, and its answers complete their history (on_status)."""
        # Not those that ended here while history was asked: their ends were still on the way to it.
        ended_here, heard = self.ended_here or set(), self.heard_ends
        self.ended_here, self.heard_ends = None, {}
        unheard = [task_id for task_id in task_ids if task_id not in self.tasks and task_id not in ended_here]
        for task_id in unheard:
            if task_id in heard:  # sent again since subscribing: no need to ask
                self._record_unheard_end(task_id, heard[task_id])
        for status in heard.values():  # recorded now, or already in history
            self._acknowledge_when_recorded(status)
        unheard = [task_id for task_id in unheard if task_id not in heard]
        if not unheard or self.gateway is None or not self.connected:
            return
        log.warning("history shows %d tasks that this scheduler does not run as unended: asking the cluster",
                    len(unheard))
        self.ended_unheard.update(unheard)
        self.gateway.reconcile(unheard)

    def _record_unheard_end(self, task_id: str, status: dict[str, Any]) -> None:
        state = status.get("state", "")
        log.info("task %s, unended in history, ended %s", task_id, state)
        ended = self._update_doc(TaskId.parse(task_id), _status_time(status, self.clock()), state,
                                 status.get("message"), status.get("reason"))
        self._to_history(lambda: self.history.add_task_updates([ended]))

    def reconcile_unconfirmed(self, older_than_ms: int) -> None:
        """Ask the cluster about tasks launched `older_than_ms` ago that it has said nothing about since:
        a launch whose call or answer was lost leaves them so for good otherwise. The master answers with
        their state, or TASK_LOST for those it never got, which are then replaced."""
        if self.gateway is None or not self.connected:
            return
        now = self.clock()
        silent = [task.id for task in self.tasks.values()
                  if task.state in ("TASK_LAUNCHED", "TASK_STAGING") and (last := _last_status(task)) is not None
                  and now - last["timestamp"] >= older_than_ms]
        if silent:
            log.warning("no word from the cluster on %d launched tasks: reconciling them", len(silent))
            self.gateway.reconcile(silent)

    def on_disconnected(self) -> None:
        self.connected = False
        self.offers.clear()

    def on_offers(self, offers: list[dict[str, Any]]) -> None:
        now = self.clock()
        self.last_offer_at = now
        for raw in offers:
            view = _offer_view(raw)
            self.offers[view.offer_id] = (view, now)
            self._note_agent(raw, view)
        self.kick()

    def on_rescind(self, offer_id: str) -> None:
        self.offers.pop(offer_id, None)

    def _note_agent(self, raw: dict[str, Any], view: OfferView) -> None:
        if view.agent_id in self.agents:
            return
        now = self.clock()
        self.agents[view.agent_id] = {
            "id": view.agent_id, "host": view.host, "rackId": view.rack_id, "attributes": view.attributes,
            "resources": {"numCpus": view.cpus, "memoryMegaBytes": view.mem_mb, "diskMegaBytes": view.disk_mb,
                          "numPorts": view.free_ports()},
            "currentState": self.machine_states.get(f"agent/{view.agent_id}", {"state": "ACTIVE", "timestamp": now}),
            "firstSeenAt": now,
        }
        if raw.get("url"):
            self.agent_urls[view.agent_id] = raw["url"]
        self.version += 1

    def on_agent_lost(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent:
            agent["currentState"] = {"state": "DEAD", "timestamp": self.clock()}
        self.offers = {k: v for k, v in self.offers.items() if v[0].agent_id != agent_id}
        self.version += 1

    def _expire_offers(self) -> None:
        cut = self.clock() - int(self.settings.offer_hold_seconds * 1000)
        stale = [oid for oid, (_, at) in self.offers.items() if at < cut]
        if stale and not self.pending:
            for oid in stale:
                del self.offers[oid]
            if self.gateway is not None:
                self.gateway.decline(stale, 1.0)

    def on_status(self, status: dict[str, Any]) -> None:
        """A task's status from the cluster. Its writes land in one batch, and what it sends on (history,
        calls to the cluster) goes out only once they are saved: a backend that no longer leads (frozen,
        then thawed, with updates still in its stream) records nothing in history that the leader, to
        which the master sends the update again, records as well."""
        try:
            # (In parts if too large for one ZooKeeper multi: a deploy failed by this status may clean up
            # hundreds of tasks.)
            with self.effects_after_commit(), self.store.batch(split_if_too_large=True):
                if self._apply_status(status):
                    self._acknowledge_when_recorded(status)
        except StateUnavailable as exc:
            log.warning("task %s: %s not saved, nor recorded in history; the cluster sends it again (%s)",
                        status.get("task_id", {}).get("value"), status.get("state"), exc)
            if self.on_unsaved is not None:
                self.on_unsaved(exc)
        except Exception as exc:
            log.exception("task %s: %s could not be applied; the cluster sends it again",
                          status.get("task_id", {}).get("value"), status.get("state"))
            if self.on_unsaved is not None:
                self.on_unsaved(exc)

    def _acknowledge_when_recorded(self, status: dict[str, Any]) -> None:
        """Acknowledge an update once it is saved and its history handed over (or at once, when history
        is backed up): the cluster keeps sending an update until it is acknowledged, so one this backend
        dies (or stops leading) before recording reaches the next leader instead of being lost. Updates
        the master makes (reconciliation answers) carry no uuid and take no acknowledgement."""
        gateway = self.gateway  # the driver that delivered it: a later one holds another stream
        if "uuid" not in status or gateway is None:
            return

        async def acknowledge() -> None:
            # Queued behind the update's history writes, in the sink's order. Their hand-over to the
            # writer process goes out on the next turn of the loop; this yield lets it go first.
            await asyncio.sleep(0)
            gateway.acknowledge(status)

        def after_history() -> None:
            if self.history is not None and self.history.backed_up:
                # History has been away so long that its writes wait for room: the cluster holds a task's
                # next update until this one is acknowledged, and the scheduler must not go blind with it.
                gateway.acknowledge(status)
            else:
                self.sink.put(acknowledge)

        self.effect(after_history)

    def _apply_status(self, status: dict[str, Any]) -> bool:
        """Apply a status; False when its acknowledgement must wait (see ask_about_unended)."""
        task_id = status.get("task_id", {}).get("value", "")
        state = status.get("state", "")
        task = self.tasks.get(task_id)
        if task is None:
            if state not in TERMINAL_TASK_STATES and self.gateway is not None:
                log.warning("killing unknown task %s reported %s", task_id, state)
                self.gateway.kill(task_id, 0.0)
            elif task_id in self.ended_unheard:
                self.ended_unheard.discard(task_id)
                self._record_unheard_end(task_id, status)
            elif self.ended_here is not None:
                # History has not said yet whether it shows this end: acknowledged once it has, or once
                # recorded. Unacknowledged, it comes again if this backend dies or stops leading meanwhile.
                self.heard_ends[task_id] = status
                return False
            return True
        now = self.clock()
        message = status.get("message")
        reason = status.get("reason")
        last = _last_status(task)
        if last is not None and last["taskState"] == state and state != "TASK_RUNNING":
            return True  # a duplicate (redelivery or reconciliation)
        if state == "TASK_RUNNING" and task.state == "TASK_RUNNING":
            return True
        update = self._update_doc(task.tid, _status_time(status, now), state, message, reason)
        log.info("task %s %s%s", task_id, state, f" ({message})" if message else "")
        task.updates.append(update)
        task.state = state
        self._to_history(lambda: self.history.add_task_updates([update]))
        request_id = task.tid.requestId
        if state == "TASK_RUNNING":
            task.running_since = now
            dep = self.deploys.get((request_id, task.tid.deployId))
            after_ms = (dep.deploy.consider_healthy_after_s if dep else 5) * 1000
            self._health_horizon = max(self._health_horizon, now + after_ms + 1000)
            hc = self.effective_healthcheck(dep.deploy, self.requests[request_id].request, task) if dep and \
                request_id in self.requests else None
            if hc is not None:
                task.health = HealthState(running_since=now, next_check_at=first_check_at(hc, now))
                if self.on_health_tracked is not None:
                    self.on_health_tracked()
            if self.sandbox_locator is not None and task.directory is None:
                task.directory = self.sandbox_locator(task_id)
            self._save_task(task)
        elif state in TERMINAL_TASK_STATES:
            self._task_done(task, state)
        else:
            self._save_task(task)
        self.kick(request_id)
        return True

    def _task_done(self, task: TaskEntry, state: str) -> None:
        request_id = task.tid.requestId
        if self.ended_here is not None:
            self.ended_here.add(task.id)
        self._lb_remove(task)  # a task that died while registered must not stay an upstream
        with self.store.batch():
            self.tasks.pop(task.id, None)
            self.tasks_by_request[request_id].discard(task.id)
            self.store.delete("tasks", task.id)
        final = dict(task.task)
        if task.directory:
            final["directory"] = task.directory
        self._to_history(lambda: self.history.save_task(
            final, task_id=task.id, request_id=request_id, deploy_id=task.tid.deployId,
            run_id=final["taskRequest"]["pendingTask"].get("runId"), host=task.tid.host,
            started_at=task.tid.startedAt))
        entry = self.requests.get(request_id)
        if entry is None:
            return
        killed_by_us = task.cleanup is not None
        message = next((u["statusMessage"] for u in reversed(task.updates)
                        if u.get("statusMessage") and u["taskState"] not in NOTE_STATES),
                       state.removeprefix("TASK_").lower())
        if entry.pending_deploy and task.tid.deployId == entry.pending_deploy["deployId"] and not killed_by_us \
                and state in ("TASK_FAILED", "TASK_ERROR", "TASK_FINISHED"):
            # A task lost with its agent or in a fail-over is not the new version's fault: it is replaced.
            reason = "TASK_EXPECTED_RUNNING_FINISHED" if state == "TASK_FINISHED" else "TASK_FAILED_ON_STARTUP"
            self.note_deploy_task_failure(entry, task, reason, message)
        elif state == "TASK_FAILED" and not killed_by_us and entry.request.type.long_running:
            # Crash-loop detection counts real failures only: not kills, not lost agents.
            self._record_failure(entry)
        if not entry.request.type.long_running:
            self._run_finished(entry, task, state)
        if entry.request.type == RequestType.RUN_ONCE and state == "TASK_FINISHED" \
                and not self.tasks_by_request.get(request_id) and not self.pending_by_request.get(request_id):
            entry.state = RequestState.FINISHED
            self._save_request(entry)
            self._request_event(entry, "FINISHED")
        self._maybe_finish_delete(entry)

def _last_status(task: TaskEntry) -> dict[str, Any] | None:
    """The task's last update from the cluster (not a note of why it is being stopped)."""
    return next((u for u in reversed(task.updates) if u["taskState"] not in NOTE_STATES), None)


def _status_time(status: dict[str, Any], now: int) -> int:
    """When a status happened (epoch ms): its own timestamp (seconds, set where it arose), as
    Singularity's updates take, not when this backend heard of it (during a fail-over, seconds later)."""
    timestamp = status.get("timestamp")
    if isinstance(timestamp, int | float) and timestamp > 0:
        return int(timestamp * 1000)
    return now


def _offer_view(raw: dict[str, Any]) -> OfferView:
    cpus = mem = disk = 0.0
    ports: list[tuple[int, int]] = []
    for r in raw.get("resources", []):
        name = r.get("name")
        if name == "cpus":
            cpus += r["scalar"]["value"]
        elif name == "mem":
            mem += r["scalar"]["value"]
        elif name == "disk":
            disk += r["scalar"]["value"]
        elif name == "ports":
            ports.extend((x["begin"], x["end"]) for x in r["ranges"]["range"])
    attributes = {}
    for a in raw.get("attributes", []):
        if a.get("type") == "TEXT":
            attributes[a["name"]] = a["text"]["value"]
        elif a.get("type") == "SCALAR":
            attributes[a["name"]] = f"{a['scalar']['value']:g}"
    return OfferView(raw["id"]["value"], raw["agent_id"]["value"], raw.get("hostname", ""),
                     attributes.get("rackid", "DEFAULT"), cpus, mem, disk, sorted(ports), attributes)

