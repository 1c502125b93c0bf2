"""Where rotated task logs are archived: a local directory, or S3-compatible storage (boto3).

Keys are ``{requestId}/{deployId}/{taskId}/{stream}-{seq}-{startMs}-{endMs}.log.gz``, so a task's,
a deploy's and a request's logs are each one prefix listing, and every object says which stretch of
time it covers (Singularity's startTime/endTime) without reading it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .settings import S3Settings

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(?P<stream>[a-z]+)-(?P<seq>\d+)-(?P<start>\d+)-(?P<end>\d+)\.log(?:\.gz)?$")


def segment_name(stream: str, seq: int, start_ms: int, end_ms: int) -> str:
    return f"{stream}-{seq:05d}-{start_ms}-{end_ms}.log"


@dataclass(frozen=True)
class Segment:
    stream: str
    seq: int
    start_ms: int
    end_ms: int


def parse_segment(filename: str) -> Segment | None:
    m = _SEGMENT.match(filename)
    if m is None:
        return None
    return Segment(m["stream"], int(m["seq"]), int(m["start"]), int(m["end"]))


def task_prefix(request_id: str, deploy_id: str | None = None, task_id: str | None = None) -> str:
    parts = [request_id] + ([deploy_id] if deploy_id else []) + ([task_id] if task_id and deploy_id else [])
    return "/".join(parts) + "/"


def check_key(key: str) -> str:
    """A key as given by a client: relative, no '..', no NUL. Raises ValueError otherwise."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"key {key!r} is not a log key")
    return key


@dataclass(frozen=True)
class LogObject:
    key: str
    size: int
    last_modified_ms: int

    @property
    def segment(self) -> Segment | None:
        return parse_segment(self.key.rsplit("/", 1)[-1])


class LogStore(ABC):
    @abstractmethod
    def put(self, path: Path, key: str) -> None:
        """Archive the file at ``path`` as ``key`` (replacing an object of that key)."""

    @abstractmethod
    def list(self, prefix: str) -> list[LogObject]:
        """Every object whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def describe(self) -> str: ...


class LocalLogStore(LogStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"directory {self.root}"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, path: Path, key: str) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}")
        try:
            # Same file system (the usual case): a hard link costs nothing and is atomic with the rename.
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def list(self, prefix: str) -> list[LogObject]:
        base = prefix.rstrip("/")
        start = self.root / base if base else self.root
        if base and not start.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                out.append(LogObject(key, st.st_size, int(st.st_mtime * 1000)))
        out.sort(key=lambda o: o.key)
        return out


class S3LogStore(LogStore):
    def __init__(self, settings: S3Settings) -> None:
        import boto3  # imported here: a backend without S3 settings never pays for it

        self.settings = settings
        kwargs: dict[str, Any] = {}
        if settings.endpoint_url:
            kwargs["endpoint_url"] = settings.endpoint_url
        if settings.region:
            kwargs["region_name"] = settings.region
        if settings.access_key_id and settings.secret_access_key:
            kwargs["aws_access_key_id"] = settings.access_key_id
            kwargs["aws_secret_access_key"] = settings.secret_access_key
        self.client = boto3.client("s3", **kwargs)

    def describe(self) -> str:
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        return f"s3://{self.settings.bucket}/{self.settings.prefix}{where}"

    def _full(self, key: str) -> str:
        return f"{self.settings.prefix}{check_key(key)}"

    def put(self, path: Path, key: str) -> None:
        # upload_file switches to multipart uploads for big files by itself.
        self.client.upload_file(str(path), self.settings.bucket, self._full(key),
                                ExtraArgs={"ContentType": "application/gzip"})

    def list(self, prefix: str) -> list[LogObject]:
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.settings.prefix)
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=f"{self.settings.prefix}{prefix}"):
            for obj in page.get("Contents", []):
                out.append(LogObject(obj["Key"][strip:], int(obj["Size"]),
                                     int(obj["LastModified"].timestamp() * 1000)))
        out.sort(key=lambda o: o.key)
        return out

    def url(self, key: str, *, download: bool) -> str:
        params: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": self._full(key)}
        if download:
            params["ResponseContentDisposition"] = f'attachment; filename="{key.rsplit("/", 1)[-1]}"'
        return str(self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=self.settings.presign_seconds))

    def open(self, bucket: str, key: str) -> BinaryIO:
        """A readable body of any object (used to fetch s3:// artifacts with the same credentials)."""
        body: BinaryIO = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        return body


def open_store(s3: S3Settings | None, log_dir: Path) -> LogStore:
    return S3LogStore(s3) if s3 is not None else LocalLogStore(log_dir)
