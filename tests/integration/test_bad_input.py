"""Bad input gets a 4xx naming the problem, and changes nothing."""

from __future__ import annotations

import pytest

from sing_backend.local_backend import Backend, wait_for


@pytest.fixture(scope="module", autouse=True)
def _seed(backend: Backend) -> None:
    backend.create({"id": "svc", "requestType": "SERVICE", "instances": 1},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.1, "memoryMb": 32},
                    "considerHealthyAfterRunningForSeconds": 0})
    backend.create({"id": "od", "requestType": "ON_DEMAND"},
                   {"id": "v1", "command": "true", "resources": {"cpus": 0.1, "memoryMb": 32}})
    backend.create({"id": "cron", "requestType": "SCHEDULED", "schedule": "*/5 * * * *"})
    wait_for(lambda: backend.get("/api/requests/request/svc")["requestDeployState"].get("activeDeploy"),
             what="svc deployed")


def _error(backend: Backend, method: str, path: str, status: int, fragment: str, **kw) -> None:
    r = backend.client.request(method, path, **kw)
    assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["code"] == status
    assert fragment in body["message"], body["message"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"id": "has space", "requestType": "SERVICE"}, "id"),
    ({"id": "x", "requestType": "DAEMON"}, "requestType"),
    ({"id": "x", "requestType": "SERVICE", "instances": 0}, "instances"),
    ({"id": "x", "requestType": "SERVICE", "instances": -2}, "instances"),
    ({"id": "x", "requestType": "SERVICE", "instances": "two"}, "instances"),
    ({"id": "x", "requestType": "SERVICE", "instances": 1000}, "instances"),
    ({"id": "x", "requestType": "SCHEDULED"}, "schedule"),
    ({"id": "x", "requestType": "WORKER", "loadBalanced": True}, "loadBalanced"),
    ({"requestType": "SERVICE"}, "id"),
    ({"id": "x", "requestType": "SERVICE", "agentPlacement": "NOWHERE"}, "agentPlacement: Input should be"),
    ({"id": "x", "requestType": "SERVICE", "slavePlacement": "NOWHERE"}, "slavePlacement: Input should be"),
    ([1, 2], "body"),
])
def test_invalid_request_bodies(backend: Backend, body, fragment):
    before = backend.get("/api/requests")
    _error(backend, "POST", "/api/requests", 400, fragment, json=body)
    assert backend.get("/api/requests") == before


def test_malformed_empty_and_huge_bodies(backend: Backend):
    _error(backend, "POST", "/api/requests", 400, "malformed JSON", content=b"{not json",
           headers={"content-type": "application/json"})
    _error(backend, "POST", "/api/requests", 400, "body", content=b"", headers={"content-type": "application/json"})
    _error(backend, "POST", "/api/deploys", 413, "body", content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
           headers={"content-type": "application/json"})

    def chunked():  # no Content-Length: the limit is found while reading
        yield b"{"
        for _ in range(48):
            yield b" " * 65536
        yield b"}"

    _error(backend, "POST", "/api/deploys", 413, "body: larger than", content=chunked(),
           headers={"content-type": "application/json"})
    assert backend.get("/api/requests/request/svc")["request"]["id"] == "svc"  # and it keeps answering


