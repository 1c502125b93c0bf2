"""The line at the top of every screen (where you are, which backend, live or stale) and the
banner that explains an unreachable backend."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Static

from ..client import host_port
from ..connection import Connection
from ..model import Problem


class TopBar(Horizontal):
    DEFAULT_CSS = """
    TopBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    TopBar > #crumbs { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    TopBar > #conn { width: auto; height: 1; padding-left: 1; }
    """

    def __init__(self, crumbs: list[str]) -> None:
        super().__init__()
        self.crumbs = crumbs

    def compose(self) -> ComposeResult:
        yield Label(self._crumbs_text(), id="crumbs")
        yield Label("", id="conn")

    def _crumbs_text(self) -> Text:
        text = Text("Sing", style="bold")
        for crumb in self.crumbs:
            text.append(" › ")
            text.append(crumb, style="bold")
        return text

    def set_crumbs(self, crumbs: list[str]) -> None:
        self.crumbs = crumbs
        self.query_one("#crumbs", Label).update(self._crumbs_text())

    def show(self, connection: Connection, read_only: bool, problems: tuple[Problem, ...] = ()) -> None:
        right = Text()
        if read_only:
            right.append(" READ-ONLY ", style="bold reverse")
            right.append(" ")
        if connection.ok:  # from a backend that does not answer, they would be stale news
            for problem in problems:
                right.append(f" {problem.badge} ", style="bold white on red")
                right.append(" ")
        if connection.failed_over_from:
            right.append("failed over ", style="bold yellow")
            right.append(f"{host_port(connection.failed_over_from)} → ")
        right.append(host_port(connection.url) + " ")
        if connection.ok:
            right.append("● live", style="bold green")
        elif connection.ok is None:
            right.append("○ connecting", style="bold yellow")
        else:
            right.append("○ STALE", style="bold red")
        self.query_one("#conn", Label).update(right)


class Banner(Static):
    """Shown while the backend is unreachable (what failed, what the data is, when we retry), or while
    it reports a problem of its own (ZooKeeper or the leader away: what that means for what you see)."""

    DEFAULT_CSS = """
    Banner { height: auto; max-height: 3; background: $error 30%; color: $text; padding: 0 1; display: none; }
    Banner.-down, Banner.-problem { display: block; }
    """

    def show(self, connection: Connection, problems: tuple[Problem, ...] = (), shown_at: float | None = None) -> None:
        """`shown_at`: when the screen's own data was fetched (else the last good answer of any screen)."""
        self.set_class(connection.ok is False, "-down")
        self.set_class(bool(connection.ok and problems), "-problem")
        if connection.ok and problems:
            self.update(Text.assemble(("⚠ ", "bold"), "; ".join(p.meaning for p in problems)))
            return
        if connection.ok is not False:
            return
        data_at = shown_at if shown_at is not None else connection.last_ok_at
        if data_at is None:
            data = "no data yet; start the backend (`sing backend`) or pass --url"
        else:
            data = f"the data shown is stale, from {time.strftime('%H:%M:%S', time.localtime(data_at))}"
        self.update(Text.assemble(("⚠ ", "bold"), (connection.error, "bold"),
                                  f" — retry #{connection.failures} in {connection.retry_in:.0f} s; {data}"))
