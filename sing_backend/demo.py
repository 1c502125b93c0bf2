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
        {"id": "v1", "command": f"{PY} -m http.server $PORT0 --bind 0.0.0.0",
         "resources": {"cpus": 0.1, "memoryMb": 64, "numPorts": 1}, "env": {"GREETING": "hello"},
         "considerHealthyAfterRunningForSeconds": 2},
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
]


def seed(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        for request, deploy in SAMPLES:
            if client.get(f"/api/requests/request/{request['id']}").status_code == 200:
                continue
            client.post("/api/requests", json=request).raise_for_status()
            deploy = {**deploy, "requestId": request["id"]}
            client.post("/api/deploys", json={"deploy": deploy, "message": "demo"}).raise_for_status()
            log.info("created sample request %s", request["id"])
