"""Writes handed to the history store and not yet committed, indexed so that queries can show them.

Queries never wait for the writer: they read the database, then lay the writes still queued on top
(a finished task waiting for its commit is listed like a committed one). This module holds those
writes and the pure merge of a database page with them; the store does the SQL.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Row = dict[str, Any]


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
        self._tasks_by_request: dict[str, set[str]] = {}
        self._unknown_request: set[str] = set()  # tasks known so far only by updates without a taskId object

    def add(self, write: Write) -> None:
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
                    self._unknown_request.add(task_id)
                if task.request_id is None and (request_id := row.get("request_id")) is not None:
                    task.request_id = request_id
                    self._tasks_by_request.setdefault(request_id, set()).add(task_id)
                    self._unknown_request.discard(task_id)
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
                if not (task.saves or task.updates or task.checks):
                    del self._tasks[row["task_id"]]
                    self._unknown_request.discard(row["task_id"])
                    if task.request_id is not None:
                        ids = self._tasks_by_request[task.request_id]
                        ids.discard(row["task_id"])
                        if not ids:
                            del self._tasks_by_request[task.request_id]

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
    ) -> tuple[dict[str, PendingTask], list[str]]:
        """Queued saves and updates of the tasks of a request (every task with None) for a task listing,
        each row cut to what a listing reads: they are sent to a query process, and the documents were
        most of the bytes. A task known only by its id (an update without its taskId object) is included
        in every request's, to be sorted out against its database row.

        With `first`, of the tasks with a queued save only the first `first` (by startedAt, then id) whose
        last save passes `listed` are included: the listing's page ends before the others. That holds
        only when the listing does not filter on status or updatedAt, which the saves do not give. The
        ids of the others come second: their rows in the database may be out of date (a save can change
        any column), so the listing leaves those rows out."""
        if request_id is None:
            chosen: Iterable[str] = self._tasks
        else:
            chosen = [*self._tasks_by_request.get(request_id, ()), *self._unknown_request]
        saved: list[str] = []
        unsaved: list[str] = []
        for task_id in chosen:
            task = self._tasks[task_id]
            if task.saves:
                saved.append(task_id)
            elif task.updates:
                unsaved.append(task_id)
        left_out: list[str] = []
        if first is not None and len(saved) > first:
            rows = ((self._tasks[task_id].saves[-1][1], task_id) for task_id in saved)
            passing = [pair for pair in rows if listed is None or listed(pair[0])]
            pick = heapq.nlargest if descending else heapq.nsmallest
            picked = [task_id for _, task_id in pick(first, passing, key=_save_order)]
            kept = set(picked)
            left_out = [task_id for task_id in saved if task_id not in kept]
            saved = picked
        views = {}
        for task_id in [*saved, *unsaved]:
            task = self._tasks[task_id]
            views[task_id] = PendingTask(
                task.request_id,
                [(seq, {key: row[key] for key in _LISTED_SAVE}) for seq, row in task.saves],
                [(seq, {key: row[key] for key in _LISTED_UPDATE}) for seq, row in task.updates],
            )
        return views, left_out


_LISTED_SAVE = ("task_id", "request_id", "deploy_id", "run_id", "host", "started_at", "task_id_body")
_LISTED_UPDATE = ("task_id", "timestamp", "task_state")


def _entries(task: PendingTask, kind: Kind) -> list[tuple[int, Row]]:
    if kind is Kind.TASK_UPDATE:
        return task.updates
    return task.saves if kind is Kind.TASK else task.checks


def _save_order(pair: tuple[Row, str]) -> tuple[int, str]:
    return pair[0]["started_at"], pair[1]


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
