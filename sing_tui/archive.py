"""Archived task logs (Singularity's S3 logs): name and sort the listing's entries, read a file
(gunzipped here, on the client), save one.

No Textual here. An entry is what `GET /api/logs/task/{taskId}` lists:
`{key, size, lastModified, getUrl, downloadUrl, startTime?, endTime?}`; a key ends in
`{stream}-{seq}-{startMs}-{endMs}.log.gz` (rotated segments are gzipped).
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from .model import Json, fmt_ts

GZIP_MAGIC = b"\x1f\x8b"
_SEGMENT = re.compile(r"^(?P<stream>[A-Za-z]+)-(?P<seq>\d+)(?:-\d+-\d+)?\.log(?:\.gz)?$")


class ArchiveError(Exception):
    """An archived file that cannot be read (corrupt or cut-off gzip)."""


def entry_name(entry: Json) -> str:
    """The file name, the last part of the key."""
    return str(entry.get("key", "")).rsplit("/", 1)[-1]


def entry_stream(entry: Json) -> str | None:
    """stdout or stderr (or whatever the file was), from the key; None for a file of another shape."""
    m = _SEGMENT.match(entry_name(entry))
    return m["stream"] if m else None


def entry_label(entry: Json) -> str:
    """Short and unique within a task: "stdout-00001"."""
    m = _SEGMENT.match(entry_name(entry))
    if m:
        return f"{m['stream']}-{m['seq']}"
    return entry_name(entry).removesuffix(".gz")


def entry_url(entry: Json) -> str:
    return str(entry.get("downloadUrl") or entry.get("getUrl") or "")


def is_gzip(entry: Json) -> bool:
    return entry_name(entry).endswith(".gz")


def oldest_first(entries: Iterable[Json]) -> list[Json]:
    return sorted(entries, key=lambda e: (e.get("startTime") or e.get("lastModified") or 0, e.get("key", "")))


def of_stream(entries: Iterable[Json], stream: str) -> list[Json]:
    """The segments of one stream, oldest first: read in this order they are the whole log."""
    return oldest_first(e for e in entries if entry_stream(e) == stream)


def fmt_size(n: int | float | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


ARCHIVE_COLUMNS = ("FILE", "SIZE", "FROM (UTC)", "TO (UTC)")


def archive_row(entry: Json) -> tuple[str, ...]:
    start, end = entry.get("startTime"), entry.get("endTime")
    return (entry_label(entry), fmt_size(entry.get("size")), fmt_ts(start) if start else "-",
            fmt_ts(end or entry.get("lastModified")))


def default_file_name(task_id: str, entries: list[Json]) -> str:
    """What "save" proposes: `<task>-stdout-00001.log` (decompressed), `<task>-stdout.log` for a stream."""
    if len(entries) == 1:
        return f"{task_id}-{entry_label(entries[0])}.log"
    streams = {entry_stream(e) for e in entries}
    return f"{task_id}-{streams.pop() if len(streams) == 1 else 'logs'}.log"


# ---- reading
def _chunks(raw: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file (every member: a concatenation is one valid gzip file), or
    the bytes themselves when they are not gzip."""
    if not raw.startswith(GZIP_MAGIC):
        for i in range(0, len(raw), size):
            yield raw[i:i + size]
        return
    data, pos = raw, 0
    while pos < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while pos < len(data) and not d.eof:
                piece = data[pos:pos + size]
                pos += len(piece)
                out = d.decompress(piece)
                if out:
                    yield out
            tail = d.flush()
        except zlib.error as exc:
            raise ArchiveError(f"not a readable gzip file: {exc}") from None
        if tail:
            yield tail
        if not d.eof:
            raise ArchiveError("the gzip file is cut short")
        # The next member, if any (a concatenation of gzip files is one gzip file; zero padding is allowed).
        data, pos = (d.unused_data + data[pos:]).lstrip(b"\0"), 0


def gunzip(raw: bytes) -> bytes:
    return b"".join(_chunks(raw))


def tail_lines(raw: bytes, max_lines: int) -> tuple[list[str], int]:
    """The last `max_lines` lines of a (maybe gzipped) log and how many lines it has, decompressed as a
    stream so a 100 MB segment never sits in memory whole."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    kept: deque[str] = deque(maxlen=max(1, max_lines))
    total = 0
    partial = ""
    for chunk in _chunks(raw):
        *complete, partial = (partial + decoder.decode(chunk)).split("\n")
        total += len(complete)
        kept.extend(line.removesuffix("\r") for line in complete)
    partial += decoder.decode(b"", final=True)
    if partial:
        total += 1
        kept.append(partial.removesuffix("\r"))
    return list(kept), total


def save(raws: list[bytes], path: Path) -> int:
    """Write archived files, in order, to `path`: as stored (gzip) when the name ends in .gz, else
    decompressed. Returns the bytes written."""
    written = 0
    gz = path.name.endswith(".gz")
    with path.open("wb") as f:
        for raw in raws:
            if gz:
                data = raw if raw.startswith(GZIP_MAGIC) else _gzip(raw)
                f.write(data)
                written += len(data)
            else:
                for chunk in _chunks(raw):
                    f.write(chunk)
                    written += len(chunk)
    return written


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()
