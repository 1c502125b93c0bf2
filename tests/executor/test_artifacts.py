"""Artifacts: downloaded from a real local HTTP server, verified, cached once, extracted safely."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from sing_backend.executor.artifacts import ArtifactCache, ArtifactError
from sing_backend.executor.logstore import S3LogStore
from sing_backend.executor.payload import ArtifactSpec
from tests.cluster.helpers import eventually

from .helpers import ArtifactServer, deploy_task, md5, running_cluster
from .s3 import MotoServer, s3_settings


def _tar(members: dict[str, bytes | tuple[str, str]], mode: int = 0o644) -> bytes:
    """A tar.gz; a (kind, target) tuple makes a "sym" or "hard" link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                kind, target = content
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = mode if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _zip(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((0o755 if name.endswith(".sh") else 0o644) | stat.S_IFREG) << 16
            zf.writestr(info, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o777 | stat.S_IFLNK) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "cache", timeout=5.0)


def _never() -> bool:
    return False


def _spec(url: str, filename: str, data: bytes | None = None, **kw: object) -> ArtifactSpec:
    checks: dict[str, object] = {"md5": md5(data), "size": len(data)} if data is not None else {}
    return ArtifactSpec(name=filename, filename=filename, url=url, **{**checks, **kw})  # type: ignore[arg-type]


def test_download_is_verified_cached_and_a_corrupt_entry_is_fetched_again(tmp_path: Path,
                                                                          artifact_server: ArtifactServer) -> None:
    body = os.urandom(300_000)
    artifact_server.files["/blob.bin"] = body
    cache = _cache(tmp_path)
    spec = _spec(artifact_server.url("/blob.bin"), "blob.bin", body)
    for n in range(3):
        cache.materialize(spec, tmp_path / f"task{n}", _never)
        assert (tmp_path / f"task{n}" / "app" / "blob.bin").read_bytes() == body
    assert artifact_server.count("/blob.bin") == 1 and cache.downloads == 1

    entry = tmp_path / "cache" / md5(body)
    corrupt = bytearray(entry.read_bytes())
    corrupt[1000] ^= 0xFF  # same size, different bytes
    entry.write_bytes(bytes(corrupt))
    cache.materialize(spec, tmp_path / "task-after", _never)
    assert (tmp_path / "task-after" / "app" / "blob.bin").read_bytes() == body
    assert artifact_server.count("/blob.bin") == 2
    assert entry.read_bytes() == body


def test_concurrent_tasks_sharing_an_artifact_download_it_once(tmp_path: Path,
                                                               artifact_server: ArtifactServer) -> None:
    body = os.urandom(2_000_000)
    artifact_server.files["/shared.bin"] = body
    cache = _cache(tmp_path)
    spec = _spec(artifact_server.url("/shared.bin"), "shared.bin", body)
    errors: list[BaseException] = []

    def fetch(n: int) -> None:
        try:
            cache.materialize(spec, tmp_path / f"t{n}", _never)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert artifact_server.count("/shared.bin") == 1
    assert all((tmp_path / f"t{n}" / "app" / "shared.bin").read_bytes() == body for n in range(16))


