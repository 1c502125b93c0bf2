"""One request: its state, active and pending deploy (with progress), active and pending tasks, task
history, deploy history and request history; every request action."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from ..model import (
    LONG_RUNNING,
    Json,
    active_deploy_id,
    fmt_age,
    history_row,
    is_scheduled,
    next_run_line,
    now_ms,
    pending_deploy_id,
    pending_reason,
    running_count,
    short_state,
)
from ..query import Filter
from ..widgets.resource_table import Column, ResourceTable, age_key, number_key
from .base import PaletteCommand
from .form import Field
from .request_actions import REQUEST_BINDINGS, RequestActions
from .requests import state_style

TASK_STATE_STYLES = {"RUNNING": "green", "FAILED": "bold red", "LOST": "bold red", "KILLED": "yellow",
                     "FINISHED": "dim", "PENDING": "cyan", "CLEANING": "yellow", "STARTING": "cyan",
                     "LAUNCHED": "cyan", "STAGING": "cyan", "ERROR": "bold red"}


def task_state_style(cell: str) -> str:
    return TASK_STATE_STYLES.get(cell.split(" ")[0], "")


TASK_COLUMNS = [Column("TASK", max_width=44, grow=True), Column("DEPLOY", max_width=10),
                Column("#", sort_key=number_key), Column("HOST", max_width=15),
                Column("STATE", max_width=12, style=task_state_style),
                Column("AGE / WHY", max_width=60, sort_key=age_key)]
HISTORY_COLUMNS = [Column("TASK", max_width=44, grow=True), Column("DEPLOY", max_width=10),
                   Column("#", sort_key=number_key), Column("HOST", max_width=15),
                   Column("LAST STATUS", max_width=12, style=task_state_style), Column("UPDATED", sort_key=age_key)]
DEPLOY_COLUMNS = [Column("DEPLOY", max_width=16), Column("RESULT", max_width=12), Column("WHEN", sort_key=age_key),
                  Column("MESSAGE", max_width=50)]
EVENT_COLUMNS = [Column("WHEN", sort_key=age_key), Column("EVENT", max_width=16), Column("USER", max_width=16),
                 Column("MESSAGE", max_width=50)]


@dataclass
class RequestData:
    parent: Json
    pending: list[Json]
    active: list[Json]
    tasks: list[Json]
    deploys: list[Json]
    events: list[Json]


def progress_bar(current: int, target: int, width: int = 12) -> str:
    filled = 0 if target <= 0 else min(width, round(width * current / target))
    return "█" * filled + "░" * (width - filled)


class RequestScreen(RequestActions):
    GONE_ON_404 = True
    FILTERABLE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", show=False, id="request.filter"),
        Binding("l", "task_logs", "Logs", id="request.task_logs"),
        *REQUEST_BINDINGS,
        Binding("K", "kill_task", "Kill task", show=False, id="request.kill_task"),
        Binding("X", "cancel_deploy", "Cancel deploy", show=False, id="request.cancel_deploy"),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False, id="request.next_tab"),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False, id="request.prev_tab"),
    ]

    def __init__(self, request_id: str) -> None:
        super().__init__()
        self.request_id = request_id
        self.data: RequestData | None = None
        self.task_json: dict[str, Json] = {}

    def crumbs(self) -> list[str]:
        return ["Request", self.request_id]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static("loading…", id="summary")
        with TabbedContent(id="tabs"):
            with TabPane("Tasks", id="tab-tasks"):
                yield ResourceTable(TASK_COLUMNS, empty_text="no active or pending tasks", id="tasks")
            with TabPane("Task history", id="tab-history"):
                yield ResourceTable(HISTORY_COLUMNS, empty_text="no tasks yet", id="history")
            with TabPane("Deploys", id="tab-deploys"):
                yield ResourceTable(DEPLOY_COLUMNS, empty_text="no deploys yet", id="deploys")
            with TabPane("Request history", id="tab-events"):
                yield ResourceTable(EVENT_COLUMNS, empty_text="no history", id="events")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#tasks", ResourceTable).focus()
        self.set_interval(1.0, self._count_down)

    def _count_down(self) -> None:
        """A scheduled request's "next run in 3m 20s" moves every second, between polls too."""
        if self.data is not None and is_scheduled(self.data.parent) and self.data.parent.get("nextRunAt"):
            self.query_one("#summary", Static).update(self._summary(self.data, now_ms(self.sing.clock)))

    def main_widget(self) -> Widget | None:
        return self._current_table()

    def _current_table(self) -> ResourceTable:
        active = self.query_one("#tabs", TabbedContent).active
        return self.query_one(f"#{active.removeprefix('tab-')}", ResourceTable)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.call_after_refresh(self._current_table().focus)

    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        ids = ["tab-tasks", "tab-history", "tab-deploys", "tab-events"]
        tabs.active = ids[(ids.index(tabs.active) + step) % len(ids)]

    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt
        for table in self.query(ResourceTable):
            table.set_filter(filt)

    # ---- data
    async def fetch(self) -> RequestData:
        c, rid = self.client, self.request_id
        parent = await c.request(rid)  # first, alone: a 404 here means the request is gone
        pending, active, tasks, deploys, events = await asyncio.gather(
            c.scheduled_for_request(rid), c.request_active_task_history(rid), c.request_task_history(rid, count=50),
            c.deploy_history(rid, count=30), c.request_history(rid, count=30))
        return RequestData(parent, pending, active, tasks, deploys, events)

    def show(self, data: RequestData) -> None:
        self.data = data
        self.label_pause()
        now = now_ms(self.sing.clock)
        self.query_one("#summary", Static).update(self._summary(data, now))
        rows: dict[str, tuple[str, ...]] = {}
        cleaning = {t["id"] for t in data.parent.get("taskIds", {}).get("cleaning", [])}
        for row in data.active:
            tid = row["taskId"]
            state = short_state(row.get("lastTaskStatus", "?"))
            if tid["id"] in cleaning:
                state = "CLEANING"
            rows[tid["id"]] = (tid["id"], tid["deployId"], str(tid.get("instanceNo", "")), tid.get("host", ""),
                               state, fmt_age(tid.get("startedAt"), now))
        for entry in data.pending:
            pid = entry["pendingTask"]["pendingTaskId"]
            rows[pid["id"]] = (pid["id"], pid["deployId"], str(pid.get("instanceNo", "")), "-", "PENDING",
                               pending_reason(entry, now))
        self.query_one("#tasks", ResourceTable).set_rows(rows)
        self.query_one("#history", ResourceTable).set_rows(
            {r["taskId"]["id"]: history_row(r, now) for r in data.tasks})
        self.query_one("#deploys", ResourceTable).set_rows({
            (d.get("deployMarker", {}).get("deployId") or d.get("deploy", {}).get("id", "?")): (
                d.get("deployMarker", {}).get("deployId", "?"),
                (d.get("deployResult") or {}).get("deployState", "PENDING"),
                fmt_age(d.get("deployMarker", {}).get("timestamp"), now),
                d.get("deployMarker", {}).get("message", "") or (d.get("deployResult") or {}).get("message", ""))
            for d in data.deploys})
        self.query_one("#events", ResourceTable).set_rows({
            f"{e.get('createdAt', 0)}-{i}": (fmt_age(e.get("createdAt"), now), e.get("eventType", "?"),
                                             e.get("user", "") or "", e.get("message", "") or "")
            for i, e in enumerate(data.events)})

    def _summary(self, data: RequestData, now: int) -> Text:
        parent = data.parent
        req = parent.get("request", {})
        text = Text()
        text.append(req.get("id", "?"), style="bold")
        text.append(f"  {req.get('requestType', '?')}  ")
        state = parent.get("state", "?")
        text.append(state, style=state_style(state) or "bold")
        running = running_count(parent)
        # As in the requests table: only long-running requests want a number of instances.
        text.append(f"  {running}/{req.get('instances') or 1} running" if req.get("requestType") in LONG_RUNNING
                    else f"  {running} running")
        if req.get("owners"):
            text.append(f"  owners: {', '.join(req['owners'])}", style="dim")
        text.append("\n")
        active = active_deploy_id(parent)
        ad = parent.get("activeDeploy") or {}
        text.append("Active deploy: ", style="bold")
        text.append(f"{active} ({fmt_age(ad.get('timestamp'), now)} ago)" if active else "none")
        pending = pending_deploy_id(parent)
        if pending:
            pds = parent.get("pendingDeployState") or {}
            prog = pds.get("deployProgress") or {}
            cur, target = prog.get("currentActiveInstances", 0), prog.get("targetActiveInstances", 0)
            text.append("   Pending: ", style="bold cyan")
            text.append(f"{pending} {pds.get('currentDeployState', '')} {progress_bar(cur, target)} {cur}/{target}")
            failed = prog.get("failedDeployTasks") or []
            if failed:
                text.append(f" {len(failed)} failed", style="bold red")
        if is_scheduled(parent):
            text.append("\n")
            text.append("Schedule: ", style="bold")
            text.append(next_run_line(parent, now))
        command = (parent.get("activeDeploy") or parent.get("pendingDeploy") or {}).get("command")
        if command:
            text.append("\n")
            text.append("Command: ", style="bold")
            text.append(command if len(command) < 200 else command[:199] + "…", style="dim")
        return text

    # ---- actions
    def request_targets(self) -> list[str]:
        return [self.request_id]

    def request_json(self, request_id: str) -> Json | None:
        return self.data.parent if self.data else None

    def _selected_task(self) -> str | None:
        table = self._current_table()
        if table.id not in ("tasks", "history") or table.cursor_key is None:
            return None
        row = table.row(table.cursor_key)
        if row is not None and row[4] == "PENDING":
            return None
        return table.cursor_key

    @on(ResourceTable.Selected)
    def _open(self, event: ResourceTable.Selected) -> None:
        from .task import TaskScreen
        if event.table.id in ("tasks", "history") and event.row[4] != "PENDING":
            self.app.push_screen(TaskScreen(event.key))
        elif event.table.id in ("deploys",) and self.data is not None:
            found = next((d for d in self.data.deploys if d.get("deployMarker", {}).get("deployId") == event.key),
                         None)
            self.inspect(f"deploy {event.key} of {self.request_id}", found, "describe")
        elif event.table.id == "tasks":
            self.notify(event.row[5] or "waiting to be placed", title="Pending task")

    def action_task_logs(self) -> None:
        from .logs import LogScreen
        task = self._selected_task()
        if task is None:
            self.notify("Select a running or finished task (Tasks or Task history tab)", severity="warning")
            return
        self.app.push_screen(LogScreen.for_task_ids([task]))

    def action_kill_task(self) -> None:
        task = self._selected_task()
        if task is None:
            self.notify("Select a task first", severity="warning")
            return

        async def submit(values: dict[str, Any]) -> str:
            await self.client.kill_task(task, values["message"] or None)
            return f"Killing {task} (SIGTERM, then SIGKILL after the grace period)"
        self.open_form("Kill task", [task], [Field("message", "Message (optional)")], "Kill", submit, danger=True,
                       note="A long-running request starts a replacement.")

    def action_cancel_deploy(self) -> None:
        pending = pending_deploy_id(self.data.parent) if self.data else ""
        if not pending:
            self.notify(f"{self.request_id} has no deploy in progress", severity="warning")
            return

        async def submit(values: dict[str, Any]) -> str:
            await self.client.cancel_deploy(self.request_id, pending)
            return f"Cancelled deploy {pending} of {self.request_id}"
        self.open_form(f"Cancel deploy {pending}", [f"{self.request_id} {pending}"], [], "Cancel deploy", submit,
                       danger=True, note="Its new tasks are killed; the active deploy keeps serving.")

    def palette_commands(self) -> list[PaletteCommand]:
        out = self.request_palette()
        task = self._selected_task()
        if task:
            out.insert(0, (f"Logs of {task}", "follow stdout", self.action_task_logs))
            if self.allowed("kill_task"):
                out.append((f"Kill {task}", "SIGTERM, then SIGKILL", self.action_kill_task))
        if self.data and pending_deploy_id(self.data.parent) and self.allowed("cancel_deploy"):
            out.append(("Cancel the pending deploy", pending_deploy_id(self.data.parent), self.action_cancel_deploy))
        return out
