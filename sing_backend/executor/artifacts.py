"""Fetching a task's artifacts: download, verify, cache, then extract or place them in the sandbox.

Downloads with a checksum (or marked ``cache``) go to a cache shared by every task on the machine,
keyed by md5 (or by URL): the first task downloads, the others wait on the key's file lock and reuse
the file. A download is written to a temporary file, verified (size, md5) and only then renamed into
place, so a cache entry is whole or absent. Each entry has a side file with its size, md5 and the
mtime it had when verified; an entry whose file changed since is re-hashed, and fetched again if it
no longer matches.

Archives are extracted only after every member was checked: absolute paths, ``..``, links that
point outside the target directory and device files are refused, naming the member.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from .payload import ArtifactSpec

log = logging.getLogger(__name__)

_BLOCK = 1024 * 1024


class ArtifactError(Exception):
    """A task cannot start because of one of its artifacts; the message says which and why."""


class Cancelled(Exception):
    """The task was killed while its artifacts were being fetched."""


S3Opener = Callable[[str, str], BinaryIO]  # (bucket, key) -> a readable body


class ArtifactCache:
    def __init__(self, cache_dir: Path, *, timeout: float, s3_opener: S3Opener | None = None) -> None:
        self.cache_dir = cache_dir
        self._timeout = timeout
        self._s3_opener = s3_opener
        # Counted for the benchmark and tests: network (or file/S3) fetches actually made.
        self.downloads = 0
        self._count_lock = threading.Lock()

    def materialize(self, spec: ArtifactSpec, task_dir: Path, cancelled: Callable[[], bool]) -> None:
        """Put ``spec`` into the task directory. Raises ArtifactError (or Cancelled)."""
        target = task_dir / spec.target
        target.mkdir(parents=True, exist_ok=True)
        if spec.content is not None:
            _verify_bytes(spec, spec.content)
            self._place(spec, io.BytesIO(spec.content), target)
            return
        assert spec.url is not None
        if spec.md5 is not None or spec.cache:
            with self._cached(spec, cancelled) as source:
                self._place(spec, source, target)
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".dl-{uuid.uuid4().hex}"
        try:
            self._download(spec, tmp, cancelled)
            with open(tmp, "rb") as source:
                self._place(spec, source, target)
        finally:
            tmp.unlink(missing_ok=True)

    # -- the cache -----------------------------------------------------------------------------

    @contextmanager
    def _cached(self, spec: ArtifactSpec, cancelled: Callable[[], bool]) -> Iterator[BinaryIO]:
        """The verified cache entry for ``spec``, open for reading.

        Checked (and fetched if need be) under the key's lock; opened before the lock is let go, so
        the copy reads the verified file even if another task replaces the entry meanwhile, and
        tasks sharing an artifact copy it in parallel.
        """
        assert spec.url is not None
        key = spec.md5 or "url-" + hashlib.sha256(spec.url.encode()).hexdigest()[:40]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / key
        meta_path = self.cache_dir / f"{key}.json"
        with open(self.cache_dir / f"{key}.lock", "a+b") as lock:
            # flock locks belong to the open file: this excludes other threads and other executors.
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not self._valid(spec, path, meta_path):
                    tmp = self.cache_dir / f".{key}.{uuid.uuid4().hex}"
                    try:
                        md5 = self._download(spec, tmp, cancelled)
                        os.replace(tmp, path)
                    finally:
                        tmp.unlink(missing_ok=True)
                    _write_meta(meta_path, path, md5, spec.url)
                source = open(path, "rb")  # closed below, after the lock is released
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        with source:
            yield source

    def _valid(self, spec: ArtifactSpec, path: Path, meta_path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        try:
            meta: dict[str, Any] = orjson.loads(meta_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            meta = {}
        expected_md5 = spec.md5 or meta.get("md5")
        if spec.size is not None and st.st_size != spec.size:
            log.warning("cache entry %s has %d bytes, %s expects %d: fetching it again",
                        path, st.st_size, spec.describe(), spec.size)
            return False
        unchanged = (meta.get("size"), meta.get("mtime_ns"), meta.get("ino")) == (st.st_size, st.st_mtime_ns,
                                                                                   st.st_ino)
        if unchanged and meta.get("md5") == expected_md5:
            return True
        if expected_md5 is None:
            return False
        # The file changed since it was verified (or its record is gone): hash it again.
        actual = _md5_file(path)
        if actual != expected_md5:
            log.warning("cache entry %s is corrupt (md5 %s, expected %s): fetching it again", path, actual,
                        expected_md5)
            return False
        _write_meta(meta_path, path, actual, spec.url or "")
        return True

    # -- fetching ------------------------------------------------------------------------------

    def _download(self, spec: ArtifactSpec, dest: Path, cancelled: Callable[[], bool]) -> str:
        """Fetch ``spec.url`` into ``dest``, verifying size and md5; returns the md5."""
        assert spec.url is not None
        parts = urlsplit(spec.url)
        with self._count_lock:
            self.downloads += 1
        digest = hashlib.md5()
        size = 0
        with open(dest, "wb") as out:
            for block in self._blocks(spec, parts.scheme):
                if cancelled():
                    raise Cancelled()
                size += len(block)
                if spec.size is not None and size > spec.size:
                    raise ArtifactError(f"{spec.describe()}: size mismatch: expected {spec.size} bytes, got more")
                digest.update(block)
                out.write(block)
        if spec.size is not None and size != spec.size:
            raise ArtifactError(f"{spec.describe()}: size mismatch: expected {spec.size} bytes, got {size}")
        md5 = digest.hexdigest()
        if spec.md5 is not None and md5 != spec.md5:
            raise ArtifactError(f"{spec.describe()}: md5 mismatch: expected {spec.md5}, got {md5}")
        return md5

    def _blocks(self, spec: ArtifactSpec, scheme: str) -> Iterator[bytes]:
        assert spec.url is not None
        what = spec.describe()
        if scheme == "file":
            path = unquote(urlsplit(spec.url).path)
            try:
                with open(path, "rb") as f:
                    while block := f.read(_BLOCK):
                        yield block
            except OSError as exc:
                raise ArtifactError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
            return
        if scheme == "s3":
            if self._s3_opener is None:
                raise ArtifactError(f"{what}: S3 artifacts need the executor's s3 settings")
            parts = urlsplit(spec.url)
            try:
                body = self._s3_opener(parts.netloc, parts.path.lstrip("/"))
                while block := body.read(_BLOCK):
                    yield block
            except ArtifactError:
                raise
            except Exception as exc:  # botocore's errors share no useful base class
                raise ArtifactError(f"{what}: S3 fetch failed: {exc}") from None
            return
        host = urlsplit(spec.url).netloc
        try:
            with httpx.stream("GET", spec.url, timeout=self._timeout, follow_redirects=True) as resp:
                if resp.status_code != 200:
                    raise ArtifactError(f"{what}: GET answered HTTP {resp.status_code} {resp.reason_phrase}")
                yield from resp.iter_bytes(_BLOCK)
        except httpx.ConnectError as exc:
            raise ArtifactError(f"{what}: cannot reach {host}: {exc}") from None
        except httpx.TimeoutException:
            raise ArtifactError(f"{what}: timed out after {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ArtifactError(f"{what}: download failed: {exc}") from None

    # -- placing -------------------------------------------------------------------------------

    def _place(self, spec: ArtifactSpec, source: BinaryIO, target: Path) -> None:
        if spec.extract:
            extract(source, target, spec)
            return
        dest = target / spec.filename
        tmp = target / f".{spec.filename}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, _BLOCK)
        os.chmod(tmp, 0o755 if spec.executable else 0o644)
        os.replace(tmp, dest)


def _verify_bytes(spec: ArtifactSpec, content: bytes) -> None:
    if spec.size is not None and len(content) != spec.size:
        raise ArtifactError(f"{spec.describe()}: size mismatch: expected {spec.size} bytes, got {len(content)}")
    if spec.md5 is not None:
        actual = hashlib.md5(content).hexdigest()
        if actual != spec.md5:
            raise ArtifactError(f"{spec.describe()}: md5 mismatch: expected {spec.md5}, got {actual}")


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _write_meta(meta_path: Path, path: Path, md5: str, url: str) -> None:
    st = path.stat()
    tmp = meta_path.with_name(f".{meta_path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(orjson.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "md5": md5,
                                  "url": url}))
    os.replace(tmp, meta_path)


# -- archives --------------------------------------------------------------------------------------


def extract(archive: BinaryIO, target: Path, spec: ArtifactSpec) -> None:
    """Extract a tar (any compression) or zip archive into ``target`` after checking every member."""
    what = spec.describe()
    name = spec.filename.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(archive, target, what)
        else:
            _extract_tar(archive, target, what)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{what}: not a valid archive: {exc}") from None


def _inside(name: str) -> bool:
    """Whether a relative archive path stays inside the extraction directory."""
    norm = posixpath.normpath(name)
    return not (name.startswith("/") or norm == ".." or norm.startswith("../") or "\0" in name)


def _link_inside(member: str, link: str) -> bool:
    if link.startswith("/"):
        return False
    return _inside(posixpath.join(posixpath.dirname(member), link))


def _extract_tar(archive: BinaryIO, target: Path, what: str) -> None:
    with tarfile.open(fileobj=archive, mode="r:*") as tar:
        members = tar.getmembers()
        for m in members:
            if not _inside(m.name):
                raise ArtifactError(f"{what}: refused: member {m.name!r} would be written outside the sandbox")
            if m.issym() and not _link_inside(m.name, m.linkname):
                raise ArtifactError(f"{what}: refused: symlink {m.name!r} points outside the sandbox "
                                    f"({m.linkname})")
            if m.islnk() and not _inside(m.linkname):
                raise ArtifactError(f"{what}: refused: hard link {m.name!r} points outside the sandbox "
                                    f"({m.linkname})")
            if m.isdev() or m.isfifo():
                raise ArtifactError(f"{what}: refused: member {m.name!r} is a device or FIFO")
        try:
            # The "data" filter re-checks every path against the real file system (e.g. a symlink
            # left in the target by an earlier artifact) and drops setuid bits; executable bits stay.
            tar.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise ArtifactError(f"{what}: refused: {exc}") from None


def _extract_zip(archive: BinaryIO, target: Path, what: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        links: dict[str, str] = {}
        for info in infos:
            name = info.filename.replace("\\", "/")
            if not _inside(name) or (len(name) > 1 and name[1] == ":"):
                raise ArtifactError(f"{what}: refused: member {info.filename!r} would be written outside the "
                                    "sandbox")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", errors="replace")
                if not _link_inside(name, link):
                    raise ArtifactError(f"{what}: refused: symlink {info.filename!r} points outside the sandbox "
                                        f"({link})")
                links[name] = link
        root = os.path.realpath(target)
        for info in infos:
            name = info.filename.replace("\\", "/")
            dest = os.path.join(root, name)
            # A directory created by this archive may not be a symlink pointing elsewhere.
            parent = os.path.realpath(os.path.dirname(dest))
            if parent != root and not parent.startswith(root + os.sep):
                raise ArtifactError(f"{what}: refused: member {info.filename!r} goes through a link out of "
                                    "the sandbox")
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if name in links:
                if os.path.lexists(dest):
                    os.unlink(dest)
                os.symlink(links[name], dest)
                continue
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, _BLOCK)
            mode = (info.external_attr >> 16) & 0o777
            # Zips made on Windows carry no Unix mode; honour the executable bit when there is one.
            os.chmod(dest, (mode & 0o755) if mode else 0o644)
