"""Writes handed to the history store and not yet committed, indexed so that queries can show them.

Queries never wait for the writer: they read the database, then lay the writes still queued on top
(a finished task waiting for its commit is listed like a committed one). This module holds those
writes and the pure merge of a database page with them; the store does the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from itertools import islice
from typing import Any

from sortedcontainers import SortedList

Row = dict[str, Any]
# The columns a task listing filters and sorts on are the task's identity: its id says its request,
# deploy, host and start, and its run is its pending task's, which a later save may give if an earlier
# one did not. So a database row out of date in its document or status lists where the task's newest
# save does, or (a run id given since) not at all under a filter on the run.
IDENTITY = ("request_id", "deploy_id", "host", "started_at", "task_id_body")


class Kind(Enum):
    """What a write records. A batch applies its writes kind by kind, each kind in call order. That
    equals call order: kinds write different tables, except that task updates move their task's status
    columns, and a new task row takes its status from the updates already written."""

    REQUEST_EVENT = "request event"
    DEPLOY = "deploy"
    TASK = "task"
    TASK_UPDATE = "task update"
    HEALTHCHECK = "health-check result"


@dataclass(frozen=True, slots=True)
class Write:
    """One write call; its rows are committed or dropped together. `seq` orders writes: the database
    records the highest committed, so a query knows which queued writes its snapshot already holds."""

    seq: int
    kind: Kind
    rows: list[Row]


@dataclass(slots=True)
class PendingTask:
    """The queued writes of one task, each as (seq, row), in call order."""

    request_id: str | None = None
    saves: list[tuple[int, Row]] = field(default_factory=list)
    updates: list[tuple[int, Row]] = field(default_factory=list)
    checks: list[tuple[int, Row]] = field(default_factory=list)

    def after(self, committed: int) -> PendingTask | None:
        """The part of this task's writes that a snapshot holding writes up to `committed` lacks."""
        view = PendingTask(
            self.request_id,
            [entry for entry in self.saves if entry[0] > committed],
            [entry for entry in self.updates if entry[0] > committed],
            [entry for entry in self.checks if entry[0] > committed],
        )
        return view if view.saves or view.updates or view.checks else None


