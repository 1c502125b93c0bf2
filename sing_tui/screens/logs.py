"""The log view: follows one task's stdout or stderr (or every instance of a request, each line prefixed
and coloured by task) through the sandbox `read` API, by byte offset, written in batches. A task that
has ended is read to the end of its file, from the start (as much as the view keeps), and no longer
polled; one that ends while watched is read to the end, then left. It also shows archived log files
(downloaded and gunzipped here), and falls back to them by itself when a task's sandbox is gone."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from .. import archive
from ..client import ApiError, ClientError, Unreachable
from ..connection import backoff
from ..logtail import LogTail
from ..messages import BackendStatus
from ..model import Json, ended_state, fmt_ts, short_state
from ..query import Filter
from ..widgets.log_view import LogView
from .base import PaletteCommand, SingScreen
from .form import Field


@dataclass
class _Following:
    """The reading of the followed tasks' logs, by task index."""

    tails: list[LogTail]
    ending: dict[int, str]  # ended tasks (their state): read to the end of the file, then left
    done: set[int] = field(default_factory=set)  # read to the end after the task ended
    cut_to_fit: set[int] = field(default_factory=set)  # read from the end: say so if that left some out
    problems: dict[int, str] = field(default_factory=dict)  # the failure last said, until a read works
    missing: dict[int, int] = field(default_factory=dict)  # failed reads (no sandbox file), for the archive
    unknown_reads: dict[int, int] = field(default_factory=dict)  # reads in a row: the backend knows no such task


@dataclass
class _Poll:
    """What one poll of every task gives: lines (-1: a marker among them), markers, tasks seen to end."""

    batch: list[tuple[int, str]] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    ended: dict[int, str] = field(default_factory=dict)


