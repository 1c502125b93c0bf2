"""Follow a sandbox file through the API's Mesos-style `read` (byte offsets), as `tail -F` would.

No Textual here; the log screen polls `LogTail.poll()` from a worker and writes each batch at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .client import SingClient

# A line still missing its newline after this long is shown anyway (progress bars, prompts).
PARTIAL_FLUSH_SECONDS = 1.0


@dataclass
class LogTail:
    client: SingClient
    task_id: str
    path: str
    tail_bytes: int = 64 * 1024
    chunk_bytes: int = 256 * 1024
    max_chunks_per_poll: int = 8
    offset: int | None = None
    skipped: int = 0  # bytes at the file's start that were not read (start() began at its last tail_bytes)
    at_end: bool = False  # the last poll read up to the end of the file (as it was then)
    _partial: str = ""
    _partial_since: float = 0.0
    _idle_polls: int = 0
    notes: list[str] = field(default_factory=list)  # out-of-band events for the view ("file truncated")

    @classmethod
    def stdout(cls, client: SingClient, task_id: str, **kw: int) -> LogTail:
        return cls(client, task_id, f"{task_id}/stdout.log", **kw)

    @classmethod
    def stderr(cls, client: SingClient, task_id: str, **kw: int) -> LogTail:
        return cls(client, task_id, f"{task_id}/stderr.log", **kw)

    async def start(self) -> list[str]:
        """Position near the end (the last `tail_bytes`) and return the whole lines found there."""
        size = int((await self.client.read(self.task_id, self.path))["offset"])
        self.offset = self.skipped = max(0, size - self.tail_bytes)
        skip_first = self.offset > 0
        lines = await self.poll()
        if skip_first and lines:
            lines = lines[1:]  # we started mid-line
        return lines

    async def poll(self) -> list[str]:
        """Whole lines appended since the last call (several chunks if the writer is fast)."""
        if self.offset is None:
            return await self.start()
        out: list[str] = []
        self.at_end = False
        for _ in range(self.max_chunks_per_poll):
            answer = await self.client.read(self.task_id, self.path, offset=self.offset, length=self.chunk_bytes)
            data: str = answer.get("data", "")
            if not data:
                # Only an empty read is the end: a short one may be the server's cap, or a character cut
                # in two left for the next read.
                self.at_end = True
                break
            raw = len(data.encode("utf-8", "surrogateescape"))
            self.offset = int(answer.get("nextOffset", self.offset + raw))
            if not self._partial:
                self._partial_since = time.monotonic()
            *complete, self._partial = (self._partial + data).split("\n")
            out.extend(line.removesuffix("\r") for line in complete)
            if raw < self.chunk_bytes:
                break
        if out:
            self._idle_polls = 0
        else:
            self._idle_polls += 1
            if self._idle_polls % 20 == 0:
                await self._check_truncated()
        if self._partial and time.monotonic() - self._partial_since > PARTIAL_FLUSH_SECONDS:
            out.append(self._partial)
            self._partial = ""
        return out

    def rest(self) -> list[str]:
        """The last line still missing its newline, at once: once the writer is done nothing completes it."""
        rest, self._partial = self._partial, ""
        return [rest] if rest else []

    async def _check_truncated(self) -> None:
        """A file shorter than our offset was truncated or replaced: start again from its beginning."""
        size = int((await self.client.read(self.task_id, self.path))["offset"])
        if self.offset is not None and size < self.offset:
            self.notes.append(f"{self.path} was truncated; reading it again from the start")
            self.offset = 0
            self._partial = ""
