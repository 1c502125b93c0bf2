"""Baragon's request API semantics, served over real HTTP and applied to a real nginx."""

from __future__ import annotations

import httpx

from sing_backend.loadbalancer import BaragonClient, BaragonRequest, NginxConfigurator

from .conftest import BaragonServer
from .helpers import apply, fetch_names, lb_request, wait_done


async def test_config_nginx_rejects_fails_and_keeps_serving_the_old_one(
    nginx: NginxConfigurator, client: BaragonClient, upstreams
) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    location = (nginx.prefix / "locations" / "web.conf").read_text()

    result = await apply(client, lb_request("web-t2-ADD-1", base_path="/web{broken", add=[b.address]))

    assert result["loadBalancerState"] == "FAILED"
    assert "web.conf" in result["message"] and "test failed" in result["message"]
    assert (nginx.prefix / "locations" / "web.conf").read_text() == location
    assert set(await fetch_names(f"{nginx.base_url}/web/", 4)) == {"a"}
    # The failed request left nothing behind: the next change applies on top of the old state.
    await apply(client, lb_request("web-t3-ADD-1", add=[b.address]))
    assert set(await fetch_names(f"{nginx.base_url}/web/", 6)) == {"a", "b"}


async def test_unresolvable_upstream_fails_with_nginx_message(client: BaragonClient) -> None:
    result = await apply(client, lb_request("web-t1-ADD-1", add=["no-such-host.invalid:80"]))
    assert result["loadBalancerState"] == "FAILED"
    assert "host not found" in result["message"]


async def test_unknown_ids_are_404(baragon: BaragonServer, client: BaragonClient) -> None:
    async with httpx.AsyncClient(base_url=baragon.api_url) as http:
        assert (await http.get("/request/nope-ADD-1")).status_code == 404
        deleted = await http.delete("/request/nope-ADD-1")
        assert deleted.status_code == 404
        assert deleted.json()["message"] == "Request nope-ADD-1 does not exist"

    assert await client.status("nope-ADD-1") is None
    canceled = await client.cancel("nope-ADD-1")
    assert canceled["loadBalancerState"] == "CANCELED"


async def test_reposting_an_id_returns_its_state_and_does_not_reapply(
    client: BaragonClient, baragon: BaragonServer, upstreams
) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    body = lb_request("web-t1-ADD-1", add=[a.address])
    first = await apply(client, body)
    assert first["loadBalancerState"] == "SUCCESS"

    assert await client.submit(body) == first
    changed = lb_request("web-t1-ADD-1", add=[b.address])
    async with httpx.AsyncClient(base_url=baragon.api_url) as http:
        refused = (await http.post("/request", json=changed)).json()
    assert refused["loadBalancerState"] == "FAILED"
    assert "is already enqueued with different parameters" in refused["message"]
    # The client, like Singularity's, answers with the state of the request that owns the id.
    assert await client.submit(changed) == first
    assert await client.status("web-t1-ADD-1") == first
    assert list(baragon.app.state.processor.services["web"].upstreams) == [a.address]


async def test_removing_unknown_upstreams_is_fine(nginx: NginxConfigurator, client: BaragonClient, upstreams) -> None:
    a = await upstreams("a")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    result = await apply(client, lb_request("web-t9-REMOVE-1", remove=["127.0.0.1:1"]))
    assert result["loadBalancerState"] == "SUCCESS"
    assert set(await fetch_names(f"{nginx.base_url}/web/", 2)) == {"a"}


async def test_queued_request_can_be_canceled(baragon: BaragonServer, client: BaragonClient, upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    processor = baragon.app.state.processor
    # Both are queued before the worker runs, so the second is still waiting when canceled.
    processor.submit(BaragonRequest.model_validate(lb_request("web-t1-ADD-1", add=[a.address])))
    processor.submit(BaragonRequest.model_validate(lb_request("web-t2-ADD-1", add=[b.address])))
    assert processor.cancel("web-t2-ADD-1").loadBalancerState == "CANCELED"

    assert (await wait_done(client, "web-t1-ADD-1"))["loadBalancerState"] == "SUCCESS"
    assert (await client.status("web-t2-ADD-1"))["loadBalancerState"] == "CANCELED"
    assert list(processor.services["web"].upstreams) == [a.address]
    # Canceling a finished request changes nothing.
    assert (await client.cancel("web-t1-ADD-1"))["loadBalancerState"] == "SUCCESS"


async def test_requests_apply_in_order(client: BaragonClient, baragon: BaragonServer, upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    ids = ["web-t1-ADD-1", "web-t2-ADD-1", "web-t1-REMOVE-1"]
    await client.submit(lb_request(ids[0], add=[a.address]))
    await client.submit(lb_request(ids[1], add=[b.address]))
    await client.submit(lb_request(ids[2], remove=[a.address]))
    for lb_id in ids:
        assert (await wait_done(client, lb_id))["loadBalancerState"] == "SUCCESS"
    assert list(baragon.app.state.processor.services["web"].upstreams) == [b.address]


async def test_base_path_owned_by_another_service_is_a_noop(client: BaragonClient, upstreams) -> None:
    a = await upstreams("a")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    result = await apply(client, lb_request("other-t1-ADD-1", service_id="other", add=[a.address]))
    assert result["loadBalancerState"] == "INVALID_REQUEST_NOOP"
    assert "already in use by service web" in result["message"]


async def test_malformed_request_is_rejected(baragon: BaragonServer) -> None:
    async with httpx.AsyncClient(base_url=baragon.api_url) as http:
        response = await http.post("/request", json={"loadBalancerRequestId": "has space"})
    assert response.status_code == 422


async def test_reload_action_revalidates_and_reloads(client: BaragonClient, upstreams) -> None:
    a = await upstreams("a")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    result = await apply(client, lb_request("web-reload-1", action="RELOAD"))
    assert result["loadBalancerState"] == "SUCCESS", result


async def test_requests_fail_while_nginx_is_down(nginx: NginxConfigurator, client: BaragonClient, upstreams) -> None:
    a = await upstreams("a")
    await nginx.stop()
    result = await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    assert result["loadBalancerState"] == "FAILED"
    assert "nginx is not running" in result["message"]
