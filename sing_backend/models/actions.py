"""Bodies of the request and task actions (scale, pause, bounce, run now, kill, delete...)."""

from __future__ import annotations

from pydantic import Field, field_validator

from .common import WireModel
from .deploy import Resources, checked_env


class ActionBase(WireModel):
    message: str | None = None
    actionId: str | None = None
    user: str | None = None


class ScaleRequest(ActionBase):
    instances: int = Field(ge=1)
    durationMillis: int | None = Field(None, ge=1)
    skipHealthchecks: bool | None = None
    bounce: bool | None = None
    incremental: bool | None = None


class PauseRequest(ActionBase):
    killTasks: bool | None = None
    durationMillis: int | None = Field(None, ge=1)


class UnpauseRequest(ActionBase):
    skipHealthchecks: bool | None = None


class BounceRequest(ActionBase):
    incremental: bool | None = None
    skipHealthchecks: bool | None = None
    durationMillis: int | None = Field(None, ge=1)


class SkipHealthchecksRequest(ActionBase):
    skipHealthchecks: bool
    durationMillis: int | None = Field(None, ge=1)


class ExitCooldownRequest(ActionBase):
    skipHealthchecks: bool | None = None


class RunNowRequest(ActionBase):
    runId: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    commandLineArgs: list[str] | None = None
    skipHealthchecks: bool | None = None
    resources: Resources | None = None
    runAsUserOverride: str | None = None
    envOverrides: dict[str, str] | None = None
    runAt: int | None = Field(None, ge=0)

    @field_validator("envOverrides")
    @classmethod
    def _env_names(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        return checked_env(env)


class ShellCommand(WireModel):
    name: str = Field(min_length=1)
    options: list[str] | None = None
    user: str | None = None


class KillTaskRequest(ActionBase):
    override: bool | None = None
    waitForReplacementTask: bool | None = None
    # Run in the task's sandbox before its SIGTERM (Singularity's SingularityShellCommand).
    runShellCommandBeforeKill: ShellCommand | None = None


class DeleteRequest(ActionBase):
    deleteFromLoadBalancer: bool | None = None


class DeployUpdate(ActionBase):
    requestId: str
    deployId: str
    targetActiveInstances: int = Field(ge=0)


class MachineChangeRequest(ActionBase):
    durationMillis: int | None = Field(None, ge=1)
    revertToState: str | None = None
    killTasksOnDecommissionTimeout: bool | None = None
