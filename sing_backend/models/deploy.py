"""SingularityDeploy (one version of how to run a request) and the POST /api/deploys body."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..executor.payload import PayloadError, check_deploy, env_problem
from .common import DEPLOY_ID_PATTERN, REQUEST_ID_PATTERN, WireModel
from .request import SingularityRequest


class Resources(WireModel):
    cpus: float = Field(1.0, gt=0)
    memoryMb: float = Field(64.0, gt=0)
    numPorts: int = Field(0, ge=0)
    diskMb: float = Field(0.0, ge=0)


class ArtifactUri(WireModel):
    uri: str = Field(min_length=1)
    cache: bool | None = None
    executable: bool | None = None
    extract: bool | None = None
    outputFile: str | None = None


class HealthcheckOptions(WireModel):
    uri: str | None = None
    portIndex: int | None = Field(None, ge=0)
    portNumber: int | None = Field(None, ge=1, le=65535)
    protocol: str | None = Field(None, pattern="^(HTTP|HTTPS|HTTP2|HTTPS2)$")
    method: str | None = Field(None, pattern="^(GET|POST)$")
    startupTimeoutSeconds: int | None = Field(None, ge=0)
    startupDelaySeconds: int | None = Field(None, ge=0)
    startupIntervalSeconds: int | None = Field(None, ge=0)
    intervalSeconds: int | None = Field(None, ge=0)
    responseTimeoutSeconds: int | None = Field(None, ge=0)
    maxRetries: int | None = Field(None, ge=0)
    failureStatusCodes: list[int] | None = None
    healthcheckResultFilePath: str | None = None
    # Sing: keep checking after the task is healthy; replace it after this many failures in a row.
    livenessIntervalSeconds: int | None = Field(None, ge=1)
    livenessFailureThreshold: int | None = Field(None, ge=1)

    @field_validator("failureStatusCodes")
    @classmethod
    def _status_codes(cls, codes: list[int] | None, info: ValidationInfo) -> list[int] | None:
        # (Checked since after deploys were first saved: see STORED.)
        for i, code in enumerate([] if _stored(info) else codes or []):
            if not 100 <= code <= 599:
                raise ValueError(f"{i}: {code} is not an HTTP status code (100-599)")
        return codes

    @model_validator(mode="after")
    def _needs_target(self) -> HealthcheckOptions:
        if not self.uri and not self.healthcheckResultFilePath:
            raise ValueError("healthcheck: needs a uri or a healthcheckResultFilePath")
        if self.uri is not None and not self.uri.startswith("/"):
            raise ValueError("healthcheck.uri: must start with '/'")
        if self.healthcheckResultFilePath is not None and (
                self.healthcheckResultFilePath.startswith("/") or ".." in self.healthcheckResultFilePath.split("/")):
            raise ValueError("healthcheck.healthcheckResultFilePath: must be a path inside the task's app/ directory")
        return self


class RunNowSettings(WireModel):
    runId: str | None = Field(None, max_length=100)
    commandLineArgs: list[str] | None = None
    message: str | None = None
    envOverrides: dict[str, str] | None = None
    skipHealthchecks: bool | None = None

    @field_validator("envOverrides")
    @classmethod
    def _env_names(cls, env: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        return env if _stored(info) else checked_env(env)


STORED = {"stored": True}  # validation context of a document read back from the state store


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def checked_env(env: dict[str, str] | None) -> dict[str, str] | None:
    """`env`, if every name and value can be put in a process's environment (pydantic names the field)."""
    if env is not None and (problem := env_problem(env)) is not None:
        raise ValueError(problem)
    return env


def deploy_launch_problem(deploy: SingularityDeploy) -> str | None:
    """Why no task of a deploy loaded from the state store can be built, naming the field: a check made
    when a deploy is created now (skipped for STORED) that this one, saved before it, fails. Or None."""
    try:
        check_deploy(deploy.wire())
    except PayloadError as exc:
        return str(exc)
    if deploy.env is not None and (problem := env_problem(deploy.env)) is not None:
        return f"env: {problem}"
    for instance, env in (deploy.taskEnv or {}).items():
        if (problem := env_problem(env)) is not None:
            return f"taskEnv: instance {instance}: {problem}"
    return None


