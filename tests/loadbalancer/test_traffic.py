"""Traffic through a real nginx while the Baragon-compatible API changes its upstreams."""

from __future__ import annotations

import asyncio
import time

import httpx

from sing_backend.loadbalancer import BaragonClient, NginxConfigurator

from .helpers import apply, fetch_names, lb_request, plain_http


async def test_added_upstreams_share_the_traffic(nginx: NginxConfigurator, client: BaragonClient, upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    result = await apply(client, lb_request("web-t1-ADD-1", add=[a.address, b.address]))
    assert result["loadBalancerState"] == "SUCCESS", result

    names = await fetch_names(f"{nginx.base_url}/web/anything", 10)
    assert set(names) == {"a", "b"}


async def test_swapping_upstreams_under_load_fails_no_request(
    nginx: NginxConfigurator, client: BaragonClient, upstreams
) -> None:
    old = [await upstreams("old-1"), await upstreams("old-2")]
    new = [await upstreams("new-1"), await upstreams("new-2")]
    assert (await apply(client, lb_request("web-v1-DEPLOY-1", add=[u.address for u in old])))[
        "loadBalancerState"
    ] == "SUCCESS"

    results: list[tuple[int | None, str]] = []
    stop = asyncio.Event()

    async def hammer() -> None:
        async with plain_http() as http:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 5000:
                try:
                    response = await http.get(f"{nginx.base_url}/web/")
                    results.append((response.status_code, response.text))
                except httpx.HTTPError as exc:
                    results.append((None, repr(exc)))

    async def wait_for(count: int) -> None:
        deadline = time.monotonic() + 15
        while len(results) < count:
            assert time.monotonic() < deadline, f"only {len(results)} requests went through"
            await asyncio.sleep(0.01)

    loops = [asyncio.create_task(hammer()) for _ in range(3)]
    try:
        await wait_for(30)
        # One request adds the new tasks and removes the old ones, as a deploy does.
        swap = lb_request("web-v2-DEPLOY-1", add=[u.address for u in new], remove=[u.address for u in old])
        assert (await apply(client, swap))["loadBalancerState"] == "SUCCESS"
        # Singularity kills the old tasks as soon as the load balancer reports SUCCESS.
        for upstream in old:
            await upstream.stop()
        after_kill = len(results)
        await wait_for(after_kill + 60)
    finally:
        stop.set()
        await asyncio.gather(*loops)

    failures = [r for r in results if r[0] != 200]
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    names = [text for _, text in results]
    assert {"old-1", "old-2"} <= set(names[:30])
    assert set(names[after_kill:]) == {"new-1", "new-2"}


async def test_a_killed_upstream_still_in_rotation_is_skipped(
    nginx: NginxConfigurator, client: BaragonClient, upstreams
) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address, b.address]))
    await a.stop()  # crashed, and nobody told the load balancer yet

    assert set(await fetch_names(f"{nginx.base_url}/web/", 10)) == {"b"}


async def test_a_service_without_upstreams_answers_503(
    nginx: NginxConfigurator, client: BaragonClient, upstreams
) -> None:
    a = await upstreams("a")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    result = await apply(client, lb_request("web-t1-REMOVE-1", remove=[a.address]))
    assert result["loadBalancerState"] == "SUCCESS", result

    async with plain_http() as http:
        assert (await http.get(f"{nginx.base_url}/web/")).status_code == 503
    assert not (nginx.prefix / "upstreams" / "web.conf").exists()


async def test_delete_action_removes_the_service(nginx: NginxConfigurator, client: BaragonClient, upstreams) -> None:
    a = await upstreams("a")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    result = await apply(client, lb_request("web-1700000000000-DELETE-1", action="DELETE"))
    assert result["loadBalancerState"] == "SUCCESS", result

    async with plain_http() as http:
        assert (await http.get(f"{nginx.base_url}/web/")).status_code == 404
    assert not list((nginx.prefix / "locations").glob("*.conf"))


async def test_services_are_routed_by_base_path(nginx: NginxConfigurator, client: BaragonClient, upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    await apply(client, lb_request("web-t1-ADD-1", add=[a.address]))
    await apply(client, lb_request("api-t1-ADD-1", service_id="api", base_path="/api", add=[b.address]))

    assert set(await fetch_names(f"{nginx.base_url}/web/x", 3)) == {"a"}
    assert set(await fetch_names(f"{nginx.base_url}/api/x", 3)) == {"b"}
