"""What a task carries to its executor, and reading it back.

The scheduler puts a JSON payload (base64) in ``TaskInfo.data``: the deploy's artifacts, user, exit
codes, rlimits, log rotation and kill settings, plus the command itself when a custom executor runs
the task (a TaskInfo has a ``command`` or an ``executor``, never both). ``TaskSpec.from_task_info``
reads a TaskInfo with or without that payload, so plain command tasks keep working.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..ids import TaskId
from .settings import ROTATE_PERIODS

# Marks our payload: TaskInfo.data may hold anything another framework put there.
PAYLOAD_KEY = "singExecutor"
PAYLOAD_VERSION = 1
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
# Where artifacts land unless told otherwise: the task's working directory.
DEFAULT_ARTIFACT_DIR = "app"


class PayloadError(ValueError):
    """The TaskInfo cannot be run: the message says which field and why."""


@dataclass(frozen=True)
class ArtifactSpec:
    name: str
    filename: str
    # Exactly one of url (http, https, file, s3) and content (an embedded artifact).
    url: str | None = None
    content: bytes | None = None
    md5: str | None = None
    size: int | None = None
    # Directory relative to the task directory the file goes to (or is extracted into).
    target: str = DEFAULT_ARTIFACT_DIR
    extract: bool = False
    executable: bool = False
    # Cache a download that has no checksum (keyed by its URL); checksummed ones are always cached.
    cache: bool = False

    def describe(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"artifact '{self.name}'{where}"

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "filename": self.filename, "target": self.target,
                               "extract": self.extract, "executable": self.executable, "cache": self.cache}
        if self.url is not None:
            out["url"] = self.url
        if self.content is not None:
            out["content"] = base64.b64encode(self.content).decode("ascii")
        if self.md5 is not None:
            out["md5"] = self.md5
        if self.size is not None:
            out["size"] = self.size
        return out

    @classmethod
    def from_wire(cls, raw: Any) -> ArtifactSpec:
        if not isinstance(raw, dict):
            raise PayloadError("artifacts: each artifact must be an object")
        name = _str(raw.get("name")) or _str(raw.get("filename")) or "artifact"
        content = raw.get("content")
        decoded = None
        if content is not None:
            try:
                decoded = base64.b64decode(str(content), validate=True)
            except (binascii.Error, ValueError):
                raise PayloadError(f"artifact '{name}': content is not base64") from None
        spec = cls(
            name=name,
            filename=_str(raw.get("filename")) or "",
            url=_str(raw.get("url")),
            content=decoded,
            md5=_md5(raw.get("md5"), name),
            size=_size(raw.get("size"), name),
            target=_str(raw.get("target")) or DEFAULT_ARTIFACT_DIR,
            extract=bool(raw.get("extract")),
            executable=bool(raw.get("executable")),
            cache=bool(raw.get("cache")),
        )
        spec.check()
        return spec

    def check(self) -> None:
        """Refuse what could write outside the task directory, or fetch from an unsupported place."""
        who = f"artifact '{self.name}'"
        if (self.url is None) == (self.content is None):
            raise PayloadError(f"{who}: needs exactly one of a url and embedded content")
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            if scheme not in ("http", "https", "file", "s3"):
                raise PayloadError(f"{who}: unsupported URL scheme {scheme!r} (http, https, file or s3)")
        if not self.filename or "/" in self.filename or self.filename in (".", "..") or "\0" in self.filename:
            raise PayloadError(f"{who}: filename {self.filename!r} must be a plain file name")
        norm = posixpath.normpath(self.target)
        if self.target.startswith("/") or norm == ".." or norm.startswith("../") or "\0" in self.target:
            raise PayloadError(f"{who}: target folder {self.target!r} must stay inside the task directory")


@dataclass(frozen=True)
class TaskSpec:
    """Everything the executor needs to run one task."""

    task_id: str
    name: str
    request_id: str
    deploy_id: str
    command: str
    shell: bool = True
    arguments: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    successful_exit_codes: frozenset[int] = frozenset({0})
    artifacts: tuple[ArtifactSpec, ...] = ()
    cpus: float | None = None
    mem_mb: float | None = None
    disk_mb: float | None = None
    max_open_files: int | None = None
    max_task_threads: int | None = None
    kill_grace_seconds: float | None = None
    rotate_frequency: str | None = None
    skip_logrotate: bool = False
    preserve_sandbox: bool = False

    def argv(self) -> tuple[str, list[str]]:
        """Executable and argv. Mesos semantics: with shell=false, ``arguments`` includes argv[0]."""
        if self.shell:
            return "/bin/sh", ["/bin/sh", "-c", self.command]
        return self.command, list(self.arguments or (self.command,))

    @classmethod
    def from_task_info(cls, info: Mapping[str, Any]) -> TaskSpec:
        task_id = _str((info.get("task_id") or {}).get("value")) or ""
        payload = decode_payload(info.get("data"))
        command = info.get("command")
        fallback = payload.get("command")
        if isinstance(fallback, dict) and not (isinstance(command, dict) and command.get("value")):
            # A custom executor's task, or a deploy whose command is executorData.cmd: the payload
            # names the command; the TaskInfo's environment (ports, TASK_ID...) still applies.
            environment = (command or {}).get("environment") if isinstance(command, dict) else None
            command = {**fallback, "environment": environment or fallback.get("environment") or {}}
        if not isinstance(command, dict):
            raise PayloadError("task has no command")
        value = command.get("value")
        if not isinstance(value, str) or not value:
            raise PayloadError("command.value must be a non-empty string")
        arguments = command.get("arguments") or []
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise PayloadError("command.arguments must be a list of strings")
        resources = scalar_resources(info.get("resources"))
        request_id, deploy_id = _owner(task_id, info, payload)
        return cls(
            task_id=task_id,
            name=_str(info.get("name")) or task_id,
            request_id=request_id,
            deploy_id=deploy_id,
            command=value,
            shell=bool(command.get("shell", True)),
            arguments=tuple(arguments),
            env=_variables(command),
            user=_str(payload.get("user")) or _str(command.get("user")),
            successful_exit_codes=_exit_codes(payload.get("successfulExitCodes")),
            artifacts=tuple(ArtifactSpec.from_wire(a) for a in payload.get("artifacts") or []),
            cpus=resources.get("cpus"),
            mem_mb=resources.get("mem"),
            disk_mb=resources.get("disk"),
            max_open_files=_positive_int(payload.get("maxOpenFiles"), "maxOpenFiles"),
            max_task_threads=_positive_int(payload.get("maxTaskThreads"), "maxTaskThreads"),
            kill_grace_seconds=_grace(info.get("kill_policy"), payload.get("sigKillProcessesAfterMillis")),
            rotate_frequency=_frequency(payload.get("logrotateFrequency")),
            skip_logrotate=bool(payload.get("skipLogrotateAndCompress")),
            preserve_sandbox=bool(payload.get("preserveTaskSandboxAfterFinish")),
        )


# -- building (scheduler side) ---------------------------------------------------------------------


def task_payload(deploy: Mapping[str, Any], pending_task: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The payload for a task of ``deploy`` (a SingularityDeploy as JSON): its artifacts and the
    executorData settings the executor honours. ``pending_task`` (a SingularityPendingTask as JSON)
    may override the user (``runAsUserOverride``)."""
    data: Mapping[str, Any] = deploy.get("executorData") or {}
    payload: dict[str, Any] = {PAYLOAD_KEY: PAYLOAD_VERSION, "requestId": deploy.get("requestId"),
                               "deployId": deploy.get("id")}
    user = (pending_task or {}).get("runAsUserOverride") or deploy.get("user") or data.get("user")
    if user:
        payload["user"] = user
    for key in ("successfulExitCodes", "maxOpenFiles", "maxTaskThreads", "sigKillProcessesAfterMillis",
                "logrotateFrequency", "skipLogrotateAndCompress", "preserveTaskSandboxAfterFinish"):
        if data.get(key) is not None:
            payload[key] = data[key]
    artifacts = [a.wire() for a in deploy_artifacts(deploy)]
    if artifacts:
        payload["artifacts"] = artifacts
    if not deploy.get("command") and data.get("cmd"):
        # A deploy run by Singularity's executor names its command in executorData.
        args = [str(a) for a in data.get("extraCmdLineArgs") or []]
        payload["command"] = {"value": " ".join([str(data["cmd"]), *(shlex.quote(a) for a in args)]),
                              "shell": True}
    return payload


