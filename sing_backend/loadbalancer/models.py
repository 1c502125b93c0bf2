"""Baragon's request API objects (BaragonRequest, BaragonService, UpstreamInfo, BaragonResponse).

Field names are Baragon's camelCase JSON names; absent optional fields are left out when
serialised and unknown fields are ignored, as Baragon's Jackson mapping does.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, Field

from ..models.common import WireModel

# Baragon's own constraints: ids are used as ZooKeeper node names, hence no '/', '|' or whitespace.
ID_PATTERN = r"^[^\s/|]+$"
UPSTREAM_REQUEST_ID_PATTERN = r"^$|^[^\s/|]+$"
LABEL_PATTERN = r"^$|^[^\s|]+$"
# Baragon's answer to a re-used request id with different content (RequestAlreadyEnqueuedException);
# Singularity's client looks for this phrase and fetches the existing request's state instead.
ALREADY_ENQUEUED = "is already enqueued with different parameters"


class BaragonModel(WireModel):
    """Baragon's JSON, shaped like Singularity's: camelCase fields, absent ones left out."""


class RequestAction(StrEnum):
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    RELOAD = "RELOAD"
    REVERT = "REVERT"
    GET_RENDERED_CONFIG = "GET_RENDERED_CONFIG"
    PURGE_CACHE = "PURGE_CACHE"


class BaragonRequestState(StrEnum):
    UNKNOWN = "UNKNOWN"
    FAILED = "FAILED"
    WAITING = "WAITING"
    SUCCESS = "SUCCESS"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    INVALID_REQUEST_NOOP = "INVALID_REQUEST_NOOP"

    @property
    def in_progress(self) -> bool:
        return self in (BaragonRequestState.WAITING, BaragonRequestState.CANCELING)


class UpstreamInfo(BaragonModel):
    upstream: str = Field(min_length=1)
    requestId: str | None = Field(None, max_length=250, pattern=UPSTREAM_REQUEST_ID_PATTERN)
    rackId: str | None = Field(None, max_length=100, pattern=LABEL_PATTERN)
    group: str | None = Field(None, max_length=100, pattern=LABEL_PATTERN)
    resolvedUpstream: str | None = None


class BaragonService(BaragonModel):
    serviceId: str = Field(pattern=ID_PATTERN)
    owners: list[str] = Field(default_factory=list)
    serviceBasePath: str
    # Baragon calls these additionalPaths; Singularity's deploy field is loadBalancerAdditionalRoutes.
    additionalPaths: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("additionalPaths", "additionalRoutes")
    )
    loadBalancerGroups: list[str] = Field(default_factory=list)
    options: dict[str, Any] | None = None
    templateName: str | None = None
    domains: list[str] = Field(default_factory=list)

    @property
    def all_paths(self) -> list[str]:
        return [self.serviceBasePath, *self.additionalPaths]


class BaragonRequest(BaragonModel):
    loadBalancerRequestId: str = Field(pattern=ID_PATTERN)
    loadBalancerService: BaragonService
    addUpstreams: list[UpstreamInfo] = Field(default_factory=list)
    removeUpstreams: list[UpstreamInfo] = Field(default_factory=list)
    # Sets the upstream list outright; Baragon rejects it combined with add/remove.
    replaceUpstreams: list[UpstreamInfo] = Field(default_factory=list)
    action: RequestAction | None = None

    @property
    def effective_action(self) -> RequestAction:
        return RequestAction(self.action or RequestAction.UPDATE)


class BaragonResponse(BaragonModel):
    loadBalancerRequestId: str
    loadBalancerState: BaragonRequestState
    message: str | None = None
    # Keyed by agent request type (APPLY, REVERT, CANCEL); kept loose because only real Baragon fills it.
    agentResponses: dict[str, list[dict[str, Any]]] | None = None
