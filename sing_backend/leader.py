"""Leader election through ZooKeeper (kazoo): exactly one backend schedules, the others stand by.

Each backend takes part with its API URL as identifier, so standbys know where the leader is. The
leader steps down the moment its ZooKeeper connection is suspended or its session lost (before another
backend can be elected), so two schedulers never act at once; it rejoins the election once connected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.recipe.election import Election
from kazoo.recipe.watchers import ChildrenWatch

log = logging.getLogger(__name__)


class LeaderElection:
    def __init__(self, client: KazooClient, path: str, identifier: str, on_elected: Callable[[], None],
                 on_demoted: Callable[[], None]) -> None:
        self._client = client
        self._path = path
        self._identifier = identifier
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._election = Election(client, path, identifier)
        self._leading = threading.Event()
        self._released = threading.Event()
        self._reconnected = threading.Event()
        self._reconnected.set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Who leads, and who stands by (every contender, the leader first), kept current by a watch: the
        # API asks on every call and must never wait on ZooKeeper.
        self._leader_id: str | None = None
        self._contenders: list[str] = []
        self._client.add_listener(self._state_changed)
        self._client.ensure_path(path)
        self._watch = ChildrenWatch(client, path, self._contenders_changed)

    @property
    def connected(self) -> bool:
        return self._client.connected

    def leader(self) -> str | None:
        """The identifier (API URL) of the current leader, if known; never blocks."""
        if self._leading.is_set():
            return self._identifier
        return self._leader_id if self._client.connected else None

    def contenders(self) -> list[str]:
        """The identifiers (API URLs) of every backend in the election, the leader first; never blocks."""
        return list(self._contenders) if self._client.connected else []

    def _contenders_changed(self, children: list[str]) -> None:
        # kazoo's callback thread: bounded reads of the contenders, all sent at once; the first (lowest
        # sequence number) holds the lock.
        ordered = sorted(children, key=lambda name: name[-10:])
        reads = [self._client.get_async(f"{self._path}/{name}") for name in ordered]
        identifiers: list[str] = []
        for read in reads:
            try:
                identifiers.append(read.get(timeout=2.0)[0].decode("utf-8"))
            except (KazooException, TimeoutError, self._client.handler.timeout_exception):
                identifiers.append("")  # gone since it was listed, or unreadable
        self._leader_id = identifiers[0] or None if identifiers else None
        self._contenders = [identifier for identifier in identifiers if identifier]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._campaign, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._released.set()
        try:
            self._election.cancel()
        except KazooException:
            pass
        if self._thread is not None:
            self._thread.join(5)

    def lock_path(self) -> str | None:
        """This backend's election znode while it leads: an ephemeral that lives as long as its session."""
        lock = self._election.lock
        return f"{lock.path}/{lock.node}" if self._leading.is_set() and lock.node else None

    def resign(self) -> None:
        """Stop leading (the scheduler is stopped and reloaded from ZooKeeper) and stand again."""
        self._released.set()

    def _campaign(self) -> None:
        while not self._stopping:
            try:
                # Blocks until elected, then runs `_lead` while holding the election lock.
                self._election.run(self._lead)
            except KazooException as exc:
                log.warning("leader election interrupted: %s", exc)
            if not self._stopping:
                self._reconnected.wait(1.0)

    def _lead(self) -> None:
        self._released.clear()
        # A suspension signalled between winning the lock and the clear above was erased by it; the
        # client's state was set before that signal, so it still shows here.
        if self._client.state != KazooState.CONNECTED or self._stopping:
            return
        self._leading.set()
        log.info("elected leader as %s", self._identifier)
        try:
            self._on_elected()
            self._released.wait()  # until the connection is suspended or lost, or we stop
        finally:
            self._leading.clear()
            self._on_demoted()

    def _state_changed(self, state: str) -> None:
        # Called on kazoo's connection thread: only signal, never block.
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._leader_id = None
            if self._leading.is_set():
                log.warning("ZooKeeper connection %s: stepping down", state.lower())
            self._reconnected.clear()
            self._released.set()
        elif state == KazooState.CONNECTED:
            self._reconnected.set()
            # The watch fires again only on a change; look once more now that we are back.
            threading.Thread(target=self._refresh, daemon=True).start()

    def _refresh(self) -> None:
        try:
            self._contenders_changed(self._client.get_children(self._path))
        except KazooException:
            self._leader_id = None
            self._contenders = []