class PendingWrites:
    def __init__(self) -> None:
        self._events: dict[str, list[tuple[int, Row]]] = {}
        self._deploys: dict[tuple[str, str], list[tuple[int, Row]]] = {}
        self._tasks: dict[str, PendingTask] = {}
        # The tasks with a queued save, in listing order (startedAt, then id), of all requests and of each:
        # a listing's page takes the first few without going through a backlog of tens of thousands.
        self._saved = SortedList()
        self._saved_by_request: dict[str, SortedList] = {}
        # The tasks with queued updates and no queued save, of all requests and of each (None: tasks known
        # so far only by updates without a taskId object): a listing reads their rows to place them.
        self._updates_only: set[str] = set()
        self._updates_only_by_request: dict[str | None, set[str]] = {}

    def check_saves(self, rows: list[Row]) -> None:
        """Refuse (ValueError) a save that gives a task other identity columns than its save still queued
        (see IDENTITY), or another run id than one it gave; nothing is changed."""
        for row in rows:
            task = self._tasks.get(row["task_id"])
            if task is None or not task.saves:
                continue
            queued = task.saves[-1][1]
            changed = [column for column in IDENTITY if row.get(column) != queued.get(column)]
            if queued.get("run_id") is not None and row.get("run_id") != queued["run_id"]:
                changed.append("run_id")
            if changed:
                raise ValueError(f"task {row['task_id']}: a save cannot change {', '.join(changed)} "
                                 f"(a task's identity; only its document changes)")

    def add(self, write: Write) -> None:
        """Index a write (its saves accepted by `check_saves`)."""
        kind, seq = write.kind, write.seq
        for row in write.rows:
            entry = (seq, row)
            if kind is Kind.REQUEST_EVENT:
                self._events.setdefault(row["request_id"], []).append(entry)
            elif kind is Kind.DEPLOY:
                self._deploys.setdefault((row["request_id"], row["deploy_id"]), []).append(entry)
            else:
                task_id = row["task_id"]
                task = self._tasks.get(task_id)
                if task is None:
                    task = self._tasks[task_id] = PendingTask()
                if task.request_id is None and (request_id := row.get("request_id")) is not None:
                    # Out of the updates-only tasks of no request; the row (a save or an update: health
                    # checks carry no request) files it anew below.
                    self._mark_updates_only(task_id, task, False)
                    task.request_id = request_id
                if kind is Kind.TASK and not task.saves:
                    self._mark_updates_only(task_id, task, False)
                    key = (row["started_at"], task_id)
                    self._saved.add(key)
                    self._saved_by_request.setdefault(row["request_id"], SortedList()).add(key)
                elif kind is Kind.TASK_UPDATE and not task.saves:
                    self._mark_updates_only(task_id, task, True)
                _entries(task, kind).append(entry)

    def forget(self, write: Write) -> None:
        """Drop a committed (or dropped) write. Writes leave in the order they came."""
        kind = write.kind
        for row in write.rows:
            if kind is Kind.REQUEST_EVENT:
                _pop_first(self._events, row["request_id"])
            elif kind is Kind.DEPLOY:
                _pop_first(self._deploys, (row["request_id"], row["deploy_id"]))
            else:
                task = self._tasks[row["task_id"]]
                _entries(task, kind).pop(0)
                if kind is Kind.TASK and not task.saves:
                    key = (row["started_at"], row["task_id"])
                    self._saved.remove(key)
                    by_request = self._saved_by_request[row["request_id"]]
                    by_request.remove(key)
                    if not by_request:
                        del self._saved_by_request[row["request_id"]]
                    if task.updates:
                        self._mark_updates_only(row["task_id"], task, True)
                elif kind is Kind.TASK_UPDATE and not task.updates:
                    self._mark_updates_only(row["task_id"], task, False)
                if not (task.saves or task.updates or task.checks):
                    del self._tasks[row["task_id"]]

    def _mark_updates_only(self, task_id: str, task: PendingTask, updates_only: bool) -> None:
        by_request = self._updates_only_by_request
        if updates_only:
            self._updates_only.add(task_id)
            by_request.setdefault(task.request_id, set()).add(task_id)
            return
        self._updates_only.discard(task_id)
        if (ids := by_request.get(task.request_id)) is not None:
            ids.discard(task_id)
            if not ids:
                del by_request[task.request_id]

    # Copies taken before a query's first await: the writer may commit (and forget) meanwhile, and the
    # query's snapshot then holds those writes, which the seq filter accounts for.

    def request_events(self, request_id: str) -> list[tuple[int, Row]]:
        return list(self._events.get(request_id, ()))

    def deploys(self, request_id: str) -> dict[str, list[tuple[int, Row]]]:
        return {deploy_id: list(entries) for (rid, deploy_id), entries in self._deploys.items() if rid == request_id}

    def task(self, task_id: str) -> PendingTask | None:
        task = self._tasks.get(task_id)
        return task.after(-1) if task else None

    def tasks(
        self,
        request_id: str | None,
        *,
        first: int | None = None,
        descending: bool = True,
        listed: Callable[[Row], bool] | None = None,
    ) -> dict[str, PendingTask]:
        """Queued saves and updates of the tasks of a request (every task with None) for a task listing,
        each row cut to what a listing reads: they are sent to a query process, and the documents were
        most of the bytes. A task known only by its id (an update without its taskId object) is included
        in every request's, to be sorted out against its database row.

        With `first`, of the tasks with a queued save only the first `first` in listing order whose last
        save passes `listed` are included: the listing's page ends before the others. That holds only
        when the listing does not filter on status or updatedAt, which the saves do not give. The
        others' rows in the database need not be left out of the listing: they list where their queued
        saves would (see IDENTITY), after the first `first`, or not at all."""
        if request_id is None:
            order: SortedList = self._saved
            updates_only: set[str] = self._updates_only
        else:
            order = self._saved_by_request.get(request_id, SortedList())
            updates_only = (self._updates_only_by_request.get(request_id, set())
                            | self._updates_only_by_request.get(None, set()))
        keys = reversed(order) if descending else iter(order)
        saved = (task_id for _, task_id in keys)
        if first is not None and listed is not None:
            saved = (task_id for task_id in saved if listed(self._tasks[task_id].saves[-1][1]))
        views = {}
        for task_id in [*islice(saved, first), *updates_only]:
            task = self._tasks[task_id]
            views[task_id] = PendingTask(
                task.request_id,
                [(seq, {key: row[key] for key in _LISTED_SAVE}) for seq, row in task.saves],
                [(seq, {key: row[key] for key in _LISTED_UPDATE}) for seq, row in task.updates],
            )
        return views


_LISTED_SAVE = ("task_id", "request_id", "deploy_id", "run_id", "host", "started_at", "task_id_body")
_LISTED_UPDATE = ("task_id", "timestamp", "task_state")


def _entries(task: PendingTask, kind: Kind) -> list[tuple[int, Row]]:
    if kind is Kind.TASK_UPDATE:
        return task.updates
    return task.saves if kind is Kind.TASK else task.checks


def _pop_first(index: dict[Any, list[tuple[int, Row]]], key: Any) -> None:
    entries = index[key]
    entries.pop(0)
    if not entries:
        del index[key]


def merge_page(
    db_rows: list[Row],
    db_offset: int,
    overlay: list[Row],
    sort_key: Callable[[Row], Any],
    *,
    descending: bool,
    offset: int,
    count: int,
) -> list[Row]:
    """Rows `offset` to `offset + count` of the database's rows and `overlay` together, in order.

    `db_rows` are the database's rows from `db_offset` = max(0, offset - len(overlay)) on, at most
    count + len(overlay) of them, none of them in `overlay`. Sorted together, a row at position i from
    the first database row on has rank db_offset + i: before it come the db_offset database rows not
    fetched and the overlay rows sorted before it. The overlay rows sorted before the first database row
    lie before `offset` (fewer than db_offset database rows and len(overlay) - 1 overlay rows precede
    them), and rows after the last of a full window lie beyond the page; so the page starts at position
    offset - db_offset, which is at least the number of overlay rows sorted before the first database
    row (len(overlay) when db_offset > 0)."""
    merged = sorted([*db_rows, *overlay], key=sort_key, reverse=descending) if overlay else db_rows
    start = offset - db_offset
    return merged[start : start + count]