class SingularityDeploy(WireModel):
    requestId: str = Field(min_length=1, max_length=100, pattern=REQUEST_ID_PATTERN)
    id: str = Field(min_length=1, max_length=50, pattern=DEPLOY_ID_PATTERN)
    version: str | None = None
    metadata: dict[str, str] | None = None
    command: str | None = Field(None, min_length=1)
    arguments: list[str] | None = None
    shell: bool | None = None
    user: str | None = None
    env: dict[str, str] | None = None
    taskEnv: dict[int, dict[str, str]] | None = None
    uris: list[ArtifactUri] | None = None
    resources: Resources | None = None
    labels: dict[str, str] | None = None
    containerInfo: dict[str, Any] | None = None
    customExecutorCmd: str | None = None
    executorData: dict[str, Any] | None = None
    healthcheck: HealthcheckOptions | None = None
    healthcheckMaxTotalTimeoutSeconds: int | None = Field(None, ge=0)
    deployHealthTimeoutSeconds: int | None = Field(None, ge=0)
    considerHealthyAfterRunningForSeconds: int | None = Field(None, ge=0)
    skipHealthchecksOnDeploy: bool | None = None
    serviceBasePath: str | None = None
    loadBalancerGroups: list[str] | None = None
    loadBalancerPortIndex: int | None = Field(None, ge=0)
    loadBalancerServiceIdOverride: str | None = Field(None, min_length=1, max_length=100, pattern=REQUEST_ID_PATTERN)
    loadBalancerOptions: dict[str, Any] | None = None
    loadBalancerDomains: list[str] | None = None
    loadBalancerAdditionalRoutes: list[str] | None = None
    loadBalancerTemplate: str | None = None
    loadBalancerUpstreamGroup: str | None = None
    deployInstanceCountPerStep: int | None = Field(None, ge=1)
    deployStepWaitTimeMs: int | None = Field(None, ge=0)
    autoAdvanceDeploySteps: bool | None = None
    maxTaskRetries: int | None = Field(None, ge=0)
    canaryDeploySettings: dict[str, Any] | None = None
    runImmediately: RunNowSettings | None = None
    timestamp: int | None = None

    # The checks below came after deploys were first saved: a deploy loaded from the state store
    # (validated with STORED) is taken as it was saved, so that a backend can still start on older state.

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        return env if _stored(info) else checked_env(env)

    @field_validator("taskEnv")
    @classmethod
    def _task_env_names(cls, task_env: dict[int, dict[str, str]] | None,
                        info: ValidationInfo) -> dict[int, dict[str, str]] | None:
        for instance, env in ({} if _stored(info) else task_env or {}).items():
            if instance < 1:
                raise ValueError(f"{instance}: instance numbers start at 1")
            if (problem := env_problem(env)) is not None:
                raise ValueError(f"instance {instance}: {problem}")
        return task_env

    @model_validator(mode="after")
    def _runnable(self, info: ValidationInfo) -> SingularityDeploy:
        if not _stored(info):
            try:
                check_deploy(self.wire())
            except PayloadError as exc:
                raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _has_something_to_run(self) -> SingularityDeploy:
        if not self.command and not self.containerInfo and not (self.executorData and self.customExecutorCmd):
            raise ValueError("command: a deploy needs a command (or containerInfo, or executorData with "
                             "customExecutorCmd)")
        if self.containerInfo:
            raise ValueError("containerInfo: containers are not supported by this cluster yet")
        hc = self.healthcheck
        if hc is not None and hc.uri is not None and hc.portNumber is None:
            ports = self.resources.numPorts if self.resources else 0
            index = hc.portIndex or 0
            if index >= ports:
                raise ValueError(f"healthcheck.portIndex: {index} needs at least {index + 1} port(s) but "
                                 f"resources.numPorts is {ports}")
        canary = self.canaryDeploySettings or {}
        if canary.get("enableCanaryDeploy"):
            mode = canary.get("acceptanceMode", "NONE")
            if mode not in ("NONE", "TIMED", "CHECKS"):
                raise ValueError(f"canaryDeploySettings.acceptanceMode: must be NONE, TIMED or CHECKS, not {mode}")
            if mode == "CHECKS":
                raise ValueError("canaryDeploySettings.acceptanceMode: CHECKS needs deploy acceptance hooks, "
                                 "which Sing does not have; use TIMED or NONE")
            for key in ("instanceGroupSize", "canaryCycleCount"):
                value = canary.get(key, 1)
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f"canaryDeploySettings.{key}: must be a whole number of at least 1")
            for key in ("waitMillisBetweenGroups", "allowedTasksFailuresPerGroup"):
                value = canary.get(key, 0)
                if not isinstance(value, int) or value < 0:
                    raise ValueError(f"canaryDeploySettings.{key}: must be a whole number, 0 or more")
        return self

    @property
    def consider_healthy_after_s(self) -> int:
        return 5 if self.considerHealthyAfterRunningForSeconds is None else self.considerHealthyAfterRunningForSeconds

    @property
    def uses_shell(self) -> bool:
        # Singularity: shell defaults to false when arguments are given, true otherwise.
        return self.shell if self.shell is not None else not self.arguments


class DeployRequest(WireModel):
    deploy: SingularityDeploy
    message: str | None = None
    user: str | None = None
    updatedRequest: SingularityRequest | None = None
    unpauseOnSuccessfulDeploy: bool | None = None