def deploy_artifacts(deploy: Mapping[str, Any]) -> list[ArtifactSpec]:
    """A deploy's ``uris`` and executorData embedded/external/S3 artifacts, checked."""
    out: list[ArtifactSpec] = []
    for uri in deploy.get("uris") or []:
        raw = uri if isinstance(uri, dict) else {"uri": uri}
        url = str(raw.get("uri") or "")
        filename = raw.get("outputFile") or posixpath.basename(urlsplit(url).path) or "artifact"
        extract = raw.get("extract")
        out.append(ArtifactSpec(
            name=filename, filename=filename, url=url,
            extract=is_archive(filename) if extract is None else bool(extract) and is_archive(filename),
            executable=bool(raw.get("executable")), cache=bool(raw.get("cache")),
        ))
    data: Mapping[str, Any] = deploy.get("executorData") or {}
    for raw in _objects(data, "embeddedArtifacts"):
        content = raw.get("content") or ""
        try:
            decoded = base64.b64decode(content, validate=True) if isinstance(content, str) else bytes(content)
        except (binascii.Error, ValueError, TypeError):
            raise PayloadError(f"embedded artifact '{raw.get('name')}': content is not base64") from None
        filename = str(raw.get("filename") or raw.get("name") or "artifact")
        out.append(ArtifactSpec(
            name=str(raw.get("name") or filename), filename=filename, content=decoded,
            md5=_md5(raw.get("md5sum"), filename), target=_target(raw), extract=is_archive(filename),
        ))
    for raw in _objects(data, "externalArtifacts"):
        if raw.get("isArtifactList"):
            raise PayloadError(f"external artifact '{raw.get('name')}': isArtifactList is not supported")
        url = str(raw.get("url") or "")
        filename = str(raw.get("filename") or posixpath.basename(urlsplit(url).path) or "artifact")
        out.append(ArtifactSpec(
            name=str(raw.get("name") or filename), filename=filename, url=url,
            md5=_md5(raw.get("md5sum"), filename), size=_size(raw.get("filesize"), filename),
            target=_target(raw), extract=is_archive(filename),
        ))
    for raw in _objects(data, "s3Artifacts"):
        key = str(raw.get("s3ObjectKey") or "")
        filename = str(raw.get("filename") or posixpath.basename(key) or "artifact")
        out.append(ArtifactSpec(
            name=str(raw.get("name") or filename), filename=filename, url=f"s3://{raw.get('s3Bucket')}/{key}",
            md5=_md5(raw.get("md5sum"), filename), size=_size(raw.get("filesize"), filename),
            target=_target(raw), extract=is_archive(filename),
        ))
    for spec in out:
        spec.check()
    return out


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """executorData's list `key`, each entry an object (it comes from the user, unchecked)."""
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise PayloadError(f"{key} must be a list of objects")
    return value


