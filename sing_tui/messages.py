"""Messages that travel up from workers and widgets to screens and the app."""

from __future__ import annotations

from textual.message import Message


class BackendStatus(Message):
    """A poll reached the backend (`error` empty) or did not (`error` says why)."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error

    @property
    def ok(self) -> bool:
        return not self.error


class Gone(Message):
    """The object a screen shows no longer exists on the backend."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message


class Loaded(Message):
    """A screen's poll finished; `data` is whatever that screen's fetch returned."""

    def __init__(self, data: object) -> None:
        super().__init__()
        self.data = data


class ActionDone(Message):
    """An action (scale, pause...) finished; the screen refreshes at once instead of at the next tick."""

    def __init__(self, summary: str) -> None:
        super().__init__()
        self.summary = summary
