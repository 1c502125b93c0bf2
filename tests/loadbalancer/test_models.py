from __future__ import annotations

from sing_backend.loadbalancer import (
    BaragonRequest,
    BaragonResponse,
    LoadBalancerRequestType,
    delete_lb_request_id,
    deploy_lb_request_id,
    lb_request_id,
)


def test_request_round_trips_with_camel_case_and_omits_absent_fields() -> None:
    request = BaragonRequest.model_validate(
        {
            "loadBalancerRequestId": "web-v2-DEPLOY-1",
            "loadBalancerService": {
                "serviceId": "web",
                "owners": ["o@example.com"],
                "serviceBasePath": "/web",
                "additionalRoutes": ["/web-legacy"],
                "loadBalancerGroups": ["default"],
                "edgeCacheDomains": [],  # newer Baragon fields are ignored
            },
            "addUpstreams": [{"upstream": "10.0.0.1:31000", "requestId": "web", "rackId": "r1"}],
            "removeUpstreams": [],
            "action": "UPDATE",
        }
    )
    wire = request.wire()
    assert wire["loadBalancerService"]["additionalPaths"] == ["/web-legacy"]
    assert wire["addUpstreams"] == [{"upstream": "10.0.0.1:31000", "requestId": "web", "rackId": "r1"}]
    assert "templateName" not in wire["loadBalancerService"] and "options" not in wire["loadBalancerService"]
    assert wire["action"] == "UPDATE"


def test_response_parses_baragon_json() -> None:
    response = BaragonResponse.model_validate(
        {"loadBalancerRequestId": "x", "loadBalancerState": "INVALID_REQUEST_NOOP", "message": None}
    )
    assert response.wire() == {"loadBalancerRequestId": "x", "loadBalancerState": "INVALID_REQUEST_NOOP"}


def test_request_ids_follow_singularity() -> None:
    task_id = "web-v2-1668775261234-1-host1-rack1"
    assert lb_request_id(task_id, LoadBalancerRequestType.ADD) == f"{task_id}-ADD-1"
    assert lb_request_id(task_id, LoadBalancerRequestType.REMOVE, 3) == f"{task_id}-REMOVE-3"
    assert deploy_lb_request_id("web", "v2") == "web-v2-DEPLOY-1"
    assert delete_lb_request_id("web", 1700000000000, 2) == "web-1700000000000-DELETE-2"