def test_archives_are_extracted_with_their_executable_bits(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    artifact_server.files["/app.tar.gz"] = _tar({"bin/run.sh": b"#!/bin/sh\necho ran\n", "conf/a.txt": b"a"},
                                                 mode=0o755)
    artifact_server.files["/tools.zip"] = _zip({"tool.sh": b"#!/bin/sh\n", "data/readme": b"r"})
    cache = _cache(tmp_path)
    task = tmp_path / "task"
    cache.materialize(_spec(artifact_server.url("/app.tar.gz"), "app.tar.gz", extract=True), task, _never)
    cache.materialize(_spec(artifact_server.url("/tools.zip"), "tools.zip", extract=True, target="tools"), task,
                      _never)
    assert os.access(task / "app/bin/run.sh", os.X_OK)
    assert (task / "app/conf/a.txt").read_bytes() == b"a" and not os.access(task / "app/conf/a.txt", os.X_OK)
    assert os.access(task / "tools/tool.sh", os.X_OK)
    assert (task / "tools/data/readme").read_bytes() == b"r"
    assert not (task / "app/app.tar.gz").exists()  # extracted, not placed


def test_files_embedded_content_and_file_urls(tmp_path: Path) -> None:
    source = tmp_path / "source.sh"
    source.write_bytes(b"#!/bin/sh\necho hi\n")
    cache = _cache(tmp_path)
    task = tmp_path / "task"
    cache.materialize(ArtifactSpec(name="s", filename="run.sh", url=source.as_uri(), executable=True), task, _never)
    cache.materialize(ArtifactSpec(name="cfg", filename="cfg.json", content=b"{}", md5=md5(b"{}")), task, _never)
    assert os.access(task / "app/run.sh", os.X_OK)
    assert (task / "app/cfg.json").read_bytes() == b"{}"
    with pytest.raises(ArtifactError, match=r"artifact 'cfg'.*md5 mismatch"):
        cache.materialize(ArtifactSpec(name="cfg", filename="cfg.json", content=b"{!}", md5=md5(b"{}")), task,
                          _never)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", r"artifact 'gone.bin' \(http://[^)]+\): GET answered HTTP 404"),
        ("unreachable", r"artifact 'x.bin' \(http://127\.0\.0\.1:\d+/x\.bin\): cannot reach 127\.0\.0\.1:\d+"),
        ("wrong md5", r"artifact 'blob.bin'.*md5 mismatch: expected 0{32}, got [0-9a-f]{32}"),
        ("wrong size", r"artifact 'blob.bin'.*size mismatch: expected 5 bytes"),
        ("dot-dot", r"refused: member '\.\./evil' would be written outside the sandbox"),
        ("absolute", r"refused: member '/tmp/evil' would be written outside the sandbox"),
        ("symlink out", r"refused: symlink 'link' points outside the sandbox \(/etc\)"),
        ("relative symlink out", r"refused: symlink 'a/link' points outside the sandbox \(\.\./\.\./\.\.\)"),
        ("hard link out", r"refused: hard link 'h' points outside the sandbox \(\.\./x\)"),
        ("zip dot-dot", r"refused: member '\.\./\.\./evil' would be written outside the sandbox"),
        ("zip symlink out", r"refused: symlink 'up' points outside the sandbox \(/etc/passwd\)"),
        ("not an archive", r"not a valid archive"),
    ],
)
def test_bad_artifacts_are_refused_with_the_reason(tmp_path: Path, artifact_server: ArtifactServer, case: str,
                                                   expected: str) -> None:
    blob = b"hello"
    archives = {
        "dot-dot": _tar({"../evil": b"x"}),
        "absolute": _tar({"/tmp/evil": b"x"}),
        "symlink out": _tar({"link": ("sym", "/etc")}),
        "relative symlink out": _tar({"a/link": ("sym", "../../..")}),
        "hard link out": _tar({"h": ("hard", "../x")}),
        "zip dot-dot": _zip({"../../evil": b"x"}),
        "zip symlink out": _zip({}, symlinks={"up": "/etc/passwd"}),
        "not an archive": b"plain bytes, no tar",
    }
    if case == "missing":
        spec = _spec(artifact_server.url("/gone.bin"), "gone.bin")
    elif case == "unreachable":
        spec = _spec(f"http://127.0.0.1:{_closed_port()}/x.bin", "x.bin")
    elif case == "wrong md5":
        artifact_server.files["/blob.bin"] = blob
        spec = ArtifactSpec(name="blob.bin", filename="blob.bin", url=artifact_server.url("/blob.bin"), md5="0" * 32)
    elif case == "wrong size":
        artifact_server.files["/blob.bin"] = blob + b"!"
        spec = ArtifactSpec(name="blob.bin", filename="blob.bin", url=artifact_server.url("/blob.bin"), size=5)
    else:
        filename = "bundle.zip" if case.startswith("zip") else "bundle.tar.gz"
        artifact_server.files[f"/{filename}"] = archives[case]
        spec = _spec(artifact_server.url(f"/{filename}"), filename, extract=True)
    with pytest.raises(ArtifactError, match=expected):
        _cache(tmp_path).materialize(spec, tmp_path / "task", _never)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_task_runs_what_its_artifacts_brought(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    bundle = _tar({"bin/hello.sh": b"#!/bin/sh\necho \"hello from $1\"\n"}, mode=0o755)
    artifact_server.files["/bundle.tgz"] = bundle
    artifact_server.files["/greeting.txt"] = b"world"
    deploy = {
        "uris": [{"uri": artifact_server.url("/greeting.txt"), "cache": True}],
        "executorData": {"externalArtifacts": [{"name": "bundle", "url": artifact_server.url("/bundle.tgz"),
                                                "filename": "bundle.tgz", "md5sum": md5(bundle),
                                                "filesize": len(bundle)}],
                         "embeddedArtifacts": [{"name": "conf", "filename": "conf.txt", "content": "Y29uZg=="}]},
    }
    with running_cluster(tmp_path) as h:
        h.launch([deploy_task("fetch-1", 'bin/hello.sh "$(cat greeting.txt) $(cat conf.txt)"', deploy=deploy),
                  deploy_task("fetch-2", "cat greeting.txt", deploy=deploy)])
        starting = h.sched.status("fetch-1", "TASK_STARTING")
        assert starting["message"] == "Fetching artifacts"
        h.sched.status("fetch-1", "TASK_FINISHED")
        h.sched.status("fetch-2", "TASK_FINISHED")
        assert (h.task_dir("fetch-1") / "stdout.log").read_text() == "hello from world conf\n"
        assert artifact_server.count("/bundle.tgz") == 1 and artifact_server.count("/greeting.txt") == 1


def test_a_failed_artifact_fails_the_task_and_says_why(tmp_path: Path, artifact_server: ArtifactServer) -> None:
    artifact_server.files["/evil.tar.gz"] = _tar({"../../escape": b"x"})
    deploy = {"uris": [{"uri": artifact_server.url("/evil.tar.gz")}]}
    missing = {"uris": [{"uri": artifact_server.url("/missing.jar")}]}
    with running_cluster(tmp_path) as h:
        h.launch([deploy_task("evil", "true", deploy=deploy), deploy_task("missing", "true", deploy=missing)])
        failed = h.sched.status("evil", "TASK_FAILED")
        assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert "artifact 'evil.tar.gz'" in failed["message"] and "outside the sandbox" in failed["message"]
        assert "HTTP 404" in h.sched.status("missing", "TASK_FAILED")["message"]
        assert h.sched.states("evil") == ["TASK_STARTING", "TASK_FAILED"]
        eventually(lambda: (h.task_dir("evil") / "finished.json").exists(), what="the end to be recorded")


def test_s3_artifacts_use_the_s3_settings(tmp_path: Path, s3: MotoServer) -> None:
    # moto's standalone server stands in for S3: no real S3 is reachable from the tests.
    store = S3LogStore(s3_settings(s3, "sing-artifacts"))
    body = _tar({"run.sh": b"#!/bin/sh\necho from s3\n"}, mode=0o755)
    store.client.put_object(Bucket="sing-artifacts", Key="builds/app.tar.gz", Body=body)
    cache = ArtifactCache(tmp_path / "cache", timeout=5.0, s3_opener=store.open)
    spec = ArtifactSpec(name="app", filename="app.tar.gz", url="s3://sing-artifacts/builds/app.tar.gz",
                        md5=md5(body), extract=True)
    cache.materialize(spec, tmp_path / "task", _never)
    assert os.access(tmp_path / "task/app/run.sh", os.X_OK)
    missing = ArtifactSpec(name="gone", filename="gone.tgz", url="s3://sing-artifacts/nope.tgz", cache=True)
    with pytest.raises(ArtifactError, match=r"artifact 'gone' \(s3://sing-artifacts/nope.tgz\): S3 fetch failed"):
        cache.materialize(missing, tmp_path / "task", _never)
    with pytest.raises(ArtifactError, match="S3 artifacts need the executor's s3 settings"):
        ArtifactCache(tmp_path / "c2", timeout=5.0).materialize(missing, tmp_path / "task", _never)
