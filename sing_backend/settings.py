"""One validated settings object: defaults, then a TOML file, then SING_* environment variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .executor.settings import ExecutorSettings


class SettingsError(Exception):
    """Raised at start-up when the configuration is unusable; the message names the setting."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sing"


class LocalAgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(3, ge=1, le=64)
    racks: int = Field(2, ge=1, le=64)
    cpus: float = Field(4.0, gt=0)
    mem_mb: float = Field(4096.0, gt=0)
    disk_mb: float = Field(20480.0, gt=0)
    ports_per_agent: int = Field(1000, ge=1, le=5000)
    # Below Linux's ephemeral range (32768+), so tasks never race the OS for their ports.
    first_port: int = Field(20000, ge=1024, le=60000)


class LimitSettings(BaseModel):
    """Per-task and per-request caps (Singularity's defaults); a request or deploy over them is refused."""

    model_config = ConfigDict(extra="forbid")

    max_instances: int = Field(25, ge=1)
    max_cpus_per_task: float = Field(50.0, gt=0)
    max_memory_mb_per_task: float = Field(24 * 1024.0, gt=0)
    max_disk_mb_per_task: float = Field(1024 * 1024.0, gt=0)
    max_ports_per_task: int = Field(10, ge=0)
    # Agents being decommissioned at once (their tasks move elsewhere first); one more is refused.
    max_decommissioning_agents: int = Field(2, ge=1)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(7099, ge=0, le=65535)
    base_path: str = "/singularity"
    data_dir: Path = Field(default_factory=default_data_dir)
    # local: embedded cluster, SQLite state and history, leads at once.
    # mesos: a Mesos master, ZooKeeper state and leader election, MySQL (or any SQLAlchemy URL) history.
    mode: str = Field("local", pattern="^(local|mesos)$")
    mesos_master: str | None = None  # "zk://h1:2181,h2:2181/mesos", "host:port", "h1:5050,h2:5050", "http://h:5050"
    zk_hosts: str | None = None  # "h1:2181,h2:2181"
    zk_root: str = Field("/sing", pattern=r"^/[A-Za-z0-9_./-]*$")
    # Seconds without ZooKeeper before a session (and leadership) is lost; a standby takes over after it.
    zk_session_timeout: float = Field(5.0, ge=1.0, le=600.0)
    db_url: str | None = None  # history database, e.g. "mysql://user:pass@host:3306/sing"
    # The URL other backends use to reach this one's API (standbys forward reads to the leader's).
    advertise_url: str | None = None
    # A standby queues each write in ZooKeeper for the leader and waits this long for the leader's answer;
    # after that it answers 202 (queued: the leader applies it once, when there is one).
    standby_write_wait_seconds: float = Field(10.0, gt=0, le=600.0)
    framework_name: str = "Sing"
    framework_role: str = "*"
    framework_principal: str | None = None
    framework_secret: str | None = None
    # How long Mesos keeps the framework's tasks while no scheduler is connected (fail-over window).
    framework_failover_timeout_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    # A master silent this long (no event, no heartbeat; Mesos sends one every 15 s) is re-subscribed to.
    mesos_heartbeat_timeout_seconds: float = Field(75.0, gt=0)
    mesos_call_timeout_seconds: float = Field(10.0, gt=0)  # one call to the master (ACCEPT, KILL...)
    # A launched task without word from the cluster for this long is reconciled (its launch may be lost).
    launch_confirm_timeout_seconds: float = Field(30.0, gt=0)
    agents: LocalAgentSettings = Field(default_factory=LocalAgentSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    # Agent side: artifact cache, log rotation and archive (local dir or S3), resource limits, clean-up.
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    # Task defaults, as Singularity's.
    default_cpus: float = 1.0
    default_memory_mb: float = 64.0
    default_disk_mb: float = 1024.0
    # SIGTERM -> SIGKILL delay for task kills; Singularity's executor waits 3 minutes.
    kill_grace_seconds: float = Field(180.0, ge=0)
    # A task still running this long after its kill was sent is sent the kill again: the first may have
    # been lost (the master unreachable, or sent by a leader that stepped down just then). Singularity's
    # askDriverToKillTasksAgainAfterMillis; repeated kills are ignored by a task already being killed.
    kill_again_after_seconds: float = Field(60.0, ge=1)
    # How often time-based decisions (deploy success, expiring offers) are re-evaluated.
    tick_seconds: float = Field(1.0, gt=0)
    # Offers are held for fast launches, then declined so the cluster can re-balance them.
    offer_hold_seconds: float = Field(60.0, gt=0)
    # Deploys fail when their tasks are not healthy in time (Singularity's deployHealthTimeoutSeconds).
    deploy_health_timeout_seconds: float = Field(120.0, gt=0)
    # Crash loops: this many failures within the window put a request in SYSTEM_COOLDOWN, where
    # replacements wait `cooldown_delay_seconds` (Singularity: 5 in 1 minute, 120 s).
    cooldown_failure_threshold: int = Field(5, ge=1)
    cooldown_window_seconds: float = Field(60.0, gt=0)
    cooldown_delay_seconds: float = Field(120.0, ge=0)
    # A scheduled run whose fire time passed while the backend was down runs late within this grace,
    # and is skipped (with a history entry) beyond it.
    scheduled_missed_grace_seconds: float = Field(60.0, ge=0)
    # A bounce without durationMillis gives up (CANCEL_BOUNCE) after this long.
    bounce_expiry_seconds: float = Field(3600.0, gt=0)
    max_concurrent_health_checks: int = Field(200, ge=1)
    history_read_timeout_seconds: float = Field(10.0, gt=0)
    # Purging finished tasks from history (off by default, as Singularity's historyPurging): older than
    # this many days, and/or beyond the newest N per request. Checked every history_purge_interval_seconds.
    history_purge_after_days: float | None = Field(None, gt=0)
    history_keep_per_request: int | None = Field(None, ge=1)
    history_purge_interval_seconds: float = Field(3600.0, ge=1.0)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_sandbox_read_bytes: int = Field(1024 * 1024, ge=1024)
    common_hostname_suffix_to_omit: str = ""
    # Load balancer for `loadBalanced` requests: "none", "nginx" (the built-in Baragon-compatible adapter
    # driving a private nginx listening on `nginx_port`), or the base URL of a Baragon service
    # (e.g. "http://baragon:8080/baragon/v2").
    load_balancer: str = Field("none", pattern=r"^(none|nginx|https?://.+)$")
    nginx_port: int = Field(7080, ge=0, le=65535)
    # Benchmark-only: agents report tasks RUNNING without starting processes. Never for the demo.
    simulated_agents: bool = False
    log_level: str = Field("info", pattern="^(critical|error|warning|info|debug)$")

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url(cls, value: str | None) -> str | None:
        # Other backends send this backend's reads and answers there, and clients are told it leads.
        if value is None:
            return None
        parsed = urlparse(value)
        try:
            parsed.port  # noqa: B018 (raises for a port that is not a number in range)
        except ValueError:
            parsed = parsed._replace(netloc="")
        if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path not in ("", "/") \
                or parsed.query or parsed.fragment or any(c.isspace() for c in value):
            raise ValueError(f"must be this backend's API root as the other backends reach it, "
                             f"http://host:port, not {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mesos_needs(self) -> Settings:
        if self.mode == "mesos":
            for name in ("mesos_master", "zk_hosts", "db_url"):
                if not getattr(self, name):
                    raise ValueError(f"{name}: required in mesos mode")
        return self

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        self.base_path = "/" + self.base_path.strip("/") if self.base_path.strip("/") else ""
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        return self

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def history_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.data_dir / 'history.db'}"

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "cluster"


_ENV_PREFIX = "SING_"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """SING_PORT=1 -> {"port": "1"}; SING_AGENTS__COUNT=5 -> {"agents": {"count": "5"}}."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX) or name in ("SING_URL", "SING_TUI_CONFIG"):
            continue
        path = name[len(_ENV_PREFIX):].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {config_file} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from exc
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
