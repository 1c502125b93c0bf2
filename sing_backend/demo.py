"""Sample requests for the demo, created through the REST API like any client would."""

from __future__ import annotations

import logging
import sys

import httpx

log = logging.getLogger(__name__)

PY = sys.executable

SAMPLES: list[tuple[dict, dict]] = [
    (
        {"id": "demo-web", "requestType": "SERVICE", "instances": 2, "owners": ["demo@example.com"],
         "rackSensitive": True},
        # Serves a page naming its task at /demo-web/, the path nginx routes to it.
        {"id": "v1", "command": ("mkdir -p demo-web && echo \"hello from $TASK_ID\" > demo-web/index.html && "
                                 f"exec {PY} -m http.server $PORT0 --bind 0.0.0.0"),
         "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1}, "env": {"GREETING": "hello"},
         "healthcheck": {"uri": "/", "startupIntervalSeconds": 1, "intervalSeconds": 2},
         "serviceBasePath": "/demo-web"},
    ),
    (
        {"id": "demo-worker", "requestType": "WORKER", "instances": 1},
        {"id": "v1", "command": "while true; do echo \"working on $TASK_ID at $(date +%T)\"; sleep 5; done",
         "resources": {"cpus": 0.1, "memoryMb": 32}},
    ),
    (
        {"id": "demo-job", "requestType": "ON_DEMAND", "instances": 3},
        {"id": "v1", "command": "echo \"job $TASK_ID running with args:\"", "shell": True,
         "resources": {"cpus": 0.1, "memoryMb": 32}},
    ),
    (
        {"id": "demo-cron", "requestType": "SCHEDULED", "quartzSchedule": "0 * * * * ?",
         "scheduleTimeZone": "UTC"},
        {"id": "v1", "command": "echo \"every minute: $(date -u +%T)\"", "resources": {"cpus": 0.05, "memoryMb": 16}},
    ),
]


def seed(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        for request, deploy in SAMPLES:
            if client.get(f"/api/requests/request/{request['id']}").status_code == 200:
                continue
            created = client.post("/api/requests", json={**request, "loadBalanced": True}) \
                if request["requestType"] == "SERVICE" else None
            if created is None or created.status_code == 400:  # no load balancer on this backend
                client.post("/api/requests", json=request).raise_for_status()
            deploy = {**deploy, "requestId": request["id"]}
            client.post("/api/deploys", json={"deploy": deploy, "message": "demo"}).raise_for_status()
            log.info("created sample request %s", request["id"])
