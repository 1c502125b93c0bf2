"""SingularityRequest: what to keep running or when to run it."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator

from .common import REQUEST_ID_PATTERN, AgentPlacement, RequestType, ScheduleType, WireModel
from .schedule import validate_schedule, validate_time_zone


class SingularityRequest(WireModel):
    id: str = Field(min_length=1, max_length=100, pattern=REQUEST_ID_PATTERN)
    requestType: RequestType
    owners: list[str] | None = None
    instances: int | None = None
    maxScale: int | None = Field(None, ge=1)
    schedule: str | None = Field(None, min_length=1)
    quartzSchedule: str | None = Field(None, min_length=1)
    scheduleType: ScheduleType | None = None
    scheduleTimeZone: str | None = None
    numRetriesOnFailure: int | None = Field(None, ge=0)
    scheduledExpectedRuntimeMillis: int | None = Field(None, ge=0)
    waitAtLeastMillisAfterTaskFinishesForReschedule: int | None = Field(None, ge=0)
    rackSensitive: bool | None = None
    rackAffinity: list[str] | None = None
    # Newer clients send agentPlacement, old ones slavePlacement; an error names the one sent.
    agentPlacement: AgentPlacement | None = Field(None, validation_alias=AliasChoices("agentPlacement",
                                                                                     "slavePlacement"))
    requiredAgentAttributes: dict[str, str] | None = None
    allowedAgentAttributes: dict[str, str] | None = None
    agentAttributeMinimums: dict[str, dict[str, int]] | None = None
    maxTasksPerOffer: int | None = Field(None, ge=1)
    requiredRole: str | None = None
    loadBalanced: bool | None = None
    killOldNonLongRunningTasksAfterMillis: int | None = Field(None, ge=0)
    taskExecutionTimeLimitMillis: int | None = Field(None, ge=1)
    group: str | None = None
    readOnlyGroups: list[str] | None = None
    readWriteGroups: list[str] | None = None
    bounceAfterScale: bool | None = None
    skipHealthchecks: bool | None = None
    allowBounceToSameHost: bool | None = None
    taskPriorityLevel: float | None = Field(None, ge=0, le=1)
    taskLogErrorRegex: str | None = None
    hideEvenNumberAcrossRacksHint: bool | None = None

    @model_validator(mode="after")
    def _type_rules(self) -> SingularityRequest:
        kind = RequestType(self.requestType)
        if self.instances is not None:
            if kind in (RequestType.SCHEDULED, RequestType.RUN_ONCE) and self.instances != 1:
                raise ValueError(f"instances: a {kind.value} request runs exactly 1 instance")
            if self.instances < 1:
                raise ValueError("instances: must be at least 1")
        if kind == RequestType.SCHEDULED:
            if not (self.schedule or self.quartzSchedule):
                raise ValueError("schedule: a SCHEDULED request needs a schedule")
            if self.quartzSchedule:
                validate_schedule(self.quartzSchedule, "QUARTZ", "quartzSchedule")
            else:
                validate_schedule(self.schedule or "", self.scheduleType, "schedule")
            if self.scheduleTimeZone:
                validate_time_zone(self.scheduleTimeZone)
            if self.loadBalanced:
                raise ValueError("loadBalanced: only SERVICE requests can be load balanced")
            if self.rackSensitive:
                raise ValueError("rackSensitive: a SCHEDULED request cannot be rack sensitive")
        elif self.schedule or self.quartzSchedule:
            raise ValueError(f"schedule: only SCHEDULED requests have a schedule, not {kind.value}")
        if kind.long_running:
            for name in ("numRetriesOnFailure", "killOldNonLongRunningTasksAfterMillis",
                         "taskExecutionTimeLimitMillis"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: not allowed on a long-running {kind.value} request")
        if self.loadBalanced and kind != RequestType.SERVICE:
            raise ValueError("loadBalanced: only SERVICE requests can be load balanced")
        if self.maxScale is not None and self.instances is not None and self.instances > self.maxScale:
            raise ValueError(f"instances: {self.instances} is above maxScale {self.maxScale}")
        return self

    @property
    def type(self) -> RequestType:
        return RequestType(self.requestType)

    @property
    def instance_count(self) -> int:
        return self.instances if self.instances is not None else 1
