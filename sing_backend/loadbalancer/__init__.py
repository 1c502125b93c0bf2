"""Load-balancer integration: a client for Baragon's request API and a built-in Baragon-compatible
service that drives a private nginx."""

from __future__ import annotations

from .client import BaragonClient, LoadBalancerError
from .ids import LoadBalancerRequestType, delete_lb_request_id, deploy_lb_request_id, lb_request_id
from .models import BaragonRequest, BaragonRequestState, BaragonResponse, BaragonService, RequestAction, UpstreamInfo
from .nginx_adapter import NginxConfigurator, NginxError
from .server import create_baragon_app

__all__ = [
    "BaragonClient",
    "BaragonRequest",
    "BaragonRequestState",
    "BaragonResponse",
    "BaragonService",
    "LoadBalancerError",
    "LoadBalancerRequestType",
    "NginxConfigurator",
    "NginxError",
    "RequestAction",
    "UpstreamInfo",
    "create_baragon_app",
    "delete_lb_request_id",
    "deploy_lb_request_id",
    "lb_request_id",
]
