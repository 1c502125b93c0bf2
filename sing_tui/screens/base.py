"""What every Sing screen shares: the top bar and banner, the `:`/`/` prompt, the poll worker, the
read-only gate on actions, and the forms actions go through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from ..client import ApiError, ClientError, Queued, SingClient, Unreachable
from ..connection import Connection
from ..messages import BackendStatus, Gone, Loaded
from ..query import Filter
from ..widgets.prompt import Prompt
from ..widgets.top_bar import Banner, TopBar
from .form import Field, FormScreen
from .inspect import InspectScreen

if TYPE_CHECKING:
    from ..app import SingApp

PaletteCommand = tuple[str, str, Callable[[], Any]]


class SingScreen(Screen[None]):
    """Subclasses implement `fetch()` (network, in a worker) and `show(data)` (widgets, on the UI)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", show=False, id="screen.back"),
        Binding("ctrl+r", "refresh_now", "Refresh", show=False, id="screen.refresh"),
    ]
    # Actions that change the backend: hidden everywhere (footer, help, palette) in read-only mode.
    MUTATING: ClassVar[frozenset[str]] = frozenset()
    # Leave this screen when its object is deleted on the backend (a 404 on poll).
    GONE_ON_404: ClassVar[bool] = False
    FILTERABLE: ClassVar[bool] = False
    # Reads /api/state itself and hands the app what it says of the backend's outages (report_problems),
    # so the app need not ask again.
    REPORTS_PROBLEMS: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._polling = False
        self.shown_at: float | None = None  # when the data shown was fetched (wall clock)
        self.filter = Filter()
        self._filter_before_prompt = Filter()
        self._typed_ahead: list[events.Key] | None = None  # keys that came with `:` or `/`, before its prompt

    @property
    def sing(self) -> SingApp:
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> SingClient:
        return self.sing.client

    @property
    def read_only(self) -> bool:
        return self.sing.config.read_only

    def crumbs(self) -> list[str]:
        return []

    # ---- layout helpers
    def chrome_top(self) -> ComposeResult:
        yield TopBar(self.crumbs())
        yield Banner()

    def chrome_bottom(self) -> ComposeResult:
        yield Prompt(self.sing.suggester)
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._show_connection)
        self.watch(self.app, "problems", self._show_problems)

    def _show_connection(self, connection: Connection) -> None:
        problems = self.sing.problems
        for bar in self.query(TopBar):
            bar.show(connection, self.read_only, problems)
        for banner in self.query(Banner):
            banner.show(connection, problems, self.shown_at)

    def _show_problems(self, _problems: object) -> None:
        self._show_connection(self.sing.connection)

    def on_screen_resume(self) -> None:
        self._show_connection(self.sing.connection)
        self.poll()

    def main_widget(self) -> Widget | None:
        """What gets the focus back after the prompt closes."""
        return None

    # ---- polling
    def poll(self) -> None:
        """Start a fetch unless one is still running (a slow backend must not pile up requests)."""
        if self._polling or not self.is_attached:
            return
        self._polling = True
        self._poll_worker()

    @work(group="poll", exit_on_error=False)
    async def _poll_worker(self) -> None:
        try:
            data = await self.fetch()
        except Unreachable as exc:
            self.app.post_message(BackendStatus(str(exc)))
            return
        except ApiError as exc:
            self.app.post_message(BackendStatus())
            if exc.not_found and self.GONE_ON_404:
                self.post_message(Gone(exc.message))
            else:
                self.notify(exc.message, title="The backend refused", severity="error")
            return
        finally:
            self._polling = False
        self.app.post_message(BackendStatus())
        self.post_message(Loaded(data))

    async def fetch(self) -> Any:
        return None

    def show(self, data: Any) -> None:
        pass

    def on_loaded(self, message: Loaded) -> None:
        message.stop()
        if self.is_attached:
            self.show(message.data)
            # What the banner says this screen's data is from: another screen polled since may be newer.
            self.shown_at = self.sing.clock()

    def on_gone(self, message: Gone) -> None:
        message.stop()
        self.notify(f"{message.message}. It was deleted or has expired; going back.", title="Gone",
                    severity="warning", timeout=6)
        if self.app.screen is self and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place turns any unexpected worker failure into a message instead of a traceback.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(str(error) or type(error).__name__, title="Error", severity="error")

    def action_refresh_now(self) -> None:
        self.poll()

    # ---- read-only and the palette
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.read_only:
            return False
        if action == "filter" and not self.FILTERABLE:
            return False
        return True

    def palette_commands(self) -> Iterable[PaletteCommand]:
        """(title, help, callback) for the palette: the actions for what is selected on this screen."""
        return ()

    def allowed(self, action: str) -> bool:
        return not (action in self.MUTATING and self.read_only)

    # ---- prompt: `:` commands and `/` filters
    @property
    def prompt(self) -> Prompt:
        return self.query_one(Prompt)

    def open_prompt(self, kind: str) -> None:
        if kind == "/":
            if not self.FILTERABLE:
                self._typed_ahead = None
                return
            self._filter_before_prompt = self.filter
            self.prompt.open("/", self.filter.text)
        else:
            self.prompt.open(":")
        self._type_ahead_into_prompt()

    def action_filter(self) -> None:
        self.open_prompt("/")

    def on_key(self, event: events.Key) -> None:
        # Keys typed in one burst with the `:` or `/` that opens the prompt (a paste, fast typing) reach the
        # screen before that key's binding has opened it: they are the prompt's, not the screen's bindings
        # (the `q` of `:request` quit the dashboard). Held here, and typed into the prompt once it opens.
        if self.prompt.is_open:
            if event.is_printable and event.character:  # (the prompt's own input keeps the ones it gets)
                event.stop()
                event.prevent_default()
                self.prompt.input.insert_text_at_cursor(event.character)
            return
        if self._typed_ahead is not None:
            event.stop()
            event.prevent_default()
            self._typed_ahead.append(event)
            return
        binding = self.active_bindings.get(event.key)
        if binding is not None and binding.binding.action in ("command", "filter"):
            self._typed_ahead = []

    def _type_ahead_into_prompt(self) -> None:
        typed, self._typed_ahead = self._typed_ahead or [], None
        box = self.prompt.input
        for key in typed:
            if key.key == "enter":
                self.call_after_refresh(box.action_submit)
                return
            if key.key == "escape":
                self.prompt.action_cancel()
                return
            if key.key == "backspace":
                box.action_delete_left()
            elif key.is_printable and key.character:
                box.insert_text_at_cursor(key.character)

    def action_back(self) -> None:
        if self.filter.active:
            self.apply_filter(Filter())
            return
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    @on(Prompt.Edited)
    def _prompt_edited(self, event: Prompt.Edited) -> None:
        if event.kind == "/":
            self.apply_filter(Filter.parse(event.value))

    @on(Prompt.Submitted)
    def _prompt_submitted(self, event: Prompt.Submitted) -> None:
        if event.kind == "/":
            filt = Filter.parse(event.value)
            self.apply_filter(filt)
            if filt.note:
                self.notify(filt.note, severity="warning")
        else:
            self.sing.run_command(event.value)

    @on(Prompt.Closed)
    def _prompt_closed(self, event: Prompt.Closed) -> None:
        if event.cancelled and event.kind == "/":
            self.apply_filter(self._filter_before_prompt)
        widget = self.main_widget()
        if widget is not None:
            widget.focus()

    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt

    # ---- inspect
    def inspect(self, title: str, obj: Any, mode: str) -> None:
        if obj is None:
            self.notify("Nothing selected", severity="warning")
            return
        self.app.push_screen(InspectScreen(title, obj, mode))

    # ---- actions through a form
    def open_form(self, title: str, targets: Sequence[str], fields: Sequence[Field], submit_label: str,
                  submit: Callable[[dict[str, Any]], Awaitable[str]], *, danger: bool = False,
                  note: str = "") -> None:
        def done(summary: str | None) -> None:
            if summary:
                self.notify(summary, title=title)
                self.poll()
        self.app.push_screen(FormScreen(title, targets, fields, submit_label, submit, danger=danger, note=note),
                             done)

    # ---- archived log files
    def save_archived(self, task_id: str, entries: list[Any], raws: list[bytes] | None = None) -> None:
        """Save archived log files (in order) to one local file: decompressed, or as stored if the name
        ends in .gz. `raws` are the files already downloaded, else they are downloaded now."""
        from .. import archive
        if not entries:
            self.notify("No archived log file selected", severity="warning")
            return
        size = sum(int(e.get("size") or 0) for e in entries)

        async def submit(values: dict[str, Any]) -> str:
            path = Path(values["path"]).expanduser()
            files = raws if raws is not None else [await self.client.download(archive.entry_url(e)) for e in entries]
            try:
                written = await asyncio.to_thread(archive.save, files, path)
            except (OSError, archive.ArchiveError) as exc:
                raise ClientError(f"path: {exc}") from exc
            return f"Saved {archive.fmt_size(written)} to {path}"

        def parse(text: str) -> str:
            if not text.strip():
                raise ValueError("path: enter a file name")
            return text.strip()
        what = archive.entry_label(entries[0]) if len(entries) == 1 else f"{len(entries)} files"
        self.open_form(f"Save archived {what}", [], [Field("path", "File", value=archive.default_file_name(
            task_id, entries), parse=parse)], "Save", submit,
            note=f"{archive.fmt_size(size)} gzipped. A name ending in .gz keeps the file as stored; any other "
                 "name gets it decompressed.")

    # ---- logs of a request's tasks (any screen can open them)
    @work(group="navigate", exclusive=True, exit_on_error=False)
    async def open_all_logs(self, request_id: str) -> None:
        from .logs import LogScreen
        try:
            parent = await self.client.request(request_id)
            active = await self.client.request_active_task_history(request_id)
        except Unreachable as exc:
            self.app.post_message(BackendStatus(str(exc)))
            return
        except ApiError as exc:
            self.notify(exc.message, severity="error")
            return
        ids = parent.get("taskIds", {})
        tasks = [t for t in ids.get("healthy", []) + ids.get("notYetHealthy", [])]
        if not tasks:
            tasks = [row["taskId"] for row in active]
        if not tasks:
            self.notify(f"{request_id} has no running tasks", severity="warning")
            return
        tasks.sort(key=lambda t: (t.get("instanceNo", 0), t.get("startedAt", 0)))
        which = f"all {len(tasks)} instances" if len(tasks) > 1 else "its 1 instance"
        self.app.push_screen(LogScreen.for_tasks(tasks, title=f"{request_id}: {which}"))

    @work(group="navigate", exclusive=True, exit_on_error=False)
    async def open_failed_logs(self, request_id: str) -> None:
        from .logs import LogScreen
        try:
            failed = await self.client.last_failed_task(request_id)
        except Unreachable as exc:
            self.app.post_message(BackendStatus(str(exc)))
            return
        except ApiError as exc:
            self.notify(exc.message, severity="error")
            return
        if failed is None:
            self.notify(f"No failed task in {request_id}'s history", severity="information")
            return
        status = failed.get("lastTaskStatus", "failed").removeprefix("TASK_").lower()
        self.app.push_screen(LogScreen.for_tasks([failed["taskId"]], title=f"last {status} task of {request_id}"))


async def for_each(targets: Sequence[str], verb: str, call: Callable[[str], Awaitable[Any]]) -> str:
    """Run one action per target; all failed -> raise (the form shows why), some failed -> say which."""
    failures: list[str] = []
    queued: list[str] = []
    for target in targets:
        try:
            await call(target)
        except Queued:
            queued.append(target)
        except ApiError as exc:
            failures.append(f"{target}: {exc.message}")
        except Unreachable:
            raise
    if failures and len(failures) == len(targets):
        raise ClientError("; ".join(failures))
    done = len(targets) - len(failures) - len(queued)
    summary = f"{verb} {targets[0]}" if len(targets) == 1 and done else f"{verb} {done} of {len(targets)}"
    if queued and not done:
        summary = f"{', '.join(queued)}: queued for the leader (none right now), applied once one is elected"
    elif queued:
        summary += f" — queued for the leader (none right now): {', '.join(queued)}"
    if failures:
        summary += " — failed: " + "; ".join(failures)
    return summary
