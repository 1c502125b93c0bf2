"""Browse a task's sandbox: Enter opens a directory, or follows a file in the log view."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from ..model import Json, fmt_ts
from ..widgets.resource_table import Column, ResourceTable, number_key
from .base import SingScreen

FILE_COLUMNS = [Column("NAME", max_width=40), Column("SIZE", align_right=True, sort_key=number_key),
                Column("MODIFIED (UTC)", width=19), Column("MODE", max_width=10)]


class SandboxScreen(SingScreen):
    GONE_ON_404 = True
    FILTERABLE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="sandbox.filter"),
        Binding("backspace,u", "up", "Up a directory", id="sandbox.up"),
    ]

    def __init__(self, task_id: str, path: str | None = None) -> None:
        super().__init__()
        self.task_id = task_id
        self.path = path or task_id
        self.files: dict[str, Json] = {}

    def crumbs(self) -> list[str]:
        return ["Sandbox", self.path]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(self.path, id="path", classes="status-line")
        yield ResourceTable(FILE_COLUMNS, empty_text="empty directory", id="files")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(ResourceTable).focus()

    def main_widget(self) -> Widget | None:
        return self.query_one(ResourceTable)

    async def fetch(self) -> Json:
        return await self.client.browse(self.task_id, self.path)

    def show(self, listing: Json) -> None:
        self.files = {f["name"]: f for f in listing.get("files", [])}
        self.query_one("#path", Static).update(f"{listing.get('slaveHostname', '')}:{listing.get('fullPathToRoot', '')}"
                                               f"/{self.path.removeprefix(self.task_id).lstrip('/')}")
        self.query_one(ResourceTable).set_rows({
            name: (name + ("/" if f.get("mode", "").startswith("d") else ""), str(f.get("size", "")),
                   fmt_ts(int(f.get("mtime", 0)) * 1000), f.get("mode", ""))
            for name, f in sorted(self.files.items())})

    def apply_filter(self, filt) -> None:  # type: ignore[no-untyped-def]
        self.filter = filt
        self.query_one(ResourceTable).set_filter(filt)

    def _go(self, path: str) -> None:
        self.path = path
        self.files = {}
        table = self.query_one(ResourceTable)
        table.loaded = False
        table.clear_rows()
        self.query_one("#path", Static).update(path)
        self.poll()

    @on(ResourceTable.Selected)
    def _open(self, event: ResourceTable.Selected) -> None:
        f = self.files.get(event.key)
        if f is None:
            return
        target = f"{self.path}/{event.key}"
        if f.get("mode", "").startswith("d"):
            self._go(target)
        else:
            from .logs import LogScreen
            self.app.push_screen(LogScreen([self.task_id], path=target))

    def action_up(self) -> None:
        if self.path.rstrip("/") == self.task_id:
            self.app.pop_screen()
        else:
            self._go(self.path.rsplit("/", 1)[0])
