"""The form every action goes through: it names its targets, validates what was typed (refusing bad
input with the reason, in the form), runs the action, and shows the server's message if it fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from ..client import ClientError, Queued


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    placeholder: str = ""
    value: str = ""
    parse: Callable[[str], Any] = str  # raises ValueError("field: reason") on bad input


def names(targets: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(targets[:limit])
    return shown + (f" … and {len(targets) - limit} more" if len(targets) > limit else "")


def confirm_field(expected: str) -> Field:
    """A typed confirmation for destructive actions: no single key can delete anything."""

    def check(text: str) -> str:
        if text.strip() != expected:
            raise ValueError(f"confirmation: type {expected!r} exactly to go ahead")
        return text

    return Field("confirm", f"Type {expected} to confirm", placeholder=expected, parse=check)


class FormScreen(ModalScreen[str | None]):
    """Dismisses with a one-line summary of what was done, or None if cancelled."""

    DEFAULT_CSS = """
    FormScreen { align: center middle; }
    FormScreen > #dialog {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    FormScreen.-danger > #dialog { border: thick $error; }
    FormScreen #title { text-style: bold; width: 100%; }
    FormScreen #targets { color: $text-warning; max-height: 4; }
    FormScreen #note { color: $text-muted; }
    FormScreen Input, FormScreen Input:focus {
        border: none; height: 1; padding: 0 1; margin: 0 0 1 0; background: $boost;
    }
    FormScreen Input:focus { background: $primary 30%; }
    FormScreen #error { color: $text-error; text-style: bold; height: auto; }
    FormScreen #buttons { height: 1; align-horizontal: right; margin-top: 1; }
    FormScreen Button { margin-left: 1; min-width: 10; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="form.cancel")]

    def __init__(self, title: str, targets: Sequence[str], fields: Sequence[Field], submit_label: str,
                 submit: Callable[[dict[str, Any]], Awaitable[str]], *, danger: bool = False, note: str = "") -> None:
        super().__init__(classes="-danger" if danger else None)
        self.title_text = title
        self.targets = list(targets)
        self.fields = list(fields)
        self.submit_label = submit_label
        self.submit = submit
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            if self.targets:
                yield Static(names(self.targets), id="targets")
            if self.note:
                yield Static(self.note, id="note")
            for f in self.fields:
                yield Label(f.label)
                yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.name}")
            yield Static("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button(self.submit_label, id="submit", compact=True,
                             variant="error" if self.has_class("-danger") else "primary")

    def on_mount(self) -> None:
        inputs = list(self.query(Input))
        # Nothing to type: the focus starts on Cancel, so Enter alone never confirms.
        (inputs[0] if inputs else self.query_one("#cancel", Button)).focus()

    def show_error(self, message: str) -> None:
        self.query_one("#error", Static).update(message)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self._validate_and_run()

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is inputs[-1]:
            self._validate_and_run()
        else:
            inputs[inputs.index(event.input) + 1].focus()

    def values(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for f in self.fields:
            box = self.query_one(f"#field-{f.name}", Input)
            try:
                out[f.name] = f.parse(box.value)
            except ValueError as exc:
                self.show_error(str(exc))
                box.focus()
                return None
        return out

    def _validate_and_run(self) -> None:
        values = self.values()
        if values is not None:
            self.show_error("")
            self.query_one("#submit", Button).disabled = True
            self._run(values)

    @work(exclusive=True, group="form", exit_on_error=False)
    async def _run(self, values: dict[str, Any]) -> None:
        try:
            summary = await self.submit(values)
        except Queued as exc:
            self.dismiss(str(exc))  # accepted: sending it again would apply it twice
            return
        except (ClientError, ValueError, OSError) as exc:
            self.show_error(str(exc))
            self.query_one("#submit", Button).disabled = False
            return
        self.dismiss(summary)
