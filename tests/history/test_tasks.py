from __future__ import annotations

from typing import Any

import pytest

from sing_backend.history import HistoryStore

from .helpers import make_task, save, task_id, update

TASK_LISTS: dict[str, list[Any]] = {"loadBalancerUpdates": [], "shellCommandHistory": [], "taskMetadata": []}


async def test_task_round_trip(store: HistoryStore) -> None:
    task = make_task("billing", "v1", 1000, run_id=None)
    tid = await save(store, task)
    launched = update(task["taskId"], 1001, "TASK_LAUNCHED")
    running = update(tid, 1005, "TASK_RUNNING", statusMessage="started", previous=[])
    await store.add_task_updates([launched, running])
    check = {"statusCode": 200, "duration": 12, "timestamp": 1010, "responseBody": "ok", "startup": False}
    await store.add_healthcheck_result(tid, check)

    history = await store.task_history(tid)
    expected_task = make_task("billing", "v1", 1000)
    del expected_task["taskRequest"]["pendingTask"]["runId"]  # None: left out
    assert history == {
        "task": expected_task,
        "taskUpdates": [launched, running],
        "healthcheckResults": [check],
        **TASK_LISTS,
    }
    assert await store.task_history("billing-v1-1-1-nowhere-rack_a") is None


async def test_updates_ordered_by_timestamp_then_insertion(store: HistoryStore) -> None:
    tid = await save(store, make_task("billing", "v1", 1000))
    await store.add_task_updates([update(tid, 1050, "TASK_RUNNING")])
    await store.add_task_updates([update(tid, 1010, "TASK_STAGING"), update(tid, 1010, "TASK_STARTING")])
    await store.add_task_updates([update(tid, 1001, "TASK_LAUNCHED")])
    history = await store.task_history(tid)
    assert history is not None
    states = [u["taskState"] for u in history["taskUpdates"]]
    assert states == ["TASK_LAUNCHED", "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"]


async def test_last_status_follows_the_newest_update(store: HistoryStore) -> None:
    tid = await save(store, make_task("billing", "v1", 1000))
    (listed,) = await store.request_task_ids("billing")
    assert listed == {"taskId": task_id("billing", "v1", 1000), "updatedAt": 1000}  # no status yet

    await store.add_task_updates([update(tid, 1005, "TASK_RUNNING"), update(tid, 2000, "TASK_FINISHED")])
    await store.add_task_updates([update(tid, 1500, "TASK_KILLING")])  # late, older: must not win
    (listed,) = await store.request_task_ids("billing")
    assert listed["lastTaskStatus"] == "TASK_FINISHED"
    assert listed["updatedAt"] == 2000

    # Same timestamp: the later call wins.
    await store.add_task_updates([update(tid, 2000, "TASK_LOST")])
    (listed,) = await store.request_task_ids("billing")
    assert listed["lastTaskStatus"] == "TASK_LOST"


@pytest.mark.parametrize("landing", ["task first", "updates first", "one batch"])
async def test_a_cleaning_note_is_listed_among_the_updates_but_never_becomes_the_status(
    store: HistoryStore, landing: str
) -> None:
    # A cleanup stamped by the scheduler's clock after the task's end, as a new leader may make it for a
    # task whose end it has not heard yet (or with an agent's clock behind the scheduler's).
    task = make_task("billing", "v1", 1000)
    updates = [update(task["taskId"], 1005, "TASK_RUNNING"), update(task["taskId"], 2000, "TASK_FINISHED"),
               update(task["taskId"], 3000, "TASK_CLEANING", statusMessage="SCALING_DOWN")]
    await land(store, task, updates, landing)
    (queued,) = await store.request_task_ids("billing")
    await store.flush()
    (committed,) = await store.request_task_ids("billing")
    assert (queued["lastTaskStatus"], queued["updatedAt"]) == ("TASK_FINISHED", 2000)
    assert committed == queued
    assert await store.unended_task_ids() == []
    history = await store.task_history(task["taskId"]["id"])
    assert history is not None
    assert [u["taskState"] for u in history["taskUpdates"]] == ["TASK_RUNNING", "TASK_FINISHED", "TASK_CLEANING"]


async def test_first_update_sets_status_even_before_started_at(store: HistoryStore) -> None:
    tid = await save(store, make_task("billing", "v1", 1000))
    await store.add_task_updates([update(tid, 999, "TASK_LAUNCHED")])  # skewed clock
    (listed,) = await store.request_task_ids("billing")
    assert listed["lastTaskStatus"] == "TASK_LAUNCHED"
    assert listed["updatedAt"] == 1000


async def land(store: HistoryStore, task: dict[str, Any], updates: list[dict[str, Any]], landing: str) -> None:
    """Write a task and its updates with the task row committed before them, after them, or with them."""
    if landing == "task first":
        await save(store, task)
        await store.flush()
        await store.add_task_updates(updates)
    elif landing == "updates first":
        await store.add_task_updates(updates)
        await store.flush()
        await save(store, task)
    else:
        await store.add_task_updates(updates)
        await save(store, task)


