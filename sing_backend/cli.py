"""`sing`: run the backend (`sing backend`) or the demo (`sing demo`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import sys
import threading
from pathlib import Path

# pymesos installs a signal handler when imported, which only works in the main thread.
import pymesos  # noqa: F401
import uvicorn

from .settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"port": args.port, "data_dir": args.data_dir, "host": args.host}
    for name in ("mode", "mesos_master", "zk_hosts", "db_url", "zk_root", "zk_session_timeout", "advertise_url"):
        overrides[name] = getattr(args, name, None)
    return load_settings(args.config, overrides)


def cmd_cluster(args: argparse.Namespace) -> int:
    from .cluster_process import run_cluster

    settings = _settings(args)
    agents = settings.agents.model_copy(update={"count": args.agents} if args.agents else {})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_cluster(args.port if args.port is not None else 5050, settings.data_dir, agents, settings.kill_grace_seconds,
                settings.executor, args.heartbeat_seconds)
    return 0


def _serve(settings: Settings, on_ready: callable | None = None) -> None:  # type: ignore[valid-type]
    from .api.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app = create_app(settings)
    app.state.settings_error = None
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=False, lifespan="on")
    # A wrong setting found as the backend starts is said in one line (main), not in uvicorn's report of
    # a failed start-up: the traceback, then "Application startup failed".
    logging.getLogger("uvicorn.error").addFilter(lambda _record: app.state.settings_error is None)
    server = uvicorn.Server(config)

    if on_ready is not None:
        def wait_then_run() -> None:
            while not server.started:
                if server.should_exit:
                    return
                threading.Event().wait(0.05)
            on_ready()
        threading.Thread(target=wait_then_run, daemon=True).start()
    _mend_pymesos_sigint()
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        # uvicorn stops on Ctrl-C, then raises it again for whoever handled it before: nobody else here.
        return
    except SystemExit:  # how uvicorn ends a failed start-up
        if app.state.settings_error is not None:
            raise app.state.settings_error from None
        raise


def _mend_pymesos_sigint() -> None:
    """pymesos wraps the SIGINT handler when imported, and calls the one it found, which is not callable
    when SIGINT was ignored then (a job started in the background): a Ctrl-C ended in a TypeError's
    traceback. Without one, its handler raises KeyboardInterrupt, as Python's own does."""
    import pymesos.process

    if not callable(pymesos.process._prev_handler):
        pymesos.process._prev_handler = None


def cmd_backend(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"Sing backend: http://{settings.host}:{settings.port}/api (data in {settings.data_dir})", flush=True)
    _serve(settings)
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import seed

    settings = _settings(args)
    if getattr(args, "tui", False):
        from sing_tui.launcher import demo_with_tui
        return demo_with_tui(settings.host, settings.port, settings.data_dir, args.config)
    url = f"http://{settings.host}:{settings.port}"
    if settings.load_balancer == "none" and shutil.which("nginx") and _port_free(settings.nginx_port):
        # The demo's web service goes behind the built-in nginx load balancer when nginx is there.
        settings = settings.model_copy(update={"load_balancer": "nginx"})

    def ready() -> None:
        try:
            seed(url)
        except Exception as exc:  # the backend keeps running; the user sees why the samples are missing
            logging.getLogger("sing.demo").error("could not create the sample requests: %s", exc)
            return
        lb = (f"\nThrough nginx: curl http://127.0.0.1:{settings.nginx_port}/demo-web/"
              if settings.load_balancer == "nginx" else "")
        print(f"\nSing demo is up: {url}/api/requests  (OpenAPI: {url}/api/openapi.json){lb}\n"
              f"Data in {settings.data_dir}. Press Ctrl-C to stop.\n", flush=True)

    _serve(settings, ready)
    return 0


def cmd_executor(argv: list[str]) -> int:
    from .executor.main import main as executor_main

    return executor_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["executor"]:
        # A Mesos custom executor, launched by an agent: its own arguments (--settings, --data-dir).
        return cmd_executor(argv[1:])
    parser = argparse.ArgumentParser(prog="sing", description="Sing: run services, workers and jobs on a cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("backend", "run the scheduler and REST API (local mode by default)"),
                            ("demo", "run the backend in local mode with sample requests")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--port", type=int, default=None, help="HTTP port (default 7099)")
        p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
        p.add_argument("--data-dir", type=Path, default=None, help="where state, history and sandboxes live "
                                                                   "(default ~/.local/share/sing)")
        p.add_argument("--config", type=Path, default=None, help="TOML settings file")
        if name == "backend":
            p.add_argument("--mode", choices=["local", "mesos"], default=None,
                           help="local (embedded cluster, SQLite; default) or mesos (Mesos, ZooKeeper, MySQL)")
            p.add_argument("--master", dest="mesos_master", default=None,
                           help="Mesos master: zk://h1:2181,h2:2181/mesos, host:port, or a comma list of them")
            p.add_argument("--zk", dest="zk_hosts", default=None, help="ZooKeeper hosts, h1:2181,h2:2181")
            p.add_argument("--zk-root", dest="zk_root", default=None, help="ZooKeeper root path (default /sing)")
            p.add_argument("--zk-session-timeout", dest="zk_session_timeout", type=float, default=None,
                           help="seconds; a standby takes over this long after the leader dies (default 5)")
            p.add_argument("--db", dest="db_url", default=None, help="history database URL, mysql://user@host/db")
            p.add_argument("--advertise-url", dest="advertise_url", default=None,
                           help="this backend's API URL as the others reach it (default http://host:port)")
        if name == "demo":
            p.add_argument("--tui", action="store_true", help="open the terminal dashboard on the demo; "
                                                              "quitting it stops the demo backend")
    cluster = sub.add_parser("cluster", help="the local cluster as its own process (a Mesos v1 master and agents)")
    cluster.add_argument("--port", type=int, default=None, help="master port (default 5050)")
    cluster.add_argument("--agents", type=int, default=None, help="number of agents (default 3)")
    cluster.add_argument("--data-dir", type=Path, default=None, help="where sandboxes live")
    cluster.add_argument("--config", type=Path, default=None, help="TOML settings file ([agents] section)")
    cluster.add_argument("--heartbeat-seconds", type=float, default=15.0, help="master heartbeat interval")
    cluster.set_defaults(host=None)
    from sing_tui.__main__ import add_arguments, run_tui
    add_arguments(sub.add_parser("tui", help="the terminal dashboard (Textual) for a running backend"))
    args = parser.parse_args(argv)
    try:
        return {"backend": cmd_backend, "demo": cmd_demo, "tui": run_tui, "cluster": cmd_cluster}[args.command](args)
    except SettingsError as exc:
        print(f"sing: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
