"""`sing demo --tui` (and `make demo`): start the demo backend in the background, wait until it
answers, run the dashboard on it, and stop the backend when the dashboard exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .config import ConfigError, load_config

START_TIMEOUT = 90.0


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/state", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def demo_with_tui(host: str, port: int, data_dir: Path, config: Path | None = None) -> int:
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        tui_config = load_config(url=url)
    except ConfigError as exc:
        print(f"sing demo: {exc}", file=sys.stderr)
        return 2
    if _answers(url):
        # Someone else's backend: use it, and leave it running afterwards.
        print(f"A backend already answers at {url}; opening the dashboard on it.", flush=True)
        return _run_tui(tui_config)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "demo.log"
    cmd = [sys.executable, "-m", "sing_backend.cli", "demo", "--port", str(port), "--host", host,
           "--data-dir", str(data_dir)] + (["--config", str(config)] if config else [])
    print(f"Starting the demo backend on {url} (log: {log_path})…", flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # the terminal's signals are the dashboard's
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                print(f"sing demo: the backend exited with {proc.returncode}:\n{tail}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"sing demo: the backend did not answer within {START_TIMEOUT:.0f} s (log: {log_path})",
                      file=sys.stderr)
                return 1
            time.sleep(0.2)
        return _run_tui(tui_config)
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(proc)
        print(f"Stopped the demo backend (log: {log_path}).", flush=True)


def _run_tui(config: object) -> int:
    from .app import run
    return run(config, start_view="dashboard")  # type: ignore[arg-type]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