@pytest.mark.parametrize(("deploy", "status", "fragment"), [
    ({"requestId": "svc", "id": "bad-id", "command": "true"}, 400, "id"),
    ({"requestId": "svc", "id": "v9"}, 400, "command"),
    ({"requestId": "nope", "id": "v9", "command": "true"}, 404, "nope"),
    ({"requestId": "svc", "id": "v1", "command": "true"}, 400, "already exists"),
    ({"requestId": "svc", "id": "v9", "command": "true", "resources": {"memoryMb": 10_000_000}}, 400, "memoryMb"),
    ({"requestId": "svc", "id": "v9", "command": "true", "resources": {"cpus": -1}}, 400, "cpus"),
    # What the executor could never fetch, place or take: refused now, not failed at every launch.
    ({"requestId": "svc", "id": "v9", "command": "true", "uris": [{"uri": "ftp://example.invalid/x.tar"}]},
     400, "uris: artifact 'x.tar': unsupported URL scheme 'ftp'"),
    ({"requestId": "svc", "id": "v9", "command": "true", "uris": [{"uri": "http://h/a", "outputFile": "../evil"}]},
     400, "uris: artifact '../evil': filename '../evil' must be a plain file name"),
    ({"requestId": "svc", "id": "v9", "command": "true",
      "executorData": {"embeddedArtifacts": [{"name": "a", "filename": "a", "content": "!!notbase64"}]}},
     400, "executorData.embeddedArtifacts: embedded artifact 'a': content is not base64"),
    ({"requestId": "svc", "id": "v9", "command": "true",
      "executorData": {"externalArtifacts": [{"url": "http://h/a", "filename": "a", "md5sum": "xyz"}]}},
     400, "executorData.externalArtifacts: artifact 'a': md5 'xyz' is not 32 hex digits"),
    ({"requestId": "svc", "id": "v9", "command": "true", "executorData": {"embeddedArtifacts": 5}},
     400, "executorData.embeddedArtifacts: embeddedArtifacts must be a list of objects"),
    ({"requestId": "svc", "id": "v9", "command": "true", "executorData": {"s3Artifacts": ["x"]}},
     400, "executorData.s3Artifacts: s3Artifacts must be a list of objects"),
    ({"requestId": "svc", "id": "v9", "command": "true", "executorData": {"logrotateFrequency": "SOMETIMES"}},
     400, "executorData.logrotateFrequency"),
    ({"requestId": "svc", "id": "v9", "command": "true", "env": {"A=B": "x"}}, 400,
     "env: 'A=B' is not an environment variable name"),
    ({"requestId": "svc", "id": "v9", "command": "true", "env": {"": "x"}}, 400,
     "env: '' is not an environment variable name"),
    ({"requestId": "svc", "id": "v9", "command": "true", "taskEnv": {"1": {"A=": "x"}}}, 400,
     "taskEnv: instance 1: 'A=' is not"),
])
def test_invalid_deploys(backend: Backend, deploy, status, fragment):
    _error(backend, "POST", "/api/deploys", status, fragment, json={"deploy": deploy})
    assert "pendingDeploy" not in backend.get("/api/requests/request/svc")["requestDeployState"]


def test_actions_that_do_not_fit(backend: Backend):
    _error(backend, "POST", "/api/requests/request/svc/run", 400, "ON_DEMAND", json={})
    _error(backend, "PUT", "/api/requests/request/cron/scale", 400, "instances", json={"instances": 2})
    _error(backend, "PUT", "/api/requests/request/svc/scale", 400, "instances", json={"instances": 0})
    _error(backend, "PUT", "/api/requests/request/svc/scale", 400, "instances", json={})
    _error(backend, "POST", "/api/requests/request/od/bounce", 400, "requestType", json={})
    _error(backend, "POST", "/api/requests/request/svc/unpause", 409, "not paused", json={})
    _error(backend, "POST", "/api/requests/request/missing/pause", 404, "missing", json={})
    _error(backend, "POST", "/api/requests/request/od/run", 400, "runAt", json={"runAt": 1})
    _error(backend, "POST", "/api/requests/request/od/run", 400, "commandLineArgs", json={"commandLineArgs": "x"})
    _error(backend, "POST", "/api/requests/request/od/run", 400, "envOverrides: 'A=B' is not an environment variable",
           json={"envOverrides": {"A=B": "x"}})
    _error(backend, "DELETE", "/api/tasks/task/not-a-task", 404, "not-a-task")
    _error(backend, "DELETE", "/api/deploys/deploy/v7/request/svc", 404, "v7")
    _error(backend, "POST", "/api/requests", 400, "requestType",
           json={"id": "svc", "requestType": "WORKER"})
    _error(backend, "GET", "/api/history/request/svc/tasks?count=0", 400, "count")
    _error(backend, "GET", "/api/agents?state=SLEEPY", 400, "state")
    assert backend.get("/api/requests/request/svc")["request"]["instances"] == 1
    assert backend.get("/api/requests/request/svc")["request"]["requestType"] == "SERVICE"
    assert backend.get("/api/tasks/scheduled/request/od") == []  # no run was queued by the refused ones


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_json_sent_as_another_content_type_is_refused_naming_it(backend: Backend, content_type: str):
    # `curl -d '{...}'` without -H says it sends a form: the body is never read as JSON.
    _error(backend, "POST", "/api/requests", 415,
           f"Content-Type: the body must be JSON, sent with 'Content-Type: application/json' "
           f"(this request says '{content_type}')",
           content=b'{"id": "as-a-form", "requestType": "ON_DEMAND"}', headers={"content-type": content_type})
    assert backend.client.get("/api/requests/request/as-a-form").status_code == 404


