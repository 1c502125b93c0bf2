"""What the executor is configured with: cache, log rotation and archive, limits, sandbox retention.

One model for both places it runs: the embedded cluster's agents (from the backend's settings) and
``sing executor`` under a real Mesos agent (from ``--settings FILE`` or ``SING_EXECUTOR_SETTINGS``).
Paths left unset are derived from the data directory (see ``ExecutorPaths``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Singularity's logrotateFrequency values, plus how long each lets a log file grow.
ROTATE_PERIODS: dict[str, float] = {
    "EVERY_MINUTE": 60.0,
    "EVERY_FIVE_MINUTES": 300.0,
    "HOURLY": 3600.0,
    "DAILY": 86400.0,
    "WEEKLY": 7 * 86400.0,
    "MONTHLY": 30 * 86400.0,
}

# How the embedded agent hands its settings and tracking scope to a `sing executor` it starts.
SETTINGS_ENV = "SING_EXECUTOR_SETTINGS"
SCOPE_ENV = "SING_EXECUTOR_SCOPE"

RotateFrequency = Literal["EVERY_MINUTE", "EVERY_FIVE_MINUTES", "HOURLY", "DAILY", "WEEKLY", "MONTHLY"]


class S3Settings(BaseModel):
    """S3-compatible storage for rotated logs. Credentials not given here come from boto3's usual chain
    (environment, ~/.aws, instance profile)."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3)
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    # Singularity presigns log URLs for one day.
    presign_seconds: int = Field(86400, ge=60)


class ExecutorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Shared artifact cache (default <data>/cluster/cache) and local log store (default <data>/logs).
    cache_dir: Path | None = None
    log_dir: Path | None = None
    # When set, rotated logs go to S3-compatible storage instead of log_dir.
    s3: S3Settings | None = None

    # Rotation: by size, and by time (a deploy's executorData.logrotateFrequency overrides the period).
    rotate_size_mb: float = Field(100.0, gt=0)
    rotate_frequency: RotateFrequency = "DAILY"
    # Rotated files kept in the sandbox's logs/ (they are archived first): Singularity's rotate 20, maxage 7.
    rotate_keep: int = Field(20, ge=1)
    rotate_max_age_days: float = Field(7.0, gt=0)
    # gzip level of rotated files: 1 keeps a fast-logging task from costing a core.
    compress_level: int = Field(1, ge=1, le=9)

    # Limits. Memory and disk are polled by one thread per agent.
    enforce_memory: bool = True
    enforce_disk: bool = True
    memory_check_seconds: float = Field(1.0, gt=0)
    disk_check_seconds: float = Field(2.0, gt=0)
    # The machine guard: when the sandboxes' file system has less free space than this, the task
    # with the biggest sandbox is killed, whatever its own disk limit.
    min_free_disk_mb: float = Field(1024.0, ge=0)
    # cgroups (v2, or v1's cpu and pids controllers) for CPU shares, the memory controller, thread
    # caps and process tracking, when this process may create them; "off" uses /proc only.
    cgroups: Literal["auto", "off"] = "auto"

    # Artifacts.
    download_timeout_seconds: float = Field(180.0, gt=0)

    # Sandboxes of finished tasks: pruned to the tail of their logs after this long (failed ones
    # later), deleted entirely after sandbox_delete_after_seconds.
    sandbox_retention_seconds: float = Field(3600.0, ge=0)
    failed_sandbox_retention_seconds: float = Field(86400.0, ge=0)
    sandbox_delete_after_seconds: float = Field(7 * 86400.0, ge=0)
    cleanup_interval_seconds: float = Field(60.0, gt=0)
    # Singularity keeps 2500 lines in tail_of_finished_service.log.
    tail_lines: int = Field(2500, ge=0)

    # The pre-kill shell command may run this long before the SIGTERM is sent anyway.
    before_kill_timeout_seconds: float = Field(30.0, ge=0)
    # SIGTERM -> SIGKILL when neither the kill nor the task says (sing executor; the embedded
    # cluster passes its own default).
    kill_grace_seconds: float = Field(180.0, ge=0)


@dataclass(frozen=True)
class ExecutorPaths:
    cache_dir: Path
    log_dir: Path

    @classmethod
    def resolve(cls, settings: ExecutorSettings, data_dir: Path) -> ExecutorPaths:
        """Paths for a backend whose data directory is ``data_dir`` (the cluster works in data/cluster)."""
        return cls(
            cache_dir=settings.cache_dir or data_dir / "cluster" / "cache",
            log_dir=settings.log_dir or data_dir / "logs",
        )
