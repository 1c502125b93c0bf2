"""Production state store: one znode per document, `{root}/{collection}/{key}`, through kazoo.

Every write returns once ZooKeeper has acknowledged it (a quorum has logged it), so callers may act
on what they wrote. `batch()` gathers writes and commits them as one ZooKeeper multi-op, which lands
whole or not at all.

Keys are percent-encoded into a single znode name, so a key may hold `/` or any other character.
Documents are orjson; those over `COMPRESS_OVER` bytes are gzipped, as Singularity compresses its
large znodes. Gzip data starts with the byte 0x1f, which never starts JSON text, so reads tell the
two apart without a flag of their own.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import orjson
from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.interfaces import IAsyncResult

from .store import Doc, Gone, StateUnavailable, TooLarge

T = TypeVar("T")

COMPRESS_OVER = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
# ZooKeeper refuses any request over jute.maxbuffer (1 MiB less one byte by default) by dropping the
# connection, and the write would then be retried until the deadline. Fail such a call at once. The
# overhead covers each operation's header, ACL and version in the request.
MAX_REQUEST_BYTES = 1_000_000
_OP_OVERHEAD = 64
# Key characters kept as they are; everything else becomes %XX (of its UTF-8), so no node name holds
# a `/` or a character ZooKeeper refuses. "." and ".." are handled in _node_name.
_SAFE = "-_.~"
_FIRST_RETRY_DELAY = 0.05
# How many znodes the store remembers seeing (a hint for the first operation of a write; see _upsert).
_MAX_KNOWN = 250_000
# A znode under the root that is never created: the fence of a store that must not write.
_NEVER_CREATED = ".fenced-off"
_MAX_RETRY_DELAY = 1.0
# How often a write waiting for ZooKeeper looks whether its backend still leads (see ZkStateStore._call).
_ABANDONED_POLL_SECONDS = 0.05
# kazoo's own reconnection backs off up to an hour and only resets once connected: after an outage of
# some minutes, a backend waited about as long again before it tried the server that was back.
_RECONNECT = {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0}


class _LookAgain(Exception):
    """The znodes changed between reading their state and committing a batch: nothing was written."""


class Fenced(StateUnavailable):
    """The znode this store's writes are fenced by is gone: the leadership they were made under has
    ended (its ZooKeeper session expired). Nothing was written."""


class ZkStateStore:
    def __init__(self, hosts: str, root: str = "/sing", timeout: float = 10.0) -> None:
        """Connect to `hosts` ("host:port,host:port") and keep the state under `root`.

        `timeout` bounds the connection and every call, retries included: a call that cannot reach a
        quorum in time raises TimeoutError (or kazoo's ConnectionLoss) instead of returning. As with any
        write whose answer is lost, such a write may still land once the ensemble is back."""
        if not root.startswith("/") or root.rstrip("/") == "":
            raise ValueError(f"the ZooKeeper root must be an absolute path below /, got {root!r}")
        self._root = root.rstrip("/")
        self._timeout = timeout
        self._collections: set[str] = set()  # collection znodes known to exist, for creates in a batch
        # Document znodes this store has seen exist. It only picks the operation tried first (replace or
        # create; the other follows if it fails), so it may go stale without harm.
        self._known: set[str] = set()
        # The open batch's writes, the last one per znode (only the final state of each is committed),
        # or None outside a batch. Per thread: a write made on another thread while a batch is open
        # must go to ZooKeeper itself, not ride along with a batch that may never commit.
        self._batches = threading.local()
        # Every write also checks that this znode still exists (in the same multi): the leader's election
        # node, an ephemeral of its session. A write that outlives the leadership it was made under fails
        # instead of landing after another leader has taken over.
        self._fence: str | None = None
        self._fenced_off = f"{self._root}/{_NEVER_CREATED}"  # the fence of a store that must not write
        self._client = KazooClient(hosts=hosts, timeout=timeout, connection_retry=dict(_RECONNECT))
        self._client.start(timeout=timeout)
        try:
            self._call(lambda deadline: self._wait(self._client.ensure_path_async(self._root), deadline))
        except BaseException:
            self.close()
            raise

    @property
    def _pending(self) -> dict[str, bytes | None] | None:
        pending: dict[str, bytes | None] | None = getattr(self._batches, "pending", None)
        return pending

    @_pending.setter
    def _pending(self, pending: dict[str, bytes | None] | None) -> None:
        self._batches.pending = pending

    @property
    def _takes(self) -> set[str]:
        """The open batch's deletes of znodes that must still be there when it commits (see `take`)."""
        takes: set[str] | None = getattr(self._batches, "takes", None)
        if takes is None:
            takes = self._batches.takes = set()
        return takes

    def load(self, collection: str) -> dict[str, Doc]:
        parent = self._collection_path(collection)
        docs = self._call(lambda deadline: self._read(parent, deadline))
        if self._pending:
            # Inside a batch, reads see the batch's own writes, as in the SQLite store.
            prefix = parent + "/"
            for path, data in self._pending.items():
                if path.startswith(prefix):
                    key = unquote(path[len(prefix) :])
                    if data is None:
                        docs.pop(key, None)
                    else:
                        docs[key] = decode_doc(data)
        return docs

    def put(self, collection: str, key: str, doc: Doc) -> None:
        path = self._path(collection, key)
        data = encode_doc(doc)
        if request_bytes(path, data) > MAX_REQUEST_BYTES:
            raise TooLarge(f"{collection}/{key}: {len(data)} bytes is more than ZooKeeper takes in one znode")
        if self._pending is not None:
            self._pending[path] = data
            self._takes.discard(path)
        else:
            fence = self._write_fence()
            self._call(lambda deadline: self._upsert(path, data, deadline, fence), fence)

    def delete(self, collection: str, key: str) -> None:
        path = self._path(collection, key)
        if self._pending is not None:
            self._pending[path] = None
            self._takes.discard(path)
        else:
            fence = self._write_fence()
            self._call(lambda deadline: self._delete(path, deadline, fence), fence)

    def take(self, collection: str, key: str) -> None:
        path = self._path(collection, key)
        if self._pending is not None:
            self._pending[path] = None
            self._takes.add(path)
        else:
            fence = self._write_fence()
            self._call(lambda deadline: self._commit({path: None}, {path}, deadline, fence), fence)

    @contextmanager
    def batch(self, split_if_too_large: bool = False) -> Iterator[None]:
        if self._pending is not None:
            # Nested: the outer batch commits (or drops) these writes with its own.
            yield
            return
        self._pending = {}
        self._takes.clear()
        try:
            yield
            pending, takes = self._pending, set(self._takes)
        finally:
            self._pending = None
            self._takes.clear()
        if not pending:
            return
        size = sum(request_bytes(path, data) for path, data in pending.items())
        fence = self._write_fence()
        if size <= MAX_REQUEST_BYTES:
            self._call(lambda deadline: self._commit(pending, takes, deadline, fence), fence)
            return
        if not split_if_too_large:
            raise TooLarge(f"a batch of {len(pending)} writes ({size} bytes) is too large for one ZooKeeper multi")
        parts = _split(pending)
        for i, part in enumerate(parts):
            try:
                self._call(partial(self._commit, part, takes & part.keys(), fence=fence), fence)
            except TimeoutError as exc:  # StateUnavailable, or other clients kept changing its znodes
                if i == 0:
                    raise
                # Not Fenced even if it was: what came before it was saved.
                raise StateUnavailable(f"{exc}; {i} of the {len(parts)} parts of a batch too large for one "
                                       "ZooKeeper multi were saved") from exc

    def fence(self, path: str | None) -> None:
        """Make every later write conditional on `path` existing (None: unconditional)."""
        self._fence = path

    @property
    def fenced_by(self) -> str | None:
        """The znode every write of this store checks (see `fence`)."""
        return self._fence

    def fence_off(self) -> None:
        """Make every later write fail with Fenced (until `fence` is called again)."""
        self._fence = self._fenced_off

    def _write_fence(self) -> str | None:
        """The fence of a write starting now, read once per write: its retries must not pass a fence set
        after it began. A store fenced off fails the write at once, without asking ZooKeeper: a leader
        fences off when its connection is suspended, and asking would then wait out the whole timeout,
        on the event loop, for each write its scheduler still makes."""
        fence = self._fence
        if fence == self._fenced_off:
            raise Fenced("this backend no longer leads (it is stepping down); nothing was written")
        return fence

    @property
    def client(self) -> KazooClient:
        """The store's ZooKeeper client, shared with the leader election (one session for both)."""
        return self._client

    def close(self) -> None:
        self._client.stop()
        self._client.close()

    # ZooKeeper calls ---------------------------------------------------------------------------------

    def _call(self, attempt: Callable[[float], T], fence: str | None = None) -> T:
        """Run `attempt(deadline)` until it succeeds, retrying while the connection is lost (kazoo then
        moves to another server of the ensemble). Every write here sets a znode to a value or makes sure
        it is absent, so repeating one whose answer was lost is safe.

        A write fenced by `fence` gives up as soon as the store is fenced off: its backend is stepping
        down (its connection was suspended) and will not use what it saves, while the wait would hold
        the thread, often the event loop the step-down and the API need, until the deadline."""
        deadline = time.monotonic() + self._timeout
        delay = _FIRST_RETRY_DELAY
        self._batches.write_fence = fence
        retried = False
        try:
            while True:
                try:
                    return attempt(deadline)
                except Fenced as exc:
                    if not retried:
                        raise
                    # An earlier attempt, whose answer was lost, may have landed before the fence fell.
                    raise StateUnavailable(f"{exc}, but an earlier attempt may or may not have been saved") from exc
                except (ConnectionLoss, SessionExpiredError, _LookAgain) as exc:
                    if time.monotonic() + delay >= deadline:
                        if isinstance(exc, _LookAgain):
                            raise TimeoutError("other clients kept changing the batch's znodes") from exc
                        raise StateUnavailable(f"ZooKeeper connection lost ({type(exc).__name__})") from exc
                    self._give_up_if_abandoned()
                    time.sleep(delay)
                    delay = min(delay * 2, _MAX_RETRY_DELAY)
                    retried = True
        finally:
            self._batches.write_fence = None

    def _give_up_if_abandoned(self) -> None:
        if getattr(self._batches, "write_fence", None) is not None and self._fence == self._fenced_off:
            raise StateUnavailable("this backend stopped leading while the write waited for ZooKeeper; it may "
                                   "or may not have been saved")

    def _wait(self, result: IAsyncResult, deadline: float) -> Any:
        # kazoo holds requests made while it reconnects, and its blocking calls would wait for as long
        # as the ensemble is away; an answer is awaited only until the deadline, and a write's only while
        # its backend leads (see _call), looked at every _ABANDONED_POLL_SECONDS.
        while True:
            left = deadline - time.monotonic()
            try:
                return result.get(timeout=max(min(left, _ABANDONED_POLL_SECONDS), 0.0))
            except self._client.handler.timeout_exception:
                if left <= _ABANDONED_POLL_SECONDS:
                    raise StateUnavailable(f"ZooKeeper did not answer within {self._timeout} s") from None
                self._give_up_if_abandoned()

    def _read(self, parent: str, deadline: float) -> dict[str, Doc]:
        # A standby that has just become leader may be connected to a follower that has not applied the
        # old leader's last writes yet: sync makes that server catch up before it answers.
        self._wait(self._client.sync_async(parent), deadline)
        try:
            names: list[str] = self._wait(self._client.get_children_async(parent), deadline)
        except NoNodeError:
            return {}
        # Pipelined: one round trip for the whole collection, not one per document.
        reads = [(name, self._client.get_async(f"{parent}/{name}")) for name in names]
        docs: dict[str, Doc] = {}
        for name, read in reads:
            try:
                data, _stat = self._wait(read, deadline)
            except NoNodeError:
                continue  # deleted since it was listed
            finally:
                # The timeout bounds a silence, not the whole read: while answers keep coming, a large
                # collection (thousands of tasks, a slow machine) may take longer than it to read.
                deadline = max(deadline, time.monotonic() + self._timeout)
            try:
                docs[unquote(name)] = decode_doc(data)
            except ValueError as exc:
                # Never overwrite what is not ours: refuse to go on, naming the node.
                raise ValueError(f"ZooKeeper node {parent}/{name} does not hold Sing's data ({exc}); "
                                 f"check zk_root, or move that data away") from None
            self._remember(f"{parent}/{name}")
        return docs

    def _upsert(self, path: str, data: bytes, deadline: float, fence: str | None) -> None:
        # ZooKeeper has no "create or replace": try the call that the znode's likely state needs, so a
        # put is one round trip unless another client changed the znode meanwhile.
        replace_first = path in self._known
        for replace in (replace_first, not replace_first, replace_first):
            try:
                if fence is not None:
                    self._fenced_write(fence, "set" if replace else "create", path, data, deadline)
                elif replace:
                    self._wait(self._client.set_async(path, data), deadline)
                else:
                    self._wait(self._client.create_async(path, data, makepath=True), deadline)
            except (NoNodeError, NodeExistsError):
                continue
            self._remember(path)
            return
        raise _LookAgain

    def _delete(self, path: str, deadline: float, fence: str | None) -> None:
        try:
            if fence is not None:
                self._fenced_write(fence, "delete", path, None, deadline)
            else:
                self._wait(self._client.delete_async(path), deadline)
        except NoNodeError:
            pass
        self._known.discard(path)

    def _fenced_write(self, fence: str, kind: str, path: str, data: bytes | None, deadline: float) -> None:
        """One write in a multi with the fence's check; raises the write's own error if it failed."""
        parent = path.rsplit("/", 1)[0]
        if kind == "create" and parent not in self._collections:
            self._wait(self._client.ensure_path_async(parent), deadline)
            self._collections.add(parent)
        transaction = self._client.transaction()
        transaction.check(fence, 0)
        if kind == "set":
            transaction.set_data(path, data)
        elif kind == "create":
            transaction.create(path, data)
        else:
            transaction.delete(path)
        results = self._wait(transaction.commit_async(), deadline)
        raise_if_fenced(fence, results)
        if isinstance(results[1], Exception):
            raise results[1]

    def _commit(self, pending: dict[str, bytes | None], takes: set[str], deadline: float, fence: str | None) -> None:
        """Commit a batch as one multi. A multi cannot say "create or replace" nor "delete if present",
        so each write becomes the operation that its znode's state needs. The state this store knows
        is tried first (one round trip); if another client has changed it, the multi fails whole, and
        the znodes are looked at before trying again. A taken znode is always deleted, so the multi
        fails while it is missing; found missing, the batch is given up (Gone).

        After a lost connection the whole commit is tried again, and a take that did land the first
        time then finds its znode gone: Gone, after a lost answer, may mean "done by this batch"."""
        parents = {path.rsplit("/", 1)[0] for path, data in pending.items() if data is not None}
        for parent in parents - self._collections:
            self._wait(self._client.ensure_path_async(parent), deadline)
            self._collections.add(parent)
        # A delete is sent even for a znode not known to exist: were it skipped, nothing would tell
        # that another client had created it.
        if self._try_commit(
            pending, {path: path in self._known or data is None for path, data in pending.items()}, deadline, fence
        ):
            return
        looks = [(path, self._client.exists_async(path)) for path in pending]
        exists = {path: self._wait(look, deadline) is not None for path, look in looks}
        if missing := sorted(path for path in takes if not exists[path]):
            raise Gone(", ".join(missing))
        if self._try_commit(pending, exists, deadline, fence):
            return
        # Changed again between the look and the commit.
        self._collections.clear()
        raise _LookAgain

    def _try_commit(self, pending: dict[str, bytes | None], exists: dict[str, bool], deadline: float,
                    fence: str | None) -> bool:
        """Commit `pending` as if the znodes in `exists` were there; False if some were not (or were),
        in which case nothing was written."""
        transaction = self._client.transaction()
        if fence is not None:
            transaction.check(fence, 0)
        for path, data in pending.items():
            if data is None:
                if exists[path]:
                    transaction.delete(path)
            elif exists[path]:
                transaction.set_data(path, data)
            else:
                transaction.create(path, data)
        if len(transaction.operations) > (fence is not None):
            results = self._wait(transaction.commit_async(), deadline)
            if fence is not None:
                raise_if_fenced(fence, results)
            # The failed operation carries its error; the others carry RolledBackError or, after it,
            # RuntimeInconsistency.
            errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, _ROLLED_BACK)]
            if errors:
                if isinstance(errors[0], NodeExistsError | NoNodeError):
                    return False
                raise errors[0]
        for path, data in pending.items():
            if data is None:
                self._known.discard(path)
            else:
                self._remember(path)
        return True

    def _remember(self, path: str) -> None:
        # Znodes that others remove (answers to queued writes, say) would pile up here: past a bound the
        # hints start again from nothing, which costs a second round trip on a later write of each.
        if len(self._known) >= _MAX_KNOWN:
            self._known.clear()
        self._known.add(path)

    # Paths -------------------------------------------------------------------------------------------

    def _collection_path(self, collection: str) -> str:
        return f"{self._root}/{_node_name(collection)}"

    def _path(self, collection: str, key: str) -> str:
        return f"{self._collection_path(collection)}/{_node_name(key)}"