@pytest.mark.parametrize("landing", ["task first", "updates first", "one batch"])
async def test_updates_stamped_before_the_start_give_the_same_status_however_they_land(
    store: HistoryStore, landing: str
) -> None:
    # A skewed agent clock: both updates are stamped before the task's start, and arrive newest first.
    # The first written sets the status and the other, older than updatedAt, does not move it, whether
    # the task row was committed before them, after them, or with them.
    task = make_task("billing", "v1", 1000)
    updates = [update(task["taskId"], 999, "TASK_STARTING"), update(task["taskId"], 990, "TASK_LAUNCHED")]
    await land(store, task, updates, landing)
    (queued,) = await store.request_task_ids("billing")
    await store.flush()
    (committed,) = await store.request_task_ids("billing")
    assert (queued["lastTaskStatus"], queued["updatedAt"]) == ("TASK_STARTING", 1000)
    assert committed == queued


async def test_save_task_again_replaces_document_keeps_status(store: HistoryStore) -> None:
    task = make_task("billing", "v1", 1000)
    tid = await save(store, task)
    await store.add_task_updates([update(tid, 1005, "TASK_RUNNING")])
    task["rackId"] = "rack-b"
    await save(store, task, run_id="run-1")

    history = await store.task_history(tid)
    assert history is not None
    assert history["task"]["rackId"] == "rack-b"
    assert len(history["taskUpdates"]) == 1
    listed = await store.task_by_run_id("billing", "run-1")
    assert listed == {
        "taskId": task_id("billing", "v1", 1000),
        "updatedAt": 1005,
        "lastTaskStatus": "TASK_RUNNING",
        "runId": "run-1",
    }


async def test_save_task_twice_in_one_batch(store: HistoryStore) -> None:
    task = make_task("billing", "v1", 1000)
    await save(store, task)
    task["rackId"] = "rack-b"
    tid = await save(store, task)
    history = await store.task_history(tid)
    assert history is not None and history["task"]["rackId"] == "rack-b"
    assert len(await store.request_task_ids("billing")) == 1


@pytest.mark.parametrize("same_batch", [True, False])
async def test_updates_before_their_task_count(store: HistoryStore, same_batch: bool) -> None:
    # An update may be written before its task row; it is kept and sets the status once the task is saved.
    task = make_task("billing", "v1", 1000)
    await store.add_task_updates(
        [update(task["taskId"], 1003, "TASK_RUNNING"), update(task["taskId"], 1001, "TASK_LAUNCHED")]
    )
    if not same_batch:
        await store.flush()
    tid = await save(store, task)
    history = await store.task_history(tid)
    assert history is not None
    assert [u["taskState"] for u in history["taskUpdates"]] == ["TASK_LAUNCHED", "TASK_RUNNING"]
    (listed,) = await store.request_task_ids("billing")
    assert (listed["lastTaskStatus"], listed["updatedAt"]) == ("TASK_RUNNING", 1003)


async def test_task_by_run_id_returns_newest(store: HistoryStore) -> None:
    await save(store, make_task("cron", "v1", 1000), run_id="nightly-1")
    await save(store, make_task("cron", "v1", 2000), run_id="nightly-1")  # a retry of the run
    await save(store, make_task("cron", "v1", 3000), run_id="nightly-2")
    found = await store.task_by_run_id("cron", "nightly-1")
    assert found is not None and found["taskId"]["startedAt"] == 2000
    assert await store.task_by_run_id("cron", "missing") is None
    assert await store.task_by_run_id("other", "nightly-1") is None


@pytest.fixture
async def many_tasks(store: HistoryStore) -> HistoryStore:
    """250 tasks over 3 requests: task n starts at 10_000 + n, ends at 20_000 + n."""
    for n in range(250):
        request_id = ("billing", "search", "cron")[n % 3]
        deploy_id = "v1" if n < 125 else "v2"
        host = f"host-{n % 5}"
        task = make_task(request_id, deploy_id, 10_000 + n, instance_no=n % 4 + 1, host=host)
        tid = await save(store, task, run_id=f"run-{n}" if request_id == "cron" else None)
        state = "TASK_FAILED" if n % 10 == 0 else "TASK_FINISHED"
        await store.add_task_updates([update(tid, 10_000 + n, "TASK_RUNNING"), update(tid, 20_000 + n, state)])
    return store


def starts(found: list[dict[str, Any]]) -> list[int]:
    return [t["taskId"]["startedAt"] - 10_000 for t in found]


