"""Request actions shared by the requests table (on the marked rows, else the selected one) and the
request screen: scale, pause/unpause, bounce, run now, exit cool-down, delete, new deploy, logs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from ..model import Json
from ..query import parse_args, parse_env, parse_instances, parse_run_id
from .base import PaletteCommand, SingScreen, for_each
from .form import Field, confirm_field

REQUEST_MUTATING = frozenset({"scale", "pause", "bounce", "run_now", "exit_cooldown", "delete", "deploy",
                              "cancel_deploy", "kill_task"})

REQUEST_BINDINGS: list[BindingType] = [
    Binding("s", "scale", "Scale", id="request.scale"),
    Binding("z", "pause", "Pause", tooltip="pause or unpause", id="request.pause"),
    Binding("b", "bounce", "Bounce", show=False, id="request.bounce"),
    Binding("r", "run_now", "Run now", show=False, id="request.run_now"),
    Binding("c", "exit_cooldown", "Exit cool-down", show=False, id="request.exit_cooldown"),
    Binding("D", "delete", "Delete", show=False, id="request.delete"),
    Binding("n", "deploy", "New deploy", show=False, id="request.deploy"),
    Binding("a", "all_logs", "All logs", show=False, id="request.all_logs"),
    Binding("p", "failed_logs", "Last failed logs", show=False, id="request.failed_logs"),
    Binding("d", "describe", "Describe", show=False, id="request.describe"),
    Binding("y", "raw", "JSON", show=False, id="request.json"),
]

_MESSAGE = Field("message", "Message (optional; kept in the request's history)", placeholder="why")


def _parse_deploy_file(text: str, request_id: str) -> dict[str, Any]:
    raw = text.strip()
    if not raw:
        raise ValueError("file: enter the path of a JSON file with the deploy")
    path = Path(raw).expanduser()
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"file: cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"file: {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(body, dict) and isinstance(body.get("deploy"), dict):
        body = body["deploy"]
    if not isinstance(body, dict):
        raise ValueError("file: must hold a JSON object (a deploy, or {\"deploy\": {...}})")
    if body.get("requestId", request_id) != request_id:
        raise ValueError(f"file: its requestId is {body['requestId']!r}, not {request_id!r}")
    if not body.get("id"):
        raise ValueError("file: the deploy needs an \"id\" (e.g. \"v2\")")
    return {**body, "requestId": request_id}


class RequestActions(SingScreen):
    """Mixin base for screens that act on requests; they provide `request_targets()`."""

    MUTATING: ClassVar[frozenset[str]] = REQUEST_MUTATING

    def request_targets(self) -> list[str]:
        raise NotImplementedError

    def request_json(self, request_id: str) -> Json | None:
        return None

    def _all_paused(self, targets: list[str]) -> bool:
        """What `z` does to the targets: unpause when every one is paused, else pause."""
        states = [(self.request_json(t) or {}).get("state") for t in targets]
        return bool(states) and all(s == "PAUSED" for s in states)

    def label_pause(self) -> None:
        """The footer names what `z` does to the targets now: Unpause when every one is paused."""
        label = "Unpause" if self._all_paused(self.request_targets()) else "Pause"
        # This screen's own map of its bindings (a keymap is laid over it when the keys are looked up, so a
        # rebound key keeps the label) gets new lists: the ones in it are shared with the class.
        keys = self._bindings.key_to_bindings
        stale = [key for key, group in keys.items()
                 if any(b.id == "request.pause" and b.description != label for b in group)]
        for key in stale:
            keys[key] = [replace(b, description=label) if b.id == "request.pause" else b for b in keys[key]]
        if stale:
            self.refresh_bindings()

    def _targets_or_warn(self) -> list[str]:
        targets = self.request_targets()
        if not targets:
            self.notify("Select a request first", severity="warning")
        return targets

    @staticmethod
    def _title(verb: str, targets: list[str]) -> str:
        return f"{verb} {targets[0]}" if len(targets) == 1 else f"{verb} {len(targets)} requests"

    def action_scale(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return
        parent = self.request_json(targets[0]) if len(targets) == 1 else None
        request = (parent or {}).get("request", {})
        current = str(request.get("instances") or 1) if parent else ""
        max_scale = request.get("maxScale") if parent else None

        async def submit(values: dict[str, Any]) -> str:
            n = values["instances"]
            done = await for_each(targets, "Scaled", lambda rid: self.client.scale(rid, n, values["message"] or None))
            return f"{done} → {n} instance{'s' if n != 1 else ''}"

        self.open_form(self._title("Scale", targets), targets,
                       [Field("instances", "Instances", placeholder="a whole number, at least 1", value=current,
                              parse=lambda t: parse_instances(t, max_scale)), _MESSAGE], "Scale", submit)

    def action_pause(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return
        if self._all_paused(targets):
            async def unpause(values: dict[str, Any]) -> str:
                return await for_each(targets, "Unpaused",
                                      lambda rid: self.client.unpause(rid, values["message"] or None))
            self.open_form(self._title("Unpause", targets), targets, [_MESSAGE], "Unpause", unpause)
            return

        async def pause(values: dict[str, Any]) -> str:
            return await for_each(targets, "Paused",
                                  lambda rid: self.client.pause(rid, True, values["message"] or None))
        self.open_form(self._title("Pause", targets), targets, [_MESSAGE], "Pause", pause, danger=True,
                       note="Their tasks are killed; unpause (z) starts them again.")

    def action_bounce(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, "Bounced", lambda rid: self.client.bounce(rid, values["message"] or None))
        self.open_form(self._title("Bounce", targets), targets, [_MESSAGE], "Bounce", submit,
                       note="Every task is replaced: new ones start first, then the old ones are killed.")

    def action_run_now(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, "Started a run of", lambda rid: self.client.run_now(
                rid, values["args"], values["env"], values["run_id"], values["message"] or None))
        self.open_form(self._title("Run now", targets), targets, [
            Field("args", "Command-line arguments", placeholder="--day monday 'two words'", parse=parse_args),
            Field("env", "Environment overrides", placeholder="MODE=fast LEVEL=\"very high\"", parse=parse_env),
            Field("run_id", "Run id (optional, to track the run)", placeholder="nightly-42", parse=parse_run_id),
            _MESSAGE], "Run", submit)

    def action_exit_cooldown(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, "Took out of cool-down",
                                  lambda rid: self.client.exit_cooldown(rid, values["message"] or None))
        self.open_form(self._title("Exit cool-down", targets), targets, [_MESSAGE], "Exit cool-down", submit)

    def action_delete(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return
        expected = targets[0] if len(targets) == 1 else f"delete {len(targets)}"

        async def submit(values: dict[str, Any]) -> str:
            return await for_each(targets, "Deleted",
                                  lambda rid: self.client.delete_request(rid, values["message"] or None))
        self.open_form(self._title("Delete", targets), targets, [confirm_field(expected), _MESSAGE], "Delete",
                       submit, danger=True, note="Their tasks are killed and the requests removed.")

    def action_deploy(self) -> None:
        targets = self._targets_or_warn()
        if not targets:
            return
        if len(targets) > 1:
            self.notify("A deploy is for one request: unmark the others", severity="warning")
            return
        rid = targets[0]

        async def submit(values: dict[str, Any]) -> str:
            deploy = values["file"]
            await self.client.deploy(deploy, values["message"] or None)
            return f"Started deploy {deploy['id']} of {rid}"
        self.open_form(f"New deploy of {rid}", [rid], [
            Field("file", "Deploy JSON file", placeholder="./deploy.json  ({\"id\": \"v2\", \"command\": ...})",
                  parse=lambda t: _parse_deploy_file(t, rid)), _MESSAGE], "Deploy", submit,
            note="New tasks start beside the old ones, which are killed once the new ones are healthy.")

    def action_describe(self) -> None:
        targets = self.request_targets()
        if targets:
            self.inspect(targets[0], self.request_json(targets[0]), "describe")

    def action_raw(self) -> None:
        targets = self.request_targets()
        if targets:
            self.inspect(targets[0], self.request_json(targets[0]), "json")

    # ---- logs
    def action_all_logs(self) -> None:
        targets = self.request_targets()
        if targets:
            self.open_all_logs(targets[0])

    def action_failed_logs(self) -> None:
        targets = self.request_targets()
        if targets:
            self.open_failed_logs(targets[0])

    def request_palette(self) -> list[PaletteCommand]:
        targets = self.request_targets()
        if not targets:
            return []
        what = self._title("", targets).strip()
        out: list[PaletteCommand] = []
        for action, label, help_text in (
                ("scale", "Scale", "change the number of instances"),
                ("pause", "Pause / unpause", "pause kills the tasks; unpause starts them again"),
                ("bounce", "Bounce", "replace every task"),
                ("run_now", "Run now", "run an on-demand or scheduled request now (args, env)"),
                ("exit_cooldown", "Exit cool-down", "leave system cool-down now"),
                ("deploy", "New deploy from a JSON file", "start a deploy"),
                ("delete", "Delete", "kill the tasks and remove the request (typed confirmation)"),
                ("all_logs", "All instances' logs", "every running task's stdout in one view"),
                ("failed_logs", "Logs of the last failed task", "stdout of the newest failed task"),
                ("describe", "Describe", "every field, readable"),
                ("raw", "Raw JSON", "the API's JSON")):
            if self.allowed(action):
                out.append((f"{label}: {what}", help_text, getattr(self, f"action_{action}")))
        return out
