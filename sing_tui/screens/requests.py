"""All requests in one live table: filter (`/`), query (`:requests type=worker state=paused`), sort,
marks (space) for bulk actions."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from ..model import REQUEST_COLUMNS, Json, is_scheduled, next_run_cell, now_ms, request_matches, request_row
from ..query import Filter
from ..widgets.resource_table import Column, ResourceTable, age_key, ratio_key
from .base import PaletteCommand
from .request_actions import REQUEST_BINDINGS, RequestActions

STATE_STYLES = {"ACTIVE": "green", "PAUSED": "yellow", "SYSTEM_COOLDOWN": "bold red", "FINISHED": "dim",
                "DELETING": "red", "DEPLOYING": "cyan"}


def state_style(cell: str) -> str:
    return STATE_STYLES.get(cell, "")


def instances_style(cell: str) -> str:
    running, _, wanted = cell.partition("/")
    return "bold red" if running != wanted and running.isdigit() and wanted.isdigit() \
        and int(running) < int(wanted) else ""


def next_run_style(cell: str) -> str:
    return "bold red" if cell.startswith("late") else ""


def next_run_key(cell: str) -> tuple[int, float]:
    """Soonest run first, late runs before them, then the scheduled requests with no run queued, then
    every other request (an empty cell)."""
    if cell.startswith("in "):
        return (1, age_key(cell))
    if cell.startswith("late "):
        return (0, -age_key(cell))
    return (2, 0.0) if cell else (3, 0.0)


REQUEST_TABLE_COLUMNS = [
    Column(REQUEST_COLUMNS[0], max_width=30),
    Column(REQUEST_COLUMNS[1], max_width=9),
    Column(REQUEST_COLUMNS[2], max_width=15, style=state_style),
    Column(REQUEST_COLUMNS[3], max_width=9, align_right=True, style=instances_style, sort_key=ratio_key),
    Column(REQUEST_COLUMNS[4], max_width=9, style=next_run_style, sort_key=next_run_key),
    Column(REQUEST_COLUMNS[5], max_width=14),
    Column(REQUEST_COLUMNS[6], max_width=40),
]

Prepared = tuple[dict[str, Json], dict[str, tuple[str, ...]], list[str]]


def _prepare(data: list[Json], now: int) -> Prepared:
    parents = {p["request"]["id"]: p for p in data}
    return parents, {rid: request_row(p, now) for rid, p in parents.items()}, sorted(parents)


class RequestsScreen(RequestActions):
    FILTERABLE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="requests.filter"),
        *REQUEST_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.parents: dict[str, Json] = {}
        self.params: dict[str, str] = {}
        self._last: object = None
        self._scheduled: list[str] = []  # their NEXT RUN counts down even when the list has not changed

    def crumbs(self) -> list[str]:
        return ["Requests"]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(id="status", classes="status-line")
        yield ResourceTable(REQUEST_TABLE_COLUMNS, markable=True, empty_text="no requests",
                            filtered_text="no request matches the query or filter", id="requests")
        yield from self.chrome_bottom()

    @property
    def table(self) -> ResourceTable:
        return self.query_one("#requests", ResourceTable)

    def main_widget(self) -> Widget | None:
        return self.table

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self._update_status()

    async def fetch(self) -> Any:
        data = await self.client.requests()
        if data is self._last:
            return None  # the very same body as last time: only the countdowns move
        self._last = data
        # Thousands of rows: build them in a thread so typing in the filter stays responsive.
        return await asyncio.to_thread(_prepare, data, now_ms(self.sing.clock))

    def show(self, prepared: Prepared | None) -> None:
        if prepared is None:
            self._count_down()
            return
        self.parents, rows, ids = prepared
        self._scheduled = [rid for rid, p in self.parents.items() if is_scheduled(p)]
        self.table.set_rows(rows)
        self.sing.suggester.request_ids = ids

    def _count_down(self) -> None:
        """Recompute only the NEXT RUN cells (a handful of scheduled requests among thousands)."""
        now = now_ms(self.sing.clock)
        table = self.table
        changed: dict[str, tuple[str, ...]] = {}
        for rid in self._scheduled:
            row = table.row(rid)
            parent = self.parents.get(rid)
            if row is None or parent is None:
                continue
            cell = next_run_cell(parent, now)
            if row[4] != cell:
                changed[rid] = (*row[:4], cell, *row[5:])
        if changed:
            table.update_rows(changed)

    # ---- query and filter
    def set_query(self, params: dict[str, str], filt: Filter) -> None:
        self.params = params
        self.filter = filt
        self._apply()

    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt
        self._apply()

    def _apply(self) -> None:
        params = self.params
        predicate = (lambda key, _row: request_matches(self.parents.get(key, {}), params)) if params else None
        self.table.set_filter(self.filter, predicate)

    def action_back(self) -> None:
        if self.params or self.filter.active:
            self.set_query({}, Filter())
        elif self.table.marks:
            self.table.action_clear_marks()

    @on(ResourceTable.Highlighted, "#requests")
    def _highlighted(self) -> None:
        self.label_pause()

    @on(ResourceTable.Changed)
    def _update_status(self) -> None:
        self.label_pause()  # the rows, their states or the marks changed
        table = self.table
        text = Text()
        text.append(f"{table.total_count:,} requests", style="bold")
        if table.row_count != table.total_count:
            text.append(f" · {table.row_count:,} shown")
        if self.params:
            text.append(" · " + " ".join(f"{k}={v}" for k, v in self.params.items()), style="cyan")
        if self.filter.active:
            text.append(f" · filter {self.filter.describe()}", style="cyan")
        if table.marks:
            text.append(f" · {len(table.marks)} marked (space; ctrl+\\ clears)", style="bold yellow")
        if table.sort_column is not None:
            text.append(f" · sorted by {table.columns[table.sort_column].label}"
                        f"{' ▼' if table.sort_reverse else ' ▲'}")
        self.query_one("#status", Static).update(text, layout=False)  # one fixed line: no relayout

    @on(ResourceTable.Selected, "#requests")
    def _open(self, event: ResourceTable.Selected) -> None:
        from .request import RequestScreen
        self.app.push_screen(RequestScreen(event.key))

    # ---- actions
    def request_targets(self) -> list[str]:
        return self.table.target_keys()

    def request_json(self, request_id: str) -> Json | None:
        return self.parents.get(request_id)

    def palette_commands(self) -> list[PaletteCommand]:
        return self.request_palette()
