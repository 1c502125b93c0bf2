from __future__ import annotations

from collections.abc import Iterator

import pytest

from sing_backend.local_backend import Backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = Backend(tmp_path_factory.mktemp("sing")).start()
    try:
        yield b
    finally:
        b.close()
