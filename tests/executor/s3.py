"""moto's standalone server as an S3-compatible endpoint for the tests (no real S3 runs here)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import boto3
import httpx

from sing_backend.executor.settings import S3Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """`python -m moto.server` on a free loopback port, as its own process."""

    def __init__(self, start_seconds: float = 30.0) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_seconds
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}")
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not answer within {start_seconds} s")
            time.sleep(0.1)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def s3_settings(server: MotoServer, bucket: str, prefix: str = "") -> S3Settings:
    """Settings for a new bucket on ``server`` (moto takes any credentials)."""
    settings = S3Settings(bucket=bucket, prefix=prefix, endpoint_url=server.url, region="us-east-1",
                          access_key_id="test", secret_access_key="test")
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)
    return settings
