"""Task output: pipes read by one thread per agent, written to stdout.log/stderr.log, rotated, archived.

A task writes to a pipe, never to the file itself. So rotation is a rename and a reopen done by the
reader, between two writes: no line is lost or written twice, the task notices nothing, and segments
end on a line boundary (a rotation that falls mid-line waits for the newline). Rotated segments go
to ``logs/`` and a small worker pool gzips them, archives them to the log store, and prunes the
ones over the kept count or age (only once archived). When a task ends, its last segment is
archived too, as a compressed copy: stdout.log stays readable in the sandbox.

Files in ``logs/``: ``stdout-00001-<startMs>-<endMs>.log.gz`` ...; ``.archived`` lists those stored.
"""

from __future__ import annotations

import fcntl
import gzip
import logging
import os
import selectors
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..wake_pipe import WakePipe
from .logstore import LogStore, parse_segment, segment_name
from .workers import Workers

log = logging.getLogger(__name__)

_READ_SIZE = 1024 * 1024
# A line longer than this past the rotation size is cut: one runaway line must not grow a file forever.
_MAX_OVERSHOOT = 8 * 1024 * 1024
ARCHIVED_LIST = ".archived"


@dataclass(frozen=True)
class RotationPolicy:
    size_bytes: int
    period_seconds: float | None
    keep: int
    max_age_seconds: float
    compress_level: int
    # skipLogrotateAndCompress: no rotation while the task runs; its output is still archived at the end.
    rotate_while_running: bool = True


@dataclass(frozen=True)
class ArchiveTarget:
    """Where one task's segments are archived: the store and the key prefix."""

    store: LogStore
    prefix: str  # "{requestId}/{deployId}/{taskId}/"


def make_pipe() -> tuple[int, int]:
    """A pipe for a task stream; big, so a fast writer rarely waits for the reader."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _READ_SIZE)
    except OSError:
        pass  # over /proc/sys/fs/pipe-max-size: the default 64 KiB works, only with more wake-ups
    return r, w


class Archiver:
    """Compresses, archives and prunes segments on a small pool; one per agent (or executor)."""

    def __init__(self, workers: int = 2) -> None:
        self._workers = Workers(workers, "sing-log-archive")
        self._lock = threading.Lock()
        self._failed: list[tuple[Path, ArchiveTarget, RotationPolicy]] = []
        # Per task (key prefix): jobs not done yet, and who waits for them all to be done.
        self._pending: dict[str, int] = {}
        self._waiters: dict[str, list[Callable[[bool], None]]] = {}

    def submit(self, raw: Path, target: ArchiveTarget, policy: RotationPolicy, *, copy_as: str | None = None) -> None:
        """Compress ``raw`` into logs/ and archive it in the background.

        With ``copy_as`` (a segment name), ``raw`` is a live file that stays: a copy is archived.
        """
        with self._lock:
            self._pending[target.prefix] = self._pending.get(target.prefix, 0) + 1

        def job() -> None:
            try:
                self._process(raw, target, policy, copy_as)
            finally:
                self._job_done(target.prefix)

        self._workers.submit(job)

    def when_settled(self, prefix: str, callback: Callable[[bool], None]) -> None:
        """Call ``callback(all_archived)`` once no job of the task ``prefix`` is pending (maybe now)."""
        with self._lock:
            if self._pending.get(prefix):
                self._waiters.setdefault(prefix, []).append(callback)
                return
            ok = not self._failed_for(prefix)
        callback(ok)

    def settled(self, prefix: str) -> bool:
        """Nothing of the task ``prefix`` is waiting to be archived or waiting for a retry."""
        with self._lock:
            return not self._pending.get(prefix) and not self._failed_for(prefix)

    def _job_done(self, prefix: str) -> None:
        with self._lock:
            self._pending[prefix] -= 1
            if self._pending[prefix]:
                return
            del self._pending[prefix]
            waiters = self._waiters.pop(prefix, [])
            ok = not self._failed_for(prefix)
        for callback in waiters:
            callback(ok)

    def _failed_for(self, prefix: str) -> bool:
        return any(target.prefix == prefix for _, target, _ in self._failed)

    def retry_failed(self) -> None:
        """Archive again what the store refused before (e.g. S3 was unreachable)."""
        with self._lock:
            failed, self._failed = self._failed, []
        for path, target, policy in failed:
            self.submit(path, target, policy)

    def drain(self, timeout: float) -> bool:
        return self._workers.drain(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._workers.drain(timeout)
        self._workers.stop()

    def _process(self, path: Path, target: ArchiveTarget, policy: RotationPolicy, copy_as: str | None) -> bool:
        try:
            if copy_as is not None:
                gz = compress(path, target_dir(path) / f"{copy_as}.gz", policy.compress_level, keep=True)
            elif path.suffix != ".gz":
                gz = compress(path, path.with_name(path.name + ".gz"), policy.compress_level)
            else:
                gz = path
        except FileNotFoundError:
            return False  # pruned or cleaned up meanwhile
        except OSError:
            log.exception("cannot compress %s", path)
            return False
        try:
            target.store.put(gz, target.prefix + gz.name)
        except Exception as exc:  # botocore raises many unrelated types; each means "not stored"
            log.warning("cannot archive %s to %s: %s; will retry", gz, target.store.describe(), exc)
            with self._lock:
                self._failed.append((gz, target, policy))
            return False
        with open(gz.parent / ARCHIVED_LIST, "a") as f:
            f.write(gz.name + "\n")
        prune(gz.parent, policy)
        return True


def compress(raw: Path, gz: Path, level: int, *, keep: bool = False) -> Path:
    """gzip ``raw`` into ``gz`` (atomically), then remove ``raw`` unless ``keep``."""
    gz.parent.mkdir(exist_ok=True)
    tmp = gz.with_name(f".{gz.name}.tmp")
    with open(raw, "rb") as src, gzip.open(tmp, "wb", compresslevel=level) as out:
        shutil.copyfileobj(src, out, _READ_SIZE)
    os.replace(tmp, gz)
    if not keep:
        raw.unlink()
    return gz


def target_dir(live_file: Path) -> Path:
    """Where the segments of a task's live log file go: logs/ beside it."""
    return live_file.parent / "logs"


