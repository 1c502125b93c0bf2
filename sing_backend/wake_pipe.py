"""Waking a thread blocked in `selector.select()` from another thread."""

from __future__ import annotations

import os
import selectors


class WakePipe:
    """A pipe whose read end is registered in `selector` with data None: a write wakes the select."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        # Non-blocking both ends: a full pipe means a wake-up is already pending, not a writer stuck.
        self.fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        selector.register(self.fd, selectors.EVENT_READ, None)

    def wake(self) -> None:
        try:
            os.write(self._write_fd, b"\0")
        except OSError:
            pass  # already awake (pipe full) or closed while shutting down

    def drain(self) -> None:
        """Empty the pipe once the select has returned for it."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write_fd)
