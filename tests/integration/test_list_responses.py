"""Large lists as a polling client gets them: gzipped, the same bytes while their content is the same (even
across state changes elsewhere), and a 304 for the ETag of an unchanged list."""

from __future__ import annotations

import gzip
import math
import time

import httpx
import orjson

from sing_backend.local_backend import Backend, wait_for


def _raw(client: httpx.Client, path: str, **headers: str) -> httpx.Response:
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip", **headers}) as resp:
        resp._content = b"".join(resp.iter_raw())  # the bytes as sent, still compressed
    return resp


def test_an_unchanged_list_is_the_same_bytes_and_a_304_for_its_etag(backend: Backend):
    for i in range(30):  # enough for a body worth compressing
        backend.post("/api/requests", {"id": f"etag-{i:02d}", "requestType": "ON_DEMAND",
                                       "owners": ["team@example.com"]})
    with httpx.Client(base_url=backend.url + "/api", timeout=10) as client:
        first = _raw(client, "/requests")
        assert first.status_code == 200 and first.headers["content-encoding"] == "gzip"
        etag = first.headers["etag"]
        assert etag.startswith('W/"')
        ids = {p["request"]["id"] for p in orjson.loads(gzip.decompress(first.content))}
        assert {f"etag-{i:02d}" for i in range(30)} <= ids

        # A state change that leaves the requests as they were: the list is built again, to the same bytes,
        # in a later second too (gzip stamps its output with the time unless told not to).
        time.sleep(math.floor(time.time()) + 1 - time.time())
        agent = backend.get("/api/agents")[0]["id"]
        backend.post(f"/api/agents/agent/{agent}/freeze", {})
        backend.post(f"/api/agents/agent/{agent}/activate", {})
        again = _raw(client, "/requests")
        assert again.content == first.content and again.headers["etag"] == etag

        unchanged = _raw(client, "/requests", **{"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
        # Without gzip, the same tag (a weak one, for the content), and the same answer.
        plain = client.get("/requests", headers={"Accept-Encoding": "identity", "If-None-Match": etag})
        assert plain.status_code == 304

        backend.post("/api/requests/request/etag-00/pause", {})
        changed = _raw(client, "/requests", **{"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        states = {p["request"]["id"]: p["state"] for p in orjson.loads(gzip.decompress(changed.content))}
        assert states["etag-00"] == "PAUSED"


def test_active_task_states_are_compressed_and_cached(backend: Backend):
    backend.create({"id": "states", "requestType": "WORKER", "instances": 20},
                   {"id": "v1", "command": "sleep 1000", "resources": {"cpus": 0.01, "memoryMb": 8}})
    wait_for(lambda: sum(t["taskState"] == "TASK_RUNNING" for t in backend.get("/api/tasks/active/states")
                         if t["taskId"]["requestId"] == "states") == 20, what="20 running tasks")
    with httpx.Client(base_url=backend.url + "/api", timeout=10) as client:
        first = _raw(client, "/tasks/active/states")
        assert first.headers["content-encoding"] == "gzip"
        assert sum(s["taskId"]["requestId"] == "states" for s in orjson.loads(gzip.decompress(first.content))) == 20
        assert _raw(client, "/tasks/active/states", **{"If-None-Match": first.headers["etag"]}).status_code == 304
