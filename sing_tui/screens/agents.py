"""Agents and racks: state, resources used/total, tasks; decommission, freeze, activate."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from ..model import AGENT_COLUMNS, RACK_COLUMNS, Json, agent_row, agent_usage, deploy_resources, now_ms, rack_row
from ..query import Filter, parse_duration
from ..widgets.resource_table import Column, ResourceTable, age_key, number_key, ratio_key
from .base import PaletteCommand, SingScreen, for_each
from .form import Field

MACHINE_STYLES = {"ACTIVE": "green", "FROZEN": "cyan", "DEAD": "bold red", "DECOMMISSIONED": "dim",
                  "DECOMMISSIONING": "yellow", "STARTING_DECOMMISSION": "yellow", "MISSING_ON_STARTUP": "red"}


def machine_style(cell: str) -> str:
    return MACHINE_STYLES.get(cell, "")


AGENT_TABLE_COLUMNS = [Column(AGENT_COLUMNS[0], max_width=24), Column(AGENT_COLUMNS[1], max_width=16),
                       Column(AGENT_COLUMNS[2], max_width=12), Column(AGENT_COLUMNS[3], max_width=21,
                                                                      style=machine_style),
                       Column(AGENT_COLUMNS[4], align_right=True, sort_key=ratio_key),
                       Column(AGENT_COLUMNS[5], align_right=True, sort_key=ratio_key),
                       Column(AGENT_COLUMNS[6], align_right=True, sort_key=number_key)]
RACK_TABLE_COLUMNS = [Column(RACK_COLUMNS[0], max_width=24), Column(RACK_COLUMNS[1], max_width=21,
                                                                    style=machine_style),
                      Column(RACK_COLUMNS[2], sort_key=number_key), Column(RACK_COLUMNS[3], sort_key=number_key),
                      Column(RACK_COLUMNS[4], sort_key=age_key)]

ACTIONS = {
    "decommission": ("Decommission", "Its tasks are moved elsewhere, then it takes no new ones.", True),
    "freeze": ("Freeze", "It keeps its tasks but takes no new ones.", False),
    "activate": ("Activate", "It takes new tasks again.", False),
}

PAST = {"decommission": "Decommissioning", "freeze": "Froze", "activate": "Activated"}


class AgentsScreen(SingScreen):
    FILTERABLE = True
    MUTATING: ClassVar[frozenset[str]] = frozenset({"machine"})
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="agents.filter"),
        Binding("tab", "switch_table", "Agents/racks", id="agents.switch"),
        Binding("D", "machine('decommission')", "Decommission", id="agents.decommission"),
        Binding("F", "machine('freeze')", "Freeze", id="agents.freeze"),
        Binding("A", "machine('activate')", "Activate", id="agents.activate"),
        Binding("d", "describe", "Describe", show=False, id="agents.describe"),
        Binding("y", "raw", "JSON", show=False, id="agents.json"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.agents: dict[str, Json] = {}
        self.racks: dict[str, Json] = {}

    def crumbs(self) -> list[str]:
        return ["Agents and racks"]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(id="status", classes="status-line")
        yield ResourceTable(AGENT_TABLE_COLUMNS, markable=True, empty_text="no agents", id="agents")
        yield Static("Racks", classes="section-title")
        yield ResourceTable(RACK_TABLE_COLUMNS, markable=True, empty_text="no racks", id="racks")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#agents", ResourceTable).focus()

    def main_widget(self) -> Widget | None:
        return self.query_one("#agents", ResourceTable)

    def _table(self) -> ResourceTable:
        focused = self.focused
        if isinstance(focused, ResourceTable) and focused.id == "racks":
            return focused
        return self.query_one("#agents", ResourceTable)

    async def fetch(self) -> tuple[list[Json], list[Json], dict[str, dict[str, float]], int]:
        agents, racks, states, parents = await asyncio.gather(
            self.client.agents(), self.client.racks(), self.client.active_task_states(), self.client.requests())
        # Reduce here, in the worker: the full lists are not kept.
        return agents, racks, agent_usage(states, agents, deploy_resources(parents)), len(states)

    def show(self, data: tuple[list[Json], list[Json], dict[str, dict[str, float]], int]) -> None:
        agents, racks, usage, task_count = data
        now = now_ms(self.sing.clock)
        self.agents = {a["id"]: a for a in agents}
        self.racks = {r["id"]: r for r in racks}
        self.query_one("#agents", ResourceTable).set_rows({a["id"]: agent_row(a, usage.get(a["id"])) for a in agents})
        self.query_one("#racks", ResourceTable).set_rows({r["id"]: rack_row(r, agents, usage, now) for r in racks})
        states: dict[str, int] = {}
        for a in agents:
            s = a.get("currentState", {}).get("state", "?")
            states[s] = states.get(s, 0) + 1
        text = Text(f"{len(agents)} agents", style="bold")
        text.append(" (" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) + ")" if states else "")
        text.append(f" · {len(racks)} racks · {task_count:,} active tasks")
        if self.filter.active:
            text.append(f" · filter {self.filter.describe()}", style="cyan")
        self.query_one("#status", Static).update(text, layout=False)  # one fixed line: no relayout

    def apply_filter(self, filt: Filter) -> None:
        self.filter = filt
        for table in self.query(ResourceTable):
            table.set_filter(filt)

    def action_switch_table(self) -> None:
        other = "#racks" if self._table().id == "agents" else "#agents"
        self.query_one(other, ResourceTable).focus()

    @on(ResourceTable.Selected)
    def _open(self, event: ResourceTable.Selected) -> None:
        source = self.agents if event.table.id == "agents" else self.racks
        self.inspect(event.key, source.get(event.key), "describe")

    def action_machine(self, action: str) -> None:
        table = self._table()
        kind = "agent" if table.id == "agents" else "rack"
        targets = table.target_keys()
        if not targets:
            self.notify(f"Select an {kind} first" if kind == "agent" else "Select a rack first", severity="warning")
            return
        verb, note, danger = ACTIONS[action]
        call = self.client.agent_action if kind == "agent" else self.client.rack_action

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, PAST[action],
                                  lambda t: call(t, action, values["message"] or None, values.get("duration")))
        fields = [Field("message", "Message (optional; kept in the machine's history)")]
        if action != "activate":
            fields.append(Field("duration", "For how long (optional: 30m, 2h, 1d; then it is activated again)",
                                parse=parse_duration))
        title = f"{verb} {kind} {targets[0]}" if len(targets) == 1 else f"{verb} {len(targets)} {kind}s"
        self.open_form(title, targets, fields, verb, submit, danger=danger, note=note)

    def _selected(self) -> tuple[str, Json | None]:
        table = self._table()
        key = table.cursor_key or ""
        return key, (self.agents if table.id == "agents" else self.racks).get(key)

    def action_describe(self) -> None:
        key, obj = self._selected()
        self.inspect(key, obj, "describe")

    def action_raw(self) -> None:
        key, obj = self._selected()
        self.inspect(key, obj, "json")

    def palette_commands(self) -> list[PaletteCommand]:
        key, obj = self._selected()
        if obj is None:
            return []
        out: list[PaletteCommand] = [("Describe", key, self.action_describe), ("Raw JSON", key, self.action_raw)]
        if self.allowed("machine"):
            for action, (verb, note, _) in ACTIONS.items():
                out.append((f"{verb} {key}", note, lambda a=action: self.action_machine(a)))
        return out

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "machine" and self.read_only:
            return False
        return super().check_action(action, parameters)
