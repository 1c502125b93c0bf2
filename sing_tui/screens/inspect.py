"""`y` raw JSON and `d` describe of any object, in a scrollable modal (copy with `c`)."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from rich.syntax import Syntax
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from ..model import describe


class InspectScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    InspectScreen { background: $background 60%; }
    InspectScreen > #title { dock: top; height: 1; background: $panel; text-style: bold; padding: 0 1; width: 100%; }
    InspectScreen > VerticalScroll { background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close", id="inspect.close"),
        Binding("c", "copy", "Copy", id="inspect.copy"),
        Binding("y", "show('json')", "JSON", id="inspect.json"),
        Binding("d", "show('describe')", "Describe", id="inspect.describe"),
    ]

    def __init__(self, title: str, obj: Any, mode: str = "json") -> None:
        super().__init__()
        self.title_text = title
        self.obj = obj
        self.mode = mode

    def compose(self) -> ComposeResult:
        yield Label("", id="title")
        with VerticalScroll():
            yield Static(id="body")
        yield Footer()

    def on_mount(self) -> None:
        self.action_show(self.mode)
        self.query_one(VerticalScroll).focus()

    @property
    def text(self) -> str:
        return orjson.dumps(self.obj, option=orjson.OPT_INDENT_2).decode()

    def action_show(self, mode: str) -> None:
        self.mode = mode
        self.query_one("#title", Label).update(f"{'JSON' if mode == 'json' else 'Describe'}: {self.title_text}")
        body = self.query_one("#body", Static)
        if mode == "json":
            body.update(Syntax(self.text, "json", theme="ansi_dark", word_wrap=True, background_color="default"))
        else:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold", no_wrap=True)
            table.add_column(overflow="fold")
            for key, value in describe(self.obj):
                table.add_row(key, value)
            body.update(table)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Copied the JSON to the clipboard (OSC 52)")