def test_request_lists_take_several_types_and_a_limit(backend: Backend):
    ids = {t: {p["request"]["id"] for p in backend.get("/api/requests", params={"requestType": t})}
           for t in ("SERVICE", "ON_DEMAND", "SCHEDULED")}
    assert {"svc", "od", "cron"} <= ids["SERVICE"] | ids["ON_DEMAND"] | ids["SCHEDULED"]
    both = backend.get("/api/requests", params=[("requestType", "SERVICE"), ("requestType", "ON_DEMAND")])
    assert {p["request"]["id"] for p in both} == ids["SERVICE"] | ids["ON_DEMAND"]
    every = backend.get("/api/requests")
    assert backend.get("/api/requests", params={"limit": 2}) == every[:2]
    assert backend.get("/api/requests/active", params={"limit": 0}) == []
    _error(backend, "GET", "/api/requests?limit=-1", 400, "limit")
    _error(backend, "GET", "/api/requests?limit=abc", 400, "limit")
    _error(backend, "GET", "/api/requests?requestType=DAEMON", 400, "requestType")


def test_a_deploy_id_is_used_once_per_request(backend: Backend):
    """Even after the request is deleted and created again: its deploy history is kept, and a new deploy
    of the same id would overwrite that deploy's record."""
    res = {"cpus": 0.05, "memoryMb": 16}
    backend.create({"id": "reused", "requestType": "ON_DEMAND"}, {"id": "v1", "command": "true", "resources": res})
    wait_for(lambda: backend.get("/api/requests/request/reused")["requestDeployState"].get("activeDeploy"),
             what="v1 deployed")
    backend.post("/api/deploys", {"deploy": {"requestId": "reused", "id": "v2", "command": "true", "resources": res}})
    wait_for(lambda: backend.get("/api/requests/request/reused")["requestDeployState"]["activeDeploy"]["deployId"]
             == "v2", what="v2 deployed")
    _error(backend, "POST", "/api/deploys", 400, "deploy.id: deploy v1 of request reused already exists",
           json={"deploy": {"requestId": "reused", "id": "v1", "command": "false", "resources": res}})
    used = "deploy.id: deploy v1 of request reused was already used (it is in the request's deploy history)"
    backend.delete("/api/requests/request/reused", {})
    wait_for(lambda: backend.client.get("/api/requests/request/reused").status_code == 404, what="the request gone")
    backend.post("/api/requests", {"id": "reused", "requestType": "ON_DEMAND"})
    _error(backend, "POST", "/api/deploys", 400, used,
           json={"deploy": {"requestId": "reused", "id": "v1", "command": "false", "resources": res}})
    assert backend.get("/api/history/request/reused/deploy/v1")["deploy"]["command"] == "true"
    backend.post("/api/deploys", {"deploy": {"requestId": "reused", "id": "v3", "command": "true", "resources": res}})


def test_unknown_paths_are_json_404(backend: Backend):
    _error(backend, "GET", "/api/nothing-here", 404, "no such endpoint")


def test_a_write_id_header_is_harmless_in_local_mode(backend: Backend):
    """X-Sing-Write-Id matters where writes are queued for a leader (mesos mode); a local backend, the
    leader of itself with nothing queued, applies the write as sent."""
    r = backend.client.put("/api/requests/request/svc/scale", json={"instances": 1},
                           headers={"X-Sing-Write-Id": "local_1"})
    assert r.status_code == 200 and r.json()["request"]["instances"] == 1, r.text
    assert backend.client.get("/api/queued-writes/local_1").status_code == 404


def test_head_answers_as_get_without_the_body(backend: Backend):
    # Singularity answers HEAD on every GET resource; scripts use it to check that something exists.
    got = backend.client.get("/api/requests/request/svc", headers={"accept-encoding": "identity"})
    head = backend.client.head("/api/requests/request/svc", headers={"accept-encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == "application/json"
    assert backend.client.head("/api/requests/request/nope").status_code == 404


@pytest.mark.parametrize("status", ["finished", "TASK_DONE"])
def test_a_history_filter_on_an_unknown_status_is_refused(backend: Backend, status: str):
    # Matching nothing, it would look like an empty history.
    for path in ("/api/history/tasks", "/api/history/request/svc/tasks"):
        _error(backend, "GET", path, 400, "lastTaskStatus: must be one of", params={"lastTaskStatus": status})