def check_deploy(deploy: Mapping[str, Any]) -> None:
    """Refuse, when a deploy is made, what its tasks could never be built or run with (an artifact the
    executor cannot fetch or place, an executorData setting it does not take): each error names the
    deploy's field. Found at launch, it would fail every task of the deploy instead."""
    data: Mapping[str, Any] = deploy.get("executorData") or {}
    artifacts = {"uris": {"uris": deploy.get("uris")}}
    for key in ("embeddedArtifacts", "externalArtifacts", "s3Artifacts"):
        artifacts[f"executorData.{key}"] = {"executorData": {key: data.get(key)}}
    for name, part in artifacts.items():
        try:
            deploy_artifacts(part)
        except PayloadError as exc:
            raise PayloadError(f"{name}: {exc}") from None
    settings: dict[str, Any] = {
        "successfulExitCodes": _exit_codes, "maxOpenFiles": lambda v: _positive_int(v, "maxOpenFiles"),
        "maxTaskThreads": lambda v: _positive_int(v, "maxTaskThreads"), "logrotateFrequency": _frequency,
    }
    for key, check in settings.items():
        try:
            check(data.get(key))
        except PayloadError as exc:
            raise PayloadError(f"executorData.{key}: {exc}") from None


def env_problem(env: Mapping[str, str]) -> str | None:
    """Why `env` cannot be a process's environment (a name empty or with '=', a NUL byte), or None."""
    for name, value in env.items():
        if not name or "=" in name or "\0" in name:
            return f"{name!r} is not an environment variable name (it must be non-empty, without '=')"
        if "\0" in value:
            return f"{name}: the value holds a NUL byte"
    return None


def attach_payload(task_info: dict[str, Any], payload: dict[str, Any], *,
                   executor_command: str | None = None) -> dict[str, Any]:
    """Put ``payload`` into ``task_info.data``. With ``executor_command`` the task is run by that
    custom executor (one executor per task, its id the task id) and the command moves into the payload."""
    if executor_command is not None:
        command = task_info.pop("command", None)
        if command is not None and "command" not in payload:
            payload = {**payload, "command": command}
        task_id = task_info["task_id"]["value"]
        task_info["executor"] = {
            "executor_id": {"value": task_id},
            "name": f"sing executor for {task_id}",
            "command": {"value": executor_command, "shell": True},
        }
    task_info["data"] = encode_payload(payload)
    return task_info