async def test_paging_over_a_request(many_tasks: HistoryStore) -> None:
    billing = [n for n in range(250) if n % 3 == 0]  # 84 tasks
    assert len(billing) == 84
    first = await many_tasks.request_task_ids("billing", count=50)
    second = await many_tasks.request_task_ids("billing", count=50, page=2)
    assert starts(first) == billing[::-1][:50]
    assert starts(second) == billing[::-1][50:]
    assert await many_tasks.request_task_ids("billing", count=50, page=3) == []
    ascending = await many_tasks.request_task_ids("billing", count=10, page=2, order_desc=False)
    assert starts(ascending) == billing[10:20]


async def test_page_two_of_a_hundred(store: HistoryStore) -> None:
    for n in range(250):
        await save(store, make_task("billing", "v1", 10_000 + n))
    for n in range(50):
        await save(store, make_task("search", "v1", 10_000 + n))
    page = await store.request_task_ids("billing", count=100, page=2)
    assert starts(page) == list(range(149, 49, -1))
    assert starts(await store.request_task_ids("billing", count=100, page=3)) == list(range(49, -1, -1))


async def test_filters(many_tasks: HistoryStore) -> None:
    query = many_tasks.request_task_ids
    billing = [n for n in range(250) if n % 3 == 0]

    v2 = await query("billing", deploy_id="v2", count=1000)
    assert starts(v2) == [n for n in billing if n >= 125][::-1]

    failed = await query("billing", last_task_status="TASK_FAILED")
    assert starts(failed) == [n for n in billing if n % 10 == 0][::-1]
    assert all(t["lastTaskStatus"] == "TASK_FAILED" for t in failed)

    on_host = await query("billing", host="host-2")
    assert starts(on_host) == [n for n in billing if n % 5 == 2][::-1]

    run = await query("cron", run_id="run-11")
    assert starts(run) == [11]
    assert run[0]["runId"] == "run-11"

    started = await query("billing", started_after=10_030, started_before=10_045)
    assert starts(started) == [42, 39, 36, 33]
    updated = await query("billing", updated_after=20_200, updated_before=20_210)
    assert starts(updated) == [207, 204, 201]
    assert all(t["updatedAt"] == 20_000 + n for t, n in zip(updated, [207, 204, 201], strict=True))

    combined = await query("billing", deploy_id="v1", last_task_status="TASK_FAILED", started_after=10_050)
    assert starts(combined) == [120, 90, 60]
    assert await query("billing", deploy_id="v9") == []


async def test_purge_by_age(many_tasks: HistoryStore) -> None:
    deleted = await many_tasks.purge(older_than_ms=20_100, keep_per_request=None)
    assert deleted == 100
    remaining = await many_tasks.request_task_ids("billing", count=1000, order_desc=False)
    assert starts(remaining) == [n for n in range(100, 250) if n % 3 == 0]
    gone = task_id("billing", "v1", 10_000, instance_no=1, host="host-0")["id"]
    assert await many_tasks.task_history(gone) is None


async def test_purge_keeps_newest_per_request_with_children(many_tasks: HistoryStore) -> None:
    kept_task = task_id("billing", "v2", 10_249, instance_no=2, host="host-4")["id"]
    await many_tasks.add_healthcheck_result(kept_task, {"timestamp": 1, "statusCode": 200, "startup": True})
    dropped_task = task_id("billing", "v1", 10_000, instance_no=1, host="host-0")["id"]
    await many_tasks.add_healthcheck_result(dropped_task, {"timestamp": 1, "statusCode": 500, "startup": True})

    deleted = await many_tasks.purge(older_than_ms=None, keep_per_request=10)
    assert deleted == 250 - 30
    for request_id in ("billing", "search", "cron"):
        assert len(await many_tasks.request_task_ids(request_id, count=1000)) == 10
    kept = await many_tasks.task_history(kept_task)
    assert kept is not None and len(kept["taskUpdates"]) == 2 and len(kept["healthcheckResults"]) == 1
    assert await many_tasks.task_history(dropped_task) is None

    # Children went with their tasks: nothing is left for the deleted ids in the child tables.
    await save(many_tasks, make_task("billing", "v1", 10_000, instance_no=1, host="host-0"))
    revived = await many_tasks.task_history(dropped_task)
    assert revived is not None and revived["taskUpdates"] == [] and revived["healthcheckResults"] == []

    assert await many_tasks.purge(older_than_ms=0, keep_per_request=1000) == 0


async def test_purge_both_rules(many_tasks: HistoryStore) -> None:
    deleted = await many_tasks.purge(older_than_ms=20_240, keep_per_request=5)
    assert deleted == 250 - 10  # everything but the last 10 by age; those are within 5 per request
    counts = [len(await many_tasks.request_task_ids(r)) for r in ("billing", "search", "cron")]
    assert sum(counts) == 10 and max(counts) <= 5
    with pytest.raises(ValueError):
        await many_tasks.purge(older_than_ms=None, keep_per_request=-1)
