"""The list cache: built again at each state version, but a list built again to the same bytes keeps its
compressed body and its tag (the version moves far more often than any one list)."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass

from sing_backend.scheduler.views_cache import ListCache


@dataclass
class _Source:
    version: int = 0


def test_an_unchanged_list_keeps_its_body_across_versions_and_a_changed_one_does_not() -> None:
    source = _Source()
    cache = ListCache(source)
    content = [b'["a","b"]']
    builds = []

    def build() -> bytes:
        builds.append(1)
        return content[0]

    first = cache.body("list", build)
    zipped = asyncio.run(cache.gzipped(first))
    tag = asyncio.run(cache.etag(first))
    assert cache.body("list", build) is first and len(builds) == 1  # same version: not built again

    source.version += 1
    again = cache.body("list", build)
    assert len(builds) == 2 and again is first  # built again, to the same bytes: compressed and tagged already
    assert again.gzipped is zipped and again.etag == tag

    content[0] = b'["a","b","c"]'
    source.version += 1
    changed = cache.body("list", build)
    assert changed is not first and changed.gzipped is None
    assert gzip.decompress(asyncio.run(cache.gzipped(changed))) == content[0]
    assert asyncio.run(cache.etag(changed)) != tag
