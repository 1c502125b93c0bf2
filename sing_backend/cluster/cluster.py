"""EmbeddedCluster: a Mesos v1 HTTP master plus N agents in this process, tasks as real processes.

Sing's real scheduler (pymesos' MesosSchedulerDriver) runs against it unchanged: give it
``master_address`` as master_uri.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

from ..executor.reactor import Reactor
from ..executor.settings import ExecutorPaths, ExecutorSettings
from .agent import Agent
from .framework import FIRST_RETRY_SECONDS
from .httpserver import Acceptor
from .master import Master
from .master_http import MasterHTTPServer
from .sandbox import AgentLayout, task_id_problem
from .spec import AgentSpec

log = logging.getLogger(__name__)

# On stop, tasks get this long after SIGTERM before the SIGKILL.
_STOP_TERM_SECONDS = 0.5
_STOP_KILL_SECONDS = 5.0


class EmbeddedCluster:
    """A local Mesos-compatible cluster.

    ``simulated=True`` is a benchmark-only mode: tasks report TASK_RUNNING without starting any
    process (and TASK_KILLED when killed); never use it for the demo.
    ``kill_grace_seconds`` is the SIGTERM -> SIGKILL delay when neither the KILL call nor the
    TaskInfo carries a ``kill_policy.grace_period``.
    ``status_retry_seconds``: an unacknowledged status update is sent again after this long, then after
    twice that, up to 10 minutes (Mesos' default is 10 s).
    ``executor`` configures how agents run tasks (artifact cache, log rotation and archive, limits,
    sandbox retention); its unset paths are under ``data_dir`` (default: the work dir's parent).
    """

    def __init__(
        self,
        work_dir: Path,
        agents: list[AgentSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        simulated: bool = False,
        heartbeat_interval: float = 15.0,
        kill_grace_seconds: float = 3.0,
        status_retry_seconds: float = FIRST_RETRY_SECONDS,
        executor: ExecutorSettings | None = None,
        data_dir: Path | None = None,
    ) -> None:
        _check_unique(agents)
        self.work_dir = Path(work_dir)
        self._executor = executor or ExecutorSettings()
        # The artifact cache and the local log store live beside the cluster's work directory.
        self._paths = ExecutorPaths.resolve(self._executor, Path(data_dir) if data_dir else self.work_dir.parent)
        self._kill_grace = kill_grace_seconds
        self.simulated = simulated
        self._specs = list(agents)
        self._host = host
        self._port = port
        # One lock for master and agents: every event (call, process exit, timer) is short, and a
        # single lock makes the ordering of updates and offers obvious.
        self._lock = threading.RLock()
        self._reactor = Reactor()
        self._acceptor = Acceptor()
        self._master = Master(
            lock=self._lock,
            reactor=self._reactor,
            heartbeat_interval=heartbeat_interval,
            kill_grace_seconds=kill_grace_seconds,
            status_retry_seconds=status_retry_seconds,
        )
        self._server: MasterHTTPServer | None = None
        self._removed: list[Agent] = []
        self._started = False
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the master and every agent (killing orphans a crashed run left), return when ready."""
        if self._started:
            raise RuntimeError("cluster already started")
        self._started = True
        self._reactor.start()
        self._master.retry_unacked()
        self._acceptor.start()
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._server = MasterHTTPServer((self._host, self._port), self._master)
            self._master.set_address(self._host, self._server.port)
            self._acceptor.add(self._server)
            for spec in self._specs:
                self.add_agent(spec)
        except BaseException:
            self.stop()  # e.g. an agent hostname that cannot be bound: leave no thread behind
            raise
        log.info("embedded cluster: master at %s, %d agents%s", self.master_address, len(self._specs),
                 " (simulated)" if self.simulated else "")

    @property
    def master_address(self) -> str:
        """host:port of the master, as pymesos wants its master_uri."""
        if self._server is None:
            raise RuntimeError("cluster not started")
        return f"{self._host}:{self._server.port}"

    def stop(self) -> None:
        """Kill every task's process group (SIGTERM, then SIGKILL quickly), end streams, join threads."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        # No new connections first: a driver whose stream we end re-subscribes at once, and must
        # find nobody listening rather than a master half way through stopping.
        self._acceptor.stop()
        with self._lock:
            # Removed agents too: their killed processes may not have been reaped yet.
            agents = list(self._master.agents.values()) + self._removed
            for agent in agents:
                agent.silence_and_signal(signal.SIGTERM)
            if not _wait_idle(agents, _STOP_TERM_SECONDS):
                for agent in agents:
                    agent.silence_and_signal(signal.SIGKILL)
                if not _wait_idle(agents, _STOP_KILL_SECONDS):
                    log.error("some task processes did not die within %.0f s of SIGKILL", _STOP_KILL_SECONDS)
        self._master.stop()
        if self._server is not None:
            self._server.join_streams(timeout=2.0)
            self._server.close()
        for agent in agents:
            agent.close()
        self._reactor.stop()

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- agents --------------------------------------------------------------------------------

    def add_agent(self, spec: AgentSpec) -> None:
        """An agent joins; its resources are offered at once."""
        if not self._started or self._stopped:
            raise RuntimeError("add_agent needs a running cluster")
        with self._lock:
            taken = {(a.agent_id, a.spec.hostname) for a in self._master.agents.values()}
        if any(spec.agent_id == agent_id or spec.hostname == host for agent_id, host in taken):
            raise ValueError(f"agent {spec.agent_id} or host {spec.hostname} is already in the cluster")
        agent = Agent(
            spec,
            self.work_dir / "agents" / spec.agent_id,
            lock=self._lock,
            reactor=self._reactor,
            events=self._master,
            simulated=self.simulated,
            executor=self._executor,
            paths=self._paths,
            kill_grace_seconds=self._kill_grace,
        )
        agent.start()
        assert agent.server is not None
        self._acceptor.add(agent.server)
        self._master.add_agent(agent)

    def remove_agent(self, agent_id: str) -> None:
        """Fault injection: the agent is lost. Its processes are killed; schedulers get TASK_LOST
        (REASON_AGENT_REMOVED) for its tasks, a FAILURE event and a RESCIND of its offer."""
        agent = self._master.remove_agent(agent_id)
        self._removed.append(agent)
        assert agent.server is not None
        self._acceptor.remove(agent.server)

    def end_streams(self) -> None:
        """Fault injection: the master ends every subscriber's event stream. pymesos re-subscribes
        with its framework id; tasks keep running and unacknowledged updates are sent again."""
        self._master.end_streams()

    @property
    def agent_ids(self) -> list[str]:
        with self._lock:
            return list(self._master.agents)

    def agent_url(self, agent_id: str) -> str:
        """http://host:port of the agent's HTTP server (files API, /state)."""
        with self._lock:
            return self._master.agents[agent_id].url

    def sandbox_dir(self, task_id: str) -> Path | None:
        """The task's sandbox root (its files are in ``<root>/<task_id>/``), also after it ended;
        None if unknown or in simulated mode."""
        if self.simulated or task_id_problem(task_id) is not None:
            return None
        # Straight from the disk layout, so tasks of removed agents and earlier runs are found too.
        agents_dir = self.work_dir / "agents"
        if agents_dir.is_dir():
            for agent_dir in sorted(agents_dir.iterdir()):
                path = AgentLayout(agent_dir).sandbox(task_id)
                if path.is_dir():
                    return path
        return None


def _wait_idle(agents: list[Agent], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(agent.wait_until_idle(max(0.0, deadline - time.monotonic())) for agent in agents)


def _check_unique(specs: list[AgentSpec]) -> None:
    for attr in ("agent_id", "hostname"):
        counts = Counter(getattr(s, attr) for s in specs)
        duplicates = sorted(v for v, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate agent {attr}: {', '.join(duplicates)}")
