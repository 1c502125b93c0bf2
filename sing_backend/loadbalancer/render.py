"""nginx configuration text: the main file and one upstream file plus one location file per service.

Upstreams live at `http` level and locations inside the `server` block, so a service needs two
files; both are named after the service id so replacing or removing a service touches only its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .models import BaragonService, UpstreamInfo

UPSTREAMS_DIR = "upstreams"
LOCATIONS_DIR = "locations"
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class ServiceFiles:
    """What one service contributes; `upstream` is None when the service has no live upstreams."""

    upstream: str | None
    location: str


def render_service(service: BaragonService, upstreams: Iterable[UpstreamInfo]) -> ServiceFiles:
    servers = sorted({u.upstream for u in upstreams})
    name = service.serviceId
    if not servers:
        # An upstream block needs at least one server; answering 503 ourselves is clearer than
        # proxying to a placeholder that can never answer.
        body = "    return 503;\n"
        upstream = None
    else:
        body = (
            f"    proxy_pass http://{name};\n"
            # A task that is being removed or was just killed refuses connections: try the next
            # upstream instead of surfacing the error to the client.
            "    proxy_next_upstream error timeout http_502;\n"
            "    proxy_connect_timeout 2s;\n"
            "    proxy_set_header Host $host;\n"
            "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        )
        upstream = f"# service {name}\nupstream {name} {{\n" + "".join(f"    server {s};\n" for s in servers) + "}\n"
    location = f"# service {name}\n" + "".join(f"location {path} {{\n{body}}}\n" for path in service.all_paths)
    return ServiceFiles(upstream=upstream, location=location)


def render_main_conf(prefix: Path, host: str, port: int, worker_user: str | None = None) -> str:
    temp_paths = "".join(f"    {kind}_temp_path {prefix / 'temp' / kind};\n" for kind in TEMP_DIRS)
    return (
        (f"user {worker_user};\n" if worker_user else "")
        + "worker_processes 1;\n"
        f"pid {prefix / 'logs' / 'nginx.pid'};\n"
        f"error_log {prefix / 'logs' / 'error.log'} warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        f"    access_log {prefix / 'logs' / 'access.log'};\n"
        f"{temp_paths}"
        f"    include {prefix / UPSTREAMS_DIR}/*.conf;\n"
        "    server {\n"
        f"        listen {host}:{port};\n"
        f"        include {prefix / LOCATIONS_DIR}/*.conf;\n"
        "    }\n"
        "}\n"
    )
