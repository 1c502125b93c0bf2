"""The Sing terminal dashboard: one App, four top-level views (modes), drill-down screens on top.

The app owns the API client, the connection state shown on every screen, and the refresh clock: every
`refresh_seconds` it asks the screen on top to poll, skips the tick while a modal is open, and backs
off (doubling, capped) while the backend is unreachable.
"""

from __future__ import annotations

import asyncio
import difflib
import gc
import importlib
import os
import pkgutil
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

from textual import events, work
from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.timer import Timer

from . import screens, widgets
from .client import ApiError, SingClient, Unreachable, host_port
from .config import TuiConfig
from .connection import Connection, backoff
from .messages import BackendStatus
from .model import Problem, cluster_problems
from .query import CommandError, Filter, parse_command
from .screens.agents import AgentsScreen
from .screens.base import SingScreen
from .screens.dashboard import DashboardScreen
from .screens.help import HelpScreen
from .screens.logs import LogScreen
from .screens.request import RequestScreen
from .screens.requests import RequestsScreen
from .screens.task import TaskScreen
from .screens.tasks import TasksScreen
from .widgets.prompt import CommandSuggester

VIEWS = ("dashboard", "requests", "tasks", "agents")


def known_binding_ids() -> set[str]:
    """Every binding id a keymap may name: those of the app and of each screen and widget of the TUI."""
    for package in (screens, widgets):  # some are imported only when first opened
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    ids: set[str] = set()
    classes: list[type[DOMNode]] = [DOMNode]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        ids.update(b.id for b in cls.__dict__.get("BINDINGS", ()) if isinstance(b, Binding) and b.id)
    return ids


class SingApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Sing"
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        "dashboard": DashboardScreen, "requests": RequestsScreen, "tasks": TasksScreen, "agents": AgentsScreen,
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("colon", "command", "Command", id="app.command"),
        Binding("1", "view('dashboard')", "Dashboard", show=False, id="app.dashboard"),
        Binding("2", "view('requests')", "Requests", show=False, id="app.requests"),
        Binding("3", "view('tasks')", "Tasks", show=False, id="app.tasks"),
        Binding("4", "view('agents')", "Agents", show=False, id="app.agents"),
        Binding("q", "quit", "Quit", show=False, id="app.quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, id="app.quit_ctrl", priority=True),
    ]

    connection: reactive[Connection] = reactive(Connection(""), init=False, always_update=True)
    # What the backend says is wrong with its own connections (ZooKeeper, leader, Mesos): every screen shows it.
    problems: reactive[tuple[Problem, ...]] = reactive((), init=False)

    def __init__(self, config: TuiConfig | None = None, *, client: SingClient | None = None,
                 start_view: str = "dashboard", clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.config = config or TuiConfig()
        self._owns_client = client is None
        self.client = client or SingClient(self.config.urls)
        self.start_view = start_view if start_view in VIEWS else "dashboard"
        self.clock = clock
        self.suggester = CommandSuggester()
        self.set_reactive(SingApp.connection, Connection(self.client.base_url))
        self._poll_timer: Timer | None = None
        self._checking_problems = False
        self._had_tty = False
        self._gc_was_enabled = True
        if self.config.theme:
            self.theme = self.config.theme

    # ---- life cycle
    def on_mount(self) -> None:
        if self.config.keymap:
            self.set_keymap(self.config.keymap)
            self._report_unknown_bindings()
        self.switch_mode(self.start_view)
        self._poll_timer = self.set_timer(self.config.refresh_seconds, self._tick)
        self._watch_terminal()
        self._gc_between_keystrokes()

    def _report_unknown_bindings(self) -> None:
        """A misspelt id in [keymap] would rebind nothing, silently: say which (the file is read before
        Textual is, so it is checked here, against the bindings the app really has)."""
        known = known_binding_ids()
        unknown = [bid for bid in self.config.keymap if bid not in known]
        if not unknown:
            return
        where = f"{self.config.path}: " if self.config.path else ""
        names = []
        for bid in unknown:
            close = difflib.get_close_matches(bid, known, n=1)
            names.append(f"{bid!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        self.notify(f"{where}[keymap]: unknown binding id{'s' if len(unknown) > 1 else ''} {', '.join(names)}; "
                    "? lists every id", title="Config", severity="error", timeout=20)

    async def on_unmount(self) -> None:
        if self._gc_was_enabled:
            gc.enable()
        if self._owns_client:
            await self.client.aclose()

    # ---- garbage collection
    def _gc_between_keystrokes(self) -> None:
        """With thousands of rows the heap holds ~10^6 objects and a full collection takes 60-250 ms; left
        to CPython it lands in the middle of typing. So the cyclic collector runs here instead: the young
        generations every second (a few ms), a full pass only once the keyboard has been quiet for a
        moment (or at the latest every two minutes). Reference counting still frees everything else."""
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        self._last_key_at = time.monotonic()
        self._last_full_gc = time.monotonic()
        self.set_interval(1.0, self._collect_garbage)

    def _collect_garbage(self) -> None:
        now = time.monotonic()
        since_full = now - self._last_full_gc
        if (since_full > 30 and now - self._last_key_at > 2) or since_full > 120:
            gc.collect()
            self._last_full_gc = now
        else:
            gc.collect(1)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self._last_key_at = time.monotonic()
        await super().on_event(event)

    def _watch_terminal(self) -> None:
        """Exit when the terminal goes away (ssh dropped, window closed) instead of spinning on a dead tty."""
        if self.is_headless:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        stdin = sys.__stdin__
        self._had_tty = bool(stdin) and os.isatty(stdin.fileno())
        if self._had_tty:
            self.set_interval(1.0, self._check_terminal)

    def _check_terminal(self) -> None:
        stdin = sys.__stdin__
        try:
            alive = bool(stdin) and os.isatty(stdin.fileno())
        except (OSError, ValueError):
            alive = False
        if not alive:
            self.exit(return_code=1)

    # ---- refresh clock
    def _tick(self) -> None:
        try:
            screen = self.screen
        except ScreenStackError:  # shutting down
            return
        if isinstance(screen, SingScreen) and not isinstance(screen, ModalScreen):
            screen.poll()
            if not screen.REPORTS_PROBLEMS:
                self._check_problems()
        # The client may have moved on a request that reports nothing when it succeeds (a log read).
        followed = self._follow_failover(self.connection)
        if followed is not self.connection:
            self.connection = followed
        delay = backoff(self.connection.failures, self.config.refresh_seconds, self.config.max_backoff_seconds)
        self._poll_timer = self.set_timer(delay, self._tick)

    def _check_problems(self) -> None:
        # Skipped while the last check is still out (a slow backend must not pile up requests, and
        # cancelling it each tick would never let one finish).
        if not self._checking_problems:
            self._checking_problems = True
            self._problems_worker()

    @work(group="problems", exit_on_error=False)
    async def _problems_worker(self) -> None:
        try:
            state, stale = await self.client.state_and_staleness()
        except (Unreachable, ApiError):
            self.problems = ()  # nothing known: the screen's own poll reports an unreachable backend
            return
        finally:
            self._checking_problems = False
        self.report_problems(cluster_problems(state, stale=stale))

    def report_problems(self, problems: tuple[Problem, ...]) -> None:
        """What the backend says is wrong with its own connections, as last read from /api/state."""
        if problems != self.problems:
            gone = {p.badge for p in self.problems} - {p.badge for p in problems}
            if gone:
                self.notify(f"Cleared: {', '.join(sorted(gone))}", title="Backend", timeout=4)
            self.problems = problems

    def on_backend_status(self, message: BackendStatus) -> None:
        conn = self._follow_failover(self.connection)
        if message.ok:
            if conn.ok is not True or conn.failures:
                if conn.ok is False:
                    self.notify("Backend reachable again", title="Reconnected", timeout=3)
            self.connection = conn.up(self.clock())
        else:
            self.problems = ()  # what the backend said of itself is old news once it does not answer
            self.connection = conn.down(message.error, self.config.refresh_seconds, self.config.max_backoff_seconds)

    def _follow_failover(self, conn: Connection) -> Connection:
        """The connection, moved to the backend the client now uses if it failed over since (said once)."""
        moved = self.client.failover
        if moved is None or moved.to_url == conn.url:
            return conn
        self.notify(f"{host_port(moved.from_url)} stopped answering ({moved.reason}); now using "
                    f"{host_port(moved.to_url)}", title="Failed over", severity="warning", timeout=8)
        return conn.moved(moved.to_url, moved.from_url)

    # ---- navigation
    def action_view(self, view: str) -> None:
        """A top-level view, at its top: what was opened on it (a request, a task, its logs) is closed,
        whether the view was elsewhere or is the one shown (where switching alone did nothing)."""
        if view not in VIEWS:
            return
        if view != self.current_mode:
            self.switch_mode(view)
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ModalScreen):
            self.pop_screen()

    def action_command(self) -> None:
        if isinstance(self.screen, SingScreen):
            self.screen.open_prompt(":")

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, ModalScreen):
            return
        self.push_screen(HelpScreen.for_screen(screen))

    def run_command(self, text: str) -> None:
        """`:` command mode: `requests type=worker state=paused /re`, `request ID`, `tasks`, `agents`..."""
        try:
            cmd = parse_command(text)
        except CommandError as exc:
            self.notify(str(exc), title="Command", severity="error")
            return
        if cmd.view == "quit":
            self.exit()
        elif cmd.view == "help":
            self.action_help()
        elif cmd.view in VIEWS:
            self.switch_mode(cmd.view)
            if cmd.view == "requests":
                self.call_after_refresh(self._query_requests, cmd.params, cmd.filter)
            elif cmd.filter and isinstance(self.screen, SingScreen):
                self.call_after_refresh(self.screen.apply_filter, Filter.parse(cmd.filter))
        elif cmd.view == "request":
            self.open_request(cmd.arg)
        elif cmd.view == "task":
            self.push_screen(TaskScreen(cmd.arg))
        elif cmd.view == "logs":
            self.push_screen(LogScreen.for_task_ids([cmd.arg]))

    def _query_requests(self, params: dict[str, str], filt: str) -> None:
        screen = self.screen
        if isinstance(screen, RequestsScreen):
            screen.set_query(params, Filter.parse(filt))

    @work(group="navigate", exclusive=True, exit_on_error=False)
    async def open_request(self, request_id: str) -> None:
        """Refuse an unknown id with the server's reason instead of opening an empty screen."""
        try:
            await self.client.request(request_id)
        except ApiError as exc:
            self.notify(exc.message, title=f"No request {request_id}", severity="error")
            return
        except Unreachable as exc:
            self.post_message(BackendStatus(str(exc)))
            self.notify(str(exc), severity="error")
            return
        self.push_screen(RequestScreen(request_id))

    # ---- palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, SingScreen):
            for title, help_text, callback in screen.palette_commands():
                yield SystemCommand(title, help_text, callback)
        for view in VIEWS:
            yield SystemCommand(f"Go to {view}", f"switch to the {view} view", lambda v=view: self.action_view(v))
        yield SystemCommand("Help: every key", "list the keys of this screen and their binding ids", self.action_help)
        yield from super().get_system_commands(screen)


def run(config: TuiConfig, start_view: str = "dashboard") -> int:
    app = SingApp(config, start_view=start_view)
    app.run()
    return app.return_code or 0