class LogBatch(Message):
    """Lines read in one poll of every followed file: (task index, line); and the tasks (index: last
    state) whose file was read to its end after they ended, with this batch."""

    def __init__(self, generation: int, lines: list[tuple[int, str]], markers: list[str],
                 ended: dict[int, str] | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.lines = lines
        self.markers = markers
        self.ended = ended or {}


def task_label(task_id: Json) -> str:
    return f"{task_id.get('deployId', '?')}#{task_id.get('instanceNo', '?')}"


# A task whose sandbox cannot be read: look for its archived logs on the first failed read, then again
# every this many failed reads (its sandbox may not exist yet, or the archive may still be uploading).
ARCHIVE_RECHECK_POLLS = 20
# An ended task's file is read from this many bytes per line the view keeps before its end: all of any
# ordinary log, without fetching gigabytes of which the view would keep only the last lines.
WHOLE_LOG_BYTES_PER_LINE = 256
# Reads of an ended task's file per round before the lines are shown (a long log arrives in parts).
DRAIN_POLLS = 8
# The backend answers this (404) when neither its live state nor its history knows a task. A standby may
# say it of a task launched since its last snapshot, so it is believed only after this many reads in a
# row, and once the task's history says the same.
UNKNOWN_TASK = "Couldn't find task"
UNKNOWN_TASK_POLLS = 3


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

    def poll(self) -> None:
        """Nothing to poll: the lines come from following the files (see _follow), which also tells the
        app whether the backend answers. (The base poll, which fetches nothing here, told it "reachable"
        every refresh, even with the backend down.)"""

    def __init__(self, task_ids: list[str], labels: list[str] | None = None, *, stream: str = "stdout",
                 path: str | None = None, title: str = "", archived: list[Json] | None = None) -> None:
        super().__init__()
        self.task_ids = task_ids
        self.labels = labels if labels and len(task_ids) > 1 else []
        self.stream = stream
        self.path = path  # an explicit sandbox file (from the sandbox browser) instead of stdout/stderr
        self.title_text = title
        # Archived files of task_ids[0] to show (oldest first) instead of following the sandbox.
        self.archived = archive.oldest_first(archived) if archived else []
        self._archive_raw: list[bytes] = []  # what was downloaded, as stored, for "save"
        self._archive_state = ""  # "loading", "" when done, or what went wrong
        self._fell_back: set[int] = set()  # tasks shown from their archived logs (sandbox gone)
        self._ended: dict[int, str] = {}  # tasks (index: last state) whose file was read to the end after they ended
        self._unknown: set[int] = set()  # tasks the backend does not know: no longer polled
        self._generation = 0

    @classmethod
    def for_tasks(cls, task_ids: list[Json], *, stream: str = "stdout", title: str = "") -> LogScreen:
        return cls([t["id"] for t in task_ids], [task_label(t) for t in task_ids], stream=stream, title=title)

    @classmethod
    def for_task_ids(cls, task_ids: list[str], *, stream: str = "stdout") -> LogScreen:
        return cls(task_ids, stream=stream)

    @classmethod
    def for_archive(cls, task_id: str, entries: list[Json]) -> LogScreen:
        """Archived log files of a task (one, or every segment of a stream), read as one log."""
        streams = {archive.entry_stream(e) for e in entries}
        stream = streams.pop() if len(streams) == 1 else None
        return cls([task_id], stream=stream or "stdout", archived=entries)

    @property
    def what(self) -> str:
        """The name of what is shown: the stream, a sandbox file, or the archived files."""
        if self.archived:
            if len(self.archived) == 1:
                return f"archived {archive.entry_label(self.archived[0])}"
            return f"archived {self.stream} ({len(self.archived)} files)"
        return self.path or self.stream

    @property
    def request_id(self) -> str:
        # Task ids are "<requestId>-<deployId>-<startedAt>-<instance>-<host>-<rack>"; request ids may
        # contain dashes, so strip the five trailing parts.
        return self.task_ids[0].rsplit("-", 5)[0]

    def crumbs(self) -> list[str]:
        what = self.what
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
        text.append(self.what, style="bold")
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
        self._fell_back = set()
        self._ended = {}
        self._unknown = set()
        self.query_one("#log-title", Static).update(self._title())
        self.top_bar_crumbs()
        self._status()  # at once: an empty log writes nothing that would show it
        if self.archived:
            self._archive_state = "loading"
            self._load_archive(self._generation)
        else:
            self._follow(self._generation)

    def top_bar_crumbs(self) -> None:
        from ..widgets.top_bar import TopBar
        for bar in self.query(TopBar):
            bar.set_crumbs(self.crumbs())

    # ---- archived files
    async def _read_archived(self, entries: list[Json], source: int) -> tuple[list[tuple[int, str]], list[bytes]]:
        """Download and gunzip archived files, oldest first: their lines (and marker lines, source -1)
        and the files as stored. A file that cannot be read is a marker saying why."""
        max_lines = self.sing.config.log_max_lines
        who = f"{self.labels[source]}: " if self.labels else ""
        out: list[tuple[int, str]] = []
        raws: list[bytes] = []
        for entry in entries:
            name = archive.entry_label(entry)
            if len(entries) > 1:
                out.append((-1, f"— {who}{name}: {fmt_ts(entry.get('startTime'))} to "
                                f"{fmt_ts(entry.get('endTime') or entry.get('lastModified'))} UTC —"))
            try:
                raw = await self.client.download(archive.entry_url(entry))
                lines, total = await asyncio.to_thread(archive.tail_lines, raw, max_lines)
            except Unreachable as exc:
                if self.client.serves(exc.url):  # not a presigned URL elsewhere: the backend
                    self.app.post_message(BackendStatus(str(exc)))
                out.append((-1, f"— {who}{name}: {exc} —"))
                continue
            except (ApiError, archive.ArchiveError) as exc:
                out.append((-1, f"— {who}{name}: {exc} —"))
                continue
            raws.append(raw)
            if total > len(lines):
                out.append((-1, f"— {who}{name}: its first {total - len(lines):,} lines are not shown (the view "
                                f"keeps {max_lines:,}); save it to read them all —"))
            elif not lines:
                out.append((-1, f"— {who}{name} is empty —"))
            out.extend((source, line) for line in lines)
        return out, raws

    @work(group="follow", exclusive=True, exit_on_error=False)
    async def _load_archive(self, generation: int) -> None:
        lines, raws = await self._read_archived(self.archived, 0)
        if generation != self._generation:
            return
        self._archive_raw = raws
        self._archive_state = "" if len(raws) == len(self.archived) else "some files could not be read"
        self.post_message(LogBatch(generation, lines, []))

    async def _archived_stream(self, index: int) -> list[Json]:
        """The archived files of a task's followed stream (none for a sandbox file, or on any error)."""
        if self.path:
            return []
        try:
            listing = await self.client.task_logs(self.task_ids[index])
        except (ApiError, Unreachable):
            return []
        return archive.of_stream(listing or [], self.stream)

    def _who(self, index: int) -> str:
        """The prefix naming a task in a marker line of the all-instances view."""
        return f"{self.labels[index]}: " if self.labels else ""

    async def _ended_states(self, indices: list[int]) -> dict[int, str]:
        """The tasks among `indices` that have ended, with their last state. One list of the active tasks
        answers for all of them (and costs a 304 while nothing changes); a task missing from it is looked
        up in its history, which has its last update. A task whose end is not confirmed (its history not
        written yet, or the backend not answering) is taken as running, and asked about again later."""
        if not indices:
            return {}
        try:
            active = {row["taskId"]["id"] for row in await self.client.active_task_states()}
        except ClientError:
            return {}
        gone = [i for i in indices if self.task_ids[i] not in active]
        histories = await asyncio.gather(*(self.client.task_history(self.task_ids[i]) for i in gone),
                                         return_exceptions=True)
        ended: dict[int, str] = {}
        for i, history in zip(gone, histories, strict=True):
            if isinstance(history, BaseException):
                if not isinstance(history, ClientError):
                    raise history
                continue
            if (state := ended_state(history.get("taskUpdates") or [])) is not None:
                ended[i] = state
        return ended

    async def _is_unknown(self, index: int) -> bool:
        """The task's history does not know it either (any other answer, or none, is not proof)."""
        try:
            await self.client.task_history(self.task_ids[index])
        except ApiError as exc:
            return exc.not_found and exc.message.startswith(UNKNOWN_TASK)
        except Unreachable:
            return False
        return False

    @staticmethod
    async def _drain(tail: LogTail) -> list[str]:
        """An ended task's file, read on to its end (or for DRAIN_POLLS reads, if it is long)."""
        lines = await tail.poll()
        for _ in range(DRAIN_POLLS - 1):
            if tail.at_end:
                break
            try:
                lines += await tail.poll()
            except ClientError:
                break  # the lines read so far are shown; the next round reads on, or reports the error
        return lines

    @work(group="follow", exclusive=True, exit_on_error=False)
    async def _follow(self, generation: int) -> None:
        cfg = self.sing.config
        every = range(len(self.task_ids))
        ending = await self._ended_states(list(every))  # ended: read to the end of the file, then left
        whole = max(cfg.log_tail_bytes, cfg.log_max_lines * WHOLE_LOG_BYTES_PER_LINE)
        f = _Following([LogTail(self.client, tid, path, tail_bytes=whole if i in ending else cfg.log_tail_bytes)
                        for i, (tid, path) in enumerate(zip(self.task_ids, self._paths(), strict=True))],
                       ending, cut_to_fit=set(ending))
        interval = cfg.log_poll_seconds
        next_check = time.monotonic() + cfg.refresh_seconds
        said_down = False  # this view has told the app that the backend does not answer

        async def nothing() -> list[str]:
            return []
        while not self._followed_all(f):
            if time.monotonic() >= next_check:
                # Asked before reading: a task seen ended here has its last lines in the read that follows.
                ending |= await self._ended_states([i for i in every if i not in ending and i not in self._fell_back
                                                    and i not in self._unknown])
                next_check = time.monotonic() + cfg.refresh_seconds
            results = await asyncio.gather(*(nothing() if i in self._fell_back or i in f.done or i in self._unknown
                                             else self._drain(t) if i in ending else t.poll()
                                             for i, t in enumerate(f.tails)), return_exceptions=True)
            poll = _Poll()
            for i, result in enumerate(results):
                await self._take(f, i, result, poll)
            down = next((r for r in results if isinstance(r, Unreachable)), None)
            if down is not None:
                self.app.post_message(BackendStatus(str(down)))
                said_down = True
            elif said_down and any(not isinstance(r, Unreachable) for r in results):
                self.app.post_message(BackendStatus())  # it answers again (with lines, or an error of its own)
                said_down = False
            if poll.batch or poll.markers:
                self.post_message(LogBatch(generation, poll.batch, poll.markers, poll.ended))
            # An ended task's file that is being read to its end is read on at once.
            draining = set(ending) - f.done - self._fell_back - set(f.problems)
            if not self._followed_all(f) and not draining:
                if down is not None:
                    # At the pace the banner announces ("retry #N in S s"), backing off as the app does
                    # (with this failure, which the app has not counted yet).
                    conn = self.sing.connection
                    await asyncio.sleep(max(interval, backoff(conn.failures + 1, cfg.refresh_seconds,
                                                              cfg.max_backoff_seconds)))
                else:
                    await asyncio.sleep(interval if not f.problems else max(interval, 1.0))

    def _followed_all(self, f: _Following) -> bool:
        """Every task is read to its end, read from its archive, or unknown to the backend."""
        return len(self._fell_back | f.done | self._unknown) >= len(f.tails)

    async def _take(self, f: _Following, i: int, result: list[str] | BaseException, poll: _Poll) -> None:
        """What one read of task `i` gives this poll: its lines, or what to say about its failure."""
        if isinstance(result, ApiError) and result.not_found:
            # No such sandbox file: gone with its sandbox? Then the archived logs are the log.
            tries = f.missing[i] = f.missing.get(i, 0) + 1
            if (tries - 1) % ARCHIVE_RECHECK_POLLS == 0 and (entries := await self._archived_stream(i)):
                lines, _ = await self._read_archived(entries, i)
                poll.batch.append((-1, f"— {self._who(i)}the sandbox is gone; its archived {self.stream} "
                                       f"({len(entries)} file{'s' if len(entries) != 1 else ''}) —"))
                poll.batch.extend(lines)
                self._fell_back.add(i)
                f.problems.pop(i, None)
                return
        if isinstance(result, ApiError) and result.not_found and result.message.startswith(UNKNOWN_TASK):
            f.unknown_reads[i] = f.unknown_reads.get(i, 0) + 1
            if f.unknown_reads[i] >= UNKNOWN_TASK_POLLS:
                if await self._is_unknown(i):
                    poll.batch.append((-1, f"— {self._who(i)}there is no task {self.task_ids[i]}: the backend "
                                           "knows it neither live nor in its history; not read any more —"))
                    self._unknown.add(i)
                    f.problems.pop(i, None)
                    return
                f.unknown_reads[i] = 0  # its history knows it: a sandbox not there yet, read on
        else:
            f.unknown_reads.pop(i, None)
        if isinstance(result, BaseException):
            message = str(result) if isinstance(result, ApiError | Unreachable) else repr(result)
            if f.problems.get(i) != message:  # say it once, not every poll
                f.problems[i] = message
                poll.markers.append(f"— {self._who(i)}{message}; retrying —")
            return
        if i in f.problems:
            del f.problems[i]
            poll.markers.append(f"— {self._who(i)}reading again —")
        tail = f.tails[i]
        while tail.notes:
            poll.markers.append(f"— {tail.notes.pop(0)} —")
        if i in f.cut_to_fit:
            f.cut_to_fit.discard(i)
            if tail.skipped:
                poll.batch.append((-1, f"— {self._who(i)}the first {archive.fmt_size(tail.skipped)} of "
                                       f"{self.what} are not shown: the view keeps the last "
                                       f"{self.sing.config.log_max_lines:,} lines —"))
        poll.batch.extend((i, line) for line in result)
        if i in f.ending and i not in f.done and tail.at_end:
            poll.batch.extend((i, line) for line in tail.rest())
            poll.batch.append((-1, f"— {self._who(i)}the task {short_state(f.ending[i]).lower()}: "
                                   f"end of its {self.what} —"))
            f.done.add(i)
            poll.ended[i] = f.ending[i]

    @on(LogBatch)
    def _write(self, message: LogBatch) -> None:
        if message.generation != self._generation:
            return  # from the stream we just switched away from
        log = self.log_view
        for marker in message.markers:
            log.write_marker(marker)
        log.write_batch(message.lines)
        if message.ended:
            self._ended.update(message.ended)
            self._status()

    def _all_ended(self) -> bool:
        """Every followed task has ended and its file was read to the end: nothing more will come."""
        followed = set(range(len(self.task_ids))) - self._fell_back - self._unknown
        return bool(followed) and followed <= set(self._ended)

    @on(LogView.StatusChanged)
    def _status(self) -> None:
        log = self.log_view
        text = Text()
        if self.archived or (self._fell_back and len(self._fell_back) == len(self.task_ids)):
            text.append("■ ARCHIVED", style="bold cyan")
            if self._archive_state:
                text.append(f" · {self._archive_state}", style="bold yellow" if self._archive_state != "loading"
                            else "")
            if not log.follow:
                text.append(" · scrolled (End: bottom)")
        elif len(self._unknown) == len(self.task_ids):
            text.append("■ NO SUCH TASK" if len(self.task_ids) == 1 else "■ NO SUCH TASKS", style="bold red")
        elif self._all_ended():
            text.append("■ ENDED", style="bold magenta")
            if len(self._ended) == 1:
                text.append(f" · task {short_state(next(iter(self._ended.values()))).lower()}")
            else:
                text.append(f" · {len(self._ended)} tasks")
            if not log.follow:
                text.append(" · scrolled (End: bottom)")
        else:
            if log.follow:
                text.append("● FOLLOW", style="bold green")
            else:
                text.append("❚❚ PAUSED", style="bold yellow")
                if log.new_lines:
                    text.append(f" · {log.new_lines:,} new line{'s' if log.new_lines != 1 else ''} (End to follow)",
                                style="bold yellow")
            if self._ended:
                text.append(f" · {len(self._ended)} of {len(self.task_ids)} tasks ended")
            if self._unknown:
                text.append(f" · {len(self._unknown)} of {len(self.task_ids)} tasks unknown", style="bold red")
        # The task's own lines: the view's marker lines (— … —) are not its output.
        count = log.output_line_count
        text.append(f" · {count:,} line{'s' if count != 1 else ''} · {self.what.removeprefix('archived ')}")
        if log.filter.active:
            mode = "highlight" if log.highlight_mode else "hide others"
            text.append(f" · {log.filter.describe()} {mode}: {log.match_count:,} matching", style="cyan")
            if log.highlight_mode and log.current_match >= 0:
                text.append(f" ({log.current_match + 1}/{log.match_count}; n/N)", style="cyan")
        if log.wrap:
            text.append(" · wrap")
        self.query_one("#log-status", Static).update(text, layout=False)  # one fixed line: no relayout

    # ---- keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_stream" and self.archived:
            return False  # archived files are picked in the task's Archived logs tab
        return super().check_action(action, parameters)

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
        if self.archived:
            self.save_archived(self.task_ids[0], self.archived, self._archive_raw
                               if len(self._archive_raw) == len(self.archived) else None)
            return
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
