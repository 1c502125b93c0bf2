"""`?`: every key of the screen it was opened from (including the ones the footer has no room for),
with the binding id to rebind it in the config file, and the `:` commands."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Label

from ..query import COMMAND_HELP
from ..widgets.resource_table import Column, ResourceTable

HelpRow = tuple[str, str, str]


def binding_rows(screen: Screen) -> list[HelpRow]:
    """(key, what it does, binding id) for the focused chain, the screen's widgets and the app."""
    app = screen.app
    nodes: list[DOMNode] = []
    focused = screen.focused
    if focused is not None:
        nodes.extend(focused.ancestors_with_self)
    else:
        nodes.extend([screen, app])
    for widget in screen.query("*"):
        if widget.BINDINGS and widget not in nodes and widget.display:
            nodes.insert(-2 if len(nodes) >= 2 else 0, widget)
    rows: list[HelpRow] = []
    seen: set[tuple[str, str]] = set()
    for node in nodes:
        bindings = node._bindings.copy()
        if app._keymap:
            bindings.apply_keymap(app._keymap)
        for _key, group in bindings.key_to_bindings.items():
            for binding in group:
                if binding.id is None or (binding.id, binding.key) in seen or binding.system:
                    continue  # Textual's own bindings (scrolling, text editing) have no id
                if app._check_action_state(binding.action, node) is False:
                    continue  # hidden, e.g. an action in read-only mode
                seen.add((binding.id, binding.key))
                rows.append((app.get_key_display(binding), binding.description or binding.action, binding.id))
    return _merge_keys(rows)


def _merge_keys(rows: list[HelpRow]) -> list[HelpRow]:
    """One row per binding id, with all its keys ("↑ k")."""
    merged: dict[tuple[str, str], list[str]] = {}
    for key, desc, bid in rows:
        merged.setdefault((desc, bid), []).append(key)
    return [(" ".join(dict.fromkeys(keys)), desc, bid) for (desc, bid), keys in merged.items()]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { background: $background 60%; }
    HelpScreen > #title { dock: top; height: 1; width: 100%; background: $panel; text-style: bold; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, title: str, rows: list[HelpRow]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    @classmethod
    def for_screen(cls, screen: Screen) -> HelpScreen:
        rows = binding_rows(screen)
        rows += [(cmd, what, "") for cmd, what in COMMAND_HELP]
        rows.append(("ctrl+p", "command palette: actions for the selected row", ""))
        name = type(screen).__name__.removesuffix("Screen")
        return cls(f"Keys of {name}: rebind any by its id in ~/.config/sing/tui.toml, [keymap]", rows)

    def compose(self) -> ComposeResult:
        yield Label(Text(self.title_text), id="title")  # plain text: "[keymap]" is not markup
        yield ResourceTable([Column("KEY", max_width=18), Column("ACTION", max_width=44), Column("BINDING ID")],
                            id="help-table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(ResourceTable)
        table.set_rows({f"{i:04d}": row for i, row in enumerate(self.rows)})
        table.focus()
