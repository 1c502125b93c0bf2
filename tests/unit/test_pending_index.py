"""The queued-writes index a history listing reads: which queued tasks it sends to the query process, for
any mix of saves (a run id given by some later ones), status updates (some without their request),
health checks, and commits in order. The
index keeps tasks with a queued save sorted, so a listing of a large backlog takes its page without
going through every queued task; here it is checked against a listing worked out from all the queued
writes at once."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import pytest

from sing_backend.history.pending import Kind, PendingWrites, Row, Write

REQUESTS = ("a", "b", "c")


def save_row(task: int, run_id: str | None = None) -> Row:
    request, start = REQUESTS[task % 3], 1000 + (task * 7919) % 500  # starts repeat: ties go by id
    return {"task_id": f"t{task:03d}", "request_id": request, "deploy_id": f"v{task % 2}", "run_id": run_id,
            "host": f"h{task % 4}", "started_at": start, "task_id_body": b"{}", "body": b"{}"}


def update_row(task: int, with_request: bool) -> Row:
    row: Row = {"task_id": f"t{task:03d}", "timestamp": task, "task_state": "TASK_RUNNING", "body": b"{}"}
    if with_request:
        row["request_id"] = REQUESTS[task % 3]
    return row


def expected(queued: list[Write], known: dict[str, str], request_id: str | None, first: int | None,
             descending: bool, listed: Callable[[Row], bool] | None) -> dict[str, tuple[list[int], list[int]]]:
    """What a listing needs, from the writes queued, in order: {task: (seqs of saves, seqs of updates)}.
    `known`: the request of each task whose request a write queued since it last had none queued gave."""
    saves: dict[str, list[tuple[int, Row]]] = {}
    updates: dict[str, list[int]] = {}
    for write in queued:
        for row in write.rows:
            if write.kind is Kind.TASK:
                saves.setdefault(row["task_id"], []).append((write.seq, row))
            elif write.kind is Kind.TASK_UPDATE:
                updates.setdefault(row["task_id"], []).append(write.seq)
    mine = {task for task in {*saves, *updates, *known}
            if request_id is None or known.get(task, request_id) == request_id}
    saved = sorted((task for task in mine if task in saves),
                   key=lambda task: (saves[task][-1][1]["started_at"], task), reverse=descending)
    if first is not None:
        saved = [task for task in saved if listed is None or listed(saves[task][-1][1])][:first]
    only_updates = [task for task in mine if task not in saves and task in updates]
    return {task: ([seq for seq, _ in saves.get(task, [])], updates.get(task, [])) for task in [*saved, *only_updates]}


@pytest.mark.parametrize("seed", range(6))
def test_the_tasks_a_listing_sends_follow_every_write_and_commit(seed: int) -> None:
    rng = random.Random(seed)
    index = PendingWrites()
    queued: deque[Write] = deque()
    known: dict[str, str] = {}
    runs: dict[int, str] = {}
    seq = 0
    for step in range(1500):
        if queued and rng.random() < 0.45:
            done = queued.popleft()
            index.forget(done)  # commits go in order
            task_id = done.rows[0]["task_id"]
            if not any(row["task_id"] == task_id for write in queued for row in write.rows):
                known.pop(task_id, None)
        else:
            seq += 1
            task = rng.randrange(60)
            kind = rng.choice([Kind.TASK, Kind.TASK_UPDATE, Kind.TASK_UPDATE, Kind.HEALTHCHECK])
            if kind is Kind.TASK:
                # A run id may come with a later save of a task, and stays.
                if task not in runs and rng.random() < 0.3:
                    runs[task] = f"run{task % 5}"
                rows = [save_row(task, runs.get(task))]
            elif kind is Kind.TASK_UPDATE:
                rows = [update_row(task, with_request=rng.random() < 0.5)]
            else:
                rows = [{"task_id": f"t{task:03d}", "timestamp": seq, "body": b"{}"}]
            if kind is Kind.TASK:
                index.check_saves(rows)
            if "request_id" in rows[0]:
                known.setdefault(rows[0]["task_id"], rows[0]["request_id"])
            write = Write(seq, kind, rows)
            index.add(write)
            queued.append(write)
        if step % 10:
            continue
        for request_id in (*REQUESTS, None):
            for first in (None, 0, 1, 5):
                for descending in (True, False):
                    column = rng.choice([None, "host", "run_id"]) if first is not None else None
                    listed = None if column is None else (lambda row, c=column: row[c] in ("h1", "run1"))
                    views = index.tasks(request_id, first=first, descending=descending, listed=listed)
                    got = {task: ([s for s, _ in view.saves], [s for s, _ in view.updates])
                           for task, view in views.items()}
                    assert got == expected(list(queued), known, request_id, first, descending, listed), (
                        step, request_id, first, descending, column)


def test_a_save_that_changes_a_queued_tasks_identity_is_refused_and_changes_nothing() -> None:
    index = PendingWrites()
    index.add(Write(1, Kind.TASK, [save_row(1)]))
    moved = {**save_row(1), "host": "elsewhere", "started_at": 5}
    with pytest.raises(ValueError, match="host, started_at"):
        index.check_saves([moved])
    index.check_saves([{**save_row(1), "body": b'{"again": true}'}])  # a new document: accepted
    index.check_saves([save_row(1, "run-1")])  # a run id given later: accepted
    index.add(Write(2, Kind.TASK, [save_row(1, "run-1")]))
    for other in ("run-2", None):
        with pytest.raises(ValueError, match="run_id"):
            index.check_saves([save_row(1, other)])
    views = index.tasks(None)
    assert [(seq, row["run_id"]) for seq, row in views["t001"].saves] == [(1, None), (2, "run-1")]
