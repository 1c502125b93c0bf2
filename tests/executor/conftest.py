from __future__ import annotations

from collections.abc import Iterator

import pymesos  # noqa: F401  (pymesos must first be imported in the main thread)
import pytest

from .helpers import ArtifactServer
from .s3 import MotoServer


@pytest.fixture
def artifact_server() -> Iterator[ArtifactServer]:
    server = ArtifactServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoServer]:
    """moto's standalone S3 server, started once for the tests that ask for it."""
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()