_ROLLED_BACK = (RolledBackError, RuntimeInconsistency)


def _split(pending: dict[str, bytes | None]) -> list[dict[str, bytes | None]]:
    """Writes in order, cut into parts that each fit one multi (every single write does: see `put`)."""
    parts: list[dict[str, bytes | None]] = [{}]
    size = 0
    for path, data in pending.items():
        n = request_bytes(path, data)
        if size + n > MAX_REQUEST_BYTES and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][path] = data
        size += n
    return parts


def request_bytes(path: str, data: bytes | None) -> int:
    """What one write of `data` to `path` adds to a ZooKeeper request (see MAX_REQUEST_BYTES)."""
    return len(path) + len(data or b"") + _OP_OVERHEAD


def raise_if_fenced(fence: str, results: list[Any]) -> None:
    """Raise Fenced if the check of `fence`, first in a multi's `results`, failed."""
    if isinstance(results[0], Exception) and not isinstance(results[0], _ROLLED_BACK):
        raise Fenced(f"this backend no longer leads (its election node {fence} is gone); nothing was written")


def _node_name(name: str) -> str:
    if not name:
        raise ValueError("state keys and collection names must not be empty")
    encoded = quote(name, safe=_SAFE)
    # "." and ".." are not valid znode names.
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def encode_doc(doc: Doc) -> bytes:
    data = orjson.dumps(doc)
    if len(data) > COMPRESS_OVER:
        # mtime=0: the same document always gives the same bytes.
        data = gzip.compress(data, mtime=0)
    return data


def decode_doc(data: bytes) -> Doc:
    if data.startswith(_GZIP_MAGIC):
        data = gzip.decompress(data)
    doc: Doc = orjson.loads(data)
    return doc
