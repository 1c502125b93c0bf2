"""The state-store contract, run against every store: SQLite (local mode) and ZooKeeper (production)."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from sing_backend.state.store import Gone, StateStore

from .conftest import OpenStore

REQUEST = {
    "request": {"id": "billing-api", "requestType": "SERVICE", "instances": 3, "owners": ["ops@example.com"]},
    "state": "ACTIVE",
    "timestamp": 1_700_000_000_000,
}
ODD_KEYS = [
    "billing/v1",  # deploys are keyed request/deploy
    "a/b/c",
    "/leading",
    "trailing/",
    ".",
    "..",
    "...",
    "100%",
    "%2F",
    "a b\tc",
    "ü∂ 😀",
    "x?y#z&w=v",
    "back\\slash",
    "zookeeper",
    "k" * 400,
]


class Refused(Exception):
    pass


def large_doc(size: int) -> dict[str, Any]:
    """A document of about `size` bytes of JSON, compressible as real ones are, but not trivially."""
    rng = random.Random(size)
    words = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(500)]
    entries = [{"name": rng.choice(words), "value": rng.randrange(10**6)} for _ in range(size // 40)]
    return {"id": "big", "entries": entries}


def test_round_trip(store: StateStore) -> None:
    store.put("requests", "billing-api", REQUEST)
    store.put("requests", "search", {"request": {"id": "search"}, "nested": {"list": [1, 2.5, None, True, "é"]}})
    assert store.load("requests") == {
        "billing-api": REQUEST,
        "search": {"request": {"id": "search"}, "nested": {"list": [1, 2.5, None, True, "é"]}},
    }


def test_empty_collection_loads_empty(store: StateStore) -> None:
    assert store.load("never-written") == {}
    store.put("requests", "a", {})
    assert store.load("tasks") == {}


def test_collections_are_separate(store: StateStore) -> None:
    store.put("requests", "same", {"in": "requests"})
    store.put("tasks", "same", {"in": "tasks"})
    assert store.load("requests") == {"same": {"in": "requests"}}
    assert store.load("tasks") == {"same": {"in": "tasks"}}


def test_overwrite_replaces_the_document(store: StateStore) -> None:
    store.put("requests", "r", {"a": 1, "b": 2})
    store.put("requests", "r", {"c": 3})
    assert store.load("requests") == {"r": {"c": 3}}


def test_delete(store: StateStore) -> None:
    store.put("requests", "r", {"a": 1})
    store.put("requests", "s", {"a": 2})
    store.delete("requests", "r")
    assert store.load("requests") == {"s": {"a": 2}}


def test_delete_of_a_missing_key_is_a_no_op(store: StateStore) -> None:
    store.delete("requests", "missing")
    store.delete("never-written", "missing")
    store.put("requests", "r", {})
    store.delete("requests", "r")
    store.delete("requests", "r")
    assert store.load("requests") == {}


def test_a_document_is_stored_as_it_was_when_put(store: StateStore) -> None:
    doc: dict[str, Any] = {"a": [1]}
    store.put("requests", "r", doc)
    doc["a"].append(2)
    assert store.load("requests") == {"r": {"a": [1]}}


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_come_back_unchanged(store: StateStore, key: str) -> None:
    store.put("deploys", key, {"key": key})
    store.put("deploys", "plain", {"key": "plain"})
    assert store.load("deploys") == {key: {"key": key}, "plain": {"key": "plain"}}
    store.delete("deploys", key)
    assert store.load("deploys") == {"plain": {"key": "plain"}}


def test_keys_differing_only_in_case_or_encoding_stay_apart(store: StateStore) -> None:
    keys = ["a/b", "a%2Fb", "a%252Fb", "A/B", "a_b"]
    for n, key in enumerate(keys):
        store.put("deploys", key, {"n": n})
    assert store.load("deploys") == {key: {"n": n} for n, key in enumerate(keys)}


def test_unserializable_document_is_refused_and_nothing_written(store: StateStore) -> None:
    with pytest.raises(TypeError):
        store.put("requests", "r", {"when": object()})
    assert store.load("requests") == {}


def test_large_document_round_trip(store: StateStore) -> None:
    for size in (64 * 1024 - 100, 64 * 1024 + 100, 400_000):
        doc = large_doc(size)
        store.put("tasks", f"t{size}", doc)
        assert store.load("tasks")[f"t{size}"] == doc


def test_batch_commits_all_writes(store: StateStore) -> None:
    store.put("pendingTasks", "p1", {"n": 1})
    with store.batch():
        store.delete("pendingTasks", "p1")
        store.put("tasks", "t1", {"n": 1})
        store.put("requests", "r", {"state": "ACTIVE"})
    assert store.load("pendingTasks") == {}
    assert store.load("tasks") == {"t1": {"n": 1}}
    assert store.load("requests") == {"r": {"state": "ACTIVE"}}


def test_empty_batch(store: StateStore) -> None:
    with store.batch():
        pass
    assert store.load("requests") == {}


def test_exception_inside_batch_writes_nothing(store: StateStore) -> None:
    store.put("requests", "kept", {"v": 1})
    with pytest.raises(Refused), store.batch():
        store.put("requests", "kept", {"v": 2})
        store.put("requests", "new", {"v": 1})
        store.delete("requests", "kept")
        raise Refused
    assert store.load("requests") == {"kept": {"v": 1}}


def test_invalid_write_in_a_batch_rolls_back_the_others(store: StateStore) -> None:
    store.put("requests", "kept", {"v": 1})
    with pytest.raises(TypeError), store.batch():
        store.put("requests", "kept", {"v": 2})
        store.put("tasks", "t", {"v": 1})
        store.put("tasks", "bad", {"v": object()})
    assert store.load("requests") == {"kept": {"v": 1}}
    assert store.load("tasks") == {}


def test_store_is_usable_after_a_failed_batch(store: StateStore) -> None:
    with pytest.raises(Refused), store.batch():
        store.put("requests", "r", {"v": 1})
        raise Refused
    with store.batch():
        store.put("requests", "r", {"v": 2})
    store.put("requests", "s", {"v": 3})
    assert store.load("requests") == {"r": {"v": 2}, "s": {"v": 3}}


def test_nested_batch_joins_the_outer_one(store: StateStore, open_store: OpenStore) -> None:
    other = open_store()
    with store.batch():
        store.put("requests", "outer", {})
        with store.batch():
            store.put("requests", "inner", {})
        # The inner batch has ended, but nothing lands before the outer one ends.
        assert other.load("requests") == {}
        store.put("requests", "after", {})
    assert other.load("requests") == {"outer": {}, "inner": {}, "after": {}}


def test_exception_in_a_nested_batch_rolls_back_the_outer_one(store: StateStore) -> None:
    with pytest.raises(Refused), store.batch():
        store.put("requests", "outer", {})
        with store.batch():
            store.put("requests", "inner", {})
            raise Refused
    assert store.load("requests") == {}


def test_batch_sees_its_own_writes(store: StateStore) -> None:
    store.put("tasks", "old", {"v": 1})
    store.put("tasks", "gone", {"v": 1})
    with store.batch():
        store.put("tasks", "old", {"v": 2})
        store.put("tasks", "new", {"v": 1})
        store.delete("tasks", "gone")
        assert store.load("tasks") == {"old": {"v": 2}, "new": {"v": 1}}


def test_batch_applies_writes_to_one_key_in_order(store: StateStore) -> None:
    store.put("tasks", "deleted-then-put", {"v": 0})
    store.put("tasks", "put-then-deleted", {"v": 0})
    with store.batch():
        store.delete("tasks", "deleted-then-put")
        store.put("tasks", "deleted-then-put", {"v": 1})
        store.put("tasks", "put-then-deleted", {"v": 1})
        store.delete("tasks", "put-then-deleted")
        store.put("tasks", "put-twice", {"v": 1})
        store.put("tasks", "put-twice", {"v": 2})
        store.put("tasks", "created-and-deleted", {"v": 1})
        store.delete("tasks", "created-and-deleted")
    assert store.load("tasks") == {"deleted-then-put": {"v": 1}, "put-twice": {"v": 2}}


def test_batch_is_invisible_to_others_until_it_ends(store: StateStore, open_store: OpenStore) -> None:
    other = open_store()
    store.put("requests", "r", {"v": 1})
    with store.batch():
        store.put("requests", "r", {"v": 2})
        store.put("requests", "s", {"v": 1})
        assert other.load("requests") == {"r": {"v": 1}}
    assert other.load("requests") == {"r": {"v": 2}, "s": {"v": 1}}


def test_reopen_sees_the_data(open_store: OpenStore) -> None:
    first = open_store()
    first.put("requests", "r", REQUEST)
    first.put("deploys", "r/v1", {"id": "v1"})
    with first.batch():
        first.put("tasks", "t", {"id": "t"})
    first.close()
    again = open_store()
    assert again.load("requests") == {"r": REQUEST}
    assert again.load("deploys") == {"r/v1": {"id": "v1"}}
    assert again.load("tasks") == {"t": {"id": "t"}}


def test_two_stores_on_one_backend_see_each_others_writes(open_store: OpenStore) -> None:
    leader, standby = open_store(), open_store()
    leader.put("requests", "a", {"by": "leader"})
    assert standby.load("requests") == {"a": {"by": "leader"}}
    standby.put("requests", "a", {"by": "standby"})
    standby.put("requests", "b", {"by": "standby"})
    assert leader.load("requests") == {"a": {"by": "standby"}, "b": {"by": "standby"}}
    leader.delete("requests", "b")
    with standby.batch():
        standby.put("requests", "b", {"by": "standby again"})
        standby.delete("requests", "a")
    assert leader.load("requests") == {"b": {"by": "standby again"}}


def test_many_documents(store: StateStore) -> None:
    with store.batch():
        for n in range(300):
            store.put("tasks", f"task-{n}", {"n": n})
    for n in range(0, 300, 2):
        store.delete("tasks", f"task-{n}")
    assert store.load("tasks") == {f"task-{n}": {"n": n} for n in range(1, 300, 2)}


def test_take_removes_the_document(store: StateStore) -> None:
    store.put("writeQueue", "w-1", {"v": 1})
    store.take("writeQueue", "w-1")
    assert store.load("writeQueue") == {}
    with store.batch():
        store.put("writeQueue", "w-2", {"v": 1})
    with store.batch():
        store.put("requests", "r", {"v": 1})
        store.take("writeQueue", "w-2")
    assert store.load("writeQueue") == {} and store.load("requests") == {"r": {"v": 1}}


def test_take_of_a_missing_document_fails_the_batch_whole(store: StateStore) -> None:
    store.put("requests", "kept", {"v": 1})
    with pytest.raises(Gone):
        store.take("writeQueue", "never-there")
    with pytest.raises(Gone), store.batch():
        store.put("requests", "kept", {"v": 2})
        store.put("requests", "new", {"v": 1})
        store.delete("requests", "other")
        store.take("writeQueue", "never-there")
    assert store.load("requests") == {"kept": {"v": 1}}
    # The store goes on working after it.
    store.put("requests", "after", {"v": 1})
    assert set(store.load("requests")) == {"kept", "after"}


def test_two_writers_taking_one_document_never_both_commit(open_store: OpenStore) -> None:
    """What makes a write queued on a standby land once: each leader that applies it takes it in the
    batch that makes its change, so a second leader's change is refused whole."""
    first, second = open_store(), open_store()
    first.put("writeQueue", "w-7", {"run": "once"})
    assert second.load("writeQueue") == {"w-7": {"run": "once"}}  # both have seen it queued
    with first.batch():
        first.put("pendingTasks", "run-by-first", {})
        first.take("writeQueue", "w-7")
    with pytest.raises(Gone), second.batch():
        second.put("pendingTasks", "run-by-second", {})
        second.take("writeQueue", "w-7")
    assert first.load("pendingTasks") == {"run-by-first": {}}
    assert second.load("writeQueue") == {}
