"""The cluster at a glance: counts from /api/state, the leader, pending tasks with the reason each is
not placed, and recent failures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from ..client import ApiError
from ..model import (
    FAILURE_COLUMNS,
    PENDING_COLUMNS,
    Json,
    Problem,
    cluster_problems,
    failure_row,
    leader_line,
    now_ms,
    pending_row,
    state_counts,
)
from ..widgets.resource_table import Column, ResourceTable, age_key
from .base import PaletteCommand, SingScreen

# Counts that deserve attention when they are not zero.
ALARMS = {"cooldown", "late", "dead", "racks dead", "decommissioning", "under-provisioned", "over-provisioned"}
# How many requests the failure fallback looks into (for a backend without the global task search).
FALLBACK_REQUESTS = 10
FAILURES_SHOWN = 20


@dataclass
class DashboardData:
    state: Json
    pending: list[Json]
    failures: list[Json]
    failures_note: str
    failures_stale: bool = False
    problems: tuple[Problem, ...] = ()


class DashboardScreen(SingScreen):
    REPORTS_PROBLEMS = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "switch_table", "Pending/failures", id="dashboard.switch"),
        Binding("l", "logs", "Logs", id="dashboard.logs"),
        Binding("d", "inspect('describe')", "Describe", show=False, id="dashboard.describe"),
        Binding("y", "inspect('json')", "JSON", show=False, id="dashboard.json"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data: DashboardData | None = None

    def crumbs(self) -> list[str]:
        return ["Dashboard"]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static("loading…", id="counts")
        yield Static("", id="leader")
        yield Static("Pending tasks — why each is not placed yet", id="pending-title", classes="section-title")
        yield ResourceTable([Column(PENDING_COLUMNS[0], max_width=30), Column(PENDING_COLUMNS[1], sort_key=age_key),
                             Column(PENDING_COLUMNS[2], max_width=120)],
                            empty_text="no pending tasks: everything is placed", id="pending")
        yield Static("", id="pending-detail")
        yield Static("Recent failures", id="failures-title", classes="section-title")
        yield ResourceTable([Column(FAILURE_COLUMNS[0], max_width=48, grow=True),
                             Column(FAILURE_COLUMNS[1], max_width=8, style=lambda c: "bold red"),
                             Column(FAILURE_COLUMNS[2], sort_key=age_key), Column(FAILURE_COLUMNS[3])],
                            empty_text="no recent failures", id="failures")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#pending", ResourceTable).focus()

    def main_widget(self) -> Widget | None:
        return self.query_one("#pending", ResourceTable)

    async def fetch(self) -> DashboardData:
        c = self.client
        (state, stale), pending = await asyncio.gather(c.state_and_staleness(), c.scheduled_tasks())
        problems = cluster_problems(state, stale=stale)
        try:
            failures = await c.recent_failures(count=FAILURES_SHOWN)
        except ApiError as exc:
            # The history can be away (a database outage answers 503) while the scheduler is fine: keep
            # the rest of the dashboard, and the failures last seen, and say why they may be stale.
            last = self.data.failures if self.data else []
            return DashboardData(state, pending, last, f" — not updated: {exc.message}", failures_stale=True,
                                 problems=problems)
        note = ""
        if failures is None:
            # No global task search on this backend: look at the requests most likely to be failing.
            suspects = list(dict.fromkeys(state.get("underProvisionedRequestIds", [])))
            try:
                suspects += [p["request"]["id"] for p in await c.get("/requests/cooldown")]
            except ApiError:
                pass
            suspects = list(dict.fromkeys(suspects))[:FALLBACK_REQUESTS]
            found = await asyncio.gather(*(c.last_failed_task(rid) for rid in suspects))
            failures = sorted((f for f in found if f), key=lambda f: f.get("updatedAt", 0), reverse=True)
            note = " (of requests in cool-down or under-provisioned)"
        return DashboardData(state, pending, failures, note, problems=problems)

    def show(self, data: DashboardData) -> None:
        self.data = data
        self.sing.report_problems(data.problems)
        now = now_ms(self.sing.clock)
        text = Text()
        for i, (group, items) in enumerate(state_counts(data.state).items()):
            if i:
                text.append("\n")
            text.append(f"{group:<9}", style="bold")
            for label, n in items:
                style = "bold red" if label in ALARMS and n else ("bold" if n else "dim")
                text.append(f" {n:,}", style=style)
                text.append(f" {label} ", style="dim" if not n else "")
        self.query_one("#counts", Static).update(text)
        leader = Text("Leader  ", style="bold")
        leader.append(leader_line(data.state, now))
        self.query_one("#leader", Static).update(leader)
        self.query_one("#pending-title", Static).update(
            f"Pending tasks ({len(data.pending):,}) — why each is not placed yet")
        self.query_one("#pending", ResourceTable).set_rows(
            {e["pendingTask"]["pendingTaskId"]["id"]: pending_row(e, now) for e in data.pending})
        title = Text("Recent failures")
        if data.failures_stale:
            title.append(data.failures_note, style="bold yellow")
        else:
            title.append(data.failures_note or " (failed, lost or errored tasks)")
        self.query_one("#failures-title", Static).update(title)
        self.query_one("#failures", ResourceTable).set_rows(
            {f["taskId"]["id"]: failure_row(f, now) for f in data.failures})

    @on(ResourceTable.Highlighted, "#pending")
    @on(ResourceTable.Changed, "#pending")
    def _pending_detail(self) -> None:
        """The full reason of the selected pending task (the table cuts it at the screen's edge)."""
        table = self.query_one("#pending", ResourceTable)
        row = table.row(table.cursor_key) if table.cursor_key else None
        detail = self.query_one("#pending-detail", Static)
        detail.update(Text.assemble((f"{row[0]}: ", "bold"), row[2]) if row else "")
        detail.display = row is not None

    def action_switch_table(self) -> None:
        table = self.focused
        other = "#failures" if isinstance(table, ResourceTable) and table.id == "pending" else "#pending"
        self.query_one(other, ResourceTable).focus()

    @on(ResourceTable.Selected, "#failures")
    def _open_failure(self, event: ResourceTable.Selected) -> None:
        from .task import TaskScreen
        self.app.push_screen(TaskScreen(event.key))

    @on(ResourceTable.Selected, "#pending")
    def _open_pending(self, event: ResourceTable.Selected) -> None:
        self.sing.open_request(event.row[0].rsplit("#", 1)[0])

    def action_inspect(self, mode: str) -> None:
        """`d`/`y` on the selected pending task or failure; on the cluster state if neither has rows."""
        if self.data is None:
            return
        table = self.focused if isinstance(self.focused, ResourceTable) else None
        key = table.cursor_key if table else None
        if table is not None and key is not None:
            rows = self.data.pending if table.id == "pending" else self.data.failures
            found = next((r for r in rows if key in (r.get("pendingTask", {}).get("pendingTaskId", {}).get("id"),
                                                     r.get("taskId", {}).get("id"))), None)
            self.inspect(key, found, mode)
        else:
            self.inspect("cluster state", self.data.state, mode)

    def action_logs(self) -> None:
        from .logs import LogScreen
        if self.focused is self.query_one("#pending", ResourceTable):
            # Not the logs of a failure the cursor of another table is on, unseen.
            self.notify("A pending task has not run yet, so it has no logs; Tab to the recent failures",
                        severity="warning")
            return
        table = self.query_one("#failures", ResourceTable)
        if table.cursor_key is None:
            self.notify("No failed task to show", severity="warning")
            return
        self.app.push_screen(LogScreen.for_task_ids([table.cursor_key]))

    def palette_commands(self) -> list[PaletteCommand]:
        out: list[PaletteCommand] = []
        failures = self.query_one("#failures", ResourceTable)
        if failures.cursor_key:
            out.append((f"Logs of failed task {failures.cursor_key}", "stdout", self.action_logs))
        pending = self.query_one("#pending", ResourceTable)
        if pending.cursor_key and (row := pending.row(pending.cursor_key)):
            rid = row[0].rsplit("#", 1)[0]
            out.append((f"Open request {rid}", "of the selected pending task", lambda: self.sing.open_request(rid)))
        return out
