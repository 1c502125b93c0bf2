"""State write latency on SQLite and ZooKeeper: a create-request-sized document put (a new key, and a
replacement), and a 5-write batch as a task launch makes. ZooKeeper writes are fenced, as the
leader's are (each checks the leader's election node in the same multi).

Baselines, measured in the same run on the same database: a raw SQLite insert + commit (same file
settings as the store) and a raw kazoo `set` of the same bytes on one znode.
ZooKeeper: a standalone server of its own on loopback (from Debian's `zookeeper` package), or --zk.
Usage: python -m bench.state_write [--writes 2000] [--zk HOST:PORT]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from kazoo.client import KazooClient

from sing_backend.models.request import SingularityRequest
from sing_backend.state.sqlite import SqliteStateStore
from sing_backend.state.store import StateStore
from sing_backend.state.zookeeper import ZkStateStore
from tests.servers import ZooKeeperServer  # started as the ZooKeeper tests start theirs

from .stats import percentile

WARMUP = 100


def request_doc() -> dict[str, Any]:
    """What creating a request stores: the request, its state, who and when."""
    request = SingularityRequest.model_validate(
        {
            "id": "billing-api-00001",
            "requestType": "SERVICE",
            "instances": 3,
            "owners": ["billing-team@example.com"],
            "rackSensitive": True,
            "slavePlacement": "SEPARATE_BY_REQUEST",
            "requiredSlaveAttributes": {"zone": "eu-1a"},
            "group": "billing",
        }
    )
    return {"request": request.wire(), "state": "ACTIVE", "timestamp": 1_700_000_000_000, "user": "ops"}


def timed(writes: int, write: Callable[[int], None]) -> list[float]:
    for n in range(WARMUP):
        write(-1 - n)
    out = []
    for n in range(writes):
        start = time.perf_counter()
        write(n)
        out.append((time.perf_counter() - start) * 1000)
    return out


def store_runs(store: StateStore, writes: int) -> dict[str, list[float]]:
    doc = request_doc()

    def create(n: int) -> None:
        store.put("requests", f"new-{n}", doc)

    def replace(n: int) -> None:
        store.put("requests", "same", doc)

    def launch(n: int) -> None:
        # As a task launch: its pending task goes (the one the previous launch queued), the task is
        # created, the next pending task queued, the request and a marker replaced.
        with store.batch():
            store.delete("pendingTasks", f"p{n}")
            store.put("pendingTasks", f"p{n + 1}", doc)
            store.put("tasks", f"t{n}", doc)
            store.put("requests", "launching", doc)
            store.put("meta", "lastLaunch", doc)

    return {
        "put, new key": timed(writes, create),
        "put, replace": timed(writes, replace),
        "5-write batch": timed(writes, launch),
    }


def raw_sqlite(path: Path, writes: int) -> list[float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE raw (key TEXT PRIMARY KEY, doc BLOB NOT NULL)")

    doc = request_doc()

    def insert(n: int) -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO raw (key, doc) VALUES (?, ?)", (f"k{n}", orjson.dumps(doc)))
        db.execute("COMMIT")

    try:
        return timed(writes, insert)
    finally:
        db.close()


def raw_kazoo(hosts: str, writes: int) -> list[float]:
    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    client.ensure_path("/bench-raw/node")
    doc = request_doc()

    def set_(_n: int) -> None:
        client.set("/bench-raw/node", orjson.dumps(doc))

    try:
        return timed(writes, set_)
    finally:
        client.delete("/bench-raw", recursive=True)
        client.stop()
        client.close()


@contextmanager
def zookeeper(hosts: str | None, workdir: Path) -> Iterator[str]:
    if hosts:
        yield hosts
        return
    with ZooKeeperServer(workdir) as server:
        yield server.hosts


def line(label: str, values: list[float], baseline: list[float] | None) -> str:
    p50, p99 = statistics.median(values), percentile(values, 99)
    # One writer, each write waiting for the last: ops/s is what a single caller gets.
    rate = len(values) / (sum(values) / 1000)
    ratio = (f"   x{p50 / statistics.median(baseline):5.2f} of baseline p50, "
             f"x{p99 / percentile(baseline, 99):5.2f} p99" if baseline else "")
    return f"  {label:<24} {rate:7.0f} ops/s   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--zk", help="an existing ZooKeeper (host:port,...) instead of a local server")
    args = parser.parse_args()
    size = len(orjson.dumps(request_doc()))
    print(f"state write latency: {args.writes} writes each after {WARMUP} warm-up; request document {size} B")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("SQLite (WAL, synchronous=NORMAL: no fsync per commit)")
        baseline = raw_sqlite(workdir / "raw.db", args.writes)
        print(line("raw insert + commit", baseline, None))
        sqlite_store = SqliteStateStore(workdir / "state.db")
        try:
            for label, values in store_runs(sqlite_store, args.writes).items():
                print(line(label, values, baseline))
        finally:
            sqlite_store.close()

        with zookeeper(args.zk, workdir) as hosts:
            print(f"ZooKeeper at {hosts} (each write logged and fsynced by the server)")
            baseline = raw_kazoo(hosts, args.writes)
            print(line("raw kazoo set", baseline, None))
            root = f"/bench-{time.time_ns()}"
            zk_store = ZkStateStore(hosts, root=root)
            # As the leader writes: each write also checks its election node (one multi per write).
            zk_store.fence(zk_store.client.create(f"{root}/leader/node-", b"", ephemeral=True, sequence=True,
                                                  makepath=True))
            try:
                for label, values in store_runs(zk_store, args.writes).items():
                    print(line(label, values, baseline))
            finally:
                zk_store.close()
                cleanup = KazooClient(hosts=hosts)
                cleanup.start(timeout=10)
                cleanup.delete(root, recursive=True)
                cleanup.stop()
                cleanup.close()


if __name__ == "__main__":
    main()
