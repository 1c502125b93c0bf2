"""The log view: follows one task's stdout or stderr (or every instance of a request, each line prefixed
and coloured by task) through the sandbox `read` API, by byte offset, written in batches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from ..client import ApiError, Unreachable
from ..logtail import LogTail
from ..messages import BackendStatus
from ..model import Json
from ..query import Filter
from ..widgets.log_view import LogView
from .base import PaletteCommand, SingScreen
from .form import Field


class LogBatch(Message):
    """Lines read in one poll of every followed file: (task index, line)."""

    def __init__(self, generation: int, lines: list[tuple[int, str]], markers: list[str]) -> None:
        super().__init__()
        self.generation = generation
        self.lines = lines
        self.markers = markers


def task_label(task_id: Json) -> str:
    return f"{task_id.get('deployId', '?')}#{task_id.get('instanceNo', '?')}"


class LogScreen(SingScreen):
    FILTERABLE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="logs.filter"),
        Binding("o", "switch_stream", "Out/err", id="logs.stream"),
        Binding("h", "toggle_mode", "Hide/highlight", id="logs.mode"),
        Binding("n", "match(1)", "Next match", show=False, id="logs.next"),
        Binding("N", "match(-1)", "Previous match", show=False, id="logs.previous"),
        Binding("w", "wrap", "Wrap", id="logs.wrap"),
        Binding("g,home", "top", "Top", show=False, id="logs.top"),
        Binding("G,end", "bottom", "Bottom (follow)", show=False, id="logs.bottom"),
        Binding("f", "toggle_follow", "Follow on/off", show=False, id="logs.follow"),
        Binding("ctrl+s", "save", "Save to file", show=False, id="logs.save"),
        Binding("p", "failed_logs", "Last failed task's logs", show=False, id="logs.failed_logs"),
        Binding("t", "task", "Task", show=False, id="logs.task"),
    ]

    def __init__(self, task_ids: list[str], labels: list[str] | None = None, *, stream: str = "stdout",
                 path: str | None = None, title: str = "") -> None:
        super().__init__()
        self.task_ids = task_ids
        self.labels = labels if labels and len(task_ids) > 1 else []
        self.stream = stream
        self.path = path  # an explicit sandbox file (from the sandbox browser) instead of stdout/stderr
        self.title_text = title
        self._generation = 0

    @classmethod
    def for_tasks(cls, task_ids: list[Json], *, stream: str = "stdout", title: str = "") -> LogScreen:
        return cls([t["id"] for t in task_ids], [task_label(t) for t in task_ids], stream=stream, title=title)

    @classmethod
    def for_task_ids(cls, task_ids: list[str], *, stream: str = "stdout") -> LogScreen:
        return cls(task_ids, stream=stream)

    @property
    def request_id(self) -> str:
        # Task ids are "<requestId>-<deployId>-<startedAt>-<instance>-<host>-<rack>"; request ids may
        # contain dashes, so strip the five trailing parts.
        return self.task_ids[0].rsplit("-", 5)[0]

    def crumbs(self) -> list[str]:
        what = self.path or self.stream
        if len(self.task_ids) > 1:
            return ["Logs", f"{self.request_id} ({len(self.task_ids)} tasks)", what]
        return ["Logs", self.task_ids[0], what]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(self._title(), id="log-title", classes="status-line")
        yield LogView(max_lines=self.sing.config.log_max_lines, sources=self.labels, id="log")
        yield Static(id="log-status", classes="status-line")
        yield from self.chrome_bottom()

    def _title(self) -> Text:
        text = Text()
        text.append(self.path or self.stream, style="bold")
        text.append(" of ")
        text.append(self.title_text or (self.task_ids[0] if len(self.task_ids) == 1 else
                                        f"{len(self.task_ids)} tasks"), style="bold")
        return text

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log", LogView)

    def main_widget(self) -> Widget | None:
        return self.log_view

    def on_mount(self) -> None:
        super().on_mount()
        self.log_view.focus()
        self._restart()

    def on_screen_resume(self) -> None:
        self._show_connection(self.sing.connection)  # logs have their own faster poll, no table refresh

    # ---- following
    def _paths(self) -> list[str]:
        if self.path:
            return [self.path]
        return [f"{tid}/{self.stream}.log" for tid in self.task_ids]

    def _restart(self) -> None:
        self._generation += 1
        self.query_one("#log-title", Static).update(self._title())
        self.top_bar_crumbs()
        self._follow(self._generation)

    def top_bar_crumbs(self) -> None:
        from ..widgets.top_bar import TopBar
        for bar in self.query(TopBar):
            bar.set_crumbs(self.crumbs())

    @work(group="follow", exclusive=True, exit_on_error=False)
    async def _follow(self, generation: int) -> None:
        cfg = self.sing.config
        tails = [LogTail(self.client, tid, path, tail_bytes=cfg.log_tail_bytes)
                 for tid, path in zip(self.task_ids, self._paths(), strict=True)]
        problems: dict[int, str] = {}
        interval = cfg.log_poll_seconds
        while True:
            results = await asyncio.gather(*(t.poll() for t in tails), return_exceptions=True)
            batch: list[tuple[int, str]] = []
            markers: list[str] = []
            down = None
            for i, result in enumerate(results):
                if isinstance(result, BaseException):
                    if isinstance(result, Unreachable):
                        down = result
                    message = str(result) if isinstance(result, ApiError | Unreachable) else repr(result)
                    if problems.get(i) != message:  # say it once, not every poll
                        problems[i] = message
                        who = f"{self.labels[i]}: " if self.labels else ""
                        markers.append(f"— {who}{message}; retrying —")
                    continue
                if i in problems:
                    del problems[i]
                    markers.append(f"— {self.labels[i] + ': ' if self.labels else ''}reading again —")
                while tails[i].notes:
                    markers.append(f"— {tails[i].notes.pop(0)} —")
                batch.extend((i, line) for line in result)
            if down is not None:
                self.app.post_message(BackendStatus(str(down)))
            if batch or markers:
                self.post_message(LogBatch(generation, batch, markers))
            await asyncio.sleep(interval if not problems else max(interval, 1.0))

    @on(LogBatch)
    def _write(self, message: LogBatch) -> None:
        if message.generation != self._generation:
            return  # from the stream we just switched away from
        log = self.log_view
        for marker in message.markers:
            log.write_marker(marker)
        log.write_batch(message.lines)

    @on(LogView.StatusChanged)
    def _status(self) -> None:
        log = self.log_view
        text = Text()
        if log.follow:
            text.append("● FOLLOW", style="bold green")
        else:
            text.append("❚❚ PAUSED", style="bold yellow")
            if log.new_lines:
                text.append(f" · {log.new_lines:,} new line{'s' if log.new_lines != 1 else ''} (End to follow)",
                            style="bold yellow")
        text.append(f" · {log.line_count:,} lines · {self.path or self.stream}")
        if log.filter.active:
            mode = "highlight" if log.highlight_mode else "hide others"
            text.append(f" · {log.filter.describe()} {mode}: {log.match_count:,} matching", style="cyan")
            if log.highlight_mode and log.current_match >= 0:
                text.append(f" ({log.current_match + 1}/{log.match_count}; n/N)", style="cyan")
        if log.wrap:
            text.append(" · wrap")
        self.query_one("#log-status", Static).update(text, layout=False)  # one fixed line: no relayout

    # ---- keys
    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt
        self.log_view.set_filter(filt)

    def action_back(self) -> None:
        if self.filter.active:
            self.apply_filter(Filter())
        else:
            self.app.pop_screen()

    def action_switch_stream(self) -> None:
        if self.path:
            self.notify("This view follows one sandbox file", severity="warning")
            return
        self.stream = "stderr" if self.stream == "stdout" else "stdout"
        self.log_view.clear()
        self._restart()

    def action_toggle_mode(self) -> None:
        self.log_view.highlight_mode = not self.log_view.highlight_mode

    def action_match(self, direction: int) -> None:
        log = self.log_view
        if not log.filter.active:
            self.notify("Set a filter with / first", severity="warning")
            return
        if not log.highlight_mode:
            log.highlight_mode = True
        if not log.next_match(direction):
            self.notify(f"No line matches {log.filter.describe()}", severity="warning")

    def action_wrap(self) -> None:
        self.log_view.wrap = not self.log_view.wrap
        self._status()

    def action_top(self) -> None:
        self.log_view.go_top()

    def action_bottom(self) -> None:
        self.log_view.go_bottom()

    def action_toggle_follow(self) -> None:
        if self.log_view.follow:
            self.log_view.follow = False
        else:
            self.log_view.go_bottom()

    def action_save(self) -> None:
        name = (self.request_id if len(self.task_ids) > 1 else self.task_ids[0]) + f"-{self.stream}.log"
        lines = self.log_view.plain_lines()

        async def submit(values: dict[str, Any]) -> str:
            path = Path(values["path"]).expanduser()
            await asyncio.to_thread(path.write_text, "\n".join(lines) + ("\n" if lines else ""))
            return f"Saved {len(lines):,} lines to {path}"

        def parse(text: str) -> str:
            if not text.strip():
                raise ValueError("path: enter a file name")
            return text.strip()
        self.open_form("Save the log to a file", [], [Field("path", "File", value=name, parse=parse)], "Save",
                       submit, note=f"{len(lines):,} lines (the whole buffer, not only the filtered ones)")

    def action_failed_logs(self) -> None:
        self.open_failed_logs(self.request_id)

    def action_task(self) -> None:
        from .task import TaskScreen
        self.app.push_screen(TaskScreen(self.task_ids[0]))

    def palette_commands(self) -> list[PaletteCommand]:
        return [("Switch stdout / stderr", "", self.action_switch_stream),
                ("Toggle hide / highlight for the filter", "", self.action_toggle_mode),
                ("Toggle wrap", "", self.action_wrap),
                ("Save the log to a file", "", self.action_save),
                (f"Logs of {self.request_id}'s last failed task", "", self.action_failed_logs),
                ("Open the task", self.task_ids[0], self.action_task)]
