"""The master: frameworks, offers and tasks, driven by v1 scheduler calls and agent reports.

Every method runs under the cluster lock (public ones take it; the RLock makes that re-entrant), so
the state is simple dicts. Nothing here blocks: events go to per-stream queues, processes are
started by agents in a few milliseconds, and timers run on the reactor thread.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..executor.reactor import Reactor, TimerHandle
from .agent import Agent
from .calls import CallError, call_object, id_value, id_values, launch_task_infos, refuse_seconds
from .framework import FIRST_RETRY_SECONDS, Framework, Subscription
from .launch_plan import plan_launches
from .offers import Offer, OfferBook
from .resources import Resources
from .tasks import TaskRecord, TaskTable
from .updates import (
    error_event,
    failure_event,
    message_event,
    offers_event,
    rescind_event,
    task_status,
    update_event,
)

log = logging.getLogger(__name__)

VERSION = "1.11.0"
DEFAULT_REFUSE_SECONDS = 5.0


class Master:
    def __init__(
        self, *, lock: threading.RLock, reactor: Reactor, heartbeat_interval: float, kill_grace_seconds: float,
        status_retry_seconds: float = FIRST_RETRY_SECONDS,
    ) -> None:
        self.master_id = str(uuid.uuid4())
        self.heartbeat_interval = heartbeat_interval
        self.status_retry_seconds = status_retry_seconds
        self._retry_timer: TimerHandle | None = None
        self._lock = lock
        self._reactor = reactor
        self._default_grace = kill_grace_seconds
        self._framework_seq = itertools.count()
        self._address = ("127.0.0.1", 0)
        self._stopping = False
        self.agents: dict[str, Agent] = {}
        self.frameworks: dict[str, Framework] = {}
        self._removed_frameworks: set[str] = set()
        self.tasks = TaskTable()
        self.offers = OfferBook(self.master_id)
        # uuid of an executor-made update -> (agent, task), to pass the scheduler's ack back.
        self._executor_updates: dict[str, tuple[str, str]] = {}
        self._handlers = self._call_handlers()

    def set_address(self, host: str, port: int) -> None:
        self._address = (host, port)

    def master_info(self) -> dict[str, Any]:
        host, port = self._address
        return {
            "id": self.master_id,
            "ip": 0,
            "port": port,
            "hostname": host,
            "version": VERSION,
            "address": {"hostname": host, "ip": host, "port": port},
        }

    # -- agents (called by the cluster) --------------------------------------------------------

    def add_agent(self, agent: Agent) -> None:
        with self._lock:
            spec = agent.spec
            self.agents[spec.agent_id] = agent
            total = Resources(cpus=spec.cpus, mem=spec.mem_mb, disk=spec.disk_mb, ports=(spec.ports,))
            self.offers.add_agent(spec.agent_id, total)
            self._allocate([spec.agent_id])

    def remove_agent(self, agent_id: str) -> Agent:
        """The agent is lost: kill its processes, tell frameworks TASK_LOST and FAILURE, void its offer."""
        with self._lock:
            agent = self.agents.pop(agent_id)
            agent.silence_and_signal(signal.SIGKILL)
            for record in self.tasks.on_agent(agent_id):
                record.state, record.reason = "TASK_LOST", "REASON_AGENT_REMOVED"
                record.message = f"Agent {agent_id} removed"
                self.tasks.finish(record)
                framework = self.frameworks.get(record.framework_id)
                if framework is not None:
                    framework.send(update_event(self._status_of(record, "SOURCE_MASTER")))
            offer = self.offers.remove_agent(agent_id)
            if offer is not None and offer.framework_id in self.frameworks:
                self.frameworks[offer.framework_id].send(rescind_event(offer.offer_id))
            for framework in self.frameworks.values():
                framework.send(failure_event(agent_id))
            return agent

    # -- task status from agents ---------------------------------------------------------------

    def task_status(
        self, agent_id: str, task_id: str, state: str, message: str | None, reason: str | None, *,
        executor_id: str | None = None, uuid: str | None = None, data: str | None = None,
    ) -> None:
        """An agent (or an executor through it) reports on a task. Called with the cluster lock held."""
        record = self.tasks.active.get(task_id)
        if record is None or record.agent_id != agent_id:
            return  # e.g. already declared lost when its agent was removed
        record.state, record.message, record.reason = state, message, reason
        framework = self.frameworks.get(record.framework_id)
        status = task_status(
            task_id, state, source="SOURCE_EXECUTOR", agent_id=agent_id, executor_id=executor_id, message=message,
            reason=reason, reliable=True, uuid=uuid, data=data,
        )
        if uuid is not None:
            # The executor made this uuid and waits for its acknowledgement (see _acknowledge).
            self._executor_updates[uuid] = (agent_id, task_id)
        if framework is not None:
            self._send_reliably(framework, status)
        if record.terminal:
            self.tasks.finish(record)
            self.offers.release(agent_id, record.resources)
            self._allocate([agent_id])

    def executor_message(self, agent_id: str, framework_id: str, executor_id: str, data: str) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is not None:
            framework.send(message_event(agent_id, executor_id, data))

    def executor_lost(self, agent_id: str, framework_id: str, executor_id: str, status: int) -> None:
        framework = self.frameworks.get(framework_id)
        if framework is not None:
            framework.send(failure_event(agent_id, executor_id, status))

    @staticmethod
    def _status_of(record: TaskRecord, source: str, reason: str | None = None) -> dict[str, Any]:
        return task_status(
            record.task_id, record.state, source=source, agent_id=record.agent_id,
            message=record.message, reason=reason or record.reason,
        )

    # -- subscription --------------------------------------------------------------------------

    def subscribe(self, call: dict[str, Any]) -> Subscription:
        body = call.get("subscribe")
        info = body.get("framework_info") if isinstance(body, dict) else None
        if not isinstance(info, dict):
            raise CallError(400, "Expecting 'subscribe.framework_info' to be present")
        for required in ("user", "name"):
            if not isinstance(info.get(required), str) or not info[required]:
                raise CallError(400, f"Expecting 'framework_info.{required}' to be present")
        call_id = id_value(call.get("framework_id"))
        info_id = id_value(info.get("id"))
        if call_id and info_id and call_id != info_id:
            raise CallError(400, "'framework_id' differs from 'subscribe.framework_info.id'")
        framework_id = call_id or info_id
        with self._lock:
            subscription = Subscription(str(uuid.uuid4()))
            if framework_id in self._removed_frameworks:
                subscription.send(error_event("Framework has been removed"))
                subscription.end()
                return subscription
            framework = self.frameworks.get(framework_id) if framework_id else None
            if framework is None:
                framework_id = framework_id or f"{self.master_id}-{next(self._framework_seq):04d}"
                framework = Framework(framework_id, info)
                self.frameworks[framework_id] = framework
            elif framework.subscription is not None:
                # Fail-over: the new connection replaces the old one, whose offers are void. Like
                # Mesos, tell the old scheduler, so it stops instead of subscribing back.
                framework.subscription.send(error_event("Framework failed over"))
                self._disconnect(framework, start_failover_timer=False)
            if framework.failover_timer is not None:
                framework.failover_timer.cancel()
                framework.failover_timer = None
            framework.info = {**info, "id": {"value": framework_id}}
            framework.subscription = subscription
            framework.suppressed = bool(body.get("suppressed_roles")) if isinstance(body, dict) else False
            subscription.send(
                {
                    "type": "SUBSCRIBED",
                    "subscribed": {
                        "framework_id": {"value": framework_id},
                        "heartbeat_interval_seconds": self.heartbeat_interval,
                        "master_info": self.master_info(),
                    },
                }
            )
            # At-least-once delivery: whatever the framework did not acknowledge is sent again.
            framework.send_unacked(time.monotonic(), self.status_retry_seconds, due_only=False)
            self._allocate()
            return subscription

    def stream_ended(self, subscription: Subscription) -> None:
        """The stream's connection is gone (client closed it or a write failed)."""
        with self._lock:
            for framework in self.frameworks.values():
                if framework.subscription is subscription:
                    self._disconnect(framework, start_failover_timer=True)
                    return

    def retry_unacked(self) -> None:
        """Send due unacknowledged updates again to their subscribed frameworks, as a Mesos agent does (a
        scheduler that could not record an update, its state store away, has it once more); then again
        in half the first interval, until the master stops."""
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            for framework in self.frameworks.values():
                sent = framework.send_unacked(now, self.status_retry_seconds, due_only=True)
                if sent:
                    log.info("sent %d unacknowledged updates again to framework %s", sent, framework.framework_id)
            # (So an update is sent again at most half an interval late.)
            self._retry_timer = self._reactor.call_later(self.status_retry_seconds / 2, self.retry_unacked)

    def end_streams(self) -> None:
        """Fault injection: end every subscriber's stream (drivers re-subscribe; tasks keep running)."""
        with self._lock:
            for framework in list(self.frameworks.values()):
                if framework.subscription is not None:
                    self._disconnect(framework, start_failover_timer=True)

    def stop(self) -> None:
        """No more offers or fail-over timers; end every stream."""
        with self._lock:
            self._stopping = True
            if self._retry_timer is not None:
                self._retry_timer.cancel()
            for framework in self.frameworks.values():
                if framework.failover_timer is not None:
                    framework.failover_timer.cancel()
                if framework.subscription is not None:
                    framework.subscription.end()
                    framework.subscription = None

    def _disconnect(self, framework: Framework, *, start_failover_timer: bool) -> None:
        subscription = framework.subscription
        framework.subscription = None
        if subscription is not None:
            framework.previous_stream_id = subscription.stream_id
            subscription.end()
        for offer in self.offers.of_framework(framework.framework_id):
            self.offers.give_back(offer.offer_id)
        if start_failover_timer and not self._stopping:
            # Like Mesos: a framework that stays away longer than its failover_timeout is torn down.
            framework.failover_timer = self._reactor.call_later(
                framework.failover_timeout(), lambda: self._failover_expired(framework)
            )
        self._allocate()

    def _failover_expired(self, framework: Framework) -> None:
        with self._lock:
            if self.frameworks.get(framework.framework_id) is framework and not framework.connected:
                log.warning("framework %s did not come back within its failover timeout", framework.framework_id)
                self._remove_framework(framework)

    def _remove_framework(self, framework: Framework) -> None:
        for record in self.tasks.of_framework(framework.framework_id):
            agent = self.agents.get(record.agent_id)
            if agent is not None:
                agent.kill(record.task_id, self._grace(None, record.info.get("kill_policy")))
        if framework.subscription is not None:
            framework.subscription.end()
            framework.subscription = None
        for offer in self.offers.of_framework(framework.framework_id):
            self.offers.give_back(offer.offer_id)
        if framework.failover_timer is not None:
            framework.failover_timer.cancel()
        del self.frameworks[framework.framework_id]
        self._removed_frameworks.add(framework.framework_id)
        self._allocate()

    # -- calls ---------------------------------------------------------------------------------

    def handle_call(self, call: dict[str, Any], stream_id: str | None) -> None:
        """Apply a non-SUBSCRIBE call; raises CallError for a call Mesos would refuse."""
        kind = call.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise CallError(400, f"Unsupported call type {kind!r}")
        framework_id = id_value(call.get("framework_id"))
        if not framework_id:
            raise CallError(400, "Expecting 'framework_id' to be present")
        with self._lock:
            framework = self.frameworks.get(framework_id)
            if framework is None:
                raise CallError(400, f"Framework {framework_id} cannot be found")
            if not stream_id:
                raise CallError(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
            if framework.subscription is None:
                # When the master ends a stream, pymesos still handles the events it had buffered and
                # acknowledges them with that stream's id; any error reply would abort the driver.
                if stream_id != framework.previous_stream_id:
                    raise CallError(403, f"Framework {framework_id} is not subscribed")
            elif stream_id != framework.subscription.stream_id:
                raise CallError(400, f"The stream ID '{stream_id}' does not match framework {framework_id}'s")
            handler(framework, call)

    def _call_handlers(self) -> dict[str, Callable[[Framework, dict[str, Any]], None]]:
        ignored = self._ignore
        return {
            "ACCEPT": self._accept,
            "DECLINE": self._decline,
            "REVIVE": self._revive,
            "SUPPRESS": self._suppress,
            "KILL": self._kill,
            "ACKNOWLEDGE": self._acknowledge,
            "RECONCILE": self._reconcile_call,
            "TEARDOWN": lambda framework, _call: self._remove_framework(framework),
            "MESSAGE": self._message,
            "SHUTDOWN": self._shutdown,
            # No inverse offers or operations here: these are accepted and have nothing to act on.
            "REQUEST": ignored,
            "ACCEPT_INVERSE_OFFERS": ignored,
            "DECLINE_INVERSE_OFFERS": ignored,
            "ACKNOWLEDGE_OPERATION_STATUS": ignored,
            "RECONCILE_OPERATIONS": ignored,
        }

    @staticmethod
    def _ignore(_framework: Framework, _call: dict[str, Any]) -> None:
        return None

    def _accept(self, framework: Framework, call: dict[str, Any]) -> None:
        accept = call_object(call, "accept")
        task_infos = launch_task_infos(accept.get("operations"))
        # Unlike Mesos, unused resources come straight back unless the scheduler asked for a filter:
        # the scheduler keeps launching as tasks become pending, and waiting 5 s would stall it.
        refuse = refuse_seconds(accept.get("filters"), default=0.0)
        offers, stale, problem = self._offers_for(framework, accept.get("offer_ids"))
        if problem is not None:
            for offer in offers:
                self.offers.give_back(offer.offer_id)
            for info in task_infos:
                task_id = id_value(info.get("task_id")) if isinstance(info, dict) else None
                if task_id:
                    self._tell(framework, task_id, "TASK_DROPPED", "REASON_INVALID_OFFERS", problem)
            self._allocate({o.agent_id for o in offers})
            return
        agent_id = offers[0].agent_id
        pool = Resources()
        for offer in offers:
            pool = pool + self.offers.consume(offer.offer_id).resources
        plan = plan_launches(
            task_infos, framework_id=framework.framework_id, agent_id=agent_id, pool=pool,
            active_ids=self.tasks.active.keys(), stale_offer=stale,
        )
        for rejection in plan.rejections:
            if rejection.task_id is not None:
                self._tell(framework, rejection.task_id, rejection.state, rejection.reason, rejection.message)
        self.offers.release(agent_id, plan.leftover)
        self._set_filter(framework, agent_id, refuse)
        agent = self.agents[agent_id]
        for record in plan.launches:
            # Added first: an agent may report on the task (e.g. TASK_FAILED) before launch returns.
            self.tasks.add(record)
            try:
                agent.launch(framework.framework_id, record.info)
            except Exception as exc:
                # Agents report a task that cannot start as TASK_FAILED; this is the backstop for a
                # failure they do not expect. Like Mesos, the ACCEPT itself still succeeds: one task
                # must neither fail the call nor stop the launches after it.
                log.exception("agent %s could not launch task %s", agent_id, record.task_id)
                self._launch_failed(framework, record, f"Failed to launch: {exc}")
        made = self._allocate([agent_id])
        if agent_id in made:
            for offer in offers:
                self.offers.alias(offer.offer_id, made[agent_id])

    def _launch_failed(self, framework: Framework, record: TaskRecord, message: str) -> None:
        """End a task its agent could not start (unless the agent already reported its end)."""
        if self.tasks.active.get(record.task_id) is not record:
            return
        record.state, record.message, record.reason = "TASK_FAILED", message, "REASON_CONTAINER_LAUNCH_FAILED"
        self.tasks.finish(record)
        agent = self.agents.get(record.agent_id)
        if agent is not None:
            # Whatever the agent did start of it must not outlive the task (its later reports are
            # ignored: the master no longer has it as live).
            try:
                agent.kill(record.task_id, 0.0)
            except Exception:
                log.exception("cannot stop what the agent started of task %s", record.task_id)
        self.offers.release(record.agent_id, record.resources)
        # As a Mesos agent sends it: reliable, so the scheduler hears of it even across a re-subscription.
        status = task_status(record.task_id, record.state, source="SOURCE_AGENT", agent_id=record.agent_id,
                             message=message, reason=record.reason, reliable=True)
        self._send_reliably(framework, status)

    def _send_reliably(self, framework: Framework, status: dict[str, Any]) -> None:
        framework.send_reliably(status["uuid"], status["task_id"]["value"], update_event(status), time.monotonic(),
                                self.status_retry_seconds)

    def _offers_for(self, framework: Framework, raw_ids: Any) -> tuple[list[Offer], bool, str | None]:
        """The outstanding offers an ACCEPT names, whether any was reached via an alias, and what is
        wrong with them (None when they can be used)."""
        offer_ids = id_values(raw_ids)
        offers: list[Offer] = []
        stale = False
        problem = None if offer_ids else "Expecting 'accept.offer_ids' to be present"
        for offer_id in offer_ids:
            offer, aliased = self.offers.resolve(offer_id)
            if offer is None or offer.framework_id != framework.framework_id:
                problem = f"Offer {offer_id} is no longer valid"
                continue
            stale = stale or aliased
            if offer not in offers:
                offers.append(offer)
        if problem is None and len({o.agent_id for o in offers}) > 1:
            problem = "Offers in one ACCEPT must all come from the same agent"
        return offers, stale, problem

    def _tell(self, framework: Framework, task_id: str, state: str, reason: str, message: str) -> None:
        """A master-generated update: no uuid, so it is neither acknowledged nor retransmitted."""
        framework.send(update_event(task_status(task_id, state, source="SOURCE_MASTER", message=message,
                                                reason=reason)))

    def _decline(self, framework: Framework, call: dict[str, Any]) -> None:
        decline = call_object(call, "decline")
        refuse = refuse_seconds(decline.get("filters"), default=DEFAULT_REFUSE_SECONDS)
        agents = set()
        for offer_id in id_values(decline.get("offer_ids")):
            offer = self.offers.get(offer_id)
            if offer is not None and offer.framework_id == framework.framework_id:
                self.offers.give_back(offer_id)
                self._set_filter(framework, offer.agent_id, refuse)
                agents.add(offer.agent_id)
        self._allocate(agents)

    def _set_filter(self, framework: Framework, agent_id: str, seconds: float) -> None:
        """Offer nothing from this agent to this framework for ``seconds`` (then offer again)."""
        if seconds <= 0:
            return
        framework.filters[agent_id] = time.monotonic() + seconds
        self._reactor.call_later(seconds, lambda: self._allocate_locked([agent_id]))

    def _revive(self, framework: Framework, _call: dict[str, Any]) -> None:
        framework.filters.clear()
        framework.suppressed = False
        self._allocate()

    def _suppress(self, framework: Framework, _call: dict[str, Any]) -> None:
        framework.suppressed = True

    def _kill(self, framework: Framework, call: dict[str, Any]) -> None:
        kill = call_object(call, "kill")
        task_id = id_value(kill.get("task_id"))
        if not task_id:
            raise CallError(400, "Expecting 'kill.task_id' to be present")
        record = self.tasks.active.get(task_id)
        if record is None or record.framework_id != framework.framework_id:
            # Like Mesos: a kill of an unknown (or finished) task is answered by reconciling it.
            self._reconcile(framework, [task_id])
            return
        agent = self.agents.get(record.agent_id)
        if agent is not None:
            agent.kill(task_id, self._grace(kill.get("kill_policy"), record.info.get("kill_policy")))

    def _grace(self, *policies: Any) -> float:
        """The first grace period given (KILL call, then TaskInfo), else the cluster default."""
        for policy in policies:
            if isinstance(policy, dict):
                nanos: Any = (policy.get("grace_period") or {}).get("nanoseconds")
                try:
                    return max(0.0, int(nanos) / 1e9)
                except (TypeError, ValueError):
                    continue
        return self._default_grace

    def _acknowledge(self, framework: Framework, call: dict[str, Any]) -> None:
        uuid_value = call_object(call, "acknowledge").get("uuid")
        if not isinstance(uuid_value, str):
            raise CallError(400, "Expecting 'acknowledge.uuid' to be present")
        framework.acknowledged(uuid_value, time.monotonic(), self.status_retry_seconds)
        target = self._executor_updates.pop(uuid_value, None)
        if target is not None and target[0] in self.agents:
            self.agents[target[0]].acknowledged(target[1], uuid_value)

    def _message(self, framework: Framework, call: dict[str, Any]) -> None:
        message = call_object(call, "message")
        agent_id, executor_id = id_value(message.get("agent_id")), id_value(message.get("executor_id"))
        data = message.get("data")
        if not agent_id or not executor_id or not isinstance(data, str):
            raise CallError(400, "Expecting 'message.agent_id', 'message.executor_id' and 'message.data'")
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.framework_message(executor_id, data)

    def _shutdown(self, framework: Framework, call: dict[str, Any]) -> None:
        shutdown = call_object(call, "shutdown")
        agent_id, executor_id = id_value(shutdown.get("agent_id")), id_value(shutdown.get("executor_id"))
        agent = self.agents.get(agent_id or "")
        if agent is not None and executor_id:
            agent.shutdown_executor(executor_id)

    def _reconcile_call(self, framework: Framework, call: dict[str, Any]) -> None:
        entries = call_object(call, "reconcile").get("tasks") or []
        if not isinstance(entries, list):
            raise CallError(400, "'reconcile.tasks' must be a list")
        task_ids = [id_value(e.get("task_id")) for e in entries if isinstance(e, dict)]
        self._reconcile(framework, [t for t in task_ids if t] if entries else None)

    def _reconcile(self, framework: Framework, task_ids: list[str] | None) -> None:
        """Latest state of the named tasks (None: implicit, every live task of the framework)."""
        if task_ids is None:
            for record in self.tasks.of_framework(framework.framework_id):
                framework.send(update_event(self._status_of(record, "SOURCE_MASTER", "REASON_RECONCILIATION")))
            return
        for task_id in task_ids:
            found = self.tasks.find(task_id, framework.framework_id)
            if found is not None:
                status = self._status_of(found, "SOURCE_MASTER", "REASON_RECONCILIATION")
            else:
                status = task_status(task_id, "TASK_LOST", source="SOURCE_MASTER",
                                     message="Reconciliation: Task is unknown", reason="REASON_RECONCILIATION")
            framework.send(update_event(status))

    # -- allocation ----------------------------------------------------------------------------

    def _allocate_locked(self, agent_ids: Iterable[str] | None = None) -> None:
        with self._lock:
            self._allocate(agent_ids)

    def _allocate(self, agent_ids: Iterable[str] | None = None) -> dict[str, str]:
        """Offer free resources (merging into an outstanding offer); returns agent id -> new offer id."""
        if self._stopping:
            return {}
        now = time.monotonic()
        new_offers: dict[str, list[Offer]] = {}
        made: dict[str, str] = {}
        for agent_id in list(self.agents) if agent_ids is None else agent_ids:
            free = self.offers.free.get(agent_id)
            if agent_id not in self.agents or free is None or free.is_empty():
                continue
            current = self.offers.outstanding(agent_id)
            if current is not None:
                framework = self.frameworks.get(current.framework_id)
                if framework is None or not framework.connected or framework.suppressed:
                    continue
                old, offer = self.offers.merge_free(agent_id)
                framework.send(rescind_event(old.offer_id))
            else:
                if not free.is_offerable():
                    continue
                framework = self._pick_framework(agent_id, now)
                if framework is None:
                    continue
                offer = self.offers.offer_free(agent_id, framework.framework_id)
            new_offers.setdefault(framework.framework_id, []).append(offer)
            made[agent_id] = offer.offer_id
        for framework_id, offers in new_offers.items():
            self.frameworks[framework_id].send(offers_event([self._offer_json(o) for o in offers]))
        return made

    def _pick_framework(self, agent_id: str, now: float) -> Framework | None:
        for framework in self.frameworks.values():
            if not framework.connected or framework.suppressed:
                continue
            until = framework.filters.get(agent_id)
            if until is not None:
                if until > now:
                    continue
                del framework.filters[agent_id]
            return framework
        return None

    def _offer_json(self, offer: Offer) -> dict[str, Any]:
        spec = self.agents[offer.agent_id].spec
        port = self.agents[offer.agent_id].port
        return {
            "id": {"value": offer.offer_id},
            "framework_id": {"value": offer.framework_id},
            "agent_id": {"value": offer.agent_id},
            "hostname": spec.hostname,
            "url": {
                "scheme": "http",
                "address": {"hostname": spec.hostname, "ip": spec.hostname, "port": port},
                "path": "/slave(1)",
            },
            "resources": offer.resources.to_mesos(),
            "attributes": [
                {"name": name, "type": "TEXT", "text": {"value": value}}
                for name, value in spec.all_attributes().items()
            ],
        }

    # -- introspection -------------------------------------------------------------------------

    def state_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.master_id,
                "version": VERSION,
                "frameworks": [
                    {"id": f.framework_id, "name": f.info.get("name"), "active": f.connected,
                     "tasks": len(self.tasks.of_framework(f.framework_id))}
                    for f in self.frameworks.values()
                ],
                "agents": [
                    {"id": a.agent_id, "hostname": a.spec.hostname, "url": a.url,
                     "attributes": a.spec.all_attributes()}
                    for a in self.agents.values()
                ],
            }
