"""Log rotation (size and time), compression, pruning, archiving to the local store and to S3."""

from __future__ import annotations

import gzip
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from sing_backend.executor.logs import Archiver, ArchiveTarget, LogPump, LogStream, RotationPolicy, make_pipe, prune
from sing_backend.executor.logstore import LocalLogStore, S3LogStore, parse_segment, segment_name
from sing_backend.executor.settings import ExecutorSettings
from tests.cluster.helpers import eventually

from .helpers import deploy_task, read_segments, running_cluster, segments
from .s3 import MotoServer, s3_settings

LINES = 200_000
# Writes LINES numbered lines as fast as Python can, in 64 KiB writes that split lines anywhere.
FAST_WRITER = (
    f"{sys.executable} -c \"import sys\n"
    f"data = b''.join(b'line %08d\\\\n' % i for i in range({LINES}))\n"
    "for at in range(0, len(data), 65536):\n"
    "    sys.stdout.buffer.write(data[at:at + 65536]); sys.stdout.buffer.flush()\""
)
EXPECTED = b"".join(b"line %08d\n" % i for i in range(LINES))


def _archived(task_dir: Path) -> bool:
    try:
        return bool(orjson.loads((task_dir / "finished.json").read_bytes()).get("archived"))
    except FileNotFoundError:
        return False


def test_a_fast_writer_loses_no_line_across_rotations(tmp_path: Path) -> None:
    settings = ExecutorSettings(rotate_size_mb=0.25, rotate_keep=1000)
    with running_cluster(tmp_path, settings) as h:
        h.launch(deploy_task("fast", FAST_WRITER))
        h.sched.status("fast", "TASK_FINISHED", timeout=30)
        task_dir = h.task_dir("fast")
        eventually(lambda: _archived(task_dir), timeout=20, what="the last segment to be archived")
        rotated = segments(task_dir / "logs")
        assert len(rotated) >= 10, "rotated every 256 KiB"
        assert read_segments(rotated) == EXPECTED  # every line once, in order
        for path in rotated:
            body = gzip.decompress(path.read_bytes())
            assert body.endswith(b"\n") and body.startswith(b"line "), "segments end on line boundaries"
        assert gzip.decompress(rotated[-1].read_bytes()) == (task_dir / "stdout.log").read_bytes()
        stored = sorted((h.log_store / "req/dep1/fast").glob("stdout-*.gz"))
        assert [p.name for p in stored] == [p.name for p in rotated]
        assert read_segments(stored) == EXPECTED


def test_only_the_kept_count_stays_in_the_sandbox_but_everything_is_archived(tmp_path: Path) -> None:
    settings = ExecutorSettings(rotate_size_mb=0.25, rotate_keep=3)
    with running_cluster(tmp_path, settings) as h:
        h.launch(deploy_task("pruned", FAST_WRITER))
        h.sched.status("pruned", "TASK_FINISHED", timeout=30)
        task_dir = h.task_dir("pruned")
        eventually(lambda: _archived(task_dir), timeout=20, what="the last segment to be archived")
        eventually(lambda: len(segments(task_dir / "logs")) == 3, what="pruning to 3 segments")
        assert read_segments(sorted((h.log_store / "req/dep1/pruned").glob("stdout-*.gz"))) == EXPECTED


def test_pruning_by_age_spares_what_is_not_archived(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = int(time.time() * 1000)
    old, fresh, unarchived = (segment_name("stdout", n, now - age, now - age) + ".gz"
                              for n, age in ((1, 9 * 86400_000), (2, 1000), (3, 9 * 86400_000)))
    for name in (old, fresh, unarchived):
        (logs / name).write_bytes(b"")
    (logs / ".archived").write_text(f"{old}\n{fresh}\n")
    prune(logs, RotationPolicy(1, None, keep=20, max_age_seconds=7 * 86400, compress_level=1))
    assert sorted(p.name for p in logs.glob("*.gz")) == sorted([fresh, unarchived])


@pytest.fixture
def pump(tmp_path: Path) -> Iterator[tuple[LogPump, Archiver]]:
    archiver = Archiver()
    pump = LogPump(archiver)
    try:
        yield pump, archiver
    finally:
        pump.stop()
        archiver.close()


def test_time_rotation_waits_for_the_end_of_a_line(tmp_path: Path, pump: tuple[LogPump, Archiver]) -> None:
    log_pump, archiver = pump
    store = LocalLogStore(tmp_path / "store")
    policy = RotationPolicy(size_bytes=1 << 30, period_seconds=0.3, keep=100, max_age_seconds=86400,
                            compress_level=1)
    read_end, write_end = make_pipe()
    ended: list[LogStream] = []
    stream = LogStream("stdout", read_end, tmp_path, policy, ArchiveTarget(store, "r/d/t/"), ended.append)
    log_pump.add(stream)
    os.write(write_end, b"first line\n")
    eventually(lambda: segments(tmp_path / "logs"), what="a time rotation")
    os.write(write_end, b"a line in two ")
    eventually(lambda: stream.rotate_due, what="the next rotation to fall due mid-line")
    os.write(write_end, b"writes\nafter\n")
    eventually(lambda: len(segments(tmp_path / "logs")) >= 2, what="the rotation at the newline")
    os.close(write_end)
    eventually(lambda: ended, what="end of the stream")
    assert archiver.drain(10)
    rotated = segments(tmp_path / "logs")
    bodies = [gzip.decompress(p.read_bytes()) for p in rotated]
    assert bodies[:2] == [b"first line\n", b"a line in two writes\n"]
    assert b"".join(bodies) + (tmp_path / "stdout.log").read_bytes() == b"first line\na line in two writes\nafter\n"
    first = parse_segment(rotated[0].name)
    assert first is not None and first.end_ms >= first.start_ms


def test_logs_are_archived_to_s3_and_presigned_urls_serve_them(tmp_path: Path, s3: MotoServer) -> None:
    # moto's standalone server stands in for S3 here: no real S3 is reachable from the tests.
    settings = s3_settings(s3, "sing-logs", prefix="tasks/")
    with running_cluster(tmp_path, ExecutorSettings(s3=settings, rotate_size_mb=0.25)) as h:
        h.launch(deploy_task("to-s3", FAST_WRITER))
        h.sched.status("to-s3", "TASK_FINISHED", timeout=30)
        eventually(lambda: _archived(h.task_dir("to-s3")), timeout=20, what="the last segment to be archived")
    store = S3LogStore(settings)
    objects = store.list("req/dep1/to-s3/")
    names = [o.key.rsplit("/", 1)[1] for o in objects if o.key.rsplit("/", 1)[1].startswith("stdout-")]
    assert len(names) >= 10
    assert all(o.size > 0 and o.last_modified_ms > 0 for o in objects)
    body = b""
    for obj in sorted((o for o in objects if "/stdout-" in o.key), key=lambda o: o.key):
        response = httpx.get(store.url(obj.key, download=False))
        assert response.status_code == 200
        body += gzip.decompress(response.content)
    assert body == EXPECTED
    download = httpx.get(store.url(objects[0].key, download=True))
    assert "attachment" in download.headers["content-disposition"]
    assert not (h.log_store).exists(), "nothing went to the local store"