def default_executor_command() -> str:
    """The command line that runs Sing's executor with this interpreter (for the embedded cluster)."""
    return f"{shlex.quote(sys.executable)} -m sing_backend.executor"


def encode_payload(payload: Mapping[str, Any]) -> str:
    return base64.b64encode(orjson.dumps(payload)).decode("ascii")


def decode_payload(data: Any) -> dict[str, Any]:
    """Our payload from TaskInfo.data, or {} when there is none (or it is someone else's)."""
    if not isinstance(data, str) or not data:
        return {}
    try:
        payload = orjson.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return {}
    return payload if isinstance(payload, dict) and payload.get(PAYLOAD_KEY) == PAYLOAD_VERSION else {}


def kill_message(shell_command: str | Mapping[str, Any]) -> str:
    """A framework message (base64, for pymesos' sendFrameworkMessage) asking the task's executor to
    run ``shell_command`` in the task's sandbox before it sends the SIGTERM of the next kill.

    ``shell_command`` is a command line, or Singularity's SingularityShellCommand ({name, options}):
    the name is run with the options as its arguments.
    """
    if not isinstance(shell_command, str):
        options = [shlex.quote(str(o)) for o in shell_command.get("options") or []]
        shell_command = " ".join([str(shell_command.get("name") or ""), *options]).strip()
    return base64.b64encode(orjson.dumps({PAYLOAD_KEY: PAYLOAD_VERSION, "beforeKill": shell_command})).decode()


def read_message(data: Any) -> str | None:
    """The pre-kill shell command of a framework message, if it is one of ours."""
    payload = decode_payload(data)
    command = payload.get("beforeKill")
    return command if isinstance(command, str) and command.strip() else None


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


# -- field readers -------------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _md5(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).lower()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise PayloadError(f"artifact '{name}': md5 {value!r} is not 32 hex digits")
    return text


def _size(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"artifact '{name}': size {value!r} must be a whole number of bytes")
    return value


def _target(raw: Mapping[str, Any]) -> str:
    return str(raw.get("targetFolderRelativeToTask") or DEFAULT_ARTIFACT_DIR)


def _variables(command: Mapping[str, Any]) -> dict[str, str]:
    variables = (command.get("environment") or {}).get("variables") or []
    if not isinstance(variables, list):
        raise PayloadError("command.environment.variables must be a list")
    env = {}
    for var in variables:
        name, value = (var or {}).get("name"), (var or {}).get("value")
        if not isinstance(name, str) or not name or "=" in name or not isinstance(value, str):
            raise PayloadError("each environment variable needs a string name (no '=') and a string value")
        env[name] = value
    return env


def scalar_resources(resources: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in resources or []:
        if isinstance(r, dict) and r.get("type", "SCALAR") == "SCALAR" and isinstance(r.get("scalar"), dict):
            try:
                out[str(r.get("name"))] = out.get(str(r.get("name")), 0.0) + float(r["scalar"]["value"])
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _owner(task_id: str, info: Mapping[str, Any], payload: Mapping[str, Any]) -> tuple[str, str]:
    request_id, deploy_id = _str(payload.get("requestId")), _str(payload.get("deployId"))
    if request_id and deploy_id:
        return request_id, deploy_id
    try:
        parsed = TaskId.parse(task_id)
        return parsed.requestId, parsed.deployId
    except ValueError:
        # Not a Singularity task id (a bare framework's task): file its logs under its name.
        return _str(info.get("name")) or task_id or "unknown", "unknown"


def _exit_codes(value: Any) -> frozenset[int]:
    if value is None:
        return frozenset({0})
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise PayloadError("successfulExitCodes must be a list of whole numbers")
    return frozenset(value)


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PayloadError(f"{name} must be a whole number of at least 1")
    return value


def _grace(policy: Any, millis: Any) -> float | None:
    if isinstance(policy, dict):
        nanos = (policy.get("grace_period") or {}).get("nanoseconds")
        if isinstance(nanos, int | float):
            return max(0.0, nanos / 1e9)
    if isinstance(millis, int | float) and not isinstance(millis, bool):
        return max(0.0, millis / 1000.0)
    return None


def _frequency(value: Any) -> str | None:
    if value is None:
        return None
    if value not in ROTATE_PERIODS:
        raise PayloadError(f"logrotateFrequency must be one of {', '.join(ROTATE_PERIODS)}")
    return str(value)
