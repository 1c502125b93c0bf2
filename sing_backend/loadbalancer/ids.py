"""Load-balancer request ids as Singularity builds them: `{subject}-{ADD|REMOVE|DEPLOY|DELETE}-{attempt}`.

The subject is the task id for ADD/REMOVE (task ids already start with the request id),
`{requestId}-{deployId}` for DEPLOY and `{requestId}-{timestamp}` for DELETE. A retry after a
FAILED or CANCELED update bumps the attempt so Baragon treats it as a new request.
"""

from __future__ import annotations

from enum import StrEnum


class LoadBalancerRequestType(StrEnum):
    ADD = "ADD"
    REMOVE = "REMOVE"
    DEPLOY = "DEPLOY"
    DELETE = "DELETE"


def lb_request_id(subject: str, kind: LoadBalancerRequestType, attempt: int = 1) -> str:
    return f"{subject}-{kind}-{attempt}"


def deploy_lb_request_id(request_id: str, deploy_id: str, attempt: int = 1) -> str:
    return lb_request_id(f"{request_id}-{deploy_id}", LoadBalancerRequestType.DEPLOY, attempt)


def delete_lb_request_id(request_id: str, timestamp_ms: int, attempt: int = 1) -> str:
    return lb_request_id(f"{request_id}-{timestamp_ms}", LoadBalancerRequestType.DELETE, attempt)
