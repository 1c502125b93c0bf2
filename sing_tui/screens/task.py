"""One task: status timeline, host, ports, resources, env, health-check results; its logs, archived
log files and sandbox."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from .. import archive
from ..client import ApiError
from ..model import (
    TERMINAL_STATES,
    Json,
    ended_state,
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
from ..widgets.resource_table import Column, ResourceTable, size_key
from .base import PaletteCommand, SingScreen
from .form import Field
from .request import task_state_style

TIMELINE_COLUMNS = [Column("TIME (UTC)", width=19), Column("+", max_width=9), Column("STATE", max_width=12,
                    style=task_state_style), Column("MESSAGE", max_width=60)]
ENV_COLUMNS = [Column("NAME", max_width=30), Column("VALUE", max_width=80)]
HEALTH_COLUMNS = [Column("TIME (UTC)", width=19), Column("STATUS", max_width=8), Column("MS", max_width=7),
                  Column("RESULT", max_width=60)]
ARCHIVE_TABLE_COLUMNS = [Column(archive.ARCHIVE_COLUMNS[0], max_width=20),
                         Column(archive.ARCHIVE_COLUMNS[1], align_right=True, max_width=9, sort_key=size_key),
                         Column(archive.ARCHIVE_COLUMNS[2], width=19), Column(archive.ARCHIVE_COLUMNS[3], width=19)]
# The archive listing is re-read on every poll while its tab is shown, else on every this many polls.
ARCHIVE_EVERY_POLLS = 5
NO_ARCHIVE = "no archived log files (yet): logs are archived when they rotate and when the task ends"


def sandbox_unknown(state: str) -> str:
    """What the Sandbox line says when the history names no directory. The backend learns it when the
    task starts running (local mode) or when it is first looked up (mesos mode: asked of the agent on
    demand), and records what it had when the task ended: for an ended task it will never appear. Its
    agent may still list the sandbox among its completed executors, which is where `b` looks."""
    if state in TERMINAL_STATES:
        return "not recorded: the task ended before the backend learned it (b asks its agent)"
    return "not yet known (b asks its agent)"


@dataclass
class TaskData:
    history: Json
    archived: list[Json] | None  # None: not read this time (keep the last listing)
    archive_error: str = ""


class TaskScreen(SingScreen):
    GONE_ON_404 = True
    FILTERABLE = False
    MUTATING: ClassVar[frozenset[str]] = frozenset({"kill"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs('stdout')", "Logs", id="task.logs"),
        Binding("e", "logs('stderr')", "Stderr", id="task.stderr"),
        Binding("b", "browse", "Sandbox", id="task.sandbox"),
        Binding("a", "archive", "Archive", id="task.archive"),
        Binding("ctrl+s", "save_archived", "Save archived log", show=False, id="task.save_archived"),
        Binding("u", "request", "Request", show=False, id="task.request"),
        Binding("p", "failed_logs", "Last failed logs", show=False, id="task.failed_logs"),
        Binding("K", "kill", "Kill", show=False, id="task.kill"),
        Binding("d", "describe", "Describe", show=False, id="task.describe"),
        Binding("y", "raw", "JSON", show=False, id="task.json"),
        Binding("right_square_bracket", "tab(1)", "Next tab", show=False, id="task.next_tab"),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", show=False, id="task.prev_tab"),
    ]
    TABS = ("tab-overview", "tab-timeline", "tab-env", "tab-health", "tab-archive")

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.history: Json | None = None
        self.archived: dict[str, Json] = {}  # by key
        self.archive_loaded = False
        self._polls = 0

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
            with TabPane("Archived logs", id="tab-archive"):
                yield ResourceTable(ARCHIVE_TABLE_COLUMNS, empty_text=NO_ARCHIVE, id="archive")
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
                  "tab-health": "#health", "tab-archive": "#archive"}[event.pane.id or "tab-overview"]
        self.call_after_refresh(self.query_one(target).focus)
        if event.pane.id == "tab-archive":
            self.poll()

    async def fetch(self) -> TaskData:
        listing = self._polls % ARCHIVE_EVERY_POLLS == 0 or \
            self.query_one("#tabs", TabbedContent).active == "tab-archive"
        self._polls += 1
        if not listing:
            return TaskData(await self.client.task_history(self.task_id), None)
        history, archived = await asyncio.gather(self.client.task_history(self.task_id),
                                                 self.client.task_logs(self.task_id), return_exceptions=True)
        if isinstance(history, BaseException):
            raise history  # the poll's own handling: unreachable, or gone (404)
        if isinstance(archived, ApiError):
            return TaskData(history, [], f"no archived logs: {archived.message}")
        if isinstance(archived, BaseException):
            raise archived
        return TaskData(history, archived or [])

    def show(self, data: TaskData) -> None:
        if data.archived is not None:
            self.archived = {e["key"]: e for e in data.archived if e.get("key")}
            self.archive_loaded = True
            table = self.query_one("#archive", ResourceTable)
            table.empty_text = data.archive_error or NO_ARCHIVE
            table.set_rows({key: archive.archive_row(e) for key, e in self.archived.items()})
        self._show_history(data.history)

    def _show_history(self, history: Json) -> None:
        self.history = history
        now = now_ms(self.sing.clock)
        task = history["task"]
        tid = task["taskId"]
        updates = history.get("taskUpdates") or []
        state = ended_state(updates) or (updates[-1]["taskState"] if updates else "TASK_LAUNCHED")
        summary = Text()
        summary.append(short_state(state), style=task_state_style(short_state(state)) or "bold")
        summary.append(f"  {tid['requestId']}", style="bold")
        summary.append(f" · deploy {tid['deployId']} · instance {tid.get('instanceNo', '?')} · started "
                       f"{fmt_age(tid.get('startedAt'), now)} ago")
        if state in TERMINAL_STATES:
            # "ended", not "finished": FINISHED is only one of the ways to end (the state is shown first).
            summary.append(" · ended", style="dim")
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
        grid.add_row("Sandbox", history.get("directory") or sandbox_unknown(state))
        if self.archived:
            n = len(self.archived)
            names = ", ".join(archive.entry_label(e) for e in archive.oldest_first(self.archived.values())[:4])
            grid.add_row("Archived logs", Text.assemble(f"{n} file{'s' if n != 1 else ''} ({names}"
                                                        f"{', …' if n > 4 else ''}) — ", ("a", "bold"), " lists them"))
        elif self.archive_loaded and state in TERMINAL_STATES:
            grid.add_row("Archived logs", "none")
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

    def action_archive(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "tab-archive"

    def _selected_archived(self) -> Json | None:
        """The archived file under the cursor, while the Archived logs tab is shown."""
        if self.query_one("#tabs", TabbedContent).active != "tab-archive":
            return None
        table = self.query_one("#archive", ResourceTable)
        return self.archived.get(table.cursor_key) if table.cursor_key else None

    @on(ResourceTable.Selected, "#archive")
    def _open_archived(self, event: ResourceTable.Selected) -> None:
        entry = self.archived.get(event.key)
        if entry is not None:
            self.open_archived(entry)

    def open_archived(self, entry: Json) -> None:
        from .logs import LogScreen
        self.app.push_screen(LogScreen.for_archive(self.task_id, [entry]))

    def action_archived_stream(self, stream: str) -> None:
        """Every archived segment of a stream, oldest first, as one log."""
        from .logs import LogScreen
        entries = archive.of_stream(self.archived.values(), stream)
        if not entries:
            self.notify(f"No archived {stream} for this task", severity="warning")
            return
        self.app.push_screen(LogScreen.for_archive(self.task_id, entries))

    def action_save_archived(self) -> None:
        entry = self._selected_archived()
        if entry is None:
            self.notify("Select an archived log file first (a: the Archived logs tab)", severity="warning")
            return
        self.save_archived(self.task_id, [entry])

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
            ("Archived log files", "rotated and final logs, kept after the sandbox is gone", self.action_archive),
            ("Archived stdout, whole", "every archived segment, oldest first",
             lambda: self.action_archived_stream("stdout")),
            ("Archived stderr, whole", "every archived segment, oldest first",
             lambda: self.action_archived_stream("stderr")),
            (f"Open request {self.request_id}", "the task's request", self.action_request),
            (f"Logs of {self.request_id}'s last failed task", "", self.action_failed_logs),
            ("Describe", "every field", self.action_describe),
            ("Raw JSON", "the API's JSON", self.action_raw)]
        entry = self._selected_archived()
        if entry is not None:
            label = archive.entry_label(entry)
            out.insert(0, (f"Open archived {label}", "in the log view", lambda: self.open_archived(entry)))
            out.insert(1, (f"Save archived {label}", "to a local file", self.action_save_archived))
        if self.allowed("kill"):
            out.append((f"Kill {self.task_id}", "SIGTERM, then SIGKILL", self.action_kill))
        return out
