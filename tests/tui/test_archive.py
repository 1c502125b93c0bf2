"""Archived logs and the global task search, below the screens: the archive helpers (names, gunzip,
saving) and the client's calls, against httpx.MockTransport."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from sing_tui import archive
from sing_tui.client import ApiError, SingClient

KEY = "job/v1/job-v1-1-1-h-r/stdout-00002-1795596342456-1795596343526.log.gz"


def entry(key: str = KEY, **kw: object) -> dict[str, object]:
    return {"key": key, "size": 86, "lastModified": 1795596343528, "getUrl": f"http://b/api/logs/download?key={key}",
            "downloadUrl": f"http://b/api/logs/download?key={key}&download=true", **kw}


def test_names_streams_and_order() -> None:
    e = entry(startTime=2, endTime=3)
    assert archive.entry_name(e) == KEY.rsplit("/", 1)[1]
    assert (archive.entry_stream(e), archive.entry_label(e)) == ("stdout", "stdout-00002")
    assert archive.entry_stream(entry("a/b/c/notes.txt")) is None
    assert archive.entry_label(entry("x/y.log.gz")) == "y.log"
    older = entry(KEY.replace("00002", "00001"), startTime=1, endTime=2)
    err = entry(KEY.replace("stdout", "stderr"), startTime=0)
    assert archive.of_stream([e, err, older], "stdout") == [older, e]
    assert archive.archive_row(e)[:2] == ("stdout-00002", "86 B")
    assert [archive.fmt_size(n) for n in (0, 1536, 5 * 1024**2)] == ["0 B", "1.5 KB", "5.0 MB"]
    assert archive.default_file_name("t", [e]) == "t-stdout-00002.log"
    assert archive.default_file_name("t", [older, e]) == "t-stdout.log"


def test_gunzip_many_members_caps_lines_and_refuses_garbage() -> None:
    # Rotated segments may be concatenated gzip members; line ends split across members still join.
    raw = gzip.compress(b"one\r\ntw") + gzip.compress(b"o\nthree")
    assert archive.gunzip(raw) == b"one\r\ntwo\nthree"
    assert archive.tail_lines(raw, 10) == (["one", "two", "three"], 3)
    assert archive.tail_lines(raw, 2) == (["two", "three"], 3)
    assert archive.tail_lines(b"plain\ntext\n", 10) == (["plain", "text"], 2)  # not gzip: as it is
    assert archive.tail_lines("é\n".encode() + b"\xff\n", 10) == (["é", "\ufffd"], 2)
    big = gzip.compress(b"".join(b"line %d\n" % i for i in range(300_000)))  # decompressed in chunks
    lines, total = archive.tail_lines(big, 5)
    assert total == 300_000 and lines[-1] == "line 299999"
    with pytest.raises(archive.ArchiveError, match="cut short"):
        archive.tail_lines(raw[:-12], 10)
    with pytest.raises(archive.ArchiveError, match="not a readable gzip"):
        archive.gunzip(gzip.compress(b"x") + b"\x1f\x8bgarbage")


def test_save_decompressed_or_as_stored(tmp_path: Path) -> None:
    parts = [gzip.compress(b"first\n"), gzip.compress(b"second\n")]
    assert archive.save(parts, tmp_path / "out.log") == len(b"first\nsecond\n")
    assert (tmp_path / "out.log").read_bytes() == b"first\nsecond\n"
    archive.save(parts, tmp_path / "out.log.gz")
    assert (tmp_path / "out.log.gz").read_bytes() == b"".join(parts)
    assert gzip.decompress((tmp_path / "out.log.gz").read_bytes()) == b"first\nsecond\n"


def client_for(handler) -> SingClient:  # type: ignore[no-untyped-def]
    return SingClient("http://sing.test:7099", transport=httpx.MockTransport(handler))


async def test_download_follows_a_redirect_to_a_presigned_url() -> None:
    body = gzip.compress(b"hello\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "sing.test":
            return httpx.Response(307, headers={"location": "https://s3.test/bucket/k.log.gz?X-Amz-Signature=x"})
        if request.url.host == "s3.test":
            return httpx.Response(200, content=body)
        return httpx.Response(500)

    async with client_for(handler) as client:
        assert await client.download("http://sing.test:7099/api/logs/download?key=k&download=true") == body
        assert await client.download("/api/logs/download?key=k") == body  # relative to the backend
    assert seen[1].startswith("https://s3.test/") and seen[2].startswith("http://sing.test:7099/api/logs/")


async def test_download_errors_carry_the_servers_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "s3.test":
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
        return httpx.Response(404, json={"message": "No archived log a/b"})

    async with client_for(handler) as client:
        with pytest.raises(ApiError, match="No archived log a/b"):
            await client.download("http://sing.test:7099/api/logs/download?key=a/b")
        with pytest.raises(ApiError, match="AccessDenied"):
            await client.download("https://s3.test/k?sig=1")


def row(tid: str, status: str, updated: int) -> dict[str, object]:
    return {"taskId": {"id": tid, "requestId": tid.split("-")[0]}, "lastTaskStatus": status, "updatedAt": updated}


async def test_recent_failures_ask_per_status_and_merge() -> None:
    asked: list[dict[str, str]] = []
    rows = [row("a-1", "TASK_FAILED", 5), row("b-1", "TASK_LOST", 9), row("c-1", "TASK_ERROR", 7),
            row("d-1", "TASK_KILLED", 10)]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/history/tasks"
        params = dict(request.url.params)
        asked.append(params)
        return httpx.Response(200, json=[r for r in rows if r["lastTaskStatus"] == params["lastTaskStatus"]])

    async with client_for(handler) as client:
        found = await client.recent_failures(count=2)
    assert [r["taskId"]["id"] for r in found or []] == ["b-1", "c-1"]  # newest first, killed not a failure
    assert sorted(p["lastTaskStatus"] for p in asked) == ["TASK_ERROR", "TASK_FAILED", "TASK_LOST"]
    assert all(p["orderDirection"] == "DESC" and p["count"] == "2" for p in asked)


@pytest.mark.parametrize(("status", "outcome"), [(404, None), (503, ApiError)])
async def test_recent_failures_without_the_search(status: int, outcome: object) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "history database unavailable"})

    async with client_for(handler) as client:
        if outcome is None:
            assert await client.recent_failures() is None  # an older backend: the dashboard falls back
        else:
            with pytest.raises(ApiError, match="history database unavailable"):
                await client.recent_failures()
