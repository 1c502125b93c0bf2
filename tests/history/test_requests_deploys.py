from __future__ import annotations

from typing import Any

import pytest

from sing_backend.history import HistoryStore


def event(request_id: str, created_at: int, event_type: str = "UPDATED", **extra: object) -> dict[str, Any]:
    return {
        "request": {"id": request_id, "requestType": "SERVICE", "instances": 2},
        "eventType": event_type,
        "createdAt": created_at,
        **extra,
    }


async def test_request_event_round_trip(store: HistoryStore) -> None:
    created = event("billing", 1000, "CREATED", user="ann", message="first")
    await store.add_request_event(created)
    assert await store.request_history("billing") == [created]
    assert await store.request_history("other") == []


async def test_request_history_orders_pages_and_bounds(store: HistoryStore) -> None:
    for created_at in range(1, 26):
        await store.add_request_event(event("billing", created_at))
    await store.add_request_event(event("other", 12))

    newest = await store.request_history("billing", count=10)
    assert [e["createdAt"] for e in newest] == list(range(25, 15, -1))
    third = await store.request_history("billing", count=10, page=3)
    assert [e["createdAt"] for e in third] == [5, 4, 3, 2, 1]
    oldest = await store.request_history("billing", count=3, order_desc=False)
    assert [e["createdAt"] for e in oldest] == [1, 2, 3]
    # Bounds are exclusive, as Singularity's createdBefore/createdAfter.
    between = await store.request_history("billing", created_after=10, created_before=14)
    assert [e["createdAt"] for e in between] == [13, 12, 11]


async def test_same_timestamp_events_keep_insertion_order(store: HistoryStore) -> None:
    for kind in ("PAUSED", "UNPAUSED", "BOUNCED"):
        await store.add_request_event(event("billing", 7, kind))
    ascending = await store.request_history("billing", order_desc=False)
    assert [e["eventType"] for e in ascending] == ["PAUSED", "UNPAUSED", "BOUNCED"]
    descending = await store.request_history("billing")
    assert [e["eventType"] for e in descending] == ["BOUNCED", "UNPAUSED", "PAUSED"]


async def test_absent_fields_are_left_out_not_null(store: HistoryStore) -> None:
    await store.add_request_event(
        {
            "request": {
                "id": "billing",
                "requestType": "SERVICE",
                "owners": None,
                "env": {"A": None, "B": "1"},
            },
            "eventType": "CREATED",
            "createdAt": 1,
            "user": None,
            "message": None,
            "list": [{"x": None, "y": 1}, None],
        }
    )
    (stored,) = await store.request_history("billing")
    assert stored == {
        "request": {"id": "billing", "requestType": "SERVICE", "env": {"B": "1"}},
        "eventType": "CREATED",
        "createdAt": 1,
        "list": [{"y": 1}, None],
    }


async def test_count_is_capped_and_pages_start_at_one(store: HistoryStore) -> None:
    for created_at in range(1100):
        await store.add_request_event(event("billing", created_at))
    assert len(await store.request_history("billing", count=5000)) == 1000
    assert len(await store.request_history("billing", count=5000, page=2)) == 100
    with pytest.raises(ValueError):
        await store.request_history("billing", page=0)
    with pytest.raises(ValueError):
        await store.request_history("billing", count=0)


def deploy_history(request_id: str, deploy_id: str, timestamp: int, state: str | None = None) -> dict[str, Any]:
    history: dict[str, Any] = {
        "deployMarker": {
            "requestId": request_id,
            "deployId": deploy_id,
            "timestamp": timestamp,
            "user": "ann",
        },
        "deploy": {"requestId": request_id, "id": deploy_id, "command": "run.sh"},
    }
    if state:
        history["deployResult"] = {"deployState": state, "deployFailures": [], "timestamp": timestamp + 5}
    return history


async def test_deploy_upsert_replaces_the_row(store: HistoryStore) -> None:
    pending = deploy_history("billing", "v1", 100)
    await store.save_deploy("billing", "v1", pending, deploy_state=None, timestamp=100, user="ann")
    assert await store.get_deploy("billing", "v1") == pending

    done = deploy_history("billing", "v1", 100, "SUCCEEDED")
    await store.save_deploy("billing", "v1", done, deploy_state="SUCCEEDED", timestamp=100, user="ann")
    assert await store.get_deploy("billing", "v1") == done
    assert await store.deploy_history("billing") == [done]
    assert await store.get_deploy("billing", "v2") is None
    assert await store.get_deploy("other", "v1") is None


async def test_deploy_history_newest_first_and_paged(store: HistoryStore) -> None:
    for n in range(1, 8):
        history = deploy_history("billing", f"v{n}", n * 10, "SUCCEEDED")
        await store.save_deploy("billing", f"v{n}", history, deploy_state="SUCCEEDED", timestamp=n * 10)
    await store.save_deploy("other", "v1", deploy_history("other", "v1", 5), deploy_state=None, timestamp=5)

    first = await store.deploy_history("billing", count=3)
    assert [d["deployMarker"]["deployId"] for d in first] == ["v7", "v6", "v5"]
    last = await store.deploy_history("billing", count=3, page=3)
    assert [d["deployMarker"]["deployId"] for d in last] == ["v1"]
    assert len(await store.deploy_history("other")) == 1
