"""The master's view of tasks: who owns them, where they run, what they use, their latest state."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .resources import Resources
from .updates import TERMINAL_STATES

# Finished tasks are remembered (for reconciliation and kill replies) up to this many.
_COMPLETED_KEPT = 10_000


@dataclass
class TaskRecord:
    task_id: str
    framework_id: str
    agent_id: str
    resources: Resources
    info: dict[str, Any]
    state: str = "TASK_STAGING"
    message: str | None = None
    reason: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class TaskTable:
    def __init__(self) -> None:
        self.active: dict[str, TaskRecord] = {}
        self._completed: OrderedDict[str, TaskRecord] = OrderedDict()

    def add(self, record: TaskRecord) -> None:
        self.active[record.task_id] = record
        self._completed.pop(record.task_id, None)

    def finish(self, record: TaskRecord) -> None:
        if self.active.get(record.task_id) is record:
            del self.active[record.task_id]
        self._completed[record.task_id] = record
        self._completed.move_to_end(record.task_id)
        while len(self._completed) > _COMPLETED_KEPT:
            self._completed.popitem(last=False)

    def find(self, task_id: str, framework_id: str) -> TaskRecord | None:
        """The framework's task, live or recently finished."""
        record = self.active.get(task_id) or self._completed.get(task_id)
        return record if record is not None and record.framework_id == framework_id else None

    def on_agent(self, agent_id: str) -> list[TaskRecord]:
        return [r for r in self.active.values() if r.agent_id == agent_id]

    def of_framework(self, framework_id: str) -> list[TaskRecord]:
        return [r for r in self.active.values() if r.framework_id == framework_id]
