"""A private nginx master process and the per-service files that configure it.

Every change is written, checked with `nginx -t` and only then reloaded; a config nginx rejects is
rolled back so the running nginx and the files on disk never disagree. A reload counts as done
once the old workers have exited, so callers may stop a removed upstream as soon as `apply` returns.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .render import LOCATIONS_DIR, TEMP_DIRS, UPSTREAMS_DIR, ServiceFiles, render_main_conf

POLL_SECONDS = 0.01
# With error_log pointing at a file, `nginx -t` prints log lines ("2024/01/02 03:04:05 [emerg] 12#12: ...");
# the timestamp and pid mean nothing to whoever reads the request's message.
LOG_LINE_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: ", re.MULTILINE)


class NginxError(Exception):
    """nginx refused a configuration or could not be started or reloaded; the message is nginx's."""


class NginxConfigurator:
    def __init__(
        self,
        port: int,
        prefix: Path | None = None,
        *,
        host: str = "127.0.0.1",
        nginx_bin: str | None = None,
        start_timeout: float = 10.0,
        reload_timeout: float = 10.0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.port = port
        self.host = host
        # Debian installs nginx in /usr/sbin, which is not on a non-root user's PATH.
        self._nginx_bin = nginx_bin or shutil.which("nginx") or "/usr/sbin/nginx"
        self._owns_prefix = prefix is None
        self.prefix = Path(prefix) if prefix is not None else Path(tempfile.mkdtemp(prefix="sing-nginx-"))
        self.conf_path = self.prefix / "nginx.conf"
        self._start_timeout = start_timeout
        self._reload_timeout = reload_timeout
        self._drain_timeout = drain_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self) -> None:
        """Lay out a fresh prefix (no services) and run nginx in the foreground until `stop`."""
        if self.running:
            return
        self._prepare_prefix()
        await self._test()
        stderr = (self.prefix / "logs" / "stderr.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [*self._base_cmd(), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                # Its own session, so a Ctrl-C meant for the parent does not kill nginx mid-request.
                start_new_session=True,
            )
        finally:
            stderr.close()
        try:
            await self._wait_until_serving()
        except NginxError:
            await self.stop()
            raise

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._owns_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    async def apply(self, changes: Mapping[str, ServiceFiles | None]) -> None:
        """Replace (or, for None, remove) the files of the given services, validate and reload;
        with no changes this just re-validates and reloads.

        Raises NginxError with nginx's message and leaves the previous configuration in force
        (files and running nginx) when the new one is rejected or nginx is not running.
        """
        async with self._lock:
            if not self.running:
                raise NginxError(f"nginx is not running: {self._log_tail()}")
            backup = self._write(changes)
            try:
                await self._test()
                await self._reload()
            except NginxError:
                self._restore(backup)
                raise

    def _base_cmd(self) -> list[str]:
        return [self._nginx_bin, "-p", str(self.prefix), "-c", str(self.conf_path)]

    def _prepare_prefix(self) -> None:
        # Services start empty: whoever drives this nginx re-submits what it wants served.
        for sub in (UPSTREAMS_DIR, LOCATIONS_DIR):
            shutil.rmtree(self.prefix / sub, ignore_errors=True)
        for sub in ("logs", UPSTREAMS_DIR, LOCATIONS_DIR):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        for kind in TEMP_DIRS:
            (self.prefix / "temp" / kind).mkdir(parents=True, exist_ok=True)
        # Started as root, nginx would run its workers as "nobody", who cannot reach a private
        # temp prefix (mkdtemp and pytest make them 0700), so the workers stay root too.
        worker_user = "root" if os.geteuid() == 0 else None
        self.conf_path.write_text(render_main_conf(self.prefix, self.host, self.port, worker_user))

    def _service_paths(self, service_id: str) -> tuple[Path, Path]:
        name = f"{service_id}.conf"
        return self.prefix / UPSTREAMS_DIR / name, self.prefix / LOCATIONS_DIR / name

    def _write(self, changes: Mapping[str, ServiceFiles | None]) -> dict[Path, str | None]:
        backup: dict[Path, str | None] = {}
        try:
            for service_id, files in changes.items():
                upstream_path, location_path = self._service_paths(service_id)
                wanted = (None, None) if files is None else (files.upstream, files.location)
                for path, text in zip((upstream_path, location_path), wanted, strict=True):
                    backup[path] = path.read_text() if path.exists() else None
                    _put(path, text)
        except (OSError, ValueError) as exc:
            self._restore(backup)
            raise NginxError(f"could not write nginx configuration: {exc}") from exc
        return backup

    def _restore(self, backup: Mapping[Path, str | None]) -> None:
        for path, text in backup.items():
            _put(path, text)

    async def _test(self) -> None:
        code, output = await _run(*self._base_cmd(), "-t", "-q")
        if code != 0:
            raise NginxError(output or f"nginx -t exited with {code}")

    async def _reload(self) -> None:
        assert self._proc is not None
        master = self._proc.pid
        old_workers = _children(master)
        code, output = await _run(*self._base_cmd(), "-s", "reload")
        if code != 0:
            raise NginxError(output or f"nginx -s reload exited with {code}")
        # `-s reload` only signals the master. New workers appear once it has loaded the config;
        # if none do, it kept the old one (and logged why).
        deadline = time.monotonic() + self._reload_timeout
        while not (_children(master) - old_workers):
            if not self.running:
                raise NginxError(f"nginx exited during reload: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not take the new configuration: {self._log_tail()}")
            await asyncio.sleep(POLL_SECONDS)
        # Old workers keep serving in-flight requests with the old upstreams; wait for them so a
        # removed upstream is really out of rotation before the caller stops it. A request that
        # outlives drain_timeout is left to finish on its own.
        deadline = time.monotonic() + self._drain_timeout
        while _children(master) & old_workers and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)

    async def _wait_until_serving(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                raise NginxError(f"nginx exited with {self._proc.returncode}: {self._log_tail()}")
            if _children(self._proc.pid) and _accepts(self.host, self.port):
                return
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not start listening on {self.host}:{self.port}: {self._log_tail()}")
            await asyncio.sleep(POLL_SECONDS)

    def _log_tail(self, lines: int = 5) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            path = self.prefix / "logs" / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:]) or "no log output"


def _put(path: Path, text: str | None) -> None:
    if text is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.tmp")  # not matched by the `*.conf` include
    tmp.write_text(text)
    os.replace(tmp, path)


async def _run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, LOG_LINE_PREFIX.sub(r"nginx: \1 ", out.decode(errors="replace")).strip()


def _children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of `pid`: for an nginx master, its workers."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path("/proc", entry.name, "stat").read_text()
        except OSError:
            continue
        # The command name is parenthesised and may itself contain spaces or parentheses.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
