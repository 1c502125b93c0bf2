"""Several backends (a leader and its standbys): `--url a,b` and the TOML list, refused entries, and the
dashboard moving to the next backend when the one in use stops answering (not when it answers an error)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from textual.pilot import Pilot

from sing_backend.local_backend import Backend, free_port
from sing_tui.__main__ import main
from sing_tui.app import SingApp
from sing_tui.client import ApiError, SingClient, Unreachable
from sing_tui.config import ConfigError, load_config
from sing_tui.widgets.resource_table import ResourceTable

from .conftest import screen_text, top_right, until

SIZE = (100, 24)  # the top bar names two backends


# ---- configuration
def test_several_backends_from_the_flag_the_environment_and_the_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(url="http://a:7099, http://b:7099/").urls == ("http://a:7099", "http://b:7099/")
    monkeypatch.setenv("SING_URL", "http://a:1,https://b:2")
    assert load_config().urls == ("http://a:1", "https://b:2")
    monkeypatch.delenv("SING_URL")
    path = tmp_path / "tui.toml"
    path.write_text('url = ["http://a:7099", "http://b:7099"]\n')
    assert load_config(path).urls == ("http://a:7099", "http://b:7099")
    path.write_text("url = [7099]\n")
    with pytest.raises(ConfigError, match="url: expected"):
        load_config(path)
    path.write_text('url = ["http://a:7099", "b:7099"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: url: 'b:7099' is not an http")):
        load_config(path)


@pytest.mark.parametrize(("url", "named"), [("http://a:7099,ftp://b:7099", "'ftp://b:7099'"),
                                            ("http://a:7099,", "''"), ("http://", "'http://'")])
def test_an_entry_that_is_not_an_http_url_is_refused_at_start(capsys: pytest.CaptureFixture[str], url: str,
                                                              named: str) -> None:
    assert main(["--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sing tui: --url: {named} is not an http:// or https:// URL")


# ---- the client
Handler = Callable[[httpx.Request], httpx.Response]


def client_of(handler: Handler) -> SingClient:
    return SingClient(["http://a:7099", "http://b:7099", "http://c:7099"], transport=httpx.MockTransport(handler))


def answer_from(*live: str, error: type[httpx.HTTPError] = httpx.ConnectError,
                seen: list[str] | None = None) -> Handler:
    """A transport on which only the `live` hosts answer; the others fail with `error`."""
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(f"{request.method} {request.url.host}")
        if request.url.host not in live:
            raise error("connection refused" if error is httpx.ConnectError else "timed out", request=request)
        return httpx.Response(200, json={"from": request.url.host})
    return handle


async def test_a_silent_backend_is_left_for_the_next_that_answers() -> None:
    async with client_of(answer_from("c")) as client:
        assert (await client.state())["from"] == "c"  # the same request, sent on until one answers
        assert client.base_url == "http://c:7099"
        assert client.failover is not None and client.failover.from_url == "http://a:7099"
        assert client.failover.reason == "connection refused"


async def test_when_no_backend_answers_the_error_names_each_and_none_is_left() -> None:
    async with client_of(answer_from()) as client:
        with pytest.raises(Unreachable, match="every backend is unreachable: a:7099 connection refused; "
                                              "b:7099 connection refused; c:7099 connection refused"):
            await client.state()
        assert client.base_url == "http://a:7099" and client.failover is None


async def test_an_error_answer_is_an_answer_not_a_reason_to_move() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(503, json={"message": "no leader"})
    async with client_of(handle) as client:
        with pytest.raises(ApiError, match="no leader"):
            await client.state()
        assert seen == ["a"] and client.base_url == "http://a:7099"


async def test_a_write_moves_on_only_if_it_surely_did_not_arrive() -> None:
    seen: list[str] = []
    async with client_of(answer_from("b", seen=seen)) as client:  # a refuses the connection: never got it
        await client.scale("web", 2)
        assert seen == ["PUT a", "PUT b"] and client.base_url == "http://b:7099"
    seen.clear()
    async with client_of(answer_from("b", error=httpx.ReadTimeout, seen=seen)) as client:
        with pytest.raises(Unreachable, match="timed out"):  # a may have run it: not sent to b too
            await client.run_now("job")
        assert seen == ["POST a"] and client.base_url == "http://a:7099"
        assert (await client.state())["from"] == "b"  # a read goes on to b
        assert seen == ["POST a", "GET a", "GET b"]


# ---- the dashboard, on real backends
def requests_table(app: SingApp) -> ResourceTable:
    return app.screen.query_one("#requests", ResourceTable)


def host_port(backend: Backend) -> str:
    return backend.url.removeprefix("http://")


def flat_text(pilot: Pilot) -> str:
    """The screen's words in one line: a notification wraps inside its box."""
    return " ".join(screen_text(pilot).replace("▌", " ").split())


def app_on(*urls: str) -> SingApp:
    """The dashboard as `sing tui --url a,b` starts it (with a short refresh, to keep the tests quick)."""
    return SingApp(replace(load_config(url=",".join(urls)), refresh_seconds=0.3), start_view="requests")


async def test_a_dead_first_backend_is_passed_over_for_the_live_one(backend: Backend) -> None:
    backend.create({"id": "seen-through-the-second", "requestType": "ON_DEMAND"})
    dead = f"http://127.0.0.1:{free_port()}"
    app = app_on(dead, backend.url)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: "seen-through-the-second" in requests_table(app).keys, what="the live data")
        await until(pilot, lambda: top_right(app).endswith(f"failed over {dead.removeprefix('http://')} → "
                                                           f"{host_port(backend)} ● live"), what="the top bar")
        said = f"{dead.removeprefix('http://')} stopped answering (connection refused); now using {host_port(backend)}"
        await until(pilot, lambda: said in flat_text(pilot), what="the notification")
        assert "STALE" not in screen_text(pilot)


async def test_the_dashboard_moves_to_the_next_backend_when_the_one_in_use_stops(backend: Backend,
                                                                               tmp_path: Path) -> None:
    first = Backend(tmp_path / "first").start()
    try:
        first.create({"id": "only-on-the-first", "requestType": "ON_DEMAND"})
        backend.create({"id": "only-on-the-second", "requestType": "ON_DEMAND"})
        app = app_on(first.url, backend.url)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await until(pilot, lambda: "only-on-the-first" in requests_table(app).keys, what="the first's data")
            assert top_right(app) == f"{host_port(first)} ● live"
            first.close()
            await until(pilot, lambda: "only-on-the-second" in requests_table(app).keys, timeout=30,
                        what="the second backend's data")
            assert "only-on-the-first" not in requests_table(app).keys
            await until(pilot, lambda: top_right(app).endswith(
                f"failed over {host_port(first)} → {host_port(backend)} ● live"), what="the top bar")
            await until(pilot, lambda: f"{host_port(first)} stopped answering" in flat_text(pilot),
                        what="the notification")
            assert "STALE" not in screen_text(pilot) and app.connection.ok
    finally:
        first.close()