def archived_names(logs_dir: Path) -> set[str]:
    try:
        return set((logs_dir / ARCHIVED_LIST).read_text().split())
    except FileNotFoundError:
        return set()


def prune(logs_dir: Path, policy: RotationPolicy) -> None:
    """Delete archived segments beyond the kept count (per stream) or older than the maximum age."""
    done = archived_names(logs_dir)
    now_ms = time.time() * 1000
    by_stream: dict[str, list[tuple[int, str, int]]] = {}
    for name in os.listdir(logs_dir):
        seg = parse_segment(name)
        if seg is not None and name.endswith(".gz"):
            by_stream.setdefault(seg.stream, []).append((seg.seq, name, seg.end_ms))
    for items in by_stream.values():
        items.sort()
        for index, (_, name, end_ms) in enumerate(items):
            too_many = index < len(items) - policy.keep
            too_old = now_ms - end_ms > policy.max_age_seconds * 1000
            if (too_many or too_old) and name in done:
                (logs_dir / name).unlink(missing_ok=True)


class LogStream:
    """One task stream (stdout or stderr): the pipe's read end and the file it fills."""

    def __init__(self, name: str, fd: int, task_dir: Path, policy: RotationPolicy, target: ArchiveTarget,
                 on_eof: Callable[[LogStream], None]) -> None:
        self.name = name
        self.fd = fd
        self.path = task_dir / f"{name}.log"
        self.logs_dir = task_dir / "logs"
        self.policy = policy
        self.target = target
        self.on_eof = on_eof
        self.file_fd = -1
        self.segment_bytes = 0
        self.segment_start = time.time()
        self.seq = 1
        self.at_line_start = True
        self.rotate_due = False
        self.total_bytes = 0
        self.closed = False

    def open_file(self) -> OSError | None:
        """Open the log file; on failure, log and return why (the task's output is then lost)."""
        try:
            self.file_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self.segment_bytes = os.fstat(self.file_fd).st_size
        except OSError as exc:
            log.exception("cannot open %s; the task's output will be lost", self.path)
            return exc
        return None

    def next_rotation(self) -> float | None:
        if not self.policy.rotate_while_running or self.policy.period_seconds is None or self.rotate_due:
            return None
        return self.segment_start + self.policy.period_seconds


