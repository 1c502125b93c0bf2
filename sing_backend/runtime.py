"""Wires the pieces of a backend together and starts/stops them in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import uvicorn
from sqlalchemy.exc import DBAPIError

from .agent_sandbox import agent_address, agent_sandboxes, inside
from .api.queued_writes import QueuedWriteApplier
from .cluster import EmbeddedCluster, default_agents
from .errors import ApiError
from .history import HistoryStore
from .history.readers import QueryProcessDied
from .latency import freeze_heap, tune_interpreter
from .leader import LeaderElection
from .loadbalancer import BaragonClient, NginxConfigurator, create_baragon_app
from .local_backend import free_port
from .loop_lag import LoopLagMonitor
from .scheduler.core import Scheduler
from .scheduler.entities import TaskEntry
from .scheduler.framework import DriverGateway
from .scheduler.healthchecker import HealthChecker
from .scheduler.history_sink import HistorySink
from .scheduler.lb_driver import LbDriver
from .scheduler.views_cache import ListCache
from .settings import Settings, SettingsError
from .startup import check_master_in_zookeeper, open_history, open_state_store, resolve_mesos_master
from .state.store import Gone, StateStore, StateUnavailable, TooLarge
from .state.write_queue import ANSWERS, APPLYING, QUEUE, Applying, WriteQueue, provisional_answer, write_id_of
from .state.zookeeper import Fenced, ZkStateStore

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)
T = TypeVar("T")

class LeadLost(Exception):
    """The leadership being taken up ended before the take-up was done."""


# After failing to take up the lead, how long a backend waits before giving it up to stand again.
_LEAD_RETRY_SECONDS = 2.0


class Runtime:
    """One backend process. In local mode it leads at once over its embedded cluster; in mesos mode it
    joins the leader election and schedules only while elected (standbys forward reads to the leader
    and queue writes for it in ZooKeeper)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: StateStore | None = None
        self.history: HistoryStore | None = None
        self.sink = HistorySink()
        self.cluster: EmbeddedCluster | None = None
        self.gateway: DriverGateway | None = None
        self.health: HealthChecker | None = None
        self.nginx: NginxConfigurator | None = None
        self.election: LeaderElection | None = None
        self.app: FastAPI | None = None  # this backend's API, through which the leader applies queued writes
        self.write_queue: WriteQueue | None = None
        self.write_queue_changed = asyncio.Event()
        self.queued_writes = 0
        self._applier: QueuedWriteApplier | None = None
        self._baragon_server: uvicorn.Server | None = None
        self._baragon_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transition = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self.loop_lag = LoopLagMonitor()
        self.scheduler: Scheduler
        self.list_cache = ListCache(self)
        self.http = httpx.AsyncClient(timeout=10.0)
        # Mesos mode: an agent's /state being fetched for the sandboxes it lists, by agent URL.
        self._sandbox_fetches: dict[str, asyncio.Future[dict[str, str]]] = {}
        self._chores: set[asyncio.Task[Any]] = set()  # see _chore
        self._completing: asyncio.Task[None] | None = None  # see _complete_history_soon
        self.scheduler_started = False
        self.leading = False
        self.master_address = ""
        self._lead_lock: str | None = None  # the election node of the leadership being taken up or held
        self._resigning: asyncio.Task[None] | None = None

    @property
    def version(self) -> int:
        # List caches follow the scheduler that is current (a new one after each leadership change).
        return (self._generation << 40) | self.scheduler.version if self.scheduler_started else -1

    _generation = 0

    @property
    def advertise_url(self) -> str:
        return self.settings.advertise_url or f"http://{self.settings.host}:{self.settings.port}"

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        tune_interpreter()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if s.mode == "mesos":
            # First: nothing is opened yet (no ZooKeeper session, no history processes) if it is wrong.
            self.master_address = await asyncio.to_thread(resolve_mesos_master, s.mesos_master or "")
            if self.master_address.startswith(("zk://", "zoo://")):
                await asyncio.to_thread(check_master_in_zookeeper, self.master_address)
        self.store = await asyncio.to_thread(open_state_store, s)
        self.history = await open_history(s)
        self.sink.start()
        self.scheduler = self._new_scheduler()
        self.scheduler_started = True
        self.loop_lag.start()
        if s.history_purge_after_days or s.history_keep_per_request:
            self._purger = self._loop.create_task(self._purge_history())
        if s.mode == "local":
            await self._start_embedded_cluster()
            await self._lead()
        else:
            assert isinstance(self.store, ZkStateStore)
            store = self.store
            self.write_queue = WriteQueue(store.client, s.zk_root, timeout=s.zk_session_timeout,
                                          fence=lambda: store.fenced_by)
            await asyncio.to_thread(self.write_queue.watch, self._write_queue_changed_from_thread)
            self.election = LeaderElection(self.store.client, f"{s.zk_root.rstrip('/')}/leader", self.advertise_url,
                                           self._elected_from_thread, self._demoted_from_thread)
            self.election.start()
        freeze_heap()

    def _new_scheduler(self) -> Scheduler:
        assert self.store is not None
        scheduler = Scheduler(self.settings, self.store, self.history, self.sink)
        scheduler.load()
        scheduler.sandbox_locator = self._sandbox_dir
        scheduler.on_subscribed = self._complete_history_soon
        scheduler.on_unsaved = self._status_unsaved
        self._generation += 1
        return scheduler

    async def _start_embedded_cluster(self) -> None:
        s = self.settings
        a = s.agents
        specs = [replace(spec, cpus=a.cpus, mem_mb=a.mem_mb, disk_mb=a.disk_mb,
                         ports=(a.first_port + i * a.ports_per_agent, a.first_port + (i + 1) * a.ports_per_agent - 1))
                 for i, spec in enumerate(default_agents(a.count, a.racks))]
        self.cluster = EmbeddedCluster(s.cluster_dir, specs, simulated=s.simulated_agents,
                                       kill_grace_seconds=s.kill_grace_seconds, executor=s.executor,
                                       data_dir=s.data_dir)
        await asyncio.to_thread(self.cluster.start)
        self.master_address = self.cluster.master_address
        log.info("local cluster master at %s with %d agents", self.master_address, len(specs))

    # ---- leadership

    def _elected_from_thread(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._lead(), self._loop)

    async def _undo_take_up(self, lock: str) -> None:
        """Stop what a take-up of the lead under `lock` had started, and load the state again."""
        assert isinstance(self.store, ZkStateStore)
        if self.store.fenced_by == lock:
            self.store.fence_off()
        try:
            await self._stop_scheduling()
        except Exception:
            log.exception("could not stop what had started while taking up the lead")
        self._lead_lock = None
        await self._reload_state()

    async def _resign_later(self, lock: str) -> None:
        await asyncio.sleep(_LEAD_RETRY_SECONDS)
        if self.election is not None and self.election.lock_path() == lock:
            self._resign()  # this leadership, not one won since

    def _still_elected(self, lock: str | None) -> bool:
        """Whether the leadership won under election node `lock` (None: local mode) still holds. The
        election thread ends it before it tells the backend to step down, so what is still under way
        then (a take-up, a re-subscription) must not go on to subscribe to the master."""
        return lock is None or self.election is None or self.election.lock_path() == lock

    def _check_elected(self, lock: str | None) -> None:
        if not self._still_elected(lock):
            raise LeadLost(lock)

    async def _reload_state(self) -> None:
        """A standby's scheduler, reloaded from what the leaders persisted: its stale answers when no
        leader can be reached."""
        try:
            self.scheduler = await asyncio.to_thread(self._new_scheduler)
        except Exception:
            # ZooKeeper away, most often: the next take-up of the lead loads the state again.
            log.exception("could not reload the state after stepping down")

    def _write_queue_changed_from_thread(self, count: int) -> None:
        self.queued_writes = count
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.write_queue_changed.set)

    def _demoted_from_thread(self) -> None:
        # Stop writing to ZooKeeper and talking to the cluster at once, from the election thread, before
        # anything else happens: what the stepping-down scheduler still does is not saved.
        if isinstance(self.store, ZkStateStore):
            self.store.fence_off()
        gateway = self.gateway
        if gateway is not None:
            gateway.disable()
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._step_down(), self._loop)

    async def _lead(self) -> None:
        """Take up the lead: in mesos mode, the one won under this backend's election node now. If that
        leadership ends before the take-up is done, what had started is stopped again. If the take-up
        fails, the lead is given up again after a pause (so that a lone backend does not spin): holding
        the election without scheduling would leave every write queued for the leader unapplied. Both
        are done holding the transition lock, so that they never undo a leadership won since."""
        async with self._transition:
            if self.leading:
                return
            if self.settings.mode == "local":
                await self._take_up(None)
                return
            assert self.election is not None and self._loop is not None
            lock = self.election.lock_path()
            if lock is None:
                return  # lost the lead again before taking it up
            try:
                await self._take_up(lock)
            except LeadLost:
                log.warning("lost the lead while taking it up: stopping what had started")
                await self._undo_take_up(lock)
            except Exception:
                log.exception("could not take up the lead; giving it up, to stand again in %g s",
                              _LEAD_RETRY_SECONDS)
                await self._undo_take_up(lock)
                self._resigning = self._loop.create_task(self._resign_later(lock))

    async def _take_up(self, lock: str | None) -> None:
        if lock is not None:
            assert isinstance(self.store, ZkStateStore)
            # Here, after any previous leadership has stopped: every write from now on holds only while
            # this backend's election node (and so its session) does.
            self.store.fence(lock)
            # A new leader starts from what the previous one persisted.
            self.scheduler = await asyncio.to_thread(self._new_scheduler)
            self._check_elected(lock)
        self._lead_lock = lock
        await self._find_master()
        # Set before the check: a demotion from here on finds this gateway and disables it (its driver
        # stops before it subscribes, or at once if it has); one before it is caught by the check.
        self.gateway = self._new_gateway()
        self._check_elected(lock)
        self.scheduler.gateway = self.gateway
        self.scheduler.start()
        await self._start_load_balancer()
        self._check_elected(lock)
        self.health = HealthChecker(self.scheduler, self._result_file, self.settings.max_concurrent_health_checks)
        self.health.start()
        # Off the event loop: pymesos' start() asks the master for /version first, which blocks
        # for up to 10 s (or more) when the master is unreachable or silent.
        await asyncio.to_thread(self.gateway.start)
        self._check_elected(lock)
        assert self._loop is not None
        self._watchdog = self._loop.create_task(self._watch_master())
        self.leading = True
        if self.write_queue is not None and self.app is not None:
            self._applier = QueuedWriteApplier(self, self.app)
            self._applier.start()
        log.info("scheduling as leader (%s)", self.advertise_url)

    async def _step_down(self) -> None:
        async with self._transition:
            if not self.leading:
                return
            self.leading = False
            log.warning("no longer the leader: scheduling stopped")
            await self._stop_scheduling()
            self._lead_lock = None
            await self._reload_state()

    async def _purge_history(self) -> None:
        s = self.settings
        while True:
            if self.leading and self.history is not None:
                cut = (int(time.time() * 1000) - int(s.history_purge_after_days * 86_400_000)
                       if s.history_purge_after_days else None)
                try:
                    removed = await self.history.purge(older_than_ms=cut, keep_per_request=s.history_keep_per_request)
                    if removed:
                        log.info("history: purged %d finished tasks", removed)
                except Exception:
                    log.exception("history purge failed; retrying in %g s", s.history_purge_interval_seconds)
            await asyncio.sleep(s.history_purge_interval_seconds)

    async def _watch_master(self) -> None:
        """pymesos never notices a master that went silent (half-open connection): re-subscribe then.
        Also asks the master about launches it never confirmed."""
        timeout = self.settings.mesos_heartbeat_timeout_seconds
        confirm_ms = int(self.settings.launch_confirm_timeout_seconds * 1000)
        while True:
            await asyncio.sleep(min(5.0, timeout / 3, self.settings.launch_confirm_timeout_seconds / 2))
            self.scheduler.reconcile_unconfirmed(confirm_ms)
            gateway = self.gateway
            if gateway is None or gateway.silent_for() < timeout:
                continue
            log.warning("no word from the Mesos master for %.0f s: re-subscribing", gateway.silent_for())
            self.scheduler.on_disconnected()
            await asyncio.to_thread(gateway.stop)
            await self._find_master()
            self.gateway = self._new_gateway()
            if not self._still_elected(self._lead_lock):
                return  # demoted meanwhile: the step-down stops the rest
            self.scheduler.gateway = self.gateway
            # Off the event loop: against a master that is still silent, pymesos' start() blocks in
            # its /version request, and the API must keep answering meanwhile.
            await asyncio.to_thread(self.gateway.start)

    def _new_gateway(self) -> DriverGateway:
        """A driver for the current scheduler and master, not started."""
        st = self.settings
        return DriverGateway(self.scheduler, self.master_address, self._loop, framework_name=st.framework_name,
                             role=st.framework_role, principal=st.framework_principal, secret=st.framework_secret,
                             failover_timeout=st.framework_failover_timeout_seconds,
                             call_timeout=st.mesos_call_timeout_seconds)

    async def _find_master(self) -> None:
        """Pick the master to subscribe to from the configured list again: the one picked before may
        have died or gone silent. If none answers now, the last one is tried again."""
        if self.settings.mode == "local":
            return
        try:
            address = await asyncio.to_thread(resolve_mesos_master, self.settings.mesos_master or "")
        except SettingsError as exc:
            log.warning("%s; subscribing to %s again", exc, self.master_address)
            return
        if address != self.master_address:
            log.warning("Mesos master: %s now, was %s", address, self.master_address)
            self.master_address = address

    def change(self, action: Callable[[], T]) -> T:
        """Make one change asked for through the API.

        Its calls to the cluster and the load balancer go out once its writes are saved. A change asked
        for on a standby (a queued write, see api/queued_writes.py) commits in one batch with the queued
        write's removal and a provisional answer, so that it is applied once even if this leader dies
        half-way or another leader got to it first. A change that fails other than by the scheduler's
        checks (which refuse before changing anything) may have left the scheduler's memory ahead of
        what is saved: this backend then gives up the lead, to start again from what is saved."""
        applying = APPLYING.get()
        assert self.store is not None
        if applying is not None and not self.leading:
            applying.abandoned = True
            raise ApiError(503, "this backend stopped leading while applying a queued write; the next leader "
                                "applies it")
        try:
            with self.scheduler.effects_after_commit():
                if applying is None:
                    # One batch: a change cut off by a lost connection or the end of this leadership is
                    # not left half-saved (unless it is too large for one ZooKeeper multi).
                    with self.store.batch(split_if_too_large=True):
                        return action()
                try:
                    with self.store.batch():
                        out = action()
                        self.store.take(QUEUE, applying.name)
                        self.store.put(ANSWERS, write_id_of(applying.name),
                                       provisional_answer(applying, self.advertise_url))
                except Gone:
                    # Retried after a lost connection, the commit may find its own take done.
                    if not self._landed(applying):
                        raise
                except TooLarge as exc:
                    raise self._refuse_too_large(applying, exc) from exc
                applying.changed = True
                return out
        except ApiError:
            raise
        except (StateUnavailable, Gone) as exc:
            if not isinstance(exc, Fenced):  # fenced: that leadership has already ended
                self._resign()
            if applying is None:
                raise
            applying.abandoned = True  # whether it landed is not known: it stays queued, taken once
            raise StateUnavailable(f"queued write {applying.name}: {type(exc).__name__} {exc}") from exc
        except Exception:
            self._resign()
            raise

    def _refuse_too_large(self, applying: Applying, exc: TooLarge) -> ApiError:
        """A queued write's change must land in one multi with the write's removal, and this one is too
        large for that: nothing of it was saved. The write is removed, with its answer, on its own (else
        every next leader would apply it again, fail the same way, and give up the lead). The scheduler's
        memory holds the change: this backend gives up the lead, to start again from what is saved."""
        assert self.store is not None
        with self.store.batch():
            self.store.take(QUEUE, applying.name)
            self.store.put(ANSWERS, write_id_of(applying.name), provisional_answer(applying, self.advertise_url))
        applying.changed = True  # its answer (the error below) replaces the provisional one
        self._resign()
        return ApiError(413, f"this change is too large to be made as a write queued by a standby ({exc}); "
                             "nothing was changed. Send it to the leader (GET /api/state names it), which saves "
                             "such a change in parts")

    def _landed(self, applying: Applying) -> bool:
        assert self.write_queue is not None
        answer = self.write_queue.provisional_answer_of(applying.name)
        return answer is not None and answer.get("token") == applying.token

    def _status_unsaved(self, exc: Exception) -> None:
        if not isinstance(exc, Fenced):  # fenced: that leadership has already ended
            self._resign()

    def _resign(self) -> None:
        if self.election is not None:
            log.warning("giving up the lead to start again from ZooKeeper's state")
            self.election.resign()

    async def _stop_scheduling(self) -> None:
        if self._applier is not None:
            await self._applier.stop()
            self._applier = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.health is not None:
            await self.health.stop()
            self.health = None
        await self.scheduler.stop()
        if self.scheduler.lb is not None:
            await self.scheduler.lb.stop()
            self.scheduler.lb = None
        if self._baragon_server is not None:
            self._baragon_server.should_exit = True
            if self._baragon_task is not None:
                await self._baragon_task
            self._baragon_server = None
        if self.nginx is not None:
            await self.nginx.stop()
            self.nginx = None
        if self.gateway is not None:
            await asyncio.to_thread(self.gateway.stop)
            self.gateway = None

    def queue_first(self) -> bool:
        """Whether a write made on this leader goes through the write queue, behind the writes queued
        there: until the writes queued before this backend was elected have been applied (and those sent to
        it that queued behind them), so that those queued during the fail-over (some already answered
        202) come before those sent to the new leader."""
        return self._applier is not None and not self._applier.drained

    def queued_here(self, name: str) -> None:
        """A write sent to this backend was queued as `name` (see QueuedWriteApplier.queued_here)."""
        if self._applier is not None:
            self._applier.queued_here(name)

    def leader_url(self) -> str | None:
        if self.leading:
            return self.advertise_url
        return self.election.leader() if self.election is not None else None

    async def _start_load_balancer(self) -> None:
        mode = self.settings.load_balancer
        if mode == "none":
            return
        base_url = mode
        if mode == "nginx":
            # The built-in adapter: Baragon's request API in front of a private nginx.
            self.nginx = NginxConfigurator(self.settings.nginx_port, prefix=self.settings.data_dir / "nginx")
            await self.nginx.start()
            port = free_port()
            config = uvicorn.Config(create_baragon_app(self.nginx), host="127.0.0.1", port=port, log_level="warning",
                                    access_log=False, lifespan="off")
            self._baragon_server = uvicorn.Server(config)
            self._baragon_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            self._baragon_task = asyncio.get_running_loop().create_task(self._baragon_server.serve())
            while not self._baragon_server.started:
                await asyncio.sleep(0.01)
            base_url = f"http://127.0.0.1:{port}/baragon/v2"
            log.info("load balancer: nginx on port %d", self.settings.nginx_port)
        self.scheduler.lb = LbDriver(BaragonClient(base_url), self.scheduler.on_lb_result)
        self.scheduler.resume_load_balancer(empty=mode == "nginx")

    def _chore(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, held until done (the loop keeps only weak references)."""
        assert self._loop is not None
        chore = self._loop.create_task(work)
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    def _complete_history_soon(self) -> None:
        # One at a time: a re-subscription opens a new window of noted ends (Scheduler.on_registered).
        if self._completing is not None:
            self._completing.cancel()
        assert self._loop is not None
        self._completing = self._loop.create_task(self._complete_history(self.scheduler))

    async def _complete_history(self, scheduler: Scheduler) -> None:
        """Ask the cluster about tasks history shows unended that the scheduler does not run (see
        Scheduler.ask_about_unended). Every history write handed over is committed first. While history
        does not answer, asked again, with backoff: the scheduler holds the acknowledgements of the ends
        sent again meanwhile until then."""
        assert self.history is not None
        delay = 1.0
        while scheduler is self.scheduler and self.scheduler_started:
            try:
                await self.sink.drain()
                unended = await self.history.unended_task_ids()
            except Exception as exc:
                log.warning("history: could not look for tasks left unended (%s); asking again in %.0f s",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            if scheduler is self.scheduler and self.scheduler_started:
                scheduler.ask_about_unended(unended)
            return

    def _sandbox_dir(self, task_id: str) -> str | None:
        """A task's sandbox directory, as the embedded cluster knows it (None in mesos mode: see
        sandbox_directory, which asks the task's agent)."""
        if self.cluster is None:
            return None
        found = self.cluster.sandbox_dir(task_id)
        return str(found) if found else None

    async def sandbox_directory(self, task: TaskEntry) -> str | None:
        """A live task's sandbox directory: known, or asked of its agent (and then kept on the task)."""
        if task.directory is None and self.cluster is not None:
            task.directory = self._sandbox_dir(task.id)
        if task.directory is None and task.agent_id and (url := self.agent_url(task.agent_id)) is not None:
            await self._learn_sandboxes(task.agent_id, url)
        return task.directory

    async def _learn_sandboxes(self, agent_id: str, url: str) -> None:
        """Ask an agent for its sandboxes, once for every caller waiting on it, and give each of its live
        tasks that lacks one its directory: the agent's /state lists them all in one answer."""
        fetch = self._sandbox_fetches.get(url)
        if fetch is None:
            fetch = self._sandbox_fetches[url] = asyncio.ensure_future(agent_sandboxes(self.http, url))
            fetch.add_done_callback(lambda _: self._sandbox_fetches.pop(url, None))
        found = await asyncio.shield(fetch)
        tasks = self.scheduler.tasks
        for task_id, directory in found.items():  # the agent's sandboxes, not every task of the cluster
            task = tasks.get(task_id)
            if task is not None and task.directory is None and task.agent_id == agent_id:
                task.directory = directory

    def _result_file(self, task: TaskEntry, path: str) -> Path | httpx.URL | None:
        """Where a task's process-level health-check file appears (under its app/ directory): a path on
        this machine with the embedded cluster, else the agent's files API address that reads it."""
        directory = task.directory or self._sandbox_dir(task.id)
        if self.cluster is None:
            url = self.agent_url(task.agent_id) if task.agent_id else None
            if url is None or not inside(path):
                return None
            if directory is None:
                # Asked of the agent now, for a later check: this one finds no file yet, as while the task
                # has not written it.
                self._chore(self.sandbox_directory(task))
                return None
            return httpx.URL(f"{url}/files/read", params={"path": f"{directory}/{task.id}/app/{path}", "offset": -1})
        if directory is None:
            return None
        app = Path(directory) / task.id / "app"
        target = (app / path).resolve()
        return target if target.is_relative_to(app.resolve()) else None

    def agent_url(self, agent_id: str) -> str | None:
        if self.cluster is not None:
            try:
                return self.cluster.agent_url(agent_id)
            except KeyError:
                return None
        url = self.scheduler.agent_urls.get(agent_id)
        return agent_address(url) if url is not None else None

    async def history_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Read from the history store, every write handed to it so far included (503 while it is down)."""
        assert self.history is not None
        try:
            async with asyncio.timeout(self.settings.history_read_timeout_seconds):
                await self.sink.drain()
                return await getattr(self.history, name)(*args, **kwargs)
        except (TimeoutError, DBAPIError, QueryProcessDied):
            raise ApiError(503, "the history database is not answering; live state is unaffected, history "
                                "writes are queued and retried") from None

    async def task_history(self, task_id: str) -> dict[str, Any] | None:
        from .api.views import task_history_live

        task = self.scheduler.tasks.get(task_id)
        if task is not None:
            return task_history_live(task)
        return await self.history_call("task_history", task_id)

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
        if self.election is not None:
            await asyncio.to_thread(self.election.stop)
        await self.loop_lag.stop()
        async with self._transition:
            if self.leading:
                self.leading = False
                await self._stop_scheduling()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        await self.sink.close()
        if self.history is not None:
            await self.history.close()
        if self.store is not None:
            self.store.close()
        await self.http.aclose()
