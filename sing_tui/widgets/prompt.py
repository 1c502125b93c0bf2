"""The `:` command line and `/` filter line at the bottom of a screen."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Input, Label

from ..query import VIEWS


class CommandSuggester(Suggester):
    """Completes view names and, after `request `, known request ids (right arrow accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.request_ids: list[str] = []

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, sep, rest = value.partition(" ")
        if not sep:
            for name in ("requests", "request", "tasks", "task", "agents", "racks", "dash", "logs", "help", "quit"):
                if name.startswith(head.lower()) and name != head.lower():
                    return name
            return None
        if VIEWS.get(head.lower()) == "request" and rest:
            for rid in self.request_ids:
                if rid.startswith(rest):
                    return f"{head} {rid}"
        if VIEWS.get(head.lower()) == "requests":
            last = rest.split(" ")[-1]
            for word in ("type=service", "type=worker", "type=scheduled", "type=on_demand", "type=run_once",
                         "state=active", "state=paused", "state=cooldown", "state=finished", "owner="):
                if last and word.startswith(last.lower()) and word != last.lower():
                    return value[: len(value) - len(last)] + word
        return None


class Prompt(Horizontal):
    """Hidden until `:` or `/`; Enter submits, Escape cancels. `/` filters live as you type."""

    # Docked widgets on one edge overlap: the margin keeps it above the footer, not under it.
    DEFAULT_CSS = """
    Prompt { dock: bottom; height: 1; display: none; background: $boost; margin-bottom: 1; }
    Prompt.-open { display: block; }
    Prompt > Label { width: auto; padding: 0 0 0 1; text-style: bold; color: $text-accent; }
    Prompt > Input { border: none; height: 1; padding: 0; background: $boost; width: 1fr; }
    Prompt > Input:focus { border: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    class Submitted(Message):
        def __init__(self, kind: str, value: str) -> None:
            super().__init__()
            self.kind = kind
            self.value = value

    class Edited(Message):
        def __init__(self, kind: str, value: str) -> None:
            super().__init__()
            self.kind = kind
            self.value = value

    class Closed(Message):
        def __init__(self, kind: str, cancelled: bool) -> None:
            super().__init__()
            self.kind = kind
            self.cancelled = cancelled

    def __init__(self, suggester: Suggester | None = None) -> None:
        super().__init__()
        self.kind = ":"
        self._suggester = suggester

    def compose(self) -> ComposeResult:
        yield Label(":")
        yield Input(suggester=self._suggester, select_on_focus=False)

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, kind: str, value: str = "") -> None:
        self.kind = kind
        self.query_one(Label).update(kind)
        box = self.input
        box.placeholder = ("requests type=worker state=paused · tasks · agents · request ID · dash · help"
                           if kind == ":" else "regex; start with ! to keep the lines that do not match")
        self.add_class("-open")
        box.value = value
        box.cursor_position = len(value)
        # At once, not a turn of the loop later as focus() does: keys typed right after `:` or `/` (a
        # paste, fast typing) are the prompt's, not the screen's bindings (the `q` of `:request` quit).
        self.screen.set_focus(box)

    def close(self, cancelled: bool) -> None:
        if self.is_open:
            self.remove_class("-open")
            self.post_message(self.Closed(self.kind, cancelled))

    def action_cancel(self) -> None:
        self.close(True)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.is_open:
            self.post_message(self.Edited(self.kind, event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Submitted(self.kind, event.value))
        self.close(False)