class LogPump:
    """The thread that moves bytes from task pipes to files, and rotates them."""

    def __init__(self, archiver: Archiver, name: str = "sing-log-pump") -> None:
        self._archiver = archiver
        self._selector = selectors.DefaultSelector()
        self._wake_pipe = WakePipe(self._selector)
        self._lock = threading.Lock()
        self._adds: list[LogStream] = []
        self._closes: list[LogStream] = []
        self._streams: set[LogStream] = set()
        self._stopping = False
        # Started with the first stream: an agent that runs nothing costs no thread.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def add(self, stream: LogStream) -> None:
        with self._lock:
            self._adds.append(stream)
            if not self._thread.is_alive() and not self._stopping:
                self._thread.start()
        self._wake()

    def close_stream(self, stream: LogStream) -> None:
        """Stop reading now (something outside the task still holds the pipe)."""
        with self._lock:
            self._closes.append(stream)
        self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            running = self._thread.is_alive()
        self._wake()
        if running:
            self._thread.join(timeout=10)
        else:
            self._selector.close()
            self._wake_pipe.close()

    def _wake(self) -> None:
        self._wake_pipe.wake()

    def _run(self) -> None:
        while True:
            with self._lock:
                adds, self._adds = self._adds, []
                closes, self._closes = self._closes, []
                stopping = self._stopping
            for stream in adds:
                try:
                    self._open(stream)
                except (OSError, ValueError, KeyError):
                    log.exception("cannot read the output of %s", stream.path)
                    self._finish(stream)
            for stream in closes:
                self._finish(stream)
            if stopping:
                for stream in list(self._streams):
                    self._finish(stream)
                self._selector.close()
                self._wake_pipe.close()
                return
            for key, _ in self._selector.select(self._timeout()):
                stream = key.data
                if stream is None:
                    self._wake_pipe.drain()
                    continue
                try:
                    self._read(stream)
                except Exception:  # one stream's trouble must not stop every task's logging
                    log.exception("log stream %s failed", stream.path)
                    self._finish(stream)
            try:
                self._time_rotations()
            except Exception:
                log.exception("time-based log rotation failed")

    def _timeout(self) -> float | None:
        deadlines = [d for d in (s.next_rotation() for s in self._streams) if d is not None]
        return max(0.0, min(deadlines) - time.time()) if deadlines else None

    def _open(self, stream: LogStream) -> None:
        if stream.file_fd < 0:
            stream.open_file()
        self._streams.add(stream)
        self._selector.register(stream.fd, selectors.EVENT_READ, stream)

    def _read(self, stream: LogStream) -> None:
        try:
            data = os.read(stream.fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(stream)
            return
        stream.total_bytes += len(data)
        policy = stream.policy
        while data:
            if policy.rotate_while_running and stream.rotate_due and stream.at_line_start:
                self._rotate(stream)
                continue
            cut = -1
            if policy.rotate_while_running:
                if stream.rotate_due:
                    cut = data.find(b"\n")  # a time rotation waits for the end of the line
                elif policy.size_bytes - stream.segment_bytes <= len(data):
                    # The first newline at or past the size limit ends the segment.
                    cut = data.find(b"\n", max(0, policy.size_bytes - stream.segment_bytes - 1))
                    if cut < 0 and stream.segment_bytes + len(data) > policy.size_bytes + _MAX_OVERSHOOT:
                        cut = len(data) - 1
            if cut < 0:
                self._write(stream, data)
                return
            self._write(stream, data[:cut + 1])
            data = data[cut + 1:]
            self._rotate(stream)

    def _write(self, stream: LogStream, data: bytes) -> None:
        if stream.file_fd < 0 or not data:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(stream.file_fd, view)
                view = view[n:]
        except OSError as exc:
            # Most likely a full disk: the disk guard stops the task; its output is dropped meanwhile.
            log.warning("cannot write %s: %s", stream.path, exc)
            return
        stream.segment_bytes += len(data)
        stream.at_line_start = data.endswith(b"\n")

    def _time_rotations(self) -> None:
        now = time.time()
        for stream in self._streams:
            due = stream.next_rotation()
            if due is None or due > now:
                continue
            if stream.segment_bytes == 0:
                stream.segment_start = now  # notifempty: nothing to rotate, start a new period
            elif stream.at_line_start:
                self._rotate(stream)
            else:
                stream.rotate_due = True  # at the next newline

    def _rotate(self, stream: LogStream) -> None:
        stream.rotate_due = False
        now = time.time()
        if stream.segment_bytes == 0:
            stream.segment_start = now
            return
        name = segment_name(stream.name, stream.seq, int(stream.segment_start * 1000), int(now * 1000))
        rotated = stream.logs_dir / name
        try:
            stream.logs_dir.mkdir(exist_ok=True)
            os.close(stream.file_fd)
            stream.file_fd = -1
            os.rename(stream.path, rotated)
        except OSError:
            log.exception("cannot rotate %s", stream.path)
            if stream.file_fd < 0:
                stream.open_file()
            return
        stream.open_file()
        stream.seq += 1
        stream.segment_bytes = 0
        stream.segment_start = now
        self._archiver.submit(rotated, stream.target, stream.policy)

    def _finish(self, stream: LogStream) -> None:
        if stream.closed:
            return
        stream.closed = True
        try:
            self._selector.unregister(stream.fd)
        except (KeyError, ValueError):
            pass
        for fd in (stream.fd, stream.file_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        stream.file_fd = -1
        self._streams.discard(stream)
        try:
            stream.on_eof(stream)
        except Exception:
            log.exception("log stream end callback failed")


def final_segment(stream: LogStream) -> str | None:
    """The segment name for the stream's last (unrotated) output; None when there is none."""
    if stream.segment_bytes == 0:
        return None
    return segment_name(stream.name, stream.seq, int(stream.segment_start * 1000), int(time.time() * 1000))
