"""`:tasks`: every active task, live."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from ..client import ClientError
from ..model import TASK_COLUMNS, Json, age_changes_at, fmt_age, now_ms, task_row
from ..query import Filter
from ..widgets.resource_table import Column, ResourceTable, age_key, number_key
from .base import PaletteCommand, SingScreen, for_each
from .form import Field
from .request import task_state_style

TASK_TABLE_COLUMNS = [Column(TASK_COLUMNS[0], max_width=44, grow=True), Column(TASK_COLUMNS[1], max_width=24),
                      Column(TASK_COLUMNS[2], max_width=10), Column(TASK_COLUMNS[3], sort_key=number_key),
                      Column(TASK_COLUMNS[4], max_width=15), Column(TASK_COLUMNS[5], max_width=10,
                                                                    style=task_state_style),
                      Column(TASK_COLUMNS[6], sort_key=age_key)]
AGE = len(TASK_COLUMNS) - 1  # the AGE cell's index in a row

# What a poll prepares: the task ids by id, the rows, and when each row's AGE cell next changes (ms), a
# heap of (due, task id).
Prepared = tuple[dict[str, Json], dict[str, tuple[str, ...]], list[tuple[int, str]]]


class TasksScreen(SingScreen):
    FILTERABLE = True
    MUTATING: ClassVar[frozenset[str]] = frozenset({"kill"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="tasks.filter"),
        Binding("l", "logs", "Logs", id="tasks.logs"),
        Binding("K", "kill", "Kill", show=False, id="tasks.kill"),
        Binding("u", "request", "Request", show=False, id="tasks.request"),
        Binding("d", "describe", "Describe", show=False, id="tasks.describe"),
        Binding("y", "raw", "JSON", show=False, id="tasks.json"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, Json] = {}
        self._last: object = None
        # When each row's AGE cell next reads differently (ms): a heap, so the 1 s timer looks only at the
        # cells due, not at every row.
        self._age_due: list[tuple[int, str]] = []

    def crumbs(self) -> list[str]:
        return ["Tasks"]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(id="status", classes="status-line")
        yield ResourceTable(TASK_TABLE_COLUMNS, markable=True, empty_text="no active tasks",
                            filtered_text="no task matches the filter (esc clears it)", id="tasks")
        yield from self.chrome_bottom()

    @property
    def table(self) -> ResourceTable:
        return self.query_one("#tasks", ResourceTable)

    def main_widget(self) -> Widget | None:
        return self.table

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        # AGE moves on between polls, and an unchanged list (a 304) is not redrawn: the age cells are, each
        # when its text would change (every second while it is under a minute, then every minute).
        self.set_interval(1.0, self._redraw_ages)

    async def fetch(self) -> Prepared | None:
        # /tasks/active/states has every field of the table (the task id object carries host, instance,
        # start time) at a fraction of /tasks/active's size; full tasks are fetched one at a time (d, y).
        states = await self.client.active_task_states()
        if states is self._last:
            return None  # unchanged: only the ages move (_redraw_ages)
        self._last = states
        now = now_ms(self.sing.clock)

        def prepare() -> Prepared:
            tasks = {s["taskId"]["id"]: s["taskId"] for s in states}
            due = [(age_changes_at(t.get("startedAt"), now), k) for k, t in tasks.items()]
            heapq.heapify(due)
            return tasks, {s["taskId"]["id"]: task_row(s, s.get("taskState", "?"), now) for s in states}, due
        return await asyncio.to_thread(prepare)

    def show(self, prepared: Prepared | None) -> None:
        if prepared is not None:
            self.tasks, rows, self._age_due = prepared
            self.table.set_rows(rows)
        self._redraw_ages()  # the rows may have been prepared a moment ago

    def _redraw_ages(self) -> None:
        """Rewrite the AGE cells that read differently now (a row's cached line is redrawn only if so)."""
        now = now_ms(self.sing.clock)
        table = self.table
        changed: dict[str, tuple[str, ...]] = {}
        due = self._age_due
        while due and due[0][0] <= now:
            _, key = heapq.heappop(due)
            if (row := table.row(key)) is not None:
                started = self.tasks[key].get("startedAt")
                changed[key] = (*row[:AGE], fmt_age(started, now))
                heapq.heappush(due, (age_changes_at(started, now), key))
        if changed:
            table.update_rows(changed)

    def action_refresh_now(self) -> None:
        super().action_refresh_now()
        self._redraw_ages()

    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt
        self.table.set_filter(filt)

    @on(ResourceTable.Changed)
    def _status(self) -> None:
        t = self.table
        text = Text(f"{t.total_count:,} active tasks", style="bold")
        if t.row_count != t.total_count:
            text.append(f" · {t.row_count:,} shown")
        if self.filter.active:
            text.append(f" · filter {self.filter.describe()}", style="cyan")
        if t.marks:
            text.append(f" · {len(t.marks)} marked", style="bold yellow")
        self.query_one("#status", Static).update(text, layout=False)  # one fixed line: no relayout

    @on(ResourceTable.Selected)
    def _open(self, event: ResourceTable.Selected) -> None:
        from .task import TaskScreen
        self.app.push_screen(TaskScreen(event.key))

    def _selected(self) -> str | None:
        return self.table.cursor_key

    def action_logs(self) -> None:
        from .logs import LogScreen
        keys = self.table.target_keys()
        if keys:
            tasks = [self.tasks[k] for k in keys if k in self.tasks]
            self.app.push_screen(LogScreen.for_tasks(tasks) if len(tasks) > 1 else LogScreen.for_task_ids(keys[:1]))

    def action_request(self) -> None:
        from .request import RequestScreen
        key = self._selected()
        if key and key in self.tasks:
            self.app.push_screen(RequestScreen(self.tasks[key]["requestId"]))

    def action_kill(self) -> None:
        targets = self.table.target_keys()
        if not targets:
            return

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, "Killing", lambda t: self.client.kill_task(t, values["message"] or None))
        self.open_form("Kill task" if len(targets) == 1 else f"Kill {len(targets)} tasks", targets,
                       [Field("message", "Message (optional)")], "Kill", submit, danger=True,
                       note="SIGTERM, then SIGKILL after the grace period; long-running requests start replacements.")

    def action_describe(self) -> None:
        key = self._selected()
        if key:
            self._inspect_task(key, "describe")

    def action_raw(self) -> None:
        key = self._selected()
        if key:
            self._inspect_task(key, "json")

    @work(group="inspect", exclusive=True, exit_on_error=False)
    async def _inspect_task(self, task_id: str, mode: str) -> None:
        try:
            task = await self.client.task(task_id)
        except ClientError as exc:
            self.notify(str(exc), severity="error")
            return
        self.inspect(task_id, task, mode)

    def palette_commands(self) -> list[PaletteCommand]:
        key = self._selected()
        if not key:
            return []
        out: list[PaletteCommand] = [(f"Logs of {key}", "follow stdout", self.action_logs),
                                     (f"Open the request of {key}", "", self.action_request),
                                     ("Describe", key, self.action_describe), ("Raw JSON", key, self.action_raw)]
        if self.allowed("kill"):
            out.append((f"Kill {key}", "SIGTERM, then SIGKILL", self.action_kill))
        return out
