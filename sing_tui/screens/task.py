"""One task: status timeline, host, ports, resources, env, health-check results; its logs and sandbox."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from ..model import (
    TERMINAL_STATES,
    Json,
    fmt_age,
    fmt_ts,
    now_ms,
    short_state,
    task_command,
    task_env,
    task_ports,
    task_resources,
    updates_timeline,
)
from ..widgets.resource_table import Column, ResourceTable
from .base import PaletteCommand, SingScreen
from .form import Field
from .request import task_state_style

TIMELINE_COLUMNS = [Column("TIME (UTC)", width=19), Column("+", max_width=9), Column("STATE", max_width=12,
                    style=task_state_style), Column("MESSAGE", max_width=60)]
ENV_COLUMNS = [Column("NAME", max_width=30), Column("VALUE", max_width=80)]
HEALTH_COLUMNS = [Column("TIME (UTC)", width=19), Column("STATUS", max_width=8), Column("MS", max_width=7),
                  Column("RESULT", max_width=60)]


class TaskScreen(SingScreen):
    GONE_ON_404 = True
    FILTERABLE = False
    MUTATING: ClassVar[frozenset[str]] = frozenset({"kill"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs('stdout')", "Logs", id="task.logs"),
        Binding("e", "logs('stderr')", "Stderr", id="task.stderr"),
        Binding("b", "browse", "Sandbox", id="task.sandbox"),
        Binding("u", "request", "Request", show=False, id="task.request"),
        Binding("p", "failed_logs", "Last failed logs", show=False, id="task.failed_logs"),
        Binding("K", "kill", "Kill", show=False, id="task.kill"),
        Binding("d", "describe", "Describe", show=False, id="task.describe"),
        Binding("y", "raw", "JSON", show=False, id="task.json"),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False, id="task.next_tab"),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False, id="task.prev_tab"),
    ]
    TABS = ("tab-overview", "tab-timeline", "tab-env", "tab-health")

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.history: Json | None = None

    @property
    def request_id(self) -> str:
        if self.history:
            return self.history["task"]["taskId"]["requestId"]
        return self.task_id.rsplit("-", 5)[0]  # <request>-<deploy>-<started>-<instance>-<host>-<rack>

    def crumbs(self) -> list[str]:
        return ["Task", self.task_id]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static("loading…", id="summary")
        with TabbedContent(id="tabs"):
            with TabPane("Overview", id="tab-overview"), VerticalScroll(id="overview-scroll"):
                yield Static(id="overview")
            with TabPane("Timeline", id="tab-timeline"):
                yield ResourceTable(TIMELINE_COLUMNS, empty_text="no status updates yet", id="timeline")
            with TabPane("Env", id="tab-env"):
                yield ResourceTable(ENV_COLUMNS, empty_text="no environment", id="env")
            with TabPane("Health checks", id="tab-health"):
                yield ResourceTable(HEALTH_COLUMNS, empty_text="no health-check results (none configured, or "
                                    "not checked yet)", id="health")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#overview-scroll").focus()

    def main_widget(self) -> Widget | None:
        return self.query_one("#overview-scroll")

    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        tabs.active = self.TABS[(self.TABS.index(tabs.active) + step) % len(self.TABS)]

    @on(TabbedContent.TabActivated)
    def _focus_tab(self, event: TabbedContent.TabActivated) -> None:
        target = {"tab-overview": "#overview-scroll", "tab-timeline": "#timeline", "tab-env": "#env",
                  "tab-health": "#health"}[event.pane.id or "tab-overview"]
        self.call_after_refresh(self.query_one(target).focus)

    async def fetch(self) -> Json:
        return await self.client.task_history(self.task_id)

    def show(self, history: Json) -> None:
        self.history = history
        now = now_ms(self.sing.clock)
        task = history["task"]
        tid = task["taskId"]
        updates = history.get("taskUpdates") or []
        state = updates[-1]["taskState"] if updates else "TASK_LAUNCHED"
        summary = Text()
        summary.append(short_state(state), style=task_state_style(short_state(state)) or "bold")
        summary.append(f"  {tid['requestId']}", style="bold")
        summary.append(f" · deploy {tid['deployId']} · instance {tid.get('instanceNo', '?')} · started "
                       f"{fmt_age(tid.get('startedAt'), now)} ago")
        if state in TERMINAL_STATES:
            summary.append(" · finished", style="dim")
        self.query_one("#summary", Static).update(summary)

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        res = task_resources(task)
        ports = task_ports(task)
        grid.add_row("Host", f"{tid.get('host', '?')}  (agent {task.get('agentId', {}).get('value', '?')}, "
                             f"rack {tid.get('rackId', task.get('rackId', '?'))})")
        grid.add_row("Ports", ", ".join(map(str, ports)) or "none")
        grid.add_row("Resources", "  ".join(f"{k} {v:g}" for k, v in res.items()) or "-")
        grid.add_row("Command", task_command(task) or "-")
        grid.add_row("Started", fmt_ts(tid.get("startedAt")) + " UTC")
        if updates:
            grid.add_row("Last update", f"{short_state(updates[-1]['taskState'])} at {fmt_ts(updates[-1]['timestamp'])}"
                                        f" UTC {updates[-1].get('statusMessage', '') or ''}")
        grid.add_row("Sandbox", history.get("directory") or "not yet known")
        grid.add_row("Id", self.task_id)
        self.query_one("#overview", Static).update(grid)

        self.query_one("#timeline", ResourceTable).set_rows(
            {f"{i:04d}": row for i, row in enumerate(updates_timeline(updates, tid.get("startedAt")))})
        self.query_one("#env", ResourceTable).set_rows({k: (k, v) for k, v in sorted(task_env(task).items())})
        checks = history.get("healthcheckResults") or []
        self.query_one("#health", ResourceTable).set_rows({
            f"{c.get('timestamp', 0)}-{i}": (
                fmt_ts(c.get("timestamp")), str(c.get("statusCode", "-")), str(c.get("durationMillis", "-")),
                ("startup: " if c.get("startup") else "") + (c.get("errorMessage") or (c.get("responseBody") or "")
                                                             [:200].replace("\n", " ")))
            for i, c in enumerate(checks)})

    # ---- actions
    def action_logs(self, stream: str) -> None:
        from .logs import LogScreen
        self.app.push_screen(LogScreen.for_task_ids([self.task_id], stream=stream))

    def action_browse(self) -> None:
        from .sandbox import SandboxScreen
        self.app.push_screen(SandboxScreen(self.task_id))

    def action_request(self) -> None:
        from .request import RequestScreen
        self.app.push_screen(RequestScreen(self.request_id))

    def action_failed_logs(self) -> None:
        self.open_failed_logs(self.request_id)

    def action_kill(self) -> None:
        async def submit(values: dict[str, Any]) -> str:
            await self.client.kill_task(self.task_id, values["message"] or None)
            return f"Killing {self.task_id}"
        self.open_form("Kill task", [self.task_id], [Field("message", "Message (optional)")], "Kill", submit,
                       danger=True, note="SIGTERM, then SIGKILL after the grace period; a long-running request "
                                         "starts a replacement.")

    def action_describe(self) -> None:
        self.inspect(self.task_id, self.history, "describe")

    def action_raw(self) -> None:
        self.inspect(self.task_id, self.history, "json")

    def palette_commands(self) -> list[PaletteCommand]:
        out: list[PaletteCommand] = [
            ("Follow stdout", self.task_id, lambda: self.action_logs("stdout")),
            ("Follow stderr", self.task_id, lambda: self.action_logs("stderr")),
            ("Browse the sandbox", self.task_id, self.action_browse),
            (f"Open request {self.request_id}", "the task's request", self.action_request),
            (f"Logs of {self.request_id}'s last failed task", "", self.action_failed_logs),
            ("Describe", "every field", self.action_describe),
            ("Raw JSON", "the API's JSON", self.action_raw)]
        if self.allowed("kill"):
            out.append((f"Kill {self.task_id}", "SIGTERM, then SIGKILL", self.action_kill))
        return out
